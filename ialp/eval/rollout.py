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


@dataclass
class RandomPolicy:
    """Uniformly random actions (from its own seeded generator)."""

    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        return self._rng.integers(0, venv.action_space.n, venv.num_envs)  # type: ignore[attr-defined]


class OraclePolicy:
    """Greedy on the simulator's ground truth: the item with the highest expected reward now.

    An upper bound on myopic policies (it reads the hidden user state); not one on long-term return,
    since it ignores boredom and leaving.
    """

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        session = venv.session
        scores = session.model.expected_rewards(session.user_state)
        if session.consumed.shape[1]:
            scores = np.where(session.consumed, -np.inf, scores)
        if session.candidates is not None:
            return np.argmax(np.take_along_axis(scores, session.cand_items, axis=1), axis=1)
        return np.argmax(scores, axis=1)


@dataclass
class SB3Policy:
    """A trained stable-baselines3 model, acting deterministically unless told otherwise."""

    model: Any
    deterministic: bool = True

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64)


@dataclass(frozen=True)
class EpisodeStats:
    """Per-episode returns and lengths, and the catalogue coverage over all recommendations."""

    returns: np.ndarray
    lengths: np.ndarray
    coverage: float

    @property
    def avg_reward(self) -> float:
        """Mean reward per step over all episodes."""
        return float(self.returns.sum() / max(int(self.lengths.sum()), 1))


def evaluate(policy: Policy, venv: BatchedRecEnv, seed: int, episodes_per_user: int = 1) -> EpisodeStats:
    """Run ``policy`` until each of the B users has finished ``episodes_per_user`` episodes.

    Every user contributes the same number of episodes, so short episodes are not over-counted.
    """
    venv.seed(seed)
    obs: dict[str, np.ndarray] = venv.reset()  # type: ignore[assignment]
    running = np.zeros(venv.num_envs)
    steps = np.zeros(venv.num_envs, dtype=np.int64)
    finished = np.zeros(venv.num_envs, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    shown = np.zeros(venv.model.n_items, dtype=bool)
    while finished.min() < episodes_per_user:
        active = finished < episodes_per_user
        next_obs, rewards, dones, _ = venv.step(policy.act(obs, venv))
        obs = next_obs  # type: ignore[assignment]
        shown[venv.session.last_items[active]] = True
        running += rewards
        steps += 1
        for i in np.flatnonzero(dones & active):
            returns.append(float(running[i]))
            lengths.append(int(steps[i]))
        finished += dones
        running[dones] = 0.0
        steps[dones] = 0
    return EpisodeStats(np.asarray(returns), np.asarray(lengths), float(shown.mean()))


def summarize(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(half)
