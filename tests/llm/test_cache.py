"""The on-disk LLM cache under concurrent writers (threads and processes) and a writer killed mid-run."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ialp.llm import LLMCache, LLMConfig, default_cache_path, make_backend, make_key
from ialp.llm.base import CachedBackend


def _write_range(path: str, worker: int, n: int) -> None:
    cache = LLMCache(path)
    for i in range(n):
        cache.put(f"k{i}", {"i": i})  # every worker writes the same keys...
        cache.put(f"w{worker}-{i}", {"worker": worker, "i": i})  # ...and its own
        assert cache.get(f"k{i}") == {"i": i}
    cache.close()


def test_concurrent_threads(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    shared = LLMCache(path)
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            # half the threads share one object (one connection per thread), half open their own
            cache = shared if worker % 2 else LLMCache(path)
            for i in range(100):
                cache.put(f"k{i}", {"i": i})
                cache.put_many({f"t{worker}-{i}": i, f"u{worker}-{i}": -i})
                assert cache.get(f"k{i}") == {"i": i}
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(shared) == 100 + 8 * 200
    assert shared.get_many([f"t{w}-99" for w in range(8)]) == {f"t{w}-99": 99 for w in range(8)}


def test_concurrent_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    LLMCache(path).put("before", 1)  # the parent holds an open connection while children write
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    procs = [ctx.Process(target=_write_range, args=(path, w, 150)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = LLMCache(path)
    assert len(cache) == 1 + 150 + 2 * 150
    assert cache.get("w1-149") == {"worker": 1, "i": 149}


_KILLED_WRITER = """
import sys
from ialp.llm import LLMCache
cache = LLMCache(sys.argv[1])
for i in range(1_000_000):
    cache.put_many({f"k{i}-{j}": {"i": i, "pad": "x" * 200} for j in range(20)})  # one transaction per batch
    print(i, flush=True)
"""


def test_killed_writer_leaves_committed_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = -1
    for line in proc.stdout:
        committed = int(line)
        if committed >= 150:
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-write: it keeps writing until the signal lands
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    cache = LLMCache(path)
    keys = [f"k{i}-{j}" for i in range(committed + 1) for j in range(20)]
    assert len(cache.get_many(keys)) == len(keys)  # everything reported as committed is there
    assert len(cache) % 20 == 0  # batches are all-or-nothing
    cache.put("after", "still writable")
    assert cache.get("after") == "still writable"


def test_keys() -> None:
    base = {"backend": "openai", "model": "m", "cache_tag": "pref-v1", "prompt": "p",
            "params": {"temperature": 0.0, "max_tokens": 16, "stop": None, "seed": 0}}
    assert make_key(base) == make_key(dict(reversed(base.items())))  # canonical: key order does not matter
    assert len(make_key(base)) == 64
    variants = [{"temperature": 0.7}, {"max_tokens": 17}, {"stop": ["\n"]}, {"seed": 1}]
    keys = {make_key(base | {"params": base["params"] | v}) for v in variants}
    keys |= {make_key(base | {k: "other"}) for k in ("backend", "model", "cache_tag", "prompt")}
    assert make_key(base) not in keys and len(keys) == len(variants) + 4


def test_backend_keys_follow_sampling_params(tmp_path: Path) -> None:
    backend = make_backend(LLMConfig(backend="llamacpp", cache_dir=str(tmp_path)))  # the model is never loaded here
    assert isinstance(backend, CachedBackend)
    k = backend._key("complete", "p", backend.sampling_params(), "v1")
    assert k == backend._key("complete", "p", backend.sampling_params(), "v1")
    others = {backend._key("complete", "p", backend.sampling_params(temperature=0.5), "v1"),
              backend._key("complete", "p", backend.sampling_params(max_tokens=3), "v1"),
              backend._key("complete", "p", backend.sampling_params(stop=["\n"]), "v1"),
              backend._key("complete", "p", backend.sampling_params(), "v2"),
              backend._key("score", "p", {"seed": 0}, "v1", " c")}
    assert k not in others and len(others) == 5


def test_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IALP_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_path() == tmp_path / "root" / "llm" / "cache.sqlite"
    assert default_cache_path(tmp_path / "mine") == tmp_path / "mine" / "cache.sqlite"
    monkeypatch.delenv("IALP_CACHE_DIR")
    assert default_cache_path() == Path.home() / ".cache" / "ialp" / "llm" / "cache.sqlite"
