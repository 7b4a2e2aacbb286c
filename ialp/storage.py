"""Where ialp keeps things on disk: the cache root, the data folders, and stage keys.

- :func:`cache_root`: ``$IALP_CACHE_DIR`` or ``~/.cache/ialp`` (fitted models, LLM answers, hidden states).
- :func:`resolve_data_dir`: a data set's folder, from an explicit ``data_dir`` or its environment variable.
- :func:`stage_key`, :func:`is_current`, :func:`mark_current`: an artefact is reused when the key stored next to it
  (``<name>.key``) equals the key of what it would be built from now.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DATA_SOURCES", "cache_root", "is_current", "mark_current", "resolve_data_dir", "stage_key"]

#: Data set -> (environment variable naming its folder, where to get it).
DATA_SOURCES: dict[str, tuple[str, str]] = {
    "movielens": ("IALP_DATA_DIR", "https://grouplens.org/datasets/movielens/ (ml-latest-small, ml-100k or ml-1m)"),
    "kuairec": ("IALP_KUAIREC_DIR",
                "https://kuairec.com/ (unzip KuaiRec 2.0; point data_dir at the folder holding data/)"),
    "kuairand": ("IALP_KUAIRAND_DIR",
                 "https://kuairand.com/ (KuaiRand-Pure, -1K or -27K; point data_dir at the folder holding data/)"),
}


def cache_root() -> Path:
    """The cache folder: ``$IALP_CACHE_DIR``, else ``~/.cache/ialp`` (read at each call, so tests can move it)."""
    return Path(os.environ.get("IALP_CACHE_DIR") or Path.home() / ".cache" / "ialp")


def resolve_data_dir(dataset: str, data_dir: str | os.PathLike[str] | None, who: str) -> Path:
    """The folder of ``dataset``: ``data_dir`` if given, else its environment variable (:data:`DATA_SOURCES`).

    Raises:
        FileNotFoundError: Neither is set, or the folder does not exist; names ``who`` and where to get the data.
    """
    env_var, source = DATA_SOURCES[dataset]
    path = data_dir or os.environ.get(env_var)
    if not path:
        raise FileNotFoundError(f"{who} needs its data: pass data_dir=... or set {env_var}. "
                                f"Get the data from {source}.")
    if not Path(path).exists():
        raise FileNotFoundError(f"{who}: data_dir {str(path)!r} does not exist. Get the data from {source}.")
    return Path(path).resolve()


def stage_key(*parts: Any) -> str:
    """A short hash of plain data (dataclasses should be passed through ``dataclasses.asdict`` first)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".key")


def is_current(path: str | os.PathLike[str], key: str) -> bool:
    """``path`` exists and was marked with ``key`` (see :func:`mark_current`)."""
    path, marker = Path(path), _marker(Path(path))
    return path.exists() and marker.exists() and marker.read_text() == key


def mark_current(path: str | os.PathLike[str], key: str) -> None:
    """Record that ``path`` was built from what ``key`` hashes (call after the artefact is completely written)."""
    _marker(Path(path)).write_text(key)
