"""Shared fixtures: a small real demo cube in both chunkings, and a catalog that points at it.

The root ``conftest.py`` gives every test session its own temporary state folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

#: the small cube every test shares: 5 degrees, 12 years (2001-2012 holds four injected events)
TEST_RESOLUTION = 5.0
TEST_YEARS = (2001, 2012)


@pytest.hookimpl(tryfirst=True)  # before the fixtures are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``browser`` test skips, with the one reason every browser test gives, where Chromium is missing:
    before its fixtures start a platform it could not look at."""
    if item.get_closest_marker("browser") is not None:
        from platform_helpers import CHROMIUM, NO_CHROMIUM

        if not Path(CHROMIUM).exists():
            pytest.skip(NO_CHROMIUM)


@pytest.fixture(scope="session")
def demo_cubes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"ts": path, "map": path}`` of a small demo cube written with the real generator."""
    from platform_helpers import let_accounts_pass

    from platform_lib.demo import write_demo_cubes

    data = let_accounts_pass(tmp_path_factory.mktemp("esdl-data"))  # people's own accounts read it too
    return write_demo_cubes(data, resolution=TEST_RESOLUTION, years=TEST_YEARS, progress=False)


@pytest.fixture(scope="session")
def demo_catalog(demo_cubes: dict[str, Path]) -> Iterator[Path]:
    """A catalog file (entries ``esdc-demo-ts`` / ``esdc-demo-map``) for the small cube.

    From the first test that asks for it to the end of the session ``ESDL_CATALOG`` names it and
    ``ESDL_DATA_DIR`` its data folder, so ``list_cubes()`` and ``open_cube()`` with no catalog argument
    find the test cube (session-scoped, as module-scoped platform fixtures hand both to their
    processes); the environment is restored when the session ends.
    """
    from platform_lib.catalog import dump_catalog
    from platform_lib.demo import demo_catalog_sources
    from platform_lib.storage import write_text_atomic

    data = demo_cubes["ts"].parent
    sources = demo_catalog_sources(TEST_RESOLUTION, TEST_YEARS, data_ref="{{ CATALOG_DIR }}")
    path = write_text_atomic(data / "catalog.yaml", dump_catalog(sources, title="test catalog"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESDL_CATALOG", str(path))
        mp.setenv("ESDL_DATA_DIR", str(data))
        yield path


# Hypothesis: the "ci" profile (the default) runs each property on the same few hundred generated inputs
# every time, with no deadline (a slow machine is not a failure) and no example database on disk;
# HYPOTHESIS_PROFILE=explore draws new, more inputs on each run.
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, database=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
