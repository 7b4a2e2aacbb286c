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


def test_learned_reward_ranks_held_out_choices_and_roundtrips(tmp_path: Path) -> None:
    """The reward the environment wrapper hands out (not only the raw score) prefers what users chose, on pairs
    the model never saw, and keeps the ordering of the scores; a file round trip gives the same rewards."""
    emb, data = _rule_data(600, seed=1)
    train, test = data.subset(np.arange(400)), data.subset(np.arange(400, 600))
    model = RewardModel(emb, (0.0, 1.0), (0.5, 5.0), data.states.shape[1], hidden=16, seed=0)
    model.fit(train, epochs=40, learning_rate=5e-3)
    n = len(test.choice)
    obs = {"history": np.zeros((n, 5, D), np.float32), "feedback": np.zeros((n, 5), np.float32),
           "mask": np.zeros((n, 5), np.float32), "user": np.zeros((n, F), np.float32)}
    # rewards of every candidate, in the states of the held-out queries (their summaries fed as state features)
    rewards = np.stack([model.reward_from_features(test.states, test.candidates[:, j])
                        for j in range(K)], axis=1)
    chosen = rewards[np.arange(n), test.choice]
    others = np.delete(rewards, test.choice[:, None] + K * np.arange(n)[:, None], axis=None).reshape(n, K - 1)
    assert (rewards.argmax(axis=1) == test.choice).mean() > 0.6  # chance 0.25
    assert chosen.mean() > others.mean() + 0.5  # on the 0.5–5 scale
    scores = model.score(test.states, test.candidates)
    assert (np.argsort(scores, axis=1) == np.argsort(rewards, axis=1)).all()  # the squash keeps the order
    r = model.reward(obs, np.arange(n) % 3)
    model.save(tmp_path / "m.pt")
    again = RewardModel.load(tmp_path / "m.pt")
    np.testing.assert_allclose(again.reward(obs, np.arange(n) % 3), r, rtol=1e-6)


def test_early_stopping_keeps_the_best_validation_epoch_and_generalises_better() -> None:
    """Few preferences over many items: trained to the end, the per-item biases memorise the training answers;
    early stopping on a validation share stops sooner and keeps weights that rank held-out choices better."""
    rng = np.random.default_rng(3)
    n_items, n = 400, 240
    emb = rng.uniform(-1, 1, (n_items, D)).astype(np.float32)
    states = rng.normal(0, 1, (n, 3 * D + F + 2)).astype(np.float32)
    cands = np.stack([rng.choice(n_items, K, replace=False) for _ in range(n)])
    truth = np.einsum("nd,nkd->nk", states[:, D:2 * D], emb[cands]) + rng.normal(0, 0.5, (n, K))
    data = PreferenceSet(states, cands, truth.argmax(axis=1))
    train, test = data.subset(np.arange(160)), data.subset(np.arange(160, n))
    scores = {}
    for patience in (0, 10):
        model = RewardModel(emb, (0.0, 1.0), (0.0, 1.0), states.shape[1], hidden=64, seed=0)
        history = model.fit(train, epochs=300, learning_rate=3e-3, patience=patience)
        scores[patience] = (len(history), model.accuracy(train), model.accuracy(test))
    assert scores[0][0] == 300 and scores[0][1] > 0.95  # memorised
    assert scores[10][0] < 300 and scores[10][1] < scores[0][1]  # stopped early, before memorising
    assert scores[10][2] > scores[0][2]  # and ranks unseen choices better
