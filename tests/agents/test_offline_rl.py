"""Offline RL baselines (d3rlpy DiscreteCQL / DiscreteBCQ) on a tiny synthetic world logged by a random policy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ialp.agents.common import World
from ialp.agents.distill import build_world, sample_states
from ialp.agents.offline_rl import (
    OBS_KEYS,
    LoggedTransitions,
    OfflineRLConfig,
    OfflineRLPolicy,
    flatten_observation,
    logged_transitions,
    train_offline_rl,
)
from ialp.config import load_config
from ialp.envs.session import RandomCandidates
from ialp.envs.vector import BatchedRecEnv
from ialp.eval import evaluate
from ialp.eval.rollout import Policy, RandomPolicy
from ialp.rewards.model import RewardModel, state_features

pytest.importorskip("d3rlpy")

REPO = Path(__file__).resolve().parents[2]
# A few thousand transitions logged by a uniformly random policy, 1,500 gradient steps.
FAST = OfflineRLConfig(batch_size=128, target_update_interval=100)
STEPS = 1500


CFG = load_config(REPO / "configs" / "synthetic.yaml", ["env.kwargs={n_items: 30}", "distill.log_users=500"])


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(CFG)


@pytest.fixture(scope="module")
def data(world: World) -> LoggedTransitions:
    return logged_transitions(world)


@pytest.fixture(scope="module")
def cql(world: World, data: LoggedTransitions) -> OfflineRLPolicy:
    return train_offline_rl("cql", world, n_steps=STEPS, seed=0, config=FAST, transitions=data)


def _mean_return(policy: Policy, world: World) -> float:
    return float(evaluate(policy, world.target_env(200, 123), seed=5).returns.mean())


def test_transitions_are_the_log_in_episodes(world: World, data: LoggedTransitions) -> None:
    log = world.log
    w, d = int(world.env_kwargs.get("history_len", 10)), world.offline.item_embeddings.shape[1]
    assert len(data) == len(log) and data.observations.shape == (len(log), w * d + 2 * w + world.user_features.shape[1])
    np.testing.assert_array_equal(data.rows, np.arange(len(log)))
    np.testing.assert_array_equal(data.actions, log.items)
    np.testing.assert_allclose(data.rewards, log.feedback, rtol=1e-6)
    last = np.r_[log.users[1:] != log.users[:-1], True]  # the log is sorted by user, then time
    np.testing.assert_array_equal(data.terminals, last.astype(np.float32))
    assert data.timeouts.sum() == 0 and data.terminals.sum() == log.n_users
    mask = data.observations[:, w * d + w:w * d + 2 * w]
    first = np.r_[True, last[:-1]]
    assert (mask[first] == 0).all() and (mask[~first, -1] == 1).all()
    # Exactly what StateSample.observations shows for the same logged states, flattened in OBS_KEYS order.
    states = sample_states(log, 50, w, np.random.default_rng(0), min_history=0)
    obs = states.observations(world)
    assert set(OBS_KEYS) <= set(obs)
    np.testing.assert_allclose(data.observations[states.rows], flatten_observation(obs))


def test_observations_are_what_the_environment_showed(world: World, data: LoggedTransitions) -> None:
    """Replays ``simulate_log``'s random logging policy: each logged state's observation is the env's."""
    n_users, log = world.log.n_users, world.log
    venv = BatchedRecEnv(world.target, n_users, max_episode_steps=world.max_episode_steps, **world.env_kwargs)
    venv.seed(CFG.distill.log_seed_offset)
    obs: dict[str, np.ndarray] = venv.reset()  # type: ignore[assignment]
    rng = np.random.default_rng(CFG.distill.log_seed_offset)
    starts = np.searchsorted(log.users, np.arange(n_users))
    active, t = np.ones(n_users, dtype=bool), 0
    while active.any():
        rows = np.flatnonzero(active)
        shown = flatten_observation({k: v[rows] for k, v in obs.items()})
        np.testing.assert_allclose(data.observations[starts[rows] + t], shown, atol=1e-6)
        obs, _, dones, _ = venv.step(rng.integers(0, world.target.n_items, n_users))  # type: ignore[assignment]
        active &= ~dones
        t += 1


