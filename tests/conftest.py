"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def module_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fitted MF models go to one fresh directory shared by the tests of a module (``pytestmark`` opts in)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("IALP_CACHE_DIR", str(tmp_path_factory.mktemp("ialp-cache")))
    yield
    mp.undo()
