"""Gymnasium environments over simulated users, and their batched ``VecEnv`` twin."""

from typing import Any

from ialp.envs.rec_env import RecEnv
from ialp.envs.registration import ENVIRONMENTS, build_parts, make_batched, make_env, make_vector, register_envs
from ialp.envs.session import CandidateProvider, CandidateTracker, RandomCandidates, SessionBatch, SessionFace


def __getattr__(name: str) -> Any:
    if name == "BatchedRecEnv":  # imported lazily: it subclasses stable-baselines3's VecEnv
        from ialp.envs.vector import BatchedRecEnv

        return BatchedRecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENVIRONMENTS",
    "BatchedRecEnv",
    "CandidateProvider",
    "CandidateTracker",
    "RandomCandidates",
    "RecEnv",
    "SessionBatch",
    "SessionFace",
    "build_parts",
    "make_batched",
    "make_env",
    "make_vector",
    "register_envs",
]
