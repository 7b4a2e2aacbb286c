"""Both learned-reward wrappers replace the environment's reward, using the pre-step observation and item."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import ialp  # noqa: F401
from ialp.envs import make_batched
from ialp.rewards import LearnedRewardVecEnv, LearnedRewardWrapper


class ItemIndexReward:
    """Reward = shown item's index + 1000 * number of filled history slots before the step."""

    def __init__(self) -> None:
        self.seen: list[dict[str, np.ndarray]] = []

    def reward(self, obs: dict[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        self.seen.append({k: v.copy() for k, v in obs.items()})
        return (items + 1000 * obs["mask"].sum(axis=1)).astype(np.float32)


def test_gym_wrapper_replaces_reward() -> None:
    model = ItemIndexReward()
    env = LearnedRewardWrapper(gym.make("ialp/Synthetic-v0", n_items=30), model)
    obs, _ = env.reset(seed=0)
    for t in range(5):
        before = obs
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == info["item"] + 1000 * min(t, 10)
        assert 0.0 <= info["env_reward"] <= 1.0
        np.testing.assert_array_equal(model.seen[-1]["history"][0], before["history"])
        if terminated or truncated:
            obs, _ = env.reset()
            break


def test_vecenv_wrapper_replaces_reward() -> None:
    model = ItemIndexReward()
    base = make_batched("ialp/Synthetic-v0", num_envs=4, seed=0, n_items=30)
    venv = LearnedRewardVecEnv(base, model)
    obs = venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(20):
        before = obs
        obs, rewards, _, infos = venv.step(rng.integers(0, 30, 4))
        np.testing.assert_allclose(rewards, base.session.last_items + 1000 * before["mask"].sum(axis=1))
        np.testing.assert_array_equal(model.seen[-1]["feedback"], before["feedback"])
        assert all(0.0 <= i["env_reward"] <= 1.0 for i in infos)