def test_max_transitions_keeps_whole_episodes_and_cuts_the_last(world: World) -> None:
    small = logged_transitions(world, max_transitions=100, seed=3)
    counts = np.bincount(world.log.users)
    ends = np.flatnonzero(small.terminals + small.timeouts)
    assert len(small) == 100 and ends[-1] == 99 and len(ends) == len(np.unique(small.users))
    kept = np.diff(np.r_[-1, ends])
    np.testing.assert_array_equal(kept == counts[small.users[ends]], small.terminals[ends] == 1)
    assert small.timeouts.sum() == 1  # the last user drawn did not fit whole
    assert (np.diff(small.rows)[np.diff(small.users) == 0] == 1).all()  # episodes contiguous, in time order
    np.testing.assert_array_equal(small.rows, logged_transitions(world, max_transitions=100, seed=3).rows)


def test_reward_model_replaces_the_logged_feedback(world: World, data: LoggedTransitions) -> None:
    emb = world.offline.item_embeddings
    fb_range = world.log.feedback_range
    states = sample_states(world.log, 20, int(world.env_kwargs.get("history_len", 10)), np.random.default_rng(1),
                           min_history=0)
    obs = states.observations(world)
    rm = RewardModel(emb, fb_range, fb_range, state_dim=state_features(obs, fb_range).shape[1], hidden=8)
    learned = logged_transitions(world, reward_model=rm)
    np.testing.assert_allclose(learned.rewards[states.rows], rm.reward(obs, states.next_items), rtol=1e-5)
    np.testing.assert_array_equal(learned.observations, data.observations)
    assert not np.allclose(learned.rewards, data.rewards)


def test_cql_q_ranks_high_feedback_actions_above_low(cql: OfflineRLPolicy, data: LoggedTransitions) -> None:
    q = cql.q_values(data.observations)[np.arange(len(data)), data.actions]
    assert np.corrcoef(q, data.rewards)[0, 1] > 0.2


def test_cql_and_bcq_beat_random_on_held_out_users(world: World, data: LoggedTransitions,
                                                   cql: OfflineRLPolicy) -> None:
    bcq = train_offline_rl("bcq", world, n_steps=STEPS, seed=0, config=FAST, transitions=data)
    rand = _mean_return(RandomPolicy(0), world)
    cql_ret, bcq_ret = _mean_return(cql, world), _mean_return(bcq, world)
    assert cql_ret > 1.3 * rand and bcq_ret > 1.3 * rand, (cql_ret, bcq_ret, rand)


def test_training_is_deterministic_given_the_seed(world: World, data: LoggedTransitions) -> None:
    small = dataclasses.replace(FAST, hidden=(16,))
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    q = [train_offline_rl("bcq", world, n_steps=50, seed=s, config=small, transitions=data).scores(
        data.observations[:64]) for s in (7, 7, 8)]
    np.testing.assert_array_equal(q[0], q[1])
    assert not np.array_equal(q[0], q[2])
    assert torch.equal(torch.rand(3), expected)  # the caller's global random streams are restored


def _repeats(policy: OfflineRLPolicy, world: World, with_shown: bool) -> int:
    """Items shown twice to a user in one session, over a few sessions each of 32 users (``blocked`` tracked by
    this helper as the environment would report it), counted while unshown items remain."""
    n, n_items, cap = 32, world.target.n_items, world.max_episode_steps
    venv = world.target_env(n, 11)
    obs: dict[str, np.ndarray] = venv.reset()  # type: ignore[assignment]
    shown = np.full((n, cap), -1.0, dtype=np.float32)
    repeats = 0
    for _ in range(3 * cap):
        shown[obs["mask"].sum(axis=1) == 0] = -1.0  # a new session starts with an empty history
        actions = policy.act({**obs, "blocked": shown} if with_shown else obs, venv)
        counted = (shown >= 0).sum(axis=1) < n_items
        repeats += int(((shown == actions[:, None]).any(axis=1) & counted).sum())
        shown[np.arange(n), (shown >= 0).sum(axis=1)] = actions
        obs, *_ = venv.step(actions)  # type: ignore[assignment]
    return repeats


def test_shown_items_are_never_recommended_again(cql: OfflineRLPolicy, world: World) -> None:
    assert _repeats(cql, world, with_shown=False) > 0  # greedy on Q repeats its favourites...
    assert _repeats(cql, world, with_shown=True) == 0  # ...unless the observation says what was shown


def test_candidate_slot_environments_and_unknown_algos_are_refused(world: World, cql: OfflineRLPolicy) -> None:
    cand_world = dataclasses.replace(world, env_kwargs={**world.env_kwargs, "candidates": RandomCandidates(5)})
    with pytest.raises(ValueError, match="candidate"):
        train_offline_rl("cql", cand_world, n_steps=1)
    venv = cand_world.target_env(2, 0)
    with pytest.raises(ValueError, match="candidate"):
        cql.act(venv.reset(), venv)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="algo"):
        train_offline_rl("dqn", world, n_steps=1)
