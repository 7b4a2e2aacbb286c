"""A2C on MovieLens-v0 choosing among K candidates of a trained generator vs over the full catalogue.

Usage:
    python scripts/bench_candidates_a2c.py --data-dir ../shared/data/movielens/ml-latest-small \
        [--generator runs/candidates-sidesan/generator.pt] [--timesteps 20000] [--k 50] [--seeds 3]

Prints one JSON object: per setting, over ``--seeds`` seeds, the mean (and std, per-seed list) return of the
trained policy on held-out user seeds, environment steps per second while training (A2C updates included) and with
random actions (env only); ``top1-kK`` is the generator's own top-1 played as a policy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np


def _episode_returns(venv: Any, act: Any, episodes: int) -> float:
    obs = venv.reset()
    totals = np.zeros(venv.num_envs)
    done_returns: list[float] = []
    while len(done_returns) < episodes:
        obs, reward, dones, _ = venv.step(act(obs))
        totals += reward
        for i in np.flatnonzero(dones):
            done_returns.append(float(totals[i]))
            totals[i] = 0.0
    return float(np.mean(done_returns[:episodes]))


def _env_rate(venv: Any, seconds: float = 3.0) -> float:
    venv.reset()
    rng, steps, start = np.random.default_rng(0), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        steps += venv.num_envs
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Run both settings and print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--generator", default=None, help="saved CandidateGenerator (default: train one from --config)")
    parser.add_argument("--config", default="configs/candidates.yaml", help="generator config when not loaded")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per setting")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (mean, std and per-seed returns)")
    args = parser.parse_args()

    from stable_baselines3 import A2C

    import ialp  # noqa: F401
    from ialp.candidates import CandidateGenerator, TopOnePolicy, load_candidates_config
    from ialp.data import load_dataset
    from ialp.envs import make_batched

    if args.generator:
        gen = CandidateGenerator.load(args.generator)
        gen.k = args.k
    else:
        cfg = dataclasses.replace(load_candidates_config(args.config), k=args.k, data_dir=args.data_dir)
        gen = CandidateGenerator(config=cfg).fit(load_dataset(args.data_dir))
    result: dict[str, Any] = {"generator": {k: gen.metrics.get(k) for k in ("hr@10", "ndcg@10")}}
    runs: dict[str, list[dict[str, float]]] = {}
    for seed in range(args.seed, args.seed + args.seeds):
        for name, candidates in ((f"a2c-k{args.k}", gen), ("a2c-full", None)):
            def make(env_seed: int, cands: Any = candidates) -> Any:
                return make_batched("ialp/MovieLens-v0", args.num_envs, seed=env_seed, data_dir=args.data_dir,
                                    candidates=cands)

            model = A2C("MultiInputPolicy", make(seed), n_steps=8, learning_rate=1e-3, seed=seed,
                        policy_kwargs={"net_arch": [64]}, device="cpu")
            start = time.perf_counter()
            model.learn(args.timesteps)
            train_sps = args.timesteps / (time.perf_counter() - start)
            held_out = make(1_000_000 + seed)
            ret = _episode_returns(held_out, lambda o, m=model: m.predict(o, deterministic=True)[0], args.episodes)
            runs.setdefault(name, []).append({"return": ret, "train_steps_per_s": train_sps,
                                              "env_steps_per_s": _env_rate(make(7))})
            if candidates is not None:
                top1 = TopOnePolicy()
                held_out = make(1_000_000 + seed)
                runs.setdefault(f"top1-k{args.k}", []).append(
                    {"return": _episode_returns(held_out, lambda o, p=top1: p.predict(o)[0], args.episodes)})
    for name, rows in runs.items():
        result[name] = {f: float(np.mean([r[f] for r in rows])) for f in rows[0]}
        result[name]["return_std"] = float(np.std([r["return"] for r in rows]))
        result[name]["returns"] = [r["return"] for r in rows]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
