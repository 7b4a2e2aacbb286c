"""``rgb_array`` rendering: a small picture of one user's session.

Columns are the session's recent items, oldest first (as far back as the longest leave rule looks). Three bands,
top to bottom:

1. **items**: each item's colour is a fixed projection of its embedding to three coordinates, scaled to the
   catalogue's range (so similar items look alike); dark grey where the slot is empty;
2. **feedback**: a bar per item in the observation window, its height the reward within the model's range;
3. **what the leave rules see**: blue over the items the rules judge (the session's own items within the longest
   rule's window), red where such an item repeats an earlier one in that window; black elsewhere.
"""

from __future__ import annotations

import numpy as np

from ialp.envs.session import SessionBatch

__all__ = ["CELL", "session_picture"]

#: Width of one item's column, in pixels.
CELL = 12
_EMPTY, _BAR, _JUDGED, _REPEAT = (40, 40, 40), (60, 200, 90), (70, 110, 220), (220, 60, 60)


def session_picture(session: SessionBatch, row: int) -> np.ndarray:
    """The (height, width, 3) ``uint8`` picture of user ``row``'s session (see the module docstring)."""
    items = session.hist_items[row]
    depth, w = len(items), session.history_len
    emb = session.model.item_embeddings
    table = emb @ np.random.default_rng(0).standard_normal((emb.shape[1], 3))  # a fixed projection to 3 colours
    lo_e, hi_e = table.min(axis=0), table.max(axis=0)
    colour = (table[np.maximum(items, 0)] - lo_e) / np.maximum(hi_e - lo_e, 1e-12) * 255
    colour = np.where((items >= 0)[:, None], colour, _EMPTY)

    lo, hi = session.model.reward_range
    obs = session.observation(np.array([row]))
    height = np.zeros(depth)
    height[-w:] = np.clip((obs["feedback"][0] - lo) / max(hi - lo, 1e-12), 0, 1) * obs["mask"][0]

    judged = np.zeros(depth, dtype=bool)
    window = max((r.window for r in session.leave_rules), default=0)
    in_session = min(int(session.t[row]), depth)
    if window and in_session:
        judged[depth - min(window, in_session):] = True
    seen: set[int] = set()
    repeat = np.zeros(depth, dtype=bool)
    for k in np.flatnonzero(judged | (np.arange(depth) >= depth - in_session)).tolist():
        repeat[k] = int(items[k]) in seen
        seen.add(int(items[k]))

    bar_h = 4 * CELL
    picture = np.zeros((CELL + bar_h + CELL // 2, depth * CELL, 3), dtype=np.uint8)
    for j in range(depth):
        cols = slice(j * CELL, (j + 1) * CELL - 1)
        picture[:CELL - 1, cols] = colour[j]
        top = CELL + bar_h - round(float(height[j]) * bar_h)
        picture[top:CELL + bar_h, cols] = _BAR
        if judged[j] or repeat[j]:
            picture[CELL + bar_h + 1:, cols] = _REPEAT if repeat[j] else _JUDGED
    return picture
