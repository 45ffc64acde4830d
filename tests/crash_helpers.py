"""What tests/test_regional_crash.py runs in child processes: make a regional cube, or overwrite a store.

The children are forked by multiprocessing's forkserver, which imports this module (and with it xarray,
zarr, dask and platform_lib) once, so a child starts in milliseconds instead of seconds. A child sets the
environment it is given (``ESDL_CRASH_AT`` / ``ESDL_STOP_AT``, see ``platform_lib.storage.crash_point``)
before it starts, and the test process calls the same functions for "the next call".
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array  # noqa: F401 - imported here, once, rather than in each child (xarray and dask do it lazily)
import distributed  # noqa: F401 - dask's scheduler looks for a distributed client
import xarray as xr
import zarr  # noqa: F401
from xarray.backends import list_engines
from xarray.namedarray.parallelcompat import list_chunkmanagers

from platform_lib.regional import make_regional_cube
from platform_lib.storage import write_zarr_atomic

# xarray finds its backends and chunk managers through package entry points, once per process: here, in the
# forkserver, before any child is forked (neither starts a thread)
list_engines()
list_chunkmanagers()

#: every cube of the crash tests is this region of the smallest demo cube, so all hold the same data
REGION = dict(
    bbox=(-10, 35, 30, 60), time_range=("2003-06-01", "2003-08-31"), variables=["air_temperature_2m"]
)


def make(source: str | os.PathLike[str], team: str | os.PathLike[str], name: str) -> Path:
    """``make_regional_cube`` of :data:`REGION` from the store ``source`` into the team folder ``team``."""
    return make_regional_cube(
        xr.open_zarr(source),
        name=name,
        team_dir=team,
        catalog_path=Path(team) / "catalog.yaml",
        progress=False,
        **REGION,
    )


def make_in_child(source: str, team: str, name: str, env: dict[str, str]) -> None:
    """:func:`make` in a child process, with ``env`` (the crash or stop point) set first."""
    os.environ.update(env)
    make(source, team, name)


def overwrite_in_child(source: str, target: str, env: dict[str, str]) -> None:
    """Overwrite the store ``target`` with ``source`` (``write_zarr_atomic(overwrite=True)``), with ``env``
    set first."""
    os.environ.update(env)
    write_zarr_atomic(xr.open_zarr(source), target, overwrite=True, progress=False)
