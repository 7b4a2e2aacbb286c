"""Grids (``ialp run --grid``): one config per point of the cross-product, one table with a column per grid key."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ialp.schema import ConfigError
from ialp.study import expand, parse_grid, run_study

TINY = Path(__file__).resolve().parent / "fixtures" / "regression" / "synthetic_tiny.yaml"
SMALL = ["methods=[random, ucb]", "eval.seeds=[0]", "settings=[free]", "eval.users=8"]

pytestmark = pytest.mark.usefixtures("module_model_cache")


@pytest.mark.parametrize("spec", ["online.total_timesteps", "=1,2", "online.total_timesteps=1,,2", "a="])
def test_malformed_grid_is_named(spec: str) -> None:
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid([spec])


def test_grid_key_given_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["eval.users=8", "eval.users=16"])


def test_bad_grid_value_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"online\.total_timesteps"):
        expand(TINY, SMALL, parse_grid(["online.total_timesteps=256,-1"]), tmp_path)
    assert not tmp_path.joinpath("grid").exists()


def test_resume_needs_ray(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--ray"):
        run_study(expand(TINY, SMALL, {}, tmp_path), tmp_path, resume=True)


def test_grid_is_the_cross_product_with_a_column_per_key(tmp_path: Path) -> None:
    grid = parse_grid(["online.total_timesteps=256,512", "agent.n_steps=8"])
    points = expand(TINY, SMALL, grid, tmp_path / "grid-run")
    assert [p.values for p in points] == [{"online.total_timesteps": "256", "agent.n_steps": "8"},
                                         {"online.total_timesteps": "512", "agent.n_steps": "8"}]
    assert [p.cfg.online.total_timesteps for p in points] == [256, 512]
    run_study(points, tmp_path / "grid-run", progress=False, log=lambda _: None)
    with open(tmp_path / "grid-run" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:3] == ["online.total_timesteps", "agent.n_steps", "method"]
    assert len(table) == 2 * 2 * 2  # points x methods x eval modes
    # A point's rows are those of a plain run of the config with the point's values set.
    plain = run_study(expand(TINY, [*SMALL, "online.total_timesteps=512"], {}, tmp_path / "plain"), tmp_path / "plain",
                      progress=False, log=lambda _: None)
    point = [{k: v for k, v in r.items() if k not in grid} for r in table if r["online.total_timesteps"] == "512"]
    assert [r["cumulative_reward"] for r in point] == [repr(r["cumulative_reward"]) for r in plain]
    summary = (tmp_path / "grid-run" / "summary.md").read_text()
    assert "## online.total_timesteps=256,agent.n_steps=8" in summary
    assert "## online.total_timesteps=512,agent.n_steps=8" in summary
