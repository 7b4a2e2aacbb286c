"""On-disk cache of LLM answers: SQLite in WAL mode, safe for concurrent threads and processes.

Keys are sha256 digests of a canonical JSON of everything that determines an answer (backend, model, prompt version,
prompt, sampling parameters, continuation for scores). Each write is one transaction, so a process killed mid-run
leaves every committed entry readable and nothing half-written. The first value stored under a key wins, which keeps
reruns reproducible.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ialp.storage import cache_root

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
_BATCH = 500  # SQLite's bound on host parameters is 999 in old builds


def make_key(parts: Mapping[str, Any]) -> str:
    """sha256 hex digest of ``parts`` as canonical JSON (sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``/cache.sqlite if given, else ``$IALP_CACHE_DIR/llm/cache.sqlite``, else under ``~/.cache/ialp``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "cache.sqlite"
    return cache_root().expanduser() / "llm" / "cache.sqlite"


class LLMCache:
    """Key-value store of JSON values in one SQLite file.

    Each thread (and each process, also after ``fork``) opens its own connection; writers wait on SQLite's busy
    timeout instead of failing. Picklable: only the path travels.

    Args:
        path: The SQLite file; its folder is created.
        timeout_s: How long a writer waits for the lock held by another writer.
    """

    def __init__(self, path: str | os.PathLike[str], timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[tuple[int, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn()  # create the file and table now, so that errors surface at construction

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["timeout_s"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each put is exactly one transaction.
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes, never corrupt
        conn.execute(_SCHEMA)
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all.append((os.getpid(), conn))
        return conn

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or None."""
        row = self._conn().execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the ``keys`` that are present."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        conn = self._conn()
        for i in range(0, len(wanted), _BATCH):
            chunk = wanted[i:i + _BATCH]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(f"SELECT key, value FROM entries WHERE key IN ({marks})", chunk):
                out[key] = json.loads(value)
        return out

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key`` unless the key is already present."""
        self.put_many({key: value})

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store several values in one transaction (all or nothing); existing keys keep their value."""
        if not items:
            return
        rows = [(k, json.dumps(v, ensure_ascii=False, allow_nan=False)) for k, v in items.items()]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO entries (key, value) VALUES (?, ?)", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        return self._conn().execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None

    def clear(self) -> None:
        """Delete every entry."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM entries")
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connections this process opened (the cache reopens on next use)."""
        pid = os.getpid()
        with self._lock:
            mine = [c for p, c in self._all if p == pid]
            self._all = [(p, c) for p, c in self._all if p != pid]
        for conn in mine:  # connections inherited through fork belong to the parent: left alone
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
