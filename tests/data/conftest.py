"""Fixtures for the ialp.data tests: the shared real data sets and the committed small fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_dir():
        pytest.fail(f"shared data folder {path} is missing; tests expect ../shared/data beside the checkout")
    return path


@pytest.fixture(scope="session")
def ml_small_dir() -> Path:
    """The ml-latest-small folder of the shared data."""
    return _shared("movielens", "ml-latest-small")


@pytest.fixture(scope="session")
def ml_100k_dir() -> Path:
    """The ml-100k folder of the shared data."""
    return _shared("movielens", "ml-100k")


@pytest.fixture(scope="session")
def kuairec_dir() -> Path:
    """A small KuaiRec folder in the published layout (``data/...``)."""
    return FIXTURES / "kuairec"


@pytest.fixture(scope="session")
def kuairand_dir() -> Path:
    """A small KuaiRand-Pure folder in the published layout (``data/...``)."""
    return FIXTURES / "kuairand" / "KuaiRand-Pure"
