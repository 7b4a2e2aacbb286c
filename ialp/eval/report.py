"""Result files of a run: ``results.csv``, ``curves.csv``, ``summary.md`` (mean ± 95% CI) and PNG plots."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ialp.eval.rollout import summarize

RESULT_FIELDS = ("method", "seed", "cumulative_reward", "avg_reward", "length", "coverage", "diversity",
                 "online_first", "online_last")
CURVE_FIELDS = ("method", "seed", "online_episode", "return")
METRIC_NAMES = {"cumulative_reward": "cumulative reward", "avg_reward": "avg reward", "length": "length",
                "coverage": "coverage", "diversity": "diversity", "online_first": "online first",
                "online_last": "online last"}


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Rows as CSV with the given columns (missing values left empty)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _cell(values: list[float]) -> str:
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(vals):
        return "–"
    mean, half = summarize(vals)
    return f"{mean:.3f}" + (f" ± {half:.3f}" if np.isfinite(half) else "")


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: mean ± 95% CI over seeds of each metric, per method (in order of first appearance).

    ``online first``/``online last``: mean return of the first/last online episodes (methods that act online).
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = RESULT_FIELDS[2:]
    lines = ["| method | seeds | " + " | ".join(METRIC_NAMES[k] for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for m in methods:
        sub = [r for r in rows if r["method"] == m]
        cells = [_cell([r.get(k) for r in sub]) for k in keys]  # type: ignore[misc]
        lines.append(f"| {m} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(path: str | Path, curves: Sequence[dict[str, Any]], window: int = 25) -> None:
    """Return per online episode (moving average over ``window`` episodes, mean over seeds) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in dict.fromkeys(c["method"] for c in curves):
        per_seed = []
        for s in dict.fromkeys(c["seed"] for c in curves if c["method"] == m):
            r = np.array([c["return"] for c in curves if c["method"] == m and c["seed"] == s], dtype=np.float64)
            if len(r) >= window:
                per_seed.append(np.convolve(r, np.ones(window) / window, mode="valid"))
        if per_seed:
            n = min(len(p) for p in per_seed)
            ax.plot(np.arange(n) + window, np.mean([p[:n] for p in per_seed], axis=0), label=m)
    ax.set_xlabel("online episode")
    ax.set_ylabel(f"return (moving average of {window})")
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no method has {window} online episodes in a seed", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_results(path: str | Path, rows: Sequence[dict[str, Any]], key: str = "cumulative_reward") -> None:
    """Bar chart of ``key`` (mean ± 95% CI over seeds) per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    stats = [summarize(np.array([r[key] for r in rows if r["method"] == m], dtype=np.float64)) for m in methods]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(methods)), 4))
    errs = [h if np.isfinite(h) else 0.0 for _, h in stats]
    ax.bar(range(len(methods)), [m for m, _ in stats], yerr=errs, capsize=3)
    ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(METRIC_NAMES.get(key, key))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
