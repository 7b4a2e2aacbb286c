"""Shared reading and validation helpers for the loaders (internal)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ialp.data.errors import DataFormatError, missing_path_error
from ialp.data.types import InteractionLog, ItemCatalog

_SEP_TOKEN = "\x1f"


@dataclass
class Table:
    """A parsed file plus the 1-based source line (or row) of each data row."""

    df: pd.DataFrame
    lines: np.ndarray
    path: str
    unit: str = "line"
    skipped_blank: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def error(self, message: str, *, row: int | None = None, column: str | None = None) -> DataFormatError:
        line = int(self.lines[row]) if row is not None else None
        return DataFormatError(self.path, message, line=line, column=column, unit=self.unit)

    def line(self, row: int) -> int:
        return int(self.lines[row])


def require_file(path: Path, what: str) -> Path:
    """Checks that ``path`` is an existing, non-empty file."""
    if not path.is_file():
        raise missing_path_error(path, what)
    if path.stat().st_size == 0:
        raise DataFormatError(path, "empty file (0 bytes); expected data rows", line=None)
    return path


def _decode_error(path: Path, data: bytes | None, err: UnicodeDecodeError, encoding: str) -> DataFormatError:
    line = data.count(b"\n", 0, err.start) + 1 if data is not None else None
    return DataFormatError(path, f"not valid {encoding} text ({err.reason} at byte {err.start})", line=line)


def _parser_error(path: Path, err: Exception, line_offset: int = 0) -> DataFormatError:
    text = str(err)
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if match:
        expected, line, saw = (int(g) for g in match.groups())
        return DataFormatError(path, f"expected {expected} fields, found {saw}", line=line + line_offset)
    return DataFormatError(path, f"could not be parsed: {text.strip()}")


def _finish(df: pd.DataFrame, path: Path, first_line: int, notes: list[str] | None = None) -> Table:
    """Drops all-empty rows (counted), strips header names and records line numbers."""
    df.columns = [str(c).strip() for c in df.columns]
    blank = df.isna().all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), dtype=bool)
    lines = np.arange(len(df), dtype=np.int64) + first_line
    n_blank = int(blank.sum())
    if n_blank:
        df = df.loc[~blank]
        lines = lines[~blank]
    table = Table(df.reset_index(drop=True), lines, str(path), skipped_blank=n_blank, notes=list(notes or []))
    if n_blank:
        table.notes.append(f"{path.name}: skipped {n_blank} blank line(s)")
    if len(table.df) == 0:
        raise DataFormatError(path, "no data rows (the file holds only a header or blank lines)")
    return table


def read_csv(
    path: Path,
    *,
    sep: str = ",",
    encoding: str = "utf-8",
    text_columns: Sequence[str] = (),
) -> Table:
    """Reads a CSV file with a header row; line numbers count the header as line 1.

    Args:
        path: File to read.
        sep: Field separator.
        encoding: Text encoding.
        text_columns: Columns kept as text (empty fields become NaN).
    """
    require_file(path, "file")
    dtype: dict[str, Any] = {c: str for c in text_columns}
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            dtype=dtype or None,
            skip_blank_lines=False,
            keep_default_na=False,
            na_values=[""],
            low_memory=False,
        )
    except UnicodeDecodeError as err:
        raise _decode_error(path, path.read_bytes(), err, encoding) from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, "empty file; expected a header line and data rows") from None
    except pd.errors.ParserError as err:
        raise _parser_error(path, err) from None
    return _finish(df, path, first_line=2)


def read_parquet(path: Path) -> Table:
    """Reads a Parquet file; positions are reported as 1-based rows."""
    require_file(path, "file")
    try:
        df = pd.read_parquet(path)
    except Exception as err:
        raise DataFormatError(path, f"could not be read as Parquet: {err}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise DataFormatError(path, "no data rows")
    return Table(df.reset_index(drop=True), np.arange(1, len(df) + 1, dtype=np.int64), str(path), unit="row")


def read_headerless(
    path: Path,
    *,
    sep: str,
    names: Sequence[str],
    encoding: str,
    text_columns: Sequence[str] = (),
) -> Table:
    """Reads an unquoted, header-less file (MovieLens ``u.*``/``*.dat``) checking each line's field count.

    Args:
        path: File to read.
        sep: Field separator, one or more characters (e.g. ``"\\t"``, ``"|"``, ``"::"``).
        names: Column names; every non-blank line must have exactly ``len(names)`` fields.
        encoding: Text encoding.
        text_columns: Columns kept as text.
    """
    require_file(path, "file")
    data = path.read_bytes()
    sep_bytes = sep.encode(encoding)
    if len(sep_bytes) > 1:
        data = data.replace(sep_bytes, _SEP_TOKEN.encode())
        sep_bytes = _SEP_TOKEN.encode()
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == ord("\n"))
    ends = newlines if data.endswith(b"\n") else np.append(newlines, len(arr))
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    sep_cum = np.concatenate(([0], np.cumsum(arr == sep_bytes[0])))
    n_fields = sep_cum[ends] - sep_cum[starts] + 1
    length = ends - starts
    has_cr = np.zeros(len(ends), dtype=bool)
    nonzero = length > 0
    has_cr[nonzero] = arr[ends[nonzero] - 1] == ord("\r")
    blank = (length - has_cr) == 0
    wrong = np.flatnonzero(~blank & (n_fields != len(names)))
    if wrong.size:
        i = int(wrong[0])
        raise DataFormatError(
            path,
            f"expected {len(names)} fields separated by {sep!r}, found {int(n_fields[i])}",
            line=i + 1,
        )
    lines = np.flatnonzero(~blank).astype(np.int64) + 1
    if lines.size == 0:
        raise DataFormatError(path, "no data rows (the file is blank)")
    dtype: dict[str, Any] = {c: str for c in text_columns}
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            sep=_SEP_TOKEN if sep_bytes == _SEP_TOKEN.encode() else sep,
            header=None,
            names=list(names),
            encoding=encoding,
            dtype=dtype or None,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=True,
            index_col=False,
            low_memory=False,
        )
    except UnicodeDecodeError as err:
        raise _decode_error(path, data, err, encoding) from None
    except pd.errors.ParserError as err:
        raise _parser_error(path, err) from None
    if len(df) != len(lines):
        raise DataFormatError(path, f"parsed {len(df)} rows from {len(lines)} non-blank lines")
    table = Table(df, lines, str(path))
    n_blank = int(blank.sum())
    if n_blank:
        table.notes.append(f"{path.name}: skipped {n_blank} blank line(s)")
    return table


def require_columns(table: Table, columns: Sequence[str]) -> None:
    """Raises DataFormatError naming the first missing column and the columns found."""
    found = [str(c) for c in table.df.columns]
    for col in columns:
        if col not in found:
            where = 1 if table.unit == "line" else None
            raise DataFormatError(
                table.path,
                f"missing required column '{col}'; columns found: {', '.join(found) or '(none)'}",
                line=where,
                column=col,
            )


def _show(value: Any) -> str:
    if hasattr(value, "item"):
        value = value.item()
    return repr(value)


def _first_bad(bad: np.ndarray) -> int | None:
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None


def numeric(
    table: Table,
    column: str,
    *,
    integer: bool = False,
    allow_missing: bool = False,
    what: str | None = None,
) -> np.ndarray:
    """Converts a column to numbers, raising on the first missing or non-numeric value.

    Returns:
        float64 array (int64 when ``integer``); NaN marks missing values when ``allow_missing``
        (then the result is float64 even for integers).
    """
    raw = table.df[column]
    kind = what or ("an integer" if integer else "a number")
    if pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.to_numpy(dtype=np.float64)
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = raw.isna().to_numpy()
    bad = np.isnan(values) & ~missing
    bad |= np.isinf(values)
    if not allow_missing:
        bad |= missing
    if integer:
        with np.errstate(invalid="ignore"):
            bad |= np.isfinite(values) & (values != np.floor(values))
    row = _first_bad(bad)
    if row is not None:
        got = "an empty value" if missing[row] else _show(raw.iloc[row])
        raise table.error(f"expected {kind}, got {got}", row=row, column=column)
    if integer and not allow_missing:
        if np.abs(values).max(initial=0) >= 2**53 and pd.api.types.is_integer_dtype(raw.dtype):
            return raw.to_numpy(dtype=np.int64)
        return values.astype(np.int64)
    return values


def ids(table: Table, column: str, *, integer: bool = False) -> np.ndarray:
    """Reads an id column: int64 when all values are integers (required if ``integer``), else str objects."""
    raw = table.df[column]
    if integer or pd.api.types.is_numeric_dtype(raw.dtype):
        return numeric(table, column, integer=True, what="an integer id")
    missing = raw.isna().to_numpy()
    row = _first_bad(missing)
    if row is not None:
        raise table.error("expected an id, got an empty value", row=row, column=column)
    text = raw.astype(str).str.strip()
    as_num = pd.to_numeric(text, errors="coerce")
    if as_num.notna().all():
        values = as_num.to_numpy(dtype=np.float64)
        if np.all(values == np.floor(values)) and np.abs(values).max(initial=0) < 2**53:
            return values.astype(np.int64)
    return text.to_numpy(dtype=object)


def check_unique(table: Table, column: str, values: np.ndarray) -> None:
    """Raises DataFormatError naming both lines of the first duplicated id."""
    series = pd.Series(values)
    dup = series.duplicated(keep=False).to_numpy()
    if dup.any():
        second_mask = series.duplicated(keep="first").to_numpy()
        second = int(np.flatnonzero(second_mask)[0])
        first = int(np.flatnonzero(dup & (values == values[second]))[0])
        raise table.error(
            f"duplicate id {_show(values[second])}: on {table.unit}s {table.line(first)} and "
            f"{table.line(second)}; ids must be unique",
            row=second,
            column=column,
        )


def check_range(table: Table, column: str, values: np.ndarray, lo: float, hi: float) -> None:
    """Raises DataFormatError at the first value outside ``[lo, hi]``."""
    with np.errstate(invalid="ignore"):
        bad = (values < lo) | (values > hi)
    row = _first_bad(bad)
    if row is not None:
        raise table.error(
            f"value {values[row]:g} is outside the expected range [{lo:g}, {hi:g}]", row=row, column=column
        )


def map_items(
    table: Table, column: str, item_ids: np.ndarray, catalog: ItemCatalog, catalog_name: str
) -> np.ndarray:
    """Dense catalogue indices of ``item_ids``; raises at the first id absent from the catalogue."""
    query = item_ids
    if catalog.item_ids.dtype == object and query.dtype != object:
        query = query.astype(str).astype(object)
    elif catalog.item_ids.dtype != object and query.dtype == object:
        raise table.error(
            f"item id {_show(query[0])} is not in {catalog_name} (which has integer ids)",
            row=0,
            column=column,
        )
    index: pd.Index = catalog.__dict__["_index"]
    positions = np.asarray(index.get_indexer(pd.Index(query)), dtype=np.int64)
    row = _first_bad(positions < 0)
    if row is not None:
        raise table.error(
            f"unknown item id {_show(query[row])}: not in {catalog_name}", row=row, column=column
        )
    return positions


def build_log(
    user_ids: np.ndarray,
    items: np.ndarray,
    feedback: np.ndarray,
    timestamps: np.ndarray,
    *,
    n_items: int,
    name: str,
    feedback_range: tuple[float, float],
    dropped: dict[str, int],
) -> InteractionLog:
    """Drops exact duplicate rows (counted in ``dropped``), indexes users densely and builds the log."""
    frame = pd.DataFrame({"u": user_ids, "i": items, "t": timestamps, "f": feedback})
    dup = frame.duplicated().to_numpy()
    n_dup = int(dup.sum())
    if n_dup:
        dropped["exact duplicate (user, item, timestamp, feedback) rows"] = n_dup
        keep = ~dup
        user_ids, items, feedback, timestamps = user_ids[keep], items[keep], feedback[keep], timestamps[keep]
    uniq, dense = np.unique(user_ids, return_inverse=True)
    return InteractionLog(
        users=dense.astype(np.int64).ravel(),
        items=items,
        feedback=feedback.astype(np.float32),
        timestamps=timestamps,
        user_ids=uniq,
        feedback_range=feedback_range,
        name=name,
        n_items=n_items,
    )


def conflicting_note(log: InteractionLog) -> str | None:
    """A note when some (user, item, timestamp) keys carry different feedback values."""
    if len(log) < 2:
        return None
    same = (np.diff(log.users) == 0) & (np.diff(log.timestamps) == 0) & (np.diff(log.items) == 0)
    n = int(same.sum())
    if n:
        return f"{n} rows repeat a (user, item, timestamp) with different feedback; all were kept"
    return None
