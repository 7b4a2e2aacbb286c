"""A small generated multimodal data set whose images carry what the text does not.

Every item has a genre (written in its text) and a colour (only drawn in its image: a filled shape of that
colour on a noisy grey background; shape, size and place are random and mean nothing). Every user likes one
(genre, colour) class: a history is ``length`` items, each from the user's class with probability ``p_class``,
else uniform. A recommender that reads only the text can narrow the next item to a genre; one that also sees
the images can narrow it to the class. Written in the MovieLens ml-latest layout (``ratings.csv``,
``movies.csv``) so that ``ialp.data.load_dataset`` reads it, with ``images/<movieId>.png`` for
``candidates.media: {image: <folder>/images}``.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["COLOURS", "GENRES", "make_multimodal_fixture"]

GENRES = ("Comedy", "Drama", "Horror", "Western")
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
_WORDS = ("night", "river", "story", "city", "garden", "letter", "winter", "road", "house", "dream", "light", "song",
          "summer", "island", "stone", "door", "mirror", "train", "field", "voice")


def _draw(rgb: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB image (size, size, 3): grey noise with one filled circle or square of colour ``rgb``."""
    img = np.clip(rng.normal(128, 40, (size, size, 1)).repeat(3, axis=2), 0, 255)
    r = int(rng.integers(size // 6, size // 3))
    cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
    yy, xx = np.mgrid[:size, :size]
    shape = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if rng.random() < 0.5 else \
        ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
    img[shape] = rgb
    return img.astype(np.uint8)


def make_multimodal_fixture(folder: str | PathLike[str], n_users: int = 600, items_per_class: int = 20,
                            length: int = 20, p_class: float = 0.8, image_size: int = 64, seed: int = 0) -> Path:
    """Write the fixture into ``folder`` (created) and return it.

    Args:
        folder: Output folder.
        n_users: Users.
        items_per_class: Items per (genre, colour) class; the catalogue has 16 times as many.
        length: Items per user history.
        p_class: Probability that an item of a history is from the user's class.
        image_size: Side of the square images.
        seed: Seed of everything drawn.
    """
    from PIL import Image

    if not 0.0 <= p_class <= 1.0 or min(n_users, items_per_class, length, image_size) < 1:
        raise ValueError("need 0 <= p_class <= 1 and positive n_users, items_per_class, length, image_size")
    out = Path(folder)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    classes = [(g, c) for g in range(len(GENRES)) for c in range(len(colours))]
    n_items = len(classes) * items_per_class
    item_class = rng.permutation(np.repeat(np.arange(len(classes)), items_per_class))
    movie_ids = np.arange(1, n_items + 1)
    lines = ["movieId,title,genres"]
    for i, mid in enumerate(movie_ids.tolist()):
        genre, colour = classes[item_class[i]]
        title = " ".join(rng.choice(_WORDS, size=3, replace=False)).title()
        lines.append(f'{mid},"{title} ({mid})",{GENRES[genre]}')
        Image.fromarray(_draw(COLOURS[colours[colour]], image_size, rng)).save(out / "images" / f"{mid}.png")
    (out / "movies.csv").write_text("\n".join(lines) + "\n")
    members = [np.flatnonzero(item_class == k) for k in range(len(classes))]
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(n_users):
        liked = members[int(rng.integers(len(classes)))]
        picks = np.where(rng.random(length) < p_class, rng.choice(liked, length), rng.integers(0, n_items, length))
        for t, i in enumerate(picks.tolist()):
            rows.append(f"{u + 1},{movie_ids[i]},4.0,{1_000_000 + 100 * t}")
    (out / "ratings.csv").write_text("\n".join(rows) + "\n")
    return out
