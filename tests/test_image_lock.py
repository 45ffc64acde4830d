"""The user/worker image without a Docker engine: its lock is fresh against pyproject.toml and pins what
pyproject asks for; the image's smoke checks pass in environments really installed from that lock (the
worker's and the notebook's dependency closures, installed with uv from its cache), and the versions
that must match between a notebook and its workers do."""

from __future__ import annotations

import importlib.util
import json
import re
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
        "jupyter-resource-usage",
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
    assert "USER ${NB_UID}:${NB_GID}" in dockerfile and "ARG NB_UID=1000" in dockerfile  # non-root
    # two targets, the ML one on top of the analysis one (its layers shared)
    assert "FROM user AS esdl-user\n" in dockerfile and "FROM user AS esdl-user-ml\n" in dockerfile
    assert (
        'HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["esdl-healthcheck"]'
        in dockerfile
    )
    for label in ("source", "revision", "version"):
        assert dockerfile.count(f"org.opencontainers.image.{label}=") == 2, label
    # the base is digest-pinned by default, and the CA bundle is a secret, never a layer
    assert re.search(r"^ARG BASE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    assert "--mount=type=secret,id=ca" in dockerfile and "COPY /etc/ssl" not in dockerfile
    for name in ("requirements.lock", "requirements-ml.lock", "healthcheck.py", "smoke_check.py", "slim.sh"):
        assert (IMAGE / name).is_file(), name


def test_the_build_context_holds_only_what_the_images_copy():
    """.dockerignore: an allow-list; every COPY source of the Dockerfile is allowed, nothing of the
    development environment, the state folder or the test artefacts is."""
    ignore = (repo_root() / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in ignore if ln.strip() and not ln.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    dockerfile = (IMAGE / "Dockerfile").read_text()
    sources = set()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources |= set(line.split()[1:-1])
    assert sources <= allowed, sources - allowed
    for kept_out in (".venv", ".venv-hub", "node_modules", ".esdl-state", "tests", "bench", ".git"):
        assert kept_out not in allowed
    assert {"**/.esdl-state", "**/__pycache__"} <= set(patterns)


def test_locks_are_fresh_against_pyproject():
    for path in (lock.LOCK, lock.ML_LOCK):
        assert lock.recorded_digest(path) == lock.inputs_digest(), (
            f"{path.relative_to(repo_root())} is stale against pyproject.toml/constraints.txt:"
            " run `make lock` and commit the locks"
        )


def test_locks_pin_exactly_what_pyproject_asks_for():
    for image, extras in {"esdl-user": lock.USER_EXTRAS, "esdl-user-ml": lock.IMAGE_EXTRAS}.items():
        pins = lock.image_pins(image)
        wrong = []
        for text in lock.image_requirements(extras=extras) + lock.build_requirements():
            req = Requirement(text)
            name = lock._normalize(req.name)
            if name not in pins:
                wrong.append(f"{image}: {req.name} is not in its locks")
            elif not req.specifier.contains(pins[name], prereleases=True):
                wrong.append(f"{image}: {req.name}=={pins[name]} does not satisfy {req.specifier}")
        assert wrong == []
    assert lock.image_pins("esdl-user-ml")["torch"] == "2.13.0+cpu"  # the pinned CPU build, not the newest


def test_the_locks_split_one_resolution():
    """The ML lock adds packages and changes none of the user lock's; torch and keras are only there,
    and the analysis image has none of torch's or keras's own dependencies."""
    user, ml = lock.pins(lock.LOCK), lock.pins(lock.ML_LOCK)
    assert set(user).isdisjoint(ml)
    assert {"torch", "keras", "sympy", "optree"} <= set(ml)
    assert {"jupyterlab", "dask", "distributed", "dask-gateway", "xarray", "zarr", "setuptools"} <= set(user)
    # besides the ml extra's own requirements, every package of the ML lock is there because another
    # package of the ML lock needs it
    roots = {lock._normalize(Requirement(r).name) for r in lock.image_requirements(extras=lock.ML_EXTRAS)}
    roots -= {lock._normalize(Requirement(r).name) for r in lock.image_requirements(extras=())}
    via = required_by(lock.ML_LOCK)
    assert roots == {"torch", "keras"}
    assert {name for name in set(ml) - roots if not via[name] & set(ml)} == set()


def test_every_pin_has_a_hash_and_nothing_else_is_needed():
    for path in (lock.LOCK, lock.ML_LOCK):
        text = path.read_text()
        assert "--index-url" not in text and "--extra-index-url" not in text  # no second index
        for name, digests in lock.hashes(path).items():
            assert digests and all(len(d) == 64 for d in digests), f"{path.name}: {name} has no sha256"
    # torch's hash is the one of the CPU wheel the lock was resolved from (where that wheel is here)
    wheel = (
        next(lock.LOCAL_WHEELS.glob("torch-2.13.0+cpu-*.whl"), None) if lock.LOCAL_WHEELS.is_dir() else None
    )
    if wheel is not None:
        import hashlib

        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in lock.hashes(lock.ML_LOCK)["torch"]


def test_the_ml_lock_names_where_torch_comes_from_as_the_dockerfile_does():
    assert lock.torch_wheels() == lock.TORCH_WHEELS
    dockerfile = (IMAGE / "Dockerfile").read_text()
    assert f"ARG TORCH_WHEELS={lock.TORCH_WHEELS}" in dockerfile
    # torch's source is used for the ML lock only, as --find-links, never as an index
    assert "--extra-index-url" not in dockerfile and "--index-url" not in dockerfile
    installs = [ln for ln in dockerfile.splitlines() if "pip install" in ln and "-e /opt/esdl/src" not in ln]
    assert len(installs) == 2 and all(
        "--require-hashes --no-deps --only-binary=:all:" in ln for ln in installs
    )
    assert dockerfile.count('--find-links "${TORCH_WHEELS}"') == 1


def test_staleness_is_detected(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = (repo_root() / "pyproject.toml").read_text()
    pyproject.write_text(text)
    assert lock.inputs_digest(pyproject) == lock.inputs_digest()
    pyproject.write_text(text.replace('"tqdm>=4.66",', '"tqdm>=4.66",\n  "rich>=13",', 1))
    assert lock.inputs_digest(pyproject) != lock.recorded_digest()
    # moving an extra between the images changes the inputs too
    pyproject.write_text(text)
    saved = lock.USER_EXTRAS
    try:
        lock.USER_EXTRAS = ("hub",)
        assert lock.inputs_digest(pyproject) != lock.recorded_digest()
    finally:
        lock.USER_EXTRAS = saved
    bad = tmp_path / "bad.lock"
    bad.write_text("dask>=2025.1\n")
    with pytest.raises(ValueError, match="is not an exact pin"):
        lock.pins(bad)
    hashed = tmp_path / "hashed.lock"
    hashed.write_text("dask==2026.1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n")
    assert lock.pins(hashed) == {"dask": "2026.1.0"} and lock.hashes(hashed) == {"dask": ["a" * 64]}


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
