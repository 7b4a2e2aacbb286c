"""The reward model learns a known preference rule with each loss, and round-trips through a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ialp.rewards import PreferenceSet, RewardModel

D, F, K, N_ITEMS = 4, 2, 4, 40


def _rule_data(n: int, seed: int) -> tuple[np.ndarray, PreferenceSet]:
    """Users prefer the candidate closest to their 'liked' history summary (features d..2d)."""
    rng = np.random.default_rng(seed)
    emb = rng.uniform(-1, 1, (N_ITEMS, D)).astype(np.float32)
    states = rng.normal(0, 1, (n, 3 * D + F + 2)).astype(np.float32)
    cands = np.stack([rng.choice(N_ITEMS, K, replace=False) for _ in range(n)])
    truth = np.einsum("nd,nkd->nk", states[:, D:2 * D], emb[cands])
    return emb, PreferenceSet(states, cands, truth.argmax(axis=1))


@pytest.mark.parametrize("loss", ["listwise", "pairwise", "pointwise"])
def test_reward_model_learns_a_preference_rule(loss: str) -> None:
    emb, data = _rule_data(700, seed=0)
    train, test = data.subset(np.arange(500)), data.subset(np.arange(500, 700))
    model = RewardModel(emb, (0.0, 1.0), (0.0, 1.0), data.states.shape[1], hidden=32, seed=0)
    before = model.accuracy(test)
    model.fit(train, loss=loss, epochs=60, learning_rate=5e-3)
    assert model.accuracy(test) > max(0.6, before + 0.2)  # chance is 1/K = 0.25


def test_reward_scale_and_roundtrip(tmp_path: Path) -> None:
    emb, data = _rule_data(200, seed=1)
    model = RewardModel(emb, (0.0, 1.0), (0.5, 5.0), data.states.shape[1], hidden=16, seed=0)
    model.fit(data, epochs=5)
    z = model.score(data.states, data.candidates)
    assert abs(float(z.mean())) < 0.2 and 0.7 < float(z.std()) < 1.3  # standardised
    obs = {"history": np.zeros((3, 5, D), np.float32), "feedback": np.zeros((3, 5), np.float32),
           "mask": np.zeros((3, 5), np.float32), "user": np.zeros((3, F), np.float32)}
    r = model.reward(obs, np.array([0, 1, 2]))
    assert r.shape == (3,) and r.dtype == np.float32 and ((r > 0.5) & (r < 5.0)).all()
    model.save(tmp_path / "m.pt")
    again = RewardModel.load(tmp_path / "m.pt")
    np.testing.assert_allclose(again.reward(obs, np.array([0, 1, 2])), r, rtol=1e-6)
