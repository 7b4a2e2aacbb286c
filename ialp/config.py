"""Typed experiment configuration loaded from YAML, validated field by field.

One dataclass per pipeline stage (``distill`` → ``reward`` → ``pretrain`` → ``online`` → ``eval``), plus the
environment, the LLM backend (``llm``: the fields of :class:`ialp.llm.LLMConfig`) and the shared actor-critic
hyperparameters (``agent``). ``load_config`` names the offending field, value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

import yaml

if TYPE_CHECKING:
    from ialp.candidates.config import CandidatesConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration: names the field, the value and what is allowed."""


@dataclass
class EnvConfig:
    """Which environment, with which ``gym.make`` arguments.

    Attributes:
        id: Registered id (``ialp/Synthetic-v0``, ``ialp/MovieLens-v0``, ...).
        kwargs: Its ``gym.make`` arguments.
        heldout_fraction: Logged data sets only: fraction of the log's users held out; they are the target
            population (online adaptation and evaluation), the others the training users whose logs are distilled.
        split_seed: Seed of that user split.
    """

    id: str = "ialp/Synthetic-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)
    heldout_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class AgentConfig:
    """Actor-critic (stable-baselines3) hyperparameters shared by pretraining and online learners."""

    algo: str = "a2c"
    num_envs: int = 16
    n_steps: int = 8
    learning_rate: float = 1e-3
    net_arch: list[int] = field(default_factory=lambda: [64])
    ent_coef: float = 0.01
    gamma: float = 0.9
    gae_lambda: float = 1.0
    score_dim: int = 32
    batch_size: int = 256
    n_epochs: int = 4


@dataclass
class DistillConfig:
    """LLM preference distillation from the training users' logs.

    Attributes:
        queries: Number of LLM queries (user states × K candidates); LLM cost scales with this only.
        k: Candidates per query.
        window: Recent items shown to the LLM (and in the state).
        mode: ``choice`` (the LLM names a letter) or ``score`` (log-probabilities of the titles).
        positive_fraction: Probability that the user's actual next logged item is among the candidates.
        log_users: Synthetic environments only: users simulated under a random logging policy to make the log.
        log_seed_offset: Their seeds (disjoint from the online and evaluation users').
        invert: Deliberately invert every preference (choose the worst candidate by the answer's scores;
            ``k = 2`` otherwise): a COMPROMISED LLM, for robustness experiments.
        seed: Seed of the sampled states and candidates.
    """

    queries: int = 150
    k: int = 5
    window: int = 10
    mode: str = "choice"
    positive_fraction: float = 0.5
    log_users: int = 1500
    log_seed_offset: int = 5_000_000
    invert: bool = False
    seed: int = 0


@dataclass
class RewardConfig:
    """The reward model fitted to the preferences (``ialp.rewards.RewardModel``)."""

    loss: str = "listwise"
    hidden: int = 64
    epochs: int = 300
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    holdout: float = 0.2
    seed: int = 0


@dataclass
class PretrainConfig:
    """Offline iALP pretraining on the logged-data simulator with the learned reward.

    Attributes:
        total_timesteps: Environment steps of pretraining.
        leave_rules: Extra leave rules of the offline simulator only (e.g. ``[{rule: tag, window: 5, threshold: 2}]``).
            A model fitted on logs has no boredom, so a policy pretrained on it learns to repeat its favourite
            item; an exit rule that ends sessions on repetitive content (DORL's remedy) teaches variety offline.
    """

    total_timesteps: int = 30_000
    leave_rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class OnlineConfig:
    """Online phase in the target environment (A-iALP, agents from scratch, bandits).

    Attributes:
        total_timesteps: Environment steps of each online learner.
        seed_offset: Seeds of the online users (disjoint from evaluation and logging).
        ap_floor: ``ap``: minimum probability of serving a session with either policy (exploration floor).
        ap_temperature: ``ap``: gate temperature, in units of the return's standard deviation.
        ap_step: ``ap``: step size of the recency-weighted return estimates of each policy.
        ap_min_episodes: ``ap``: episodes each policy must earn before the gate moves from 1/2.
        epsilon: ``eps-greedy`` exploration rate.
        ucb_c: ``ucb`` exploration bonus scale.
    """

    total_timesteps: int = 20_000
    seed_offset: int = 2_000_000
    ap_floor: float = 0.1
    ap_temperature: float = 0.1
    ap_step: float = 0.05
    ap_min_episodes: int = 10
    epsilon: float = 0.1
    ucb_c: float = 0.5


@dataclass
class EvalConfig:
    """Held-out users (their seeds never used in training) and the training seeds.

    ``deterministic``: learned policies act by argmax (default); ``false`` samples actions from the policy, as
    it does online. Argmax actor-critic policies tend to repeat one item, which repetition-averse users punish.
    """

    users: int = 500
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    user_seed_offset: int = 1_000_000
    deterministic: bool = True


