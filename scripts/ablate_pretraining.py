"""Where does iALP's pretraining lose what the preferences carry? An ablation on a synthetic world.

Each row pretrains the configured actor-critic on one (simulator, reward, preference queries, budget) choice, then
measures the pretrained policy as A-iALP ``ft`` would use it: its sampled return on the evaluation users (frozen),
and ``ft`` online against ``a2c-scratch`` (first 10% of online steps; when ``ft`` reaches scratch's final return).

- simulator ``offline``: the MF simulator fitted on the training users' log (what iALP pretrains in);
  ``true``: fresh users of the ground-truth synthetic model (a perfect simulator);
- reward ``learned``: the reward model fitted on oracle preferences (``queries`` of them); ``true``: the
  simulator's own reward (for ``offline``: the MF's prediction of the logged feedback).

Usage: python scripts/ablate_pretraining.py configs/synthetic.yaml --seeds 0 1 2 [--set KEY=VALUE ...]
Prints a Markdown table (mean ± 95% Student-t interval over seeds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecMonitor

from ialp.agents.adaptive import finetune
from ialp.agents.common import sb3_model
from ialp.agents.ialp import offline_env
from ialp.eval.report import binned_curves
from ialp.eval.rollout import SB3Policy, evaluate, summarize
from ialp.experiment import Pipeline, load_experiment
from ialp.rewards.wrappers import LearnedRewardVecEnv

#: (simulator, reward, preference queries, pretraining steps); queries 0 = no preferences used.
ROWS = (("offline", "learned", 100, 200_000), ("offline", "learned", 2000, 200_000),
        ("offline", "learned", 2000, 1_000_000), ("true", "learned", 2000, 200_000),
        ("offline", "true", 0, 200_000), ("true", "true", 0, 200_000))


def _curve(episodes: Any, seed: int, name: str) -> list[dict[str, Any]]:
    return [{"method": name, "seed": seed, "step": s, "return": r}
            for s, r in zip(episodes.steps, episodes.returns, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--setting", default="free")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", default=None, help="run folder for the reward models (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="ialp-ablate-"))
    base = [*args.overrides, "llm.backend=oracle"]
    pipes = {q: Pipeline(load_experiment(args.config, [*base, f"distill.queries={q}"]), out / f"q{q}", progress=False,
                         log=lambda msg: None) for q in {r[2] for r in ROWS if r[2]}}
    cfg = next(iter(pipes.values())).cfg if pipes else load_experiment(args.config, base)
    world = next(iter(pipes.values())).world
    if not world.synthetic:
        raise SystemExit("the ablation needs a synthetic world (a ground-truth simulator)")
    agent, online, setting = cfg.agent, cfg.online.total_timesteps, args.setting

    scratch: list[dict[str, Any]] = []
    for seed in args.seeds:
        pipe = next(iter(pipes.values()))
        model = sb3_model(agent.algo, pipe.online_env(seed, setting), agent, seed)
        _, episodes = finetune(model, pipe.online_env(seed, setting), online)
        scratch += _curve(episodes, seed, "scratch")
    ref = np.nanmean(binned_curves(scratch, online)["scratch"], axis=0)

    print(f"setting {setting}, seeds {args.seeds}, online steps {online:,}; a2c-scratch online: first 10% "
          f"{ref[0]:.2f}, final {ref[-1]:.2f}\n")
    print("| simulator | reward | queries | reward held-out acc | pretrain steps | frozen (sampled) | ft first 10% "
          "| ft reaches scratch final |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for sim, reward_kind, queries, steps in ROWS:
        pipe = pipes[queries] if queries else next(iter(pipes.values()))
        reward = pipe.reward("oracle") if reward_kind == "learned" else None
        acc = "–"
        if reward is not None:
            metrics = json.loads((pipe.out / "reward" / "oracle.json").read_text())
            acc = f"{metrics['heldout_accuracy_' + cfg.reward.loss]:.3f}"
        frozen, curves = [], []
        for seed in args.seeds:
            if sim == "offline":
                venv: Any = (offline_env(world, reward, agent.num_envs, seed, setting) if reward is not None
                             else VecMonitor(world.offline_env(agent.num_envs, seed, setting)))
            else:  # fresh ground-truth users, disjoint from the online and evaluation ones
                raw = world.target_env(agent.num_envs, cfg.distill.log_seed_offset + 7_000_000 + 10_000 * seed,
                                       setting)
                venv = VecMonitor(LearnedRewardVecEnv(raw, reward) if reward is not None else raw)
            model = sb3_model(agent.algo, venv, agent, seed)
            model.learn(steps)
            ev = world.target_env(cfg.eval.users, cfg.eval.user_seed_offset + seed, setting)
            frozen.append(evaluate(SB3Policy(model, deterministic=False), ev,
                                   seed=cfg.eval.user_seed_offset + seed).returns.mean())
            _, episodes = finetune(model, pipe.online_env(seed, setting), online,
                                   critic_warmup=round(cfg.online.critic_warmup * cfg.online.total_timesteps))
            curves += _curve(episodes, seed, "ft")
        ours = np.nanmean(binned_curves(curves, online)["ft"], axis=0)
        reached = np.flatnonzero(ours >= ref[-1])
        when = f"{(reached[0] + 1) / len(ours):.0%}" if len(reached) else "no"
        m, h = summarize(np.asarray(frozen))
        print(f"| {sim} | {reward_kind} | {queries or '–'} | {acc} | {steps:,} | {m:.2f} ± {h:.2f} | {ours[0]:.2f} "
              f"| {when} |", flush=True)


if __name__ == "__main__":
    main()
