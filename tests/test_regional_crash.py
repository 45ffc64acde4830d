"""A regional cube killed at any point of its write loses no file and blocks no name.

A child process makes a regional cube and is killed (SIGKILL: no clean-up runs, as with the OOM killer or
a power cut) at a named point (``ESDL_CRASH_AT``, see ``platform_lib.storage.crash_point``): while the
store is being written, when it is complete but not yet renamed into place, after the rename but before
the catalog registration, and when the catalog is about to be rewritten. The next call then finds every
earlier cube listed and readable, no temporary left, and the killed cube's name either free (it was never
published) or registered to the finished store (it was): never blocked. A live write in another process
keeps its temporary through all of this.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_lib.regional import make_regional_cube, reconcile_team_cubes
from platform_lib.storage import CRASH_VARIABLE
from platform_lib.team import list_team_cubes, team_cube_entries

REGION = dict(
    bbox=(-10, 35, 30, 60), time_range=("2003-06-01", "2003-08-31"), variables=["air_temperature_2m"]
)
#: where a write can die, and whether the cube is published (its store renamed into place) by then
POINTS = {
    "atomic:started": False,
    "atomic:before-rename": False,
    "regional:stored": True,
    "team:catalog-write": True,
}
CHILD = """
from platform_lib.regional import make_regional_cube
make_regional_cube("esdc-demo-ts", name={name!r}, team_dir={team!r}, catalog_path={catalog!r},
                   progress=False, **{region!r})
"""


def make(team: Path, name: str) -> Path:
    return make_regional_cube(
        "esdc-demo-ts", name=name, team_dir=team, catalog_path=team / "catalog.yaml", progress=False, **REGION
    )


def killed_at(point: str, team: Path, name: str) -> None:
    """Run make_regional_cube in a child that dies at ``point``; check that it did die there."""
    code = CHILD.format(name=name, team=str(team), catalog=str(team / "catalog.yaml"), region=REGION)
    env = {**os.environ, CRASH_VARIABLE: point}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def leftovers(team: Path) -> list[str]:
    return sorted(p.name for p in (team / "cubes").iterdir() if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def team(tmp_path_factory, demo_catalog) -> Path:
    team = tmp_path_factory.mktemp("team")
    make(team, "before")
    return team


@pytest.mark.parametrize("point", POINTS)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.from_regex(r"[a-z][a-z0-9]{2,8}", fullmatch=True))
def test_a_write_killed_anywhere_loses_nothing_and_blocks_no_name(team: Path, point: str, name: str):
    name = f"k-{name}"
    if name in list_team_cubes(team / "catalog.yaml"):
        return  # drawn before: the property was checked for this name
    killed_at(point, team, name)
    published = POINTS[point]
    assert (team / "cubes" / f"{name}.zarr").exists() == published
    # the next call on the team's cubes finishes what the killed one left
    reconcile_team_cubes(team, team / "catalog.yaml")
    assert leftovers(team) == []
    names = list_team_cubes(team / "catalog.yaml")
    assert "before" in names  # no earlier cube lost
    entries = team_cube_entries(team / "catalog.yaml")
    assert float(
        xr.open_zarr(entries["before"]["args"]["urlpath"])["air_temperature_2m"].mean()
    ) == pytest.approx(float(xr.open_zarr(team / "cubes" / "before.zarr")["air_temperature_2m"].mean()))
    if published:  # finished but unregistered: registered now, from the entry its store carries
        assert name in names
        cube = xr.open_zarr(entries[name]["args"]["urlpath"])
        assert cube.attrs["esdl_bbox"] == list(map(float, REGION["bbox"]))
        assert entries[name]["metadata"]["source"] == "regional subset of esdc-demo-ts"
    else:  # never published: the name is free, a new call makes it
        assert name not in names
        make(team, name)
        assert name in list_team_cubes(team / "catalog.yaml")


def test_a_live_write_keeps_its_temporary(team: Path):
    from platform_lib.storage import WRITING_SUFFIX

    code = textwrap.dedent(f"""
        import sys, time
        from platform_lib.storage import atomic_path
        with atomic_path({str(team / "cubes" / "live.zarr")!r}) as tmp:
            tmp.mkdir()
            print(tmp, flush=True)
            time.sleep(120)
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(writer.stdout.readline().strip())
        assert tmp.is_dir() and tmp.with_name(tmp.name + WRITING_SUFFIX).exists()
        reconcile_team_cubes(team, team / "catalog.yaml")  # another member's call meanwhile
        make(team, "meanwhile")
        assert tmp.is_dir(), "a live write's temporary was removed"
    finally:
        writer.kill()
        writer.wait()
    reconcile_team_cubes(team, team / "catalog.yaml")  # its writer is dead now: the temporary goes
    assert not tmp.exists() and leftovers(team) == []
    assert "live" not in list_team_cubes(team / "catalog.yaml")
