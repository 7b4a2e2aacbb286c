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
        online_fraction: Logged data sets only: fraction of the log's users in the online-adaptation pool.
        eval_fraction: Logged data sets only: fraction of the log's users in the evaluation pool. The rest are the
            training users, whose logs are distilled and fitted (the offline simulator); the three pools are disjoint.
            (Synthetic users are disjoint by seed ranges: ``distill.log_seed_offset``, ``online.seed_offset``,
            ``eval.user_seed_offset``.)
        split_seed: Seed of that user split.
    """

    id: str = "ialp/Synthetic-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)
    online_fraction: float = 0.2
    eval_fraction: float = 0.2
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
    """Online phase with the online-adaptation users (A-iALP, agents from scratch, bandits).

    Attributes:
        total_timesteps: Environment steps of each online learner.
        seed_offset: Seeds of the online users (disjoint from evaluation and logging).
        ap_floor: ``ap``: the mixture weight of each policy stays in ``[floor, 1 - floor]``.
        ap_init_weight: ``ap``: initial weight of the frozen pretrained policy in the mixture.
        ap_gate_lr: ``ap``: learning rate of the mixture weight's logit.
        critic_warmup: ``ft``: online steps (of ``total_timesteps``) in which only the critic trains, so that the
            pretrained critic learns the online returns' scale before its advantages move the actor.
        epsilon: ``eps-greedy`` exploration rate.
        ucb_c: ``ucb`` exploration bonus scale.
    """

    total_timesteps: int = 20_000
    seed_offset: int = 2_000_000
    ap_floor: float = 0.05
    ap_init_weight: float = 0.5
    ap_gate_lr: float = 0.05
    critic_warmup: int = 0
    epsilon: float = 0.1
    ucb_c: float = 0.5


@dataclass
class OfflineRLConfig:
    """Offline RL baselines (``cql``, ``bcq``: d3rlpy) trained on the training users' logged transitions.

    Defaults differ from d3rlpy's where they did better here (Synthetic-v0 logged by a random policy, and
    MovieLens ml-latest-small): a larger learning rate and target update for short runs, and CQL's conservative
    weight 0.1 instead of 1.0 (with 1.0, CQL's greedy policy fell below the random policy on both).

    Attributes:
        steps: Gradient steps.
        hidden: Hidden layer sizes of the MLP encoder (shared by the Q-function and BCQ's imitator).
        batch_size: Minibatch of transitions per gradient step.
        learning_rate: Adam's step size.
        gamma: Discount (the agents' default, 0.9: sessions are short).
        target_update_interval: Gradient steps between target-network copies.
        alpha: CQL's conservative weight (the log-sum-exp of Q over the catalogue minus Q of the logged item).
        action_flexibility: BCQ's threshold τ: actions whose imitator probability is below τ times the most
            likely one's are not taken.
        beta: BCQ's imitator regularisation.
        max_transitions: Cap on the logged transitions used.
    """

    steps: int = 5000
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    batch_size: int = 256
    learning_rate: float = 1e-3
    gamma: float = 0.9
    target_update_interval: int = 200
    alpha: float = 0.1
    action_flexibility: float = 0.3
    beta: float = 0.5
    max_transitions: int = 20_000


@dataclass
class EvalConfig:
    """Evaluation sessions with the evaluation users, and the training seeds.

    ``modes``: ``sample`` (actor-critic policies sample their actions, as they do online and as EasyRL4Rec's
    collectors evaluate them; the headline) and ``argmax``; other policies act the same in both.
    """

    users: int = 500
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    user_seed_offset: int = 1_000_000
    modes: list[str] = field(default_factory=lambda: ["sample", "argmax"])


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
    offline: OfflineRLConfig = field(default_factory=OfflineRLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    settings: list[str] = field(default_factory=lambda: ["free"])
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
EVAL_MODES = ("sample", "argmax")


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
    for name in ("online_fraction", "eval_fraction"):
        if not 0.0 < getattr(cfg.env, name) < 1.0:
            raise ConfigError(f"env.{name}: must be in (0, 1), got {getattr(cfg.env, name)}")
    if cfg.env.online_fraction + cfg.env.eval_fraction >= 1.0:
        raise ConfigError("env.online_fraction + env.eval_fraction must leave training users, got "
                          f"{cfg.env.online_fraction} + {cfg.env.eval_fraction}")
    if not 0.0 <= cfg.online.ap_floor < 0.5:
        raise ConfigError(f"online.ap_floor: must be in [0, 0.5), got {cfg.online.ap_floor}")
    if not cfg.online.ap_floor <= cfg.online.ap_init_weight <= 1.0 - cfg.online.ap_floor:
        raise ConfigError(f"online.ap_init_weight: must be in [ap_floor, 1 - ap_floor], got "
                          f"{cfg.online.ap_init_weight}")
    if not 0 <= cfg.online.critic_warmup <= cfg.online.total_timesteps:
        raise ConfigError(f"online.critic_warmup: must be in [0, online.total_timesteps], got "
                          f"{cfg.online.critic_warmup}")
    if cfg.agent.learning_rate <= 0 or cfg.online.ap_gate_lr < 0:
        raise ConfigError(f"agent.learning_rate must be > 0 and online.ap_gate_lr >= 0, got "
                          f"{cfg.agent.learning_rate}, {cfg.online.ap_gate_lr}")
    if cfg.eval.users < 1 or not cfg.eval.seeds:
        raise ConfigError(f"eval: need users >= 1 and at least one seed, got {cfg.eval.users}, {cfg.eval.seeds}")
    bad = [m for m in cfg.eval.modes if m not in EVAL_MODES] or ([] if cfg.eval.modes else ["(none)"])
    if bad:
        raise ConfigError(f"eval.modes: {bad} not among {EVAL_MODES}")
    from ialp.envs.registration import SETTINGS

    bad = [s for s in cfg.settings if s not in SETTINGS] or ([] if cfg.settings else ["(none)"])
    if bad:
        raise ConfigError(f"settings: {bad} not among {tuple(SETTINGS)}")
    if cfg.candidates_config() is not None and "candidates" in cfg.env.kwargs:
        raise ConfigError("env.kwargs.candidates and the candidates section are both set; keep one")
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
