"""Regenerate the images' locks: the exact, hash-pinned versions of the two user/worker images, resolved
once from the project's own dependencies and split in two.

* ``requirements.lock`` -- ``esdl-user``: the base dependencies, the extras in :data:`USER_EXTRAS` and
  what building ``platform_lib`` needs (``[build-system] requires``).
* ``requirements-ml.lock`` -- what ``esdl-user-ml`` adds on top of it: the extras in :data:`ML_EXTRAS`
  (torch, keras) and the packages only they need. Its header names where torch's CPU build comes from
  (:data:`TORCH_WHEELS`, a wheel folder or page, passed to pip as ``--find-links`` for that lock only).

Run from the repository root after changing dependencies (the tests fail while a lock is stale):

    make lock                                           # = .venv/bin/python images/notebook/lock.py
    .venv/bin/python images/notebook/lock.py --check    # exit 1 if a lock is stale; resolves nothing

The resolver is ``uv pip compile --generate-hashes`` for Linux x86_64, CPython 3.11, keeping the
current pins where the inputs allow (``rm`` the locks first to take the newest). Everything is resolved
once (all image extras together); the user lock is then resolved again with that result as a
constraint, so both images share every version, and the ML lock is the difference. PyTorch is pinned by
``constraints.txt`` and locked as its CPU build (``+cpu``): taken from ``/opt/wheels`` where that folder
exists, else from PyTorch's CPU index. Each lock's header records a digest of the inputs, so a change of
pyproject.toml or constraints.txt is noticed without resolving again.

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
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCK = HERE / "requirements.lock"
ML_LOCK = HERE / "requirements-ml.lock"
PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "constraints.txt"
#: the analysis image's extras (not `deploy` or `dev`: admins' and CI's tools)
USER_EXTRAS = ("hub", "viz")
#: what the ML image adds
ML_EXTRAS = ("ml",)
IMAGE_EXTRAS = USER_EXTRAS + ML_EXTRAS
#: requirements of those extras that only the hub or the gateway runs (the embedded platform's own
#: processes; on Kubernetes, z2jh's and dask-gateway's images): not in the user images
HUB_SIDE = ("jupyterhub-nativeauthenticator", "jupyterhub-idle-culler", "dask-gateway-server")
#: the locks each image installs, in order
IMAGE_LOCKS = {"esdl-user": (LOCK,), "esdl-user-ml": (LOCK, ML_LOCK)}
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
LOCAL_WHEELS = Path("/opt/wheels")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: where the ML image's torch comes from unless the build is given a local wheel folder: the page of
#: PyTorch's CPU index that lists only torch's wheels (a --find-links source for torch, never an index
#: searched for every package); the Dockerfile's TORCH_WHEELS default is this same address
TORCH_WHEELS = f"{TORCH_CPU_INDEX}/torch/"
DIGEST_PREFIX = "# inputs-sha256: "
TORCH_WHEELS_PREFIX = "# torch-wheels: "


def image_requirements(pyproject: Path = PYPROJECT, extras: tuple[str, ...] = IMAGE_EXTRAS) -> list[str]:
    """The requirement strings the images are resolved from: base dependencies plus ``extras``, less
    what only the hub and the gateway run (:data:`HUB_SIDE`).

    >>> any(r.startswith("jupyterlab") for r in image_requirements())
    True
    >>> any(r.startswith("torch") for r in image_requirements(extras=USER_EXTRAS))
    False
    >>> [r for r in image_requirements() if r.startswith("jupyterhub-nativeauthenticator")]
    []
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return [r for r in dict.fromkeys(requirements) if _name(r) not in HUB_SIDE]


