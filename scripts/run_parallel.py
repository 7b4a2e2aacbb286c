"""Run one experiment config with its (setting, seed, pretrained variant) cells in parallel processes.

    python scripts/run_parallel.py configs/movielens.yaml --out runs/movielens --jobs 8 [--set K=V ...]

The shared stages (world, distillation, reward models) run first, once. Then every cell is an ``ialp run`` of the
same config restricted to one setting, one seed and the methods that share one pretrained policy (methods without
one join the first group), all writing their stage files into the same run folder. Finally one ``ialp run`` of the
whole config finds every stage done and writes results.csv, curves.csv, summary.md and the plots. The results are
those of a sequential ``ialp run``: each cell is keyed and seeded by the config alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from ialp.experiment import Cell, Pipeline, cells, load_experiment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<name>)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes at a time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    cfg = load_experiment(args.config, args.set)
    args.out = args.out or f"runs/{cfg.name}"
    Pipeline(cfg, args.out).prepare()
    todo = cells(cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "ialp.cli", "run", args.config, "--out", args.out,
            *(a for kv in args.set for a in ("--set", kv))]

    def run(cell: Cell) -> int:
        cmd = [*base, *(a for kv in cell.overrides() for a in ("--set", kv))]
        start = time.time()
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        print(f"{cell.label}: exit {code.returncode} in {time.time() - start:.0f} s", flush=True)
        if code.returncode:
            print(code.stderr[-2000:], file=sys.stderr)
        return code.returncode

    with ThreadPoolExecutor(args.jobs) as pool:
        failed = sum(code != 0 for code in pool.map(run, todo))
    if failed:
        print(f"{failed} of {len(todo)} cells failed", file=sys.stderr)
        return 1
    return subprocess.run([*base], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
