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

__all__ = ["MODALITIES", "MODELS", "CandidatesConfig", "ConfigError", "load_candidates_config"]

Model = Literal["sidesan", "sasrec-id", "popularity", "finetune-text"]
Modality = Literal["text", "image", "audio", "video"]
MODELS: tuple[str, ...] = get_args(Model)
MODALITIES: tuple[str, ...] = get_args(Modality)


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
        text_encoder: ``all-MiniLM-L6-v2`` (the packaged model) or a transformers name/folder available locally.
        media: Per non-text modality, a feature file (N, [L,] D) for all items.
        layer_group: Group layer-dropping: keep the last layer of every group of this many layers.
        fusion: ``moe`` (mixture of modality experts) or ``concat``.
        width: Model width d.
        side_width: Side-network width (0: the encoder's width).
        bottleneck: Adapter bottleneck width.
        max_len: Longest input sequence.
        n_layers: Transformer blocks of the user encoder.
        n_heads: Attention heads.
        dropout: Dropout rate.
        temperature: Softmax temperature on cosine scores.
        pop_correction: Subtract log-popularity from in-batch logits.
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
        seed: Seed of initialisation and batching.
        cache_dir: Hidden-state cache folder (default ``$IALP_CACHE_DIR/hidden_states``).
        progress: Show progress bars.
    """

    data_dir: str = ""
    model: Model = "sidesan"
    modalities: Annotated[list[Modality], Field(min_length=1)] = field(default_factory=lambda: ["text"])
    k: PositiveInt = 50
    text_encoder: str = "all-MiniLM-L6-v2"
    media: dict[str, str] = field(default_factory=dict)
    layer_group: PositiveInt = 1
    fusion: Literal["moe", "concat"] = "moe"
    width: PositiveInt = 64
    side_width: NonNegativeInt = 0
    bottleneck: PositiveInt = 32
    max_len: PositiveInt = 50
    n_layers: PositiveInt = 2
    n_heads: PositiveInt = 2
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    temperature: PositiveFloat = 0.1
    pop_correction: bool = True
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    encoder_lr: PositiveFloat = 5e-5
    text_chunk: PositiveInt = 64
    patience: NonNegativeInt = 0
    max_steps: NonNegativeInt = 0
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
                raise ValueError(f"modality {m!r} needs a feature file path in candidates.media.{m}")
        if self.width % self.n_heads:
            raise ValueError(f"width {self.width} is not divisible by n_heads={self.n_heads}")
        return self


def load_candidates_config(path: str | os.PathLike[str] | None = None,
                           overrides: Iterable[str] = ()) -> CandidatesConfig:
    """The ``candidates:`` section of a YAML file (or the defaults) with ``candidates.KEY=VALUE`` overrides."""
    return load(CandidatesConfig, path, overrides, section="candidates")
