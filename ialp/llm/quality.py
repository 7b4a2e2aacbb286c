"""How good are an LLM's preferences? Hit rate of held-out positives hidden among unrated items.

Protocol (on a MovieLens-style log): each user's interactions are split in time (the last
``holdout_fraction`` held out). A sampled user's query shows their last ``window`` training items;
the positive is the first held-out item they rated at least ``positive_threshold``, hidden among
K-1 items they never rated (drawn, with the seed, from items rated by someone in training). A
method's hit rate is the fraction of queries whose top choice is the positive, with a 95% Wilson
interval; queries a method failed on are excluded from its ``n`` and reported as ``failures``.

Methods: ``random`` (a seeded uniform pick; expectation 1/K), ``popularity`` (most-rated in training),
``user_model`` (``LoggedUserModel`` fitted on the training part only) and ``<backend>:<mode>`` for
the LLM backend. The ``oracle`` backend is an UPPER BOUND: it answers from matrix factorisation
fitted on the FULL log (held-out ratings included), i.e. the ground truth a log-based simulator uses.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ialp.data import InteractionLog, LoggedData, load_dataset
from ialp.llm.base import LLMBackend, LLMConfig
from ialp.llm.prompts import PreferenceQuery, query_from_log
from ialp.schema import load
from ialp.simulators.logged import LoggedUserModel, MatrixFactorization, MFConfig
from ialp.storage import cache_root, stage_key

__all__ = ["build_backend", "evaluate_preferences", "format_report", "load_llm_config", "wilson_interval"]


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for ``z = 1.96``).

    >>> [round(x, 3) for x in wilson_interval(5, 10)]
    [0.237, 0.763]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# ------------------------------------------------------------------------------------------- config
def load_llm_config(path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = (),
                    backend: str | None = None) -> LLMConfig:
    """An ``LLMConfig`` from a YAML file's ``llm:`` section, ``llm.key=value`` overrides and a backend name.

    Raises:
        ConfigError: Unknown field or a bad value, naming the field, the value and what is allowed.
    """
    extra = [] if backend is None else [f"llm.backend={backend}"]
    return load(LLMConfig, path, [*overrides, *extra], section="llm")


def build_backend(config: LLMConfig, truth: Any = None) -> LLMBackend:
    """The backend a config names; ``oracle`` needs ``truth`` (see ``OracleBackend``) and is never a default."""
    from ialp.llm import make_backend

    if config.backend == "oracle":
        if truth is None:
            raise ValueError("backend 'oracle' answers from a ground truth, which this command does not have")
        return make_backend(config, truth=truth)
    return make_backend(config)


# ------------------------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class _Case:
    user: int
    history_end: int  # position in the user's history where the shown history stops (exclusive)
    candidates: tuple[int, ...]
    positive: int  # position of the positive among the candidates


def _fit_full(log: InteractionLog, config: MFConfig, cache_dir: Path) -> MatrixFactorization:
    """MF on every interaction of ``log`` (the oracle's ground truth), cached on disk."""
    path = cache_dir / "models" / f"mf-full-{stage_key('full', log.fingerprint(), dataclasses.asdict(config))}.npz"
    if path.exists():
        return MatrixFactorization.load(path)[0]
    mf = MatrixFactorization.fit(log.users, log.items, log.feedback, log.n_users, log.n_items, config)
    mf.save(path)
    return mf


def _sample_cases(log: InteractionLog, train: InteractionLog, k: int, n_users: int, rng: np.random.Generator,
                  positive_threshold: float) -> list[_Case]:
    starts = np.searchsorted(log.users, np.arange(log.n_users + 1))
    train_counts = np.bincount(train.users, minlength=log.n_users)
    pool = np.flatnonzero(np.bincount(train.items, minlength=log.n_items) > 0)
    eligible: list[tuple[int, int]] = []
    for u in range(log.n_users):
        lo, hi = starts[u], starts[u + 1]
        split = lo + train_counts[u]
        if train_counts[u] < 1:
            continue
        good = np.flatnonzero(log.feedback[split:hi] >= positive_threshold)
        if good.size:
            eligible.append((u, int(split + good[0] - lo)))
    if not eligible:
        raise ValueError(f"no user has a held-out rating >= {positive_threshold}")
    picks = rng.choice(len(eligible), size=min(n_users, len(eligible)), replace=False)
    cases = []
    for p in picks:
        u, pos_at = eligible[int(p)]
        rated = set(log.items[starts[u]:starts[u + 1]].tolist())
        positive = int(log.items[starts[u] + pos_at])
        negatives: list[int] = []
        while len(negatives) < k - 1:
            for item in rng.choice(pool, size=2 * k, replace=True).tolist():
                if item not in rated and item not in negatives and len(negatives) < k - 1:
                    negatives.append(int(item))
        slot = int(rng.integers(0, k))
        cands = [*negatives[:slot], positive, *negatives[slot:]]
        cases.append(_Case(u, int(train_counts[u]), tuple(cands), slot))
    return cases


def _summary(choices: Sequence[int | None], cases: Sequence[_Case]) -> dict[str, Any]:
    done = [(c, case.positive) for c, case in zip(choices, cases, strict=True) if c is not None]
    hits, n = sum(1 for c, p in done if c == p), len(done)
    lo, hi = wilson_interval(hits, n)
    return {"hit_rate": hits / n if n else None, "ci_low": lo, "ci_high": hi, "n": n,
            "failures": len(cases) - n}


# ------------------------------------------------------------------------------------------- eval
def evaluate_preferences(data_dir: str | os.PathLike[str], backend_config: LLMConfig | None = None, k: int = 5,
                         n_users: int = 100, seed: int = 0, modes: Sequence[str] = ("choice", "score"), *,
                         window: int = 10, holdout_fraction: float = 0.2, positive_threshold: float = 4.0,
                         batch_size: int = 16, cache_dir: str | os.PathLike[str] | None = None,
                         progress: bool = True) -> dict[str, Any]:
    """Hit rates of the baselines and of an LLM backend's modes on held-out positives.

    Args:
        data_dir: A MovieLens folder (any layout ``ialp.data.load_dataset`` detects).
        backend_config: The LLM backend (``backend="oracle"`` for the ground-truth upper bound); None: baselines only.
        k: Candidates per query (one positive, k-1 unrated items).
        n_users: Users sampled (at most the users with a held-out positive).
        seed: Seeds user and candidate sampling, the random baseline and the MF fits.
        modes: The backend's modes (``choice``, ``score``; score is skipped for backends without scoring).
        window: Recent training items shown per user.
        holdout_fraction: Fraction of each user's interactions held out (in time order).
        positive_threshold: Minimum held-out feedback of a positive.
        batch_size: Queries per backend call batch.
        cache_dir: Where fitted models are cached (default ``$IALP_CACHE_DIR`` or ``~/.cache/ialp``).
        progress: Show a progress bar on stderr.

    Returns:
        ``{"methods": {name: {"hit_rate", "ci_low", "ci_high", "n", "failures"}}, "llm": {"calls",
        "cache_hits", "failures", "prompt_tokens", "completion_tokens"}}``.
    """
    from tqdm import tqdm

    from ialp.llm.preferences import PreferenceExtractor

    if not 2 <= k <= 26:
        raise ValueError(f"k must be in [2, 26], got {k}")
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    data = load_dataset(data_dir)
    log, cache = data.log, Path(cache_dir) if cache_dir is not None else cache_root()
    train, _ = log.split_by_time(holdout_fraction)
    rng = np.random.default_rng(seed)
    cases = _sample_cases(log, train, k, n_users, rng, positive_threshold)
    methods: dict[str, dict[str, Any]] = {}

    picks = rng.integers(0, k, len(cases))
    methods["random"] = {**_summary(picks.tolist(), cases), "expected": 1.0 / k}
    popularity = np.bincount(train.items, minlength=log.n_items)
    methods["popularity"] = _summary([int(np.argmax(popularity[list(c.candidates)])) for c in cases], cases)
    mf_config = MFConfig(seed=seed)
    fitted = LoggedUserModel(LoggedData(train, data.catalog, data.report, data.user_features), mf_config,
                             cache_dir=cache, verbose=False)
    methods["user_model"] = _summary(
        [int(np.argmax(fitted.mf.predict(np.full(k, c.user), np.array(c.candidates)))) for c in cases], cases)

    llm: dict[str, Any] = {"calls": 0, "cache_hits": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
    if backend_config is None:
        return {"methods": methods, "llm": llm}
    truth = None
    if backend_config.backend == "oracle":
        full = _fit_full(log, mf_config, cache)
        lo_fb, hi_fb = log.feedback_range
        truth = lambda q: np.clip(full.predict(np.full(q.k, q.user), np.array(q.candidates)),  # noqa: E731
                                  lo_fb, hi_fb)
    backend = build_backend(backend_config, truth)
    queries: list[PreferenceQuery] = [query_from_log(train, c.user, c.candidates, window=window) for c in cases]
    parse_failures = 0
    try:
        for mode in modes:
            if mode == "score" and not backend.supports_scoring and not hasattr(backend, "answer_query"):
                print(f"[ialp] {backend.name}: no scoring support; skipping mode 'score'", file=sys.stderr)
                continue
            extractor = PreferenceExtractor(backend, data.catalog, mode)  # type: ignore[arg-type]
            choices: list[int | None] = []
            bar = tqdm(total=len(queries), desc=f"{backend.name}:{mode}", file=sys.stderr, disable=not progress,
                       leave=False)
            for start in range(0, len(queries), batch_size):
                prefs = extractor.prefer(queries[start:start + batch_size])
                choices.extend(p.choice for p in prefs)
                bar.update(len(prefs))
            bar.close()
            parse_failures += extractor.parse_failures
            methods[f"{backend.name}:{mode}"] = _summary(choices, cases)
        s = backend.stats
        llm = {"calls": s.calls, "cache_hits": s.cache_hits, "failures": s.failures + parse_failures,
               "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens}
    finally:
        backend.close()
    return {"methods": methods, "llm": llm}


def format_report(result: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate_preferences`' result."""
    lines = [f"{'method':<20} {'hit rate':>8}  {'95% CI':<15} {'n':>5} {'failures':>8}"]
    for name, m in result["methods"].items():
        rate = "-" if m["hit_rate"] is None else f"{m['hit_rate']:.3f}"
        lines.append(f"{name:<20} {rate:>8}  [{m['ci_low']:.3f}, {m['ci_high']:.3f}]  {m['n']:>5} {m['failures']:>8}")
    s = result["llm"]
    lines.append(f"llm: {s['calls']} calls, {s['cache_hits']} cache hits, {s['failures']} failures, "
                 f"{s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens")
    return "\n".join(lines)
