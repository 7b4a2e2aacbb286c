"""KuaiRec and KuaiRand loaders for the published (kuairec.com, kuairand.com) layouts."""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from ialp.data import _io
from ialp.data.errors import missing_path_error
from ialp.data.types import ItemCatalog, LoadReport, LoggedData

__all__ = ["KUAIRAND_FEEDBACK", "data_folder", "load_kuairand", "load_kuairec"]

KUAIRAND_BINARY = (
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "is_profile_enter",
)
KUAIRAND_DURATIONS = ("play_time_ms", "profile_stay_time", "comment_stay_time")
KUAIRAND_FEEDBACK = KUAIRAND_BINARY + KUAIRAND_DURATIONS
_FEAT_RE = r"\s*\[\s*(?:\d+\s*(?:,\s*\d+\s*)*)?\]\s*"


def data_folder(path: str | PathLike[str], marker_glob: str) -> Path:
    """The folder holding the data files matching ``marker_glob``.

    Looks in ``path/data``, ``path``, then one level down (``path/*/data``, ``path/*``, e.g. a folder holding
    ``KuaiRand-Pure/``) when exactly one such folder matches; falls back to ``path``.
    """
    base = Path(path)
    if not base.exists():
        raise missing_path_error(base, "data set")
    if base.is_file():
        base = base.parent
    for folder in (base / "data", base):
        if folder.is_dir() and any(folder.glob(marker_glob)):
            return folder
    nested = sorted({f.parent for f in (*base.glob(f"*/data/{marker_glob}"), *base.glob(f"*/{marker_glob}"))})
    if len(nested) == 1:
        return nested[0]
    if len(nested) > 1:
        raise ValueError(
            f"several data folders under {base}: {', '.join(map(str, nested))}; pass one of them"
        )
    return base


def _empty_to_blank(series: pd.Series) -> list[str]:
    return [v.strip() if isinstance(v, str) else "" for v in series.astype(object).tolist()]


def _finish(
    folder: Path,
    name: str,
    catalog: ItemCatalog,
    user_ids: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    times: np.ndarray,
    feedback_range: tuple[float, float],
    rows_read: int,
    dropped: dict[str, int],
    notes: list[str],
) -> LoggedData:
    log = _io.build_log(
        user_ids,
        items,
        values,
        times,
        n_items=len(catalog),
        name=name,
        feedback_range=feedback_range,
        dropped=dropped,
    )
    conflict = _io.conflicting_note(log)
    if conflict:
        notes.append(conflict)
    unused = len(catalog) - len(np.unique(log.items))
    if unused:
        notes.append(f"{unused} of {len(catalog)} catalogue items have no interactions in this log")
    return LoggedData(log, catalog, LoadReport(str(folder), rows_read, len(log), dropped, notes))


def _log_catalog(item_ids: np.ndarray, label: str) -> ItemCatalog:
    uniq = np.unique(item_ids)
    titles = [f"{label} {v}" for v in uniq.tolist()]
    return ItemCatalog(uniq, titles, [t + "." for t in titles], [() for _ in titles])


# ----------------------------------------------------------------------------------------------- KuaiRec


def load_kuairec(path: str | PathLike[str], matrix: str = "small", *, captions: bool = True) -> LoggedData:
    """Loads KuaiRec (``data/small_matrix.csv`` or ``data/big_matrix.csv``).

    Feedback is ``watch_ratio`` (>= 0). Item tags are the category ids of ``item_categories.csv``;
    ``kuairec_caption_category.csv``, when present and ``captions`` is true, gives titles and text.
    Rows without a timestamp (present in the published matrices) are dropped and counted.

    Args:
        path: The KuaiRec folder (holding ``data/``) or its ``data/`` folder.
        matrix: "small" (fully observed) or "big".
        captions: Read the caption file for titles and descriptions.

    Raises:
        FileNotFoundError: The folder or the matrix file is missing.
        DataFormatError: A file is malformed.
    """
    if matrix not in ("small", "big"):
        raise ValueError(f"matrix must be 'small' or 'big', got {matrix!r}")
    folder = data_folder(path, "*_matrix.csv")
    matrix_path = folder / f"{matrix}_matrix.csv"
    if not matrix_path.is_file():
        raise missing_path_error(matrix_path, f"KuaiRec {matrix} matrix")
    notes: list[str] = []
    table = _io.read_csv(matrix_path)
    _io.require_columns(table, ("user_id", "video_id", "watch_ratio", "timestamp"))
    notes.extend(table.notes)
    user_ids = _io.ids(table, "user_id", integer=True)
    video_ids = _io.ids(table, "video_id", integer=True)
    values = _io.numeric(table, "watch_ratio", what="a numeric watch ratio")
    _io.check_range(table, "watch_ratio", values, 0.0, np.inf)
    stamps = _io.numeric(table, "timestamp", allow_missing=True, what="a numeric timestamp (seconds)")

    cat_path = folder / "item_categories.csv"
    if cat_path.is_file():
        catalog = _kuairec_catalog(folder, cat_path, captions, notes)
        items = _io.map_items(table, "video_id", video_ids, catalog, cat_path.name)
    else:
        notes.append(
            f"{cat_path.name} not found: the catalogue holds the videos of the log, without categories"
        )
        catalog = _log_catalog(video_ids, "video")
        items = catalog.index_of(video_ids)

    dropped: dict[str, int] = {}
    has_time = ~np.isnan(stamps)
    if not has_time.all():
        dropped["rows without a timestamp"] = int((~has_time).sum())
    keep = has_time
    times = np.floor(stamps[keep]).astype(np.int64)
    hi = float(values.max()) if len(values) else 0.0
    return _finish(
        folder,
        f"kuairec-{matrix}",
        catalog,
        user_ids[keep],
        items[keep],
        values[keep],
        times,
        (0.0, hi),
        len(table.df),
        dropped,
        notes,
    )


