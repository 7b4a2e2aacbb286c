"""Tests of the ialp.data containers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ialp.data import DataFormatError, InteractionLog, ItemCatalog, LoadReport, LoggedData


def _catalog() -> ItemCatalog:
    return ItemCatalog(
        item_ids=np.array([10, 20, 30, 40]),
        titles=["a", "b", "c", "d"],
        descriptions=["A.", "B.", "C.", "D."],
        tags=[("x",), ("y", "x"), (), ("z",)],
    )


def _log(name: str = "toy") -> InteractionLog:
    # deliberately unsorted: user 1 then user 0, times out of order
    return InteractionLog(
        users=np.array([1, 1, 0, 0, 0, 1, 2]),
        items=np.array([0, 1, 2, 3, 0, 2, 1]),
        feedback=np.array([1, 2, 3, 4, 5, 1, 2]),
        timestamps=np.array([50, 10, 30, 20, 10, 40, 5]),
        user_ids=np.array([100, 200, 300]),
        feedback_range=(1, 5),
        name=name,
        n_items=4,
    )


def test_catalog_index_of_and_tags() -> None:
    cat = _catalog()
    assert len(cat) == 4
    assert cat.item_ids.dtype == np.int64
    assert cat.index_of([30, 10]).tolist() == [2, 0]
    assert int(cat.index_of(40)) == 3
    with pytest.raises(KeyError, match="99"):
        cat.index_of([10, 99, 98])
    assert cat.tag_vocabulary() == ["x", "y", "z"]
    assert cat.tag_matrix().tolist() == [
        [True, False, False],
        [True, True, False],
        [False, False, False],
        [False, False, True],
    ]


def test_catalog_string_ids_and_validation() -> None:
    cat = ItemCatalog(
        np.array(["b", "a"]), ["B", "A"], ["B", "A"], [(), ()], media={"image": ["b.png", None]}
    )
    assert cat.item_ids.dtype == object
    assert cat.index_of(["a", "b"]).tolist() == [1, 0]
    with pytest.raises(KeyError, match="'c'"):
        cat.index_of("c")
    with pytest.raises(ValueError, match="duplicate"):
        ItemCatalog(np.array([1, 1]), ["a", "b"], ["a", "b"], [(), ()])
    with pytest.raises(ValueError, match="titles"):
        ItemCatalog(np.array([1, 2]), ["a"], ["a", "b"], [(), ()])
    with pytest.raises(ValueError, match="media"):
        ItemCatalog(np.array([1, 2]), ["a", "b"], ["a", "b"], [(), ()], media={"image": [None]})


def test_log_is_sorted_typed_and_read_only() -> None:
    log = _log()
    assert log.users.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert log.timestamps.tolist() == [10, 20, 30, 10, 40, 50, 5]
    assert log.items.tolist() == [0, 3, 2, 1, 2, 0, 1]
    assert log.feedback.tolist() == [5, 4, 3, 2, 1, 1, 2]
    assert log.users.dtype == np.int64 and log.items.dtype == np.int64 and log.timestamps.dtype == np.int64
    assert log.feedback.dtype == np.float32
    assert log.n_users == 3 and log.n_items == 4 and len(log) == 7
    assert log.feedback_range == (1.0, 5.0)
    with pytest.raises(ValueError):
        log.items[0] = 1
    histories = log.user_histories()
    assert [h.tolist() for h in histories] == [[0, 3, 2], [1, 2, 0], [1]]


def test_log_orders_timestamp_ties_by_row_order() -> None:
    # user 0 rated items 3, 1, 2 in that row order at the same second: the item index must not reorder them
    log = InteractionLog(np.array([0, 0, 0, 0]), np.array([3, 1, 2, 0]), np.ones(4), np.array([7, 7, 7, 1]),
                         np.array([9]), (1, 5), "ties")
    assert log.user_histories()[0].tolist() == [0, 3, 1, 2]


def test_log_validation_and_inferred_items() -> None:
    log = InteractionLog(
        np.array([0]), np.array([4]), np.array([1.0]), np.array([0]), np.array([7]), (0, 1), "x"
    )
    assert log.n_items == 5
    with pytest.raises(ValueError, match="items"):
        InteractionLog(
            np.array([0]), np.array([4]), np.array([1.0]), np.array([0]), np.array([7]), (0, 1), "x", 3
        )
    with pytest.raises(ValueError, match="users"):
        InteractionLog(
            np.array([1]), np.array([0]), np.array([1.0]), np.array([0]), np.array([7]), (0, 1), "x"
        )
    with pytest.raises(ValueError, match="feedback"):
        InteractionLog(
            np.array([0]), np.array([0]), np.array([1.0, 2.0]), np.array([0]), np.array([7]), (0, 1), "x"
        )


def test_fingerprint_is_stable_and_sensitive() -> None:
    a, b = _log(), _log()
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    assert a.fingerprint() != _log("other").fingerprint()
    changed = InteractionLog(
        a.users, a.items, a.feedback + 1, a.timestamps, a.user_ids, a.feedback_range, a.name, 4
    )
    assert changed.fingerprint() != a.fingerprint()
    # pinned: the digest must not change across processes, platforms or runs (it is a cache key)
    assert a.fingerprint() == "e80f1041f4ffabdb29e2f2c2f9003d34457cb9c8a0d91f04a142fe6f818159fe"


def test_split_by_time() -> None:
    log = _log()
    train, test = log.split_by_time(0.34)
    assert train.name == "toy:train" and test.name == "toy:test"
    assert len(train) + len(test) == len(log)
    # users 0 and 1 have 3 interactions -> last one held out; user 2 has one -> kept in train
    assert test.users.tolist() == [0, 1]
    assert test.timestamps.tolist() == [30, 50]
    assert train.n_users == test.n_users == 3 and train.n_items == 4
    _, test2 = log.split_by_time(0.01)  # at least one held out per user with >= 2
    assert len(test2) == 2
    train3, _ = log.split_by_time(0.99)  # at least one kept
    assert np.bincount(train3.users, minlength=3).tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        log.split_by_time(1.0)


def test_logged_data_checks_sizes_and_report_text() -> None:
    report = LoadReport("some/path", 8, 7, {"exact duplicate rows": 1}, ["a note"])
    data = LoggedData(_log(), _catalog(), report, user_features=np.zeros((3, 2)))
    assert data.user_features is not None and data.user_features.dtype == np.float32
    text = str(report)
    assert "some/path" in text and "1 exact duplicate rows" in text and "a note" in text
    assert "nothing dropped" in str(LoadReport("p", 1, 1))
    with pytest.raises(ValueError, match="catalogue"):
        LoggedData(_log(), ItemCatalog(np.array([1]), ["a"], ["a"], [()]), report)
    with pytest.raises(ValueError, match="user_features"):
        LoggedData(_log(), _catalog(), report, user_features=np.zeros((2, 2)))


def test_data_format_error_fields_and_pickle() -> None:
    err = DataFormatError("dir/ratings.csv", "expected a number, got 'x'", line=5, column="rating")
    assert isinstance(err, ValueError)
    assert (err.path, err.line, err.column) == ("dir/ratings.csv", 5, "rating")
    assert str(err) == "dir/ratings.csv, line 5, column 'rating': expected a number, got 'x'"
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.line == 5 and again.column == "rating"
