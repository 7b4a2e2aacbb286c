"""The environment factory: one table of ids (:data:`ENVIRONMENTS`), the parts behind each (:func:`build_parts`),
and the doors built on them: ``gym.make``/``gym.make_vec`` (:func:`register_envs`), :func:`make_batched` and the
experiment pipeline (``ialp.agents.distill.build_world``)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from ialp.envs.rec_env import RecEnv
from ialp.envs.session import CandidateProvider, ItemKNNCandidates, RandomCandidates
from ialp.simulators import LoggedUserModel, MFConfig, SyntheticConfig, SyntheticUserModel, UserModel
from ialp.simulators.leave import LeaveRule, make_leave_rule
from ialp.storage import resolve_data_dir

if TYPE_CHECKING:
    from ialp.envs.gym_vector import RecVectorEnv
    from ialp.envs.vector import BatchedRecEnv

#: Arguments of the environment itself (the rest go to the user model): ``RecEnv``'s own parameters.
ENV_ARGS = tuple(p for p in inspect.signature(RecEnv.__init__).parameters if p not in ("self", "model"))
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


@functools.lru_cache(maxsize=8)
def _logged_model(dataset: str, path: Path, mf: MFConfig, reward_noise: float, options: tuple) -> LoggedUserModel:
    """Load and fit once per process (the fitted factors are also cached on disk)."""
    from ialp.data import load_dataset

    return LoggedUserModel(load_dataset(path, dataset, **dict(options)), mf=mf, reward_noise=reward_noise)


@dataclasses.dataclass(frozen=True)
class Environment:
    """One registered id: how its user model is built, and the class ``gym.make`` instantiates.

    Attributes:
        entry_point: The documented ``RecEnv`` subclass (``module:Class``), as Gymnasium names entry points.
        model_args: Arguments that go to the user model (the others are ``ENV_ARGS``).
        dataset: Logged data sets only: the ``ialp.data.load_dataset`` kind (its folder: ``data_dir`` or the
            data set's environment variable, see ``ialp.storage.DATA_SOURCES``).
        loader_args: Logged data sets only: the arguments that are loader options (e.g. KuaiRec's ``matrix``).
        leave_rules: Default leave rules (a ``leave_rules`` argument replaces them).
    """

    entry_point: str
    model_args: tuple[str, ...]
    dataset: str | None = None
    loader_args: tuple[str, ...] = ()
    leave_rules: tuple[Mapping[str, Any], ...] = ()

    def model_config(self, model_kw: Mapping[str, Any]) -> SyntheticConfig | MFConfig:
        """The validated configuration of the user model (nothing is loaded or fitted)."""
        if self.dataset is None:
            return SyntheticConfig(**model_kw)
        mf = model_kw.get("mf") or {}
        return mf if isinstance(mf, MFConfig) else MFConfig(**mf)

    def build_model(self, env_id: str, model_kw: Mapping[str, Any]) -> UserModel:
        """The user model from its arguments."""
        config = self.model_config(model_kw)
        if isinstance(config, SyntheticConfig):
            return SyntheticUserModel(config)
        dataset = str(self.dataset)
        return _logged_model(dataset, resolve_data_dir(dataset, model_kw.get("data_dir"), env_id), config,
                             float(model_kw.get("reward_noise", 0.0)),
                             tuple(sorted((k, model_kw[k]) for k in self.loader_args if k in model_kw)))


def _logged(name: str, dataset: str, low_reward: float, loader_args: tuple[str, ...] = ()) -> Environment:
    return Environment(f"ialp.envs.registered:{name}Env", ("data_dir", "mf", "reward_noise", *loader_args), dataset,
                       loader_args, ({"rule": "tag", "window": 5, "threshold": 3},
                                     {"rule": "low_reward", "threshold": low_reward, "patience": 3}))


#: The registration table: every ialp id, once.
ENVIRONMENTS: dict[str, Environment] = {
    "ialp/Synthetic-v0": Environment("ialp.envs.registered:SyntheticEnv",
                                     tuple(f.name for f in dataclasses.fields(SyntheticConfig))),
    "ialp/MovieLens-v0": _logged("MovieLens", "movielens", 3.0),
    "ialp/KuaiRec-v0": _logged("KuaiRec", "kuairec", 0.5, ("matrix",)),
    "ialp/KuaiRand-v0": _logged("KuaiRand", "kuairand", 0.2, ("feedback",)),
}


def build_parts(env_id: str, kwargs: Mapping[str, Any]) -> tuple[UserModel, dict[str, Any]]:
    """The user model and the environment arguments behind ``gym.make(env_id, **kwargs)``.

    Raises:
        gymnasium.error.UnregisteredEnv: ``env_id`` is not an ialp id.
        TypeError: An argument neither the model nor the environment accepts.
    """
    env, model_kw, env_kw = _parts_args(env_id, kwargs)
    return env.build_model(env_id, model_kw), env_kw


def check_args(env_id: str, kwargs: Mapping[str, Any]) -> None:
    """Check ``gym.make(env_id, **kwargs)``'s arguments without building anything (no data is loaded).

    Raises:
        ValueError: Unknown id or argument, or a bad value, naming it and what is accepted.
    """
    try:
        env, model_kw, _ = _parts_args(env_id, kwargs)
        env.model_config(model_kw)
    except (TypeError, gym.error.Error) as exc:
        raise ValueError(str(exc)) from None


def _parts_args(env_id: str, kwargs: Mapping[str, Any]) -> tuple[Environment, dict[str, Any], dict[str, Any]]:
    if env_id not in ENVIRONMENTS:
        raise gym.error.UnregisteredEnv(f"{env_id!r} is not an ialp environment; known: {sorted(ENVIRONMENTS)}")
    env = ENVIRONMENTS[env_id]
    model_kw, env_kw = _split(env_id, {"leave_rules": list(env.leave_rules), **kwargs}, env.model_args)
    return env, model_kw, env_kw


def make_env(env_id: str, **kwargs: Any) -> RecEnv:
    """The registered class of ``env_id`` built with ``kwargs`` (as ``gym.make`` does, minus wrappers)."""
    if env_id not in ENVIRONMENTS:
        raise gym.error.UnregisteredEnv(f"{env_id!r} is not an ialp environment; known: {sorted(ENVIRONMENTS)}")
    env = gym.envs.registration.load_env_creator(ENVIRONMENTS[env_id].entry_point)(**kwargs)
    assert isinstance(env, RecEnv)
    return env


def make_batched(env_id: str, num_envs: int, seed: int | None = None,
                 max_episode_steps: int | None = None, **kwargs: Any) -> BatchedRecEnv:
    """The batched twin of ``gym.make(env_id, **kwargs)``: B users stepped at once.

    ``seed`` gives user ``i`` the seed ``seed + i`` (as ``VecEnv.seed``); the episode cap defaults
    to the registered ``max_episode_steps``.
    """
    from ialp.envs.vector import BatchedRecEnv  # needs stable-baselines3 (the "rl" extra)

    model, env_kw = build_parts(env_id, kwargs)
    venv = BatchedRecEnv(model, num_envs, max_episode_steps=max_episode_steps or MAX_EPISODE_STEPS, **env_kw)
    if seed is not None:
        venv.seed(seed)
    return venv


def make_vector(env_id: str, num_envs: int, **kwargs: Any) -> RecVectorEnv:
    """``gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point", **kwargs)``: the batched env as a
    Gymnasium ``VectorEnv`` (see ``ialp.envs.gym_vector``)."""
    from ialp.envs.gym_vector import RecVectorEnv

    return RecVectorEnv(make_batched(env_id, num_envs, **kwargs))


def register_envs() -> None:
    """Register every ialp id with Gymnasium (idempotent)."""
    for env_id, env in ENVIRONMENTS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=env.entry_point, max_episode_steps=MAX_EPISODE_STEPS,
                         vector_entry_point=functools.partial(make_vector, env_id))


__all__ = ["ENVIRONMENTS", "ENV_ARGS", "SETTINGS", "Environment", "LeaveRule", "build_parts", "check_args",
           "make_batched",
           "make_env", "make_vector", "register_envs"]
