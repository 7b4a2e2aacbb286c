"""Throughput benchmarks: user-steps per second of the single and batched environments."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

BATCH_SIZES = (1, 64, 1024, 4096)


def _time_single(env: gym.Env, seconds: float, seed: int) -> float:
    """Random actions through ``env.step`` (with its wrappers), resetting on episode end."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.action_space.n, 4096)  # type: ignore[attr-defined]
    env.reset(seed=seed)
    steps, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for a in actions[:256]:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += 256
        actions = np.roll(actions, 256)
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def _time_batched(venv: Any, seconds: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, venv.action_space.n, (16, venv.num_envs))
    venv.seed(seed)
    venv.reset()
    venv.step(pool[0])  # warm-up: first-touch allocations
    steps, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for actions in pool:
            venv.step(actions)
        steps += len(pool) * venv.num_envs
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


def bench_env(seconds: float = 1.0, batch_sizes: Sequence[int] = BATCH_SIZES, n_items: int = 10_000,
              data_dir: str | os.PathLike | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Measure user-steps/s for each environment and mode, all in this one process.

    MovieLens-v0 is included when ``data_dir`` (or ``IALP_DATA_DIR``) names a MovieLens folder.
    Gymnasium's ``CartPole-v1`` with random actions is the reference.
    """
    from ialp.envs import make_batched

    targets: list[tuple[str, dict[str, Any]]] = [("ialp/Synthetic-v0", {"n_items": n_items})]
    data_dir = data_dir or os.environ.get("IALP_DATA_DIR")
    if data_dir:
        targets.append(("ialp/MovieLens-v0", {"data_dir": str(Path(data_dir))}))
    rows: list[dict[str, Any]] = []
    for env_id, kwargs in targets:
        env = gym.make(env_id, **kwargs)
        n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        rows.append({"env": env_id, "mode": "single", "batch": 1, "n_items": n_actions,
                     "user_steps_per_s": _time_single(env, seconds, seed)})
        for b in batch_sizes:
            venv = make_batched(env_id, num_envs=b, **kwargs)
            rows.append({"env": env_id, "mode": "batched", "batch": b, "n_items": n_actions,
                         "user_steps_per_s": _time_batched(venv, seconds, seed)})
    cartpole = gym.make("CartPole-v1")
    rows.append({"env": "CartPole-v1", "mode": "reference", "batch": 1, "n_items": 2,
                 "user_steps_per_s": _time_single(cartpole, seconds, seed)})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of benchmark rows."""
    lines = ["| env | mode | batch | items | user-steps/s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['env']} | {r['mode']} | {r['batch']} | {r['n_items']} | {r['user_steps_per_s']:,.0f} |")
    return "\n".join(lines)
