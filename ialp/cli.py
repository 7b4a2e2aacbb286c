"""The ``ialp`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ialp.llm.base import LLMConfig, LLMError
from ialp.llm.quality import NEGATIVES


def _cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import ialp  # noqa: F401  (registers the ids)

    for env_id in sorted(k for k in gym.registry if k.startswith("ialp/")):
        print(env_id)
    return 0


def _cmd_bench_env(args: argparse.Namespace) -> int:
    from ialp.bench import bench_env, format_rows

    sizes = tuple(int(b) for b in args.batches.split(","))
    refresh = tuple(int(r) for r in args.refresh.split(",")) if args.refresh else ()
    rows = bench_env(seconds=args.seconds, batch_sizes=sizes, n_items=args.n_items, data_dir=args.data_dir,
                     refresh=refresh, generator=args.generator, pool=args.pool)
    print(json.dumps(rows) if args.json else format_rows(rows))
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from ialp.bench import bench_train, format_train_rows

    rows = bench_train(seconds=args.seconds, batch_sizes=tuple(int(b) for b in args.batches.split(",")),
                       algos=tuple(args.algos.split(",")), n_items=args.n_items, k=args.k, data_dir=args.data_dir)
    print(json.dumps(rows) if args.json else format_train_rows(rows))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ialp.experiment import summary_table
    from ialp.study import TrialsFailed, expand, parse_grid, run_study

    points = expand(args.config, args.set, parse_grid(args.grid), args.out)
    out = args.out or f"runs/{points[0].cfg.name}"
    try:
        rows = run_study(points, out, ray=args.ray, resume=args.resume)
    except TrialsFailed as exc:
        print(f"ialp: error: {exc}\nrerun with --resume to retry them", file=sys.stderr)
        return 1
    for point in points:
        for setting in point.cfg.settings:
            for mode in point.cfg.eval.modes:
                print(f"\n{point.label + ': ' if point.label else ''}setting {setting}, evaluation {mode}:")
                print(summary_table([r for r in rows if r["setting"] == setting and r["eval_mode"] == mode
                                     and all(r[k] == v for k, v in point.values.items())]))
    if points[0].label:
        print(f"\nwrote {out}/: results.csv, curves.csv (a column per grid key), summary.md; each point's run folder "
              f"(config.yaml, *.png, tb/) in {out}/grid/")
    else:
        print(f"\nwrote {out}/: config.yaml, results.csv, curves.csv, summary.md, *.png; "
              f"TensorBoard: tensorboard --logdir {out}/tb")
    return 0


def _llm_config(args: argparse.Namespace) -> LLMConfig:
    from ialp.llm.quality import load_llm_config

    return load_llm_config(args.config, args.set, args.backend)


def _cmd_llm_eval(args: argparse.Namespace) -> int:
    from ialp.llm.preferences import MODES
    from ialp.llm.quality import evaluate_preferences, format_report
    from ialp.schema import ConfigError

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes: got {args.modes!r}; allowed: a comma-separated subset of {MODES}")
    result = evaluate_preferences(args.data_dir, _llm_config(args), k=args.k, n_users=args.users, seed=args.seed,
                                  modes=modes, negatives=args.negatives, validation_users=args.validation_users,
                                  window=args.window, distill_queries=args.distill_queries,
                                  progress=not args.no_progress)
    print(json.dumps(result) if args.json else format_report(result))
    return 0


def _cmd_llm_serve(args: argparse.Namespace) -> int:
    from ialp.llm.serve import start_server

    proc, base_url = start_server(args.engine, args.model, args.host, args.port, [a for a in args.extra if a != "--"])
    print(base_url, flush=True)
    try:
        return int(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
        return 0


def _cmd_bench_llm(args: argparse.Namespace) -> int:
    from ialp.llm.bench import bench_llm, format_bench

    rows = bench_llm(_llm_config(args), n_prompts=args.prompts)
    print(json.dumps(rows) if args.json else format_bench(rows))
    return 0


def _add_llm_options(p: argparse.ArgumentParser, default_backend: str | None = None) -> None:
    p.add_argument("--backend", default=default_backend,
                   help="LLM backend: llamacpp (embedded), openai, vllm, ... or oracle (ground truth, upper bound)")
    p.add_argument("--config", default=None, help="YAML file whose llm: section sets the backend fields")
    p.add_argument("--set", action="append", default=[], metavar="llm.KEY=VALUE",
                   help="set one backend field, e.g. --set llm.concurrency=8 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


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
                     help="override a config field, e.g. --set online.total_timesteps=5000 --set llm.backend=oracle")
    run.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                     help="run the cross-product of these values (repeatable); results.csv gets a column per KEY")
    run.add_argument("--ray", nargs="?", const="local", default=None, metavar="auto|local|ADDRESS",
                     help="run each (setting, seed, methods) cell as a Ray Tune trial: on a new local Ray (local, "
                          "the default), the running cluster (auto) or the cluster at ADDRESS; see the ray: section")
    run.add_argument("--resume", action="store_true",
                     help="with --ray: restore the interrupted Tune experiment; finished trials are not rerun")
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
    benv.add_argument("--refresh", default="0,1,10",
                      help="MovieLens-v0 with a candidate generator: comma-separated refresh intervals, one row each "
                           "(mode candidates; 0: stateless; empty: no such rows)")
    benv.add_argument("--pool", type=int, default=64, help="candidate pool size of the refresh >= 1 rows")
    benv.add_argument("--generator", default=None,
                      help="saved CandidateGenerator for those rows (default: train sasrec-id for one epoch)")
    benv.set_defaults(func=_cmd_bench_env)
    btrain = bench_sub.add_parser("train", help="training steps per second of A2C/PPO with the item-scoring policy")
    btrain.add_argument("--json", action="store_true", help="print one JSON array instead of a table")
    btrain.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    btrain.add_argument("--batches", default="16,256,1024", help="comma-separated numbers of environments")
    btrain.add_argument("--algos", default="a2c,ppo", help="comma-separated algorithms")
    btrain.add_argument("--n-items", type=int, default=200, help="catalogue size of Synthetic-v0")
    btrain.add_argument("--k", type=int, default=100, help="candidates per step in the MovieLens candidate rows")
    btrain.add_argument("--data-dir", default=None,
                        help="MovieLens folder for MovieLens-v0 (default: $IALP_DATA_DIR; skipped if unset)")
    btrain.set_defaults(func=_cmd_bench_train)
    bllm = bench_sub.add_parser("llm", help="LLM prompts per second: sequential, concurrent, cached replay")
    _add_llm_options(bllm)
    bllm.add_argument("--prompts", type=int, default=16, help="number of distinct prompts per pass")
    bllm.set_defaults(func=_cmd_bench_llm)

    llm = sub.add_parser("llm", help="LLM preferences: quality evaluation and model servers")
    llm_sub = llm.add_subparsers(dest="action", required=True)
    ev = llm_sub.add_parser("eval", help="hit rate of LLM preferences on held-out MovieLens positives")
    ev.add_argument("--data-dir", required=True, help="MovieLens folder (e.g. ml-latest-small)")
    _add_llm_options(ev)
    ev.add_argument("--k", type=int, default=5, help="candidates per query (one positive)")
    ev.add_argument("--users", type=int, default=100, help="users sampled")
    ev.add_argument("--seed", type=int, default=0, help="seed of users, candidates and baselines")
    ev.add_argument("--modes", default="choice,score", help="comma-separated backend modes")
    ev.add_argument("--negatives", choices=NEGATIVES, default="uniform",
                    help="how negatives are drawn: uniform (rated items), popularity (the positive's popularity "
                         "stratum) or pool (rank among 100 popularity-stratified items: HR@10, NDCG@10)")
    ev.add_argument("--validation-users", type=int, default=None,
                    help="users (not the evaluated ones) the hybrid's weights are fitted on (default: --users)")
    ev.add_argument("--window", type=int, default=10, help="recent items shown per user")
    ev.add_argument("--distill-queries", type=int, default=0,
                    help="score mode: distil the LLM's PMI choices on this many training-part queries of other users "
                         "into the iALP reward model and report its hit rate (<backend>:reward-pmi)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ev.set_defaults(func=_cmd_llm_eval)
    srv = llm_sub.add_parser("serve", help="start an OpenAI-compatible model server and print its base URL")
    srv.add_argument("--engine", choices=("vllm", "llamacpp"), required=True)
    srv.add_argument("--model", required=True, help="model name or path")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("extra", nargs=argparse.REMAINDER, help="extra engine arguments after --")
    srv.set_defaults(func=_cmd_llm_serve)

    from ialp.candidates.cli import add_candidates_parser

    add_candidates_parser(sub)
    from ialp.eval.cli import add_fidelity_parser

    add_fidelity_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError) as exc:  # ConfigError and DataFormatError are ValueErrors
        print(f"ialp: error: {exc}", file=sys.stderr)
        return 2
    except LLMError as exc:
        print(f"ialp: error: {exc}", file=sys.stderr)
        return 3
    except ConnectionError as exc:  # --ray auto with no Ray running
        print(f"ialp: error: {exc} (--ray local starts one for this run)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
