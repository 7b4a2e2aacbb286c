"""iALP offline pretraining: an SB3 actor-critic trained on the logged-data simulator with the learned reward.

The environment is the offline simulator (``World.offline_env``: fitted on the training users' log) wrapped
by :class:`~ialp.rewards.LearnedRewardVecEnv`, so the policy is rewarded by the (LLM-distilled) reward model
and never touches the target environment. Its observation space equals the target's (see
``ialp.agents.common``), so the checkpoint is deployed there as is.
"""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from ialp.agents.common import World, log_interval, sb3_model
from ialp.config import AgentConfig
from ialp.rewards.model import RewardModel
from ialp.rewards.wrappers import LearnedRewardVecEnv


def offline_env(world: World, reward: RewardModel, num_envs: int, seed: int, setting: str = "free") -> VecMonitor:
    """The offline simulator with the learned reward (monitored, so SB3 logs its episode statistics)."""
    return VecMonitor(LearnedRewardVecEnv(world.offline_env(num_envs, seed, setting), reward))


def pretrain(world: World, reward: RewardModel, agent: AgentConfig, total_timesteps: int, seed: int,
             path: str | Path, tensorboard_log: str | None = None, tb_name: str = "pretrain",
             progress: bool = False, setting: str = "free") -> OnPolicyAlgorithm:
    """Pretrain ``agent.algo`` for ``total_timesteps`` offline in ``setting``; save the checkpoint to ``path`` and
    return it."""
    venv = offline_env(world, reward, agent.num_envs, seed, setting)
    model = sb3_model(agent.algo, venv, agent, seed, tensorboard_log)
    assert isinstance(model, OnPolicyAlgorithm)  # agent.algo is a2c or ppo
    model.learn(total_timesteps, tb_log_name=tb_name, progress_bar=progress,
                log_interval=log_interval(total_timesteps, agent.num_envs, model.n_steps))
    model.save(str(path))
    return model


def load(algo: str, path: str | Path, env: VecEnv | None = None) -> OnPolicyAlgorithm:
    """A saved SB3 checkpoint of ``algo`` (``a2c``/``ppo``), attached to ``env`` when given."""
    from stable_baselines3 import A2C, PPO

    classes: dict[str, type[OnPolicyAlgorithm]] = {"a2c": A2C, "ppo": PPO}
    return classes[algo].load(str(path), env=env, device="cpu")
