"""Generic loader for any CSV or Parquet interaction table with a column mapping."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from ialp.data import _io
from ialp.data.errors import missing_path_error
from ialp.data.types import ItemCatalog, LoadReport, LoggedData

__all__ = ["load_table"]

_PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}


def _read(path: Path, sep: str, text_columns: tuple[str, ...] = ()) -> _io.Table:
    if not path.exists():
        raise missing_path_error(path, "table")
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return _io.read_parquet(path)
    if path.suffix.lower() == ".tsv" and sep == ",":
        sep = "\t"
    return _io.read_csv(path, sep=sep, text_columns=text_columns)


def _timestamps(table: _io.Table, column: str) -> np.ndarray:
    """int64 seconds from a numeric (seconds) or date-time column."""
    raw = table.df[column]
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = pd.Series(raw)
    else:
        as_num = pd.to_numeric(raw, errors="coerce")
        if as_num.notna().any() or raw.isna().any():
            return np.floor(_io.numeric(table, column, what="a timestamp (seconds or date-time)")).astype(
                np.int64
            )
        try:
            parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
        except (TypeError, ValueError):
            parsed = pd.Series(pd.NaT, index=raw.index)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise table.error(
            f"expected a timestamp (seconds or date-time), got {raw.iloc[row]!r}", row=row, column=column
        )
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return (parsed.astype("datetime64[ns]").to_numpy().astype(np.int64) // 1_000_000_000).astype(np.int64)


def _text(table: _io.Table, column: str | None) -> list[str] | None:
    if column is None:
        return None
    _io.require_columns(table, (column,))
    series = table.df[column]
    return [str(v) if isinstance(v, str) or not pd.isna(v) else "" for v in series.tolist()]


def load_table(
    path: str | PathLike[str],
    *,
    user: str,
    item: str,
    feedback: str,
    timestamp: str | None = None,
    items_path: str | PathLike[str] | None = None,
    item_id: str | None = None,
    title: str | None = None,
    text: str | None = None,
    tags: str | None = None,
    tag_sep: str = "|",
    sep: str = ",",
    name: str | None = None,
    feedback_range: tuple[float, float] | None = None,
) -> LoggedData:
    """Loads interactions from a CSV (header row) or Parquet file (by suffix) with a column mapping.

    Args:
        path: Interactions file.
        user: User id column.
        item: Item id column.
        feedback: Numeric feedback column.
        timestamp: Timestamp column (seconds or date-times); without it the row order is the time.
        items_path: Optional item file; otherwise the catalogue is the log's item ids, titled "item <id>".
        item_id: Item id column of ``items_path`` (defaults to ``item``).
        title: Title column of ``items_path``.
        text: Description column of ``items_path`` (default: title plus tags).
        tags: Column of ``items_path`` holding ``tag_sep``-separated labels.
        tag_sep: Separator of the tags column.
        sep: Field separator of CSV files (``.tsv`` files default to tabs).
        name: Log name (default: file stem).
        feedback_range: Declared (min, max) feedback; values outside it are errors. Default: observed.

    Raises:
        FileNotFoundError: A file is missing.
        DataFormatError: A file is malformed or references unknown items.
    """
    log_path = Path(path)
    table = _read(log_path, sep, (user, item))
    required = [user, item, feedback] + ([timestamp] if timestamp else [])
    _io.require_columns(table, required)
    user_ids = _io.ids(table, user)
    item_ids = _io.ids(table, item)
    values = _io.numeric(table, feedback, what="numeric feedback")
    if feedback_range is not None:
        _io.check_range(table, feedback, values, *feedback_range)
    notes = list(table.notes)
    if timestamp:
        times = _timestamps(table, timestamp)
    else:
        times = np.arange(len(table.df), dtype=np.int64)
        notes.append("no timestamp column: row order is used as time")

    if items_path is None:
        uniq = pd.unique(item_ids)
        uniq = np.sort(uniq) if uniq.dtype != object else np.array(sorted(uniq.tolist()), dtype=object)
        labels = [f"item {v}" for v in uniq.tolist()]
        catalog = ItemCatalog(uniq, labels, labels, [() for _ in labels])
        catalog_name = "the log"
    else:
        catalog, catalog_name = _catalog(
            Path(items_path), item_id or item, title, text, tags, tag_sep, sep, notes
        )
    items = _io.map_items(table, item, item_ids, catalog, catalog_name)
    dropped: dict[str, int] = {}
    observed = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
    log = _io.build_log(
        user_ids,
        items,
        values,
        times,
        n_items=len(catalog),
        name=name or log_path.stem,
        feedback_range=feedback_range or observed,
        dropped=dropped,
    )
    conflict = _io.conflicting_note(log)
    if conflict:
        notes.append(conflict)
    report = LoadReport(str(log_path), len(table.df), len(log), dropped, notes)
    return LoggedData(log, catalog, report)


def _catalog(
    path: Path,
    id_col: str,
    title: str | None,
    text: str | None,
    tags: str | None,
    tag_sep: str,
    sep: str,
    notes: list[str],
) -> tuple[ItemCatalog, str]:
    text_cols = tuple(c for c in (id_col, title, text, tags) if c)
    table = _read(path, sep, text_cols)
    _io.require_columns(table, [c for c in (id_col, title, text, tags) if c])
    notes.extend(table.notes)
    ids = _io.ids(table, id_col)
    _io.check_unique(table, id_col, ids)
    titles = _text(table, title) or [f"item {v}" for v in ids.tolist()]
    tag_text = _text(table, tags)
    tag_lists = [
        tuple(t.strip() for t in s.split(tag_sep) if t.strip()) for s in (tag_text or [""] * len(ids))
    ]
    descriptions = _text(table, text)
    if descriptions is None:
        descriptions = [
            f"{t}. Tags: {', '.join(tg)}." if tg else f"{t}." for t, tg in zip(titles, tag_lists, strict=True)
        ]
    catalog = ItemCatalog(ids, titles, descriptions, tag_lists)
    return catalog, path.name
