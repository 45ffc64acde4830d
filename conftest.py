"""Root pytest configuration.

- Every test session (tests/ and the doctests in platform_lib/) runs with its own temporary state
  folder, so nothing touches the repository's ``.esdl-state/``; ``ESDL_STATE_DIR`` names it until the
  session ends (unless it named a folder already).
- Docstring examples run against the shipped catalog, whatever a test fixture set in the environment.
- Every session has its own temporary root (``/tmp/esdl-pytest-XXXX/``, removed when the session
  passes) instead of pytest's shared ``/tmp/pytest-of-<user>/``: pytest makes that one 0700 at the start
  of each session, which would cut the people's OS accounts of a session already running (their servers
  and clusters work in its folders) off from their files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem


@pytest.hookimpl(tryfirst=True)  # before pytest's own tmp_path plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is None:
        config.option.basetemp = str(Path(tempfile.mkdtemp(prefix="esdl-pytest-")) / "tmp")
        config.stash[_OWN_TEMP_ROOT] = Path(config.option.basetemp).parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = session.config.stash.get(_OWN_TEMP_ROOT, None)
    if root is not None and exitstatus == 0:  # a failed session's files are left to look at
        shutil.rmtree(root, ignore_errors=True)


_OWN_TEMP_ROOT = pytest.StashKey[Path]()


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
