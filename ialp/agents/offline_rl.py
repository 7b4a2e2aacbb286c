"""Offline RL baselines from d3rlpy (``DiscreteCQL``, ``DiscreteBCQ``) trained on the logged transitions.

The training users' log becomes an MDP data set (:func:`logged_transitions`): one episode per user in time
order, the observation of each logged interaction is the one an environment shows in that state
(:meth:`~ialp.agents.distill.StateSample.observations`, flattened in the order of :data:`OBS_KEYS`), the action is
the logged item and the reward is the logged feedback (or a learned reward model's). The Q-network scores the
whole catalogue, so these baselines act in catalogue environments (``Discrete(n_items)``) only; the returned
:class:`OfflineRLPolicy` is evaluated by :func:`ialp.eval.evaluate` like every other method.

Needs ``pip install "ialp[offline]"``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ialp.agents.common import World
from ialp.agents.distill import StateSample
from ialp.config import OfflineRLConfig
from ialp.envs.vector import BatchedRecEnv
from ialp.rewards.model import RewardModel

OBS_KEYS = ("history", "feedback", "mask", "user")
"""Observation keys the networks read, in the order they are flattened; other keys are ignored."""
ALGOS = ("cql", "bcq")


def _d3rlpy() -> Any:
    """The d3rlpy module (imported on first use), its ``dataset info`` chatter silenced."""
    try:
        import d3rlpy
        import structlog
    except ImportError as exc:
        raise ImportError('the offline RL baselines (cql, bcq) need d3rlpy: pip install "ialp[offline]"') from exc
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def flatten_observation(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Batch-first observation dict → float32 (B, D): :data:`OBS_KEYS` flattened and concatenated.

    Raises:
        ValueError: In candidate-slot environments (a ``candidates`` key): these policies score the catalogue.
    """
    if "candidates" in obs:
        raise ValueError("offline RL baselines act on the whole catalogue; this environment uses candidate slots "
                         "(env candidates=None is needed)")
    b = len(obs["history"])
    return np.concatenate([np.asarray(obs[k], dtype=np.float32).reshape(b, -1) for k in OBS_KEYS], axis=1)


