"""Multimodal sequential recommender used by the environments as a candidate generator.

Frozen layer-wise encoders (``encoders``) are run once over the catalogue into a float16 hidden-state cache
(``cache``); a side-adapter network (``adapter``) turns the tapped layers into item vectors, a SASRec-style
user encoder (``sequential``) scores them, and ``CandidateGenerator`` proposes the top-K items to an
environment (``gym.make(..., candidates=generator)``).
"""

from importlib import import_module
from typing import Any

# Imported lazily, so that ``ialp.candidates.cli`` (and ``ialp --help``) does not load torch.
_EXPORTS = {
    "BottleneckAdapter": "adapter", "ModalityExperts": "adapter", "ModalitySideNetwork": "adapter",
    "SideAdapterNetwork": "adapter", "HiddenStateCache": "cache", "CandidatesConfig": "config",
    "load_candidates_config": "config", "Encoder": "encoders", "FeatureFileEncoder": "encoders",
    "ImageEncoder": "encoders", "TextEncoder": "encoders", "select_taps": "encoders",
    "CandidateGenerator": "generator", "TopOnePolicy": "generator", "fit_recommender": "generator",
    "SASRec": "sequential", "SequentialRecommender": "sequential", "leave_one_out": "sequential",
    "rank_metrics": "sequential",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"ialp.candidates.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
