"""``ialp run --ray``: the cells as Ray Tune trials, with the sequential run's answers, through faults and resumes.

Every test starts real Ray processes (a local Ray, or a head and a worker node on loopback) and injects real faults
(SIGKILL of a trial's worker or of the driver); no mock. They carry the ``ray`` marker and run in the normal suite.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def start_driver(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``ialp run TINY ARGS`` in the background, in its own session, with ``env`` added to its environment."""
    return subprocess.Popen([sys.executable, "-m", "ialp.cli", "run", TINY, *args], env={**_env(tmp_path), **env},
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


def test_ray_local_reproduces_the_sequential_results_when_a_killed_trial_is_retried(tmp_path: Path) -> None:
    driver = start_driver(tmp_path, "--out", str(tmp_path / "run"), "--ray", "local", "--set", "ray.max_failures=1")
    kill_one_running_trial(driver)  # Tune retries it (FailureConfig); the cell's finished stages are reused
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    assert "4 of 4 trials finished" in stdout  # settings x seeds; the methods share one cell
    # The fixture is the sequential run's results.csv (tests/test_regression.py checks that it still is).
    assert rows(tmp_path / "run" / "results.csv") == rows(FIXTURE / "results.csv")


def test_a_trial_that_keeps_failing_is_reported_the_others_finish_and_resume_retries_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    driver = start_driver(tmp_path, *FAULTY, "--out", str(out), "--ray", "local", "--set", "ray.max_failures=0")
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


def _analysis(experiment: Path) -> Any:
    from ray import tune

    return tune.ExperimentAnalysis(str(experiment))


def tune_trials(experiment: Path) -> dict[str, tuple[str, float | None]]:
    """Tune's saved state of the study's trials: cell label -> (status, timestamp of its last report)."""
    return {t.config["trial"]["label"]: (t.status, t.last_result.get("timestamp"))
            for t in _analysis(experiment).trials}


def test_a_killed_driver_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "run"
    experiment = out / "ray" / "cells"
    # Tune saves its state every step here (by default at most every ~10 s), so that the kill falls after a save.
    driver = start_driver(tmp_path, *FAULTY, "--out", str(out), "--ray", "local", TUNE_GLOBAL_CHECKPOINT_S="0")
    deadline = time.monotonic() + 300
    while True:  # until Tune has saved a finished trial
        assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()[1][-3000:]
        if list(experiment.glob("experiment_state-*.json")):
            # Tune rewrites the file in place, from the driver: freeze the driver so that what is read here is what
            # the kill leaves behind (a read that catches a half-written file lets it go on and polls again).
            os.kill(driver.pid, signal.SIGSTOP)
            try:
                before = tune_trials(experiment)
            except json.JSONDecodeError:
                before = {}
            if any(status == "TERMINATED" for status, _ in before.values()):
                break
            os.kill(driver.pid, signal.SIGCONT)
        time.sleep(0.2)
    for pid in [driver.pid, *descendants(driver.pid)]:  # the driver and the local Ray it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    driver.communicate()
    assert tune_trials(experiment) == before  # the kill landed on the state that was read
    finished = {label: stamp for label, (status, stamp) in before.items() if status == "TERMINATED"}
    assert 1 <= len(finished) < 4, before
    resumed = ialp_run(tmp_path, TINY, *FAULTY, "--out", str(out), "--ray", "local", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "4 of 4 trials finished" in resumed.stdout
    after = tune_trials(experiment)
    assert all(status == "TERMINATED" for status, _ in after.values())
    assert {label: after[label][1] for label in finished} == finished  # restored as finished, not run again
    assert rows(out / "results.csv") == fixture_rows()


# ------------------------------------------------------------------------------------------------ a real cluster
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on loopback with no CPUs (it only coordinates, as on a large cluster) plus one worker node with two,
    as separate ``ray start`` processes, so every trial runs on the worker node; yields the head's address and the
    environment to reach it with. Stopped by signalling the two ``ray start --block``
    processes (each stops what it started; ``ray stop`` would also stop other Ray clusters of this user)."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**_env(tmp_path), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    address = f"127.0.0.1:{free_port()}"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]
    nodes = [subprocess.Popen([ray_bin, "start", "--head", "--port", address.rpartition(":")[2], "--temp-dir", temp,
                               "--num-cpus", "0", "--include-dashboard=false", "--ray-client-server-port",
                               str(free_port()), *common],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 120
        while True:
            status = subprocess.run([ray_bin, "status", "--address", address], env=env, capture_output=True, text=True)
            active = status.stdout.partition("Pending:")[0].count(" node_")
            if active == 1 and len(nodes) == 1:
                nodes.append(subprocess.Popen([ray_bin, "start", "--address", address, "--num-cpus", "2", *common],
                                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if active == 2:
                break
            assert time.monotonic() < deadline and all(n.poll() is None for n in nodes), status.stderr[-2000:]
            time.sleep(1)
        yield address, env
    finally:
        for node in reversed(nodes):
            node.terminate()
            node.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_grid_on_a_real_two_node_cluster_equals_the_sequential_grid(
        tmp_path: Path, ray_cluster: tuple[str, dict[str, str]]) -> None:
    address, env = ray_cluster
    small = [TINY, "--set", "methods=[random, ucb]", "--set", "eval.seeds=[0]", "--grid",
             "online.total_timesteps=256,512"]
    done = subprocess.run([sys.executable, "-m", "ialp.cli", "run", *small, "--out", str(tmp_path / "ray"), "--ray",
                           address], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 of 4 trials finished" in done.stdout  # 2 points x 2 settings
    nodes = {t.last_result["node_id"] for t in _analysis(tmp_path / "ray" / "ray" / "cells").trials}
    assert len(nodes) == 1  # the worker node: the head has no CPU for a trial
    sequential = ialp_run(tmp_path, *small, "--out", str(tmp_path / "seq"))
    assert sequential.returncode == 0, sequential.stderr[-3000:]
    assert rows(tmp_path / "ray" / "results.csv") == rows(tmp_path / "seq" / "results.csv")
    assert rows(tmp_path / "ray" / "results.csv")[0][0] == "online.total_timesteps"
