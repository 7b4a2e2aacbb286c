"""Result files of a run: ``results.csv``, ``curves.csv``, ``summary.md`` (mean ± 95% CI) and PNG plots."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ialp.eval.rollout import summarize

RESULT_FIELDS = ("method", "seed", "setting", "eval_mode", "cumulative_reward", "avg_reward", "length", "coverage",
                 "diversity", "novelty", "online_first", "online_last", "curve_change")
CURVE_FIELDS = ("method", "seed", "setting", "online_episode", "step", "return")
METRIC_NAMES = {"cumulative_reward": "cumulative reward", "avg_reward": "reward/step", "length": "length",
                "coverage": "coverage", "diversity": "diversity", "novelty": "novelty", "online_first": "online first",
                "online_last": "online last", "curve_change": "curve change"}
#: Bins of online environment steps in which curves are averaged (first/last bin = first/last 10% of steps).
CURVE_BINS = 10


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


def curve_stats(returns: Sequence[float], steps: Sequence[int], total_steps: int) -> dict[str, float | None]:
    """``online_first``/``online_last``: mean return of the episodes that ended in the first/last 10% of the
    online steps; ``curve_change``: (last 25% - previous 25%) / |previous 25%|, near 0 when the curve is flat."""
    r, s = np.asarray(returns, dtype=np.float64), np.asarray(steps, dtype=np.float64) / max(total_steps, 1)

    def mean(lo: float, hi: float) -> float | None:
        sel = r[(s > lo) & (s <= hi)]
        return float(sel.mean()) if len(sel) else None

    last, prev = mean(0.75, np.inf), mean(0.5, 0.75)
    change = (last - prev) / max(abs(prev), 1e-9) if last is not None and prev is not None else None
    return {"online_first": mean(-np.inf, 0.1), "online_last": mean(0.9, np.inf), "curve_change": change}


def binned_curves(curves: Sequence[dict[str, Any]], total_steps: int,
                  bins: int = CURVE_BINS) -> dict[str, np.ndarray]:
    """Per method: (seeds, bins) mean return of the episodes ending in each bin of online steps (NaN if none).
    Methods and seeds keep their order of first appearance; one pass over ``curves``."""
    groups: dict[str, dict[Any, tuple[list[float], list[float]]]] = {}
    for c in curves:
        steps, returns = groups.setdefault(c["method"], {}).setdefault(c["seed"], ([], []))
        steps.append(c["step"])
        returns.append(c["return"])
    out: dict[str, np.ndarray] = {}
    for m, seeds in groups.items():
        table = np.full((len(seeds), bins), np.nan)
        for j, (steps, returns) in enumerate(seeds.values()):
            idx = np.minimum((np.asarray(steps, dtype=np.float64) / max(total_steps, 1) * bins).astype(int), bins - 1)
            counts = np.bincount(idx, minlength=bins)
            sums = np.bincount(idx, weights=np.asarray(returns, dtype=np.float64), minlength=bins)
            table[j] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        out[m] = table
    return out


def _seed_mean(table: np.ndarray) -> np.ndarray:
    """Mean over seeds (rows) of a binned curve table, ignoring seeds with no episode in a bin (NaN if none has)."""
    counts = (~np.isnan(table)).sum(axis=0)
    return np.where(counts > 0, np.nansum(table, axis=0) / np.maximum(counts, 1), np.nan)


def online_comparison(table: dict[str, np.ndarray], learner: str, reference: str) -> str:
    """How ``learner`` starts against ``reference`` (first 10% of online steps) and when it reaches the
    reference's final return (its last 10%), from the seed-averaged ``binned_curves``; empty if either is missing."""
    if learner not in table or reference not in table:
        return ""
    ours, ref = _seed_mean(table[learner]), _seed_mean(table[reference])
    reached = np.flatnonzero(ours >= ref[-1])
    when = f"after {(reached[0] + 1) / len(ours):.0%} of its online steps" if len(reached) else "not within its steps"
    return (f"`{learner}` vs `{reference}` online: first 10% of steps {ours[0]:.3f} vs {ref[0]:.3f}; `{learner}` "
            f"reaches `{reference}`'s final return ({ref[-1]:.3f}) {when}.")


def curve_table(table: dict[str, np.ndarray]) -> str:
    """Markdown table of the seed-averaged online curves: per method, the mean return of the episodes that ended
    in each tenth of the online steps (``binned_curves`` of one setting); empty if there are none."""
    if not table:
        return ""
    head = [f"{(b + 1) * 100 // CURVE_BINS}%" for b in range(CURVE_BINS)]
    lines = ["| method | seeds | " + " | ".join(head) + " |", "|---|---:|" + "---:|" * CURVE_BINS]
    for m, t in table.items():
        cells = ("–" if np.isnan(v) else f"{v:.4g}" for v in _seed_mean(t))
        lines.append(f"| {m} | {len(t)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: mean ± 95% Student-t interval over seeds of each metric, per method (in order of first
    appearance). Pass the rows of one setting and evaluation mode."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = RESULT_FIELDS[4:]
    lines = ["| method | seeds | " + " | ".join(METRIC_NAMES[k] for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for m in methods:
        sub = [r for r in rows if r["method"] == m]
        cells = [_cell([r.get(k) for r in sub]) for k in keys]  # type: ignore[misc]
        lines.append(f"| {m} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(path: str | Path, curves: Sequence[dict[str, Any]], total_steps: int) -> None:
    """Online return against environment steps: per setting, the mean over seeds of each method's binned curve
    with a 95% Student-t band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(c["setting"] for c in curves)) or ["free"]
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.5), squeeze=False)
    x = (np.arange(CURVE_BINS) + 0.5) * total_steps / CURVE_BINS
    for ax, setting in zip(axes[0], settings, strict=True):
        for m, table in binned_curves([c for c in curves if c["setting"] == setting], total_steps).items():
            stats = [summarize(col[np.isfinite(col)]) if np.isfinite(col).any() else (np.nan, np.nan)
                     for col in table.T]
            mean, half = np.array([s[0] for s in stats]), np.nan_to_num(np.array([s[1] for s in stats]))
            (line,) = ax.plot(x, mean, label=m)
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
        ax.set_title(f"setting {setting}")
        ax.set_xlabel("online environment steps")
        ax.set_ylabel("episode return")
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no method has online episodes", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_results(path: str | Path, rows: Sequence[dict[str, Any]], key: str = "cumulative_reward") -> None:
    """Bar chart of ``key`` (mean ± 95% interval over seeds) per method, for the first setting and evaluation
    mode of the rows (the headline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = (rows[0].get("setting"), rows[0].get("eval_mode"))
    rows = [r for r in rows if (r.get("setting"), r.get("eval_mode")) == head]
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
