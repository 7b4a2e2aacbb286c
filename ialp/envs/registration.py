"""Factories behind the registered ids, and ``make_batched`` for the vectorised twin of each."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from ialp.envs.rec_env import RecEnv
from ialp.envs.session import CandidateProvider, ItemKNNCandidates, RandomCandidates
from ialp.simulators import LoggedUserModel, MFConfig, SyntheticConfig, SyntheticUserModel, UserModel
from ialp.simulators.leave import LeaveRule, make_leave_rule

if TYPE_CHECKING:
    from ialp.envs.vector import BatchedRecEnv

ENV_ARGS = ("history_len", "repeat", "repeat_penalty", "leave_rules", "candidates", "leave", "warm_start",
            "render_mode")
MAX_EPISODE_STEPS = 50

#: The anchors' evaluation settings (EasyRL4Rec / DORL): environment arguments each one sets.
#: ``free``: repeats allowed, leave rules on; ``nx0``: no repeats (a policy sees the session's items as
#: ``blocked``), leave rules on; ``nx10``: no repeats, exactly 10 turns, nobody leaves.
SETTINGS: dict[str, dict[str, Any]] = {
    "free": {"repeat": "allow"},
    "nx0": {"repeat": "forbid"},
    "nx10": {"repeat": "forbid", "leave": False, "max_episode_steps": 10},
}


def _split(env_id: str, kwargs: Mapping[str, Any], model_args: tuple[str, ...]) -> tuple[dict, dict]:
    """Separate model arguments from environment arguments; reject unknown names clearly."""
    unknown = sorted(set(kwargs) - set(model_args) - set(ENV_ARGS))
    if unknown:
        raise TypeError(f"{env_id}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                        f"accepted: {', '.join(sorted(model_args + ENV_ARGS))}")
    model_kw = {k: v for k, v in kwargs.items() if k in model_args}
    env_kw = {k: v for k, v in kwargs.items() if k in ENV_ARGS}
    rules = env_kw.get("leave_rules", ())
    env_kw["leave_rules"] = [make_leave_rule(r) for r in ([rules] if isinstance(rules, str | dict) else rules)]
    cand = env_kw.get("candidates")
    if isinstance(cand, int):
        env_kw["candidates"] = RandomCandidates(cand)
    elif isinstance(cand, Mapping):
        env_kw["candidates"] = candidate_provider(env_id, cand)
    elif cand is not None and not isinstance(cand, CandidateProvider):
        raise TypeError(f"{env_id}: candidates must be an int K, a mapping such as {{kind: knn, k: 100}} or a "
                        f"CandidateProvider, got {type(cand).__name__}")
    return model_kw, env_kw


CANDIDATE_KINDS: dict[str, type[RandomCandidates] | type[ItemKNNCandidates]] = {
    "random": RandomCandidates, "knn": ItemKNNCandidates}


def candidate_provider(env_id: str, spec: Mapping[str, Any]) -> CandidateProvider:
    """A cheap candidate provider from a mapping: ``{kind: knn, k: 100, recent: 3}`` or ``{kind: random, k: 100}``."""
    params = dict(spec)
    kind = params.pop("kind", "knn")
    if kind not in CANDIDATE_KINDS:
        raise ValueError(f"{env_id}: candidates.kind {kind!r} is not one of {sorted(CANDIDATE_KINDS)}")
    try:
        return CANDIDATE_KINDS[kind](**params)
    except TypeError as exc:
        raise ValueError(f"{env_id}: candidates {dict(spec)}: {exc}") from None


def _synthetic(kwargs: Mapping[str, Any]) -> tuple[UserModel, dict]:
    fields = tuple(f.name for f in dataclasses.fields(SyntheticConfig))
    model_kw, env_kw = _split("ialp/Synthetic-v0", kwargs, fields)
    return SyntheticUserModel(SyntheticConfig(**model_kw)), env_kw


_DOWNLOAD = {
    "MovieLens": "https://grouplens.org/datasets/movielens/ (ml-latest-small, ml-100k or ml-1m)",
    "KuaiRec": "https://kuairec.com/ (unzip KuaiRec 2.0; point data_dir at the folder holding data/)",
    "KuaiRand": "https://kuairand.com/ (KuaiRand-Pure, -1K or -27K; point data_dir at the folder holding data/)",
}


def _resolve_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    env_var = f"IALP_{name.upper()}_DIR" if name != "MovieLens" else "IALP_DATA_DIR"
    path = data_dir or os.environ.get(env_var)
    if not path:
        raise FileNotFoundError(f"ialp/{name}-v0 needs its data: pass data_dir=... or set {env_var}. "
                                f"Get the data from {_DOWNLOAD[name]}.")
    if not Path(path).exists():
        raise FileNotFoundError(f"ialp/{name}-v0: data_dir {str(path)!r} does not exist. "
                                f"Get the data from {_DOWNLOAD[name]}.")
    return Path(path).resolve()


@functools.lru_cache(maxsize=8)
def _logged_model(kind: str, path: Path, mf: MFConfig, reward_noise: float, options: tuple) -> LoggedUserModel:
    """Load and fit once per process (the fitted factors are also cached on disk)."""
    from ialp import data

    loader: Callable[..., data.LoggedData] = {
        "MovieLens": data.load_movielens, "KuaiRec": data.load_kuairec, "KuaiRand": data.load_kuairand,
    }[kind]
    return LoggedUserModel(loader(path, **dict(options)), mf=mf, reward_noise=reward_noise)


def _logged(kind: str, default_rules: list[dict]) -> Callable[[Mapping[str, Any]], tuple[UserModel, dict]]:
    extra = {"KuaiRec": ("matrix",), "KuaiRand": ("feedback",)}.get(kind, ())

    def build(kwargs: Mapping[str, Any]) -> tuple[UserModel, dict]:
        args = ("data_dir", "mf", "reward_noise", *extra)
        model_kw, env_kw = _split(f"ialp/{kind}-v0", {"leave_rules": default_rules, **kwargs}, args)
        mf = model_kw.get("mf") or {}
        model = _logged_model(kind, _resolve_dir(kind, model_kw.get("data_dir")),
                              mf if isinstance(mf, MFConfig) else MFConfig(**mf),
                              float(model_kw.get("reward_noise", 0.0)),
                              tuple(sorted((k, model_kw[k]) for k in extra if k in model_kw)))
        return model, env_kw

    return build


BUILDERS: dict[str, Callable[[Mapping[str, Any]], tuple[UserModel, dict]]] = {
    "ialp/Synthetic-v0": _synthetic,
    "ialp/MovieLens-v0": _logged("MovieLens", [{"rule": "tag", "window": 5, "threshold": 3},
                                               {"rule": "low_reward", "threshold": 3.0, "patience": 3}]),
    "ialp/KuaiRec-v0": _logged("KuaiRec", [{"rule": "tag", "window": 5, "threshold": 3},
                                           {"rule": "low_reward", "threshold": 0.5, "patience": 3}]),
    "ialp/KuaiRand-v0": _logged("KuaiRand", [{"rule": "tag", "window": 5, "threshold": 3},
                                             {"rule": "low_reward", "threshold": 0.2, "patience": 3}]),
}


def make_env(env_id: str, **kwargs: Any) -> RecEnv:
    """The registered class of ``env_id`` built with ``kwargs`` (as ``gym.make`` does, minus wrappers)."""
    from ialp.envs.registered import ENV_CLASSES

    return ENV_CLASSES[env_id](**kwargs)


def make_batched(env_id: str, num_envs: int, seed: int | None = None,
                 max_episode_steps: int | None = None, **kwargs: Any) -> BatchedRecEnv:
    """The batched twin of ``gym.make(env_id, **kwargs)``: B users stepped at once.

    ``seed`` gives user ``i`` the seed ``seed + i`` (as ``VecEnv.seed``); the episode cap defaults
    to the registered ``max_episode_steps``.
    """
    if env_id not in BUILDERS:
        raise gym.error.UnregisteredEnv(f"{env_id!r} is not an ialp environment; known: {sorted(BUILDERS)}")
    from ialp.envs.vector import BatchedRecEnv  # needs stable-baselines3 (the "rl" extra)

    model, env_kw = BUILDERS[env_id](kwargs)
    env_kw.pop("render_mode", None)
    cap = max_episode_steps or gym.spec(env_id).max_episode_steps
    venv = BatchedRecEnv(model, num_envs, max_episode_steps=cap, **env_kw)
    if seed is not None:
        venv.seed(seed)
    return venv


def register_envs() -> None:
    """Register every ialp id with Gymnasium (idempotent)."""
    from ialp.envs.registered import ENV_CLASSES

    for env_id, cls in ENV_CLASSES.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=f"{cls.__module__}:{cls.__name__}", max_episode_steps=MAX_EPISODE_STEPS)


__all__ = ["BUILDERS", "SETTINGS", "LeaveRule", "make_batched", "make_env", "register_envs"]
