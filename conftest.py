"""Root pytest configuration.

- Every test session (tests/ and the doctests in platform_lib/) runs with its own temporary state
  folder, so nothing touches the repository's ``.esdl-state/``; ``ESDL_STATE_DIR`` names it until the
  session ends (unless it named a folder already).
- Docstring examples run against the shipped catalog, whatever a test fixture set in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session", autouse=True)
def _session_state_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # session-scoped autouse: set up before any other fixture and any test or doctest runs; nothing
    # reads ESDL_STATE_DIR at import (collection) time, state_dir() reads it when called
    with pytest.MonkeyPatch.context() as mp:
        if "ESDL_STATE_DIR" not in os.environ:
            mp.setenv("ESDL_STATE_DIR", str(tmp_path_factory.mktemp("esdl-state")))
        yield Path(os.environ["ESDL_STATE_DIR"])


@pytest.fixture(autouse=True)
def _doctests_see_the_shipped_catalog(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(request.node, DoctestItem):
        for var in ("ESDL_CATALOG", "ESDL_TEAM_CATALOG", "ESDL_DATA_DIR", "ESDL_TEAM_DIR"):
            monkeypatch.delenv(var, raising=False)
