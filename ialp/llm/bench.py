"""LLM throughput: the same choice prompts sequentially, concurrently, and replayed from the cache; then, for a
backend that scores, candidates scored per second (score mode: each query's K titles and their priors), cold and
replayed from the cache.

Each measured pass uses a fresh, temporary cache so that the first passes really call the model; a ``cached``
pass repeats the one before it on its now warm cache and must make no calls. Run it once per path: embedded
(``--backend llamacpp``), server (``--backend openai --set llm.base_url=...``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any

import numpy as np

from ialp.llm.base import LLMConfig

__all__ = ["bench_llm", "bench_prompts", "bench_queries", "format_bench"]


def bench_queries(n: int, seed: int = 0, k: int = 5) -> tuple[Any, list[Any]]:
    """(catalogue, ``n`` distinct preference queries) about users of the synthetic world (no data needed)."""
    from ialp.llm.prompts import PreferenceQuery
    from ialp.simulators import SyntheticConfig, SyntheticUserModel

    catalog = SyntheticUserModel(SyntheticConfig(n_items=500)).catalog
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        items = rng.choice(len(catalog), size=5 + k, replace=False)
        feedback = tuple(float(x) for x in rng.random(5).round(2))
        queries.append(PreferenceQuery(tuple(int(i) for i in items[:5]), feedback, tuple(int(i) for i in items[5:])))
    return catalog, queries


def bench_prompts(n: int, seed: int = 0, k: int = 5) -> list[str]:
    """``n`` distinct choice prompts of :func:`bench_queries`."""
    from ialp.llm.prompts import load_template, render_query

    catalog, queries = bench_queries(n, seed, k)
    template = load_template("choice")
    return [render_query(template, q, catalog) for q in queries]


def _pass(backend: Any, prompts: list[str], label: str, concurrency: int) -> dict[str, Any]:
    before = dataclasses.replace(backend.stats, latencies_s=list(backend.stats.latencies_s))
    t0 = time.perf_counter()
    done = backend.complete(prompts, cache_tag="bench:v1")
    seconds = time.perf_counter() - t0
    s = backend.stats
    return {"mode": label, "concurrency": concurrency, "prompts": len(prompts), "candidates": None,
            "seconds": round(seconds, 4), "prompts_per_s": round(len(prompts) / max(seconds, 1e-9), 2),
            "candidates_per_s": None, "calls": s.calls - before.calls,
            "cache_hits": s.cache_hits - before.cache_hits, "failures": sum(1 for c in done if c.error is not None),
            "completion_tokens": s.completion_tokens - before.completion_tokens}


def _score_pass(extractor: Any, queries: list[Any], label: str) -> dict[str, Any]:
    backend = extractor.backend
    before = dataclasses.replace(backend.stats, latencies_s=list(backend.stats.latencies_s))
    t0 = time.perf_counter()
    done = extractor.title_scores(queries, prior=True)
    seconds = time.perf_counter() - t0
    s, n = backend.stats, sum(q.k for q in queries)
    return {"mode": label, "concurrency": backend.config.concurrency, "prompts": len(queries), "candidates": n,
            "seconds": round(seconds, 4), "prompts_per_s": round(len(queries) / max(seconds, 1e-9), 2),
            "candidates_per_s": round(n / max(seconds, 1e-9), 2), "calls": s.calls - before.calls,
            "cache_hits": s.cache_hits - before.cache_hits, "failures": sum(1 for t in done if t.error is not None),
            "completion_tokens": 0}


def bench_llm(config: LLMConfig, n_prompts: int = 16) -> list[dict[str, Any]]:
    """Rows for sequential (concurrency 1), concurrent (``config.concurrency``) and cached-replay passes of choice
    prompts, then (scoring backends) ``score`` and ``score-cached`` passes: candidates scored per second."""
    from ialp.llm.preferences import PreferenceExtractor
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
        scorer = build_backend(dataclasses.replace(config, cache_dir=f"{tmp}/score"))
        try:
            if scorer.supports_scoring:
                catalog, queries = bench_queries(n_prompts, seed=config.seed)
                extractor = PreferenceExtractor(scorer, catalog, "score")
                rows.append(_score_pass(extractor, queries, "score"))
                rows.append(_score_pass(extractor, queries, "score-cached"))
        finally:
            scorer.close()
    return rows


def format_bench(rows: list[dict[str, Any]]) -> str:
    """A readable table of :func:`bench_llm` rows."""
    lines = [f"{'mode':<12} {'conc':>4} {'prompts':>7} {'seconds':>8} {'prompts/s':>10} {'cands/s':>10} {'calls':>6} "
             f"{'hits':>5} {'fail':>5}"]
    lines += [f"{r['mode']:<12} {r['concurrency']:>4} {r['prompts']:>7} {r['seconds']:>8.2f} "
              f"{r['prompts_per_s']:>10.2f} {'-' if r['candidates_per_s'] is None else r['candidates_per_s']:>10} "
              f"{r['calls']:>6} {r['cache_hits']:>5} {r['failures']:>5}" for r in rows]
    return "\n".join(lines)
