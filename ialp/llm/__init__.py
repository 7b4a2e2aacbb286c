"""LLM layer: swappable backends (embedded llama.cpp, OpenAI-compatible servers, vLLM), cache and retries.

>>> from ialp.llm import LLMConfig, make_backend
>>> backend = make_backend(LLMConfig(backend="llamacpp"))  # doctest: +SKIP
>>> backend.complete(["Question: What is the capital of France?\\nAnswer:"], stop=["\\n"])  # doctest: +SKIP
"""

from __future__ import annotations

from ialp.llm.base import (
    APIS,
    BACKENDS,
    CachedBackend,
    Completion,
    LLMBackend,
    LLMConfig,
    LLMError,
    LLMStats,
    ScoreResult,
)
from ialp.llm.cache import LLMCache, default_cache_path, make_key
from ialp.llm.factory import make_backend
from ialp.llm.retry import RequestError, RetryPolicy
from ialp.llm.serve import serve_command, start_server, stop_server

__all__ = [
    "APIS",
    "BACKENDS",
    "CachedBackend",
    "Completion",
    "LLMBackend",
    "LLMCache",
    "LLMConfig",
    "LLMError",
    "LLMStats",
    "RequestError",
    "RetryPolicy",
    "ScoreResult",
    "default_cache_path",
    "make_backend",
    "make_key",
    "serve_command",
    "start_server",
    "stop_server",
]
