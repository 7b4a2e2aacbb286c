"""The iALP pipeline: distil → reward model → pretrain → online adapt → evaluate, resumable from its folder.

Every stage writes its artefact next to a ``.key`` file holding a hash of the configuration it depends on; a
rerun skips a stage whose artefact exists with the same key (and the LLM cache makes a redone distillation
free). Layout of a run folder ``DIR``::

    config.yaml  results.csv  curves.csv  summary.md  results.png  curves.png
    candidates/generator.pt + metrics.json (with a ``candidates`` section)
    distill/{llm,oracle}.npz + .json   reward/{llm,oracle,logonly}.pt + .json
    pretrain/{variant}_s{seed}.zip     runs/{method}_s{seed}.json (+ ap/ gate state)   tb/ (TensorBoard)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from ialp.agents.common import EpisodeLog, EpisodeTracker, RecorderCallback, World, log_interval, sb3_model
from ialp.config import ExperimentConfig
from ialp.eval import (
    CURVE_FIELDS,
    RESULT_FIELDS,
    OraclePolicy,
    Policy,
    RandomPolicy,
    SB3Policy,
    evaluate,
    plot_curves,
    plot_results,
    summary_table,
    write_csv,
)
from ialp.rewards.model import LOSSES, PreferenceSet, RewardModel
from ialp.simulators.leave import make_leave_rule

#: Methods that need a pretrained policy, by the distillation variant they pretrain on.
PRETRAINED = {"ialp": "llm", "a-ialp-ft": "llm", "a-ialp-ap": "llm", "ialp-oracle": "oracle",
              "ialp-logonly": "logonly"}
#: Methods without an online phase (their results do not depend on the ``online`` section).
OFFLINE_ONLY = ("random", "oracle-greedy", "popularity", "greedy-mf", "bc", "candidates-top1")
#: Online episodes averaged into ``online_first`` / ``online_last``.
CURVE_EDGE = 50

__all__ = ["PRETRAINED", "run_experiment", "summary_table"]


def _key(cfg: ExperimentConfig, *parts: Any) -> str:
    data = cfg.to_dict()
    if "env" in parts and data.get("candidates"):  # the candidate generator is part of the environment
        parts = (*parts, "candidates")
    blob = [data[p] if isinstance(p, str) and p in data else p for p in parts]
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(path: Path, key: str) -> bool:
    marker = path.with_name(path.name + ".key")
    return path.exists() and marker.exists() and marker.read_text() == key


def _mark(path: Path, key: str) -> None:
    path.with_name(path.name + ".key").write_text(key)


class Pipeline:
    """One run: holds the config, the run folder, the world and the stage artefacts."""

    def __init__(self, cfg: ExperimentConfig, out: str | Path, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.log = log or (lambda msg: tqdm.write(f"[ialp] {msg}"))
        for sub in ("distill", "reward", "pretrain", "runs", "tb"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self._world: World | None = None
        self.skipped: list[str] = []
        self.done: list[str] = []

    @property
    def world(self) -> World:
        """The offline and target environments (built on first use)."""
        if self._world is None:
            from ialp.agents.distill import build_world

            self._world = build_world(self.cfg, cache_dir=self.out / "cache", candidates_dir=self.out / "candidates",
                                      progress=self.progress)
            if "candidates" in self._world.info:
                self.log(f"candidate generator: {json.dumps(self._world.info['candidates'])}")
            self._world.offline_leave_rules = tuple(make_leave_rule(r) for r in self.cfg.pretrain.leave_rules)
        return self._world

    def _writer(self, name: str) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tb" / name))

    # ----------------------------------------------------------------------------------------- stages
    def distill(self, variant: str) -> dict[str, np.ndarray]:
        """Stage 1: the preference data set of ``variant`` (``llm`` = the configured backend, or ``oracle``)."""
        from ialp.agents.distill import distill

        path = self.out / "distill" / f"{variant}.npz"
        llm = dict(self.cfg.llm) if variant == "llm" else {"backend": "oracle"}
        key = _key(self.cfg, "env", "distill", llm)
        if _cached(path, key):
            self.skipped.append(f"distill:{variant}")
            with np.load(path) as f:
                return dict(f)
        arrays, stats = distill(self.world, self.cfg, llm, progress=self.progress)
        np.savez(path, **arrays)  # type: ignore[arg-type]
        path.with_suffix(".json").write_text(json.dumps(stats, indent=2))
        self.log(f"distill {variant}: {stats['ok']}/{stats['queries']} preferences, {stats['failed']} failed "
                 f"{stats['failure_reasons']}; answer positions {stats['position_histogram']}")
        with self._writer("pipeline") as w:
            for k in ("calls", "cache_hits", "failures", "latency_p50_s"):
                w.add_scalar(f"llm/{variant}/{k}", float(stats["llm"][k]), 0)
            w.add_scalar(f"llm/{variant}/ok_fraction", stats["ok"] / max(stats["queries"], 1), 0)
            w.add_scalar(f"llm/{variant}/positive_chosen", stats["positive_chosen"], 0)
        _mark(path, key)
        self.done.append(f"distill:{variant}")
        return arrays

    def reward(self, variant: str) -> RewardModel:
        """Stage 2: the reward model of ``variant`` (``llm``, ``oracle`` or ``logonly``)."""
        from ialp.agents.distill import logged_feedback_set, preference_set
        from ialp.rewards.model import state_features

        path = self.out / "reward" / f"{variant}.pt"
        deps = ("env", "reward", "distill") + ((dict(self.cfg.llm),) if variant == "llm" else (variant,))
        key = _key(self.cfg, *deps)
        if _cached(path, key):
            self.skipped.append(f"reward:{variant}")
            return RewardModel.load(path)
        world, rc = self.world, self.cfg.reward
        dim = state_features({k: v[:1] for k, v in world.offline_env(1, 0).reset().items()},  # type: ignore[union-attr]
                             world.log.feedback_range).shape[1]

        def fresh() -> RewardModel:
            return RewardModel(world.offline.item_embeddings, world.log.feedback_range, world.target.reward_range,
                               dim, rc.hidden, rc.seed)

        model = fresh()
        metrics: dict[str, Any] = {"variant": variant}
        if variant == "logonly":
            feats, items, fb = logged_feedback_set(world, max(20 * self.cfg.distill.queries, 2000), rc.seed)
            model.fit_feedback(feats, items, fb, rc.epochs // 3 or 1, rc.learning_rate, rc.weight_decay)
        else:
            prefs = preference_set(world, self.distill(variant))
            metrics.update(self._loss_evidence(prefs, fresh))
            if len(prefs) < 2:
                raise ValueError(f"distill:{variant}: only {len(prefs)} usable preferences; cannot fit a reward")
            model.fit(prefs, rc.loss, rc.epochs, rc.learning_rate, rc.weight_decay)
            metrics["train_accuracy"] = model.accuracy(prefs)
        model.save(path)
        path.with_suffix(".json").write_text(json.dumps(metrics, indent=2))
        with self._writer("pipeline") as w:
            for k, v in metrics.items():
                if isinstance(v, float):
                    w.add_scalar(f"reward/{variant}/{k}", v, 0)
        self.log(f"reward {variant}: {json.dumps({k: v for k, v in metrics.items() if k != 'variant'})}")
        _mark(path, key)
        self.done.append(f"reward:{variant}")
        return model

    def _loss_evidence(self, prefs: PreferenceSet, fresh: Callable[[], RewardModel]) -> dict[str, float]:
        """Held-out choice accuracy of each loss (and chance), the evidence behind ``reward.loss``."""
        rc = self.cfg.reward
        n = len(prefs)
        if n < 10:
            return {}
        perm = np.random.default_rng(rc.seed).permutation(n)
        n_test = max(2, round(rc.holdout * n))
        test, train = prefs.subset(perm[:n_test]), prefs.subset(perm[n_test:])
        out = {"heldout_n": float(n_test), "chance": float(np.mean(1.0 / prefs.candidates.shape[1]))}
        for loss in LOSSES:
            m = fresh()
            m.fit(train, loss, rc.epochs, rc.learning_rate, rc.weight_decay)
            out[f"heldout_accuracy_{loss}"] = m.accuracy(test)
        return out

    def pretrain(self, variant: str, seed: int) -> Path:
        """Stage 3: iALP pretraining on the offline simulator with ``variant``'s learned reward."""
        from ialp.agents.ialp import pretrain

        path = self.out / "pretrain" / f"{variant}_s{seed}.zip"
        key = _key(self.cfg, "env", "distill", "reward", "agent", "pretrain", variant,
                   dict(self.cfg.llm) if variant == "llm" else None, seed)
        if _cached(path, key):
            self.skipped.append(f"pretrain:{variant}:{seed}")
            return path
        reward = self.reward(variant)
        pretrain(self.world, reward, self.cfg.agent, self.cfg.pretrain.total_timesteps, seed, path,
                 str(self.out / "tb"), f"pretrain-{variant}_s{seed}")
        _mark(path, key)
        self.done.append(f"pretrain:{variant}:{seed}")
        return path

    def method(self, method: str, seed: int) -> dict[str, Any]:
        """Stages 4–5: online phase (if any) and evaluation of one method and seed."""
        path = self.out / "runs" / f"{method}_s{seed}.json"
        variant = PRETRAINED.get(method)
        online = None if method in OFFLINE_ONLY else "online"
        key = _key(self.cfg, "env", "agent", online, "eval", method, seed,
                   *(("distill", "reward", "pretrain", dict(self.cfg.llm) if variant == "llm" else variant)
                     if variant else ()))
        if _cached(path, key):
            self.skipped.append(f"run:{method}:{seed}")
            result: dict[str, Any] = json.loads(path.read_text())
            return result
        policy, episodes = self._online(method, seed, variant)
        cfg = self.cfg
        venv = self.world.target_env(cfg.eval.users, cfg.eval.user_seed_offset + seed)
        stats = evaluate(policy, venv, seed=cfg.eval.user_seed_offset + seed)
        returns = episodes.returns if episodes else []
        row = {"method": method, "seed": seed, "cumulative_reward": float(stats.returns.mean()),
               "avg_reward": stats.avg_reward, "length": float(stats.lengths.mean()), "coverage": stats.coverage,
               "diversity": stats.diversity,
               "online_first": float(np.mean(returns[:CURVE_EDGE])) if returns else None,
               "online_last": float(np.mean(returns[-CURVE_EDGE:])) if returns else None}
        result = {"row": row, "curve": returns, "curve_steps": episodes.steps if episodes else []}
        with self._writer(f"{method}_s{seed}_eval") as w:
            step = cfg.online.total_timesteps if episodes else 0
            for k in RESULT_FIELDS[2:]:
                if row.get(k) is not None:
                    w.add_scalar(f"eval/{k}", float(row[k]), step)  # type: ignore[arg-type]
            if episodes and method not in ("a2c-scratch", "ppo-scratch", "dqn-scratch", "a-ialp-ft", "a-ialp-ap"):
                for s, r in zip(episodes.steps, episodes.returns, strict=True):
                    w.add_scalar("rec/episode_return", r, s)
        path.write_text(json.dumps(result))
        _mark(path, key)
        self.done.append(f"run:{method}:{seed}")
        return result

    # ----------------------------------------------------------------------------------------- methods
    def _online_env(self, seed: int) -> Any:
        cfg = self.cfg
        return self.world.target_env(cfg.agent.num_envs, cfg.online.seed_offset + 10_000 * seed)

    def _online(self, method: str, seed: int, variant: str | None) -> tuple[Policy, EpisodeLog | None]:
        from ialp.agents import baselines
        from ialp.agents.adaptive import AdaptiveBlend, finetune
        from ialp.agents.ialp import load

        cfg, world = self.cfg, self.world
        det = cfg.eval.deterministic
        steps, tb = cfg.online.total_timesteps, str(self.out / "tb")
        if method == "random":
            return RandomPolicy(seed), None
        if method == "oracle-greedy":
            return OraclePolicy(), None
        if method == "popularity":
            return baselines.PopularityPolicy(world.log.items, world.log.feedback, world.target.n_items), None
        if method == "candidates-top1":  # the candidate generator alone: always its best proposal (action 0)
            from ialp.candidates import TopOnePolicy

            return SB3Policy(TopOnePolicy()), None
        if method == "greedy-mf":
            return baselines.GreedyMFPolicy(world.offline.base.mf), None  # type: ignore[attr-defined]
        if method in ("eps-greedy", "ucb"):
            bandit = baselines.BanditPolicy(world.target.n_items, method, cfg.online.epsilon, cfg.online.ucb_c, seed)
            return bandit, bandit.learn(self._online_env(seed), steps)
        if method.endswith("-scratch"):
            from stable_baselines3.common.vec_env import VecMonitor

            venv = self._online_env(seed)
            model = sb3_model(method.removesuffix("-scratch"), VecMonitor(venv), cfg.agent, seed, tb)
            recorder = RecorderCallback(venv)
            every = 4 if method == "dqn-scratch" else log_interval(steps, venv.num_envs, model.n_steps)
            model.learn(steps, callback=recorder, tb_log_name=f"{method}_s{seed}", log_interval=every)
            return SB3Policy(model, det), recorder.log
        if method == "bc":
            return self._bc(seed), None
        assert variant is not None
        ckpt = self.pretrain(variant, seed)
        venv = self._online_env(seed)
        pretrained = load(cfg.agent.algo, ckpt)
        if method == "a-ialp-ft":
            model, episodes = finetune(pretrained, venv, steps, tb_name=f"{method}_s{seed}")
            return SB3Policy(model, det), episodes
        if method == "a-ialp-ap":
            learner = sb3_model("a2c", venv, cfg.agent, seed, None)
            blend = AdaptiveBlend(pretrained, learner, cfg.online.ap_floor, cfg.online.ap_temperature,
                                  cfg.online.ap_step, cfg.online.ap_min_episodes, seed, deterministic=det)
            with self._writer(f"{method}_s{seed}") as w:
                episodes = blend.learn(venv, steps, cfg.agent.n_steps, cfg.agent.gamma, cfg.agent.ent_coef, writer=w)
            blend.save(self.out / "runs" / f"{method}_s{seed}")
            return blend, episodes
        # ialp, ialp-oracle, ialp-logonly: the frozen pretrained policy; its online curve for reference
        policy = SB3Policy(pretrained, det)
        return policy, _rollout(policy, venv, steps)

    def _bc(self, seed: int) -> Policy:
        from ialp.agents.baselines import behaviour_cloning
        from ialp.agents.distill import sample_states

        world = self.world
        w = int(world.env_kwargs.get("history_len", 10))
        n = min(len(world.log), 20_000)
        states = sample_states(world.log, n, w, np.random.default_rng(seed), min_history=0)
        obs = states.observations(world)
        weights = (states.next_feedback >= np.median(states.next_feedback)).astype(np.float64)
        model = sb3_model(self.cfg.agent.algo, self._online_env(seed), self.cfg.agent, seed, None)
        behaviour_cloning(model, obs, states.next_items, weights, seed=seed)
        return SB3Policy(model, self.cfg.eval.deterministic)

    # ----------------------------------------------------------------------------------------- all
    def run(self) -> list[dict[str, Any]]:
        """Every configured method for every seed; writes the result files and returns the rows."""
        cfg = self.cfg
        (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        with self._writer("pipeline") as w:
            w.add_text("config", "```yaml\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False) + "\n```", 0)
        variants = list(dict.fromkeys(PRETRAINED[m] for m in cfg.methods if m in PRETRAINED))
        for variant in variants:  # distil and fit once, before the per-seed loop
            self.reward(variant)
        rows: list[dict[str, Any]] = []
        curves: list[dict[str, Any]] = []
        jobs = [(m, s) for m in cfg.methods for s in cfg.eval.seeds]
        for method, seed in tqdm(jobs, desc="methods x seeds", unit="run", disable=not self.progress):
            result = self.method(method, seed)
            rows.append(result["row"])
            curves.extend({"method": method, "seed": seed, "online_episode": i, "return": r}
                          for i, r in enumerate(result["curve"]))
        write_csv(self.out / "results.csv", rows, RESULT_FIELDS)
        write_csv(self.out / "curves.csv", curves, CURVE_FIELDS)
        (self.out / "summary.md").write_text(_summary(cfg, rows, self.out) + "\n")
        plot_results(self.out / "results.png", rows)
        if curves:
            plot_curves(self.out / "curves.png", curves)
        return rows


def _rollout(policy: Policy, venv: Any, total_timesteps: int) -> EpisodeLog:
    """Episodes of a fixed policy acting online (no learning), for reference curves."""
    obs = venv.reset()
    tracker = EpisodeTracker(venv.num_envs, venv.model.n_items)
    steps = 0
    while steps < total_timesteps:
        obs, rewards, dones, _ = venv.step(policy.act(obs, venv))
        steps += venv.num_envs
        tracker.update(rewards, dones, venv.session.last_items, steps)
    return tracker.log


def _summary(cfg: ExperimentConfig, rows: list[dict[str, Any]], out: Path) -> str:
    parts = [f"# {cfg.name}: {cfg.env.id}, LLM backend `{cfg.llm.get('backend')}`, seeds {cfg.eval.seeds}, "
             f"{cfg.eval.users} held-out users", "", summary_table(rows), "",
             f"`online first`/`online last`: mean return of the first/last {CURVE_EDGE} online episodes."]
    if cfg.candidates and (out / "candidates" / "metrics.json").exists():
        m = json.loads((out / "candidates" / "metrics.json").read_text())
        parts.append(f"\nCandidate generator `{cfg.candidates.get('model', 'sidesan')}` (actions: its top "
                     f"{cfg.candidates.get('k', 50)}): test HR@10 {m.get('hr@10')}, NDCG@10 {m.get('ndcg@10')}.")
    for variant in ("llm", "oracle"):
        stats = out / "distill" / f"{variant}.json"
        metrics = out / "reward" / f"{variant}.json"
        if stats.exists():
            s = json.loads(stats.read_text())
            parts.append(f"\nDistillation `{variant}`: {s['ok']}/{s['queries']} preferences ({s['failed']} failed: "
                         f"{s['failure_reasons']}), answer positions {s['position_histogram']}, logged next item "
                         f"chosen {s['positive_chosen']:.2f}.")
        if metrics.exists():
            m = json.loads(metrics.read_text())
            acc = ", ".join(f"{k.removeprefix('heldout_accuracy_')} {v:.3f}" for k, v in m.items()
                            if k.startswith("heldout_accuracy"))
            if acc:
                parts.append(f"Reward model `{variant}` held-out choice accuracy: {acc} (chance {m['chance']:.3f}).")
    return "\n".join(parts)


def run_experiment(cfg: ExperimentConfig, out: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run the whole pipeline into ``out`` (resuming finished stages); returns the result rows."""
    return Pipeline(cfg, out, progress).run()
