"""Any OpenAI-compatible server (vLLM's ``vllm serve``, llama.cpp's ``llama_cpp.server``, OpenAI itself).

Requests go out concurrently (``config.concurrency`` threads) through the official ``openai`` client with its own
retries switched off: :mod:`ialp.llm.retry` decides what is retried and counts it. The API key is read from the
environment variable named by ``config.api_key_env`` and lives only inside the client object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ialp.llm.base import CachedBackend, Completion, LLMConfig, LLMError, ScoreResult
from ialp.llm.retry import MALFORMED, PERMANENT, TRANSIENT, Outcome, RequestError, RetryPolicy, call_with_retries

T = TypeVar("T")
_MAX_MESSAGE = 300


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (numeric form only), if present."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def classify_openai_error(exc: Exception) -> RequestError:
    """Map an exception from the ``openai`` client (or from reading its answer) to a retry class."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return RequestError(f"timeout: {exc}", TRANSIENT)
    if isinstance(exc, openai.APIConnectionError):
        return RequestError(f"connection error: {exc}", TRANSIENT)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = str(exc.message)[:_MAX_MESSAGE]
        if status == 429 or status >= 500:
            return RequestError(f"http {status}: {body}", TRANSIENT, _retry_after(exc.response.headers))
        return RequestError(f"http {status}: {body}", PERMANENT)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValueError | TypeError | KeyError
                  | AttributeError | IndexError):
        return RequestError(f"malformed response: {type(exc).__name__}: {str(exc)[:_MAX_MESSAGE]}", MALFORMED)
    return RequestError(f"{type(exc).__name__}: {str(exc)[:_MAX_MESSAGE]}", PERMANENT)


def _first_choice(resp: Any) -> Any:
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise RequestError(f"malformed response: no choices in {str(resp)[:120]!r}", MALFORMED)
    return choices[0]


def _usage(resp: Any) -> tuple[int, int]:
    usage = getattr(resp, "usage", None)
    if usage is None:
        return 0, 0
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def continuation_logprob(prompt: str, continuation: str, tokens: Sequence[str], token_logprobs: Sequence[float | None],
                         text_offset: Sequence[int]) -> tuple[float, int]:
    """Sum the log-probs of the echoed tokens that hold part of ``continuation``.

    A token counts when it ends after the prompt's last character and starts before the end of
    ``prompt + continuation`` (so a token straddling the boundary is counted, generated tokens are not).

    Returns:
        (sum of log-probs, number of tokens summed).
    """
    boundary, end = len(prompt), len(prompt) + len(continuation)
    n = len(tokens)
    if not (n == len(token_logprobs) == len(text_offset)):
        raise RequestError("malformed response: logprobs arrays of different lengths", MALFORMED)
    total, count = 0.0, 0
    for i in range(n):
        start = text_offset[i]
        stop = text_offset[i + 1] if i + 1 < n else start + len(tokens[i])
        if start >= end or stop <= boundary:
            continue
        lp = token_logprobs[i]
        if lp is None:
            raise RequestError("cannot score: the continuation's first token has no log-prob (empty prompt?)",
                               PERMANENT)
        total += float(lp)
        count += 1
    if count == 0:
        raise RequestError("malformed response: no echoed token covers the continuation", MALFORMED)
    return total, count


