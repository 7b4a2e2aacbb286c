"""Malformed-input tests: every loader names the file, the line/column and what was expected."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ialp.data import DataFormatError, load_dataset, load_kuairand, load_kuairec, load_movielens, load_table


def _lines(path: Path, encoding: str = "utf-8") -> list[str]:
    return path.read_text(encoding=encoding).splitlines()


def _set_line(path: Path, number: int, text: str, encoding: str = "utf-8") -> None:
    """Replaces 1-based line ``number`` of ``path``."""
    lines = _lines(path, encoding)
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


def _append(path: Path, text: str, encoding: str = "utf-8") -> None:
    with open(path, "a", encoding=encoding) as fh:
        fh.write(text + "\n")


def _raises(load: Callable[[], object], *fragments: str) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        load()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


# ------------------------------------------------------------------------------------ ml-latest-small


@pytest.fixture
def ml_small_copy(ml_small_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        shutil.copy(ml_small_dir / name, folder / name)
    return folder


def test_ml_small_missing_column(ml_small_copy: Path) -> None:
    _set_line(ml_small_copy / "ratings.csv", 1, "userId,movieId,stars,timestamp")
    err = _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "'rating'", "columns found", "stars")
    assert err.column == "rating"


def test_ml_small_non_numeric_rating(ml_small_copy: Path) -> None:
    _set_line(ml_small_copy / "ratings.csv", 6, "1,70,four,964982400")
    err = _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "line 6", "column 'rating'", "'four'")
    assert (err.line, err.column) == (6, "rating")
    assert err.path.endswith("ratings.csv")


def test_ml_small_missing_rating_and_out_of_range(ml_small_copy: Path) -> None:
    path = ml_small_copy / "ratings.csv"
    original = _lines(path)[9]
    _set_line(path, 10, "1,101,,964980868")
    _raises(lambda: load_movielens(ml_small_copy), "line 10", "'rating'", "empty value")
    _set_line(path, 10, original)
    _set_line(path, 12, "1,151,7.0,964984041")
    _raises(
        lambda: load_movielens(ml_small_copy), "line 12", "'rating'", "outside the expected range [0.5, 5]"
    )


def test_ml_small_non_numeric_ids_and_timestamp(ml_small_copy: Path) -> None:
    path = ml_small_copy / "ratings.csv"
    _set_line(path, 4, "1,6,4.0,yesterday")
    _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "line 4", "'timestamp'", "'yesterday'")
    _set_line(path, 4, "alice,6,4.0,964982224")
    _raises(lambda: load_movielens(ml_small_copy), "line 4", "'userId'", "'alice'")


def test_ml_small_unknown_item(ml_small_copy: Path) -> None:
    _set_line(ml_small_copy / "ratings.csv", 20, "1,999999999,4.0,964982224")
    _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "line 20", "999999999", "movies.csv")


def test_ml_small_unknown_item_in_tags(ml_small_copy: Path) -> None:
    _set_line(ml_small_copy / "tags.csv", 3, "2,999999999,funny,1445714994")
    _raises(lambda: load_movielens(ml_small_copy), "tags.csv", "line 3", "999999999")


def test_ml_small_duplicate_movie_ids(ml_small_copy: Path) -> None:
    path = ml_small_copy / "movies.csv"
    n_lines = len(_lines(path))
    _append(path, "1,Toy Story again (1995),Comedy")
    _raises(
        lambda: load_movielens(ml_small_copy), "movies.csv", f"lines 2 and {n_lines + 1}", "duplicate id 1"
    )


def test_ml_small_empty_and_header_only(ml_small_copy: Path) -> None:
    path = ml_small_copy / "ratings.csv"
    path.write_text("")
    _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "empty")
    path.write_text("userId,movieId,rating,timestamp\n")
    _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "no data rows")


def test_ml_small_bad_field_count(ml_small_copy: Path) -> None:
    _set_line(ml_small_copy / "ratings.csv", 8, "1,47,5.0,964983815,extra")
    err = _raises(
        lambda: load_movielens(ml_small_copy), "ratings.csv", "line 8", "expected 4 fields, found 5"
    )
    assert err.line == 8
    _set_line(ml_small_copy / "ratings.csv", 8, "1,47")
    _raises(lambda: load_movielens(ml_small_copy), "ratings.csv", "line 8", "'rating'", "empty value")


def test_ml_small_duplicate_rows_are_counted(ml_small_copy: Path) -> None:
    path = ml_small_copy / "ratings.csv"
    _append(path, _lines(path)[1])
    _append(path, _lines(path)[2])
    data = load_movielens(ml_small_copy)
    assert data.report.rows_read == 100838 and len(data.log) == 100836
    assert data.report.dropped == {"exact duplicate (user, item, timestamp, feedback) rows": 2}


def test_ml_small_blank_lines_keep_line_numbers(ml_small_copy: Path) -> None:
    path = ml_small_copy / "ratings.csv"
    lines = _lines(path)
    lines.insert(3, "")
    lines[9] = "1,110,bad,964982176"
    path.write_text("\n".join(lines) + "\n")
    _raises(lambda: load_movielens(ml_small_copy), "line 10", "'bad'")


# ------------------------------------------------------------------------------------------- ml-100k


@pytest.fixture
def ml_100k_copy(ml_100k_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in ("u.data", "u.item", "u.genre", "u.user", "u.occupation"):
        shutil.copy(ml_100k_dir / name, folder / name)
    return folder


def test_ml_100k_non_numeric_rating(ml_100k_copy: Path) -> None:
    _set_line(ml_100k_copy / "u.data", 3, "22\t377\tthree\t878887116", "latin-1")
    err = _raises(lambda: load_movielens(ml_100k_copy), "u.data", "line 3", "'rating'", "'three'")
    assert err.line == 3


def test_ml_100k_bad_field_counts(ml_100k_copy: Path) -> None:
    _set_line(ml_100k_copy / "u.data", 5, "166\t346\t1", "latin-1")
    _raises(lambda: load_movielens(ml_100k_copy), "u.data", "line 5", "expected 4 fields", "found 3")
    lines = _lines(ml_100k_copy / "u.item", "latin-1")
    _set_line(ml_100k_copy / "u.item", 7, lines[6] + "|1", "latin-1")
    _raises(lambda: load_movielens(ml_100k_copy), "u.item", "line 7", "expected 24 fields", "found 25")


def test_ml_100k_unknown_item_duplicate_ids_and_flags(ml_100k_copy: Path) -> None:
    data_path, item_path = ml_100k_copy / "u.data", ml_100k_copy / "u.item"
    original = _lines(data_path, "latin-1")
    _set_line(data_path, 11, "62\t5000\t2\t879372434", "latin-1")
    _raises(lambda: load_movielens(ml_100k_copy), "u.data", "line 11", "5000", "u.item")
    data_path.write_text("\n".join(original) + "\n", encoding="latin-1")
    items = _lines(item_path, "latin-1")
    _append(item_path, items[4], "latin-1")
    _raises(lambda: load_movielens(ml_100k_copy), "u.item", "lines 5 and 1683", "duplicate id 5")
    items[1] = items[1][:-1] + "2"
    item_path.write_text("\n".join(items) + "\n", encoding="latin-1")
    _raises(lambda: load_movielens(ml_100k_copy), "u.item", "line 2", "genre Western", "[0, 1]")


def test_ml_100k_empty_file(ml_100k_copy: Path) -> None:
    (ml_100k_copy / "u.data").write_bytes(b"")
    _raises(lambda: load_movielens(ml_100k_copy), "u.data", "empty")
    (ml_100k_copy / "u.data").write_bytes(b"\n\n")
    _raises(lambda: load_movielens(ml_100k_copy), "u.data", "no data rows")


def test_ml_100k_user_file_checked(ml_100k_copy: Path) -> None:
    _set_line(ml_100k_copy / "u.user", 4, "4|24|X|technician|43537", "latin-1")
    _raises(lambda: load_movielens(ml_100k_copy), "u.user", "line 4", "'gender'", "'X'")


# --------------------------------------------------------------------------------------------- ml-1m


def _ml1m(folder: Path) -> Path:
    folder.mkdir()
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation\n2::Heat (1995)::Action|Crime\n")
    (folder / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n2::2::4::978300275\n")
    return folder


def test_ml_1m_malformed(tmp_path: Path) -> None:
    folder = _ml1m(tmp_path / "ml-1m")
    assert len(load_movielens(folder).log) == 3
    _set_line(folder / "ratings.dat", 2, "1::2::great::978302109")
    _raises(lambda: load_movielens(folder), "ratings.dat", "line 2", "'Rating'", "'great'")
    _set_line(folder / "ratings.dat", 2, "1::2::3")
    _raises(lambda: load_movielens(folder), "ratings.dat", "line 2", "expected 4 fields separated by '::'")
    _set_line(folder / "ratings.dat", 2, "1::7::3::978302109")
    _raises(lambda: load_movielens(folder), "ratings.dat", "line 2", "unknown item id 7", "movies.dat")
    _set_line(folder / "ratings.dat", 2, "1::2::3::978302109")
    _append(folder / "movies.dat", "1::Toy Story (1995)::Animation")
    _raises(lambda: load_movielens(folder), "movies.dat", "lines 1 and 3", "duplicate id 1")
    _set_line(folder / "movies.dat", 3, "3::Casino (1995)")
    _raises(lambda: load_movielens(folder), "movies.dat", "line 3", "expected 3 fields")
    (folder / "movies.dat").write_text("")
    _raises(lambda: load_movielens(folder), "movies.dat", "empty")


# ------------------------------------------------------------------------------------------- KuaiRec


@pytest.fixture
def kuairec_copy(kuairec_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(kuairec_dir, tmp_path / "KuaiRec"))


def test_kuairec_malformed(kuairec_copy: Path) -> None:
    matrix = kuairec_copy / "data" / "small_matrix.csv"
    good = _lines(matrix)
    _set_line(matrix, 1, good[0].replace("watch_ratio", "ratio"))
    _raises(lambda: load_kuairec(kuairec_copy), "small_matrix.csv", "'watch_ratio'", "columns found")
    matrix.write_text("\n".join(good) + "\n")
    _set_line(matrix, 4, good[3].rsplit(",", 1)[0] + ",lots")
    _raises(lambda: load_kuairec(kuairec_copy), "small_matrix.csv", "line 4", "'watch_ratio'", "'lots'")
    _set_line(matrix, 4, good[3].rsplit(",", 1)[0] + ",-0.5")
    _raises(lambda: load_kuairec(kuairec_copy), "small_matrix.csv", "line 4", "outside the expected range")
    fields = good[3].split(",")
    _set_line(matrix, 4, ",".join([fields[0], "777", *fields[2:]]))
    _raises(lambda: load_kuairec(kuairec_copy), "small_matrix.csv", "line 4", "777", "item_categories.csv")
    _set_line(matrix, 4, good[3] + ",extra")
    _raises(lambda: load_kuairec(kuairec_copy), "small_matrix.csv", "line 4", "expected 8 fields")
    matrix.write_text("")
    _raises(lambda: load_kuairec(kuairec_copy), "small_matrix.csv", "empty")


def test_kuairec_catalogue_errors_and_duplicates(kuairec_copy: Path) -> None:
    cats = kuairec_copy / "data" / "item_categories.csv"
    good = _lines(cats)
    _append(cats, good[2])
    _raises(lambda: load_kuairec(kuairec_copy), "item_categories.csv", "lines 3 and 10", "duplicate id 109")
    cats.write_text("\n".join(good) + "\n")
    _set_line(cats, 5, '183,"eight"')
    _raises(lambda: load_kuairec(kuairec_copy), "item_categories.csv", "line 5", "'feat'", "[8, 23]")
    cats.write_text("\n".join(good) + "\n")
    matrix = kuairec_copy / "data" / "small_matrix.csv"
    _append(matrix, _lines(matrix)[1])
    data = load_kuairec(kuairec_copy)
    assert data.report.dropped == {
        "rows without a timestamp": 1,
        "exact duplicate (user, item, timestamp, feedback) rows": 1,
    }
    assert data.report.rows_read == 25 and len(data.log) == 23


# ------------------------------------------------------------------------------------------ KuaiRand


@pytest.fixture
def kuairand_copy(kuairand_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(kuairand_dir, tmp_path / "KuaiRand-Pure"))


def test_kuairand_malformed(kuairand_copy: Path) -> None:
    log = kuairand_copy / "data" / "log_standard_4_22_to_5_08_pure.csv"
    good = _lines(log)
    name = log.name

    def row(**changes: str) -> str:
        values = dict(zip(good[0].split(","), good[2].split(","), strict=True))
        values.update(changes)
        return ",".join(values.values())

    _set_line(log, 1, good[0].replace("is_click", "clicked"))
    _raises(lambda: load_kuairand(kuairand_copy), name, "'is_click'", "columns found")
    log.write_text("\n".join(good) + "\n")
    _set_line(log, 3, row(time_ms="noon"))
    _raises(lambda: load_kuairand(kuairand_copy), name, "line 3", "'time_ms'", "'noon'")
    _set_line(log, 3, row(is_click="2"))
    _raises(lambda: load_kuairand(kuairand_copy), name, "line 3", "'is_click'", "expected 0 or 1")
    _set_line(log, 3, row(video_id="4242"))
    _raises(lambda: load_kuairand(kuairand_copy), name, "line 3", "4242", "video_features_basic_pure.csv")
    _set_line(log, 3, row() + ",0")
    _raises(lambda: load_kuairand(kuairand_copy), name, "line 3", "expected 19 fields, found 20")
    log.write_text(good[0] + "\n")
    _raises(lambda: load_kuairand(kuairand_copy), name, "no data rows")
    log.write_text("")
    _raises(lambda: load_kuairand(kuairand_copy), name, "empty")


def test_kuairand_duplicates(kuairand_copy: Path) -> None:
    feats = kuairand_copy / "data" / "video_features_basic_pure.csv"
    good = _lines(feats)
    _append(feats, good[1])
    _raises(
        lambda: load_kuairand(kuairand_copy),
        "video_features_basic_pure.csv",
        "lines 2 and 9",
        "duplicate id 1",
    )
    feats.write_text("\n".join(good) + "\n")
    log = kuairand_copy / "data" / "log_standard_4_08_to_4_21_pure.csv"
    _append(log, _lines(log)[5])
    data = load_kuairand(kuairand_copy)
    assert data.report.dropped == {"exact duplicate (user, item, timestamp, feedback) rows": 1}
    assert data.report.rows_read == 33 and len(data.log) == 32


# ------------------------------------------------------------------------------------------- tables


def test_table_malformed(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i,y,t\na,1,1.0,10\nb,2,0.5,11\nb,3,x,12\n")
    _raises(
        lambda: load_table(path, user="u", item="i", feedback="y", timestamp="t"), "log.csv", "line 4", "'y'"
    )
    _raises(
        lambda: load_table(path, user="u", item="i", feedback="score"),
        "log.csv",
        "'score'",
        "columns found: u, i, y, t",
    )
    path.write_text("u,i,y,t\na,1,1.0,10\nb,2,0.5,soon\n")
    _raises(
        lambda: load_table(path, user="u", item="i", feedback="y", timestamp="t"), "line 3", "'t'", "'soon'"
    )
    path.write_text("u,i,y,t\na,1,1.0,10\nb,2,0.5,11\nb,3,7,12\n")
    _raises(
        lambda: load_table(path, user="u", item="i", feedback="y", feedback_range=(0, 1)), "line 4", "outside"
    )
    items = tmp_path / "items.csv"
    items.write_text("id,title\n1,One\n2,Two\n")
    _raises(
        lambda: load_table(path, user="u", item="i", feedback="y", items_path=items, item_id="id"),
        "log.csv",
        "line 4",
        "unknown item id 3",
        "items.csv",
    )
    items.write_text("id,title\n1,One\n2,Two\n3,Three\n2,Two again\n")
    _raises(
        lambda: load_table(path, user="u", item="i", feedback="y", items_path=items, item_id="id"),
        "items.csv",
        "lines 3 and 5",
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _raises(lambda: load_dataset(empty, kind="table", user="u", item="i", feedback="y"), "empty.csv", "empty")


def test_table_parquet_rows_and_duplicates(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "log.parquet"
    pd.DataFrame({"u": [1, 1, 2], "i": [5, 6, 5], "y": ["1", "oops", "0"]}).to_parquet(path)
    err = _raises(
        lambda: load_table(path, user="u", item="i", feedback="y"), "log.parquet", "row 2", "'oops'"
    )
    assert err.line == 2
    pd.DataFrame({"u": [1, 1, 2], "i": [5, 5, 5], "y": [1.0, 1.0, 0.0], "t": [3, 3, 4]}).to_parquet(path)
    data = load_table(path, user="u", item="i", feedback="y", timestamp="t")
    assert data.report.dropped == {"exact duplicate (user, item, timestamp, feedback) rows": 1}
    assert len(data.log) == 2
