"""The team catalog (register, remove, list; concurrent writers) and shared notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_lib.errors import EsdlError
from platform_lib.team import (
    check_cube_name,
    list_shared_notebooks,
    list_team_cubes,
    register_cube,
    remove_cube,
    share_notebook,
    strip_outputs,
    team_catalog_path,
    team_cube_entries,
)


@pytest.fixture()
def team(tmp_path, monkeypatch):
    """A fresh team folder and catalog, named by the environment as in a user session."""
    folder = tmp_path / "team"
    monkeypatch.setenv("ESDL_TEAM_DIR", str(folder))
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(folder / "catalog.yaml"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    return folder


def _notebook(outputs: bool = True) -> dict:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "widgets": {"state": {"x": 1}},
        },
        "cells": [
            {"cell_type": "markdown", "id": "goal", "metadata": {}, "source": "# Goal\nA map."},
            {
                "cell_type": "code",
                "id": "run",
                "metadata": {"execution": {"iopub.execute_input": "2026-01-01"}},
                "source": "print(42)",
                "execution_count": 7,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "42\n"}] if outputs else [],
            },
        ],
    }


def test_register_list_remove_roundtrip(team):
    store = team / "cubes" / "alps.zarr"
    store.mkdir(parents=True)
    register_cube("alps", store, {"title": "Alps", "bbox": (5.0, 44.0, 16.0, 48.0)})
    register_cube("remote", "s3://bucket/x.zarr", {"title": "Remote"})
    assert list_team_cubes() == ["alps", "remote"]

    doc = yaml.safe_load(team_catalog_path().read_text())
    entry = doc["sources"]["alps"]
    assert entry["driver"] == "zarr"
    # stores inside the team folder are written relative to the catalog, so the folder can move
    assert entry["args"]["urlpath"] == "{{ CATALOG_DIR }}/cubes/alps.zarr"
    assert doc["sources"]["remote"]["args"]["urlpath"] == "s3://bucket/x.zarr"
    assert entry["metadata"]["bbox"] == [5.0, 44.0, 16.0, 48.0]  # tuples become plain YAML lists
    assert entry["metadata"]["registered_by"] == "alice"
    assert team_cube_entries()["alps"]["args"]["urlpath"] == str(store)

    remove_cube("alps")
    assert list_team_cubes() == ["remote"]
    assert not store.exists(), "a store inside the team folder is deleted with its entry"
    remove_cube("remote")  # a remote store is never deleted; only the entry goes
    assert list_team_cubes() == []


def test_remove_keeps_data_outside_team_folder(team, tmp_path):
    outside = tmp_path / "elsewhere.zarr"
    outside.mkdir()
    register_cube("ext", outside)
    remove_cube("ext")
    assert outside.exists()


def test_name_taken_and_bad_names(team):
    register_cube("alps", team / "a.zarr")
    before = team_catalog_path().read_text()
    with pytest.raises(EsdlError, match="'alps' is already taken"):
        register_cube("alps", team / "b.zarr")
    assert team_catalog_path().read_text() == before, "a refused registration changes nothing"
    register_cube("alps", team / "b.zarr", overwrite=True)
    assert team_cube_entries()["alps"]["args"]["urlpath"].endswith("b.zarr")
    for bad in ("Alps", "a b", "-x", "", "x" * 64, "a/b"):
        with pytest.raises(EsdlError, match="invalid cube name"):
            check_cube_name(bad)
    with pytest.raises(EsdlError, match="no cube 'alsp'.*Did you mean 'alps'"):
        remove_cube("alsp")


def test_malformed_catalog_is_a_clear_error(team):
    team.mkdir(parents=True, exist_ok=True)
    team_catalog_path().write_text("sources: [1, 2]\n")
    with pytest.raises(EsdlError, match="'sources:' mapping"):
        list_team_cubes()
    team_catalog_path().write_text("sources: {a: [\n")
    with pytest.raises(EsdlError, match="not valid YAML"):
        register_cube("b", team / "b.zarr")


def test_a_broken_team_catalog_never_hides_the_shared_cubes(team):
    from platform_lib.catalog import list_cubes
    from platform_lib.errors import CatalogWarning

    shared = list_cubes()  # the session's shared catalog(s), before the team has any
    team.mkdir(parents=True, exist_ok=True)
    team_catalog_path().write_text("sources: {a: [\n")  # a member's half-finished edit
    with pytest.warns(CatalogWarning, match="the team catalog was skipped: .*not valid YAML"):
        assert list_cubes() == shared


bad_entries = st.one_of(
    st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries({"args": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)}),
    st.fixed_dictionaries({"driver": st.just("zarr"), "args": st.text(max_size=4)}),
)  # fmt: skip
names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.lists(names, max_size=4, unique=True), bad=st.dictionaries(names, bad_entries, max_size=3))
def test_bad_entries_are_skipped_one_by_one_and_writes_refuse_to_spread_them(team, good, bad):
    from platform_lib.catalog import list_cubes
    from platform_lib.errors import CatalogWarning

    bad = {k: v for k, v in bad.items() if k not in good}
    team_catalog_path().unlink(missing_ok=True)
    shared = set(list_cubes())  # the session's shared catalog(s) alone
    team.mkdir(parents=True, exist_ok=True)
    sources = {n: {"driver": "zarr", "args": {"urlpath": f"/data/{n}.zarr"}} for n in good}
    text = yaml.safe_dump({"sources": {**sources, **bad}})
    team_catalog_path().write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = set(list_cubes())
        team_names = set(list_team_cubes())
    said = " ".join(str(w.message) for w in caught if issubclass(w.category, CatalogWarning))
    assert team_names == set(good)
    assert found == shared | set(good)  # the good team entries (shared names win, with a warning)
    for name in bad:
        assert f"entry {name!r} skipped" in said
    for name in set(good) & shared:
        assert f"entry {name!r} skipped: it is already defined" in said
    if bad:
        with pytest.raises(EsdlError, match="was not changed: its entry .* fix or remove that entry"):
            register_cube("fresh-cube", team / "fresh.zarr")
        assert team_catalog_path().read_text() == text  # nothing lost, nothing spread
    team_catalog_path().unlink()


WRITER = textwrap.dedent(
    """
    import sys
    from platform_lib.team import register_cube
    who, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        register_cube(f"{who}-{i:03d}", f"/data/{who}-{i}.zarr", {"who": who, "i": i})
    """
)


def test_two_processes_registering_concurrently_lose_nothing(team):
    n = 25
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, who, str(n)], env=env, stderr=subprocess.PIPE)
        for who in ("alice", "bob")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    names = list_team_cubes()
    assert len(names) == 2 * n
    assert names == sorted([f"alice-{i:03d}" for i in range(n)] + [f"bob-{i:03d}" for i in range(n)])
    leftovers = [p.name for p in team.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_strip_outputs_removes_outputs_counts_and_widget_state():
    nb = _notebook()
    out = strip_outputs(nb)
    code = out["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert "execution" not in code["metadata"]
    assert "widgets" not in out["metadata"]
    assert out["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["cells"][1]["outputs"], "the input notebook is not modified"


def test_share_notebook_strips_and_lists(team, tmp_path):
    src = tmp_path / "heatwave.ipynb"
    src.write_text(json.dumps(_notebook()))
    original = src.read_text()
    shared = share_notebook(src)
    assert shared == team / "notebooks" / "heatwave.ipynb"
    assert src.read_text() == original
    nb = json.loads(shared.read_text())
    assert nb["cells"][1]["outputs"] == [] and nb["cells"][1]["source"] == "print(42)"
    assert nb["metadata"]["esdl"]["shared_by"] == "alice"
    # nbformat agrees it is a valid notebook
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(shared.read_text(), as_version=4))

    listed = list_shared_notebooks()
    assert [n["name"] for n in listed] == ["heatwave.ipynb"]
    assert listed[0]["shared_by"] == "alice" and listed[0]["shared_at"]

    with pytest.raises(EsdlError, match="already shared"):
        share_notebook(src)
    share_notebook(src, name="heatwave-v2")
    share_notebook(src, overwrite=True)
    assert [n["name"] for n in list_shared_notebooks()] == ["heatwave-v2.ipynb", "heatwave.ipynb"]


def test_share_notebook_bad_input(team, tmp_path):
    with pytest.raises(EsdlError, match="does not exist"):
        share_notebook(tmp_path / "missing.ipynb")
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(EsdlError, match="expected a '.ipynb' file"):
        share_notebook(txt)
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(EsdlError, match="not a valid notebook"):
        share_notebook(broken)
    old = tmp_path / "old.ipynb"
    old.write_text(json.dumps({"nbformat": 3, "worksheets": []}))
    with pytest.raises(EsdlError, match="format 4"):
        share_notebook(old)
    assert list_shared_notebooks() == []


def _cli(*argv: str) -> int:
    """Run ``esdl share ...`` through its real parser."""
    import argparse

    from platform_lib.cli import share

    parser = argparse.ArgumentParser(prog="esdl")
    share.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_share_cli(team, tmp_path, capsys):
    src = tmp_path / "drought.ipynb"
    src.write_text(json.dumps(_notebook()))
    assert _cli("share", "--list") == 0
    assert "no notebooks shared yet" in capsys.readouterr().out
    assert _cli("share", str(src)) == 0
    assert "(outputs stripped)" in capsys.readouterr().out
    assert _cli("share", "--list") == 0
    listing = capsys.readouterr().out
    assert "drought.ipynb" in listing and "alice" in listing
    with pytest.raises(EsdlError, match="already shared"):
        _cli("share", str(src))
    with pytest.raises(EsdlError, match="name the notebook"):
        _cli("share")
