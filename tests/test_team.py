"""The team catalog (register, remove, list; concurrent writers) and shared notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

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
