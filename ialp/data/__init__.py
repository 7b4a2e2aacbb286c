"""Interaction logs, item catalogues and loaders for MovieLens, KuaiRec, KuaiRand and generic tables."""

from __future__ import annotations

from ialp.data.dataset import DATASET_KINDS, detect_kind, load_dataset
from ialp.data.errors import DataFormatError
from ialp.data.generic import load_table
from ialp.data.kuai import load_kuairand, load_kuairec
from ialp.data.movielens import load_movielens
from ialp.data.types import InteractionLog, ItemCatalog, LoadReport, LoggedData

__all__ = [
    "DATASET_KINDS",
    "DataFormatError",
    "InteractionLog",
    "ItemCatalog",
    "LoadReport",
    "LoggedData",
    "detect_kind",
    "load_dataset",
    "load_kuairand",
    "load_kuairec",
    "load_movielens",
    "load_table",
]
