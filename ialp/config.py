"""Typed experiment configuration loaded from YAML, validated field by field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid configuration: names the field, the value and what is allowed."""


@dataclass
class EnvConfig:
    """Which environment, with which ``gym.make`` arguments."""

    id: str = "ialp/Synthetic-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """An online agent trained from scratch with stable-baselines3."""

    algo: str = "a2c"
    total_timesteps: int = 30_000
    num_envs: int = 16
    n_steps: int = 8
    learning_rate: float = 1e-3
    net_arch: list[int] = field(default_factory=lambda: [64])


@dataclass
class EvalConfig:
    """Held-out users (their seeds never used in training) and the training seeds."""

    users: int = 500
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    user_seed_offset: int = 1_000_000


@dataclass
class ExperimentConfig:
    """Everything a run needs; a run is determined by this and nothing else."""

    name: str = "experiment"
    env: EnvConfig = field(default_factory=EnvConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: list[str] = field(default_factory=lambda: ["random", "oracle-greedy", "a2c-scratch"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``config.yaml``."""
        return dataclasses.asdict(self)


ALGOS = ("a2c", "ppo")
METHODS = ("random", "oracle-greedy", "a2c-scratch", "ppo-scratch")


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


def _validate(cfg: ExperimentConfig) -> ExperimentConfig:
    if cfg.train.algo not in ALGOS:
        raise ConfigError(f"train.algo: {cfg.train.algo!r} is not one of {ALGOS}")
    for name in ("total_timesteps", "num_envs", "n_steps"):
        if getattr(cfg.train, name) < 1:
            raise ConfigError(f"train.{name}: must be >= 1, got {getattr(cfg.train, name)}")
    if cfg.eval.users < 1 or not cfg.eval.seeds:
        raise ConfigError(f"eval: need users >= 1 and at least one seed, got {cfg.eval.users}, {cfg.eval.seeds}")
    bad = [m for m in cfg.methods if m not in METHODS]
    if bad:
        raise ConfigError(f"methods: {bad} not among {METHODS}")
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file (or the defaults), apply ``key=value`` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    for assignment in overrides or []:
        _set(data, assignment)
    return _validate(_build(ExperimentConfig, data, ""))
