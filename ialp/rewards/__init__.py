"""Learned rewards: a reward model fitted to (LLM) preferences and the wrappers that swap it into environments."""

from ialp.rewards.model import LOSSES, PreferenceSet, RewardModel, RewardNet, state_features
from ialp.rewards.wrappers import LearnedReward, LearnedRewardVecEnv, LearnedRewardWrapper

__all__ = ["LOSSES", "LearnedReward", "LearnedRewardVecEnv", "LearnedRewardWrapper", "PreferenceSet",
           "RewardModel", "RewardNet", "state_features"]
