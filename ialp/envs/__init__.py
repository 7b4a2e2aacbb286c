"""Gymnasium environments over simulated users, and their batched ``VecEnv`` twin."""

from typing import Any

from ialp.envs.rec_env import RecEnv
from ialp.envs.registration import BUILDERS, make_batched, make_env, register_envs
from ialp.envs.session import CandidateProvider, CandidateTracker, RandomCandidates, SessionBatch


def __getattr__(name: str) -> Any:
    if name == "BatchedRecEnv":  # imported lazily: it subclasses stable-baselines3's VecEnv
        from ialp.envs.vector import BatchedRecEnv

        return BatchedRecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILDERS",
    "BatchedRecEnv",
    "CandidateProvider",
    "CandidateTracker",
    "RandomCandidates",
    "RecEnv",
    "SessionBatch",
    "make_batched",
    "make_env",
    "register_envs",
]
