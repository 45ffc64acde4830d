"""The user/worker image without a Docker engine: its lock is fresh against pyproject.toml and pins what
pyproject asks for; the image's smoke checks pass in environments really installed from that lock (the
worker's and the notebook's dependency closures, installed with uv from its cache), and the versions
that must match between a notebook and its workers do."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from platform_lib.paths import repo_root

IMAGE = repo_root() / "images" / "notebook"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"esdl_image_{name}", IMAGE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = load_script("lock")
smoke = load_script("smoke_check")

#: the roots of each role's environment: a worker needs just what must match its notebook
ROOTS = {
    "worker": list(smoke.SAME_EVERYWHERE),
    "notebook": [
        "jupyterlab",
        "jupyterhub",
        "ipykernel",
        "ipywidgets",
        "dask-labextension",
        "dask-gateway",
        "dask",
        "distributed",
        "numpy",
        "pandas",
        "xarray",
        "zarr",
    ],
}


def test_the_image_files_exist():
    dockerfile = (IMAGE / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "esdl-smoke-check --role worker" in dockerfile
    assert "USER ${NB_UID}" in dockerfile and "NB_UID=1000" in dockerfile  # non-root
    assert (IMAGE / "requirements.lock").is_file()


def test_lock_is_fresh_against_pyproject():
    assert lock.recorded_digest() == lock.inputs_digest(), (
        "images/notebook/requirements.lock is stale against pyproject.toml/constraints.txt:"
        " run `.venv/bin/python images/notebook/lock.py` and commit the lock"
    )


def test_lock_pins_exactly_what_pyproject_asks_for():
    pins = lock.pins()
    wrong = []
    for text in lock.image_requirements():
        req = Requirement(text)
        name = lock._normalize(req.name)
        if name not in pins:
            wrong.append(f"{req.name} is not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            wrong.append(f"{req.name}=={pins[name]} does not satisfy {req.specifier}")
    assert wrong == []
    assert pins["torch"].startswith("2.13.0")  # the pinned CPU build, not whatever is newest


def test_staleness_is_detected(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = (repo_root() / "pyproject.toml").read_text()
    pyproject.write_text(text)
    assert lock.inputs_digest(pyproject) == lock.inputs_digest()
    pyproject.write_text(text.replace('"tqdm>=4.66",', '"tqdm>=4.66",\n  "rich>=13",', 1))
    assert lock.inputs_digest(pyproject) != lock.recorded_digest()
    bad = tmp_path / "bad.lock"
    bad.write_text("dask>=2025.1\n")
    with pytest.raises(ValueError, match="is not an exact pin"):
        lock.pins(bad)


def required_by(lock_path: Path) -> dict[str, set[str]]:
    """``{package: {packages that require it}}`` from the lock's ``# via`` annotations."""
    via: dict[str, set[str]] = {}
    current = None
    for line in lock_path.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            current = lock._normalize(line.split("==")[0])
            via[current] = set()
        elif current and line.strip().startswith("#"):
            words = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if words and "(" not in words:
                via[current].add(lock._normalize(words))
    return via


def closure(roots: list[str]) -> set[str]:
    via = required_by(lock.LOCK)
    needed = {lock._normalize(r) for r in roots}
    while True:
        more = {pkg for pkg, parents in via.items() if pkg not in needed and parents & needed}
        if not more:
            return needed
        needed |= more


def uv() -> str:
    path = Path(sys.executable).parent / "uv"
    found = str(path) if path.exists() else shutil.which("uv")
    assert found, "uv is needed to install from the lock (make setup installs it)"
    return found


@pytest.fixture(scope="module")
def role_envs(tmp_path_factory):
    """One venv per role, installed with --no-deps from the lock's pins of that role's closure."""
    pins = lock.pins()
    envs = {}
    for role, roots in ROOTS.items():
        folder = tmp_path_factory.mktemp(f"image-{role}")
        requirements = folder / "requirements.txt"
        requirements.write_text("".join(f"{name}=={pins[name]}\n" for name in sorted(closure(roots))))
        venv = folder / "venv"
        subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run(  # from uv's cache (warm after `make setup`), hard-linked where it can
            [uv(), "pip", "install", "-q", "--python", str(python), "--no-deps", "-r", str(requirements)],
            check=True,
            timeout=600,
        )
        check = subprocess.run(
            [uv(), "pip", "check", "--python", str(python)], capture_output=True, text=True
        )
        envs[role] = (python, check)
    return envs


def start_smoke(python: Path, *args: str) -> subprocess.Popen:
    command = [str(python), str(IMAGE / "smoke_check.py"), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_smoke(process: subprocess.Popen) -> tuple[int, str, dict]:
    stdout, stderr = process.communicate(timeout=600)
    report = json.loads(stdout.strip().splitlines()[-1])
    return process.returncode, stdout + stderr, report


def run_smoke(python: Path, *args: str) -> tuple[int, str, dict]:
    return finish_smoke(start_smoke(python, *args))


def test_each_roles_closure_from_the_lock_is_consistent(role_envs):
    for role, (_, check) in role_envs.items():
        assert check.returncode == 0, f"{role}: {check.stdout}{check.stderr}"


def test_smoke_checks_pass_on_both_roles_with_equal_versions(role_envs, tmp_path):
    notebooks = repo_root() / "notebooks"
    if not list(notebooks.glob("**/*.ipynb")):
        notebooks = tmp_path / "notebooks"  # the curated notebooks are not in the repository yet
        notebooks.mkdir()
        cell = {"cell_type": "markdown", "metadata": {}, "source": ["# ESDL"]}
        doc = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
        (notebooks / "intro.ipynb").write_text(json.dumps(doc))
    # both roles at once, as in a cluster (and faster on two cores)
    worker_run = start_smoke(role_envs["worker"][0], "--role", "worker")
    notebook_run = start_smoke(role_envs["notebook"][0], "--role", "notebook", "--notebooks", str(notebooks))
    code, out, worker = finish_smoke(worker_run)
    assert code == 0, out
    code, out, notebook = finish_smoke(notebook_run)
    assert code == 0, out
    pins = lock.pins()
    for name in smoke.SAME_EVERYWHERE:
        assert worker["versions"][name] == notebook["versions"][name] == pins[lock._normalize(name)], name
    shared = set(worker["versions"]) & set(notebook["versions"])
    assert {n: worker["versions"][n] for n in shared} == {n: notebook["versions"][n] for n in shared}


def test_smoke_checks_fail_when_something_is_missing(role_envs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, report = run_smoke(role_envs["worker"][0], "--role", "notebook", "--notebooks", str(empty))
    assert code == 1 and report["ok"] is False
    assert "FAILED: import jupyterlab: ModuleNotFoundError" in out
    assert "FAILED: JupyterLab extension dask-labextension is not installed" in out
    assert f"FAILED: no curated notebooks (*.ipynb) in {empty}" in out
