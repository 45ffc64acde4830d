"""Root pytest configuration.

- Every test session (tests/ and the doctests in platform_lib/) runs with its own temporary state
  folder, so nothing touches the repository's ``.esdl-state/``.
- Docstring examples run against the shipped catalog, whatever a test fixture set in the environment.
"""

import os
import tempfile

import pytest
from _pytest.doctest import DoctestItem

os.environ.setdefault("ESDL_STATE_DIR", tempfile.mkdtemp(prefix="esdl-test-state-"))


@pytest.fixture(autouse=True)
def _doctests_see_the_shipped_catalog(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, DoctestItem):
        for var in ("ESDL_CATALOG", "ESDL_TEAM_CATALOG", "ESDL_DATA_DIR", "ESDL_TEAM_DIR"):
            monkeypatch.delenv(var, raising=False)
