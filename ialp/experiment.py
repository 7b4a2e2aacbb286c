"""The iALP pipeline: distil → reward model → pretrain → online adapt → evaluate, resumable from its folder.

Every stage writes its artefact next to a ``.key`` file holding a hash of the configuration it depends on; a
rerun skips a stage whose artefact exists with the same key (and the LLM cache makes a redone distillation
free). Layout of a run folder ``DIR``::

    config.yaml  results.csv  curves.csv  summary.md  results.png  curves.png  fidelity/ (logged envs)
    candidates/generator.pt + metrics.json (with a ``candidates`` section)
    distill/{llm,oracle}.npz + .json   reward/{llm,oracle,logonly}.pt + .json
    pretrain/{variant}_{setting}_s{seed}.zip   runs/{method}_{setting}_s{seed}.json (+ ap's model)   tb/

Methods live in one registry (:data:`METHODS`); each (method, setting, seed) is trained in its setting (EasyRL4Rec's
``free``/``nx0``/``nx10``) and evaluated with the evaluation users in every ``eval.modes``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from tqdm import tqdm

from ialp.agents.common import EpisodeLog, EpisodeTracker, RecorderCallback, World, log_interval, sb3_model
from ialp.config import ExperimentConfig, load_config
from ialp.envs.vector import BatchedRecEnv
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
from ialp.eval.report import binned_curves, curve_stats, curve_table, online_comparison
from ialp.llm.base import LLMConfig
from ialp.rewards.model import LOSSES, PreferenceSet, RewardModel
from ialp.schema import ConfigError
from ialp.simulators.leave import make_leave_rule
from ialp.storage import is_current, mark_current, stage_key

Online = tuple[Policy, EpisodeLog | None]

__all__ = ["METHODS", "Cell", "Method", "Pipeline", "cells", "check_methods", "load_experiment", "run_experiment",
           "summary_table"]


@dataclass(frozen=True)
class Method:
    """One entry of the method registry: the function that trains (if needed) and returns its policy.

    Attributes:
        run: ``run(pipeline, seed, setting) -> (policy, online episodes or None)``.
        reads: Config sections the method reads besides ``env``/``eval`` (they enter its cache key).
        pretrained: The distillation variant whose pretrained policy it starts from (its key enters too).
        scope: ``catalogue``: whole-catalogue actions only; ``generator``: needs the ``candidates`` section.
    """

    run: Callable[[Pipeline, int, str], Online]
    reads: tuple[str, ...] = ()
    pretrained: str | None = None
    scope: str = "any"


@dataclass(frozen=True)
class Cell:
    """One unit of parallel work: the methods of one setting and seed that share one pretrained policy.

    Its results are those of a sequential run: every stage is keyed and seeded by the config alone.
    """

    setting: str
    seed: int
    methods: tuple[str, ...]

    @property
    def label(self) -> str:
        """A name for logs and folders, e.g. ``free_s0_random+ialp``."""
        return f"{self.setting}_s{self.seed}_{'+'.join(self.methods)}"

    def overrides(self) -> list[str]:
        """The ``--set`` overrides that restrict a run of the config to this cell."""
        return [f"settings=[{self.setting}]", f"eval.seeds=[{self.seed}]", f"methods=[{', '.join(self.methods)}]"]


def cells(cfg: ExperimentConfig) -> list[Cell]:
    """The config's cells: (setting, seed, methods sharing a pretrained variant); methods without a pretrained
    policy join the first group that has one, so that a cell builds its world once for as many methods as it can."""
    by_variant: dict[str | None, list[str]] = {}
    for m in cfg.methods:
        by_variant.setdefault(METHODS[m].pretrained, []).append(m)
    plain = by_variant.pop(None, [])
    groups = list(by_variant.values()) or [plain]
    if by_variant:
        groups[0] = plain + groups[0]
    return [Cell(st, s, tuple(g)) for st in cfg.settings for s in cfg.eval.seeds for g in groups]


class Pipeline:
    """One run: holds the config, the run folder, the world and the stage artefacts.

    Stage keys are chained: each stage's key hashes the config sections it reads and the keys of the stages it
    consumes (world -> distillation -> reward -> pretraining -> method), so a change reruns exactly what
    depends on it.
    """

    def __init__(self, cfg: ExperimentConfig, out: str | Path, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        check_methods(cfg)
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.log = log or (lambda msg: tqdm.write(f"[ialp] {msg}"))
        for sub in ("distill", "reward", "pretrain", "runs", "tb"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self._world: World | None = None
        self.skipped: list[str] = []
        self.done: list[str] = []

    def section(self, name: str) -> Any:
        """A config section as plain data (what stage keys hash)."""
        return self.cfg.to_dict()[name]

    @property
    def world_key(self) -> str:
        """Key of everything the world is built from."""
        d = self.cfg.distill
        return stage_key(self.section("env"), self.section("candidates"), self.section("pretrain")["leave_rules"],
                       d.log_users, d.log_seed_offset)

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

    def _llm(self, variant: str) -> LLMConfig:
        return self.cfg.llm if variant == "llm" else LLMConfig(backend="oracle")

    # ----------------------------------------------------------------------------------------- stages
    def distill_key(self, variant: str) -> str:
        """Key of the ``variant`` preference data set."""
        return stage_key(self.world_key, self.section("distill"), dataclasses.asdict(self._llm(variant)))

    def distill(self, variant: str) -> dict[str, np.ndarray]:
        """Stage 1: the preference data set of ``variant`` (``llm`` = the configured backend, or ``oracle``)."""
        from ialp.agents.distill import distill

        path = self.out / "distill" / f"{variant}.npz"
        key = self.distill_key(variant)
        if is_current(path, key):
            self.skipped.append(f"distill:{variant}")
            with np.load(path) as f:
                return dict(f)
        arrays, stats = distill(self.world, self.cfg, self._llm(variant), progress=self.progress)
        np.savez(path, **arrays)  # type: ignore[arg-type]
        path.with_suffix(".json").write_text(json.dumps(stats, indent=2))
        self.log(f"distill {variant}: {stats['ok']}/{stats['queries']} preferences, {stats['failed']} failed "
                 f"{stats['failure_reasons']}; answer positions {stats['position_histogram']}")
        with self._writer("pipeline") as w:
            for k in ("calls", "cache_hits", "failures", "latency_p50_s"):
                w.add_scalar(f"llm/{variant}/{k}", float(stats["llm"][k]), 0)
            w.add_scalar(f"llm/{variant}/ok_fraction", stats["ok"] / max(stats["queries"], 1), 0)
            w.add_scalar(f"llm/{variant}/positive_chosen", stats["positive_chosen"], 0)
        mark_current(path, key)
        self.done.append(f"distill:{variant}")
        return arrays

    def reward_key(self, variant: str) -> str:
        """Key of the ``variant`` reward model."""
        source = (self.world_key, self.cfg.distill.queries) if variant == "logonly" else self.distill_key(variant)
        return stage_key(self.section("reward"), variant, source)

    def reward(self, variant: str) -> RewardModel:
        """Stage 2: the reward model of ``variant`` (``llm``, ``oracle`` or ``logonly``)."""
        from ialp.agents.distill import logged_feedback_set, preference_set
        from ialp.rewards.model import state_features

        path = self.out / "reward" / f"{variant}.pt"
        key = self.reward_key(variant)
        if is_current(path, key):
            self.skipped.append(f"reward:{variant}")
            return RewardModel.load(path)
        world, rc = self.world, self.cfg.reward
        dim = state_features({k: v[:1] for k, v in world.offline_env(1, 0).reset().items()},
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
            model.fit(prefs, rc.loss, rc.epochs, rc.learning_rate, rc.weight_decay, patience=rc.patience,
                      validation=rc.validation)
            metrics["train_accuracy"] = model.accuracy(prefs)
        model.save(path)
        path.with_suffix(".json").write_text(json.dumps(metrics, indent=2))
        with self._writer("pipeline") as w:
            for k, v in metrics.items():
                if isinstance(v, float):
                    w.add_scalar(f"reward/{variant}/{k}", v, 0)
        self.log(f"reward {variant}: {json.dumps({k: v for k, v in metrics.items() if k != 'variant'})}")
        mark_current(path, key)
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
            m.fit(train, loss, rc.epochs, rc.learning_rate, rc.weight_decay, patience=rc.patience,
                  validation=rc.validation)
            out[f"heldout_accuracy_{loss}"] = m.accuracy(test)
        return out

    def pretrain_key(self, variant: str, seed: int, setting: str) -> str:
        """Key of one pretrained checkpoint."""
        return stage_key(self.section("agent"), self.section("pretrain"), self.reward_key(variant), seed, setting)

    def pretrain(self, variant: str, seed: int, setting: str) -> Path:
        """Stage 3: iALP pretraining on the offline simulator with ``variant``'s learned reward."""
        from ialp.agents.ialp import pretrain

        path = self.out / "pretrain" / f"{variant}_{setting}_s{seed}.zip"
        key = self.pretrain_key(variant, seed, setting)
        if is_current(path, key):
            self.skipped.append(f"pretrain:{variant}:{setting}:{seed}")
            return path
        reward = self.reward(variant)
        lr = self.cfg.pretrain.learning_rate
        agent = self.cfg.agent if lr is None else dataclasses.replace(self.cfg.agent, learning_rate=lr)
        pretrain(self.world, reward, agent, self.cfg.pretrain.total_timesteps, seed, path,
                 str(self.out / "tb"), f"pretrain-{variant}_{setting}_s{seed}", setting=setting)
        mark_current(path, key)
        self.done.append(f"pretrain:{variant}:{setting}:{seed}")
        return path

    def method_key(self, method: str, seed: int, setting: str) -> str:
        """Key of one (method, seed, setting) result: what the method reads, evaluation (but not the list of
        seeds: a cell's result depends on its own seed only), and its pretraining."""
        entry = METHODS[method]
        evaluation = {k: v for k, v in self.section("eval").items() if k != "seeds"}
        parts = [self.world_key, evaluation, method, seed, setting,
                 *(self.section(r) for r in entry.reads)]
        if entry.pretrained:
            parts.append(self.pretrain_key(entry.pretrained, seed, setting))
        return stage_key(*parts)

    def method(self, method: str, seed: int, setting: str) -> dict[str, Any]:
        """Stages 4–5: online phase (if any) and evaluation (every ``eval.modes``) of one method, seed and setting."""
        path = self.out / "runs" / f"{method}_{setting}_s{seed}.json"
        key = self.method_key(method, seed, setting)
        if is_current(path, key):
            self.skipped.append(f"run:{method}:{setting}:{seed}")
            result: dict[str, Any] = json.loads(path.read_text())
            return result
        policy, episodes = METHODS[method].run(self, seed, setting)
        cfg = self.cfg
        popularity = np.bincount(self.world.log.items, minlength=self.world.target.n_items).astype(np.float64)
        curve = curve_stats(episodes.returns, episodes.steps, cfg.online.total_timesteps) if episodes else {}
        rows = []
        for mode in cfg.eval.modes:
            acting = dataclasses.replace(policy, deterministic=mode == "argmax") if isinstance(policy, SB3Policy) \
                else policy
            venv = self.world.target_env(cfg.eval.users, cfg.eval.user_seed_offset + seed, setting)
            stats = evaluate(acting, venv, seed=cfg.eval.user_seed_offset + seed, popularity=popularity)
            rows.append({"method": method, "seed": seed, "setting": setting, "eval_mode": mode,
                         "cumulative_reward": float(stats.returns.mean()), "avg_reward": stats.avg_reward,
                         "length": float(stats.lengths.mean()), "coverage": stats.coverage,
                         "diversity": stats.diversity, "novelty": stats.novelty, **curve})
        result = {"rows": rows, "curve": episodes.returns if episodes else [],
                  "curve_steps": episodes.steps if episodes else []}
        with self._writer(f"{method}_{setting}_s{seed}_eval") as w:
            step = cfg.online.total_timesteps if episodes else 0
            for row in rows:
                for k in RESULT_FIELDS[4:]:
                    value = row.get(k)
                    if isinstance(value, float):
                        w.add_scalar(f"eval/{row['eval_mode']}/{k}", value, step)
            if episodes and "agent" not in METHODS[method].reads:  # SB3 learners log their episodes themselves
                for s, r in zip(episodes.steps, episodes.returns, strict=True):
                    w.add_scalar("rec/episode_return", r, s)
        path.write_text(json.dumps(result))
        mark_current(path, key)
        self.done.append(f"run:{method}:{setting}:{seed}")
        return result

    # ----------------------------------------------------------------------------------------- helpers
    def online_env(self, seed: int, setting: str) -> BatchedRecEnv:
        """The online-adaptation users' batched environment of one seed."""
        cfg = self.cfg
        return self.world.online_env(cfg.agent.num_envs, cfg.online.seed_offset + 10_000 * seed, setting)

    def pretrained(self, variant: str, seed: int, setting: str) -> OnPolicyAlgorithm:
        """The pretrained SB3 model of ``variant`` (pretraining it first if needed)."""
        from ialp.agents.ialp import load

        return load(self.cfg.agent.algo, self.pretrain(variant, seed, setting))

    # ----------------------------------------------------------------------------------------- all
    def run_cell(self, cell: Cell) -> list[dict[str, Any]]:
        """The stage files of one cell (pretraining, online phase, evaluation of its methods); returns its rows.
        Run :meth:`prepare` first: cells running at once must not each redo the shared stages."""
        return [row for m in cell.methods for row in self.method(m, cell.seed, cell.setting)["rows"]]

    def prepare(self) -> None:
        """The shared stages: the world, and the distillation and reward model of every variant in use."""
        _ = self.world  # built (and its fitted models cached) before cells run at once
        variants = dict.fromkeys(METHODS[m].pretrained for m in self.cfg.methods)
        for variant in variants:
            if variant is not None:
                self.reward(variant)

    def run(self) -> list[dict[str, Any]]:
        """Every configured method for every setting and seed; writes the result files and returns the rows."""
        cfg = self.cfg
        (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        with self._writer("pipeline") as w:
            w.add_text("config", "```yaml\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False) + "\n```", 0)
        self.prepare()  # distil and fit once, before the per-seed loop
        rows: list[dict[str, Any]] = []
        curves: list[dict[str, Any]] = []
        jobs = [(m, s, st) for st in cfg.settings for m in cfg.methods for s in cfg.eval.seeds]
        for method, seed, setting in tqdm(jobs, desc="methods x seeds x settings", unit="run",
                                          disable=not self.progress):
            result = self.method(method, seed, setting)
            rows.extend(result["rows"])
            curves.extend({"method": method, "seed": seed, "setting": setting, "online_episode": i, "step": st,
                           "return": r}
                          for i, (r, st) in enumerate(zip(result["curve"], result["curve_steps"], strict=True)))
        write_csv(self.out / "results.csv", rows, RESULT_FIELDS)
        write_csv(self.out / "curves.csv", curves, CURVE_FIELDS)
        (self.out / "summary.md").write_text(_summary(self, rows, curves) + "\n")
        plot_results(self.out / "results.png", rows)
        plot_curves(self.out / "curves.png", curves, cfg.online.total_timesteps)
        if not self.world.synthetic:
            self._fidelity()
        return rows

    def _fidelity(self) -> None:
        """The simulator fidelity report of the logged environment, in ``fidelity/``."""
        from ialp.eval.fidelity import fidelity_report

        kwargs = {k: v for k, v in self.cfg.env.kwargs.items()
                  if k not in ("data_dir", "warm_start", "candidates", "history_len")}
        fidelity_report(self.cfg.env.id, self.cfg.env.kwargs["data_dir"], self.out / "fidelity", **kwargs)


# --------------------------------------------------------------------------------------------- methods
def _random(pipe: Pipeline, seed: int, setting: str) -> Online:
    return RandomPolicy(seed), None


def _oracle(pipe: Pipeline, seed: int, setting: str) -> Online:
    return OraclePolicy(), None


def _popularity(pipe: Pipeline, seed: int, setting: str) -> Online:
    from ialp.agents.baselines import PopularityPolicy

    log = pipe.world.log
    return PopularityPolicy(log.items, log.feedback, pipe.world.target.n_items), None


def _greedy_mf(pipe: Pipeline, seed: int, setting: str) -> Online:
    from ialp.agents.baselines import GreedyMFPolicy

    return GreedyMFPolicy(pipe.world.offline.base.mf), None  # type: ignore[attr-defined]


def _top1(pipe: Pipeline, seed: int, setting: str) -> Online:
    from ialp.candidates import TopOnePolicy

    return SB3Policy(TopOnePolicy()), None


def _bandit(kind: str) -> Callable[[Pipeline, int, str], Online]:
    def run(pipe: Pipeline, seed: int, setting: str) -> Online:
        from ialp.agents.baselines import BanditPolicy

        o = pipe.cfg.online
        bandit = BanditPolicy(pipe.world.target.n_items, kind, o.epsilon, o.ucb_c, seed)
        return bandit, bandit.learn(pipe.online_env(seed, setting), o.total_timesteps)

    return run


def _scratch(algo: str) -> Callable[[Pipeline, int, str], Online]:
    def run(pipe: Pipeline, seed: int, setting: str) -> Online:
        from stable_baselines3.common.vec_env import VecMonitor

        cfg, steps = pipe.cfg, pipe.cfg.online.total_timesteps
        venv = pipe.online_env(seed, setting)
        model = sb3_model(algo, VecMonitor(venv), cfg.agent, seed, str(pipe.out / "tb"))
        recorder = RecorderCallback(venv)
        every = log_interval(steps, venv.num_envs, model.n_steps) if isinstance(model, OnPolicyAlgorithm) else 4
        model.learn(steps, callback=recorder, tb_log_name=f"{algo}-scratch_{setting}_s{seed}", log_interval=every)
        return SB3Policy(model), recorder.log

    return run


def _bc(pipe: Pipeline, seed: int, setting: str) -> Online:
    from ialp.agents.baselines import behaviour_cloning
    from ialp.agents.distill import sample_states

    world = pipe.world
    w = int(world.env_kwargs.get("history_len", 10))
    states = sample_states(world.log, min(len(world.log), 20_000), w, np.random.default_rng(seed), min_history=0)
    weights = (states.next_feedback >= np.median(states.next_feedback)).astype(np.float64)
    model = sb3_model(pipe.cfg.agent.algo, pipe.online_env(seed, setting), pipe.cfg.agent, seed, None)
    assert isinstance(model, OnPolicyAlgorithm)  # agent.algo is a2c or ppo
    behaviour_cloning(model, states.observations(world), states.next_items, weights, seed=seed)
    return SB3Policy(model), None


def _offline_rl(algo: str) -> Callable[[Pipeline, int, str], Online]:
    def run(pipe: Pipeline, seed: int, setting: str) -> Online:
        from ialp.agents.offline_rl import train_offline_rl

        return train_offline_rl(algo, pipe.world, seed=seed, config=pipe.cfg.offline), None

    return run


def _frozen(variant: str) -> Callable[[Pipeline, int, str], Online]:
    """iALP without adaptation: the frozen pretrained policy; its online curve (sampling) for reference."""
    def run(pipe: Pipeline, seed: int, setting: str) -> Online:
        policy = SB3Policy(pipe.pretrained(variant, seed, setting))
        return policy, _rollout(policy, pipe.online_env(seed, setting), pipe.cfg.online.total_timesteps)

    return run


def _finetune(variant: str) -> Callable[[Pipeline, int, str], Online]:
    """A-iALP ``ft``: keep training the policy pretrained on ``variant``'s reward, online."""
    def run(pipe: Pipeline, seed: int, setting: str) -> Online:
        from ialp.agents.adaptive import finetune

        name = "a-ialp-ft" + ("" if variant == "llm" else f"-{variant}")
        model, episodes = finetune(pipe.pretrained(variant, seed, setting), pipe.online_env(seed, setting),
                                   pipe.cfg.online.total_timesteps, tb_name=f"{name}_{setting}_s{seed}",
                                   critic_warmup=round(pipe.cfg.online.critic_warmup * pipe.cfg.online.total_timesteps),
                                   learning_rate=pipe.cfg.agent.learning_rate)
        return SB3Policy(model), episodes

    return run


def _adaptive(variant: str) -> Callable[[Pipeline, int, str], Online]:
    """A-iALP ``ap``: the adaptive mixture of the frozen policy pretrained on ``variant`` and an online learner."""
    def run(pipe: Pipeline, seed: int, setting: str) -> Online:
        from ialp.agents.adaptive import adaptive_mixture, finetune

        a, o = pipe.cfg.agent, pipe.cfg.online
        name = "a-ialp-ap" + ("" if variant == "llm" else f"-{variant}")
        venv = pipe.online_env(seed, setting)
        extra: dict[str, Any] = {"batch_size": a.batch_size, "n_epochs": a.n_epochs} if a.algo == "ppo" else {}
        model = adaptive_mixture(pipe.pretrained(variant, seed, setting), venv, a.algo, learning_rate=a.learning_rate,
                                 n_steps=a.n_steps if a.algo == "a2c" else max(a.n_steps, 16), gamma=a.gamma,
                                 ent_coef=a.ent_coef, seed=seed, floor=o.ap_floor, init_weight=o.ap_init_weight,
                                 gate_lr=o.ap_gate_lr, init=o.ap_init, tensorboard_log=str(pipe.out / "tb"),
                                 gae_lambda=a.gae_lambda,
                                 **extra)
        trained, episodes = finetune(model, venv, o.total_timesteps, tb_name=f"{name}_{setting}_s{seed}")
        trained.save(str(pipe.out / "runs" / f"{name}_{setting}_s{seed}.zip"))
        return SB3Policy(trained), episodes

    return run


#: The method registry: adding a method is one entry here and one function above.
METHODS: dict[str, Method] = {
    "random": Method(_random),
    "oracle-greedy": Method(_oracle),
    "popularity": Method(_popularity, scope="catalogue"),
    "greedy-mf": Method(_greedy_mf, scope="catalogue"),
    "eps-greedy": Method(_bandit("eps-greedy"), reads=("online",), scope="catalogue"),
    "ucb": Method(_bandit("ucb"), reads=("online",), scope="catalogue"),
    "bc": Method(_bc, reads=("agent",), scope="catalogue"),
    "cql": Method(_offline_rl("cql"), reads=("offline",), scope="catalogue"),
    "bcq": Method(_offline_rl("bcq"), reads=("offline",), scope="catalogue"),
    "a2c-scratch": Method(_scratch("a2c"), reads=("agent", "online")),
    "ppo-scratch": Method(_scratch("ppo"), reads=("agent", "online")),
    "dqn-scratch": Method(_scratch("dqn"), reads=("agent", "online")),
    "ialp": Method(_frozen("llm"), reads=("online",), pretrained="llm"),
    "ialp-oracle": Method(_frozen("oracle"), reads=("online",), pretrained="oracle"),
    "ialp-logonly": Method(_frozen("logonly"), reads=("online",), pretrained="logonly"),
    "a-ialp-ft": Method(_finetune("llm"), reads=("agent", "online"), pretrained="llm"),
    "a-ialp-ap": Method(_adaptive("llm"), reads=("agent", "online"), pretrained="llm"),
    "a-ialp-ft-oracle": Method(_finetune("oracle"), reads=("agent", "online"), pretrained="oracle"),
    "a-ialp-ap-oracle": Method(_adaptive("oracle"), reads=("agent", "online"), pretrained="oracle"),
    "candidates-top1": Method(_top1, scope="generator"),
}


def check_methods(cfg: ExperimentConfig) -> None:
    """Every configured method exists and fits the action space (catalogue vs candidate generator)."""
    bad = [m for m in cfg.methods if m not in METHODS]
    if bad:
        raise ConfigError(f"methods: {bad} not among {tuple(METHODS)}")
    has_generator = cfg.candidates is not None or "candidates" in cfg.env.kwargs
    bad = [m for m in cfg.methods if METHODS[m].scope == ("generator" if not has_generator else "catalogue")]
    if bad:
        need = "need a candidate generator (a candidates section)" if not has_generator else \
            "act on the whole catalogue; with candidates use others"
        raise ConfigError(f"methods: {bad} {need}")


def load_experiment(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """``load_config`` plus the method checks: everything is validated before any work starts."""
    cfg = load_config(path, overrides)
    check_methods(cfg)
    return cfg


def _rollout(policy: Policy, venv: BatchedRecEnv, total_timesteps: int) -> EpisodeLog:
    """Episodes of a fixed policy acting online (no learning), for reference curves."""
    obs = venv.reset()
    tracker = EpisodeTracker(venv.num_envs, venv.model.n_items)
    steps = 0
    while steps < total_timesteps:
        obs, rewards, dones, infos = venv.step(policy.act(obs, venv))
        steps += venv.num_envs
        tracker.update(rewards, dones, np.array([i["item"] for i in infos]), steps)
    return tracker.log


def _summary(pipe: Pipeline, rows: list[dict[str, Any]], curves: list[dict[str, Any]]) -> str:
    cfg, out, info = pipe.cfg, pipe.out, pipe.world.info
    pools = (f"training users (distillation, offline simulator, pretraining): {info.get('train_users')}; "
             f"online-adaptation users: {info.get('online_users', 'new synthetic users per session')}"
             f" ({cfg.agent.num_envs} sessions at a time, {cfg.online.total_timesteps:,} steps); evaluation users: "
             f"{info.get('eval_users', 'new synthetic users')} ({cfg.eval.users} sessions per seed)")
    parts = [f"# {cfg.name}: {cfg.env.id}, LLM backend `{cfg.llm.backend}`, seeds {cfg.eval.seeds}", "",
             f"User pools (disjoint): {pools}.", ""]
    for setting in cfg.settings:
        for mode in cfg.eval.modes:
            sub = [r for r in rows if r["setting"] == setting and r["eval_mode"] == mode]
            parts += [f"## setting `{setting}`, evaluation `{mode}`", "", summary_table(sub), ""]
        # The pretrained learners against scratch training of their own algorithm (and A2C's, when it differs).
        binned = binned_curves([c for c in curves if c["setting"] == setting], cfg.online.total_timesteps)
        pairs = itertools.product(dict.fromkeys((f"{cfg.agent.algo}-scratch", "a2c-scratch")),
                                  ("a-ialp-ft", "a-ialp-ap", "a-ialp-ft-oracle", "a-ialp-ap-oracle"))
        for reference, learner in pairs:
            line = online_comparison(binned, learner, reference)
            parts += [line, ""] if line else []
        table = curve_table(binned)
        if table:
            parts += [f"Seed-averaged online curves in `{setting}` (mean return of the episodes that ended in each "
                      "tenth of the online steps):", "", table, ""]
    parts.append("Mean ± 95% Student-t interval over seeds. `online first`/`online last`: mean return of the online "
                 "episodes that ended in the first/last 10% of online steps; `curve change`: last 25% of steps vs the "
                 "25% before, relative (a flat curve is near 0).")
    if cfg.candidates is not None and (out / "candidates" / "metrics.json").exists():
        m = json.loads((out / "candidates" / "metrics.json").read_text())
        parts.append(f"\nCandidate generator `{cfg.candidates.model}` (actions: its top "
                     f"{cfg.candidates.k}): test HR@10 {m.get('hr@10')}, NDCG@10 {m.get('ndcg@10')}.")
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
