"""Asking an LLM which candidate a user prefers, in batches, counting every failure.

Two modes:

- ``choice``: the model reads the rendered state and candidates and answers with a letter; answers are
  parsed by :func:`ialp.llm.parse.parse_choice`. An unreadable answer is asked again ONCE with a stricter
  follow-up prompt (its own template and cache tag, so the retry is not the cached failure) and then
  counted as a parse failure, never defaulted.
- ``score``: the model scores each candidate's title as a continuation of the prompt (sum of token
  log-probabilities); with ``calibrate`` the same score under an empty history (the title's prior) is
  subtracted, so that short or common titles do not win by being likely text. A softmax over the
  candidates gives the preference distribution, its argmax the choice.

An :class:`~ialp.llm.oracle.OracleBackend` (upper bound) is detected and answers the structured query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from ialp.data import ItemCatalog
from ialp.llm.base import Completion, LLMBackend, LLMError
from ialp.llm.parse import parse_choice
from ialp.llm.prompts import PreferenceQuery, load_template, render_history, render_query

__all__ = ["MODES", "Mode", "Preference", "PreferenceExtractor"]

#: How a preference is read from the LLM: ``choice`` (it names a letter) or ``score`` (log-probabilities).
Mode = Literal["choice", "score"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True)
class Preference:
    """The answer to one query.

    Attributes:
        query: The question.
        choice: Position (0-based, label order) of the preferred candidate; None on failure.
        scores: Preference probabilities over the candidates (score mode, oracle), else None.
        answer: The model's raw text (choice mode; the retry's when there was one).
        attempts: Prompts sent for this query (1, or 2 after a retry; 0 for the oracle).
        reason: Why ``choice`` is None (``"backend: ..."`` or ``"unparseable: ..."``); None on success.
    """

    query: PreferenceQuery
    choice: int | None
    scores: tuple[float, ...] | None = None
    answer: str | None = None
    attempts: int = 1
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """Whether a preference was obtained."""
        return self.choice is not None

    @property
    def item(self) -> int | None:
        """Dense item index of the preferred candidate, or None on failure."""
        return None if self.choice is None else self.query.candidates[self.choice]

    @property
    def ranking(self) -> tuple[int, ...] | None:
        """Candidate positions best first (from ``scores``), or None without scores."""
        if self.scores is None:
            return None
        return tuple(int(i) for i in np.argsort(-np.asarray(self.scores), kind="stable"))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


class PreferenceExtractor:
    """Turns :class:`PreferenceQuery` batches into :class:`Preference` answers through a backend.

    Args:
        backend: Any ``LLMBackend`` (or an ``OracleBackend``, answered from ground truth).
        catalog: Items the queries index into (titles and tags are rendered).
        mode: ``"choice"`` or ``"score"`` (needs ``backend.supports_scoring``).
        max_tokens: Answer length in choice mode (default: the backend's config).
        calibrate: Score mode: subtract each title's score under an empty history.
        template_version: Version of the ``choice``/``choice-retry``/``score`` templates (default newest).
        stop: Choice mode: where an answer ends (default: its first newline, as the templates expect).
    """

    def __init__(self, backend: LLMBackend, catalog: ItemCatalog, mode: Mode = "choice", *,
                 max_tokens: int | None = None, calibrate: bool = True, template_version: int | None = None,
                 stop: Sequence[str] | None = ("\n",)) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.backend, self.catalog, self.mode = backend, catalog, mode
        self.max_tokens, self.calibrate, self.stop = max_tokens, calibrate, stop
        self.is_oracle = callable(getattr(backend, "answer_query", None))
        if mode == "score" and not self.is_oracle and not backend.supports_scoring:
            raise LLMError(f"backend {backend.name!r} cannot score continuations; use mode 'choice'")
        self.choice_template = load_template("choice", template_version)
        self.retry_template = load_template("choice-retry", template_version)
        self.score_template = load_template("score", template_version)
        self.queries = 0
        self.parse_failures = 0
        self.backend_failures = 0
        self.retried = 0

    # ----------------------------------------------------------------------------------- prompts
    def choice_prompt(self, query: PreferenceQuery) -> str:
        """The choice-mode prompt of a query."""
        return render_query(self.choice_template, query, self.catalog)

    def retry_prompt(self, query: PreferenceQuery, previous: str) -> str:
        """The stricter follow-up sent once after an unreadable answer."""
        shown = " ".join(previous.split())[:60] or "(empty)"
        return render_query(self.retry_template, query, self.catalog, previous=repr(shown))

    def score_prompt(self, query: PreferenceQuery) -> str:
        """The score-mode prompt of a query (its continuations are ``" " + title``)."""
        return self.score_template.render(history=render_history(query, self.catalog))

    def _continuation(self, item: int) -> str:
        return " " + self.catalog.titles[item]

    # ----------------------------------------------------------------------------------- answers
    def prefer(self, queries: Sequence[PreferenceQuery]) -> list[Preference]:
        """One preference per query, in order; failures come back with ``choice=None`` and a reason."""
        queries = list(queries)
        self.queries += len(queries)
        if not queries:
            return []
        if self.is_oracle:
            return [self._oracle(q) for q in queries]
        out = self._choose(queries) if self.mode == "choice" else self._score(queries)
        self.backend_failures += sum(1 for p in out if p.reason and p.reason.startswith("backend"))
        self.parse_failures += sum(1 for p in out if p.reason and p.reason.startswith("unparseable"))
        return out

    def _oracle(self, query: PreferenceQuery) -> Preference:
        truth = self.backend.answer_query(query)  # type: ignore[attr-defined]
        choice = int(np.argmax(truth))
        scores = _softmax(np.asarray(truth, dtype=np.float64)) if self.mode == "score" else np.eye(query.k)[choice]
        return Preference(query, choice, tuple(float(s) for s in scores), None, attempts=0)

    def _parse(self, query: PreferenceQuery, done: Completion) -> int | None:
        titles = [self.catalog.titles[i] for i in query.candidates]
        return parse_choice(done.text, titles)

    def _choose(self, queries: list[PreferenceQuery]) -> list[Preference]:
        first = self.backend.complete([self.choice_prompt(q) for q in queries], max_tokens=self.max_tokens,
                                      stop=self.stop,
                                      cache_tag=self.choice_template.cache_tag)
        out: list[Preference | None] = [None] * len(queries)
        again: list[int] = []
        for j, (q, done) in enumerate(zip(queries, first, strict=True)):
            if done.error is not None or done.text is None:
                out[j] = Preference(q, None, answer=None, reason=f"backend: {done.error}")
                continue
            choice = self._parse(q, done)
            if choice is None:
                again.append(j)
            else:
                out[j] = Preference(q, choice, answer=done.text)
        if again:
            self.retried += len(again)
            prompts = [self.retry_prompt(queries[j], first[j].text or "") for j in again]
            second = self.backend.complete(prompts, max_tokens=self.max_tokens, stop=self.stop,
                                           cache_tag=self.retry_template.cache_tag)
            for j, done in zip(again, second, strict=True):
                q = queries[j]
                if done.error is not None or done.text is None:
                    out[j] = Preference(q, None, answer=first[j].text, attempts=2, reason=f"backend: {done.error}")
                    continue
                choice = self._parse(q, done)
                reason = None if choice is not None else (
                    f"unparseable: {first[j].text!r} then {done.text!r}")
                out[j] = Preference(q, choice, answer=done.text, attempts=2, reason=reason)
        return [p for p in out if p is not None]

    def _score(self, queries: list[PreferenceQuery]) -> list[Preference]:
        conts = [[self._continuation(i) for i in q.candidates] for q in queries]
        tag = self.score_template.cache_tag
        raw = self.backend.score([self.score_prompt(q) for q in queries], conts, cache_tag=tag)
        prior: dict[int, float] | None = None
        if self.calibrate:
            items = sorted({i for q in queries for i in q.candidates})
            empty = PreferenceQuery((), (), (0,), queries[0].feedback_range)
            base = self.backend.score([self.score_prompt(empty)], [[self._continuation(i) for i in items]],
                                      cache_tag=tag)[0]
            if base is None:
                return [Preference(q, None, reason="backend: calibration scoring failed") for q in queries]
            prior = dict(zip(items, base, strict=True))
        out = []
        for q, logp in zip(queries, raw, strict=True):
            if logp is None or len(logp) != q.k or not np.all(np.isfinite(logp)):
                out.append(Preference(q, None, reason="backend: scoring failed"))
                continue
            x = np.asarray(logp, dtype=np.float64)
            if prior is not None:
                x = x - np.array([prior[i] for i in q.candidates])
            probs = _softmax(x)
            out.append(Preference(q, int(np.argmax(x)), tuple(float(p) for p in probs)))
        return out

    # ----------------------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """Backend counters plus this extractor's: ``failures`` = backend failures + parse failures."""
        s = self.backend.stats
        return {"calls": s.calls, "cache_hits": s.cache_hits, "failures": s.failures + self.parse_failures,
                "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                "queries": self.queries, "parse_failures": self.parse_failures,
                "backend_failures": self.backend_failures, "retried": self.retried}
