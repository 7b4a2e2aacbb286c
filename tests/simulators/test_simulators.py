"""User models and leave rules: ground truth, fitted quality, caching and the leave logic."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import ialp  # noqa: F401
from ialp import random as crng
from ialp.data import ItemCatalog, load_movielens
from ialp.envs import RecEnv, make_batched
from ialp.simulators import (
    DistanceLeave,
    LoggedUserModel,
    LowRewardLeave,
    MFConfig,
    SyntheticConfig,
    SyntheticUserModel,
    TagOverlapLeave,
    make_leave_rule,
)

MOVIELENS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens"


def _keys(n: int) -> np.ndarray:
    return crng.derive(np.arange(n, dtype=np.uint64), 0)


def test_synthetic_catalogue_is_readable_and_fixed_by_its_seed() -> None:
    a, b = SyntheticUserModel(SyntheticConfig(n_items=50)), SyntheticUserModel(SyntheticConfig(n_items=50))
    c = SyntheticUserModel(SyntheticConfig(n_items=50, catalog_seed=1))
    assert a.catalog.titles == b.catalog.titles and a.catalog.titles != c.catalog.titles
    assert all(t.startswith("The ") for t in a.catalog.titles)
    assert all(" about " in d for d in a.catalog.descriptions)
    np.testing.assert_allclose(a.topics.sum(axis=1), 1.0)


def test_synthetic_expected_rewards_are_the_ground_truth_of_responses() -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=30, reward_noise=0.0))
    state = model.init_state(_keys(4))
    table = model.expected_rewards(state)
    items = np.array([0, 5, 7, 29])
    response = model.respond(state, items, _keys(4))
    np.testing.assert_allclose(response.expected, table[np.arange(4), items])
    np.testing.assert_allclose(response.reward, response.expected)


def test_synthetic_boredom_lowers_reward_of_a_repeated_topic() -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=30, reward_noise=0.0, drift_rate=0.0))
    state = model.init_state(_keys(1))
    first = model.respond(state, np.array([3]), _keys(1)).expected[0]
    second = model.respond(state, np.array([3]), _keys(1)).expected[0]
    assert second < first


def test_synthetic_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="n_topics"):
        SyntheticConfig(n_topics=99)
    with pytest.raises(ValueError, match="boredom_decay"):
        SyntheticConfig(boredom_decay=1.5)


@pytest.mark.parametrize("name", ["ml-latest-small", "ml-100k"])
def test_matrix_factorisation_beats_the_mean_and_is_cached(name: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = load_movielens(MOVIELENS / name)
    cfg = MFConfig(iterations=8)
    model = LoggedUserModel(data, cfg, cache_dir=tmp_path)
    report = model.fit_report
    assert report.rmse < 0.95 * report.baseline_rmse
    err = capsys.readouterr().err
    assert "held-out RMSE" in err and "fitted" in err
    again = LoggedUserModel(data, cfg, cache_dir=tmp_path)
    assert "loaded from cache" in capsys.readouterr().err
    np.testing.assert_array_equal(again.mf.item_factors, model.mf.item_factors)
    assert again.fit_report == report
    lo, hi = model.reward_range
    state = model.init_state(_keys(3))
    scores = model.expected_rewards(state)
    assert scores.shape == (3, len(data.catalog)) and scores.min() >= lo and scores.max() <= hi


def _tagged_model(tags: list[tuple[str, ...]], emb: np.ndarray) -> SyntheticUserModel:
    model = SyntheticUserModel(SyntheticConfig(n_items=len(tags)))
    model.catalog = ItemCatalog(item_ids=np.arange(len(tags)), titles=[f"i{i}" for i in range(len(tags))],
                                descriptions=[""] * len(tags), tags=tags)
    model.item_embeddings = emb.astype(np.float32)
    return model


def test_tag_overlap_rule_counts_shared_tags_in_the_window() -> None:
    model = _tagged_model([("a",), ("a", "b"), ("b",), ("c",)], np.eye(4))
    rule = TagOverlapLeave(window=3, threshold=1)
    history = np.array([[-1, 0, 1], [0, 2, 3], [-1, -1, -1]])
    # item 1 shares a tag with items 0 and 1 (2 > 1); item 0 shares only with 0 (1, not > 1); empty history
    out = rule.leaves(model, {}, np.array([1, 0, 1]), np.zeros(3), history)
    assert out.tolist() == [True, False, False]


def test_tag_overlap_rule_counts_a_repeated_untagged_item() -> None:
    model = _tagged_model([(), ("a",)], np.eye(2))
    rule = TagOverlapLeave(window=3, threshold=2)
    out = rule.leaves(model, {}, np.array([0, 1]), np.zeros(2), np.array([[0, 0, 0], [0, 0, 0]]))
    assert out.tolist() == [True, False]


def test_tag_overlap_rule_handles_more_than_64_tags() -> None:
    tags = [(f"t{i}",) for i in range(70)] + [("t69",)]
    model = _tagged_model(tags, np.zeros((71, 2)))
    assert model.tag_bits.shape == (71, 2)
    rule = TagOverlapLeave(window=2, threshold=0)
    out = rule.leaves(model, {}, np.array([70, 70]), np.zeros(2), np.array([[0, 69], [0, 1]]))
    assert out.tolist() == [True, False]


def test_distance_rule_and_low_reward_rule() -> None:
    model = _tagged_model([("a",)] * 3, np.array([[0.0, 0.0], [0.05, 0.0], [1.0, 1.0]]))
    near = DistanceLeave(window=2, radius=0.1)
    assert near.leaves(model, {}, np.array([1, 2]), np.zeros(2), np.array([[-1, 0], [0, 1]])).tolist() == [True, False]
    low = LowRewardLeave(threshold=0.5, patience=2)
    state = low.init_state(2)
    hist = np.full((2, 1), -1)
    assert low.leaves(model, state, np.zeros(2, int), np.array([0.1, 0.9]), hist).tolist() == [False, False]
    assert low.leaves(model, state, np.zeros(2, int), np.array([0.1, 0.1]), hist).tolist() == [True, False]


def test_make_leave_rule_validates() -> None:
    assert make_leave_rule({"rule": "tag", "window": 4}) == TagOverlapLeave(window=4)
    with pytest.raises(ValueError, match="unknown leave rule 'nope'"):
        make_leave_rule("nope")
    with pytest.raises(ValueError, match=r"'tag'.*windw"):
        make_leave_rule({"rule": "tag", "windw": 4})


@pytest.mark.parametrize("repeat", ["allow", "penalize", "forbid"])
def test_repeat_modes(repeat: str) -> None:
    env = gym.make("ialp/Synthetic-v0", n_items=20, repeat=repeat, repeat_penalty=-1.0, leave_base=0.0,
                   leave_slope=0.0)
    env.reset(seed=0)
    env.step(4)
    assert env.unwrapped.action_masks()[4] == (repeat != "forbid")
    _, second, terminated, _, info = env.step(4)
    assert info["repeat"] == (repeat != "allow")
    if repeat == "allow":
        assert second >= 0 and not terminated
    else:
        assert second == -1.0
        assert terminated == (repeat == "forbid")


def test_candidate_interface_maps_slots_to_items() -> None:
    env = gym.make("ialp/Synthetic-v0", n_items=100, candidates=5)
    obs, _ = env.reset(seed=1)
    assert env.action_space.n == 5 and obs["candidates"].shape == (5, 20)
    candidates = env.unwrapped.session.cand_items[0].copy()
    assert len(set(candidates.tolist())) == 5
    _, _, _, _, info = env.step(3)
    assert info["item"] == candidates[3]
    venv = make_batched("ialp/Synthetic-v0", num_envs=4, seed=1, n_items=100, candidates=5)
    assert venv.reset()["candidates"].shape == (4, 5, 20)


def test_missing_data_says_where_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IALP_KUAIREC_DIR", raising=False)
    monkeypatch.delenv("IALP_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"kuairec\.com"):
        gym.make("ialp/KuaiRec-v0")
    with pytest.raises(FileNotFoundError, match=r"grouplens\.org"):
        gym.make("ialp/MovieLens-v0")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gym.make("ialp/KuaiRand-v0", data_dir="/nonexistent/kuairand")


def test_movielens_from_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IALP_DATA_DIR", str(MOVIELENS / "ml-100k"))
    env = gym.make("ialp/MovieLens-v0")
    assert env.action_space.n == 1682
    assert isinstance(env.unwrapped, RecEnv)
