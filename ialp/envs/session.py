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

    k: int

    def propose(self, model: UserModel, history: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Candidate item indices, int64 (B, k), given past items (B, H; -1 = empty) and per-user keys."""
        ...


@dataclass(frozen=True)
class RandomCandidates:
    """K distinct items drawn uniformly per user and step (a stand-in until a recommender is plugged in)."""

    k: int

    def propose(self, model: UserModel, history: np.ndarray, keys: np.ndarray) -> np.ndarray:
        scores = crng.uniform(keys, model.n_items)
        return np.argpartition(scores, self.k - 1, axis=1)[:, : self.k].astype(np.int64)


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
        candidates: optional candidate provider; the action then indexes its K proposals.
    """

    def __init__(self, model: UserModel, n: int, leave_rules: Sequence[LeaveRule] = (), history_len: int = 10,
                 repeat: RepeatMode = "allow", repeat_penalty: float = 0.0,
                 candidates: CandidateProvider | None = None) -> None:
        if history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {history_len}")
        if repeat not in REPEAT_MODES:
            raise ValueError(f"repeat must be one of {REPEAT_MODES}, got {repeat!r}")
        if candidates is not None and not 1 <= candidates.k <= model.n_items:
            raise ValueError(f"candidate k must be in [1, {model.n_items}], got {candidates.k}")
        self.model, self.n = model, n
        self.leave_rules = tuple(leave_rules)
        self.history_len, self.repeat, self.repeat_penalty = history_len, repeat, float(repeat_penalty)
        self.candidates = candidates
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
        }
        if self.candidates is not None:
            parts["candidates"] = spaces.Box(-1.0, 1.0, (self.candidates.k, d), np.float32)
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
        self._propose(rows)

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
        leave = crng.uniform(crng.stream(key, crng.Stream.LEAVE), 1)[:, 0] < response.leave_probability
        for rule, state in zip(self.leave_rules, self.rule_states, strict=True):
            leave |= rule.leaves(self.model, state, items, response.reward, self.hist_items)
        if self.consumed.shape[1]:
            repeat = self.consumed[self._rows, items]
            self.consumed[self._rows, items] = True
            reward = np.where(repeat, self.repeat_penalty, reward)
            if self.repeat == "forbid":
                leave |= repeat
        else:
            repeat = np.zeros(self.n, dtype=bool)
        self._push(items, reward)
        self.last_items = items
        self.t += 1
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
               "mask": self._unroll(self.hist_mask, rows), "user": self.model.user_features(state).copy()}
        if self.candidates is not None:
            obs["candidates"] = self.model.item_embeddings[self.cand_items if rows is None else self.cand_items[rows]]
        return obs

    def action_masks(self) -> np.ndarray:
        """Boolean (B, n_actions): False where the action would repeat an item under ``forbid``."""
        if self.repeat != "forbid":
            return np.ones((self.n, self.n_actions), dtype=bool)
        seen = self.consumed if self.candidates is None else self.consumed[self._rows[:, None], self.cand_items]
        return ~seen
