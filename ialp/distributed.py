"""The cells of a study as Ray Tune trials (``ialp run CONFIG --ray [auto|local|ADDRESS]``).

The driver runs the shared stages of every point once (world, distillation, reward models: :meth:`Pipeline.prepare`),
then each cell (:func:`ialp.experiment.cells`: one setting, one seed, the methods sharing a pretrained policy) is a
trial of a function trainable that runs :meth:`Pipeline.run_cell` on the same config and run folder, so it writes the
same stage files a sequential run would (``pretrain/``, ``runs/``, ``tb/``). Trials need the run folder on a
filesystem every node sees. Tune keeps its own state under ``ray.storage_path`` (default ``<run folder>/ray``), which
``--resume`` restores (``Tuner.restore``): finished trials are not run again, unfinished and failed ones are.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ialp
from ialp.config import ExperimentConfig
from ialp.experiment import Cell, Pipeline, cells
from ialp.schema import parse

__all__ = ["EXPERIMENT_NAME", "run_cells"]

#: The Tune experiment's folder name under the storage path.
EXPERIMENT_NAME = "cells"


def _import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as exc:
        raise ImportError('--ray needs Ray Tune: pip install "ialp[distributed]"') from exc
    return ray


def _trial(config: dict[str, Any]) -> None:
    """The function trainable: one cell of one point, with the trial's CPUs as torch's threads."""
    import ray
    import torch
    from ray import tune

    spec = config["trial"]
    torch.set_num_threads(spec["threads"])
    cfg = parse(ExperimentConfig, spec["config"])
    cell = Cell(spec["cell"]["setting"], spec["cell"]["seed"], tuple(spec["cell"]["methods"]))
    rows = Pipeline(cfg, spec["out"], progress=False, log=lambda msg: print(f"[ialp] {msg}", flush=True)).run_cell(cell)
    tune.report({"rows": len(rows), "node_id": ray.get_runtime_context().get_node_id()})


def _trial_dirname(trial: Any) -> str:
    """A trial's folder name: its id and cell label (``<point>/`` flattened)."""
    return f"{trial.trial_id}_{trial.config['trial']['label'].replace('/', '__')}"[:120]


def _worker_env(threads: int) -> dict[str, str]:
    """Environment of the workers: this ``ialp`` first on the path (on a cluster: where every node has it), the
    cache folder, and one OpenMP/MKL thread pool of the trial's size."""
    here = str(Path(ialp.__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if os.environ.get("IALP_CACHE_DIR"):
        env["IALP_CACHE_DIR"] = os.environ["IALP_CACHE_DIR"]
    return env


def run_cells(points: Sequence[tuple[str, ExperimentConfig, Path]], out: Path, address: str, resume: bool = False,
              log: Callable[[str], None] | None = None) -> list[str]:
    """Run the cells of every point as Tune trials on the Ray cluster at ``address`` (``local``: start one here;
    ``auto``: the running one); the shared stages run first, here.

    Args:
        points: (label, config, run folder) of each grid point (one, labelled ``""``, without a grid).
        out: The study's folder (Tune's state goes to ``out/ray`` unless ``ray.storage_path`` is set).

    Returns:
        One line per trial that failed after ``ray.max_failures`` retries: its cell and error.
    """
    ray = _import_ray()
    from ray import tune

    say = log or print
    rc = points[0][1].ray
    threads = max(1, int(rc.resources["cpu"]))
    storage = rc.storage_path or str((out / "ray").resolve())
    path = f"{storage.rstrip('/')}/{EXPERIMENT_NAME}"
    for _, cfg, folder in points:
        Pipeline(cfg, folder, log=log).prepare()
    if not ray.is_initialized():
        local = {"include_dashboard": False} if address == "local" else {}  # not allowed when connecting
        ray.init(address=address, runtime_env={"env_vars": _worker_env(threads)}, log_to_driver=False, **local)
    trainable = tune.with_resources(_trial, dict(rc.resources))
    if resume:
        if not tune.Tuner.can_restore(path):
            raise FileNotFoundError(f"--resume: no Tune experiment to restore at {path}")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, restart_errored=True)
        say(f"resuming {path}")
    else:
        trials = [{"label": f"{label}/{c.label}" if label else c.label, "out": str(folder.resolve()),
                   "config": cfg.to_dict(), "cell": dataclasses.asdict(c), "threads": threads}
                  for label, cfg, folder in points for c in cells(cfg)]
        say(f"{len(trials)} trials, {dict(rc.resources)} each, Tune state in {path}")
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=EXPERIMENT_NAME, storage_path=storage, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=rc.max_failures)))
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    done = sum(r.error is None for r in results)
    say(f"{done} of {len(results)} trials finished")
    return [f"{(r.config or {}).get('trial', {}).get('label', r.path)}: {type(r.error).__name__}: {r.error}"
            for r in results if r.error]