class OpenAIBackend(CachedBackend):
    """Chat (or raw completions) and scoring over an OpenAI-compatible HTTP API.

    ``config.api``: ``chat``/``auto`` use ``/chat/completions``; ``completions`` uses ``/completions`` with the raw
    prompt (for base models). ``score`` uses ``/completions`` with ``echo=True, logprobs=1``.
    """

    name = "openai"
    supports_scoring = True

    def __init__(self, config: LLMConfig) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise LLMError('the "openai" backend needs the openai client: pip install "ialp[llm]"') from exc
        super().__init__(config)
        self.policy = RetryPolicy(config.max_retries, config.backoff_s, seed=config.seed)
        self._client = openai.OpenAI(base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "EMPTY",
                                     timeout=config.timeout_s, max_retries=0)
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        url = self.config.base_url
        if url:  # drop any user:password@ from the address
            parts = urlsplit(url)
            url = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")
                                            if parts.hostname else parts.netloc))
        return f"OpenAIBackend(model={self.config.model!r}, base_url={url!r})"

    def _map(self, fn: Callable[[T], Outcome[Any]], items: list[T]) -> list[Outcome[Any]]:
        if len(items) <= 1 or self.config.concurrency == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="ialp-llm")
        return list(self._pool.map(fn, items))

    # -- completions -----------------------------------------------------------------------------------------------
    def _request_text(self, prompt: str, params: dict[str, Any]) -> tuple[str, int, int]:
        common: dict[str, Any] = {"model": self.config.model, "temperature": params["temperature"],
                                  "max_tokens": params["max_tokens"], "seed": params["seed"]}
        if params["stop"]:
            common["stop"] = params["stop"]
        if params["api"] == "completions":
            resp = self._client.completions.create(prompt=prompt, **common)
            text = getattr(_first_choice(resp), "text", None)
        else:
            resp = self._client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **common)
            text = getattr(getattr(_first_choice(resp), "message", None), "content", None)
        if not isinstance(text, str):
            raise RequestError(f"malformed response: no text in {str(resp)[:120]!r}", MALFORMED)
        return (text, *_usage(resp))

    def _complete_batch(self, prompts: list[str], params: dict[str, Any]) -> list[Completion]:
        def one(prompt: str) -> Outcome[tuple[str, int, int]]:
            out = call_with_retries(lambda: self._request_text(prompt, params), self.policy, classify_openai_error)
            n_in, n_out = out.value[1:] if out.value is not None else (0, 0)
            self._record(latency_s=out.latency_s, retries=out.retries, prompt_tokens=n_in, completion_tokens=n_out)
            return out

        results = []
        for out in self._map(one, prompts):
            if out.value is None:
                results.append(Completion(text=None, error=out.error))
            else:
                text, n_in, n_out = out.value
                results.append(Completion(text=text, prompt_tokens=n_in, completion_tokens=n_out))
        return results

    # -- scoring ---------------------------------------------------------------------------------------------------
    def _request_score(self, prompt: str, continuation: str) -> ScoreResult:
        resp = self._client.completions.create(model=self.config.model, prompt=prompt + continuation, max_tokens=1,
                                               temperature=0.0, echo=True, logprobs=1, seed=self.config.seed)
        lp = getattr(_first_choice(resp), "logprobs", None)
        if lp is None or lp.tokens is None or lp.token_logprobs is None or lp.text_offset is None:
            raise RequestError("malformed response: no logprobs (does the server support echo+logprobs?)", MALFORMED)
        total, count = continuation_logprob(prompt, continuation, lp.tokens, lp.token_logprobs, lp.text_offset)
        return ScoreResult(total, count, _usage(resp)[0])

    def _score_batch(self, pairs: list[tuple[str, str]]) -> list[ScoreResult]:
        def one(pair: tuple[str, str]) -> Outcome[ScoreResult]:
            if not pair[1]:
                return Outcome(ScoreResult(0.0, 0), None, 0, 0.0)
            out = call_with_retries(lambda: self._request_score(*pair), self.policy, classify_openai_error)
            if out.error is not None and out.error.startswith("timeout"):
                out = Outcome(None, f"{out.error}; scoring echoes the whole prompt ({len(pair[0])} characters) with "
                              f"its log-probs, whose cost grows with its length: raise llm.timeout_s "
                              f"({self.config.timeout_s:g} s) or shorten the prompt", out.retries, out.latency_s)
            n_in = out.value.prompt_tokens if out.value is not None else 0
            self._record(latency_s=out.latency_s, retries=out.retries, prompt_tokens=n_in)
            return out

        return [o.value if o.value is not None else ScoreResult(None, error=o.error) for o in self._map(one, pairs)]

    def close(self) -> None:
        """Shut the thread pool and the HTTP connections down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._client.close()
        super().close()
