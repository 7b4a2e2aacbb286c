"""Format detection and the ``load_dataset`` entry point."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from ialp.data.errors import missing_path_error
from ialp.data.generic import load_table
from ialp.data.kuai import load_kuairand, load_kuairec
from ialp.data.movielens import detect_movielens_layout, load_movielens
from ialp.data.types import LoggedData

__all__ = ["DATASET_KINDS", "detect_kind", "load_dataset"]

DATASET_KINDS = ("auto", "movielens", "kuairec", "kuairand", "table")
_TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq", ".parq"}


def detect_kind(path: str | PathLike[str]) -> str | None:
    """Guesses the data set kind ("movielens", "kuairec", "kuairand", "table") from the files at ``path``."""
    p = Path(path)
    if p.is_file():
        return "table" if p.suffix.lower() in _TABLE_SUFFIXES else None
    if detect_movielens_layout(p):
        return "movielens"
    for pattern in ("", "data/", "*/", "*/data/"):
        if any(p.glob(f"{pattern}small_matrix.csv")) or any(p.glob(f"{pattern}big_matrix.csv")):
            return "kuairec"
        if any(p.glob(f"{pattern}log_standard_*.csv")):
            return "kuairand"
    return None


def load_dataset(path: str | PathLike[str], kind: str = "auto", **options: Any) -> LoggedData:
    """Loads a data set of the given kind, or of the kind detected from its files.

    Args:
        path: Data folder (MovieLens, KuaiRec, KuaiRand) or table file.
        kind: One of "auto", "movielens", "kuairec", "kuairand", "table".
        **options: Passed to the loader (e.g. ``matrix="big"`` for KuaiRec, ``feedback="is_like"`` for
            KuaiRand, the column mapping for tables).

    Raises:
        ValueError: Unknown kind, or the kind cannot be detected.
        FileNotFoundError: ``path`` does not exist.
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown data set kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}")
    p = Path(path)
    if not p.exists():
        raise missing_path_error(p, "data set")
    if kind == "auto":
        detected = detect_kind(p)
        if detected is None:
            raise ValueError(
                f"cannot tell the data set kind of {p}: expected MovieLens files (ratings.csv + movies.csv, "
                "u.data + u.item or ratings.dat + movies.dat), KuaiRec (data/small_matrix.csv or "
                "data/big_matrix.csv), KuaiRand (data/log_standard_*.csv) or a .csv/.parquet table; "
                f"pass kind= one of {', '.join(DATASET_KINDS[1:])}"
            )
        kind = detected
    if kind == "movielens":
        return load_movielens(p, **options)
    if kind == "kuairec":
        return load_kuairec(p, **options)
    if kind == "kuairand":
        return load_kuairand(p, **options)
    return load_table(p, **options)