def _name(requirement: str) -> str:
    """The normalized project name of a requirement string."""
    return _normalize(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


def build_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """What building ``platform_lib`` needs (``[build-system] requires``): the image installs it without
    build isolation, from the lock, so these are locked too.

    >>> [r for r in build_requirements() if r.startswith("setuptools")]
    ['setuptools>=77']
    """
    return list(tomllib.loads(pyproject.read_text())["build-system"]["requires"])


def inputs_digest(pyproject: Path = PYPROJECT, constraints: Path = CONSTRAINTS) -> str:
    """A digest of everything the locks are resolved from (requirements, constraints, split, target)."""
    lines = [ln.strip() for ln in constraints.read_text().splitlines()] if constraints.is_file() else []
    payload = {
        "requirements": sorted(image_requirements(pyproject)),
        "user": sorted(image_requirements(pyproject, USER_EXTRAS)),
        "build": sorted(build_requirements(pyproject)),
        "constraints": sorted(ln for ln in lines if ln and not ln.startswith("#")),
        "python": PYTHON,
        "platform": PLATFORM,
        "torch_wheels": TORCH_WHEELS,
        "hashes": True,
        "hub_side": sorted(HUB_SIDE),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _header_value(lock: Path, prefix: str) -> str | None:
    if not lock.is_file():
        return None
    for line in lock.read_text().splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    return None


def recorded_digest(lock: Path = LOCK) -> str | None:
    """The inputs digest written in a lock's header (``None`` if missing)."""
    return _header_value(lock, DIGEST_PREFIX)


def torch_wheels(lock: Path = ML_LOCK) -> str | None:
    """Where the ML lock says torch's wheel comes from (``None`` if it says nothing).

    >>> torch_wheels() == TORCH_WHEELS
    True
    """
    return _header_value(lock, TORCH_WHEELS_PREFIX)


def _requirement_lines(text: str) -> list[str]:
    """The first line of each requirement of a pip requirements file (no comments, options, hashes)."""
    out = []
    for raw in text.splitlines():
        if not raw or raw[0].isspace() or raw.startswith(("#", "-")):
            continue
        out.append(raw.split("#", 1)[0].removesuffix("\\").strip())
    return out


def pins(lock: Path = LOCK) -> dict[str, str]:
    """``{normalized name: version}`` of every ``name==version`` requirement of a lock."""
    out = {}
    for line in _requirement_lines(lock.read_text()):
        name, sep, version = line.partition("==")
        if not sep or not version or ";" in version or " " in version.strip():
            raise ValueError(f"{lock}: {line!r} is not an exact pin name==version")
        out[_normalize(name)] = version.strip()
    return out


def hashes(lock: Path = LOCK) -> dict[str, list[str]]:
    """``{normalized name: [sha256 digests]}`` of a lock (what ``pip --require-hashes`` checks)."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in lock.read_text().splitlines():
        if raw and not raw[0].isspace() and not raw.startswith(("#", "-")):
            current = _normalize(raw.split("==", 1)[0])
            out[current] = []
        for word in raw.replace("\\", " ").split():
            if current and word.startswith("--hash=sha256:"):
                out[current].append(word.removeprefix("--hash=sha256:"))
    return out


def image_pins(image: str) -> dict[str, str]:
    """Every pin an image installs (its locks together).

    >>> image_pins("esdl-user-ml")["torch"].startswith("2.13.0")
    True
    >>> "torch" in image_pins("esdl-user")
    False
    """
    out: dict[str, str] = {}
    for lock in IMAGE_LOCKS[image]:
        out.update(pins(lock))
    return out


def _normalize(name: str) -> str:
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def _uv() -> str:
    candidates = [Path(sys.executable).parent / "uv", shutil.which("uv")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("uv is not installed: run `make setup` (or pip install uv)")


def _compile(extras: tuple[str, ...], output: Path, constraint: Path | None) -> None:
    """``uv pip compile`` the image requirements of ``extras`` and the build requirements into ``output``
    (the input file sits beside this script while uv runs, so that the ``# via`` lines name a stable path)."""
    source = HERE / f"{'-'.join(extras) or 'base'}.in"
    source.write_text("".join(f"{r}\n" for r in image_requirements(extras=extras) + build_requirements()))
    command = [
        _uv(), "pip", "compile", str(source.relative_to(REPO)),
        "--python-version", PYTHON, "--python-platform", PLATFORM,
        "--generate-hashes", "--no-header", "--quiet",
        "--output-file", str(output),
    ]  # fmt: skip
    for path in (CONSTRAINTS, constraint):
        if path is not None and path.is_file():
            command += ["--constraint", str(path)]
    if LOCAL_WHEELS.is_dir():
        command += ["--find-links", str(LOCAL_WHEELS)]
    else:
        command += ["--extra-index-url", TORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]
    try:
        subprocess.run(command, cwd=REPO, check=True)
    finally:
        source.unlink()


def _blocks(text: str, drop: str = "") -> dict[str, str]:
    """``{normalized name: its lines}`` of a compiled lock (requirement, hashes and ``# via`` lines),
    without the annotation lines that name ``drop`` (the temporary constraint file)."""
    blocks: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        if drop and drop in raw and raw.lstrip().startswith("#"):
            continue
        if raw and not raw[0].isspace() and not raw.startswith(("#", "-")):
            current = _normalize(raw.split("==", 1)[0])
            blocks[current] = []
        if current is not None:
            blocks[current].append(raw)
    return {name: "\n".join(lines) + "\n" for name, lines in blocks.items()}


def _write(path: Path, header: str, body: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + body)
    os.replace(tmp, path)


def write_locks() -> tuple[Path, Path]:
    """Resolve with ``uv pip compile`` and write both locks (atomically), each with the inputs digest."""
    with tempfile.TemporaryDirectory(prefix="esdl-lock-") as tmp_dir:
        tmp = Path(tmp_dir)
        everything, user = tmp / "all.txt", tmp / "user.txt"
        # the current pins are uv's preferences: a re-lock changes only what the inputs make it change
        current = [p.read_text() for p in (LOCK, ML_LOCK) if p.is_file()]
        everything.write_text("".join(current))
        user.write_text(current[0] if current else "")
        _compile(IMAGE_EXTRAS, everything, None)
        _compile(USER_EXTRAS, user, everything)
        all_blocks, user_blocks = _blocks(everything.read_text()), _blocks(user.read_text(), str(everything))
    all_pins = {name: block.split("==", 1)[1].split()[0] for name, block in all_blocks.items()}
    user_pins = {name: block.split("==", 1)[1].split()[0] for name, block in user_blocks.items()}
    differ = {n: (v, all_pins.get(n)) for n, v in user_pins.items() if all_pins.get(n) != v}
    if differ:
        raise SystemExit(f"the user lock is not part of the full resolution: {differ}")
    digest = f"{DIGEST_PREFIX}{inputs_digest()}\n"
    common = (
        f"# Resolved once by `make lock` (images/notebook/lock.py) for Python {PYTHON}, {PLATFORM}, from\n"
        f"# pyproject.toml: dependencies + extras {', '.join(IMAGE_EXTRAS)} + build-system requires, less what\n"
        f"# only the hub and the gateway run ({', '.join(HUB_SIDE)}).\n"
    )
    user_header = (
        "# esdl-user: the analysis image's exact versions, with their hashes (pip --require-hashes).\n"
        + common
        + f"# This lock: dependencies + extras {', '.join(USER_EXTRAS)}. The ML image adds requirements-ml.lock.\n"
        + digest
    )
    ml_header = (
        "# esdl-user-ml: what the ML image adds to requirements.lock, with hashes (pip --require-hashes).\n"
        + common
        + f"# This lock: extras {', '.join(ML_EXTRAS)} and what only they need. torch is the CPU build, from\n"
        + "# the wheel folder or page below (the Dockerfile's TORCH_WHEELS; pip --find-links, this lock only).\n"
        + f"{TORCH_WHEELS_PREFIX}{TORCH_WHEELS}\n"
        + digest
    )
    _write(LOCK, user_header, "".join(user_blocks[n] for n in sorted(user_blocks)))
    ml_names = sorted(set(all_blocks) - set(user_blocks))
    _write(ML_LOCK, ml_header, "".join(all_blocks[n] for n in ml_names))
    return LOCK, ML_LOCK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a lock is stale; resolve nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = [p for p in (LOCK, ML_LOCK) if recorded_digest(p) != inputs_digest()]
        for path in stale:
            print(f"{path} is stale against pyproject.toml/constraints.txt: run make lock")
        if stale:
            return 1
        print(
            f"{LOCK.name} ({len(pins(LOCK))} pins) and {ML_LOCK.name} ({len(pins(ML_LOCK))}) are up to date"
        )
        return 0
    for path in write_locks():
        print(f"wrote {path} ({len(pins(path))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
