"""iALP offline pretraining: an SB3 actor-critic trained on the logged-data simulator with the learned reward.

The environment is the offline simulator (``World.offline_env``: fitted on the training users' log) wrapped
by :class:`~ialp.rewards.LearnedRewardVecEnv`, so the policy is rewarded by the (LLM-distilled) reward model
and never touches the target environment. Its observation space equals the target's (see
``ialp.agents.common``), so the checkpoint is deployed there as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import VecMonitor

from ialp.agents.common import World, log_interval, sb3_model
from ialp.config import AgentConfig
from ialp.rewards.model import RewardModel
from ialp.rewards.wrappers import LearnedRewardVecEnv


def offline_env(world: World, reward: RewardModel, num_envs: int, seed: int, setting: str = "free") -> VecMonitor:
    """The offline simulator with the learned reward (monitored, so SB3 logs its episode statistics)."""
    return VecMonitor(LearnedRewardVecEnv(world.offline_env(num_envs, seed, setting), reward))


def pretrain(world: World, reward: RewardModel, agent: AgentConfig, total_timesteps: int, seed: int,
             path: str | Path, tensorboard_log: str | None = None, tb_name: str = "pretrain",
             progress: bool = False, setting: str = "free") -> Any:
    """Pretrain ``agent.algo`` for ``total_timesteps`` offline in ``setting``; save the checkpoint to ``path`` and
    return it."""
    venv = offline_env(world, reward, agent.num_envs, seed, setting)
    model = sb3_model(agent.algo, venv, agent, seed, tensorboard_log)
    model.learn(total_timesteps, tb_log_name=tb_name, progress_bar=progress,
                log_interval=log_interval(total_timesteps, agent.num_envs, model.n_steps))
    model.save(str(path))
    return model


def load(algo: str, path: str | Path, env: Any = None) -> Any:
    """A saved SB3 checkpoint of ``algo`` (``a2c``/``ppo``), attached to ``env`` when given."""
    from stable_baselines3 import A2C, PPO

    cls: Any = {"a2c": A2C, "ppo": PPO}[algo]
    return cls.load(str(path), env=env, device="cpu")