def _flat(obs: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
    return flatten_observation(obs) if isinstance(obs, dict) else np.asarray(obs, dtype=np.float32)


@dataclass
class LoggedTransitions:
    """The training log as an MDP: rows in log order (users' episodes one after another, each in time order).

    Attributes:
        observations: (T, D) float32, :func:`flatten_observation` of the state before each logged interaction.
        actions: (T,) int64 logged item indices.
        rewards: (T,) float32 logged feedback, or a reward model's reward.
        terminals: (T,) float32, 1 at each user's last logged interaction.
        timeouts: (T,) float32, 1 where ``max_transitions`` cut a user's episode short.
        users: (T,) the log's user index of each row.
        rows: (T,) the row of ``world.log``.
        n_items: Catalogue size (the action space).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    users: np.ndarray
    rows: np.ndarray
    n_items: int

    def __len__(self) -> int:
        return len(self.actions)

    def to_d3rlpy(self) -> Any:
        """A ``d3rlpy.dataset.MDPDataset`` with a discrete action space of ``n_items`` actions."""
        d3rlpy = _d3rlpy()
        return d3rlpy.dataset.MDPDataset(self.observations, self.actions[:, None], self.rewards[:, None],
                                         self.terminals, self.timeouts, action_space=d3rlpy.ActionSpace.DISCRETE,
                                         action_size=self.n_items)


def logged_transitions(world: World, max_transitions: int = 20_000, reward_model: RewardModel | None = None,
                       seed: int = 0) -> LoggedTransitions:
    """The world's training log as transitions (see :class:`LoggedTransitions`).

    Args:
        world: Its ``log`` (sorted by user, then time) and the observation it would show (history window of
            ``env_kwargs["history_len"]`` items, default 10).
        max_transitions: Whole users' episodes, users drawn in a random order, until this many transitions; the
            last user's episode is cut (a timeout, not a terminal) when it does not fit.
        reward_model: When given, ``reward_model.reward(obs, items)`` replaces the logged feedback as the reward.
        seed: Seed of the user order.
    """
    if max_transitions < 1:
        raise ValueError(f"max_transitions must be >= 1, got {max_transitions}")
    log = world.log
    w = int(world.env_kwargs.get("history_len", 10))
    counts = np.bincount(log.users, minlength=log.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    users = np.random.default_rng(seed).permutation(np.flatnonzero(counts))
    taken = np.minimum(counts[users], np.maximum(max_transitions - np.cumsum(counts[users]) + counts[users], 0))
    keep = taken > 0
    users, taken = users[keep], taken[keep]
    order = np.argsort(users)
    users, taken = users[order], taken[order]
    rows = np.concatenate([np.arange(starts[u], starts[u] + n) for u, n in zip(users, taken, strict=True)])
    ends = np.cumsum(taken) - 1
    terminals = np.zeros(len(rows), dtype=np.float32)
    timeouts = np.zeros(len(rows), dtype=np.float32)
    cut = taken < counts[users]
    terminals[ends[~cut]] = 1.0
    timeouts[ends[cut]] = 1.0
    idx = rows[:, None] + np.arange(-w, 0)
    valid = idx >= starts[log.users[rows]][:, None]
    safe = np.maximum(idx, 0)
    sample = StateSample(np.where(valid, log.items[safe], -1), np.where(valid, log.feedback[safe], 0.0),
                         log.users[rows], rows, log.items[rows], log.feedback[rows])
    obs = sample.observations(world)
    actions = log.items[rows].astype(np.int64)
    rewards = log.feedback[rows] if reward_model is None else reward_model.reward(obs, actions)
    return LoggedTransitions(flatten_observation(obs), actions, np.asarray(rewards, dtype=np.float32), terminals,
                             timeouts, log.users[rows], rows, int(world.target.n_items))


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators (d3rlpy samples minibatches from NumPy's) and restore
    them afterwards, so training is reproducible without changing the caller's random streams."""
    np_state = np.random.get_state()  # noqa: NPY002 (d3rlpy draws its minibatches from the legacy global generator)
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
        torch.set_rng_state(torch_state)


class OfflineRLPolicy:
    """Greedy on a trained d3rlpy Q-function over the catalogue (BCQ: among the actions its imitator allows).

    Items listed in an observation's ``blocked`` key (item ids as floats, -1 = empty slot) are never chosen: the
    no-repeat setting.

    Args:
        algo: A trained ``DiscreteCQL`` or ``DiscreteBCQ``.
        kind: ``"cql"`` or ``"bcq"``.
        action_flexibility: BCQ's τ (as in training).
    """

    def __init__(self, algo: Any, kind: str, action_flexibility: float = 0.3) -> None:
        if kind not in ALGOS:
            raise ValueError(f"kind must be one of {ALGOS}, got {kind!r}")
        self.algo, self.kind, self.action_flexibility = algo, kind, action_flexibility

    def q_values(self, obs: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """Q-values (B, n_items) of every item, the mean over the critics, for observation dicts or rows already
        flattened (:attr:`LoggedTransitions.observations`)."""
        x = torch.from_numpy(_flat(obs))
        with torch.no_grad():
            return torch.stack([q(x).q_value for q in self.algo.impl.q_function]).mean(0).numpy()

    def scores(self, obs: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """What :meth:`act` maximises (B, n_items): the Q-values; for BCQ the actions its imitator rules out are
        moved below all the others (order kept), as d3rlpy's own ``predict`` does."""
        q = self.q_values(obs)
        if self.kind == "cql":
            return q
        with torch.no_grad():
            logits = self.algo.impl.modules.imitator(torch.from_numpy(_flat(obs))).logits
            logp = torch.log_softmax(logits, dim=1).numpy()
        ruled_out = logp - logp.max(axis=1, keepdims=True) <= math.log(self.action_flexibility)
        span = q.max(axis=1, keepdims=True) - q.min(axis=1, keepdims=True) + 1.0
        return q - ruled_out * span

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv | None = None) -> np.ndarray:
        """The best-scoring item not yet shown, int64 (B,)."""
        scores = self.scores(obs)
        if "blocked" in obs:
            shown = np.asarray(obs["blocked"]).astype(np.int64).reshape(len(scores), -1)
            rows, cols = np.nonzero(shown >= 0)
            scores[rows, shown[rows, cols]] = -np.inf
        return scores.argmax(axis=1).astype(np.int64)


def train_offline_rl(algo: str, world: World, n_steps: int | None = None, seed: int = 0,
                     config: OfflineRLConfig | None = None, reward_model: RewardModel | None = None,
                     transitions: LoggedTransitions | None = None) -> OfflineRLPolicy:
    """Train d3rlpy's ``DiscreteCQL`` (``algo="cql"``) or ``DiscreteBCQ`` (``"bcq"``) on the logged transitions.

    Args:
        algo: ``"cql"`` or ``"bcq"``.
        world: The experiment's world (catalogue environments only).
        n_steps: Gradient steps (default ``config.steps``).
        seed: Seeds the user order of the data set, the initialisation and the minibatches (CPU, deterministic).
        config: Hyperparameters (defaults: :class:`OfflineRLConfig`).
        reward_model: Reward of the transitions instead of the logged feedback (see :func:`logged_transitions`).
        transitions: A data set already built (then ``reward_model`` and ``config.max_transitions`` are unused).

    Raises:
        ValueError: For an unknown ``algo`` or a world whose environments act on candidate slots.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    if world.env_kwargs.get("candidates") is not None:
        raise ValueError("offline RL baselines act on the whole catalogue; this world's environments use candidate "
                         "slots (a candidates section)")
    cfg = config or OfflineRLConfig()
    n_steps = cfg.steps if n_steps is None else n_steps
    d3rlpy = _d3rlpy()
    data = logged_transitions(world, cfg.max_transitions, reward_model, seed) if transitions is None else transitions
    common: dict[str, Any] = {
        "encoder_factory": d3rlpy.models.VectorEncoderFactory(hidden_units=list(cfg.hidden)),
        "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate, "gamma": cfg.gamma,
        "target_update_interval": cfg.target_update_interval}
    if algo == "cql":
        learner = d3rlpy.algos.DiscreteCQLConfig(alpha=cfg.alpha, **common).create(device=False)
    else:
        learner = d3rlpy.algos.DiscreteBCQConfig(action_flexibility=cfg.action_flexibility, beta=cfg.beta,
                                                 **common).create(device=False)
    with _seeded(seed):
        learner.fit(data.to_d3rlpy(), n_steps=n_steps, n_steps_per_epoch=n_steps, show_progress=False,
                    logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=n_steps + 1)
    return OfflineRLPolicy(learner, algo, cfg.action_flexibility)
