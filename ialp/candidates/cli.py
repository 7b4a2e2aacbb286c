"""``ialp candidates train|eval``: hooked into ``ialp.cli`` by ``add_candidates_parser(sub)``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["add_candidates_parser"]


def _cmd_train(args: argparse.Namespace) -> int:
    from ialp.candidates.config import load_candidates_config
    from ialp.candidates.generator import CandidateGenerator
    from ialp.data import load_dataset

    cfg = load_candidates_config(args.config, args.set)
    if args.data_dir:
        cfg = dataclasses.replace(cfg, data_dir=args.data_dir)
    if not cfg.data_dir:
        raise ValueError("candidates.data_dir is not set: put it in the config or pass --data-dir")
    if args.no_progress:
        cfg = dataclasses.replace(cfg, progress=False)
    out = Path(args.out or f"runs/candidates-{cfg.model}")
    gen = CandidateGenerator(config=cfg).fit(load_dataset(cfg.data_dir))
    gen.save(out / "generator.pt")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out / "metrics.json").write_text(json.dumps(gen.metrics, indent=2))
    print(json.dumps(gen.metrics) if args.json else "\n".join(f"{k}: {v}" for k, v in gen.metrics.items()))
    print(f"wrote {out}/generator.pt, config.json, metrics.json")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ialp.candidates.benchmark import DEFAULT_MODELS, EVAL_MODELS, evaluate_models, format_table
    from ialp.candidates.config import load_candidates_config

    cfg = load_candidates_config(args.config, args.set)
    if args.no_progress or args.json:
        cfg = dataclasses.replace(cfg, progress=not args.no_progress and not args.json)
    default = [*DEFAULT_MODELS, *(["sidesan-text-image"] if "image" in cfg.media else [])]
    models = [m.strip() for m in (args.models or ",".join(default)).split(",") if m.strip()]
    unknown = sorted(set(models) - set(EVAL_MODELS))
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; known: {sorted(EVAL_MODELS)}")
    result: dict[str, Any] = evaluate_models(args.data_dir, seeds=args.seeds, base=cfg, models=models,
                                             finetune_batches=args.finetune_batches)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def add_candidates_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``candidates train`` and ``candidates eval`` to the ``ialp`` subcommands."""
    cand = subparsers.add_parser("candidates", help="multimodal sequential recommender (candidate generator)")
    sub = cand.add_subparsers(dest="action", required=True)

    train = sub.add_parser("train", help="train a candidate generator and store it with its HR/NDCG")
    train.add_argument("--config", default=None, help="YAML file with a candidates: section")
    train.add_argument("--data-dir", default=None, help="overrides candidates.data_dir")
    train.add_argument("--out", default=None, help="run folder (default: runs/candidates-<model>)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, e.g. --set candidates.epochs=3 (repeatable)")
    train.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="HR@10/NDCG@10 and efficiency of popularity, sasrec-id, sidesan-text and "
                                     "finetune-text")
    ev.add_argument("--data-dir", required=True, help="MovieLens folder (e.g. ml-latest-small)")
    ev.add_argument("--seeds", type=int, default=3, help="training seeds per model")
    ev.add_argument("--config", default=None, help="YAML file with a candidates: section (shared settings)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field, e.g. --set candidates.epochs=3 (repeatable)")
    ev.add_argument("--models", default=None,
                    help="comma-separated models (default: popularity, sasrec-id, sidesan-text, finetune-text, and "
                         "sidesan-text-image when candidates.media.image is set); also sidesan-image, "
                         "sidesan-text-image-iisan, sidesan-text-image-crossan")
    ev.add_argument("--finetune-batches", type=int, default=2, metavar="N",
                    help="finetune-text: train N batches (one seed) to measure its cost, extrapolated to an epoch, "
                         "and leave it unscored; 0: train and score it like the others (hours on a CPU)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(func=_cmd_eval)
    return cand
