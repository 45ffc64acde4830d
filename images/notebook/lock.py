"""Regenerate ``requirements.lock``: the exact versions of the user/worker image, resolved from the
project's own dependencies (pyproject.toml: the base list plus the extras in :data:`IMAGE_EXTRAS`).

Run from the repository root after changing dependencies (CI fails while the lock is stale):

    .venv/bin/python images/notebook/lock.py            # resolve and write the lock
    .venv/bin/python images/notebook/lock.py --check    # exit 1 if the lock is stale

The resolver is ``uv pip compile`` (installed by ``make setup``) for Linux x86_64, CPython 3.11. PyTorch
is pinned by ``constraints.txt`` and locked as its CPU build (``+cpu``): taken from ``/opt/wheels`` where
that folder exists, else from PyTorch's CPU index. The lock's header records a digest of its inputs, so a
change of pyproject.toml or constraints.txt is noticed without resolving again.

>>> sorted(IMAGE_EXTRAS)
['hub', 'ml', 'viz']
>>> inputs_digest() == inputs_digest()
True
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = Path(__file__).resolve().parent / "requirements.lock"
PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "constraints.txt"
#: what the image holds besides the base dependencies (not `deploy` or `dev`: admins' and CI's tools)
IMAGE_EXTRAS = ("hub", "viz", "ml")
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
LOCAL_WHEELS = Path("/opt/wheels")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DIGEST_PREFIX = "# inputs-sha256: "


def image_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement strings the image is resolved from: base dependencies plus the image extras.

    >>> any(r.startswith("jupyterlab") for r in image_requirements())
    True
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    return requirements


def inputs_digest(pyproject: Path = PYPROJECT, constraints: Path = CONSTRAINTS) -> str:
    """A digest of everything the lock is resolved from (requirements, constraints, target)."""
    lines = [ln.strip() for ln in constraints.read_text().splitlines()] if constraints.is_file() else []
    payload = {
        "requirements": sorted(image_requirements(pyproject)),
        "constraints": sorted(ln for ln in lines if ln and not ln.startswith("#")),
        "python": PYTHON,
        "platform": PLATFORM,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    """The inputs digest written in the lock's header (``None`` if missing)."""
    if not lock.is_file():
        return None
    for line in lock.read_text().splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line.removeprefix(DIGEST_PREFIX).strip()
    return None


def pins(lock: Path = LOCK) -> dict[str, str]:
    """``{normalized name: version}`` of every ``name==version`` line of the lock."""
    out = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version or ";" in version:
            raise ValueError(f"{lock}: {line!r} is not an exact pin name==version")
        out[_normalize(name)] = version.strip()
    return out


def _normalize(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def _uv() -> str:
    candidates = [Path(sys.executable).parent / "uv", shutil.which("uv")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("uv is not installed: run `make setup` (or pip install uv)")


def write_lock() -> Path:
    """Resolve with ``uv pip compile`` and write the lock (atomically) with the inputs digest."""
    tmp = LOCK.with_name(f".{LOCK.name}.tmp")
    command = [
        _uv(), "pip", "compile", str(PYPROJECT.relative_to(REPO)),
        *[arg for extra in IMAGE_EXTRAS for arg in ("--extra", extra)],
        "--python-version", PYTHON, "--python-platform", PLATFORM,
        "--custom-compile-command", "python images/notebook/lock.py",
        "--output-file", str(tmp),
    ]  # fmt: skip
    if CONSTRAINTS.is_file():
        command += ["--constraint", str(CONSTRAINTS.relative_to(REPO))]
    if LOCAL_WHEELS.is_dir():
        command += ["--find-links", str(LOCAL_WHEELS)]
    else:
        command += ["--extra-index-url", TORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]
    subprocess.run(command, cwd=REPO, check=True)
    text = tmp.read_text()
    header = (
        "# The user/worker image's exact versions (images/notebook/Dockerfile installs exactly these).\n"
        f"# Resolved from pyproject.toml: dependencies + extras {', '.join(IMAGE_EXTRAS)}; Python {PYTHON},"
        f" {PLATFORM}.\n{DIGEST_PREFIX}{inputs_digest()}\n"
    )
    tmp.write_text(header + text)
    os.replace(tmp, LOCK)
    return LOCK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the lock is stale; resolve nothing")
    args = parser.parse_args(argv)
    if args.check:
        if recorded_digest() != inputs_digest():
            print(
                f"{LOCK} is stale against pyproject.toml/constraints.txt: run python images/notebook/lock.py"
            )
            return 1
        print(f"{LOCK} is up to date ({len(pins())} pins)")
        return 0
    path = write_lock()
    print(f"wrote {path} ({len(pins(path))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
