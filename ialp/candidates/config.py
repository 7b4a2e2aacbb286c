"""Typed configuration of the candidate generator (the ``candidates:`` section of a YAML file)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import field
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from pydantic.dataclasses import dataclass

from ialp.schema import STRICT, ConfigError, load

__all__ = ["DESIGNS", "MODALITIES", "MODELS", "CandidatesConfig", "ConfigError", "load_candidates_config"]

Model = Literal["sidesan", "sasrec-id", "popularity", "finetune-text"]
Modality = Literal["text", "image", "audio", "video"]
Design = Literal["intra", "iisan", "crossan"]
MODELS: tuple[str, ...] = get_args(Model)
MODALITIES: tuple[str, ...] = get_args(Modality)
DESIGNS: tuple[str, ...] = get_args(Design)
"""Side-network designs (``ialp.candidates.adapter.SideAdapterNetwork``)."""


@dataclass(config=STRICT)
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
        pool: Pool size with ``refresh`` >= 1 (0: 2k; else at least k).
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
        softmax_chunk: Score this many positions of the in-batch softmax at a time, each chunk checkpointed
            (bounds the logits' memory; 0: all at once).
        negatives: Sampled softmax: per batch, this many items drawn by popularity (uniformly without
            ``pop_correction``) join the in-batch negatives (0: in-batch only).
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
    model: Model = "sidesan"
    modalities: Annotated[list[Modality], Field(min_length=1)] = field(default_factory=lambda: ["text"])
    k: PositiveInt = 50
    refresh: NonNegativeInt = 0
    pool: NonNegativeInt = 0
    text_encoder: str = "all-MiniLM-L6-v2"
    media: dict[str, str] = field(default_factory=dict)
    image_size: PositiveInt = 224
    layer_group: PositiveInt = 1
    design: Design = "intra"
    gates: bool = True
    fusion: Literal["moe", "concat"] = "moe"
    width: PositiveInt = 64
    side_width: NonNegativeInt = 0
    side_chunk: NonNegativeInt = 0
    bottleneck: PositiveInt = 32
    max_len: PositiveInt = 50
    n_layers: PositiveInt = 2
    n_heads: PositiveInt = 2
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    temperature: PositiveFloat = 0.1
    pop_correction: bool = True
    softmax_chunk: NonNegativeInt = 0
    negatives: NonNegativeInt = 0
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    encoder_lr: PositiveFloat = 5e-5
    text_chunk: PositiveInt = 64
    patience: NonNegativeInt = 0
    max_steps: NonNegativeInt = 0
    tensor_probe: NonNegativeInt = 2
    text_checkpoint: bool = True
    seed: int = 0
    cache_dir: str = ""
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dataclasses.asdict(self)

    @model_validator(mode="after")
    def _consistent(self) -> CandidatesConfig:
        for m in self.modalities:
            if m != "text" and m not in self.media:
                raise ValueError(f"modality {m!r} needs candidates.media.{m}: a folder of per-item files or a .npy "
                                 "feature table")
        if self.design != "intra" and self.model == "sidesan" and len(self.modalities) < 2:
            raise ValueError(f"design {self.design!r} combines modalities; modalities {self.modalities} has one "
                             "(use intra, or add one)")
        if self.pool and self.pool < self.k:
            raise ValueError(f"pool {self.pool} is below k={self.k} (0: 2k)")
        if self.width % self.n_heads:
            raise ValueError(f"width {self.width} is not divisible by n_heads={self.n_heads}")
        return self


def load_candidates_config(path: str | os.PathLike[str] | None = None,
                           overrides: Iterable[str] = ()) -> CandidatesConfig:
    """The ``candidates:`` section of a YAML file (or the defaults) with ``candidates.KEY=VALUE`` overrides."""
    return load(CandidatesConfig, path, overrides, section="candidates")
