"""Agents: iALP offline pretraining, A-iALP online adaptation (``ft``, ``ap``) and baselines."""

from ialp.agents.adaptive import adaptive_mixture, finetune
from ialp.agents.baselines import BanditPolicy, GreedyMFPolicy, PopularityPolicy, behaviour_cloning
from ialp.agents.common import EpisodeLog, ModelView, RecorderCallback, World, sb3_model
from ialp.agents.ialp import offline_env, pretrain

__all__ = [
           "BanditPolicy",
           "EpisodeLog",
           "GreedyMFPolicy",
           "ModelView",
           "PopularityPolicy",
           "RecorderCallback",
           "World",
           "adaptive_mixture",
           "behaviour_cloning",
           "finetune",
           "offline_env",
           "pretrain",
           "sb3_model",
]
