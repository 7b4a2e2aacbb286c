"""Loader tests on the shared MovieLens data, the committed Kuai fixtures and generated tables."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ialp.data import (
    DATASET_KINDS,
    detect_kind,
    load_dataset,
    load_kuairand,
    load_kuairec,
    load_movielens,
    load_table,
)


def test_ml_latest_small(ml_small_dir: Path) -> None:
    start = time.perf_counter()
    data = load_movielens(ml_small_dir)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    log, cat = data.log, data.catalog
    assert len(log) == 100836 and log.n_users == 610 and len(cat) == 9742 and log.n_items == 9742
    assert log.feedback_range == (0.5, 5.0)
    assert float(log.feedback.min()) == 0.5 and float(log.feedback.max()) == 5.0
    assert log.user_ids[:3].tolist() == [1, 2, 3]
    toy = int(cat.index_of(1))
    assert cat.titles[toy] == "Toy Story (1995)"
    assert cat.tags[toy] == ("Adventure", "Animation", "Children", "Comedy", "Fantasy")
    assert cat.descriptions[toy].startswith("Toy Story (1995). Genres: Adventure, Animation")
    assert "Tags:" in cat.descriptions[toy] and "pixar" in cat.descriptions[toy]
    # movie 60756 (Step Brothers) carries "funny" in tags.csv
    assert "funny" in cat.descriptions[int(cat.index_of(60756))]
    # titles with commas inside quotes survive
    assert any("," in t for t in cat.titles)
    assert "(no genres listed)" not in cat.tag_vocabulary()
    assert data.report.rows_read == data.report.rows_kept == 100836
    assert data.report.dropped == {}
    # sorted by user then time
    assert np.all(np.diff(log.users) >= 0)
    same = np.diff(log.users) == 0
    assert np.all(np.diff(log.timestamps)[same] >= 0)


def test_ml_100k(ml_100k_dir: Path) -> None:
    start = time.perf_counter()
    data = load_movielens(ml_100k_dir)
    assert time.perf_counter() - start < 2.0
    log, cat = data.log, data.catalog
    assert len(log) == 100000 and log.n_users == 943 and len(cat) == 1682
    assert log.feedback_range == (1.0, 5.0)
    assert cat.titles[int(cat.index_of(1))] == "Toy Story (1995)"
    assert cat.tags[0] == ("Animation", "Children's", "Comedy")
    # Latin-1 titles decode (no replacement characters, accented letters present)
    assert not any("\ufffd" in t for t in cat.titles)
    assert any(ch in t for t in cat.titles for ch in "éèáóíñ")
    assert data.user_features is not None and data.user_features.shape[0] == 943
    assert data.user_features.dtype == np.float32
    assert np.allclose(data.user_features[:, 2:].sum(axis=1), 1.0)
    assert data.user_features[0, 1] == 1.0  # user 1 is 'M'


@pytest.mark.parametrize("folder", ["ml-latest-small", "ml-100k"])
def test_load_dataset_auto_detects_movielens(folder: str, ml_small_dir: Path) -> None:
    path = ml_small_dir.parent / folder
    assert detect_kind(path) == "movielens"
    data = load_dataset(path)
    assert len(data.log) == (100836 if folder == "ml-latest-small" else 100000)
    assert load_dataset(path, kind="movielens").log.fingerprint() == data.log.fingerprint()


def _write_ml1m(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    movies = [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Jumanji (1995)::Adventure|Children's|Fantasy",
        "3::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi",
        "4::Misérables, Les (1995)::Drama|Musical",
    ]
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    ratings = [
        "1::1::5::978300760",
        "1::3::3::978302109",
        "1::4::4::978301968",
        "2::2::4::978300275",
        "2::1::5::978824291",
        "2::1::5::978824291",
        "3::3::1::978300000",
    ]
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n")
    users = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::55117"]
    (folder / "users.dat").write_text("\n".join(users) + "\n")


def test_ml_1m_layout(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    _write_ml1m(folder)
    data = load_dataset(folder)
    log, cat = data.log, data.catalog
    assert len(cat) == 4 and log.n_users == 3
    assert len(log) == 6
    assert data.report.rows_read == 7
    assert data.report.dropped == {"exact duplicate (user, item, timestamp, feedback) rows": 1}
    assert "1 exact duplicate" in str(data.report)
    assert cat.titles[2] == "Star Wars: Episode IV - A New Hope (1977)"
    assert cat.titles[3] == "Misérables, Les (1995)"
    assert cat.tags[2] == ("Action", "Adventure", "Fantasy", "Sci-Fi")
    assert log.feedback_range == (1.0, 5.0)
    assert data.user_features is not None and data.user_features.shape == (3, 2 + 21)
    assert data.user_features[1, 0] == pytest.approx(1.0)  # age code 56 / 56
    assert data.user_features[:, 1].tolist() == [0.0, 1.0, 1.0]


def test_kuairec_fixture(kuairec_dir: Path) -> None:
    data = load_kuairec(kuairec_dir)
    log, cat = data.log, data.catalog
    assert log.name == "kuairec-small"
    assert len(cat) == 8 and log.n_items == 8
    assert data.report.rows_read == 24 and len(log) == 23
    assert data.report.dropped == {"rows without a timestamp": 1}
    assert log.n_users == 4 and log.user_ids.tolist() == [14, 19, 21, 23]
    assert log.feedback_range[0] == 0.0 and log.feedback_range[1] == pytest.approx(float(log.feedback.max()))
    assert log.timestamps.min() > 1_500_000_000
    i109 = int(cat.index_of(109))
    assert cat.tags[i109] == ("27", "9")
    assert cat.titles[i109] == "Easy noodles in 5 minutes"
    assert "Food > Home cooking" in cat.descriptions[i109]
    assert "Cover text: Cooking at home" in cat.descriptions[i109]
    assert cat.titles[int(cat.index_of(148))] == "video 148"
    big = load_kuairec(kuairec_dir / "data", matrix="big")
    assert big.log.name == "kuairec-big" and len(big.log) == 24 and big.log.n_users == 3
    plain = load_kuairec(kuairec_dir, captions=False)
    assert plain.catalog.titles[i109] == "video 109"
    assert detect_kind(kuairec_dir) == "kuairec"
    assert load_dataset(kuairec_dir, matrix="big").log.fingerprint() == big.log.fingerprint()
    with pytest.raises(ValueError, match="matrix"):
        load_kuairec(kuairec_dir, matrix="medium")


def test_kuairand_fixture(kuairand_dir: Path) -> None:
    data = load_kuairand(kuairand_dir)
    log, cat = data.log, data.catalog
    assert log.name == "kuairand-pure"
    assert len(cat) == 7 and data.report.rows_read == 32 and len(log) == 32
    assert set(np.unique(log.feedback).tolist()) <= {0.0, 1.0}
    assert log.feedback_range == (0.0, 1.0)
    raw = pd.read_csv(kuairand_dir / "data" / "log_standard_4_08_to_4_21_pure.csv")
    assert log.timestamps.min() == raw["time_ms"].min() // 1000
    assert cat.tags[int(cat.index_of(2))] == ("10", "34")
    assert cat.tags[int(cat.index_of(5))] == ()
    assert "Tags: 10, 34" in cat.descriptions[int(cat.index_of(2))]
    assert any("log_random" in note for note in data.report.notes)
    with_random = load_kuairand(kuairand_dir / "data", feedback="is_like", include_random=True)
    assert len(with_random.log) == 38
    durations = load_kuairand(kuairand_dir, feedback="play_time_ms")
    assert durations.log.feedback_range[1] == float(durations.log.feedback.max())
    assert detect_kind(kuairand_dir) == "kuairand"
    # the folder above KuaiRand-Pure/ is accepted when it holds a single data set
    assert detect_kind(kuairand_dir.parent) == "kuairand"
    assert load_kuairand(kuairand_dir.parent).log.fingerprint() == data.log.fingerprint()
    assert len(load_dataset(kuairand_dir).log) == 32
    with pytest.raises(ValueError, match="is_click"):
        load_kuairand(kuairand_dir, feedback="stars")


def _interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": ["u1", "u1", "u2", "u2", "u3"],
            "sku": [7, 9, 7, 11, 9],
            "clicked": [1, 0, 1, 1, 0],
            "when": ["2024-01-01 10:00", "2024-01-01 09:00", "2024-01-02", "2024-01-03", "2024-01-04"],
        }
    )


def test_generic_csv_without_items(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    _interactions().to_csv(path, index=False)
    data = load_table(path, user="uid", item="sku", feedback="clicked", timestamp="when")
    log, cat = data.log, data.catalog
    assert cat.item_ids.tolist() == [7, 9, 11] and cat.titles == ["item 7", "item 9", "item 11"]
    assert log.user_ids.tolist() == ["u1", "u2", "u3"]
    # u1's 09:00 click on 9 comes before the 10:00 click on 7
    assert log.items[:2].tolist() == [1, 0]
    assert log.timestamps[0] == int(pd.Timestamp("2024-01-01 09:00").timestamp())
    assert log.feedback_range == (0.0, 1.0)
    assert log.name == "clicks"
    no_time = load_table(path, user="uid", item="sku", feedback="clicked")
    assert no_time.log.timestamps.tolist() == [0, 1, 2, 3, 4]
    assert any("row order" in n for n in no_time.report.notes)
    assert load_dataset(path, user="uid", item="sku", feedback="clicked").log.n_users == 3


def test_generic_parquet_with_items(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    log_path = tmp_path / "clicks.parquet"
    frame = _interactions()
    frame["when"] = pd.to_datetime(frame["when"], format="mixed")
    frame.to_parquet(log_path)
    items_path = tmp_path / "items.csv"
    pd.DataFrame(
        {
            "id": [11, 9, 7, 5],
            "name": ["Lamp", "Desk", "Chair", "Rug"],
            "cats": ["home|light", "office", "", "home"],
        }
    ).to_csv(items_path, index=False)
    data = load_dataset(
        log_path,
        user="uid",
        item="sku",
        feedback="clicked",
        timestamp="when",
        items_path=items_path,
        item_id="id",
        title="name",
        tags="cats",
        feedback_range=(0, 1),
    )
    cat = data.catalog
    assert cat.item_ids.tolist() == [11, 9, 7, 5] and len(cat) == 4 and data.log.n_items == 4
    assert cat.tags[0] == ("home", "light") and cat.tags[2] == ()
    assert cat.descriptions[0] == "Lamp. Tags: home, light."
    assert cat.titles[int(cat.index_of(7))] == "Chair"
    assert data.log.items.tolist()[:2] == [1, 2]


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_dataset(tmp_path, kind="netflix")
    for kind in DATASET_KINDS:
        assert kind in str(info.value)
    with pytest.raises(FileNotFoundError) as missing:
        load_dataset(tmp_path / "nowhere")
    text = str(missing.value)
    assert "grouplens.org/datasets/movielens" in text and "kuairec.com" in text and "kuairand.com" in text
    with pytest.raises(FileNotFoundError, match="grouplens"):
        load_movielens(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="MovieLens"):
        load_movielens(tmp_path)
    with pytest.raises(ValueError, match="cannot tell"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"kuairec\.com"):
        load_kuairec(tmp_path)
    with pytest.raises(FileNotFoundError, match="log_standard"):
        load_kuairand(tmp_path)
