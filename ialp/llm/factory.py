"""``make_backend``: pick an LLM backend by ``config.backend``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ialp.llm.base import LLMBackend, LLMConfig

#: backend name -> (module, class). ``oracle`` answers from the simulator's ground truth (an upper bound, no LLM).
BACKENDS: dict[str, tuple[str, str]] = {
    "llamacpp": ("ialp.llm.llamacpp_backend", "LlamaCppBackend"),
    "openai": ("ialp.llm.openai_backend", "OpenAIBackend"),
    "vllm": ("ialp.llm.vllm_backend", "VLLMBackend"),
    "oracle": ("ialp.llm.oracle", "OracleBackend"),
}


def make_backend(config: LLMConfig | Mapping[str, Any], **kwargs: Any) -> LLMBackend:
    """Build the backend named by ``config.backend``.

    Args:
        config: An :class:`LLMConfig` or a mapping of its fields (unknown fields raise ``ValueError`` naming them).
        **kwargs: Passed to the backend's constructor (e.g. the oracle's ground truth).

    Raises:
        ValueError: Unknown backend or config field.
        LLMError: The backend's optional dependencies are missing.
    """
    cfg = config if isinstance(config, LLMConfig) else LLMConfig.from_dict(config)
    if cfg.backend not in BACKENDS:
        raise ValueError(f"unknown llm backend {cfg.backend!r}; allowed: {sorted(BACKENDS)}")
    module_name, class_name = BACKENDS[cfg.backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(f"llm backend {cfg.backend!r} is not available in this version of ialp") from exc
        raise
    backend: LLMBackend = getattr(module, class_name)(cfg, **kwargs)
    return backend
