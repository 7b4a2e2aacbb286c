"""LLM throughput: the same choice prompts sequentially, concurrently, and replayed from the cache.

Each measured pass uses a fresh, temporary cache so that the first two passes really call the
model; the third pass repeats the concurrent one on its now warm cache and must make no calls.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any

import numpy as np

from ialp.llm.base import LLMConfig

__all__ = ["bench_llm", "bench_prompts", "format_bench"]


def bench_prompts(n: int, seed: int = 0, k: int = 5) -> list[str]:
    """``n`` distinct choice prompts about users of the synthetic world (no data download needed)."""
    from ialp.llm.prompts import PreferenceQuery, load_template, render_query
    from ialp.simulators import SyntheticConfig, SyntheticUserModel

    catalog = SyntheticUserModel(SyntheticConfig(n_items=500)).catalog
    rng = np.random.default_rng(seed)
    template = load_template("choice")
    prompts = []
    for _ in range(n):
        items = rng.choice(len(catalog), size=5 + k, replace=False)
        query = PreferenceQuery(tuple(int(i) for i in items[:5]), tuple(float(x) for x in rng.random(5).round(2)),
                                tuple(int(i) for i in items[5:]))
        prompts.append(render_query(template, query, catalog))
    return prompts


def _pass(backend: Any, prompts: list[str], label: str, concurrency: int) -> dict[str, Any]:
    before = dataclasses.replace(backend.stats, latencies_s=list(backend.stats.latencies_s))
    t0 = time.perf_counter()
    done = backend.complete(prompts, cache_tag="bench:v1")
    seconds = time.perf_counter() - t0
    s = backend.stats
    return {"mode": label, "concurrency": concurrency, "prompts": len(prompts), "seconds": round(seconds, 4),
            "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 2), "calls": s.calls - before.calls,
            "cache_hits": s.cache_hits - before.cache_hits, "failures": sum(1 for c in done if c.error is not None),
            "completion_tokens": s.completion_tokens - before.completion_tokens}


def bench_llm(config: LLMConfig, n_prompts: int = 16) -> list[dict[str, Any]]:
    """Rows for sequential (concurrency 1), concurrent (``config.concurrency``) and cached-replay passes."""
    from ialp.llm.quality import build_backend

    if config.backend == "oracle":
        raise ValueError("the oracle backend answers structured queries, not prompts; benchmark a real backend")
    prompts = bench_prompts(n_prompts, seed=config.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ialp-bench-llm-") as tmp:
        seq = build_backend(dataclasses.replace(config, concurrency=1, cache_dir=f"{tmp}/sequential"))
        try:
            rows.append(_pass(seq, prompts, "sequential", 1))
        finally:
            seq.close()
        conc = build_backend(dataclasses.replace(config, cache_dir=f"{tmp}/concurrent"))
        try:
            rows.append(_pass(conc, prompts, "concurrent", config.concurrency))
            rows.append(_pass(conc, prompts, "cached", config.concurrency))
        finally:
            conc.close()
    return rows


def format_bench(rows: list[dict[str, Any]]) -> str:
    """A readable table of :func:`bench_llm` rows."""
    lines = [f"{'mode':<11} {'conc':>4} {'prompts':>7} {'seconds':>8} {'prompts/s':>10} {'calls':>6} {'hits':>5} "
             f"{'fail':>5}"]
    lines += [f"{r['mode']:<11} {r['concurrency']:>4} {r['prompts']:>7} {r['seconds']:>8.2f} "
              f"{r['prompts_per_s']:>10.2f} {r['calls']:>6} {r['cache_hits']:>5} {r['failures']:>5}" for r in rows]
    return "\n".join(lines)
