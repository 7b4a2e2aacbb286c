"""``ialp candidates eval``: popularity vs ID-only SASRec vs the side-adapter text recommender vs fine-tuning the
text encoder itself, over seeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

from ialp.candidates.config import CandidatesConfig
from ialp.candidates.data import item_texts
from ialp.candidates.generator import build_taps, fit_recommender

__all__ = ["DEFAULT_MODELS", "EVAL_MODELS", "FIELDS", "evaluate_models", "format_table"]

_TEXT_IMAGE = {"model": "sidesan", "modalities": ["text", "image"]}
EVAL_MODELS: dict[str, dict[str, Any]] = {
    "popularity": {"model": "popularity"}, "sasrec-id": {"model": "sasrec-id"},
    "sidesan-text": {"model": "sidesan", "modalities": ["text"], "design": "intra"},
    "finetune-text": {"model": "finetune-text", "modalities": ["text"]},
    # need candidates.media.image
    "sidesan-image": {"model": "sidesan", "modalities": ["image"], "design": "intra"},
    "sidesan-text-image": {**_TEXT_IMAGE, "design": "intra"},
    "sidesan-text-image-iisan": {**_TEXT_IMAGE, "design": "iisan"},
    "sidesan-text-image-crossan": {**_TEXT_IMAGE, "design": "crossan"},
}
FIELDS = ("hr@10", "ndcg@10", "trainable_params", "peak_mem_mb", "tensor_peak_mb", "s_per_epoch")
DEFAULT_MODELS = ("popularity", "sasrec-id", "sidesan-text", "finetune-text")


def _mean(values: list[Any]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def evaluate_models(data_dir: str | PathLike[str], seeds: int = 3, base: CandidatesConfig | None = None,
                    models: Sequence[str] = DEFAULT_MODELS, finetune_batches: int = 2) -> dict[str, dict[str, Any]]:
    """Train and test each model on the leave-one-out split of ``data_dir`` for ``seeds`` seeds.

    ``finetune-text`` (MiniLM's own weights trained) is far too slow for full epochs on a CPU: with
    ``finetune_batches > 0`` it trains that many batches for one seed only, its ``s_per_epoch`` is extrapolated
    from them (``s_per_epoch_extrapolated``, ``batches_measured``) and its HR/NDCG are ``None`` with a ``note``;
    with ``finetune_batches=0`` it trains as many epochs as the others and is scored like them.

    Returns:
        Model name -> means over seeds of ``hr@10``, ``ndcg@10`` (``None`` when not scored), ``trainable_params``,
        ``peak_mem_mb``, ``tensor_peak_mb``, ``s_per_epoch``, plus ``hr@10_std``, ``ndcg@10_std``, ``seeds``,
        ``s_per_epoch_extrapolated``, ``batches_measured``, ``epochs_trained`` (mean) and ``best_epoch`` (mean; ``None``
        without early stopping).
    """
    from ialp.data import load_dataset

    data = load_dataset(data_dir)
    base = base or CandidatesConfig()
    histories, n_items = data.log.user_histories(), data.log.n_items
    texts = item_texts(data, data_dir)
    out: dict[str, dict[str, Any]] = {}
    for name in models:
        spec = dict(EVAL_MODELS[name])
        measure_only = spec["model"] == "finetune-text" and finetune_batches > 0
        if measure_only:
            spec["max_steps"] = finetune_batches
        runs = []
        for seed in range(1 if spec["model"] == "popularity" or measure_only else seeds):
            cfg = dataclasses.replace(base, seed=base.seed + seed, data_dir=str(data_dir), **spec)  # validated
            taps = build_taps(data.catalog, cfg, texts=texts) if cfg.model == "sidesan" else None  # disk-cached
            runs.append(fit_recommender(histories, n_items, cfg, taps if cfg.model == "sidesan" else None,
                                        texts if cfg.model == "finetune-text" else None).metrics)
        row: dict[str, Any] = {f: _mean([r[f] for r in runs]) for f in FIELDS}
        row["trainable_params"] = int(row["trainable_params"])
        for f in ("hr@10", "ndcg@10"):
            row[f"{f}_std"] = None if row[f] is None else float(np.std([r[f] for r in runs]))
        row["seeds"] = len(runs)
        row["s_per_epoch_extrapolated"] = any(r.get("s_per_epoch_extrapolated", False) for r in runs)
        row["batches_measured"] = int(runs[0].get("batches_trained", 0))
        row["epochs_trained"] = float(np.mean([r.get("epochs_trained", 0.0) for r in runs]))
        best = [r.get("best_epoch") for r in runs]
        row["best_epoch"] = None if None in best else float(np.mean(best))  # type: ignore[arg-type]
        if row["hr@10"] is None:
            switch = "--finetune-batches 0" if measure_only else "candidates.max_steps=0"
            row["note"] = (f"trained {row['batches_measured']} batches ({row['epochs_trained']:.2f} of "
                           f"{base.epochs} epochs) to measure cost only; not scored ({switch} trains it fully)")
        out[name] = row
    return out


def format_table(result: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of ``evaluate_models``' result."""
    lines = ["| model | HR@10 | NDCG@10 | trainable params | peak mem (MiB) | tensor peak (MiB) | s/epoch | epochs | "
             "seeds |", "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, r in result.items():
        hr, ndcg = (f"{r[f]:.4f} ± {r[f + '_std']:.4f}" if r[f] is not None else "n/a" for f in ("hr@10", "ndcg@10"))
        star = "*" if r.get("s_per_epoch_extrapolated") else ""
        tensor = "n/a" if r.get("tensor_peak_mb") is None else f"{r['tensor_peak_mb']:.0f}"
        lines.append(f"| {name} | {hr} | {ndcg} | {r['trainable_params']:,} | {r['peak_mem_mb']:.0f} | {tensor} | "
                     f"{r['s_per_epoch']:.1f}{star} | {r.get('epochs_trained', 0.0):.1f} | {r['seeds']} |")
        if star:
            notes.append(f"\\* {name}: s/epoch extrapolated from {r['batches_measured']} measured batches.")
        if r.get("note"):
            notes.append(f"{name}: {r['note']}.")
    return "\n".join(lines + (["", *notes] if notes else []))
