"""Baselines evaluated by the same code as iALP: heuristics, bandits, greedy on the fitted model, and
behaviour cloning from the logs. (Random, the ground-truth oracle and SB3 agents from scratch live in
``ialp.eval`` and ``ialp.agents.common``.)

All policies here recommend from the whole catalogue (``Discrete(n_items)``) and skip the items in the
user's current history window, as a production recommender would not re-show what was just consumed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from ialp.agents.common import EpisodeLog, EpisodeTracker
from ialp.envs.vector import BatchedRecEnv


def _mask_recent(scores: np.ndarray, venv: BatchedRecEnv, obs: dict[str, np.ndarray]) -> np.ndarray:
    """``scores`` (B, N) with the items of each user's observation window and the ``blocked`` ones set to -inf."""
    face = venv.face
    if face.candidate_items() is not None:
        raise ValueError("catalogue baselines need an environment without candidate slots (candidates=None)")
    recent = np.concatenate([face.window_items(), obs["blocked"].astype(np.int64)], axis=1)
    out = scores.copy()
    rows = np.repeat(np.arange(len(out)), recent.shape[1])
    flat = recent.ravel()
    keep = flat >= 0
    out[rows[keep], flat[keep]] = -np.inf
    return out


class PopularityPolicy:
    """Most-consumed items of the training log, highest logged feedback breaking ties."""

    def __init__(self, items: np.ndarray, feedback: np.ndarray, n_items: int) -> None:
        counts = np.bincount(items, minlength=n_items).astype(np.float64)
        mean_fb = np.bincount(items, weights=feedback, minlength=n_items) / np.maximum(counts, 1)
        span = max(float(np.ptp(mean_fb)), 1e-9)
        self.scores = counts + 0.5 * (mean_fb - mean_fb.min()) / span

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        scores = np.broadcast_to(self.scores, (venv.num_envs, len(self.scores)))
        return _mask_recent(scores, venv, obs).argmax(axis=1)


class GreedyMFPolicy:
    """Greedy on the matrix factorisation fitted on the training log, with the user folded in online.

    Target users are not in the fitted model, so each step their factor is estimated by ridge regression of
    the feedback in their observation window on those items' factors (after removing the global mean and the
    item biases); the item with the highest predicted feedback is recommended. Empty windows fall back to
    ``mean + item_bias`` (a quality-aware popularity).
    """

    def __init__(self, mf: Any, reg: float = 1.0) -> None:
        self.mf, self.reg = mf, reg

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        mf = self.mf
        items = venv.face.window_items()
        fb = np.asarray(obs["feedback"], dtype=np.float64)  # aligned with the window, oldest first
        mask = (items >= 0).astype(np.float64)
        x = mf.item_factors[np.maximum(items, 0)] * mask[..., None]  # (B, W, d)
        y = (fb - mf.mean - mf.item_bias[np.maximum(items, 0)]) * mask
        d = x.shape[2]
        gram = np.einsum("bwi,bwj->bij", x, x) + self.reg * np.eye(d)
        user = np.linalg.solve(gram, np.einsum("bwi,bw->bi", x, y)[..., None])[..., 0]
        scores = mf.mean + mf.item_bias[None, :] + user @ mf.item_factors.T
        return _mask_recent(scores, venv, obs).argmax(axis=1)


class BanditPolicy:
    """Context-free bandit over the catalogue, learning across users: ``epsilon``-greedy or UCB1-style.

    ``ucb``: ``mean_i + c * sqrt(log(t) / n_i)`` (unseen items first). Learning happens in :meth:`learn`;
    ``act`` (deployment) is greedy on the learned means.
    """

    def __init__(self, n_items: int, kind: str = "ucb", epsilon: float = 0.1, c: float = 0.5, seed: int = 0) -> None:
        if kind not in ("ucb", "eps-greedy"):
            raise ValueError(f"kind must be 'ucb' or 'eps-greedy', got {kind!r}")
        self.kind, self.epsilon, self.c = kind, epsilon, c
        self.sums = np.zeros(n_items)
        self.counts = np.zeros(n_items)
        self.rng = np.random.default_rng(seed)

    @property
    def means(self) -> np.ndarray:
        """Mean observed reward of each item (0 where unseen)."""
        return self.sums / np.maximum(self.counts, 1)

    def _explore_act(self, venv: BatchedRecEnv, obs: dict[str, np.ndarray]) -> np.ndarray:
        b, n = venv.num_envs, len(self.counts)
        if self.kind == "ucb":
            t = max(self.counts.sum(), 1.0)
            bonus = np.where(self.counts > 0, self.c * np.sqrt(np.log(t + 1) / np.maximum(self.counts, 1)), 1e6)
            scores = np.broadcast_to(self.means + bonus + 1e-6 * self.rng.random(n), (b, n))
            return _mask_recent(scores, venv, obs).argmax(axis=1)
        greedy = _mask_recent(np.broadcast_to(self.means, (b, n)), venv, obs).argmax(axis=1)
        explore = self.rng.random(b) < self.epsilon
        return np.where(explore, self.rng.integers(0, n, b), greedy)

    def learn(self, venv: BatchedRecEnv, total_timesteps: int) -> EpisodeLog:
        """Act and update online for ``total_timesteps`` env steps; returns the finished sessions."""
        obs: dict[str, np.ndarray] = venv.reset()
        tracker = EpisodeTracker(venv.num_envs, len(self.counts))
        steps = 0
        while steps < total_timesteps:
            actions = self._explore_act(venv, obs)
            obs, rewards, dones, _ = venv.step(actions)
            np.add.at(self.sums, actions, rewards)
            np.add.at(self.counts, actions, 1)
            steps += venv.num_envs
            tracker.update(rewards, dones, actions, steps)
        return tracker.log

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        scores = np.broadcast_to(self.means, (venv.num_envs, len(self.counts)))
        return _mask_recent(scores, venv, obs).argmax(axis=1)


def behaviour_cloning(model: OnPolicyAlgorithm, obs: dict[str, np.ndarray], actions: np.ndarray,
                      weights: np.ndarray | None = None, epochs: int = 30, batch_size: int = 256,
                      learning_rate: float = 1e-3, seed: int = 0) -> OnPolicyAlgorithm:
    """Fit an SB3 actor-critic's policy to logged (observation, action) pairs by (weighted) cross-entropy.

    With ``weights`` = 1 for the better-rated half of the log and 0 otherwise this is filtered ("%BC")
    behaviour cloning, the usual offline baseline when the logging policy is not good itself.
    """
    policy: ActorCriticPolicy = model.policy
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    w = np.ones(len(actions)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.flatnonzero(w > 0)
    obs_t, _ = policy.obs_to_tensor({k: v[keep] for k, v in obs.items()})
    if not isinstance(obs_t, dict):
        raise TypeError("behaviour cloning needs a Dict observation space")
    act_t = torch.as_tensor(actions[keep], dtype=torch.long)
    w_t = torch.as_tensor(w[keep], dtype=torch.float32)
    for _ in range(epochs):
        for idx in torch.randperm(len(keep), generator=gen).split(batch_size):
            dist = policy.get_distribution({k: v[idx] for k, v in obs_t.items()})
            loss = -(dist.log_prob(act_t[idx]) * w_t[idx]).sum() / w_t[idx].sum().clamp_min(1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model
