"""The LLM seam: one small interface over every backend (OpenAI-compatible, vLLM, llama.cpp).

Backends take *batches* of prompts and answer each one independently: a request that fails after
its retries comes back with ``error`` set (and is counted in ``stats.failures``); it never raises
for a single bad request and never turns a failure into a made-up answer.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, field_validator
from pydantic.dataclasses import dataclass as config_dataclass

from ialp.schema import STRICT

#: Values of ``LLMConfig.api``: ``chat`` applies the model's chat template (chat endpoint), ``completions`` sends the
#: prompt as raw text (what base models such as the default gemma-3-270m need), ``auto`` picks per backend.
Api = Literal["auto", "chat", "completions"]
APIS: tuple[str, ...] = get_args(Api)

#: Values of ``LLMConfig.scoring``: how score mode reads a candidate's score from its title's token log-probabilities:
#: ``sum`` (raw log-likelihood), ``mean`` (per token) or ``pmi`` (sum minus the title's sum under an empty history).
Scoring = Literal["pmi", "sum", "mean"]
SCORINGS: tuple[str, ...] = get_args(Scoring)
#: Values of ``LLMConfig.grounding``: facts a prompt shows beside each item (:class:`ialp.llm.prompts.Grounding`).
GroundingFact = Literal["genres", "description", "neighbours"]

#: backend name -> (module, class), built by :func:`ialp.llm.make_backend`. ``oracle`` answers from the simulator's
#: ground truth (an upper bound, no LLM).
BACKENDS: dict[str, tuple[str, str]] = {
    "llamacpp": ("ialp.llm.llamacpp_backend", "LlamaCppBackend"),
    "openai": ("ialp.llm.openai_backend", "OpenAIBackend"),
    "vllm": ("ialp.llm.vllm_backend", "VLLMBackend"),
    "oracle": ("ialp.llm.oracle", "OracleBackend"),
}


class LLMError(RuntimeError):
    """A backend could not be used at all (bad configuration, missing package, server unreachable)."""


@config_dataclass(frozen=True, config=STRICT)
class LLMConfig:
    """How to reach and sample an LLM; ``llm:`` in experiment configs. Secrets never live here:
    the API key is read from the environment variable named by ``api_key_env``.

    ``scoring`` is how score mode ranks titles (see :data:`Scoring`); ``choice_permutations`` is how many cyclic
    shifts of the candidates choice mode shows per query (votes aggregated: 1 is a single answer, K cancels position
    bias). ``max_failure_share``: the share of preference queries that may fail (backend errors plus unreadable answers)
    before ``ialp llm eval`` and distillation stop with an error naming the backend and the failure kinds.
    ``grounding`` (facts shown beside each item), ``ground_candidates`` and ``grounding_tokens``: see
    :class:`ialp.llm.prompts.Grounding`; the defaults render the prompts of templates version 1 unchanged.
    """

    backend: str = "llamacpp"
    model: str = "gemma-3-270m-q4_k_m"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: NonNegativeFloat = 0.0
    max_tokens: PositiveInt = 16
    seed: int = 0
    timeout_s: PositiveFloat = 60.0
    max_retries: NonNegativeInt = 3
    backoff_s: NonNegativeFloat = 0.5
    concurrency: PositiveInt = 4
    cache_dir: str | None = None
    n_ctx: PositiveInt = 2048
    n_threads: PositiveInt | None = None
    api: Api = "auto"
    cache: bool = True
    scoring: Scoring = "pmi"
    choice_permutations: PositiveInt = 1
    max_failure_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    grounding: tuple[GroundingFact, ...] = ("genres",)
    ground_candidates: bool = False
    grounding_tokens: PositiveInt = 600

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown llm backend {value!r}; allowed: {sorted(BACKENDS)}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (holds no secret: only the *name* of the key's environment variable)."""
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    """One generated answer. ``text`` is None exactly when ``error`` says why."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None


@dataclass
class LLMStats:
    """What a backend did: calls made to the model, cache hits, failures, tokens and latencies."""

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counters plus latency percentiles (p50/p90/p99, seconds)."""
        import numpy as np

        lat = np.asarray(self.latencies_s) if self.latencies_s else np.zeros(1)
        return {"calls": self.calls, "cache_hits": self.cache_hits, "failures": self.failures,
                "retries": self.retries, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "latency_p50_s": float(np.percentile(lat, 50)), "latency_p90_s": float(np.percentile(lat, 90)),
                "latency_p99_s": float(np.percentile(lat, 99))}


