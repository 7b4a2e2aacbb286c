"""Leave rules: when a simulated user quits the session (EasyRL4Rec / DORL style).

Each rule decides, for a batch of users, whether the item just shown makes the user leave. Rules
combine with a user model's own leave probability: a user leaves when any of them says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ialp.simulators.base import UserModel, UserState


class LeaveRule(ABC):
    """Decides which users quit after being shown ``items``."""

    window: int = 0
    """How many past items the rule looks at."""

    def init_state(self, n: int) -> UserState:
        """Per-user state of the rule for ``n`` new users."""
        return {}

    @abstractmethod
    def leaves(self, model: UserModel, state: UserState, items: np.ndarray, rewards: np.ndarray,
               history: np.ndarray) -> np.ndarray:
        """Boolean (B,) mask of users who quit.

        Args:
            model: the user model (for item tags and embeddings).
            state: this rule's per-user state, updated in place.
            items: items just shown, (B,).
            rewards: the users' feedback to them, (B,).
            history: previously shown items, (B, H), most recent last, -1 where empty.
        """


@dataclass(frozen=True)
class TagOverlapLeave(LeaveRule):
    """Quit when the new item shares a tag with more than ``threshold`` of the last ``window`` items.

    This is the KuaiEnv/DORL exit rule: seeing the same kind of content again and again bores users. An item
    always counts as overlapping with itself, so repeating an untagged item cannot dodge the rule.
    """

    window: int = 5
    threshold: int = 2

    def leaves(self, model: UserModel, state: UserState, items: np.ndarray, rewards: np.ndarray,
               history: np.ndarray) -> np.ndarray:
        recent = history[:, -self.window:]
        bits = model.tag_bits
        shared = (bits[np.maximum(recent, 0)] & bits[items][:, None, :]).any(axis=2) | (recent == items[:, None])
        shared &= recent >= 0
        return np.asarray(shared.sum(axis=1) > self.threshold)


@dataclass(frozen=True)
class DistanceLeave(LeaveRule):
    """Quit when the new item lies within ``radius`` (Euclidean, in item-embedding space) of any of
    the last ``window`` items: the user has seen something too similar too recently."""

    window: int = 3
    radius: float = 0.1

    def leaves(self, model: UserModel, state: UserState, items: np.ndarray, rewards: np.ndarray,
               history: np.ndarray) -> np.ndarray:
        recent = history[:, -self.window:]
        emb = model.item_embeddings
        diff = emb[np.maximum(recent, 0)] - emb[items][:, None, :]
        close = ((diff * diff).sum(axis=2) <= self.radius**2) & (recent >= 0)
        return np.asarray(close.any(axis=1))


@dataclass(frozen=True)
class LowRewardLeave(LeaveRule):
    """Quit after ``patience`` consecutive rewards below ``threshold``."""

    threshold: float = 2.5
    patience: int = 3

    def init_state(self, n: int) -> UserState:
        return {"low_streak": np.zeros(n, dtype=np.int64)}

    def leaves(self, model: UserModel, state: UserState, items: np.ndarray, rewards: np.ndarray,
               history: np.ndarray) -> np.ndarray:
        streak = state["low_streak"]
        low = rewards < self.threshold
        streak[:] = np.where(low, streak + 1, 0)
        return np.asarray(streak >= self.patience)


LEAVE_RULES: dict[str, type[LeaveRule]] = {
    "tag": TagOverlapLeave,
    "distance": DistanceLeave,
    "low_reward": LowRewardLeave,
}


def make_leave_rule(spec: str | dict | LeaveRule) -> LeaveRule:
    """Build a rule from a name (``"tag"``), a mapping (``{"rule": "tag", "window": 5}``) or a rule."""
    if isinstance(spec, LeaveRule):
        return spec
    if isinstance(spec, str):
        spec = {"rule": spec}
    params = dict(spec)
    name = params.pop("rule", None)
    if name not in LEAVE_RULES:
        raise ValueError(f"unknown leave rule {name!r}; choose one of {sorted(LEAVE_RULES)}")
    try:
        return LEAVE_RULES[name](**params)
    except TypeError as exc:
        raise ValueError(f"leave rule {name!r}: {exc}") from None
