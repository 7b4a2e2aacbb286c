"""Retries with exponential backoff for single LLM requests.

Transient faults (timeouts, connection errors, HTTP 429 and 5xx) are retried up to ``max_retries`` times with
``backoff_s * 2**attempt`` seconds between attempts (or the server's ``Retry-After``), plus a small jitter drawn from a
seeded RNG. A malformed answer (garbage, truncated JSON) is retried once; anything else (HTTP 4xx) fails at once.
A request that still fails comes back as an error string; nothing is made up and nothing is raised.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

TRANSIENT = "transient"
MALFORMED = "malformed"
PERMANENT = "permanent"


class RequestError(Exception):
    """A failed request, classified.

    Args:
        message: What went wrong, e.g. ``"http 503: Service Unavailable"`` (never contains credentials).
        kind: ``transient`` (retried), ``malformed`` (retried once) or ``permanent`` (not retried).
        retry_after: Seconds the server asked us to wait, if it said.
    """

    def __init__(self, message: str, kind: str = PERMANENT, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class RetryPolicy:
    """Backoff schedule with seeded jitter; thread-safe.

    Args:
        max_retries: Retries after the first attempt.
        backoff_s: Delay before the first retry; doubles each time.
        seed: Seed of the jitter RNG.
        jitter: Jitter as a fraction of the delay (uniform in ``[0, jitter * delay]``).
        max_delay_s: Cap on any single wait, including a server's ``Retry-After``.
    """

    def __init__(self, max_retries: int = 3, backoff_s: float = 0.5, seed: int = 0, jitter: float = 0.1,
                 max_delay_s: float = 60.0) -> None:
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.jitter = jitter
        self.max_delay_s = max_delay_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        base = retry_after if retry_after is not None and retry_after >= 0 else self.backoff_s * 2**attempt
        with self._lock:
            extra = self._rng.uniform(0.0, self.jitter * max(base, self.backoff_s))
        return min(base + extra, self.max_delay_s)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """Result of one request after retries: ``value`` or ``error``, plus how many retries and seconds it took."""

    value: T | None
    error: str | None
    retries: int
    latency_s: float


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, classify: Callable[[Exception], RequestError],
                      sleep: Callable[[float], None] = time.sleep) -> Outcome[T]:
    """Call ``fn`` until it succeeds or the policy gives up.

    Args:
        fn: One attempt; raises on failure.
        policy: The backoff schedule.
        classify: Maps an exception raised by ``fn`` to a :class:`RequestError` (``RequestError`` passes through).
        sleep: Waiting function (injectable for tests).

    Returns:
        The value, or the last error as ``"<message> (after N retries)"``.
    """
    start = time.perf_counter()
    retries = 0
    malformed_seen = False
    while True:
        try:
            value = fn()
        except Exception as exc:
            err = exc if isinstance(exc, RequestError) else classify(exc)
            give_up = (err.kind == PERMANENT or retries >= policy.max_retries
                       or (err.kind == MALFORMED and malformed_seen))
            if give_up:
                suffix = f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
                return Outcome(None, f"{err}{suffix}", retries, time.perf_counter() - start)
            malformed_seen = malformed_seen or err.kind == MALFORMED
            sleep(policy.delay(retries, err.retry_after))
            retries += 1
        else:
            return Outcome(value, None, retries, time.perf_counter() - start)
