"""Training memory of one batch on ml-latest-small: plain fine-tuning of MiniLM vs the side network vs SASRec-ID.

    python scripts/bench_candidates_memory.py [--data-dir DIR] [--batch 32] [--batches 2]
        [--set candidates.KEY=VALUE]... [--json]

Each model runs in a fresh process: ``--batches`` training batches (forward, backward, AdamW step) of ``--batch``
sequences, measured as tensors (``TensorPeak``: the torch profiler's allocation records) and as process peak
(``PeakMemory``: resident-set growth). Models: ``finetune-plain`` (MiniLM's own weights trained, every activation
kept), ``finetune-checkpointed`` (the same, each text chunk checkpointed), ``sidesan-text`` (the side network as
``configs/candidates.yaml`` ships it, with any ``--set`` overrides), ``sasrec-id``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"
SHIPPED = ROOT / "configs" / "candidates.yaml"
MODELS = {
    "finetune-plain": {"model": "finetune-text", "text_checkpoint": False, "softmax_chunk": 0},
    "finetune-checkpointed": {"model": "finetune-text", "text_checkpoint": True, "softmax_chunk": 0},
    "sidesan-text": {"model": "sidesan", "modalities": ["text"]},
    "sasrec-id": {"model": "sasrec-id", "softmax_chunk": 0},
}


def measure(name: str, data_dir: str, batch: int, batches: int, overrides: list[str]) -> dict[str, Any]:
    """Tensor and process peaks of ``batches`` training batches of model ``name`` (in this process)."""
    import numpy as np
    import torch

    from ialp.candidates.config import load_candidates_config
    from ialp.candidates.data import item_texts
    from ialp.candidates.generator import PeakMemory, TensorPeak, _optimizer, build_model, build_taps
    from ialp.candidates.sequential import item_popularity, leave_one_out, train_epoch, training_windows
    from ialp.data import load_dataset

    shipped = load_candidates_config(SHIPPED, overrides)
    cfg = dataclasses.replace(shipped, batch_size=batch, progress=False, data_dir=data_dir, **MODELS[name])
    data = load_dataset(data_dir)
    texts = item_texts(data, data_dir)
    taps = build_taps(data.catalog, cfg, texts=texts) if cfg.model == "sidesan" else None
    split = leave_one_out(data.log.user_histories(), data.log.n_items)
    pop = item_popularity(split.train, data.log.n_items)
    log_q = torch.from_numpy(np.log((pop + 1.0) / (pop + 1.0).sum())).to(torch.float32)
    model = build_model(cfg, data.log.n_items, taps, texts)
    windows = training_windows(split.train, cfg.max_len)
    optimizer = _optimizer(model, cfg)
    run = {"rng": np.random.default_rng(0), "batch_size": batch, "log_q": log_q, "max_batches": batches,
           "softmax_chunk": cfg.softmax_chunk}
    with PeakMemory() as process:
        _, seconds = train_epoch(model, windows, optimizer, **run)  # type: ignore[arg-type]
    with TensorPeak() as tensors:
        train_epoch(model, windows, optimizer, **run)  # type: ignore[arg-type]
    side = {k: getattr(cfg, k) for k in ("layer_group", "side_width", "side_chunk", "softmax_chunk")}
    return {"model": name, "batch": batch, "batches": batches, "tensor_peak_mb": tensors.peak_mb,
            "process_peak_mb": process.peak_mb, "s_per_batch": seconds / batches,
            **({"side": side} if cfg.model == "sidesan" else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DATA))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="candidates.KEY=VALUE",
                        help="override configs/candidates.yaml (the sidesan-text row)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.data_dir, args.batch, args.batches, args.overrides)))
        return
    rows = []
    sets = [arg for o in args.overrides for arg in ("--set", o)]
    for name in args.models.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", name, "--data-dir", args.data_dir, "--batch",
                              str(args.batch), "--batches", str(args.batches), *sets], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(rows))
        return
    print("| model | batch | tensor peak (MiB) | process peak (MiB) | s/batch |\n|---|---:|---:|---:|---:|")
    for r in rows:
        side = ", ".join(f"{k} {v}" for k, v in r.get("side", {}).items())
        name = f"{r['model']} ({side})" if side else r["model"]
        print(f"| {name} | {r['batch']} | {r['tensor_peak_mb']:,.0f} | {r['process_peak_mb']:,.0f} | "
              f"{r['s_per_batch']:.2f} |")


if __name__ == "__main__":
    main()
