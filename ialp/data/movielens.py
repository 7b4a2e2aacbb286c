"""MovieLens loaders: ml-latest(-small), ml-100k and ml-1m published layouts."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from ialp.data import _io
from ialp.data.errors import DataFormatError, missing_path_error
from ialp.data.types import ItemCatalog, LoadReport, LoggedData

__all__ = ["ML100K_GENRES", "detect_movielens_layout", "load_movielens", "movielens_descriptions"]

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_NO_GENRES = "(no genres listed)"
_MAX_TAGS = 10
_ML1M_OCCUPATIONS = 21
_LAYOUTS = {
    "ml-latest": ("ratings.csv", "movies.csv"),
    "ml-100k": ("u.data", "u.item"),
    "ml-1m": ("ratings.dat", "movies.dat"),
}


def detect_movielens_layout(path: str | PathLike[str]) -> str | None:
    """Returns "ml-latest", "ml-100k" or "ml-1m" from the files in ``path``, or None."""
    folder = Path(path)
    for layout, files in _LAYOUTS.items():
        if all((folder / f).is_file() for f in files):
            return layout
    return None


def load_movielens(path: str | PathLike[str]) -> LoggedData:
    """Loads a MovieLens folder, detecting the layout from the files present.

    Layouts: ml-latest / ml-latest-small (``ratings.csv`` + ``movies.csv`` [+ ``tags.csv``], UTF-8 with a
    header), ml-100k (``u.data`` + ``u.item`` [+ ``u.genre``, ``u.user``, ``u.occupation``], Latin-1) and
    ml-1m (``ratings.dat`` + ``movies.dat`` [+ ``users.dat``], ``::``-separated, Latin-1).

    Args:
        path: The folder holding the files.

    Returns:
        The ratings log (feedback = rating), the movie catalogue (tags = genres; descriptions add the
        most frequent user tags when ``tags.csv`` exists) and, for ml-100k/ml-1m, user features.

    Raises:
        FileNotFoundError: The folder or its rating/movie files are missing.
        DataFormatError: A file is malformed.
    """
    folder = Path(path)
    if not folder.exists():
        raise missing_path_error(folder, "MovieLens data")
    if folder.is_file():
        folder = folder.parent
    layout = detect_movielens_layout(folder)
    if layout == "ml-latest":
        return _load_latest(folder)
    if layout == "ml-100k":
        return _load_100k(folder)
    if layout == "ml-1m":
        return _load_1m(folder)
    expected = "; ".join(f"{name}: {' + '.join(files)}" for name, files in _LAYOUTS.items())
    raise missing_path_error(folder, f"MovieLens files (expected one of {expected}) in the folder")


def _describe(title: str, genres: tuple[str, ...], extra: str = "", tags: list[str] | None = None) -> str:
    text = title.strip()
    if extra:
        text += f". {extra}"
    if genres:
        text += f". Genres: {', '.join(genres)}"
    if tags:
        text += f". Tags: {', '.join(tags)}"
    return text + "."


def _finish(
    folder: Path,
    name: str,
    table: _io.Table,
    catalog_table: _io.Table,
    catalog: ItemCatalog,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    feedback_range: tuple[float, float],
    notes: list[str],
) -> tuple[LoggedData, np.ndarray]:
    dropped: dict[str, int] = {}
    log = _io.build_log(
        users,
        items,
        ratings,
        timestamps,
        n_items=len(catalog),
        name=name,
        feedback_range=feedback_range,
        dropped=dropped,
    )
    all_notes = [*table.notes, *catalog_table.notes, *notes]
    conflict = _io.conflicting_note(log)
    if conflict:
        all_notes.append(conflict)
    unused = len(catalog) - len(np.unique(log.items))
    if unused:
        all_notes.append(f"{unused} of {len(catalog)} catalogue items have no ratings")
    report = LoadReport(str(folder), len(table.df), len(log), dropped, all_notes)
    return LoggedData(log, catalog, report), log.user_ids


def _with_features(data: LoggedData, features: np.ndarray | None) -> LoggedData:
    return LoggedData(data.log, data.catalog, data.report, features)


def _load_latest(folder: Path) -> LoggedData:
    movies_path = folder / "movies.csv"
    movies = _io.read_csv(movies_path, text_columns=("title", "genres"))
    _io.require_columns(movies, ("movieId", "title", "genres"))
    movie_ids = _io.ids(movies, "movieId", integer=True)
    _io.check_unique(movies, "movieId", movie_ids)
    titles = _text_column(movies, "title")
    genres_raw = _text_column(movies, "genres")
    genres = [
        () if g == _NO_GENRES else tuple(x.strip() for x in g.split("|") if x.strip()) for g in genres_raw
    ]
    catalog = ItemCatalog(movie_ids, titles, titles, genres)

    ratings = _io.read_csv(folder / "ratings.csv")
    _io.require_columns(ratings, ("userId", "movieId", "rating", "timestamp"))
    users = _io.ids(ratings, "userId", integer=True)
    items = _io.map_items(
        ratings, "movieId", _io.ids(ratings, "movieId", integer=True), catalog, movies_path.name
    )
    values = _io.numeric(ratings, "rating", what="a numeric rating")
    _io.check_range(ratings, "rating", values, 0.5, 5.0)
    times = _io.numeric(ratings, "timestamp", integer=True, what="an integer timestamp (seconds)")

    notes: list[str] = []
    tags_path = folder / "tags.csv"
    tag_lists: dict[int, list[str]] = {}
    if tags_path.is_file():
        tag_lists, tag_notes = _read_tags(tags_path, catalog, movies_path.name)
        notes.extend(tag_notes)
    descriptions = [
        _describe(title, g, tags=tag_lists.get(i))
        for i, (title, g) in enumerate(zip(titles, genres, strict=True))
    ]
    catalog = ItemCatalog(movie_ids, titles, descriptions, genres)
    data, _ = _finish(
        folder,
        folder.name or "movielens",
        ratings,
        movies,
        catalog,
        users,
        items,
        values,
        times,
        (0.5, 5.0),
        notes,
    )
    return data


def _text_column(table: _io.Table, column: str) -> list[str]:
    series = table.df[column]
    missing = series.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise table.error("expected text, got an empty value", row=row, column=column)
    return [str(v) for v in series.tolist()]


def movielens_descriptions(path: str | PathLike[str], catalog: ItemCatalog, before: int | None = None) -> list[str]:
    """Item descriptions of a MovieLens folder built only from what was known before ``before`` (seconds).

    In ml-latest layouts the user tags of ``tags.csv`` written at or after ``before`` are left out (titles and
    genres carry no time); the other layouts' descriptions hold no user-written text and come back unchanged.

    Args:
        path: The folder ``catalog`` was loaded from.
        catalog: Its catalogue (``load_movielens(path).catalog``).
        before: Cut-off time; ``None`` keeps every tag.
    """
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    tags_path = folder / "tags.csv"
    if detect_movielens_layout(folder) != "ml-latest" or not tags_path.is_file():
        return list(catalog.descriptions)
    tag_lists, _ = _read_tags(tags_path, catalog, "movies.csv", before)
    return [_describe(title, g, tags=tag_lists.get(i)) for i, (title, g) in enumerate(zip(catalog.titles, catalog.tags,
                                                                                           strict=True))]


def _read_tags(path: Path, catalog: ItemCatalog, catalog_name: str,
               before: int | None = None) -> tuple[dict[int, list[str]], list[str]]:
    table = _io.read_csv(path, text_columns=("tag",))
    _io.require_columns(table, ("movieId", "tag") if before is None else ("movieId", "tag", "timestamp"))
    items = _io.map_items(table, "movieId", _io.ids(table, "movieId", integer=True), catalog, catalog_name)
    notes = list(table.notes)
    tags = table.df["tag"].astype(object).where(table.df["tag"].notna(), "").astype(str).str.strip()
    keep = (tags != "").to_numpy()
    if not keep.all():
        notes.append(f"{path.name}: ignored {int((~keep).sum())} empty tag(s)")
    if before is not None:
        keep = keep & (_io.numeric(table, "timestamp", integer=True, what="an integer timestamp (seconds)") < before)
    frame = pd.DataFrame({"item": items[keep], "tag": tags[keep].to_numpy(), "pos": np.flatnonzero(keep)})
    frame["key"] = frame["tag"].str.lower()
    grouped = (
        frame.groupby(["item", "key"], sort=False)
        .agg(tag=("tag", "first"), count=("tag", "size"), pos=("pos", "min"))
        .reset_index()
        .sort_values(["item", "count", "pos"], ascending=[True, False, True], kind="stable")
    )
    grouped = grouped[grouped.groupby("item").cumcount() < _MAX_TAGS]
    result: dict[int, list[str]] = {}
    for item, tag in zip(grouped["item"].tolist(), grouped["tag"].tolist(), strict=True):
        result.setdefault(int(item), []).append(str(tag))
    return result, notes


def _genre_names(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if not path.is_file():
        return list(ML100K_GENRES)
    table = _io.read_headerless(
        path, sep="|", names=("genre", "index"), encoding="latin-1", text_columns=("genre",)
    )
    index = _io.numeric(table, "index", integer=True, what="an integer genre index")
    names = _text_column(table, "genre")
    if sorted(index.tolist()) != list(range(len(ML100K_GENRES))):
        raise DataFormatError(
            path, f"expected genre indices 0..{len(ML100K_GENRES) - 1}, found {sorted(index.tolist())}"
        )
    return [names[i] for i in np.argsort(index)]


def _load_100k(folder: Path) -> LoggedData:
    genre_names = _genre_names(folder)
    flag_cols = [f"genre {name}" for name in genre_names]
    item_path = folder / "u.item"
    movies = _io.read_headerless(
        item_path,
        sep="|",
        names=("movie id", "movie title", "release date", "video release date", "IMDb URL", *flag_cols),
        encoding="latin-1",
        text_columns=("movie title", "release date", "video release date", "IMDb URL"),
    )
    movie_ids = _io.ids(movies, "movie id", integer=True)
    _io.check_unique(movies, "movie id", movie_ids)
    titles = [str(t) if isinstance(t, str) else "" for t in movies.df["movie title"].tolist()]
    flags = np.zeros((len(movie_ids), len(flag_cols)), dtype=bool)
    for j, col in enumerate(flag_cols):
        values = _io.numeric(movies, col, integer=True, what="a 0/1 genre flag")
        _io.check_range(movies, col, values, 0, 1)
        flags[:, j] = values == 1
    genres = [tuple(genre_names[j] for j in np.flatnonzero(row)) for row in flags]
    dates = movies.df["release date"].tolist()
    descriptions = [
        _describe(t, g, f"Released {d}" if isinstance(d, str) and d.strip() else "")
        for t, g, d in zip(titles, genres, dates, strict=True)
    ]
    catalog = ItemCatalog(movie_ids, titles, descriptions, genres)

    ratings, users, items, values, times = _read_ratings(
        folder / "u.data", "\t", ("user id", "item id", "rating", "timestamp"), catalog, item_path.name
    )
    data, user_ids = _finish(
        folder,
        folder.name or "ml-100k",
        ratings,
        movies,
        catalog,
        users,
        items,
        values,
        times,
        (1.0, 5.0),
        [],
    )
    occupations: list[str] | None = None
    occ_path = folder / "u.occupation"
    if (folder / "u.user").is_file() and occ_path.is_file():
        occ = _io.read_headerless(
            occ_path, sep="|", names=("occupation",), encoding="latin-1", text_columns=("occupation",)
        )
        occupations = [o.strip() for o in _text_column(occ, "occupation")]
    return _with_user_file(data, user_ids, ratings.path, folder / "u.user", "|",
                           ("user id", "age", "gender", "occupation", "zip code"), occupations, age_scale=100.0)


def _read_ratings(
    path: Path, sep: str, names: tuple[str, str, str, str], catalog: ItemCatalog, catalog_name: str
) -> tuple[_io.Table, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The headerless Latin-1 ratings file of ml-100k/ml-1m (columns user, item, rating 1-5, timestamp): the table,
    user ids, catalogue rows of the items, ratings and timestamps, with errors naming file, line and column."""
    user, item, rating, timestamp = names
    ratings = _io.read_headerless(path, sep=sep, names=names, encoding="latin-1")
    users = _io.ids(ratings, user, integer=True)
    items = _io.map_items(ratings, item, _io.ids(ratings, item, integer=True), catalog, catalog_name)
    values = _io.numeric(ratings, rating, what="a numeric rating")
    _io.check_range(ratings, rating, values, 1.0, 5.0)
    times = _io.numeric(ratings, timestamp, integer=True, what="an integer timestamp (seconds)")
    return ratings, users, items, values, times


