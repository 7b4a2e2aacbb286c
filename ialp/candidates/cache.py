"""Hidden-state cache: the catalogue is encoded once; the tapped layers are stored as float16 ``.npy`` files."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ialp.candidates.encoders import Encoder
from ialp.storage import cache_root

__all__ = ["HiddenStateCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$IALP_CACHE_DIR/hidden_states`` (default ``~/.cache/ialp/hidden_states``)."""
    return cache_root() / "hidden_states"


class HiddenStateCache:
    """Per-layer pooled states on disk, keyed by (encoder fingerprint, inputs hash, layer).

    Each tapped layer is one float16 ``(N, D_l)`` file, opened memory-mapped, so that training reads
    rows on demand and never runs a backbone. Layers not tapped are never computed nor stored.

    Args:
        root: Cache folder (default ``default_cache_dir()``).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def key(self, encoder: Encoder, inputs: Sequence[Any]) -> str:
        """The folder name for ``encoder`` applied to ``inputs``."""
        return hashlib.sha256(f"{encoder.fingerprint}|{encoder.input_key(inputs)}".encode()).hexdigest()[:24]

    def _file(self, key: str, layer: int) -> Path:
        return self.root / key / f"layer{layer:03d}.npy"

    def get(self, encoder: Encoder, inputs: Sequence[Any], layers: Sequence[int]) -> list[np.ndarray]:
        """States at ``layers``, float16 memory-mapped (N, D_l); missing layers are encoded and stored first."""
        key = self.key(encoder, inputs)
        missing = [layer for layer in layers if not self._file(key, layer).exists()]
        if missing:
            folder = self.root / key
            folder.mkdir(parents=True, exist_ok=True)
            for layer, states in zip(missing, encoder.encode(inputs, missing), strict=True):
                tmp = folder / f".layer{layer:03d}.{os.getpid()}.npy"
                np.save(tmp, states.astype(np.float16))
                os.replace(tmp, self._file(key, layer))
            meta = {"modality": encoder.modality, "fingerprint": encoder.fingerprint, "n": len(inputs),
                    "widths": list(encoder.layer_widths)}
            (folder / "meta.json").write_text(json.dumps(meta))
        return [np.load(self._file(key, layer), mmap_mode="r") for layer in layers]
