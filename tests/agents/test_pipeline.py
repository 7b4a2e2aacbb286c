"""The pipeline end to end (oracle backend, tiny budgets): output files, TensorBoard tags, resume, baselines."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ialp.config import load_config
from ialp.experiment import METHODS, Pipeline

REPO = Path(__file__).resolve().parents[2]
# candidates-top1 runs in the candidates tests, the d3rlpy baselines in tests/agents/test_offline_rl.py
CATALOGUE_RUN = [m for m in METHODS if METHODS[m].scope != "generator" and m not in ("cql", "bcq")]
TINY = ["llm.backend=oracle", "env.kwargs={n_items: 30, warm_start: 3}", "distill.queries=60", "distill.log_users=100",
        "reward.epochs=10", "reward.hidden=16", "agent.net_arch=[16]", "agent.num_envs=8",
        "pretrain.total_timesteps=256", "online.total_timesteps=256", "eval.users=8", "eval.seeds=[0]",
        "settings=[free, nx0]"]


def _tags(folder: Path) -> set[str]:
    tags: set[str] = set()
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags.update(acc.Tags()["scalars"])
    return tags


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = load_config(REPO / "configs" / "synthetic.yaml", [*TINY, f"methods={CATALOGUE_RUN}"])
    Pipeline(cfg, out, progress=False).run()
    return out


def test_every_output_is_written(run_dir: Path) -> None:
    for name in ("config.yaml", "results.csv", "curves.csv", "summary.md", "results.png", "curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["method"], r["eval_mode"]) for r in rows] == [
        (s, m, e) for s in ("free", "nx0") for m in CATALOGUE_RUN for e in ("sample", "argmax")]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("cumulative_reward", "novelty", "length"))
    with open(run_dir / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert {"a2c-scratch", "a-ialp-ft", "a-ialp-ap", "ialp", "ucb"} <= {r["method"] for r in curves}
    assert {r["setting"] for r in curves} == {"free", "nx0"} and all(int(r["step"]) > 0 for r in curves)
    summary = (run_dir / "summary.md").read_text()
    assert "| a-ialp-ap | 1 |" in summary and "## setting `nx0`, evaluation `argmax`" in summary
    assert "User pools (disjoint)" in summary
    assert (run_dir / "pretrain" / "llm_nx0_s0.zip").exists() and (run_dir / "reward" / "logonly.pt").exists()


def test_tensorboard_events_have_rec_llm_eval_and_sb3_tags(run_dir: Path) -> None:
    tags = _tags(run_dir / "tb")
    assert {"llm/llm/calls", "llm/llm/ok_fraction", "eval/sample/cumulative_reward", "eval/argmax/novelty",
            "rec/episode_return", "train/ap_weight"} <= tags
    assert any(t.startswith("train/") for t in tags) and any(t.startswith("rollout/") for t in tags)


def test_resume_skips_finished_stages(run_dir: Path) -> None:
    cfg = load_config(run_dir / "config.yaml")
    again = Pipeline(cfg, run_dir, progress=False)
    again.run()
    assert again.done == []
    assert "run:a-ialp-ap:free:0" in again.skipped and "reward:llm" in again.skipped
    changed = Pipeline(load_config(run_dir / "config.yaml", ["online.total_timesteps=128", "settings=[free]",
                                                             "methods=[random, a-ialp-ft]"]), run_dir, progress=False)
    changed.run()
    assert changed.done == ["run:a-ialp-ft:free:0"]  # pretraining and distillation reused
    retuned = Pipeline(load_config(run_dir / "config.yaml", ["online.total_timesteps=128", "settings=[free]",
                                                             "agent.learning_rate=0.002", "methods=[random, ialp]"]),
                       run_dir, progress=False)
    retuned.run()  # the agent section feeds pretraining: ialp is redone, random (which reads no agent) is not
    assert retuned.done == ["pretrain:llm:free:0", "run:ialp:free:0"]
    more_seeds = Pipeline(load_config(run_dir / "config.yaml", ["online.total_timesteps=128", "settings=[free]",
                                                                "agent.learning_rate=0.002", "eval.seeds=[0, 1]",
                                                                "methods=[random, ialp]"]), run_dir, progress=False)
    more_seeds.run()  # a cell's result depends on its own seed only: seed 0 is reused (scripts/run_parallel.py)
    assert more_seeds.done == ["run:random:free:1", "pretrain:llm:free:1", "run:ialp:free:1"]
    own_rate = Pipeline(load_config(run_dir / "config.yaml", ["online.total_timesteps=128", "settings=[free]",
                                                              "pretrain.learning_rate=0.004", "eval.seeds=[0]",
                                                              "methods=[random, ialp]"]), run_dir, progress=False)
    own_rate.run()  # pretraining's own rate is part of its key and its checkpoint (ft trains on at the agent's rate)
    assert own_rate.done == ["pretrain:llm:free:0", "run:ialp:free:0"]
    assert own_rate.pretrained("llm", 0, "free").learning_rate == 0.004


def test_offline_rl_baselines_run_through_the_registry(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "synthetic.yaml", [*TINY, "offline.steps=200", "settings=[nx0]",
                                                            "eval.modes=[argmax]", "methods=[random, cql, bcq]"])
    rows = Pipeline(cfg, tmp_path, progress=False).run()
    assert [r["method"] for r in rows] == ["random", "cql", "bcq"]
    assert all(r["length"] >= 1 and np.isfinite(r["cumulative_reward"]) for r in rows)


def test_pipeline_world_is_built_by_the_env_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The world reads the data the registered factory loaded: its environment variable and loader options."""
    from ialp.agents.distill import build_world

    monkeypatch.setenv("IALP_KUAIREC_DIR", str(REPO / "tests" / "data" / "fixtures" / "kuairec"))
    monkeypatch.delenv("IALP_DATA_DIR", raising=False)
    cfg = load_config(overrides=["env.id=ialp/KuaiRec-v0", "env.kwargs={matrix: big, mf: {dim: 2, iterations: 2}}",
                                 "methods=[random]"])
    info = build_world(cfg).info
    assert info["train_users"] + info["online_users"] + info["eval_users"] == 3  # the big matrix's 3 users, not 4


def test_run_parallel_equals_the_sequential_run(tmp_path: Path) -> None:
    """scripts/run_parallel.py (shared stages once, then one process per cell) writes the results of one sequential
    ``ialp run``."""
    overrides = [*TINY, "methods=[random, ppo-scratch, ialp, a-ialp-ft]", "settings=[free]"]
    sets = [a for kv in overrides for a in ("--set", kv)]
    script, config = REPO / "scripts" / "run_parallel.py", REPO / "configs" / "synthetic.yaml"
    done = subprocess.run([sys.executable, str(script), str(config), "--out", str(tmp_path / "parallel"), "--jobs", "2",
                           *sets], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    Pipeline(load_config(config, overrides), tmp_path / "sequential", progress=False).run()

    def rows(folder: Path) -> list[dict[str, str]]:
        with open(folder / "results.csv") as f:
            return list(csv.DictReader(f))

    parallel, sequential = rows(tmp_path / "parallel"), rows(tmp_path / "sequential")
    assert [r["method"] for r in parallel] == ["random"] * 2 + ["ppo-scratch"] * 2 + ["ialp"] * 2 + ["a-ialp-ft"] * 2
    assert parallel == sequential
