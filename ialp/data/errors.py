"""Errors raised by the data loaders."""

from __future__ import annotations

from pathlib import Path

DOWNLOAD_HINT = (
    "Download the data sets from their publishers: MovieLens from https://grouplens.org/datasets/movielens/, "
    "KuaiRec from https://kuairec.com/, KuaiRand from https://kuairand.com/."
)


class DataFormatError(ValueError):
    """Malformed input file.

    The message names the file, the line (1-based, the header line being line 1 when there is one) or
    row (Parquet), the column when known, and what was expected.

    Attributes:
        path: The offending file.
        line: 1-based line (or row for Parquet) number, or None when the whole file is at fault.
        column: Offending column name, or None.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
        unit: str = "line",
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.detail = message
        where = [self.path]
        if line is not None:
            where.append(f"{unit} {line}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_error, (self.path, self.detail, self.line, self.column, str(self)))


def _rebuild_error(
    path: str, detail: str, line: int | None, column: str | None, text: str
) -> DataFormatError:
    err = DataFormatError(path, detail, line=line, column=column)
    err.args = (text,)
    return err


def missing_path_error(path: str | Path, what: str = "data set") -> FileNotFoundError:
    """Builds a FileNotFoundError for an absent data path, with download locations."""
    return FileNotFoundError(f"{what} not found at {path}. {DOWNLOAD_HINT}")
