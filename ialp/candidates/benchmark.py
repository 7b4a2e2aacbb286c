"""``ialp candidates eval``: popularity vs ID-only SASRec vs the side-adapter text recommender, over seeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

from ialp.candidates.config import CandidatesConfig
from ialp.candidates.generator import build_taps, fit_recommender

__all__ = ["EVAL_MODELS", "FIELDS", "evaluate_models", "format_table"]

EVAL_MODELS: dict[str, dict[str, Any]] = {"popularity": {"model": "popularity"}, "sasrec-id": {"model": "sasrec-id"},
               "sidesan-text": {"model": "sidesan", "modalities": ["text"]}}
FIELDS = ("hr@10", "ndcg@10", "trainable_params", "peak_mem_mb", "s_per_epoch")


def evaluate_models(data_dir: str | PathLike[str], seeds: int = 3, base: CandidatesConfig | None = None,
                    models: Sequence[str] = tuple(EVAL_MODELS)) -> dict[str, dict[str, Any]]:
    """Train and test each model on the leave-one-out split of ``data_dir`` for ``seeds`` seeds.

    Returns:
        Model name -> means over seeds of ``hr@10``, ``ndcg@10``, ``trainable_params``, ``peak_mem_mb``,
        ``s_per_epoch``, plus ``hr@10_std``, ``ndcg@10_std`` and ``seeds``.
    """
    from ialp.data import load_dataset

    data = load_dataset(data_dir)
    base = base or CandidatesConfig()
    histories, n_items = data.log.user_histories(), data.log.n_items
    taps = None
    out: dict[str, dict[str, Any]] = {}
    for name in models:
        runs = []
        for seed in range(seeds if name != "popularity" else 1):
            cfg = dataclasses.replace(base, seed=base.seed + seed, data_dir=str(data_dir), **EVAL_MODELS[name])
            if cfg.model == "sidesan" and taps is None:
                taps = build_taps(data.catalog, cfg)
            runs.append(fit_recommender(histories, n_items, cfg, taps if cfg.model == "sidesan" else None).metrics)
        row: dict[str, Any] = {f: float(np.mean([r[f] for r in runs])) for f in FIELDS}
        row["trainable_params"] = int(row["trainable_params"])
        for f in ("hr@10", "ndcg@10"):
            row[f"{f}_std"] = float(np.std([r[f] for r in runs]))
        row["seeds"] = len(runs)
        out[name] = row
    return out


def format_table(result: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of ``evaluate_models``' result."""
    lines = ["| model | HR@10 | NDCG@10 | trainable params | peak mem (MiB) | s/epoch | seeds |",
             "|---|---|---|---|---|---|---|"]
    for name, r in result.items():
        lines.append(f"| {name} | {r['hr@10']:.4f} ± {r['hr@10_std']:.4f} | {r['ndcg@10']:.4f} ± "
                     f"{r['ndcg@10_std']:.4f} | {r['trainable_params']:,} | {r['peak_mem_mb']:.0f} | "
                     f"{r['s_per_epoch']:.1f} | {r['seeds']} |")
    return "\n".join(lines)
