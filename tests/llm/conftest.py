"""Fixtures for the LLM layer: a real llama.cpp OpenAI-compatible server on loopback, and the embedded model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ialp.llm import LLMConfig, make_backend, start_server, stop_server
from ialp.llm.llamacpp_backend import DEFAULT_MODEL, LlamaCppBackend


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` with the packaged gemma-3-270m on a free loopback port; yield base_url."""
    proc, base_url = start_server("llamacpp", DEFAULT_MODEL, host="127.0.0.1", timeout_s=120, n_ctx=512,
                                  extra=["--n_threads", "2", "--n_batch", "64"])
    try:
        yield base_url
    finally:
        stop_server(proc, timeout_s=10)


@pytest.fixture(scope="session")
def embedded_model() -> LlamaCppBackend:
    """Load the embedded model once per session; backends built later in the session share it."""
    backend = make_backend(LLMConfig(backend="llamacpp", cache=False))
    assert isinstance(backend, LlamaCppBackend)
    backend.llm  # noqa: B018 - load now
    return backend
