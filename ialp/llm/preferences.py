"""Asking an LLM which candidate a user prefers, in batches, counting every failure.

Two modes:

- ``choice``: the model reads the rendered state and candidates and answers with a letter; answers are
  parsed by :func:`ialp.llm.parse.parse_choice`. An unreadable answer is asked again ONCE with a stricter
  follow-up prompt (its own template and cache tag, so the retry is not the cached failure) and then
  counted as a parse failure, never defaulted.
- ``score``: the model scores each candidate's title as a continuation of the prompt. ``scoring`` (see
  :data:`~ialp.llm.base.Scoring`) reads the token log-probabilities as their sum, their per-token mean, or
  (``pmi``) their sum minus the same title's sum under an empty history (its prior), so that short or common
  titles do not win by being likely text. All three come from one scoring call
  (:meth:`PreferenceExtractor.title_scores`).
  A softmax over the candidates gives the preference distribution, its argmax the choice.

Choice mode with ``permutations`` P > 1 asks each query P times, the candidates cyclically shifted, and
counts the votes per candidate (with P = K every candidate is shown once in every position).

An :class:`~ialp.llm.oracle.OracleBackend` (upper bound) is detected and answers the structured query.

Failures are counted by kind (:func:`failure_kind`); once more than ``max_failure_share`` of the queries asked so far
have failed, :meth:`PreferenceExtractor.prefer` raises an :class:`~ialp.llm.base.LLMError` naming the backend (model,
URL) and the kinds with their counts, so that an unreachable server never passes as an empty result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np

from ialp.data import ItemCatalog
from ialp.llm.base import SCORINGS, Completion, LLMBackend, LLMConfig, LLMError, Scoring
from ialp.llm.parse import parse_choice
from ialp.llm.prompts import Grounding, PreferenceQuery, load_template, render_history, render_query, text_neighbours

__all__ = ["MODES", "Mode", "Preference", "PreferenceExtractor", "TitleScores", "failure_kind"]

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


@dataclass(frozen=True)
class TitleScores:
    """Token log-probabilities of one query's candidate titles (one entry per candidate).

    Attributes:
        logprob: Sum over each title's tokens, given the query's prompt.
        n_tokens: Tokens per title.
        prior: The same sums under an empty history (None when not asked for).
        error: Why scoring failed (then the arrays are empty); None on success.
    """

    logprob: np.ndarray
    n_tokens: np.ndarray
    prior: np.ndarray | None = None
    error: str | None = None

    @property
    def reason(self) -> str | None:
        """The failure as a :attr:`Preference.reason` (``"backend: ..."``), or None."""
        return None if self.error is None else f"backend: {self.error}"

    def value(self, scoring: Scoring) -> np.ndarray:
        """Each candidate's score under ``scoring``.

        >>> ts = TitleScores(np.array([-6.0, -4.0]), np.array([3, 1]), np.array([-5.0, -1.0]))
        >>> [ts.value(s).tolist() for s in ("sum", "mean", "pmi")]
        [[-6.0, -4.0], [-2.0, -4.0], [-1.0, -3.0]]
        """
        if scoring == "sum":
            return self.logprob
        if scoring == "mean":
            return self.logprob / np.maximum(self.n_tokens, 1)
        if scoring == "pmi":
            if self.prior is None:
                raise ValueError("pmi scoring needs the titles' prior (title_scores(..., prior=True))")
            return self.logprob - self.prior
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")


_RETRIES = re.compile(r"\s*\(after \d+ retr(?:y|ies)\)$")


def failure_kind(reason: str) -> str:
    """What kind of failure a :attr:`Preference.reason` is: its source and first clause, without details.

    >>> failure_kind("backend: connection error: Connection error. (after 3 retries)")
    'backend: connection error'
    >>> failure_kind("backend: http 503 (after 1 retry)")
    'backend: http 503'
    >>> failure_kind("unparseable: 'x' then 'y'")
    'unparseable'
    """
    source, _, rest = _RETRIES.sub("", reason).partition(": ")
    if source != "backend" or not rest:
        return source
    return f"{source}: {rest.split(': ')[0]}"


def grounding_from_config(config: LLMConfig, catalog: ItemCatalog) -> Grounding:
    """The :class:`Grounding` an ``LLMConfig`` asks for (the neighbour table retrieved once, then cached)."""
    neighbours = text_neighbours(catalog) if "neighbours" in config.grounding else None
    return Grounding(tuple(config.grounding), config.ground_candidates, config.grounding_tokens, neighbours)


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
        scoring: Score mode: ``sum``, ``mean`` or ``pmi`` (default: the backend config's ``scoring``).
        permutations: Choice mode: cyclic shifts shown per query (default: the config's ``choice_permutations``).
        template_version: Version of the ``choice``/``choice-retry``/``score`` templates (default newest).
        stop: Choice mode: where an answer ends (default: its first newline, as the templates expect).
        max_failure_share: Share of failed queries beyond which :meth:`prefer` raises (default: the backend
            config's ``max_failure_share``).
        grounding: Facts rendered beside each item (default: the backend config's ``grounding*`` fields).
    """

    def __init__(self, backend: LLMBackend, catalog: ItemCatalog, mode: Mode = "choice", *,
                 max_tokens: int | None = None, scoring: Scoring | None = None, permutations: int | None = None,
                 template_version: int | None = None, stop: Sequence[str] | None = ("\n",),
                 max_failure_share: float | None = None, grounding: Grounding | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.backend, self.catalog, self.mode = backend, catalog, mode
        self.max_tokens, self.stop = max_tokens, stop
        self.scoring: Scoring = backend.config.scoring if scoring is None else scoring
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")
        self.permutations = backend.config.choice_permutations if permutations is None else permutations
        if self.permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {self.permutations}")
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
        self.failure_kinds: Counter[str] = Counter()
        share = backend.config.max_failure_share if max_failure_share is None else max_failure_share
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"max_failure_share must be in [0, 1], got {share}")
        self.max_failure_share = share
        self.grounding = grounding or grounding_from_config(backend.config, catalog)

    # ----------------------------------------------------------------------------------- prompts
    def choice_prompt(self, query: PreferenceQuery) -> str:
        """The choice-mode prompt of a query."""
        return render_query(self.choice_template, query, self.catalog, self.grounding)

    def retry_prompt(self, query: PreferenceQuery, previous: str) -> str:
        """The stricter follow-up sent once after an unreadable answer."""
        shown = " ".join(previous.split())[:60] or "(empty)"
        return render_query(self.retry_template, query, self.catalog, self.grounding, previous=repr(shown))

    def score_prompt(self, query: PreferenceQuery) -> str:
        """The score-mode prompt of a query (its continuations: :meth:`Grounding.continuation`)."""
        return self.score_template.render(history=render_history(query, self.catalog, self.grounding))

    def _continuation(self, item: int) -> str:
        return self.grounding.continuation(self.catalog, item)

    # ----------------------------------------------------------------------------------- answers
    def prefer(self, queries: Sequence[PreferenceQuery]) -> list[Preference]:
        """One preference per query, in order; failures come back with ``choice=None`` and a reason."""
        queries = list(queries)
        if not queries:
            return []
        if self.is_oracle:
            out = [self._oracle(q) for q in queries]
        else:
            out = self._choose(queries) if self.mode == "choice" else self._score(queries)
        self.tally([p.reason for p in out])
        return out

    def tally(self, reasons: Sequence[str | None]) -> None:
        """Count answered queries, one failure reason each (None: success); raise beyond ``max_failure_share``.

        :meth:`prefer` calls it; a caller reading :meth:`title_scores` directly reports its errors here.

        Raises:
            LLMError: More than ``max_failure_share`` of the queries so far failed (see :meth:`failure_report`).
        """
        self.queries += len(reasons)
        self.backend_failures += sum(1 for r in reasons if r and r.startswith("backend"))
        self.parse_failures += sum(1 for r in reasons if r and r.startswith("unparseable"))
        self.failure_kinds.update(failure_kind(r) for r in reasons if r)
        if self.backend_failures + self.parse_failures > self.max_failure_share * self.queries:
            raise LLMError(self.failure_report())

    def failure_report(self) -> str:
        """One line: the backend, how many queries failed, and the failure kinds with their counts."""
        failed = self.backend_failures + self.parse_failures
        kinds = ", ".join(f"{n} x {kind}" for kind, n in self.failure_kinds.most_common())
        return (f"{self.backend!r}: {failed} of {self.queries} preference queries failed, more than "
                f"llm.max_failure_share={self.max_failure_share:g} allows ({kinds or 'no reason recorded'})")

    def _oracle(self, query: PreferenceQuery) -> Preference:
        truth = self.backend.answer_query(query)  # type: ignore[attr-defined]
        choice = int(np.argmax(truth))
        scores = _softmax(np.asarray(truth, dtype=np.float64)) if self.mode == "score" else np.eye(query.k)[choice]
        return Preference(query, choice, tuple(float(s) for s in scores), None, attempts=0)

    def _parse(self, query: PreferenceQuery, done: Completion) -> int | None:
        titles = [self.catalog.titles[i] for i in query.candidates]
        return parse_choice(done.text, titles)

    def _choose(self, queries: list[PreferenceQuery]) -> list[Preference]:
        """Choice mode: one answer per query, or votes over ``permutations`` cyclic shifts of the candidates."""
        if self.permutations == 1:
            return self._choose_once(queries)
        shifts: list[list[int]] = []
        shown: list[PreferenceQuery] = []
        for q in queries:
            shifts.append(sorted({(j * q.k) // self.permutations for j in range(self.permutations)}))
            shown += [replace(q, candidates=q.candidates[s:] + q.candidates[:s]) for s in shifts[-1]]
        answers = iter(self._choose_once(shown))
        out = []
        for q, qs in zip(queries, shifts, strict=True):
            votes = np.zeros(q.k)
            got = [(s, next(answers)) for s in qs]
            for s, p in got:
                if p.choice is not None:
                    votes[(p.choice + s) % q.k] += 1
            attempts = sum(p.attempts for _, p in got)
            if not votes.any():
                out.append(Preference(q, None, attempts=attempts, reason=got[0][1].reason))
                continue
            best = np.flatnonzero(votes == votes.max())
            first = got[0][1].choice  # a tie goes to the unshifted answer when it is among the best, else the first
            choice = first if first is not None and first in best else int(best[0])
            out.append(Preference(q, int(choice), tuple(float(v) for v in votes / votes.sum()),
                                  " | ".join(str(p.answer) for _, p in got), attempts))
        return out

    def _choose_once(self, queries: list[PreferenceQuery]) -> list[Preference]:
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

    def title_scores(self, queries: Sequence[PreferenceQuery], prior: bool | None = None) -> list[TitleScores]:
        """Log-probabilities of every candidate's title, in one backend call (with their priors if ``prior``).

        ``prior`` defaults to whether this extractor's ``scoring`` needs it (``pmi``). The priors are the titles'
        scores under the same template with an empty history; a query fails when any of its titles (or priors) did.
        """
        queries = list(queries)
        need_prior = self.scoring == "pmi" if prior is None else prior
        pairs = [(self.score_prompt(q), self._continuation(i)) for q in queries for i in q.candidates]
        n_own = len(pairs)
        items: list[int] = []
        if need_prior and queries:
            items = sorted({i for q in queries for i in q.candidates})
            empty = self.score_prompt(PreferenceQuery((), (), (0,), queries[0].feedback_range))
            pairs += [(empty, self._continuation(i)) for i in items]
        results = self.backend.score_detailed(pairs, cache_tag=self.score_template.cache_tag)
        priors = dict(zip(items, results[n_own:], strict=True))
        out: list[TitleScores] = []
        at = 0
        for q in queries:
            own = results[at:at + q.k]
            at += q.k
            mine = own + [priors[i] for i in q.candidates] if need_prior else own
            bad = next((r for r in mine if r.logprob is None or not np.isfinite(r.logprob)), None)
            if bad is not None:
                out.append(TitleScores(np.zeros(0), np.zeros(0, dtype=np.int64),
                                       error=bad.error or f"non-finite log-probability {bad.logprob}"))
                continue
            out.append(TitleScores(np.array([r.logprob for r in own], dtype=np.float64),
                                   np.array([r.n_tokens for r in own], dtype=np.int64),
                                   np.array([priors[i].logprob for i in q.candidates], dtype=np.float64)
                                   if need_prior else None))
        return out

    def _score(self, queries: list[PreferenceQuery]) -> list[Preference]:
        out = []
        for q, ts in zip(queries, self.title_scores(queries), strict=True):
            if ts.error is not None:
                out.append(Preference(q, None, reason=ts.reason))
                continue
            x = ts.value(self.scoring)
            out.append(Preference(q, int(np.argmax(x)), tuple(float(p) for p in _softmax(x))))
        return out

    # ----------------------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        """Backend counters plus this extractor's: ``failures`` = backend failures + parse failures."""
        s = self.backend.stats
        return {"calls": s.calls, "cache_hits": s.cache_hits, "failures": s.failures + self.parse_failures,
                "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
                "queries": self.queries, "parse_failures": self.parse_failures,
                "backend_failures": self.backend_failures, "retried": self.retried}
