"""The simulation core shared by the single and the batched environment.

``SessionBatch`` holds B users' sessions as arrays and advances all of them with one call, so
that ``RecEnv`` (B = 1) and ``BatchedRecEnv`` (B users) run the same code and, seeded alike,
produce bit-identical trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from ialp import random as crng
from ialp.simulators.base import UserModel, UserState
from ialp.simulators.leave import LeaveRule

RepeatMode = Literal["allow", "penalize", "forbid"]
REPEAT_MODES: tuple[str, ...] = ("allow", "penalize", "forbid")


@runtime_checkable
class CandidateProvider(Protocol):
    """Proposes the K items a policy chooses among at each step (action = slot in that list)."""

    @property
    def k(self) -> int:
        """Number of candidates per step."""
        ...

    def propose(self, model: UserModel, history: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Candidate item indices, int64 (B, k), given past items (B, H; -1 = empty) and per-user keys."""
        ...


@runtime_checkable
class CandidateTracker(Protocol):
    """Candidates of a fixed batch of B sessions that keeps per-session state between steps (e.g. an
    incremental user state and a candidate pool), made by a provider's optional ``tracker(model, n)``."""

    def begin(self, rows: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Sessions ``rows`` start with ``history`` (R, H; -1 = empty); their candidates, int64 (R, k)."""
        ...

    def advance(self, items: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Every session consumed ``items`` (B,) and ``history`` (B, H) ends with them; candidates, int64 (B, k)."""
        ...


@dataclass(frozen=True)
class RandomCandidates:
    """K distinct items drawn uniformly per user and step (a stand-in until a recommender is plugged in)."""

    k: int

    def propose(self, model: UserModel, history: np.ndarray, keys: np.ndarray) -> np.ndarray:
        scores = crng.uniform(keys, model.n_items)
        return np.argpartition(scores, self.k - 1, axis=1)[:, : self.k].astype(np.int64)


@dataclass(frozen=True)
class ItemKNNCandidates:
    """K items per user and step: nearest neighbours of the user's ``recent`` last items, filled up at random.

    Neighbours are by cosine similarity of the item embeddings the agent observes (``model.item_embeddings``),
    computed once per model; the lists of the recent items are interleaved rank by rank (the best neighbour of
    each recent item first), duplicates dropped, and the rest filled with distinct uniform items. Empty
    histories get random candidates. Cost per step is O(B * K), independent of the catalogue size.
    """

    k: int
    recent: int = 3

    def __post_init__(self) -> None:
        if self.k < 1 or self.recent < 1:
            raise ValueError(f"k and recent must be >= 1, got {self.k}, {self.recent}")

    def neighbours(self, model: UserModel) -> np.ndarray:
        """(N, per) nearest neighbours of every item (itself excluded), best first; cached on the model."""
        per = -(-self.k // self.recent)
        cache: dict[int, np.ndarray] = model.__dict__.setdefault("_knn_cache", {})
        if per not in cache:
            emb = model.item_embeddings.astype(np.float32)
            unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            n = len(unit)
            m = min(per, n - 1)
            out = np.zeros((n, m), dtype=np.int64)
            for start in range(0, n, 1024):
                sim = unit[start:start + 1024] @ unit.T
                sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
                top = np.argpartition(-sim, m - 1, axis=1)[:, :m]
                order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
                out[start:start + len(sim)] = np.take_along_axis(top, order, axis=1)
            cache[per] = out
        return cache[per]

    def propose(self, model: UserModel, history: np.ndarray, keys: np.ndarray) -> np.ndarray:
        table = self.neighbours(model)
        recent = history[:, -self.recent:]
        near = np.where(recent[..., None] >= 0, table[np.maximum(recent, 0)], -1)  # (B, r, per)
        near = near[:, ::-1].transpose(0, 2, 1).reshape(len(history), -1)  # rank by rank, latest item first
        fill = np.minimum((crng.uniform(keys, self.k) * model.n_items).astype(np.int64), model.n_items - 1)
        pool = np.concatenate([near, fill], axis=1)
        return _first_distinct(pool, self.k, model.n_items, keys)


def _first_distinct(pool: np.ndarray, k: int, n_items: int, keys: np.ndarray) -> np.ndarray:
    """The first ``k`` distinct non-negative entries of each row (random distinct items where too few)."""
    b = len(pool)
    order = np.argsort(pool, axis=1, kind="stable")
    sorted_pool = np.take_along_axis(pool, order, axis=1)
    first = np.ones_like(sorted_pool, dtype=bool)
    first[:, 1:] = sorted_pool[:, 1:] != sorted_pool[:, :-1]
    keep = np.empty_like(first)
    np.put_along_axis(keep, order, first & (sorted_pool >= 0), axis=1)
    slot = np.cumsum(keep, axis=1) - 1  # output position of each kept entry, in the pool's order
    take = keep & (slot < k)
    out = np.full((b, k), -1, dtype=np.int64)
    rows = np.broadcast_to(np.arange(b)[:, None], pool.shape)
    out[rows[take], slot[take]] = pool[take]
    short = out[:, -1] < 0
    if short.any():  # rare: fewer than k distinct items proposed
        rows_short = np.flatnonzero(short)
        scores = crng.uniform(crng.derive(keys[rows_short], 13), n_items)
        out[rows_short] = np.argpartition(scores, k - 1, axis=1)[:, :k]
    return out


class SessionBatch:
    """B concurrent user sessions over one user model.

    Args:
        model: the ground-truth user model.
        n: number of users B.
        leave_rules: extra leave rules, combined (any) with the model's own leave probability.
        history_len: number of past items in the observation window.
        repeat: ``"allow"`` repeats, ``"penalize"`` them (reward = ``repeat_penalty``, session goes
            on) or ``"forbid"`` them (reward = ``repeat_penalty`` and the user leaves; agents that can
            mask actions read ``action_masks()``).
        repeat_penalty: reward given for a penalised or forbidden repeat.
        candidates: optional candidate provider; the action then indexes its K proposals. A provider with a
            ``tracker(model, n)`` method that returns a ``CandidateTracker`` proposes through it (stateful,
            incremental) instead of ``propose``.
        leave: whether users may leave at all (``False``: neither the model's leave probability nor any
            rule ends a session; EasyRL4Rec's fixed-length setting).
        warm_start: items a session starts with in the observation window (at most ``history_len``):
            the user's own recent logged items when the model has them (``UserModel.warm_history``),
            otherwise a simulated warm-up of uniformly random items that the user consumes (its
            state evolves; it cannot leave). Leave rules and repeats look at in-session items only.
        max_blocked: length of the ``blocked`` observation (items that may not be recommended now).
    """

    def __init__(self, model: UserModel, n: int, leave_rules: Sequence[LeaveRule] = (), history_len: int = 10,
                 repeat: RepeatMode = "allow", repeat_penalty: float = 0.0,
                 candidates: CandidateProvider | None = None, leave: bool = True, warm_start: int = 0,
                 max_blocked: int = 50) -> None:
        if history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {history_len}")
        if not 0 <= warm_start <= history_len:
            raise ValueError(f"warm_start must be in [0, history_len={history_len}], got {warm_start}")
        if max_blocked < 1:
            raise ValueError(f"max_blocked must be >= 1, got {max_blocked}")
        if repeat not in REPEAT_MODES:
            raise ValueError(f"repeat must be one of {REPEAT_MODES}, got {repeat!r}")
        if candidates is not None and not 1 <= candidates.k <= model.n_items:
            raise ValueError(f"candidate k must be in [1, {model.n_items}], got {candidates.k}")
        self.model, self.n = model, n
        self.leave_rules = tuple(leave_rules)
        self.history_len, self.repeat, self.repeat_penalty = history_len, repeat, float(repeat_penalty)
        self.candidates = candidates
        make_tracker = getattr(candidates, "tracker", None)
        self.tracker: CandidateTracker | None = make_tracker(model, n) if callable(make_tracker) else None
        self.leave, self.warm_start = bool(leave), int(warm_start)
        self.n_actions = candidates.k if candidates is not None else model.n_items
        depth = max([history_len, *(r.window for r in self.leave_rules)])
        d = model.item_embeddings.shape[1]
        self.roots = np.zeros(n, dtype=np.uint64)
        self.episode = np.zeros(n, dtype=np.int64)
        self.t = np.zeros(n, dtype=np.int64)
        self.hist_items = np.full((n, depth), -1, dtype=np.int64)
        # Observation windows are ring buffers over a slot shared by all rows (every user steps
        # together); observation() unrolls them oldest-first into the copy it returns anyway.
        self.hist_emb = np.zeros((n, history_len, d), dtype=np.float32)
        self.hist_feedback = np.zeros((n, history_len), dtype=np.float32)
        self.hist_mask = np.zeros((n, history_len), dtype=np.float32)
        self._head = 0
        self.consumed = np.zeros((n, model.n_items if repeat != "allow" else 0), dtype=bool)
        self.last_items = np.full(n, -1, dtype=np.int64)
        self.cand_items = np.zeros((n, candidates.k if candidates else 0), dtype=np.int64)
        self.blocked = np.full((n, max_blocked), -1, dtype=np.int64)
        self.user_state: UserState = {}
        self.rule_states: list[UserState] = [r.init_state(n) for r in self.leave_rules]
        self._rows = np.arange(n)
        self.observation_space = self._make_space()

    def _make_space(self) -> spaces.Dict:
        lo, hi = self.model.reward_range
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # empty slots hold 0
        if self.repeat != "allow":
            lo, hi = min(lo, self.repeat_penalty), max(hi, self.repeat_penalty)
        w, d = self.hist_emb.shape[1:]
        parts: dict[str, spaces.Space] = {
            "history": spaces.Box(-1.0, 1.0, (w, d), np.float32),
            "feedback": spaces.Box(lo, hi, (w,), np.float32),
            "mask": spaces.Box(0.0, 1.0, (w,), np.float32),
            "user": spaces.Box(-1.0, 1.0, (self.model.user_feature_dim,), np.float32),
            "blocked": spaces.Box(-1.0, self.model.n_items - 1, (self.blocked.shape[1],), np.float32),
        }
        if self.candidates is not None:
            parts["candidates"] = spaces.Box(-1.0, 1.0, (self.candidates.k, d), np.float32)
            parts["candidate_ids"] = spaces.Box(0.0, self.model.n_items - 1, (self.candidates.k,), np.float32)
            parts["candidate_mask"] = spaces.Box(0.0, 1.0, (self.candidates.k,), np.float32)
        return spaces.Dict(parts)

    def begin(self, rows: np.ndarray) -> None:
        """Start a new episode (for the current ``roots``/``episode`` counters) for the rows given."""
        keys = crng.stream(crng.derive(self.roots[rows], self.episode[rows]), crng.Stream.USER_INIT)
        fresh = self.model.init_state(keys)
        if not self.user_state:
            self.user_state = {k: np.zeros((self.n, *v.shape[1:]), v.dtype) for k, v in fresh.items()}
        for k, v in fresh.items():
            self.user_state[k][rows] = v
        for rule, state in zip(self.leave_rules, self.rule_states, strict=True):
            for k, v in rule.init_state(len(self._rows[rows])).items():
                state[k][rows] = v
        self.t[rows] = 0
        self.hist_items[rows] = -1
        self.hist_emb[rows] = 0.0
        self.hist_feedback[rows] = 0.0
        self.hist_mask[rows] = 0.0
        if self.consumed.shape[1]:
            self.consumed[rows] = False
        self.blocked[rows] = -1
        if self.warm_start:
            self._warm(rows, keys)
        if self.tracker is not None:
            self.cand_items[rows] = self.tracker.begin(rows, self.hist_items[rows])
        else:
            self._propose(rows)

    def _warm(self, rows: np.ndarray, keys: np.ndarray) -> None:
        """Fill the observation window of new sessions with ``warm_start`` items (see the class docstring)."""
        n, w = self.warm_start, self.history_len
        state = {k: v[rows] for k, v in self.user_state.items()}
        prior = self.model.warm_history(state, n)
        if prior is None:  # simulated warm-up: the user consumes random items, and its state moves on
            items = (crng.uniform(crng.derive(keys, 11), n) * self.model.n_items).astype(np.int64)
            items = np.minimum(items, self.model.n_items - 1)
            feedback = np.zeros((len(rows), n), dtype=np.float32)
            for j in range(n):
                feedback[:, j] = self.model.respond(state, items[:, j], crng.derive(keys, 12, j)).reward
            for k, v in state.items():
                self.user_state[k][rows] = v
        else:
            items, feedback = prior
        valid = items >= 0
        self.hist_items[rows, -n:] = items
        slots = (self._head - n + np.arange(n)) % w
        self.hist_emb[rows[:, None], slots] = self.model.item_embeddings[np.maximum(items, 0)] * valid[..., None]
        self.hist_feedback[rows[:, None], slots] = np.where(valid, feedback, 0.0)
        self.hist_mask[rows[:, None], slots] = valid

    def _propose(self, rows: np.ndarray | slice) -> None:
        if self.candidates is None:
            return
        keys = crng.stream(crng.derive(self.roots[rows], self.episode[rows], self.t[rows]), crng.Stream.CANDIDATES)
        self.cand_items[rows] = self.candidates.propose(self.model, self.hist_items[rows], keys)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Show one item to every user.

        Returns:
            ``(reward, terminated, info)`` where ``info`` holds per-user arrays ``item``,
            ``expected_reward`` and ``repeat``.
        """
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n)
        if not ((actions >= 0) & (actions < self.n_actions)).all():
            bad = actions[(actions < 0) | (actions >= self.n_actions)][0]
            raise ValueError(f"action {bad} is outside the action space [0, {self.n_actions})")
        items = self.cand_items[self._rows, actions] if self.candidates is not None else actions
        key = crng.derive(self.roots, self.episode, self.t)
        response = self.model.respond(self.user_state, items, crng.stream(key, crng.Stream.RESPONSE))
        reward = response.reward
        if self.leave:
            leave = crng.uniform(crng.stream(key, crng.Stream.LEAVE), 1)[:, 0] < response.leave_probability
            history = self.hist_items
            if self.warm_start:  # rules judge the session, not the logged items it started from
                depth = history.shape[1]
                history = np.where(np.arange(depth) >= depth - self.t[:, None], history, -1)
            for rule, state in zip(self.leave_rules, self.rule_states, strict=True):
                leave |= rule.leaves(self.model, state, items, response.reward, history)
        else:
            leave = np.zeros(self.n, dtype=bool)
        if self.consumed.shape[1]:
            repeat = self.consumed[self._rows, items]
            self.consumed[self._rows, items] = True
            reward = np.where(repeat, self.repeat_penalty, reward)
            if self.repeat == "forbid":
                leave |= repeat
                slot = self.t < self.blocked.shape[1]
                self.blocked[self._rows[slot], self.t[slot]] = items[slot]
        else:
            repeat = np.zeros(self.n, dtype=bool)
        self._push(items, reward)
        self.last_items = items
        self.t += 1
        if self.tracker is not None:
            self.cand_items[:] = self.tracker.advance(items, self.hist_items)
        else:
            self._propose(slice(None))
        return reward, leave, {"item": items, "expected_reward": response.expected, "repeat": repeat}

    def _push(self, items: np.ndarray, reward: np.ndarray) -> None:
        self.hist_items[:, :-1] = self.hist_items[:, 1:]
        self.hist_items[:, -1] = items
        slot = self._head
        self.hist_emb[:, slot] = self.model.item_embeddings[items]
        self.hist_feedback[:, slot] = reward
        self.hist_mask[:, slot] = 1.0
        self._head = (slot + 1) % self.history_len

    def _unroll(self, buf: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """A copy of a ring buffer (of the given rows) with its window ordered oldest first."""
        h = self._head
        if rows is not None:
            buf = buf[rows]
            return buf if h == 0 else np.roll(buf, -h, axis=1)
        return buf.copy() if h == 0 else np.concatenate((buf[:, h:], buf[:, :h]), axis=1)

    def observation(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Copies of the observation arrays of all users (or of ``rows``), batch-first."""
        state = self.user_state if rows is None else {k: v[rows] for k, v in self.user_state.items()}
        obs = {"history": self._unroll(self.hist_emb, rows), "feedback": self._unroll(self.hist_feedback, rows),
               "mask": self._unroll(self.hist_mask, rows), "user": self.model.user_features(state).copy(),
               "blocked": (self.blocked if rows is None else self.blocked[rows]).astype(np.float32)}
        if self.candidates is not None:
            cand = self.cand_items if rows is None else self.cand_items[rows]
            obs["candidates"] = self.model.item_embeddings[cand]
            obs["candidate_ids"] = cand.astype(np.float32)
            obs["candidate_mask"] = self.action_masks(rows).astype(np.float32)
        return obs

    def action_masks(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Boolean (B, n_actions) (or of ``rows``): False where the action would repeat an item under ``forbid``."""
        n = self.n if rows is None else len(rows)
        if self.repeat != "forbid":
            return np.ones((n, self.n_actions), dtype=bool)
        rows = self._rows if rows is None else rows
        seen = self.consumed[rows] if self.candidates is None else self.consumed[rows[:, None], self.cand_items[rows]]
        return ~seen


class SessionFace:
    """What code outside ``ialp.envs`` may read of a batch of sessions beyond ``step``'s ``infos``: copies, never the
    session's own arrays, so that ``SessionBatch`` can change without breaking its readers.

    ``BatchedRecEnv.face`` and ``RecEnv.face`` return one. The *ground-truth* readers (``user_state``,
    ``expected_rewards``) are for oracles only (upper bounds and the oracle LLM), which know the hidden user.
    """

    def __init__(self, session: SessionBatch) -> None:
        self._session = session

    @property
    def num_users(self) -> int:
        """Users in the batch."""
        return self._session.n

    @property
    def reward_range(self) -> tuple[float, float]:
        """The user model's feedback range."""
        lo, hi = self._session.model.reward_range
        return float(lo), float(hi)

    def window_items(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Item ids of the observation window, (B, W) oldest first, -1 where empty (aligned with ``feedback``)."""
        s = self._session
        items = s.hist_items[:, -s.history_len:]
        return (items if rows is None else items[rows]).copy()

    def window_feedback(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Feedback of those items, (B, W), as the observation shows it (0 where empty)."""
        return self._session._unroll(self._session.hist_feedback, rows)

    def candidate_items(self) -> np.ndarray | None:
        """Item ids of the current candidate slots, (B, K); None without a candidate provider."""
        s = self._session
        return None if s.candidates is None else s.cand_items.copy()

    def candidate_tracker(self) -> CandidateTracker | None:
        """The stateful tracker proposing the candidate slots (to inspect, e.g. its pool size), or None when the
        provider's ``propose`` runs at every step."""
        return self._session.tracker

    def steps(self) -> np.ndarray:
        """Steps taken in each user's current session, (B,) (0 right after a reset)."""
        return self._session.t.copy()

    def consumed(self) -> np.ndarray | None:
        """(B, n_items) True for the items of each session so far; None under ``repeat="allow"`` (not tracked)."""
        s = self._session
        return s.consumed.copy() if s.consumed.shape[1] else None

    def user_state(self, rows: np.ndarray | None = None) -> UserState:
        """Ground truth: a copy of the hidden user state (of all users or of ``rows``)."""
        return {k: (v if rows is None else v[rows]).copy() for k, v in self._session.user_state.items()}

    def expected_rewards(self) -> np.ndarray:
        """Ground truth: every item's expected reward for each user now, (B, n_items)."""
        s = self._session
        return s.model.expected_rewards(s.user_state)
