"""Core containers: item catalogues, interaction logs and load reports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["InteractionLog", "ItemCatalog", "LoadReport", "LoggedData"]


def _frozen_array(values: Any, dtype: Any = None) -> np.ndarray:
    """Returns a read-only, contiguous copy of ``values``."""
    arr = np.array(values, dtype=dtype, copy=True)
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


def _id_array(values: Any) -> np.ndarray:
    """Original ids as int64 when all are integers, else as an object array of str."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return _frozen_array(arr, np.int64)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
        return _frozen_array(arr, np.int64)
    if arr.dtype.kind == "f" and arr.size == 0:
        return _frozen_array(arr, np.int64)
    return _frozen_array([str(v) for v in arr.ravel()], object)


def _hash_array(h: Any, arr: np.ndarray) -> None:
    h.update(f"{arr.dtype.str}:{arr.shape}".encode())
    if arr.dtype == object:
        h.update("\x1f".join(str(v) for v in arr.ravel()).encode())
    else:
        h.update(np.ascontiguousarray(arr).tobytes())


@dataclass(frozen=True, eq=False)
class ItemCatalog:
    """Items a log indexes into; position ``i`` describes dense item index ``i``.

    Attributes:
        item_ids: Original ids as they appear in the files (int64 if all numeric, else str objects).
        titles: Short title per item.
        descriptions: Readable text per item (title, genres/categories, tags).
        tags: Categorical labels per item (MovieLens genres, KuaiRec categories, KuaiRand tag ids).
        media: Optional media paths per modality ("image", "audio", "video"); None where absent.
    """

    item_ids: np.ndarray
    titles: list[str]
    descriptions: list[str]
    tags: list[tuple[str, ...]]
    media: dict[str, list[str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = _id_array(self.item_ids)
        object.__setattr__(self, "item_ids", ids)
        n = len(ids)
        object.__setattr__(self, "titles", [str(t) for t in self.titles])
        object.__setattr__(self, "descriptions", [str(d) for d in self.descriptions])
        object.__setattr__(self, "tags", [tuple(str(t) for t in tg) for tg in self.tags])
        for name in ("titles", "descriptions", "tags"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ItemCatalog.{name} has {len(getattr(self, name))} entries for {n} items")
        for modality, paths in self.media.items():
            if len(paths) != n:
                raise ValueError(f"ItemCatalog.media[{modality!r}] has {len(paths)} entries for {n} items")
        index = pd.Index(ids)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise ValueError(f"ItemCatalog.item_ids has duplicate id {dup}")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.item_ids)

    def index_of(self, ids: Any) -> np.ndarray:
        """Maps original ids to dense item indices.

        Args:
            ids: One id or an array-like of ids.

        Returns:
            int64 array of dense indices with the shape of ``ids``.

        Raises:
            KeyError: Naming the first id not in the catalogue.
        """
        query = np.asarray(ids)
        flat = query.ravel()
        if self.item_ids.dtype == object and flat.dtype != object:
            flat = flat.astype(str).astype(object)
        index: pd.Index = self.__dict__["_index"]
        try:
            positions = np.asarray(index.get_indexer(pd.Index(flat)), dtype=np.int64)
        except (TypeError, ValueError):
            positions = np.array([index.get_loc(v) if v in index else -1 for v in flat], dtype=np.int64)
        missing = np.flatnonzero(positions < 0)
        if missing.size:
            bad = flat[missing[0]]
            shown = bad.item() if hasattr(bad, "item") else bad
            raise KeyError(f"item id {shown!r} is not in the catalogue ({len(self)} items)")
        return positions.reshape(query.shape)

    def tag_vocabulary(self) -> list[str]:
        """Sorted unique tags over all items."""
        return sorted({t for tags in self.tags for t in tags})

    def tag_matrix(self) -> np.ndarray:
        """Boolean (n_items, n_tags) membership matrix in ``tag_vocabulary()`` order."""
        vocab = self.tag_vocabulary()
        column = {t: j for j, t in enumerate(vocab)}
        out = np.zeros((len(self), len(vocab)), dtype=bool)
        rows = [i for i, tags in enumerate(self.tags) for _ in tags]
        cols = [column[t] for tags in self.tags for t in tags]
        out[rows, cols] = True
        return out


@dataclass(frozen=True, eq=False)
class InteractionLog:
    """Logged (user, item, feedback, time) interactions, sorted by (user, timestamp) stably.

    Interactions of a user with equal timestamps keep the order in which they were given (the log's row
    order): that order is the only evidence of which came first, the item index is none.

    Attributes:
        users: int64 dense user index in ``0..n_users-1``.
        items: int64 dense item index into the catalogue.
        feedback: float32 feedback (rating, watch ratio, click, ...).
        timestamps: int64 seconds.
        user_ids: Original user id of each dense user index.
        feedback_range: (min, max) possible or observed feedback.
        name: Data set name.
        n_items: Size of the catalogue the log indexes into; inferred as ``max(items) + 1`` when -1.
    """

    users: np.ndarray
    items: np.ndarray
    feedback: np.ndarray
    timestamps: np.ndarray
    user_ids: np.ndarray
    feedback_range: tuple[float, float]
    name: str
    n_items: int = -1

    def __post_init__(self) -> None:
        users = np.asarray(self.users)
        items = np.asarray(self.items)
        feedback = np.asarray(self.feedback)
        timestamps = np.asarray(self.timestamps)
        n = len(users)
        for label, arr in (("items", items), ("feedback", feedback), ("timestamps", timestamps)):
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"InteractionLog.{label} has shape {arr.shape}; expected ({n},)")
        user_ids = _id_array(self.user_ids)
        n_items = int(self.n_items)
        if n_items < 0:
            n_items = int(items.max()) + 1 if n else 0
        if n:
            if users.min() < 0 or users.max() >= len(user_ids):
                raise ValueError(f"InteractionLog.users must lie in [0, {len(user_ids)})")
            if items.min() < 0 or items.max() >= n_items:
                raise ValueError(f"InteractionLog.items must lie in [0, {n_items})")
        users64 = users.astype(np.int64)
        items64 = items.astype(np.int64)
        times64 = timestamps.astype(np.int64)
        if n > 1 and not _is_sorted(users64, times64):
            order = np.lexsort((times64, users64))  # stable: ties keep the row order
            users64, items64, times64, feedback = (
                users64[order],
                items64[order],
                times64[order],
                feedback[order],
            )
        lo, hi = self.feedback_range
        object.__setattr__(self, "users", _frozen_array(users64, np.int64))
        object.__setattr__(self, "items", _frozen_array(items64, np.int64))
        object.__setattr__(self, "feedback", _frozen_array(feedback, np.float32))
        object.__setattr__(self, "timestamps", _frozen_array(times64, np.int64))
        object.__setattr__(self, "user_ids", user_ids)
        object.__setattr__(self, "feedback_range", (float(lo), float(hi)))
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "n_items", n_items)

    @property
    def n_users(self) -> int:
        """Number of distinct users (length of ``user_ids``)."""
        return len(self.user_ids)

    def __len__(self) -> int:
        return len(self.users)

    def fingerprint(self) -> str:
        """Stable sha256 hex digest of the arrays, feedback range, item count and name."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return str(cached)
        h = hashlib.sha256()
        h.update(f"ialp.InteractionLog/1|{self.name}|{self.n_items}|{self.feedback_range!r}|".encode())
        for arr in (self.users, self.items, self.feedback, self.timestamps, self.user_ids):
            _hash_array(h, arr)
        digest = h.hexdigest()
        object.__setattr__(self, "_fingerprint", digest)
        return digest

    def select(self, mask: np.ndarray, name: str | None = None) -> InteractionLog:
        """Returns the interactions where ``mask`` is true, keeping the user and item indexing."""
        keep = np.asarray(mask, dtype=bool)
        return InteractionLog(
            users=self.users[keep],
            items=self.items[keep],
            feedback=self.feedback[keep],
            timestamps=self.timestamps[keep],
            user_ids=self.user_ids,
            feedback_range=self.feedback_range,
            name=self.name if name is None else name,
            n_items=self.n_items,
        )

    def split_by_time(self, holdout_fraction: float) -> tuple[InteractionLog, InteractionLog]:
        """Splits each user's history in time order.

        The last ``round(holdout_fraction * n)`` interactions of a user with ``n`` interactions (at least 1
        and at most ``n - 1`` when ``n >= 2``; none when ``n == 1``) go to the second log. Both logs keep
        the user and item indexing of this log.

        Args:
            holdout_fraction: Fraction in (0, 1) held out per user.

        Returns:
            (earlier, later) logs named ``"<name>:train"`` and ``"<name>:test"``.
        """
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        counts = np.bincount(self.users, minlength=self.n_users)
        held = np.rint(counts * holdout_fraction).astype(np.int64)
        held = np.clip(held, 1, None)
        held = np.minimum(held, counts - 1)
        held[counts < 2] = 0
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        position = np.arange(len(self)) - starts[self.users]
        test = position >= (counts - held)[self.users]
        return self.select(~test, f"{self.name}:train"), self.select(test, f"{self.name}:test")

    def user_histories(self) -> list[np.ndarray]:
        """Item indices of each user in time order, one array per dense user index."""
        counts = np.bincount(self.users, minlength=self.n_users)
        return list(np.split(self.items, np.cumsum(counts)[:-1]))


def _is_sorted(users: np.ndarray, times: np.ndarray) -> bool:
    du = np.diff(users)
    return bool(((du > 0) | ((du == 0) & (np.diff(times) >= 0))).all())


@dataclass(frozen=True)
class LoadReport:
    """What a loader read, kept and dropped.

    Attributes:
        path: Data location that was read.
        rows_read: Interaction rows read from the files.
        rows_kept: Interaction rows in the returned log.
        dropped: Reason -> number of dropped rows.
        notes: Other remarks (ignored files, items without interactions, ...).
    """

    path: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"Read {self.rows_read} interaction rows from {self.path} and kept {self.rows_kept}"
        drops = [f"{count} {reason}" for reason, count in self.dropped.items() if count]
        text += f"; dropped {', '.join(drops)}." if drops else "; nothing dropped."
        if self.notes:
            text += " " + " ".join(n if n.endswith(".") else n + "." for n in self.notes)
        return text


@dataclass(frozen=True, eq=False)
class LoggedData:
    """A loaded data set: interaction log, the catalogue it indexes into and the load report.

    Attributes:
        log: The interactions.
        catalog: Items, ``len(catalog) == log.n_items``.
        report: What was read and dropped.
        user_features: Optional float32 (n_users, F) features in dense user order.
    """

    log: InteractionLog
    catalog: ItemCatalog
    report: LoadReport
    user_features: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.log.n_items != len(self.catalog):
            raise ValueError(
                f"log indexes {self.log.n_items} items but the catalogue has {len(self.catalog)}"
            )
        if self.user_features is not None:
            feats = np.asarray(self.user_features, dtype=np.float32)
            if feats.ndim != 2 or feats.shape[0] != self.log.n_users:
                raise ValueError(f"user_features has shape {feats.shape}; expected ({self.log.n_users}, F)")
            object.__setattr__(self, "user_features", feats)
