"""Wall time of one grid study run sequentially and with ``--ray local``, and their ratio.

    python scripts/bench_ray.py [--steps 65536] [--config tests/fixtures/regression/synthetic_tiny.yaml]

The grid is 2 values of ``online.total_timesteps`` x 2 seeds x 2 settings = 8 trials (the methods of a setting and
seed share a cell). Each run starts from an empty run folder and an empty cache, so both do the same work, shared
stages included; the script checks that both write the same results.csv (row order aside). Run it on an otherwise
idle machine: the ratio is only as good as the cores are free.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(args: list[str], folder: Path) -> float:
    """Seconds of one ``ialp run`` into ``folder/run`` with its own cache ``folder/cache``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "IALP_CACHE_DIR": str(folder / "cache")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ialp.cli", "run", *args, "--out", str(folder / "run")], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"ialp run {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def sorted_rows(path: Path) -> list[str]:
    header, *body = path.read_text().splitlines()
    return [header, *sorted(body)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tests/fixtures/regression/synthetic_tiny.yaml")
    parser.add_argument("--steps", type=int, default=65536, help="online steps of the first grid value (x2: second)")
    args = parser.parse_args()
    study = [args.config, "--set", "methods=[random, ucb, a2c-scratch, ialp, a-ialp-ft]",
             "--set", f"pretrain.total_timesteps={args.steps}", "--set", "eval.seeds=[0, 1]",
             "--set", "settings=[free, nx0]", "--grid", f"online.total_timesteps={args.steps},{2 * args.steps}"]
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        seq = timed_run(study, Path(tmp) / "sequential")
        par = timed_run([*study, "--ray", "local"], Path(tmp) / "ray")
        same = sorted_rows(Path(tmp, "sequential", "run", "results.csv")) == sorted_rows(
            Path(tmp, "ray", "run", "results.csv"))
    print(f"grid of 8 trials on {os.cpu_count()} cores: sequential {seq:.1f} s, --ray local {par:.1f} s, "
          f"speed-up {seq / par:.2f}x; same results.csv: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