class LLMBackend(ABC):
    """Batched, cached, retried access to one model."""

    name: str
    config: LLMConfig
    stats: LLMStats
    supports_scoring: bool = False

    @abstractmethod
    def complete(self, prompts: Sequence[str], *, max_tokens: int | None = None, temperature: float | None = None,
                 stop: Sequence[str] | None = None, cache_tag: str = "") -> list[Completion]:
        """Generate one completion per prompt (concurrently, up to ``config.concurrency``).

        ``cache_tag`` (e.g. the prompt template's name and version) is part of the cache key.
        """

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]],
              cache_tag: str = "") -> list[list[float] | None]:
        """Sum of token log-probabilities of each continuation given its prompt; None where it failed.

        Only backends with ``supports_scoring`` implement it.
        """
        raise LLMError(f"backend {self.name!r} cannot score continuations (no logprobs); use mode 'choice'")

    def score_detailed(self, pairs: Sequence[tuple[str, str]], cache_tag: str = "") -> list[ScoreResult]:
        """Like :meth:`score` on flat (prompt, continuation) pairs, keeping token counts and error strings."""
        raise LLMError(f"backend {self.name!r} cannot score continuations (no logprobs); use mode 'choice'")

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release model memory or connections."""

    def __enter__(self) -> LLMBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        config = getattr(self, "config", None)
        model = config.model if config is not None else "?"
        return f"{type(self).__name__}(model={model!r})"


@dataclass(frozen=True)
class ScoreResult:
    """Log-probability of one continuation (sum over its tokens); ``logprob`` is None exactly when ``error`` says."""

    logprob: float | None
    n_tokens: int = 0
    prompt_tokens: int = 0
    cached: bool = False
    error: str | None = None


Q = TypeVar("Q")  # one request: a prompt, or a (prompt, continuation) pair
A = TypeVar("A", Completion, ScoreResult)  # its answer


class CachedBackend(LLMBackend):
    """Base for real backends: owns the cache lookup and the counters; subclasses fill two hooks.

    ``complete``/``score`` look every request up in the cache, send only the misses (each distinct key once) to
    ``_complete_batch``/``_score_batch``, store successes, and count hits, calls and failures. Hooks return one result
    per request, with ``error`` set on failure, and record retries/latencies through :meth:`_record`.
    """

    def __init__(self, config: LLMConfig) -> None:
        from ialp.llm.cache import LLMCache, default_cache_path

        self.config = config
        self.stats = LLMStats()
        self._stats_lock = threading.Lock()
        self.cache: LLMCache | None = LLMCache(default_cache_path(config.cache_dir)) if config.cache else None

    # -- hooks -----------------------------------------------------------------------------------------------------
    @abstractmethod
    def _complete_batch(self, prompts: list[str], params: dict[str, Any]) -> list[Completion]:
        """Answer every prompt with the sampling ``params`` (temperature, max_tokens, stop, seed, api)."""

    def _score_batch(self, pairs: list[tuple[str, str]]) -> list[ScoreResult]:
        """Log-probability of each (prompt, continuation) pair."""
        raise LLMError(f"backend {self.name!r} cannot score continuations (no logprobs); use mode 'choice'")

    def _cache_model_id(self) -> str:
        """What identifies the model in cache keys (the configured model name by default)."""
        return self.config.model

    # -- shared machinery ------------------------------------------------------------------------------------------
    def _record(self, *, latency_s: float | None = None, retries: int = 0, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> None:
        """Thread-safe update of the counters for one model request."""
        with self._stats_lock:
            if latency_s is not None:
                self.stats.latencies_s.append(latency_s)
            self.stats.retries += retries
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens

    def _key(self, kind: str, prompt: str, params: dict[str, Any], cache_tag: str, continuation: str | None = None
             ) -> str:
        from ialp.llm.cache import make_key

        return make_key({"kind": kind, "backend": self.name, "model": self._cache_model_id(), "cache_tag": cache_tag,
                         "prompt": prompt, "params": params, "continuation": continuation})

    def sampling_params(self, *, max_tokens: int | None = None, temperature: float | None = None,
                        stop: Sequence[str] | None = None) -> dict[str, Any]:
        """The effective sampling parameters of a request (config defaults filled in); part of the cache key."""
        return {"temperature": float(self.config.temperature if temperature is None else temperature),
                "max_tokens": int(self.config.max_tokens if max_tokens is None else max_tokens),
                "stop": list(stop) if stop else None, "seed": self.config.seed, "api": self.config.api}

    def _through_cache(self, keys: Sequence[str], requests: Sequence[Q], run: Callable[[list[Q]], list[A]],
                       stored: Callable[[A], dict[str, Any]], restored: Callable[[dict[str, Any]], A]) -> list[A]:
        """The one cache path of :meth:`complete` and :meth:`score_detailed`.

        Looks every key up, sends each distinct miss once to ``run``, stores the successes (``stored(answer)``),
        serves repeats within the batch from the first answer, and counts calls, failures and cache hits.
        """
        found = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, Q] = {}  # key -> request, each distinct miss once
        for key, request in zip(keys, requests, strict=True):
            if key not in found:
                todo.setdefault(key, request)
        fresh: dict[str, A] = {}
        if todo:
            answers = run(list(todo.values()))
            if len(answers) != len(todo):
                raise LLMError(f"{self.name}: backend returned {len(answers)} answers for {len(todo)} requests")
            fresh = dict(zip(todo, answers, strict=True))
            with self._stats_lock:
                self.stats.calls += len(todo)
                self.stats.failures += sum(a.error is not None for a in answers)
            if self.cache is not None:
                self.cache.put_many({k: stored(a) for k, a in fresh.items() if a.error is None})
        out: list[A] = []
        seen: set[str] = set()
        hits = 0
        for key in keys:
            if key in found:
                out.append(restored(found[key]))
                hits += 1
            elif key not in seen:  # first occurrence of a miss: the model's answer
                seen.add(key)
                out.append(fresh[key])
            else:  # the same request again in this batch: served from the first answer
                ok = fresh[key].error is None
                out.append(replace(fresh[key], cached=ok))
                hits += ok
        with self._stats_lock:
            self.stats.cache_hits += hits
        return out

    def complete(self, prompts: Sequence[str], *, max_tokens: int | None = None, temperature: float | None = None,
                 stop: Sequence[str] | None = None, cache_tag: str = "") -> list[Completion]:
        """Generate one completion per prompt; cached answers are returned without calling the model."""
        params = self.sampling_params(max_tokens=max_tokens, temperature=temperature, stop=stop)
        return self._through_cache(
            [self._key("complete", p, params, cache_tag) for p in prompts], prompts,
            lambda todo: self._complete_batch(todo, params),
            lambda a: {"text": a.text, "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens},
            lambda v: Completion(text=v["text"], prompt_tokens=v.get("prompt_tokens", 0),
                                 completion_tokens=v.get("completion_tokens", 0), cached=True))

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]],
              cache_tag: str = "") -> list[list[float] | None]:
        """Sum of token log-probabilities of each continuation given its prompt; None for a prompt where any failed."""
        if not self.supports_scoring:
            return super().score(prompts, continuations, cache_tag)
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuation lists")
        pairs = [(p, c) for p, conts in zip(prompts, continuations, strict=True) for c in conts]
        results = self.score_detailed(pairs, cache_tag)
        out: list[list[float] | None] = []
        i = 0
        for conts in continuations:
            chunk = results[i:i + len(conts)]
            i += len(conts)
            out.append(None if any(r.logprob is None for r in chunk) else [float(r.logprob) for r in chunk
                                                                            if r.logprob is not None])
        return out

    def score_detailed(self, pairs: Sequence[tuple[str, str]], cache_tag: str = "") -> list[ScoreResult]:
        """Like :meth:`score` on flat (prompt, continuation) pairs, keeping token counts and error strings."""
        params = {"seed": self.config.seed}
        return self._through_cache(
            [self._key("score", p, params, cache_tag, c) for p, c in pairs], pairs, self._score_batch,
            lambda a: {"logprob": a.logprob, "n_tokens": a.n_tokens, "prompt_tokens": a.prompt_tokens},
            lambda v: ScoreResult(v["logprob"], v.get("n_tokens", 0), v.get("prompt_tokens", 0), cached=True))

    def close(self) -> None:
        """Close the cache's connections."""
        if self.cache is not None:
            self.cache.close()
