"""The ecosystem's front doors, entered as a new user would: SB3's ``make_vec_env`` and ``A2C(policy, env_id)``
defaults, its ``SubprocVecEnv`` and video recorder, and ``gym.make_vec`` in every vectorization mode."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv, VecVideoRecorder

import ialp  # noqa: F401  (registers the ids)
from ialp.envs import make_batched
from ialp.envs.gym_vector import RecVectorEnv

ENV_ID = "ialp/Synthetic-v0"
SMALL = {"n_items": 30, "warm_start": 2}
TINY = {"net_arch": [8]}


def test_make_vec_env_with_sb3_defaults_renders_rgb_arrays() -> None:
    venv = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs=SMALL)  # asks for render_mode="rgb_array"
    obs = venv.reset()
    assert obs["history"].shape[0] == 2
    before = venv.get_images()
    venv.step(np.array([0, 1]))
    after = venv.get_images()
    assert all(img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 for img in after)
    assert not np.array_equal(before[0], after[0])  # the picture shows the new item and its feedback
    venv.close()


def test_a2c_on_a_registered_id_with_its_defaults() -> None:
    model = A2C("MultiInputPolicy", ENV_ID, n_steps=4, seed=0, device="cpu", policy_kwargs=TINY)
    model.learn(16)
    assert model.num_timesteps == 16


@pytest.mark.parametrize(("env_id", "start_method"), [(ENV_ID, None), (f"ialp:{ENV_ID}", "spawn")])
def test_subproc_vec_env(env_id: str, start_method: str | None) -> None:
    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs=SMALL, vec_env_cls=SubprocVecEnv,
                        vec_env_kwargs={"start_method": start_method})
    try:
        obs = venv.reset()
        obs, rewards, _, infos = venv.step(np.array([3, 4]))
        assert obs["feedback"].shape[0] == 2 and rewards.shape == (2,)
        assert [i["item"] for i in infos] == [3, 4]
    finally:
        venv.close()


@pytest.mark.parametrize("mode", ["sync", "async", "vector_entry_point"])
def test_gym_make_vec_in_every_mode(mode: str) -> None:
    envs = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode=mode, **SMALL)
    try:
        obs, _ = envs.reset(seed=7)
        assert envs.action_space.shape == (3,) and obs["history"].shape[0] == 3
        obs, rewards, terminated, truncated, infos = envs.step(np.array([0, 1, 2]))
        assert rewards.shape == terminated.shape == truncated.shape == (3,)
        assert list(infos["item"]) == [0, 1, 2]
    finally:
        envs.close()


def test_vector_entry_point_is_the_batched_env_and_matches_sync() -> None:
    fast = gym.make_vec(ENV_ID, num_envs=3, **SMALL)  # the vector entry point is the default
    assert isinstance(fast.unwrapped, RecVectorEnv)
    slow = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="sync", **SMALL)
    obs_fast, _ = fast.reset(seed=11)
    obs_slow, _ = slow.reset(seed=11)
    for key in obs_slow:
        np.testing.assert_array_equal(obs_fast[key], obs_slow[key])
    for actions in ([5, 6, 7], [8, 9, 10]):
        _, r_fast, *_ = fast.step(np.array(actions))
        _, r_slow, *_ = slow.step(np.array(actions))
        np.testing.assert_allclose(r_fast, r_slow, rtol=1e-6)
    fast.close()
    slow.close()


def test_vector_entry_point_reports_final_observations() -> None:
    envs = gym.make_vec(ENV_ID, num_envs=4, max_episode_steps=3, leave=False, **SMALL)  # nobody leaves early
    envs.reset(seed=0)
    for _ in range(2):
        *_, terminated, truncated, infos = envs.step(np.zeros(4, dtype=np.int64))
        assert "_final_obs" not in infos and not (terminated | truncated).any()
    *_, terminated, truncated, infos = envs.step(np.zeros(4, dtype=np.int64))
    assert infos["_final_obs"].all() and truncated.all() and not terminated.any()
    assert set(infos["final_obs"][0]) == set(envs.single_observation_space.spaces)  # type: ignore[attr-defined]
    envs.close()


def test_video_recorder(tmp_path: Path) -> None:
    venv = make_batched(ENV_ID, num_envs=2, seed=0, render_mode="rgb_array", **SMALL)
    recorder = VecVideoRecorder(venv, str(tmp_path), record_video_trigger=lambda step: step == 0, video_length=5,
                                name_prefix="session")
    recorder.reset()
    for _ in range(6):
        recorder.step(np.array([1, 2]))
    recorder.close()
    videos = list(tmp_path.glob("session*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
