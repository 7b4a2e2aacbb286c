"""The user-model seam: how a batch of simulated users reacts to recommended items.

Following recsim's split, a user model owns the *user state* (sampled per episode), the
*response* to a consumed item (reward and state transition) and the *leave* propensity. All
methods work on a batch of B users at once with array operations; a single environment is the
case B = 1, so single and batched environments share one code path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ialp.data import ItemCatalog

UserState = dict[str, np.ndarray]
"""Per-user arrays, each with the batch as leading axis; rows are reset independently."""


@dataclass(frozen=True)
class Response:
    """What B users did with the B items they were shown.

    Attributes:
        reward: realised feedback, shape (B,).
        expected: noise-free expected feedback (the ground truth an oracle sees), shape (B,).
        leave_probability: probability that each user quits after this item, shape (B,).
    """

    reward: np.ndarray
    expected: np.ndarray
    leave_probability: np.ndarray


class UserModel(ABC):
    """Ground-truth behaviour of simulated users over a fixed item catalogue.

    Subclasses set ``catalog``, ``item_embeddings`` (float32, (N, d), scaled into [-1, 1]; what
    an agent observes about items), ``reward_range`` and ``user_feature_dim``.
    """

    catalog: ItemCatalog
    item_embeddings: np.ndarray
    reward_range: tuple[float, float]
    user_feature_dim: int

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue."""
        return len(self.catalog)

    @cached_property
    def tag_bits(self) -> np.ndarray:
        """Item tags as bit masks, ``uint64`` (N, ceil(n_tags / 64)), for fast overlap tests."""
        matrix = self.catalog.tag_matrix()
        words = max(1, -(-matrix.shape[1] // 64))
        padded = np.zeros((matrix.shape[0], words * 64), dtype=bool)
        padded[:, : matrix.shape[1]] = matrix
        packed = np.packbits(padded.reshape(matrix.shape[0], words, 64), axis=2, bitorder="little")
        return np.ascontiguousarray(packed).view(np.uint64).reshape(matrix.shape[0], words)

    @abstractmethod
    def init_state(self, keys: np.ndarray) -> UserState:
        """Sample the starting state of one new user per key (``uint64``, shape (B,))."""

    @abstractmethod
    def respond(self, state: UserState, items: np.ndarray, keys: np.ndarray) -> Response:
        """React to ``items`` (shape (B,)), updating ``state`` in place; ``keys`` seed the noise."""

    @abstractmethod
    def expected_rewards(self, state: UserState) -> np.ndarray:
        """Noise-free expected reward of every item for every user: shape (B, N). For oracles."""

    @abstractmethod
    def user_features(self, state: UserState) -> np.ndarray:
        """Observable user features, float32 in [-1, 1], shape (B, user_feature_dim)."""

    def warm_history(self, state: UserState, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The users' own last ``n`` logged items and feedback, (B, n) each, oldest first, -1 where a user has
        fewer; None when the model has no log (sessions then warm up on simulated items)."""
        return None
