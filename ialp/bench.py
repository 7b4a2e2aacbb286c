"""Throughput benchmarks: user-steps per second of the environments, and training steps per second of the agents."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from ialp.envs.vector import BatchedRecEnv

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


def _time_batched(venv: BatchedRecEnv, seconds: float, seed: int, warmup: int = 1) -> tuple[float, float]:
    """(user-steps per wall-clock second, per second of this process's CPU time) of random actions."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, venv.action_space.n, (16, venv.num_envs))
    venv.seed(seed)
    venv.reset()
    for i in range(warmup):  # first-touch allocations (and the candidate pools' first sessions)
        venv.step(pool[i % len(pool)])
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    deadline = start + seconds
    while True:
        for actions in pool:
            venv.step(actions)
        steps += len(pool) * venv.num_envs
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start), steps / max(time.process_time() - cpu, 1e-9)


def bench_candidates_env(data_dir: str, seconds: float = 1.0, batch_sizes: Sequence[int] = (1024,),
                         refresh: Sequence[int] = (0, 1, 10), generator: str | os.PathLike | None = None,
                         pool: int = 64, seed: int = 0, warm_start: int = 10) -> list[dict[str, Any]]:
    """Rows ``mode: "candidates"``: MovieLens-v0 whose K actions come from a ``CandidateGenerator``.

    ``refresh`` 0 re-encodes each window and ranks the catalogue at every step; r >= 1 uses the KV-cached user
    state and a pool of ``pool`` items refreshed every r steps (``SessionCandidates``). The generator is loaded
    from ``generator`` or trained here (``sasrec-id``, one epoch: the cost per step does not depend on how well it
    was trained, nor on its item tower, which is a precomputed table at serving time). Each row also gives
    ``user_steps_per_cpu_s`` (per second of this process's CPU time: what a shared machine does not distort).
    """
    import dataclasses

    from ialp.candidates import CandidateGenerator, CandidatesConfig
    from ialp.data import load_dataset
    from ialp.envs import make_batched

    if generator is not None:
        trained = CandidateGenerator.load(generator)
    else:
        cfg = CandidatesConfig(model="sasrec-id", epochs=1, progress=False, seed=seed)
        trained = CandidateGenerator(config=cfg).fit(load_dataset(data_dir))
    rows: list[dict[str, Any]] = []
    for b in batch_sizes:
        for r in refresh:
            gen = copy.copy(trained)
            gen.config = dataclasses.replace(trained.config, refresh=r, pool=pool if r else 0)
            venv = make_batched("ialp/MovieLens-v0", num_envs=b, seed=seed, data_dir=data_dir, warm_start=warm_start,
                                candidates=gen)
            wall, cpu = _time_batched(venv, seconds, seed, warmup=16)
            rows.append({"env": "ialp/MovieLens-v0", "mode": "candidates", "batch": b, "n_items": gen.k,
                         "refresh": r, "pool": pool if r else 0, "user_steps_per_s": wall,
                         "user_steps_per_cpu_s": cpu})
    return rows


