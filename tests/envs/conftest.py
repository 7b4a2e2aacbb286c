"""Environment test cases: every registered id with the data it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO.parent / "shared" / "data" / "movielens"
FIXTURES = REPO / "tests" / "data" / "fixtures"

ENV_CASES: dict[str, dict[str, Any]] = {
    "synthetic": {"id": "ialp/Synthetic-v0", "kwargs": {"n_items": 200}},
    "movielens-latest-small": {"id": "ialp/MovieLens-v0", "kwargs": {"data_dir": str(MOVIELENS / "ml-latest-small")}},
    "movielens-100k": {"id": "ialp/MovieLens-v0", "kwargs": {"data_dir": str(MOVIELENS / "ml-100k")}},
    "kuairec": {"id": "ialp/KuaiRec-v0", "kwargs": {"data_dir": str(FIXTURES / "kuairec")}},
    "kuairand": {"id": "ialp/KuaiRand-v0", "kwargs": {"data_dir": str(FIXTURES / "kuairand" / "KuaiRand-Pure")}},
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fitted models go to a fresh cache directory for the test session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("IALP_CACHE_DIR", str(tmp_path_factory.mktemp("ialp-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def env_cases() -> dict[str, dict[str, Any]]:
    return ENV_CASES


@pytest.fixture(params=sorted(ENV_CASES))
def env_case(request: pytest.FixtureRequest, env_cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    case = env_cases[request.param]
    data_dir = case["kwargs"].get("data_dir")
    assert data_dir is None or Path(data_dir).exists(), f"test data missing: {data_dir}"
    return case
