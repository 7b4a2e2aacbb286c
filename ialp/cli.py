"""The ``ialp`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import ialp  # noqa: F401  (registers the ids)

    for env_id in sorted(k for k in gym.registry if k.startswith("ialp/")):
        print(env_id)
    return 0


def _cmd_bench_env(args: argparse.Namespace) -> int:
    from ialp.bench import bench_env, format_rows

    sizes = tuple(int(b) for b in args.batches.split(","))
    rows = bench_env(seconds=args.seconds, batch_sizes=sizes, n_items=args.n_items, data_dir=args.data_dir)
    print(json.dumps(rows) if args.json else format_rows(rows))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ialp.config import load_config
    from ialp.experiment import run_experiment, summary_table

    cfg = load_config(args.config, args.set)
    out = args.out or f"runs/{cfg.name}"
    rows = run_experiment(cfg, out)
    print(summary_table(rows))
    print(f"\nwrote {out}/config.yaml, results.csv, summary.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="ialp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    envs = sub.add_parser("envs", help="list the registered environment ids")
    envs.set_defaults(func=_cmd_envs)

    run = sub.add_parser("run", help="run an experiment config and print its results table")
    run.add_argument("config", help="experiment YAML (e.g. configs/synthetic.yaml)")
    run.add_argument("--out", default=None, help="run folder (default: runs/<name>)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field, e.g. --set train.total_timesteps=5000")
    run.set_defaults(func=_cmd_run)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    benv = bench_sub.add_parser("env", help="user-steps per second of the environments")
    benv.add_argument("--json", action="store_true", help="print one JSON array instead of a table")
    benv.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    benv.add_argument("--batches", default="1,64,1024,4096", help="comma-separated batch sizes")
    benv.add_argument("--n-items", type=int, default=10_000, help="catalogue size of Synthetic-v0")
    benv.add_argument("--data-dir", default=None,
                      help="MovieLens folder for MovieLens-v0 (default: $IALP_DATA_DIR; skipped if unset)")
    benv.set_defaults(func=_cmd_bench_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError) as exc:  # ConfigError and DataFormatError are ValueErrors
        print(f"ialp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