def bench_env(seconds: float = 1.0, batch_sizes: Sequence[int] = BATCH_SIZES, n_items: int = 10_000,
              data_dir: str | os.PathLike | None = None, seed: int = 0, refresh: Sequence[int] = (),
              generator: str | os.PathLike | None = None, pool: int = 64) -> list[dict[str, Any]]:
    """Measure user-steps/s for each environment and mode, all in this one process.

    MovieLens-v0 is included when ``data_dir`` (or ``IALP_DATA_DIR``) names a MovieLens folder, and with
    ``refresh`` also its candidate-generator rows (``bench_candidates_env``). Gymnasium's ``CartPole-v1`` with
    random actions is the reference.
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
                         "user_steps_per_s": _time_batched(venv, seconds, seed)[0]})
    if data_dir and refresh:
        rows += bench_candidates_env(str(Path(data_dir)), seconds, batch_sizes, refresh, generator, pool, seed)
    cartpole = gym.make("CartPole-v1")
    rows.append({"env": "CartPole-v1", "mode": "reference", "batch": 1, "n_items": 2,
                 "user_steps_per_s": _time_single(cartpole, seconds, seed)})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of benchmark rows."""
    lines = ["| env | mode | batch | items | user-steps/s | per CPU-s |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        mode = f"candidates (refresh {r['refresh']}, pool {r['pool']})" if r["mode"] == "candidates" else r["mode"]
        cpu = f"{r['user_steps_per_cpu_s']:,.0f}" if "user_steps_per_cpu_s" in r else ""
        lines.append(f"| {r['env']} | {mode} | {r['batch']} | {r['n_items']} | {r['user_steps_per_s']:,.0f} | {cpu} |")
    return "\n".join(lines)


TRAIN_BATCHES = (16, 256, 1024)


def _time_training(model: OnPolicyAlgorithm, seconds: float) -> float:
    """Environment steps per second of ``model.learn`` (rollouts and updates), after a warm-up of two rollouts."""
    per_rollout = model.n_steps * model.n_envs
    model.learn(2 * per_rollout)
    start = time.perf_counter()
    model.learn(per_rollout, reset_num_timesteps=False)
    rollouts = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
    start = time.perf_counter()
    model.learn(rollouts * per_rollout, reset_num_timesteps=False)
    return rollouts * per_rollout / (time.perf_counter() - start)


def bench_train(seconds: float = 5.0, batch_sizes: Sequence[int] = TRAIN_BATCHES, algos: Sequence[str] = ("a2c", "ppo"),
                n_items: int = 200, k: int = 100, data_dir: str | os.PathLike | None = None,
                seed: int = 0) -> list[dict[str, Any]]:
    """Training throughput of SB3 A2C/PPO with :class:`~ialp.agents.policy.ItemScoringPolicy`.

    Synthetic-v0 (``n_items`` items) over the whole catalogue; MovieLens-v0 (when ``data_dir`` or
    ``IALP_DATA_DIR`` is set) over the whole catalogue and over ``k`` item-kNN candidates; sessions start from
    10 warm-start items; the agent uses ``AgentConfig``'s defaults. ``steps_per_s`` counts environment steps of
    training (rollout and update) after a warm-up, with torch using every core it is given.
    """
    import torch
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecMonitor

    from ialp.agents.common import sb3_model
    from ialp.config import AgentConfig
    from ialp.envs import make_batched
    from ialp.schema import parse

    targets: list[tuple[str, dict[str, Any]]] = [("ialp/Synthetic-v0", {"n_items": n_items, "warm_start": 5})]
    data_dir = data_dir or os.environ.get("IALP_DATA_DIR")
    if data_dir:
        ml = {"data_dir": str(Path(data_dir)), "warm_start": 10}
        targets += [("ialp/MovieLens-v0", ml), ("ialp/MovieLens-v0", {**ml, "candidates": {"kind": "knn", "k": k}})]
    rows: list[dict[str, Any]] = []
    for env_id, kwargs in targets:
        for algo in algos:
            for b in batch_sizes:
                venv = make_batched(env_id, num_envs=b, seed=seed, **kwargs)
                model = sb3_model(algo, VecMonitor(venv), parse(AgentConfig, {"algo": algo}, "agent"), seed)
                assert isinstance(model, OnPolicyAlgorithm)  # agent.algo is a2c or ppo
                rows.append({"env": env_id, "algo": algo, "actions": int(venv.action_space.n),
                             "num_envs": b, "steps_per_s": _time_training(model, seconds),
                             "threads": torch.get_num_threads()})
    return rows


def format_train_rows(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of training benchmark rows."""
    lines = ["| env | algo | actions | envs | training steps/s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['env']} | {r['algo']} | {r['actions']} | {r['num_envs']} | {r['steps_per_s']:,.0f} |")
    return "\n".join(lines)
