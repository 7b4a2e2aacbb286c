"""Run an experiment: baselines and online agents evaluated on held-out simulated users."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from ialp.config import ExperimentConfig
from ialp.envs import make_batched
from ialp.eval import OraclePolicy, Policy, RandomPolicy, SB3Policy, evaluate, summarize

RESULT_FIELDS = ("method", "seed", "cumulative_reward", "avg_reward", "length", "coverage")


def _train(cfg: ExperimentConfig, algo: str, seed: int) -> Policy:
    from stable_baselines3 import A2C, PPO

    venv = make_batched(cfg.env.id, num_envs=cfg.train.num_envs, seed=seed, **cfg.env.kwargs)
    cls = {"a2c": A2C, "ppo": PPO}[algo]
    extra: dict[str, Any] = {"batch_size": cfg.train.n_steps * cfg.train.num_envs} if algo == "ppo" else {}
    model = cls("MultiInputPolicy", venv, n_steps=cfg.train.n_steps, seed=seed, learning_rate=cfg.train.learning_rate,
                policy_kwargs={"net_arch": list(cfg.train.net_arch)}, **extra)
    model.learn(cfg.train.total_timesteps)
    return SB3Policy(model)


def _policy(cfg: ExperimentConfig, method: str, seed: int) -> Policy:
    if method == "random":
        return RandomPolicy(seed)
    if method == "oracle-greedy":
        return OraclePolicy()
    return _train(cfg, method.removesuffix("-scratch"), seed)


def run_experiment(cfg: ExperimentConfig, out: str | Path) -> list[dict[str, Any]]:
    """Evaluate every configured method for every seed; write ``config.yaml``, ``results.csv``
    and ``summary.md`` into ``out`` and return the result rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    evaluation = make_batched(cfg.env.id, num_envs=cfg.eval.users, **cfg.env.kwargs)
    rows: list[dict[str, Any]] = []
    jobs = [(m, s) for m in cfg.methods for s in cfg.eval.seeds]
    for method, seed in tqdm(jobs, desc="methods x seeds", unit="run"):
        stats = evaluate(_policy(cfg, method, seed), evaluation, seed=cfg.eval.user_seed_offset + seed)
        rows.append({"method": method, "seed": seed, "cumulative_reward": float(stats.returns.mean()),
                     "avg_reward": stats.avg_reward, "length": float(stats.lengths.mean()),
                     "coverage": stats.coverage})
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.md").write_text(summary_table(rows) + "\n")
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean ± 95% CI over seeds of each metric, per method."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| method | seeds | cumulative reward | avg reward | length | coverage |",
             "|---|---:|---:|---:|---:|---:|"]
    for m in methods:
        sub = [r for r in rows if r["method"] == m]
        cells = []
        for key in RESULT_FIELDS[2:]:
            mean, half = summarize(np.array([r[key] for r in sub]))
            cells.append(f"{mean:.3f}" + (f" ± {half:.3f}" if np.isfinite(half) else ""))
        lines.append(f"| {m} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
