"""What the candidate generator is trained and tested on, without leaks from the future.

Sequences come from ``InteractionLog.user_histories`` (time order; equal timestamps keep the log's row order).
Item texts are built only from data written before the split time: the earliest interaction that the
leave-one-out split holds out (a tag written after it may describe what a test user went on to watch).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from ialp.data import InteractionLog, LoggedData

__all__ = ["item_texts", "split_time"]


def split_time(log: InteractionLog, held_out: int = 2, min_len: int = 3) -> int | None:
    """Earliest timestamp among the interactions ``leave_one_out`` holds out (each user's last ``held_out`` when
    the user has at least ``min_len``); ``None`` when nothing is held out."""
    counts = np.bincount(log.users, minlength=log.n_users)
    ends = np.cumsum(counts)
    users = np.flatnonzero(counts >= min_len)
    if not len(users):
        return None
    first_held = ends[users] - held_out  # index of each user's first held-out interaction (time-ordered log)
    return int(log.timestamps[first_held].min())


def item_texts(data: LoggedData, data_dir: str | PathLike[str] | None = None) -> list[str]:
    """Item descriptions built only from data before ``split_time(data.log)``.

    For a MovieLens folder (``data_dir``) the user tags written at or after the split time are left out; other
    catalogues' descriptions carry no user-written, time-stamped text and are returned as they are.
    """
    from ialp.data.movielens import detect_movielens_layout, movielens_descriptions

    if data_dir and Path(data_dir).is_dir() and detect_movielens_layout(data_dir) is not None:
        return movielens_descriptions(data_dir, data.catalog, split_time(data.log))
    return list(data.catalog.descriptions)