@dataclass
class ExperimentConfig:
    """Everything a run needs; a run is determined by this and nothing else.

    ``candidates`` is the fields of :class:`ialp.candidates.CandidatesConfig` (e.g. ``{model: sidesan,
    modalities: [text], k: 50}``): a candidate generator trained on the training users' log proposes K items
    per step to both environments (``Discrete(K)`` actions). Empty (the default): no generator.
    """

    name: str = "experiment"
    env: EnvConfig = field(default_factory=EnvConfig)
    llm: dict[str, Any] = field(default_factory=lambda: {"backend": "llamacpp"})
    agent: AgentConfig = field(default_factory=AgentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: list[str] = field(default_factory=lambda: ["random", "oracle-greedy", "a2c-scratch", "ialp",
                                                        "a-ialp-ft", "a-ialp-ap"])
    candidates: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``config.yaml``."""
        return dataclasses.asdict(self)

    def candidates_config(self) -> CandidatesConfig | None:
        """The validated ``candidates`` section, or None when there is no candidate generator."""
        if not self.candidates:
            return None
        from ialp.candidates.config import CandidatesConfig

        return _build(CandidatesConfig, self.candidates, "candidates").validate()


ALGOS = ("a2c", "ppo")
LOSSES = ("listwise", "pairwise", "pointwise")
MODES = ("choice", "score")
METHODS = ("random", "popularity", "greedy-mf", "oracle-greedy", "eps-greedy", "ucb", "bc",
           "a2c-scratch", "ppo-scratch", "dqn-scratch", "ialp", "a-ialp-ft", "a-ialp-ap", "ialp-oracle",
           "ialp-logonly", "candidates-top1")
#: Methods that act on the whole catalogue, so not with a candidate generator.
CATALOGUE_METHODS = ("popularity", "greedy-mf", "eps-greedy", "ucb", "bc")
#: Methods that need a candidate generator (the ``candidates`` section).
GENERATOR_METHODS = ("candidates-top1",)


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        hint, path = hints[key], f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, path)  # type: ignore[arg-type]
            continue
        expected = getattr(hint, "__origin__", hint)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
        values[key] = value
    return cls(**values)


def _positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ConfigError(f"{section}.{name}: must be >= 1, got {getattr(obj, name)}")


def _validate(cfg: ExperimentConfig) -> ExperimentConfig:
    if cfg.agent.algo not in ALGOS:
        raise ConfigError(f"agent.algo: {cfg.agent.algo!r} is not one of {ALGOS}")
    _positive("agent", cfg.agent, "num_envs", "n_steps")
    _positive("distill", cfg.distill, "queries", "k", "window", "log_users")
    _positive("reward", cfg.reward, "hidden", "epochs")
    _positive("pretrain", cfg.pretrain, "total_timesteps")
    _positive("online", cfg.online, "total_timesteps")
    if cfg.distill.k < 2:
        raise ConfigError(f"distill.k: need at least 2 candidates, got {cfg.distill.k}")
    if cfg.distill.mode not in MODES:
        raise ConfigError(f"distill.mode: {cfg.distill.mode!r} is not one of {MODES}")
    if cfg.reward.loss not in LOSSES:
        raise ConfigError(f"reward.loss: {cfg.reward.loss!r} is not one of {LOSSES}")
    if not 0.0 < cfg.reward.holdout < 1.0:
        raise ConfigError(f"reward.holdout: must be in (0, 1), got {cfg.reward.holdout}")
    if not 0.0 < cfg.env.heldout_fraction < 1.0:
        raise ConfigError(f"env.heldout_fraction: must be in (0, 1), got {cfg.env.heldout_fraction}")
    if not 0.0 <= cfg.online.ap_floor < 0.5:
        raise ConfigError(f"online.ap_floor: must be in [0, 0.5), got {cfg.online.ap_floor}")
    if cfg.online.ap_temperature <= 0 or not 0.0 < cfg.online.ap_step <= 1.0:
        raise ConfigError("online.ap_temperature must be > 0 and online.ap_step in (0, 1], got "
                          f"{cfg.online.ap_temperature}, {cfg.online.ap_step}")
    if cfg.eval.users < 1 or not cfg.eval.seeds:
        raise ConfigError(f"eval: need users >= 1 and at least one seed, got {cfg.eval.users}, {cfg.eval.seeds}")
    bad = [m for m in cfg.methods if m not in METHODS]
    if bad:
        raise ConfigError(f"methods: {bad} not among {METHODS}")
    if cfg.candidates_config() is None:
        bad = [m for m in cfg.methods if m in GENERATOR_METHODS]
        if bad:
            raise ConfigError(f"methods: {bad} need a candidate generator; add a candidates section")
    else:
        if "candidates" in cfg.env.kwargs:
            raise ConfigError("env.kwargs.candidates and the candidates section are both set; keep one")
        bad = [m for m in cfg.methods if m in CATALOGUE_METHODS]
        if bad:
            raise ConfigError(f"methods: {bad} act on the whole catalogue; with a candidates section use others")
    from ialp.llm.base import LLMConfig

    try:
        LLMConfig.from_dict(cfg.llm)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"llm: {exc}") from None
    return cfg


def _set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` override (value parsed as YAML)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part!r} is not a section")
    node[leaf] = yaml.safe_load(raw)


def read_yaml_mapping(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty for no file); clear errors for bad YAML or another shape."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return dict(loaded or {})


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file (or the defaults), apply ``key=value`` overrides, validate."""
    data = read_yaml_mapping(path)
    for assignment in overrides or []:
        _set(data, assignment)
    return _validate(_build(ExperimentConfig, data, ""))
