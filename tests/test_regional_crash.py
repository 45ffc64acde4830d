"""A regional cube killed at any point of its making loses no file, blocks no name and leaves no temporary
behind; a live write in another process keeps its temporary.

Makers run in child processes (multiprocessing's forkserver, see ``crash_helpers.py``) on real Zarr stores
and are killed with SIGKILL, so no clean-up runs, as with the OOM killer or a power cut: at a named point
(``ESDL_CRASH_AT``, ``platform_lib.storage.CRASH_POINTS``), or at a moment seen from outside (the write's
temporary appears in the team folder, then a drawn delay). The next call, ``make_regional_cube`` with the
same name in this process, must then

- find every earlier cube still listed in the team catalog, opening to the same data;
- not be blocked: it makes the cube if the killed call had not published it, or it finds the killed
  call's finished cube registered (from the store's own attributes, the entry the killed call would have
  written) and says so;
- leave no temporary (``.NAME.tmp-*``, ``.NAME.old-*``, their ``.writing`` markers, catalog temporaries).

All cubes of one team are the same region of the smallest demo cube, so "the same data" is one array.
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import multiprocessing.forkserver
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr
from crash_helpers import REGION, make, make_in_child, overwrite_in_child
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from platform_lib.cli import main as esdl
from platform_lib.demo import make_demo_cube
from platform_lib.errors import CatalogWarning, EsdlError
from platform_lib.regional import reconcile_team_cubes
from platform_lib.storage import (
    CRASH_VARIABLE,
    STOP_VARIABLE,
    UNMARKED_STALE_S,
    WRITING_SUFFIX,
    remove_stale_temporaries,
    write_zarr_atomic,
)
from platform_lib.team import list_team_cubes, team_cube_entries

#: children fork from a server that imported crash_helpers (xarray, zarr, platform_lib) once
FORKS = multiprocessing.get_context("forkserver")
#: where a maker can die, and whether its cube is published (the store renamed into place) by then
MAKER_POINTS = {
    "atomic:started": False,
    "zarr:metadata-written": False,
    "atomic:before-rename": False,
    "regional:stored": True,
    "team:catalog-write": True,
    "text:before-rename": True,  # during the catalog write: its temporary is on disk, not renamed
}
VARIABLE = REGION["variables"][0]
#: what a write leaves beside its target: .NAME.tmp-TOKEN, .NAME.old-TOKEN, .NAME.tmp-TOKEN.writing, and
#: write_text_atomic's .NAME.tmp-XXXXXXXX (not the lock files .NAME.lock, whatever the name)
LEFTOVER = re.compile(r"^\..+\.(tmp|old)-[^./]+(\.writing)?$")
SERIAL = count()

#: cube names, with the fragments a temporary's name is made of (".zarr", ".tmp-", ".old-", ".writing")
names = st.lists(
    st.sampled_from(["a", "b7", ".", "-", "_", "tmp-", "old-", ".zarr", ".writing", ".tmp-", ".old-"]),
    max_size=5,
).map(lambda parts: f"k{''.join(parts)}-{next(SERIAL)}")


# ------------------------------------------------------------------------------------------- helpers
def in_child(target, *args) -> multiprocessing.process.BaseProcess:
    child = FORKS.Process(target=target, args=args)
    child.start()
    return child


@contextlib.contextmanager
def running(target, *args) -> Iterator[multiprocessing.process.BaseProcess]:
    """A child running ``target(*args)``, killed if it is still alive at the end (a failed test)."""
    child = in_child(target, *args)
    try:
        yield child
    finally:
        child.kill()  # SIGKILL, unless it has finished
        child.join(10)


def killed_at(point: str, source: Path, team: Path, name: str) -> None:
    """Run a maker in a child that kills itself at ``point``; check that it died there."""
    child = in_child(make_in_child, str(source), str(team), name, {CRASH_VARIABLE: point})
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the child did not die at {point} (exit code {child.exitcode})"


def leftovers(team: Path) -> list[str]:
    """Temporaries (and their markers) in the team folder and its cubes folder."""
    found = [p for d in (team, team / "cubes") if d.is_dir() for p in d.iterdir()]
    return sorted(p.name for p in found if LEFTOVER.match(p.name))


def temporaries_of(team: Path, name: str) -> list[Path]:
    pattern = f".{glob.escape(name)}.zarr.tmp-*"
    return [p for p in (team / "cubes").glob(pattern) if not p.name.endswith(WRITING_SUFFIX)]


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.001)


class Reference:
    """The data every cube of the team holds (with a short repr for hypothesis' reports)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __repr__(self) -> str:
        return f"Reference({VARIABLE}, shape {self.values.shape})"


def nothing_lost(team: Path, earlier: set[str], reference: Reference) -> dict[str, dict]:
    """Every earlier cube is still in the team catalog and opens to the data every cube here holds; no
    temporary is left. Returns the entries."""
    entries = team_cube_entries(team / "catalog.yaml")
    assert earlier <= set(entries), f"lost from the team catalog: {sorted(earlier - set(entries))}"
    for name, entry in entries.items():
        data = xr.open_zarr(entry["args"]["urlpath"], chunks=None)[VARIABLE].values
        np.testing.assert_array_equal(data, reference.values, err_msg=f"cube {name!r}")
    assert leftovers(team) == []
    return entries


def comparable(entry: dict, name: str) -> dict:
    """An entry without what differs between two cubes of the same request: the name, when it was made
    and registered, and who recovered it."""
    meta = {
        k: v
        for k, v in entry["metadata"].items()
        if k not in ("registered_at", "recovered_by", "recovered_at")
    }
    meta["provenance"] = {k: v for k, v in meta["provenance"].items() if k != "created_at"}
    text = repr({**entry, "metadata": meta, "args": {}})
    return {"entry": text.replace(f"cube {name} from", "cube NAME from")}


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def forkserver() -> None:
    """Start the forkserver with crash_helpers imported. The server imports its preload modules with the
    environment's PYTHONPATH (not this process's sys.path), and skips one it cannot find: hence tests/ on
    it, for the server only."""
    FORKS.set_forkserver_preload(["crash_helpers"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
        )
        multiprocessing.forkserver.ensure_running()
    check = "import sys; sys.exit(0 if 'crash_helpers' in sys.modules else 3)"
    preloaded = in_child(exec, check)
    preloaded.join(30)
    assert preloaded.exitcode == 0, "the forkserver did not import crash_helpers"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The smallest demo cube (10 degrees, 2003) as a Zarr store the children read."""
    path = tmp_path_factory.mktemp("source") / "demo.zarr"
    return write_zarr_atomic(make_demo_cube(resolution=10.0, years=(2003, 2003)), path, progress=False)


@pytest.fixture(scope="module")
def team(tmp_path_factory, source) -> Path:
    """One team folder for the whole module: every kill happens beside the cubes made before it."""
    team = tmp_path_factory.mktemp("team")
    make(source, team, "reference")
    return team


@pytest.fixture(scope="module")
def reference(team) -> Reference:
    return Reference(xr.open_zarr(team / "cubes" / "reference.zarr", chunks=None)[VARIABLE].values)


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("point", MAKER_POINTS)
@settings(max_examples=2)
@given(name=names)
def test_a_maker_killed_at_a_named_point_loses_nothing_and_blocks_no_name(
    source: Path, team: Path, reference: Reference, point: str, name: str
):
    catalog = team / "catalog.yaml"
    earlier = set(list_team_cubes(catalog))
    killed_at(point, source, team, name)
    # what the kill left is what that point means
    target = team / "cubes" / f"{name}.zarr"
    assert target.exists() == MAKER_POINTS[point]
    assert name not in list_team_cubes(catalog)
    if point in ("zarr:metadata-written", "atomic:before-rename"):
        assert [(t / "zarr.json").is_file() for t in temporaries_of(team, name)] == [True]
    if point == "text:before-rename":
        assert [p.name for p in team.glob(".catalog.yaml.tmp-*")] != []
    # the next call with the same name: made now, or the killed call's finished cube registered
    if MAKER_POINTS[point]:
        with pytest.raises(EsdlError, match="killed after its store .* was finished .* registered now"):
            make(source, team, name)
    else:
        make(source, team, name)
    entries = nothing_lost(team, earlier | {name}, reference)
    if MAKER_POINTS[point]:  # registered from its own attributes: the entry its call would have written
        assert comparable(entries[name], name) == comparable(entries["reference"], "reference")
        assert entries[name]["metadata"]["recovered_by"]


@settings(max_examples=6, phases=[Phase.generate])
@given(name=names, delay=st.floats(0.0, 0.4))
def test_a_maker_killed_at_a_moment_seen_from_outside_loses_nothing_and_blocks_no_name(
    source: Path, team: Path, reference: Reference, name: str, delay: float
):
    catalog = team / "catalog.yaml"
    earlier = set(list_team_cubes(catalog))
    with running(make_in_child, str(source), str(team), name, {}) as child:
        wait_for(lambda: temporaries_of(team, name) or not child.is_alive(), "the write's temporary")
        time.sleep(delay)
        child.kill()  # SIGKILL, unless it has finished
        child.join(60)
    target = team / "cubes" / f"{name}.zarr"
    killed = child.exitcode == -signal.SIGKILL
    event(
        "finished before the kill"
        if not killed
        else "killed after registering"
        if name in list_team_cubes(catalog)
        else "killed after the rename"
        if target.exists()
        else "killed while writing"
    )
    try:
        make(source, team, name)
    except EsdlError as exc:  # only because the killed call had finished the cube, now listed
        assert "already taken" in str(exc)
    nothing_lost(team, earlier | {name}, reference)


def test_a_live_write_in_another_process_keeps_its_temporary(source: Path, team: Path, reference: Reference):
    catalog = team / "catalog.yaml"
    earlier = set(list_team_cubes(catalog))
    # another member's write, alive but stopped in the middle of writing its store (SIGSTOP)
    stopped = {STOP_VARIABLE: "zarr:metadata-written"}
    with running(make_in_child, str(source), str(team), "live", stopped) as child:
        live_write_kept(child, source, team)
    nothing_lost(team, earlier | {"live", "meanwhile"}, reference)


def live_write_kept(child: multiprocessing.process.BaseProcess, source: Path, team: Path) -> None:
    catalog = team / "catalog.yaml"
    wait_for(
        lambda: psutil.Process(child.pid).status() == psutil.STATUS_STOPPED or not child.is_alive(),
        "the writer to stop",
    )
    [tmp] = temporaries_of(team, "live")
    marker = tmp.with_name(tmp.name + WRITING_SUFFIX)
    assert (tmp / "zarr.json").is_file() and marker.is_file()
    # meanwhile this process makes a cube and reconciles (which removes dead writes' temporaries)
    killed_at("atomic:before-rename", source, team, "dead")
    assert temporaries_of(team, "dead")
    make(source, team, "meanwhile")
    assert reconcile_team_cubes(team, catalog) == []
    assert remove_stale_temporaries(team / "cubes") == []
    assert temporaries_of(team, "dead") == []  # the dead write's temporary is gone ...
    assert tmp.is_dir() and (tmp / "zarr.json").is_file() and marker.is_file()  # ... the live one's kept
    assert "live" not in list_team_cubes(catalog)
    # the live write goes on and publishes its cube
    os.kill(child.pid, signal.SIGCONT)
    child.join(60)
    assert child.exitcode == 0


DAMAGES = {
    "no root metadata": lambda store: (store / "zarr.json").unlink(),
    "root metadata cut short": lambda store: (store / "zarr.json").write_text('{"attributes": {"esdl_'),
    "no variable metadata": lambda store: (store / VARIABLE / "zarr.json").unlink(),
    "no coordinate metadata": lambda store: (store / "lat" / "zarr.json").unlink(),
    "no provenance": lambda store: (store / "zarr.json").write_text(
        (store / "zarr.json").read_text().replace('"esdl_source_cube"', '"source_cube"')
    ),
}


@pytest.fixture(scope="module")
def orphan(source: Path, team: Path, tmp_path_factory) -> Path:
    """A finished store whose call was killed before registering it, kept outside the team folder."""
    killed_at("regional:stored", source, team, "orphan")
    kept = tmp_path_factory.mktemp("orphan") / "orphan.zarr"
    shutil.move(team / "cubes" / "orphan.zarr", kept)
    return kept


@settings(max_examples=12)
@given(damage=st.sampled_from([None, *DAMAGES]), name=names)
def test_only_a_finished_store_is_registered(
    source: Path, team: Path, orphan: Path, damage: str | None, name: str
):
    catalog = team / "catalog.yaml"
    store = team / "cubes" / f"{name}.zarr"
    shutil.copytree(orphan, store)
    if damage is None:  # finished: registered by the next call, from its own attributes
        assert reconcile_team_cubes(team, catalog) == [name]
        assert name in list_team_cubes(catalog)
        return
    DAMAGES[damage](store)
    try:
        assert reconcile_team_cubes(team, catalog) == []
        assert name not in list_team_cubes(catalog)
        # the name stays refused, saying what is wrong with the store and what to do
        with pytest.raises(EsdlError) as refused:
            make(source, team, name)
        message = str(refused.value)
        assert str(store) in message and "not in the team catalog" in message
        assert re.search(r"never registered by itself\. Choose another name, or remove that store", message)
    finally:
        shutil.rmtree(store)


def test_the_team_listing_registers_a_finished_cube_whose_call_was_killed(
    source: Path, team: Path, reference: Reference, monkeypatch, capsys
):
    killed_at("regional:stored", source, team, "listed")
    monkeypatch.setenv("ESDL_TEAM_DIR", str(team))
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(team / "catalog.yaml"))
    assert esdl(["cubes", "regional", "--list"]) == 0
    out = capsys.readouterr().out
    assert "registered 'listed'" in out and re.search(r"^listed ", out, re.M)
    assert "listed" in nothing_lost(team, {"reference", "listed"}, reference)


def test_a_store_that_cannot_be_registered_does_not_stop_the_others(
    source: Path, team: Path, orphan: Path, reference: Reference, monkeypatch, tmp_path: Path
):
    """Killed calls' finished cubes, one of whose names the shared catalog took meanwhile: that one is
    reported and left alone, the other registered, and the next call (another name) works."""
    for name in ("shadowed", "fine"):
        shutil.copytree(orphan, team / "cubes" / f"{name}.zarr")
    shared = tmp_path / "shared.yaml"
    shared.write_text(
        f"sources:\n  shadowed:\n    driver: zarr\n    args: {{urlpath: {source}}}\n    description: shared\n"
    )
    monkeypatch.setenv("ESDL_CATALOG", str(shared))
    with pytest.warns(
        CatalogWarning,
        match=r"shadowed\.zarr .* registering it as 'shadowed' failed: .*shared.* left in place",
    ):
        make(source, team, "next-call")
    names = list_team_cubes(team / "catalog.yaml")
    assert "fine" in names and "next-call" in names and "shadowed" not in names
    assert (team / "cubes" / "shadowed.zarr" / "zarr.json").is_file()  # never deleted: someone decides
    with pytest.raises(EsdlError, match="'shadowed' is already taken"), pytest.warns(CatalogWarning):
        make(source, team, "shadowed")
    shutil.rmtree(team / "cubes" / "shadowed.zarr")  # (the other tests' team has no unregistered store)
    nothing_lost(team, {"reference", "fine", "next-call"}, reference)


# ------------------------------------------------------------------------- the atomic write underneath
@pytest.mark.parametrize(
    "point, survivor",
    [("atomic:before-rename", "old"), ("atomic:swapping", "new"), ("atomic:swapped", "new")],
)
def test_an_overwrite_killed_between_its_renames_loses_no_file(tmp_path: Path, point: str, survivor: str):
    target = tmp_path / "cube.zarr"
    data = {"old": 1.0, "new": 2.0}
    for which, value in data.items():
        ds = xr.Dataset({"v": (("time",), np.full(4, value, dtype="float32"))})
        write_zarr_atomic(ds, tmp_path / f"{which}.zarr", progress=False)
    shutil.copytree(tmp_path / "old.zarr", target)
    child = in_child(overwrite_in_child, str(tmp_path / "new.zarr"), str(target), {CRASH_VARIABLE: point})
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert target.exists() == (point != "atomic:swapping")  # between the renames: only the temporaries
    # the next write of that name finishes or undoes the killed one first
    with pytest.raises(EsdlError, match="already exists"):
        write_zarr_atomic(xr.open_zarr(tmp_path / "old.zarr"), target, progress=False)
    assert float(xr.open_zarr(target)["v"].mean()) == data[survivor]
    assert [p.name for p in tmp_path.iterdir() if LEFTOVER.match(p.name)] == []


def test_a_temporary_without_a_marker_is_judged_by_its_newest_change(tmp_path: Path):
    """Temporaries written before markers existed: removed only when nothing in them changed for an hour
    (a write still running changes its chunks); a store moved aside by an overwrite is put back."""
    long_ago = time.time() - UNMARKED_STALE_S - 60
    running = tmp_path / ".a.zarr.tmp-1e9ac701"
    (running / "v" / "c").mkdir(parents=True)
    (running / "v" / "c" / "0").write_bytes(b"chunk")
    for path in (running, running / "v", running / "v" / "c"):
        os.utime(path, (long_ago, long_ago))  # only the chunk just written is new
    assert remove_stale_temporaries(tmp_path) == [] and running.is_dir()
    os.utime(running / "v" / "c" / "0", (long_ago, long_ago))
    assert remove_stale_temporaries(tmp_path) == [running] and not running.exists()
    aside = tmp_path / ".b.zarr.old-1e9ac702"  # its target is missing: the only copy of cube b
    aside.mkdir()
    os.utime(aside, (long_ago, long_ago))
    assert remove_stale_temporaries(tmp_path) == [] and (tmp_path / "b.zarr").is_dir()
