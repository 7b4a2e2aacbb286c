"""Results of existing runs do not change: a small Synthetic run reproduces the stored ``results.csv`` exactly.

The fixture (``tests/fixtures/regression/results.csv``) was written by ``ialp run`` on the code before the
typed-config refactor (commit cedc974; the ``a-ialp-ap`` rows rewritten when ap's learner moved to truncated
importance weights, and again when ap's mixture began sampling through ``FastCategorical``), with
``OMP_NUM_THREADS=1``; rerun the same command to regenerate it only when a change of results is intended (and say
so in the commit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "regression"


def test_small_synthetic_run_reproduces_stored_results(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IALP_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-m", "ialp.cli", "run", str(FIXTURE / "synthetic_tiny.yaml"), "--out",
                    str(tmp_path / "run")], env=env, check=True, capture_output=True, text=True)
    produced = (tmp_path / "run" / "results.csv").read_text().splitlines()
    expected = (FIXTURE / "results.csv").read_text().splitlines()
    assert produced[0] == expected[0]  # the same columns
    assert len(produced) == len(expected) == 1 + 9 * 2 * 2 * 2  # methods x seeds x settings x eval modes
    for got, want in zip(produced, expected, strict=True):
        assert got == want