def _kuairec_catalog(folder: Path, cat_path: Path, captions: bool, notes: list[str]) -> ItemCatalog:
    table = _io.read_csv(cat_path, text_columns=("feat",))
    _io.require_columns(table, ("video_id", "feat"))
    notes.extend(table.notes)
    ids = _io.ids(table, "video_id", integer=True)
    _io.check_unique(table, "video_id", ids)
    feat = table.df["feat"].astype(object).where(table.df["feat"].notna(), "").astype(str)
    bad = ~feat.str.fullmatch(_FEAT_RE).to_numpy(dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise table.error(
            f"expected a list of category ids like '[8, 23]', got {feat.iloc[row]!r}", row=row, column="feat"
        )
    tags = [tuple(t.strip() for t in f.strip().strip("[]").split(",") if t.strip()) for f in feat.tolist()]
    titles = [f"video {v}" for v in ids.tolist()]
    descriptions = [
        f"Video {v}. Categories: {', '.join(tg)}." if tg else f"Video {v}."
        for v, tg in zip(ids.tolist(), tags, strict=True)
    ]
    caption_path = folder / "kuairec_caption_category.csv"
    if captions and caption_path.is_file():
        titles, descriptions = _kuairec_captions(caption_path, ids, titles, descriptions, notes)
    return ItemCatalog(ids, titles, descriptions, tags)


def _kuairec_captions(
    path: Path, ids: np.ndarray, titles: list[str], descriptions: list[str], notes: list[str]
) -> tuple[list[str], list[str]]:
    text_cols = (
        "manual_cover_text",
        "caption",
        "topic_tag",
        "first_level_category_name",
        "second_level_category_name",
        "third_level_category_name",
    )
    table = _io.read_csv(path, text_columns=text_cols)
    _io.require_columns(table, ("video_id",))
    notes.extend(table.notes)
    cap_ids = _io.ids(table, "video_id", integer=True)
    _io.check_unique(table, "video_id", cap_ids)
    cols = {
        c: _empty_to_blank(table.df[c]) if c in table.df.columns else [""] * len(cap_ids) for c in text_cols
    }
    positions = pd.Index(ids).get_indexer(cap_ids)
    unknown = int((positions < 0).sum())
    if unknown:
        notes.append(f"{path.name}: {unknown} captioned video(s) are not in the catalogue and were ignored")
    titles, descriptions = list(titles), list(descriptions)
    for row, pos in enumerate(positions.tolist()):
        if pos < 0:
            continue
        caption, cover = cols["caption"][row], cols["manual_cover_text"][row]
        if cover.upper() == "UNKNOWN":
            cover = ""
        if caption or cover:
            titles[pos] = (caption or cover)[:120]
        parts = [descriptions[pos].rstrip(".")]
        if caption:
            parts.append(f"Caption: {caption}")
        if cover and cover != caption:
            parts.append(f"Cover text: {cover}")
        topics = ", ".join(t.strip() for t in re.split(r"[\[\]'\",]+", cols["topic_tag"][row]) if t.strip())
        if topics:
            parts.append(f"Topics: {topics}")
        levels = [cols[c][row] for c in text_cols[3:] if cols[c][row] and cols[c][row].upper() != "UNKNOWN"]
        if levels:
            parts.append(f"Category: {' > '.join(levels)}")
        descriptions[pos] = ". ".join(parts) + "."
    return titles, descriptions


# ----------------------------------------------------------------------------------------------- KuaiRand


def load_kuairand(
    path: str | PathLike[str], feedback: str = "is_click", *, include_random: bool = False
) -> LoggedData:
    """Loads KuaiRand (-Pure, -1K or -27K) from its ``log_standard_*.csv`` files.

    Timestamps are ``time_ms`` converted to seconds. The catalogue comes from
    ``video_features_basic_*.csv`` (tags: the ``tag`` ids as strings) or, when absent, from the log.

    Args:
        path: The KuaiRand folder (holding ``data/``) or its ``data/`` folder.
        feedback: Log column used as feedback: a 0/1 signal (``is_click``, ``is_like``, ``long_view``, ...)
            or a duration (``play_time_ms``, ``profile_stay_time``, ``comment_stay_time``).
        include_random: Also read the ``log_random_*.csv`` files (randomly exposed videos).

    Raises:
        FileNotFoundError: No ``log_standard_*.csv`` file.
        DataFormatError: A file is malformed.
        ValueError: Unknown ``feedback``.
    """
    if feedback not in KUAIRAND_FEEDBACK:
        raise ValueError(f"feedback must be one of {', '.join(KUAIRAND_FEEDBACK)}; got {feedback!r}")
    folder = data_folder(path, "log_standard_*.csv")
    log_paths = sorted(folder.glob("log_standard_*.csv"))
    if not log_paths:
        raise missing_path_error(folder / "log_standard_*.csv", "KuaiRand log files")
    if include_random:
        log_paths += sorted(folder.glob("log_random_*.csv"))
    match = re.match(r"log_standard_4_08_to_4_21_(.+)\.csv$", log_paths[0].name)
    variant = match.group(1) if match else log_paths[0].stem.rsplit("_", 1)[-1]
    notes: list[str] = [f"read {', '.join(p.name for p in log_paths)}"]
    skipped = sorted(folder.glob("log_random_*.csv")) if not include_random else []
    if skipped:
        notes.append(f"not read (include_random=False): {', '.join(p.name for p in skipped)}")

    catalog: ItemCatalog | None = None
    feature_paths = sorted(folder.glob("video_features_basic*.csv"))
    if feature_paths:
        if len(feature_paths) > 1:
            notes.append(f"several video feature files; used {feature_paths[0].name}")
        catalog = _kuairand_catalog(feature_paths[0], notes)
    else:
        notes.append("video_features_basic_*.csv not found: the catalogue holds the videos of the log")

    parts: list[tuple[_io.Table, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for log_path in log_paths:
        table = _io.read_csv(log_path)
        _io.require_columns(table, ("user_id", "video_id", "time_ms", feedback))
        notes.extend(table.notes)
        user_ids = _io.ids(table, "user_id", integer=True)
        video_ids = _io.ids(table, "video_id", integer=True)
        values = _io.numeric(table, feedback, what="a number" if feedback in KUAIRAND_DURATIONS else "0 or 1")
        if feedback in KUAIRAND_BINARY:
            bad = (values != 0) & (values != 1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise table.error(f"expected 0 or 1, got {values[row]:g}", row=row, column=feedback)
        else:
            _io.check_range(table, feedback, values, 0.0, np.inf)
        times = _io.numeric(table, "time_ms", integer=True, what="an integer time in milliseconds") // 1000
        if catalog is not None:
            video_ids = _io.map_items(table, "video_id", video_ids, catalog, feature_paths[0].name)
        parts.append((table, user_ids, video_ids, values, times))

    all_users = np.concatenate([p[1] for p in parts])
    all_videos = np.concatenate([p[2] for p in parts])
    all_values = np.concatenate([p[3] for p in parts])
    all_times = np.concatenate([p[4] for p in parts]).astype(np.int64)
    if catalog is None:
        catalog = _log_catalog(all_videos, "video")
        all_videos = catalog.index_of(all_videos)
    if feedback in KUAIRAND_BINARY:
        fb_range = (0.0, 1.0)
    else:
        fb_range = (0.0, float(all_values.max()) if len(all_values) else 0.0)
    rows_read = sum(len(p[0].df) for p in parts)
    return _finish(
        folder,
        f"kuairand-{variant}",
        catalog,
        all_users,
        all_videos,
        all_values,
        all_times,
        fb_range,
        rows_read,
        {},
        notes,
    )


def _kuairand_catalog(path: Path, notes: list[str]) -> ItemCatalog:
    table = _io.read_csv(path, text_columns=("tag", "video_type", "upload_type"))
    _io.require_columns(table, ("video_id",))
    notes.extend(table.notes)
    ids = _io.ids(table, "video_id", integer=True)
    _io.check_unique(table, "video_id", ids)
    n = len(ids)
    tag_text = _empty_to_blank(table.df["tag"]) if "tag" in table.df.columns else [""] * n
    tags = [tuple(t.strip() for t in s.split(",") if t.strip()) for s in tag_text]
    authors = table.df["author_id"].tolist() if "author_id" in table.df.columns else [None] * n
    vtypes = _empty_to_blank(table.df["video_type"]) if "video_type" in table.df.columns else [""] * n
    if "video_duration" in table.df.columns:
        durations = pd.to_numeric(table.df["video_duration"], errors="coerce").to_numpy(dtype=np.float64)
    else:
        durations = np.full(n, np.nan)
    titles = [f"video {v}" for v in ids.tolist()]
    descriptions = []
    for i, vid in enumerate(ids.tolist()):
        text = f"Video {vid}"
        author = authors[i]
        if author is not None and not pd.isna(author):
            text += f" by author {int(author) if float(author).is_integer() else author}"
        if vtypes[i]:
            text += f", type {vtypes[i]}"
        if np.isfinite(durations[i]):
            text += f", {durations[i] / 1000:.0f} s long"
        if tags[i]:
            text += f". Tags: {', '.join(tags[i])}"
        descriptions.append(text + ".")
    return ItemCatalog(ids, titles, descriptions, tags)
