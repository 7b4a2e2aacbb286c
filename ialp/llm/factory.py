"""``make_backend``: pick an LLM backend by ``config.backend``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ialp.llm.base import BACKENDS, LLMBackend, LLMConfig
from ialp.schema import parse


def make_backend(config: LLMConfig | Mapping[str, Any], **kwargs: Any) -> LLMBackend:
    """Build the backend named by ``config.backend``.

    Args:
        config: An :class:`LLMConfig` or a mapping of its fields (validated like the ``llm:`` section of a file).
        **kwargs: Passed to the backend's constructor (e.g. the oracle's ground truth).

    Raises:
        ConfigError: Unknown backend or config field, or a value out of range (a ``ValueError``).
        LLMError: The backend's optional dependencies are missing.
    """
    cfg = config if isinstance(config, LLMConfig) else parse(LLMConfig, config, "llm")
    module_name, class_name = BACKENDS[cfg.backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ValueError(f"llm backend {cfg.backend!r} is not available in this version of ialp") from exc
        raise
    backend: LLMBackend = getattr(module, class_name)(cfg, **kwargs)
    return backend
