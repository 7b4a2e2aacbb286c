"""The command line as a user runs it: ids, benchmark JSON contract, run folder, config errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from ialp.cli import main
from ialp.config import ConfigError, load_config
from ialp.experiment import load_experiment

REPO = Path(__file__).resolve().parents[1]


def test_envs_lists_registered_ids_one_a_line() -> None:
    out = subprocess.run([sys.executable, "-m", "ialp.cli", "envs"], capture_output=True, text=True, check=True)
    ids = out.stdout.split()
    assert ids == sorted(k for k in gym.registry if k.startswith("ialp/"))
    assert "ialp/Synthetic-v0" in ids and "ialp/MovieLens-v0" in ids


def test_bench_env_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"
    assert main(["bench", "env", "--json", "--seconds", "0.05", "--batches", "1,8",
                 "--n-items", "500", "--data-dir", str(data_dir), "--refresh", "0,3", "--pool", "60"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["env"], r["mode"], r["batch"]) for r in rows} == {
        ("ialp/Synthetic-v0", "single", 1), ("ialp/Synthetic-v0", "batched", 1), ("ialp/Synthetic-v0", "batched", 8),
        ("ialp/MovieLens-v0", "single", 1), ("ialp/MovieLens-v0", "batched", 1), ("ialp/MovieLens-v0", "batched", 8),
        ("ialp/MovieLens-v0", "candidates", 1), ("ialp/MovieLens-v0", "candidates", 8), ("CartPole-v1", "reference", 1)}
    assert all(r["user_steps_per_s"] > 0 for r in rows)
    cand = [r for r in rows if r["mode"] == "candidates"]
    assert sorted((r["batch"], r["refresh"], r["pool"]) for r in cand) == [(1, 0, 0), (1, 3, 60), (8, 0, 0), (8, 3, 60)]
    assert all(r["n_items"] == 50 and r["user_steps_per_cpu_s"] > 0 for r in cand)


def test_run_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(REPO / "configs" / "synthetic.yaml"), "--out", str(tmp_path),
                 "--set", "online.total_timesteps=256", "--set", "eval.users=20", "--set", "eval.seeds=[0, 1]",
                 "--set", "llm.backend=oracle", "--set", "methods=[random, oracle-greedy, a2c-scratch]"])
    assert code == 0
    assert "| a2c-scratch | 2 |" in capsys.readouterr().out
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["method"], r["seed"], r["eval_mode"]) for r in rows] == [
        (st, m, s, e) for st in ("free", "nx0") for m in ("random", "oracle-greedy", "a2c-scratch")
        for s in ("0", "1") for e in ("sample", "argmax")]
    assert load_config(tmp_path / "config.yaml").online.total_timesteps == 256
    assert {"curves.csv", "summary.md", "results.png", "tb"} <= {p.name for p in tmp_path.iterdir()}


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agent: unknown field\(s\) \['algoo'\]"):
        load_config(overrides=["agent.algoo=a2c"])
    with pytest.raises(ConfigError, match=r"agent\.num_envs: got 'many'; Input should be a valid integer"):
        load_config(overrides=["agent.num_envs=many"])
    with pytest.raises(ConfigError, match=r"agent\.algo: got 'sac'; Input should be 'a2c' or 'ppo'"):
        load_config(overrides=["agent.algo=sac"])
    with pytest.raises(ConfigError, match=r"reward\.loss: got 'mse'; Input should be 'listwise', 'pairwise' or"):
        load_config(overrides=["reward.loss=mse"])
    with pytest.raises(ConfigError, match=r"llm: unknown field\(s\) \['temprature'\]; allowed: \['api',"):
        load_config(overrides=["llm.temprature=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_reports_bad_input_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(REPO / "configs" / "synthetic.yaml"), "--set", "eval.users=0"]) == 2
    assert "eval.users: got 0; Input should be greater than 0" in capsys.readouterr().err


SYNTHETIC = str(REPO / "configs" / "synthetic.yaml")
MISSING = "/nonexistent/ialp-data"  # never read: the config must fail first


@pytest.mark.parametrize(("argv", "message"), [
    (["run", SYNTHETIC, "--set", "agent.learning_rate=-1"], "agent.learning_rate: got -1; Input should be greater"),
    (["run", SYNTHETIC, "--set", "agent.algoo=a2c"], "agent: unknown field(s) ['algoo']; allowed: ['algo',"),
    (["run", SYNTHETIC, "--set", "agent.num_envs=many"], "agent.num_envs: got 'many'; Input should be a valid int"),
    (["run", SYNTHETIC, "--set", "online.ap_floor=0.7"], "online.ap_floor: got 0.7; Input should be less than 0.5"),
    (["run", SYNTHETIC, "--set", "methods=[random, sarsa]"], "methods: ['sarsa'] not among ('random',"),
    (["run", SYNTHETIC, "--set", "llm.backend=gpt5"], "llm.backend: unknown llm backend 'gpt5'; allowed: ["),
    (["run", SYNTHETIC, "--set", "env.id=ialp/Nope-v0"], "env.id: 'ialp/Nope-v0' is not an ialp environment; known"),
    (["run", SYNTHETIC, "--set", "candidates={k: 0}"], "candidates.k: got 0; Input should be greater than 0"),
    (["run", SYNTHETIC, "--set", "env.kwargs={n_itemz: 5}"], "env: ialp/Synthetic-v0: unknown argument(s) 'n_itemz'"),
    (["run", SYNTHETIC, "--set", "env.kwargs={leave_rules: [{rule: boredom}]}"], "env: unknown leave rule 'boredom'"),
    (["llm", "eval", "--data-dir", MISSING, "--backend", "gpt5"], "llm.backend: unknown llm backend 'gpt5'"),
    (["llm", "eval", "--data-dir", MISSING, "--set", "llm.concurrency=0"], "llm.concurrency: got 0; Input should"),
    (["llm", "eval", "--data-dir", MISSING, "--set", "llm.colour=red"], "llm: unknown field(s) ['colour']"),
    (["llm", "eval", "--data-dir", MISSING, "--set", "llm.max_tokens=4.5"], "llm.max_tokens: got 4.5; Input should"),
    (["llm", "eval", "--data-dir", MISSING, "--modes", "choice,guess"], "--modes: got 'choice,guess'; allowed"),
    (["llm", "eval", "--data-dir", MISSING, "--set", "concurrency=2"], "spell keys as llm.KEY=VALUE"),
    (["candidates", "train", "--data-dir", MISSING, "--set", "candidates.k=0"], "candidates.k: got 0; Input should"),
    (["candidates", "train", "--data-dir", MISSING, "--set", "candidates.dropout=1.5"], "candidates.dropout: got 1.5"),
    (["candidates", "train", "--data-dir", MISSING, "--set", "candidates.epochs=ten"], "candidates.epochs: got 'ten'"),
    (["candidates", "eval", "--data-dir", MISSING, "--set", "candidates.model=bert4rec"],
     "candidates.model: got 'bert4rec'; Input should be 'sidesan', 'sasrec-id', 'popularity' or 'finetune-text'"),
    (["candidates", "eval", "--data-dir", MISSING, "--set", "candidates.fusoin=moe"],
     "candidates: unknown field(s) ['fusoin']"),
], ids=lambda v: " ".join(v[-2:]) if isinstance(v, list) else None)
def test_invalid_configs_fail_before_any_work(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    extra = ["--out", str(out)] if argv[0] in ("run", "candidates") and argv[1] != "eval" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()  # nothing was written: the run never started


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    from ialp.candidates.config import load_candidates_config

    if path.name == "candidates.yaml":  # a candidates section only (ialp candidates train/eval)
        assert load_candidates_config(path).epochs >= 1
    else:
        cfg = load_experiment(path)
        assert cfg.methods and (cfg.candidates is not None) == ("candidates-top1" in cfg.methods)