def _with_user_file(data: LoggedData, user_ids: np.ndarray, ratings_path: str, path: Path, sep: str,
                    names: tuple[str, ...], occupations: list[str] | None, *, age_scale: float) -> LoggedData:
    """``data`` with the user features of the optional user file ``path`` (``data`` itself when there is none)."""
    if not path.is_file():
        return data
    table = _io.read_headerless(path, sep=sep, names=names, encoding="latin-1",
                                text_columns=("gender", "occupation", "zip code"))
    return _with_features(data, _user_features(table, user_ids, ratings_path, occupations, age_scale=age_scale))


def _user_features(
    table: _io.Table,
    user_ids: np.ndarray,
    ratings_path: str,
    occupations: list[str] | None,
    *,
    age_scale: float,
) -> np.ndarray:
    """Float32 features per dense user: age / age_scale, gender (M=1), occupation one-hot."""
    ids = _io.ids(table, "user id", integer=True)
    _io.check_unique(table, "user id", ids)
    age = _io.numeric(table, "age", what="a numeric age")
    gender = table.df["gender"].astype(object).where(table.df["gender"].notna(), "").astype(str).str.strip()
    bad_gender = ~gender.isin(["M", "F"]).to_numpy()
    if bad_gender.any():
        row = int(np.flatnonzero(bad_gender)[0])
        raise table.error(f"expected gender 'M' or 'F', got {gender.iloc[row]!r}", row=row, column="gender")
    occ_raw = table.df["occupation"].astype(object).where(table.df["occupation"].notna(), "").astype(str)
    occ_values = occ_raw.str.strip().to_numpy(dtype=object)
    vocab = occupations if occupations is not None else sorted(set(occ_values.tolist()))
    occ_index = pd.Index(vocab).get_indexer(pd.Index(occ_values))
    if (occ_index < 0).any():
        row = int(np.flatnonzero(occ_index < 0)[0])
        raise table.error(
            f"unknown occupation {occ_values[row]!r}; expected one of {', '.join(vocab)}",
            row=row,
            column="occupation",
        )
    rows = pd.Index(ids).get_indexer(pd.Index(user_ids))
    if (rows < 0).any():
        missing = user_ids[int(np.flatnonzero(rows < 0)[0])].item()
        raise DataFormatError(
            table.path,
            f"user id {missing!r} from {Path(ratings_path).name} has no row here",
            column="user id",
        )
    features = np.zeros((len(user_ids), 2 + len(vocab)), dtype=np.float32)
    features[:, 0] = age[rows] / age_scale
    features[:, 1] = (gender.to_numpy() == "M")[rows]
    features[np.arange(len(user_ids)), 2 + occ_index[rows]] = 1.0
    return features


