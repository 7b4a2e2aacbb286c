"""Typed experiment configuration loaded from YAML, validated field by field.

One dataclass per pipeline stage (``distill`` → ``reward`` → ``pretrain`` → ``online`` → ``eval``), plus the
environment, the LLM backend (``llm``: the fields of :class:`ialp.llm.LLMConfig`) and the shared actor-critic
hyperparameters (``agent``). ``load_config`` names the offending field, value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import field
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from ialp.candidates.config import CandidatesConfig
from ialp.envs.registration import ENVIRONMENTS, SETTINGS, check_args
from ialp.llm.base import LLMConfig
from ialp.llm.preferences import Mode
from ialp.rewards.model import Loss
from ialp.schema import STRICT, ConfigError, load
from ialp.simulators.leave import make_leave_rule

__all__ = ["ALGOS", "AP_INITS", "EVAL_MODES", "AgentConfig", "ApInit", "ConfigError", "DistillConfig", "EnvConfig",
           "EvalConfig", "ExperimentConfig", "OfflineRLConfig", "OnlineConfig", "PretrainConfig", "RayConfig",
           "RewardConfig", "load_config"]

#: Actor-critic algorithms of the pretrained and online learners (``ialp.agents``).
Algo = Literal["a2c", "ppo"]
ALGOS: tuple[str, ...] = get_args(Algo)
#: How actor-critic policies act in evaluation: ``sample`` their actions or take the ``argmax``.
EvalMode = Literal["sample", "argmax"]
EVAL_MODES: tuple[str, ...] = get_args(EvalMode)

#: How A-iALP ``ap``'s learner starts: ``fresh`` (a compromised pretrained policy cannot leak into it) or
#: ``pretrained`` (a copy of the pretrained actor-critic: as fast as ``ft`` when the pretrained policy is good).
ApInit = Literal["fresh", "pretrained"]
AP_INITS: tuple[str, ...] = get_args(ApInit)

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


@dataclass(config=STRICT)
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
    online_fraction: Fraction = 0.2
    eval_fraction: Fraction = 0.2
    split_seed: int = 0

    @field_validator("id")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ENVIRONMENTS:
            raise ValueError(f"{value!r} is not an ialp environment; known: {sorted(ENVIRONMENTS)}")
        return value

    @model_validator(mode="after")
    def _arguments(self) -> EnvConfig:
        check_args(self.id, self.kwargs)  # names, leave rules, candidates and the user model's values; loads nothing
        return self

    @model_validator(mode="after")
    def _pools(self) -> EnvConfig:
        if self.online_fraction + self.eval_fraction >= 1.0:
            raise ValueError(f"online_fraction + eval_fraction must leave training users, got "
                             f"{self.online_fraction} + {self.eval_fraction}")
        return self


@dataclass(config=STRICT)
class AgentConfig:
    """Actor-critic (stable-baselines3) hyperparameters shared by pretraining and online learners."""

    algo: Algo = "a2c"
    num_envs: PositiveInt = 16
    n_steps: PositiveInt = 8
    learning_rate: PositiveFloat = 1e-3
    net_arch: list[PositiveInt] = field(default_factory=lambda: [64])
    ent_coef: NonNegativeFloat = 0.01
    gamma: Probability = 0.9
    gae_lambda: Probability = 1.0
    score_dim: PositiveInt = 32
    batch_size: PositiveInt = 256
    n_epochs: PositiveInt = 4


@dataclass(config=STRICT)
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

    queries: PositiveInt = 150
    k: Annotated[int, Field(ge=2)] = 5
    window: PositiveInt = 10
    mode: Mode = "choice"
    positive_fraction: Probability = 0.5
    log_users: PositiveInt = 1500
    log_seed_offset: int = 5_000_000
    invert: bool = False
    seed: int = 0


@dataclass(config=STRICT)
class RewardConfig:
    """The reward model fitted to the preferences (``ialp.rewards.RewardModel``).

    ``holdout``: the share of preferences held out to report each loss's accuracy (``heldout_accuracy_*``).
    ``patience``/``validation``: early stopping of every fit on the loss of a ``validation`` share of its training
    preferences (0 trains all ``epochs``).
    """

    loss: Loss = "listwise"
    hidden: PositiveInt = 64
    epochs: PositiveInt = 300
    learning_rate: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 1e-3
    holdout: Fraction = 0.2
    patience: NonNegativeInt = 20
    validation: Fraction = 0.2
    seed: int = 0


@dataclass(config=STRICT)
class PretrainConfig:
    """Offline iALP pretraining on the logged-data simulator with the learned reward.

    Attributes:
        total_timesteps: Environment steps of pretraining.
        leave_rules: Extra leave rules of the offline simulator only (e.g. ``[{rule: tag, window: 5, threshold: 2}]``).
            A model fitted on logs has no boredom, so a policy pretrained on it learns to repeat its favourite
            item; an exit rule that ends sessions on repetitive content (DORL's remedy) teaches variety offline.
        learning_rate: Pretraining's learning rate (default ``agent.learning_rate``). Online, every learner trains
            at the agent's: ``ft`` (measured on MovieLens: at the pretraining rate 0.002 it reached scratch's final
            return after 40% of its steps, at the agent's 0.001 after 20%), ``ap``'s learner and the scratch ones.
    """

    total_timesteps: PositiveInt = 30_000
    leave_rules: list[dict[str, Any]] = field(default_factory=list)
    learning_rate: PositiveFloat | None = None

    @field_validator("leave_rules")
    @classmethod
    def _rules(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for rule in value:
            make_leave_rule(rule)  # raises ValueError naming the rule and what is allowed
        return value


@dataclass(config=STRICT)
class OnlineConfig:
    """Online phase with the online-adaptation users (A-iALP, agents from scratch, bandits).

    Attributes:
        total_timesteps: Environment steps of each online learner.
        seed_offset: Seeds of the online users (disjoint from evaluation and logging).
        ap_floor: ``ap``: the mixture weight of each policy stays in ``[floor, 1 - floor]``.
        ap_init_weight: ``ap``: initial weight of the frozen pretrained policy in the mixture.
        ap_gate_lr: ``ap``: learning rate of the mixture weight's logit.
        ap_init: ``ap``: the learner starts ``fresh`` (guards against a compromised pretrained policy: the weight
            leaves it) or as a copy of the ``pretrained`` policy (learns as fast as ``ft`` from a good one).
        critic_warmup: ``ft``: the fraction of ``total_timesteps`` (the first online steps) in which only the critic
            trains, so that the pretrained critic learns the online returns' scale before its advantages move the
            actor.
        epsilon: ``eps-greedy`` exploration rate.
        ucb_c: ``ucb`` exploration bonus scale.
    """

    total_timesteps: PositiveInt = 20_000
    seed_offset: int = 2_000_000
    ap_floor: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.05
    ap_init_weight: Probability = 0.5
    ap_gate_lr: NonNegativeFloat = 0.05
    ap_init: ApInit = "fresh"
    critic_warmup: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    epsilon: Probability = 0.1
    ucb_c: NonNegativeFloat = 0.5

    @model_validator(mode="after")
    def _consistent(self) -> OnlineConfig:
        if not self.ap_floor <= self.ap_init_weight <= 1.0 - self.ap_floor:
            raise ValueError(f"ap_init_weight must be in [ap_floor, 1 - ap_floor], got {self.ap_init_weight}")
        return self


@dataclass(config=STRICT)
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

    steps: PositiveInt = 5000
    hidden: list[PositiveInt] = field(default_factory=lambda: [64, 64])
    batch_size: PositiveInt = 256
    learning_rate: PositiveFloat = 1e-3
    gamma: Probability = 0.9
    target_update_interval: PositiveInt = 200
    alpha: NonNegativeFloat = 0.1
    action_flexibility: Probability = 0.3
    beta: NonNegativeFloat = 0.5
    max_transitions: PositiveInt = 20_000


@dataclass(config=STRICT)
class EvalConfig:
    """Evaluation sessions with the evaluation users, and the training seeds.

    ``modes``: ``sample`` (actor-critic policies sample their actions, as they do online and as EasyRL4Rec's
    collectors evaluate them; the headline) and ``argmax``; other policies act the same in both.
    """

    users: PositiveInt = 500
    seeds: Annotated[list[int], Field(min_length=1)] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    user_seed_offset: int = 1_000_000
    modes: Annotated[list[EvalMode], Field(min_length=1)] = field(default_factory=lambda: ["sample", "argmax"])


@dataclass(config=STRICT)
class RayConfig:
    """How ``ialp run --ray`` runs the cells as Ray Tune trials (read by the driver only; no stage key holds it).

    Attributes:
        resources: Per trial, Ray resource name -> amount, e.g. ``{cpu: 1}`` or ``{cpu: 4, gpu: 0.25}``; the trial's
            torch/OpenMP threads are its ``cpu``.
        max_failures: Times a failed trial is retried (Tune's ``FailureConfig``) before it is reported as failed.
        storage_path: Where Tune keeps its experiment state (``--resume`` reads it); default ``<run folder>/ray``.
            On a multi-node cluster: a folder every node sees (NFS) or a URI such as ``s3://bucket/path``.
    """

    resources: dict[str, NonNegativeFloat] = field(default_factory=lambda: {"cpu": 1.0})
    max_failures: Annotated[int, Field(ge=0)] = 2
    storage_path: str | None = None

    @field_validator("resources")
    @classmethod
    def _cpu(cls, value: dict[str, float]) -> dict[str, float]:
        if value.get("cpu", 0) < 1:
            raise ValueError(f"needs cpu >= 1 (the trial's threads), got {value}")
        return value


@dataclass(config=STRICT)
class ExperimentConfig:
    """Everything a run needs; a run is determined by this and nothing else.

    ``candidates`` (:class:`ialp.candidates.CandidatesConfig`, e.g. ``{model: sidesan, modalities: [text], k: 50}``):
    a candidate generator trained on the training users' log proposes K items per step to both environments
    (``Discrete(K)`` actions). None or empty (the default): no generator. ``methods`` are checked against the
    method registry by :func:`ialp.experiment.load_experiment`.
    """

    name: str = "experiment"
    env: EnvConfig = field(default_factory=EnvConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    offline: OfflineRLConfig = field(default_factory=OfflineRLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    settings: Annotated[list[str], Field(min_length=1)] = field(default_factory=lambda: ["free"])
    methods: Annotated[list[str], Field(min_length=1)] = field(
        default_factory=lambda: ["random", "oracle-greedy", "a2c-scratch", "ialp", "a-ialp-ft", "a-ialp-ap"])
    candidates: CandidatesConfig | None = None
    ray: RayConfig = field(default_factory=RayConfig)

    @field_validator("candidates", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s not in SETTINGS]
        if bad:
            raise ValueError(f"{bad} not among {tuple(SETTINGS)}")
        return value

    @model_validator(mode="after")
    def _one_candidate_source(self) -> ExperimentConfig:
        if self.candidates is not None and "candidates" in self.env.kwargs:
            raise ValueError("env.kwargs.candidates and the candidates section are both set; keep one")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``config.yaml``."""
        return dataclasses.asdict(self)


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (or the defaults), apply ``a.b=c`` overrides, validate every field."""
    return load(ExperimentConfig, path, overrides)
