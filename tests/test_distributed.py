"""``ialp run --ray``: the cells as Ray Tune trials on a real local Ray, with the sequential run's answers.

Every test starts real Ray processes (no mock): they carry the ``ray`` marker and run in the normal suite.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "regression"
TINY = str(FIXTURE / "synthetic_tiny.yaml")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "IALP_CACHE_DIR": str(tmp_path / "cache")}


def ialp_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ialp run`` in a fresh process (so that each run starts and stops its own Ray)."""
    return subprocess.run([sys.executable, "-m", "ialp.cli", "run", *args], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=600)


def rows(path: Path) -> list[tuple[str, ...]]:
    """A CSV's header and its rows sorted (the order of rows is not part of the contract)."""
    with open(path, newline="") as f:
        header, *body = list(csv.reader(f))
    return [tuple(header), *sorted(map(tuple, body))]


def test_ray_local_reproduces_the_sequential_results(tmp_path: Path) -> None:
    done = ialp_run(tmp_path, TINY, "--out", str(tmp_path / "run"), "--ray", "local")
    assert done.returncode == 0, done.stderr[-3000:]
    # The fixture is the sequential run's results.csv (tests/test_regression.py checks that it still is).
    assert rows(tmp_path / "run" / "results.csv") == rows(FIXTURE / "results.csv")
    trials = [p for p in (tmp_path / "run" / "ray" / "cells").iterdir() if p.is_dir()]
    assert len(trials) == 2 * 2  # settings x seeds; the methods share one cell
    assert "4 of 4 trials finished" in done.stdout
