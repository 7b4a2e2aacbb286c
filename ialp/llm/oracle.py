"""An oracle "backend" that answers from the simulator's ground truth: an UPPER BOUND, not an LLM.

It exists to measure how much an LLM's preferences fall short of perfect knowledge, and to test the
preference pipeline end to end without a model. It is never the default backend and never
reachable through ``make_backend``: it is constructed explicitly from a ground truth.

It cannot read free text: :class:`~ialp.llm.preferences.PreferenceExtractor` detects it (by its
:meth:`OracleBackend.answer_query`) and hands it the structured query instead of a prompt. It makes
no model calls, so its stats stay at zero calls, zero tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ialp.llm.base import Completion, LLMBackend, LLMConfig, LLMError, LLMStats
from ialp.llm.prompts import PreferenceQuery
from ialp.simulators.base import UserModel

__all__ = ["OracleBackend"]

Truth = Callable[[PreferenceQuery], np.ndarray]
"""Ground-truth expected feedback of each candidate of a query, shape (K,)."""


class OracleBackend(LLMBackend):
    """Preferences from ground truth (upper bound): the candidate with the highest expected feedback.

    Args:
        config: Recorded for reports (``make_backend(LLMConfig(backend="oracle"), truth=...)`` passes it);
            ``backend`` is set to ``"oracle"`` and ``model`` to ``"ground-truth"``.
        truth: A ``UserModel`` (its ``expected_rewards`` of the query's ``user_state``, or for a logged
            user of the state ``{"user": [query.user]}``, as ``LoggedUserModel`` keeps it), or any
            function mapping a query to its candidates' expected feedback. Required.
    """

    name = "oracle"
    supports_scoring = False

    def __init__(self, config: LLMConfig | None = None, truth: UserModel | Truth | None = None) -> None:
        if truth is None:
            raise LLMError("the oracle backend answers from a ground truth: pass truth=<UserModel or function>")
        self.truth = truth
        self.config = dataclasses.replace(config or LLMConfig(), backend="oracle", model="ground-truth")
        self.stats = LLMStats()

    def answer_query(self, query: PreferenceQuery) -> np.ndarray:
        """Expected feedback of each candidate (K,), the ground truth the query is asked about."""
        cands = np.asarray(query.candidates, dtype=np.int64)
        if not isinstance(self.truth, UserModel):
            return np.asarray(self.truth(query), dtype=np.float64).reshape(len(cands))
        state = query.user_state
        if state is None:
            if query.user is None:
                raise LLMError("the oracle needs the query's user_state (env) or user (logged data)")
            state = {"user": np.array([query.user], dtype=np.int64)}
        return np.asarray(self.truth.expected_rewards(state), dtype=np.float64)[0, cands]

    def complete(self, prompts: Sequence[str], *, max_tokens: int | None = None, temperature: float | None = None,
                 stop: Sequence[str] | None = None, cache_tag: str = "") -> list[Completion]:
        """Not available: the oracle answers structured queries (``answer_query``), not prompts."""
        raise LLMError("the oracle backend answers PreferenceQuery objects through answer_query(), not text "
                       "prompts; use it via PreferenceExtractor")
