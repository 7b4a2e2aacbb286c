"""``ialp run --ray``: the cells as Ray Tune trials on a real local Ray, with the sequential run's answers.

Every test starts real Ray processes (no mock): they carry the ``ray`` marker and run in the normal suite.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
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


# ------------------------------------------------------------------------------------------------ faults
# Cells of three methods, two seeds and two settings: four trials, whose rows are the fixture's rows of these methods
# (a cell's stage keys do not hold the list of methods or seeds).
FAULTY = ["--set", "methods=[random, ucb, a2c-scratch]"]


def fixture_rows(methods: tuple[str, ...] = ("random", "ucb", "a2c-scratch")) -> list[tuple[str, ...]]:
    header, *body = rows(FIXTURE / "results.csv")
    return [header, *(r for r in body if r[0] in methods)]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def running_trials(driver: subprocess.Popen[str]) -> list[int]:
    """The driver's Ray workers that are running a trial now (Ray titles them ``ray::ImplicitFunc.train``)."""
    found = []
    for pid in descendants(driver.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc.train"):
                found.append(pid)
        except OSError:
            continue
    return found


def start_driver(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ialp.cli", "run", TINY, *FAULTY, *args], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_one_running_trial(driver: subprocess.Popen[str]) -> int:
    """SIGKILL the first worker seen running a trial (the trial dies mid-cell); returns its pid."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        pids = running_trials(driver)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        time.sleep(0.05)
    raise AssertionError(f"no trial seen running; driver exit {driver.poll()}")


def test_a_killed_trial_is_retried_and_the_results_do_not_change(tmp_path: Path) -> None:
    driver = start_driver(tmp_path, "--out", str(tmp_path / "run"), "--ray", "local", "--set", "ray.max_failures=1")
    kill_one_running_trial(driver)
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    assert "4 of 4 trials finished" in stdout
    assert rows(tmp_path / "run" / "results.csv") == fixture_rows()


def test_a_trial_that_keeps_failing_is_reported_the_others_finish_and_resume_retries_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    driver = start_driver(tmp_path, "--out", str(out), "--ray", "local", "--set", "ray.max_failures=0")
    kill_one_running_trial(driver)
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 1
    assert "3 of 4 trials finished" in stdout
    assert "1 trial(s) failed after retries" in stderr and "--resume" in stderr
    assert not (out / "results.csv").exists()  # no table from a partial study
    assert len(list((out / "runs").glob("*.json"))) >= 3 * 3  # the other cells' methods are done
    resumed = ialp_run(tmp_path, TINY, *FAULTY, "--out", str(out), "--ray", "local", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows(out / "results.csv") == fixture_rows()


def tune_trials(experiment: Path) -> dict[str, tuple[str, float | None]]:
    """Tune's saved state of the study's trials: cell label -> (status, timestamp of its last report)."""
    from ray import tune

    analysis = tune.ExperimentAnalysis(str(experiment))
    return {t.config["trial"]["label"]: (t.status, t.last_result.get("timestamp")) for t in analysis.trials}


def test_a_killed_driver_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "run"
    experiment = out / "ray" / "cells"
    # Tune saves its state every step here (by default at most every ~10 s), so that the kill falls after a save.
    driver = subprocess.Popen([sys.executable, "-m", "ialp.cli", "run", TINY, *FAULTY, "--out", str(out), "--ray",
                               "local"], env={**_env(tmp_path), "TUNE_GLOBAL_CHECKPOINT_S": "0"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:  # until Tune has saved a finished trial
        assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()[1][-3000:]
        if list(experiment.glob("experiment_state-*.json")):
            before = tune_trials(experiment)
            if any(status == "TERMINATED" for status, _ in before.values()):
                break
        time.sleep(0.2)
    for pid in [driver.pid, *descendants(driver.pid)]:  # the driver and the local Ray it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    driver.communicate()
    before = tune_trials(experiment)
    finished = {label: stamp for label, (status, stamp) in before.items() if status == "TERMINATED"}
    assert 1 <= len(finished) < 4, before
    resumed = ialp_run(tmp_path, TINY, *FAULTY, "--out", str(out), "--ray", "local", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "4 of 4 trials finished" in resumed.stdout
    after = tune_trials(experiment)
    assert all(status == "TERMINATED" for status, _ in after.values())
    assert {label: after[label][1] for label in finished} == finished  # restored as finished, not run again
    assert rows(out / "results.csv") == fixture_rows()
