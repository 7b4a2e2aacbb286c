"""Typed configuration of the candidate generator (the ``candidates:`` section of a YAML file)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ialp.config import ConfigError, _build, _set, read_yaml_mapping

__all__ = ["DESIGNS", "MODALITIES", "MODELS", "CandidatesConfig", "load_candidates_config"]

DESIGNS = ("intra", "iisan", "crossan")
"""Side-network designs (``ialp.candidates.adapter.SideAdapterNetwork``)."""
MODELS = ("sidesan", "sasrec-id", "popularity", "finetune-text")
MODALITIES = ("text", "image", "audio", "video")


@dataclass
class CandidatesConfig:
    """How the candidate generator is built and trained.

    Attributes:
        data_dir: MovieLens folder (or any folder ``ialp.data.load_dataset`` reads).
        model: ``sidesan`` (side adapters over frozen encoders), ``sasrec-id`` (ID embeddings), ``popularity``, or
            ``finetune-text`` (the text encoder's own weights trained end to end; the efficiency comparison).
        modalities: Modalities of ``sidesan``; ``text`` is the catalogue descriptions, the others come from
            ``media`` (image: image files; audio/video: precomputed feature ``.npy`` files).
        k: Candidates proposed per step.
        refresh: In the environments: 0 re-encodes each user's history window and ranks the whole catalogue at
            every step; r >= 1 keeps an incremental user state per session (key/value cache from the session's
            start) and a pool of ``pool`` items, ranked from the whole catalogue every r steps and rescored in
            between (r = 1: the exact top-K for that state at every step).
        pool: Pool size with ``refresh`` >= 1 (0: 2k).
        text_encoder: ``all-MiniLM-L6-v2`` (the packaged model) or a transformers name/folder available locally.
        media: Per non-text modality, a folder with one file per item named ``<item id>.<ext>`` (images:
            jpg/jpeg/png/webp/bmp through the frozen EfficientNet-Lite0; audio/video: ``.npy`` features, video
            frame-averaged), or one ``.npy`` feature table (N, [L,] D) for all items. Cached by content.
        image_size: Side length images from files are resized to.
        layer_group: Group layer-dropping: keep the last layer of every group of this many layers.
        design: Side network (``ialp.candidates.adapter``): ``intra`` (one per modality), ``iisan`` (plus an
            inter-modal one) or ``crossan`` (cross-modal adapters); the last two need two or more modalities.
        gates: Learn the side networks' layer gates (``false``: fixed at their initial mix, the ablation).
        fusion: ``moe`` (mixture of modality experts) or ``concat``.
        width: Model width d.
        side_width: Side-network width (0: the encoder's width).
        side_chunk: Items per checkpointed side-network pass while training (0: all at once, activations kept).
        bottleneck: Adapter bottleneck width.
        max_len: Longest input sequence.
        n_layers: Transformer blocks of the user encoder.
        n_heads: Attention heads.
        dropout: Dropout rate.
        temperature: Softmax temperature on cosine scores.
        pop_correction: Subtract log-popularity from in-batch logits.
        negatives: Sampled softmax: per batch, this many items drawn by popularity (uniformly without
            ``pop_correction``) join the in-batch negatives (0: in-batch only).
        softmax_chunk: Score this many positions of the in-batch softmax at a time, each chunk checkpointed
            (bounds the logits' memory; 0: all at once).
        epochs: Training epochs.
        batch_size: Sequences per step.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        encoder_lr: ``finetune-text``: learning rate of the text encoder's own weights.
        text_chunk: ``finetune-text``: item texts per encoder pass (each pass is checkpointed, bounding memory).
        patience: Early stopping: stop once validation NDCG@10 has not improved for this many epochs and keep the
            best epoch's weights (0: train all ``epochs``).
        max_steps: Stop training after this many batches (0: all ``epochs``); a model stopped early is not
            evaluated (its HR/NDCG are ``None``) and its ``s_per_epoch`` is extrapolated from the batches run.
        tensor_probe: Training batches whose peak tensor memory is measured with the torch profiler (on a copy of
            the model, before training; 0: not measured).
        text_checkpoint: ``finetune-text``: checkpoint each text chunk (``false``: plain fine-tuning, all
            activations kept; the memory baseline).
        seed: Seed of initialisation and batching.
        cache_dir: Hidden-state cache folder (default ``$IALP_CACHE_DIR/hidden_states``).
        progress: Show progress bars.
    """

    data_dir: str = ""
    model: str = "sidesan"
    modalities: list[str] = field(default_factory=lambda: ["text"])
    k: int = 50
    refresh: int = 0
    pool: int = 0
    text_encoder: str = "all-MiniLM-L6-v2"
    media: dict[str, str] = field(default_factory=dict)
    image_size: int = 224
    layer_group: int = 1
    design: str = "intra"
    gates: bool = True
    fusion: str = "moe"
    width: int = 64
    side_width: int = 0
    side_chunk: int = 0
    bottleneck: int = 32
    max_len: int = 50
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    temperature: float = 0.1
    pop_correction: bool = True
    softmax_chunk: int = 0
    negatives: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    encoder_lr: float = 5e-5
    text_chunk: int = 64
    patience: int = 0
    max_steps: int = 0
    tensor_probe: int = 2
    text_checkpoint: bool = True
    seed: int = 0
    cache_dir: str = ""
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dataclasses.asdict(self)

    def validate(self) -> CandidatesConfig:
        """Raises ``ConfigError`` naming the first bad field."""
        if self.model not in MODELS:
            raise ConfigError(f"candidates.model: {self.model!r} is not one of {MODELS}")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ConfigError(f"candidates.modalities: {self.modalities!r}; allowed: non-empty subset of {MODALITIES}")
        for m in self.modalities:
            if m != "text" and m not in self.media:
                raise ConfigError(f"candidates.media: modality {m!r} needs media.{m}: a folder of per-item files "
                                  "or a .npy feature table")
        if self.design not in DESIGNS:
            raise ConfigError(f"candidates.design: {self.design!r} is not one of {DESIGNS}")
        if self.design != "intra" and self.model == "sidesan" and len(self.modalities) < 2:
            raise ConfigError(f"candidates.design: {self.design!r} combines modalities; modalities "
                              f"{self.modalities} has one (use intra, or add one)")
        if self.fusion not in ("moe", "concat"):
            raise ConfigError(f"candidates.fusion: {self.fusion!r} is not one of ('moe', 'concat')")
        for name in ("k", "image_size", "layer_group", "width", "bottleneck", "max_len", "n_layers", "n_heads",
                     "epochs", "batch_size", "text_chunk"):
            if getattr(self, name) < 1:
                raise ConfigError(f"candidates.{name}: must be >= 1, got {getattr(self, name)}")
        if self.width % self.n_heads:
            raise ConfigError(f"candidates.width: {self.width} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0 or self.temperature <= 0 or self.lr <= 0 or self.encoder_lr <= 0:
            raise ConfigError("candidates: need 0 <= dropout < 1, temperature > 0, lr > 0 and encoder_lr > 0")
        if self.pool and self.pool < self.k:
            raise ConfigError(f"candidates.pool: {self.pool} is below k={self.k} (0: 2k)")
        for name in ("max_steps", "patience", "softmax_chunk", "negatives", "tensor_probe", "refresh", "pool",
                     "side_width", "side_chunk"):
            if getattr(self, name) < 0:
                raise ConfigError(f"candidates.{name}: must be >= 0, got {getattr(self, name)}")
        return self


def load_candidates_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CandidatesConfig:
    """Read the ``candidates:`` section of a YAML file (or the defaults), apply ``candidates.KEY=VALUE`` overrides."""
    data = read_yaml_mapping(path)
    for assignment in overrides or []:
        _set(data, assignment if assignment.startswith("candidates.") else f"candidates.{assignment}")
    section = data.get("candidates", {})
    return _build(CandidatesConfig, section, "candidates").validate()
