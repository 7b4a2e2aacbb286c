"""Roll a policy out over many simulated users at once and collect per-episode statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ialp.envs.vector import BatchedRecEnv


class Policy(Protocol):
    """Maps a batch of observations to a batch of actions."""

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        """Actions, int64 (B,)."""
        ...


def valid_actions(obs: dict[str, np.ndarray], n_actions: int) -> np.ndarray:
    """Boolean (B, n_actions): the actions the observation allows (not ``blocked``, ``candidate_mask`` set)."""
    if "candidate_mask" in obs:
        return np.asarray(obs["candidate_mask"]) > 0.5
    blocked = np.asarray(obs["blocked"]).astype(np.int64)
    valid = np.ones((len(blocked), n_actions + 1), dtype=bool)
    valid[np.arange(len(blocked))[:, None], np.where(blocked >= 0, blocked, n_actions)] = False
    return valid[:, :-1]


@dataclass
class RandomPolicy:
    """Uniformly random actions among the allowed ones (from its own seeded generator)."""

    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        n = int(venv.action_space.n)
        scores = self._rng.random((venv.num_envs, n))
        return np.where(valid_actions(obs, n), scores, -1.0).argmax(axis=1)


class OraclePolicy:
    """Greedy on the simulator's ground truth: the item with the highest expected reward now.

    An upper bound on myopic policies (it reads the hidden user state); not one on long-term return,
    since it ignores boredom and leaving.
    """

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        face = venv.face
        scores = face.expected_rewards()
        consumed, candidates = face.consumed(), face.candidate_items()
        if consumed is not None:
            scores = np.where(consumed, -np.inf, scores)
        if candidates is not None:
            return np.argmax(np.take_along_axis(scores, candidates, axis=1), axis=1)
        return np.argmax(scores, axis=1)


class Predictor(Protocol):
    """What :class:`SB3Policy` calls: stable-baselines3's ``predict`` (``BaseAlgorithm`` or a fixed policy)."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """Actions for a batch of observations (and the recurrent state)."""
        ...


@dataclass
class SB3Policy:
    """A trained stable-baselines3 model (any :class:`Predictor`), acting deterministically unless told otherwise."""

    model: Predictor
    deterministic: bool = True

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64)


@dataclass(frozen=True)
class EpisodeStats:
    """Per-episode returns and lengths, the catalogue coverage over all recommendations, the mean
    intra-session diversity (1 - mean pairwise cosine similarity of the shown items' embeddings) and the
    novelty (mean self-information ``-log2 p(i)`` of the shown items under the training log's popularity)."""

    returns: np.ndarray
    lengths: np.ndarray
    coverage: float
    diversity: float = float("nan")
    novelty: float = float("nan")

    @property
    def avg_reward(self) -> float:
        """Mean reward per step over all episodes."""
        return float(self.returns.sum() / max(int(self.lengths.sum()), 1))


def evaluate(policy: Policy, venv: BatchedRecEnv, seed: int, episodes_per_user: int = 1,
             popularity: np.ndarray | None = None) -> EpisodeStats:
    """Run ``policy`` until each of the B users has finished ``episodes_per_user`` episodes.

    Every user contributes the same number of episodes, so short episodes are not over-counted. ``popularity``
    (interaction counts per item in the training log) gives the novelty; without it novelty is NaN.
    """
    info = (-np.log2((popularity + 1.0) / (popularity.sum() + len(popularity)))
            if popularity is not None else np.full(venv.model.n_items, np.nan))
    novelty: list[float] = []
    venv.seed(seed)
    obs: dict[str, np.ndarray] = venv.reset()
    running = np.zeros(venv.num_envs)
    steps = np.zeros(venv.num_envs, dtype=np.int64)
    finished = np.zeros(venv.num_envs, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    shown = np.zeros(venv.model.n_items, dtype=bool)
    emb = venv.model.item_embeddings.astype(np.float64)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    emb_sum = np.zeros((venv.num_envs, unit.shape[1]))
    diversity: list[float] = []
    while finished.min() < episodes_per_user:
        active = finished < episodes_per_user
        next_obs, rewards, dones, infos = venv.step(policy.act(obs, venv))
        obs = next_obs
        items = np.array([i["item"] for i in infos], dtype=np.int64)
        shown[items[active]] = True
        novelty.extend(info[items[active]].tolist())
        emb_sum += unit[items]
        running += rewards
        steps += 1
        for i in np.flatnonzero(dones & active):
            returns.append(float(running[i]))
            lengths.append(int(steps[i]))
            n = steps[i]
            if n > 1:  # mean pairwise cosine similarity from the norm of the sum of unit vectors
                diversity.append(1.0 - float((emb_sum[i] @ emb_sum[i] - n) / (n * (n - 1))))
        finished += dones
        running[dones] = 0.0
        steps[dones] = 0
        emb_sum[dones] = 0.0
    return EpisodeStats(np.asarray(returns), np.asarray(lengths), float(shown.mean()),
                        float(np.mean(diversity)) if diversity else float("nan"), float(np.mean(novelty)))


def summarize(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t confidence interval (n - 1 degrees of freedom)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), half
