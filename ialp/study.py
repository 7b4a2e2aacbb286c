"""A study: one experiment config, optionally expanded into a grid of configs, run sequentially or on Ray.

    ialp run CONFIG --out DIR [--grid KEY=V1,V2 ...] [--ray [auto|local|ADDRESS] [--resume]]

Without ``--grid`` the run folder is ``DIR`` itself and nothing differs from a plain ``ialp run``. With grids, the
cross-product of the values gives one config per point (each value applied as a ``--set KEY=VALUE`` override), each
point runs in its own folder ``DIR/grid/<KEY=VALUE,...>/``, and ``DIR`` gets ``results.csv`` and ``curves.csv`` with
one column per grid key and a ``summary.md`` grouped by point. With ``--ray`` the cells of every point are Ray Tune
trials (:mod:`ialp.distributed`); the tables are then assembled by the same sequential pass, which finds every
stage done.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ialp.config import ExperimentConfig
from ialp.eval import CURVE_FIELDS, RESULT_FIELDS, summary_table, write_csv
from ialp.experiment import Pipeline, load_experiment
from ialp.schema import ConfigError

__all__ = ["Point", "TrialsFailed", "expand", "parse_grid", "run_study"]


class TrialsFailed(RuntimeError):
    """Some Ray trials failed after their retries; the message names each with its error."""


@dataclass(frozen=True)
class Point:
    """One grid point: its grid values (KEY -> VALUE as written; empty without a grid), config and run folder."""

    values: dict[str, str]
    cfg: ExperimentConfig
    out: Path
    label: str = field(default="")


def parse_grid(specs: Iterable[str]) -> dict[str, list[str]]:
    """``["a.b=1,2", "c=x"]`` -> ``{"a.b": ["1", "2"], "c": ["x"]}``; values stay YAML text (parsed as overrides).

    >>> parse_grid(["online.total_timesteps=512,1024", "llm.backend=oracle"])
    {'online.total_timesteps': ['512', '1024'], 'llm.backend': ['oracle']}
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key or not all(values):
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,... with non-empty values")
        if key in grid:
            raise ConfigError(f"--grid {spec!r}: {key!r} is given twice; list all its values in one --grid")
        grid[key] = values
    return grid


def expand(path: str | Path | None, overrides: Sequence[str], grid: dict[str, list[str]],
           out: str | Path | None) -> list[Point]:
    """The study's points, every config loaded and validated before any work starts.

    Args:
        path: The experiment YAML.
        overrides: ``--set`` overrides, applied before the grid values.
        grid: :func:`parse_grid`'s result; empty for a plain run.
        out: The run folder (default ``runs/<name>``).
    """
    base = load_experiment(path, overrides)
    root = Path(out or f"runs/{base.name}")
    if not grid:
        return [Point({}, base, root)]
    points = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        label = ",".join(f"{k}={v}" for k, v in values.items())
        cfg = load_experiment(path, [*overrides, *(f"{k}={v}" for k, v in values.items())])
        points.append(Point(values, cfg, root / "grid" / re.sub(r"[^\w.=,+-]", "_", label), label))
    return points


def run_study(points: Sequence[Point], out: str | Path, ray: str | None = None, resume: bool = False,
              progress: bool = True, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every point (on Ray when ``ray`` is an address, ``local`` or ``auto``) and write the tables.

    Returns:
        The result rows of every point, each with its grid values as extra columns.

    Raises:
        TrialsFailed: A Ray trial kept failing; the other trials finished, the tables are not written, and
            ``--resume`` retries the failed ones.
    """
    if resume and ray is None:
        raise ConfigError("--resume restores a Ray Tune experiment: use it with --ray")
    if ray is not None:
        from ialp.distributed import run_cells

        failures = run_cells([(p.label, p.cfg, p.out) for p in points], Path(out), ray, resume=resume, log=log)
        if failures:
            raise TrialsFailed(f"{len(failures)} trial(s) failed after retries:\n" + "\n".join(failures))
    rows: list[dict[str, Any]] = []
    for point in points:
        rows += [{**point.values, **row} for row in Pipeline(point.cfg, point.out, progress, log).run()]
    if len(points) > 1 or points[0].values:
        _write_grid_tables(points, Path(out), rows)
    return rows


def _write_grid_tables(points: Sequence[Point], out: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(points[0].values)
    write_csv(out / "results.csv", rows, [*keys, *RESULT_FIELDS])
    curves: list[dict[str, Any]] = []
    for point in points:
        with open(point.out / "curves.csv", newline="") as f:
            curves += [{**point.values, **c} for c in csv.DictReader(f)]
    write_csv(out / "curves.csv", curves, [*keys, *CURVE_FIELDS])
    parts = [f"# Grid over {', '.join(keys)}: {len(points)} points", ""]
    for point in points:
        sub = [r for r in rows if all(r[k] == v for k, v in point.values.items())]
        parts += [f"## {point.label}", "", f"Run folder: `{point.out.relative_to(out)}` (its own summary.md and "
                  f"plots).", ""]
        for setting in point.cfg.settings:
            for mode in point.cfg.eval.modes:
                parts += [f"### setting `{setting}`, evaluation `{mode}`", "",
                          summary_table([r for r in sub if r["setting"] == setting and r["eval_mode"] == mode]), ""]
    (out / "summary.md").write_text("\n".join(parts))
