"""Run one experiment config with its (setting, seed, pretrained variant) cells in parallel processes.

    python scripts/run_parallel.py configs/movielens.yaml --out runs/movielens --jobs 8 [--set K=V ...]

The world is built first, once. Then the cells of the methods that need no pretrained policy (baselines, learners
from scratch) start while this process runs the shared stages that the others need (distillation, reward models)
on one of the ``--jobs`` slots; the cells of each pretrained variant follow. Every cell is an ``ialp run`` of the
same config restricted to one setting, one seed and its methods, all writing their stage files into the same run
folder. Finally one ``ialp run`` of the
whole config finds every stage done and writes results.csv, curves.csv, summary.md and the plots. The results are
those of a sequential ``ialp run``: each cell is keyed and seeded by the config alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ialp.experiment import METHODS, Cell, Pipeline, cells, load_experiment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<name>)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes at a time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    cfg = load_experiment(args.config, args.set)
    args.out = args.out or f"runs/{cfg.name}"
    pipe = Pipeline(cfg, args.out)
    _ = pipe.world  # built (and its fitted models cached) before cells run at once
    todo = cells(cfg, join_plain=False)
    plain = [c for c in todo if all(METHODS[m].pretrained is None for m in c.methods)]
    slots = threading.Semaphore(args.jobs)  # processes at a time, the shared stages' included
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "ialp.cli", "run", args.config, "--out", args.out,
            *(a for kv in args.set for a in ("--set", kv))]

    def run(cell: Cell) -> int:
        cmd = [*base, *(a for kv in cell.overrides() for a in ("--set", kv))]
        with slots:
            start = time.time()
            code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        print(f"{cell.label}: exit {code.returncode} in {time.time() - start:.0f} s", flush=True)
        if code.returncode:
            print(code.stderr[-2000:], file=sys.stderr)
        return code.returncode

    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run, c) for c in plain]
        with slots:
            start = time.time()
            try:
                pipe.prepare()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
            print(f"shared stages: done in {time.time() - start:.0f} s", flush=True)
        futures += [pool.submit(run, c) for c in todo if c not in plain]
        failed = sum(f.result() != 0 for f in futures)
    if failed:
        print(f"{failed} of {len(todo)} cells failed", file=sys.stderr)
        return 1
    return subprocess.run([*base], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
