"""Every registered id against Gymnasium's and SB3's checkers, determinism, pickling, batching."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import ialp  # noqa: F401
from ialp.envs import ENVIRONMENTS, make_batched


def _rollout(env: gym.Env, seed: int, steps: int, action_seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    out: list[tuple] = [("reset", *(np.copy(v) for v in obs.values()))]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        out.append(("step", reward, terminated, truncated, *(np.copy(v) for v in obs.values())))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(("reset", *(np.copy(v) for v in obs.values())))
    return out


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


def test_every_registered_id_is_covered(env_cases: dict[str, dict[str, Any]]) -> None:
    registered = {k for k in gym.registry if k.startswith("ialp/")}
    assert registered == set(ENVIRONMENTS)
    assert {case["id"] for case in env_cases.values()} == registered


def test_checkers_pass(env_case: dict[str, Any]) -> None:
    env = gym.make(env_case["id"], **env_case["kwargs"])
    gym_check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped, warn=True)


def test_same_seed_same_rollout(env_case: dict[str, Any]) -> None:
    env = gym.make(env_case["id"], **env_case["kwargs"])
    first = _rollout(env, seed=7, steps=120)
    again = _rollout(gym.make(env_case["id"], **env_case["kwargs"]), seed=7, steps=120)
    other = _rollout(env, seed=8, steps=120)
    assert _same(first, again)
    assert not _same(first, other)
    assert sum(1 for row in first if row[0] == "reset") >= 3, "too few episodes ended in 120 steps"


def test_pickle_round_trip_continues_identically(env_case: dict[str, Any]) -> None:
    env = gym.make(env_case["id"], **env_case["kwargs"])
    env.reset(seed=3)
    n = env.action_space.n
    for a in range(5):
        env.step(a % n)
    clone = pickle.loads(pickle.dumps(env))
    for a in range(5, 40):
        left, right = env.step(a % n), clone.step(a % n)
        assert left[1:4] == right[1:4]
        assert all(np.array_equal(left[0][k], right[0][k]) for k in left[0])
        if left[2] or left[3]:
            env.reset()
            clone.reset()


def test_batched_matches_single_envs_step_for_step(env_case: dict[str, Any]) -> None:
    n, seed, steps = 6, 100, 150
    venv = make_batched(env_case["id"], num_envs=n, seed=seed, **env_case["kwargs"])
    singles = [gym.make(env_case["id"], **env_case["kwargs"]) for _ in range(n)]
    obs_b = venv.reset()
    obs_s = [e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(steps):
        for i in range(n):
            assert all(np.array_equal(obs_b[k][i], obs_s[i][k]) for k in obs_s[i])
        actions = rng.integers(venv.action_space.n, size=n)
        obs_b, rewards, dones, infos = venv.step(actions)
        for i, env in enumerate(singles):
            obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            assert rewards[i] == np.float32(reward)
            assert dones[i] == (terminated or truncated)
            if dones[i]:
                ended += 1
                assert infos[i]["TimeLimit.truncated"] == (truncated and not terminated)
                assert all(np.array_equal(infos[i]["terminal_observation"][k], obs[k]) for k in obs)
                obs, _ = env.reset()
            obs_s[i] = obs
    assert ended >= n, "too few episode ends to exercise automatic resets"


def test_unknown_kwarg_is_named(env_case: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="'n_itemz'"):
        gym.make(env_case["id"], n_itemz=5, **env_case["kwargs"])


SECTIONS = ("## Description", "## Action Space", "## Observation Space", "## Rewards", "## Starting State",
            "## Episode End", "## Arguments", "## Version History")


@pytest.mark.parametrize("env_id", sorted(ENVIRONMENTS))
def test_every_env_documents_its_user_model_and_leave_rule(env_id: str) -> None:
    module, name = str(gym.spec(env_id).entry_point).split(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert all(section in cls.__doc__ for section in SECTIONS), env_id
    assert "leave" in cls.__doc__.split("## Episode End")[1].lower()


def test_batched_infos_and_the_read_only_face() -> None:
    venv = make_batched("ialp/Synthetic-v0", num_envs=3, seed=0, n_items=20, repeat="penalize", warm_start=2,
                        leave=False)
    venv.reset()
    _, _, _, infos = venv.step(np.array([4, 5, 4]))
    _, _, _, infos = venv.step(np.array([4, 6, 7]))
    assert [i["item"] for i in infos] == [4, 6, 7]
    assert [i["repeat"] for i in infos] == [True, False, False]
    lo, hi = venv.face.reward_range
    assert all(lo <= i["expected_reward"] <= hi for i in infos)
    window = venv.face.window_items()
    assert window[:, -1].tolist() == [4, 6, 7]
    window[:] = -1  # a copy: the session is unchanged
    assert venv.face.window_items()[:, -1].tolist() == [4, 6, 7]
    assert venv.face.consumed()[0, 4] and not venv.face.consumed()[1, 4]  # type: ignore[index]