def _load_1m(folder: Path) -> LoggedData:
    movies_path = folder / "movies.dat"
    movies = _io.read_headerless(
        movies_path,
        sep="::",
        names=("MovieID", "Title", "Genres"),
        encoding="latin-1",
        text_columns=("Title", "Genres"),
    )
    movie_ids = _io.ids(movies, "MovieID", integer=True)
    _io.check_unique(movies, "MovieID", movie_ids)
    titles = _text_column(movies, "Title")
    genres_raw = (
        movies.df["Genres"].astype(object).where(movies.df["Genres"].notna(), "").astype(str).tolist()
    )
    genres = [tuple(x.strip() for x in g.split("|") if x.strip() and g != _NO_GENRES) for g in genres_raw]
    descriptions = [_describe(t, g) for t, g in zip(titles, genres, strict=True)]
    catalog = ItemCatalog(movie_ids, titles, descriptions, genres)

    ratings, users, items, values, times = _read_ratings(
        folder / "ratings.dat", "::", ("UserID", "MovieID", "Rating", "Timestamp"), catalog, movies_path.name
    )
    data, user_ids = _finish(
        folder, folder.name or "ml-1m", ratings, movies, catalog, users, items, values, times, (1.0, 5.0), []
    )
    return _with_user_file(data, user_ids, ratings.path, folder / "users.dat", "::",
                           ("user id", "gender", "age", "occupation", "zip code"),
                           [str(i) for i in range(_ML1M_OCCUPATIONS)], age_scale=56.0)
