"""Swap an environment's reward for a learned one: a Gymnasium wrapper and its stable-baselines3 twin.

The learned reward of a step depends on the state the item was shown in (the PRE-step observation) and on
the shown item (``info["item"]``; with candidate slots the action is not the item). Both wrappers keep the
last observation for that. The environment's own reward is kept in ``info["env_reward"]``, and the
observation (whose ``feedback`` is the simulated user's response) is left as it is.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn


class LearnedReward(Protocol):
    """Anything with ``reward(obs, items) -> (B,)`` over batch-first observations (e.g. ``RewardModel``)."""

    def reward(self, obs: dict[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        """Reward of showing ``items`` (B,) in observations ``obs``."""
        ...


class LearnedRewardWrapper(gym.Wrapper):
    """Gymnasium wrapper: ``reward = model.reward(pre-step observation, info["item"])``.

    Args:
        env: An ialp environment (its step info carries the shown ``item``).
        model: The learned reward.
    """

    def __init__(self, env: gym.Env, model: LearnedReward) -> None:
        super().__init__(env)
        self.model = model
        self._obs: dict[str, np.ndarray] | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        before = self._obs
        obs, reward, terminated, truncated, info = self.env.step(action)
        batch = {k: np.asarray(v)[None] for k, v in before.items()}
        learned = float(self.model.reward(batch, np.array([int(info["item"])]))[0])
        self._obs = obs
        return obs, learned, terminated, truncated, {**info, "env_reward": reward}


class LearnedRewardVecEnv(VecEnvWrapper):
    """``VecEnvWrapper`` over a ``BatchedRecEnv``: every user's reward comes from the learned model.

    The shown items are read from ``infos[i]["item"]``; the pre-step observations are the ones this wrapper
    last returned (after an automatic reset, the new episode's first observation).
    """

    def __init__(self, venv: VecEnv, model: LearnedReward) -> None:
        super().__init__(venv)
        self.model = model
        self._obs: dict[str, np.ndarray] | None = None

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._obs = obs  # type: ignore[assignment]
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        before = self._obs
        obs, rewards, dones, infos = self.venv.step_wait()
        items = np.array([info["item"] for info in infos], dtype=np.int64)
        learned = np.asarray(self.model.reward(before, items), dtype=np.float32)
        for info, r in zip(infos, rewards.tolist(), strict=True):
            info["env_reward"] = r
        self._obs = obs  # type: ignore[assignment]
        return obs, learned, dones, infos
