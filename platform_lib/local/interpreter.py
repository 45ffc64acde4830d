"""Which Python every OS account of the machine can run (standard library only; also a script).

As root, ``esdl up`` runs each person's server, kernels and dask workers under their own OS account, so
the virtual environment's base Python must be one those accounts can reach: a build under an owner-only
folder (pyenv's under ``/root``, which is 0700) is not. ``make setup`` runs this file as a script to pick
the base Python of ``.venv``; ``esdl up`` checks the same with :func:`unreachable_by_others`.

>>> unreachable_by_others("/usr/bin/env")
[]
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

#: the oldest Python the package supports (``requires-python`` in pyproject.toml)
MIN_VERSION = (3, 11)
#: asks a candidate for its version, its standard library's folder and whether it can make a venv
_PROBE = (
    "import sys, os, venv, ensurepip; print(sys.version_info[0], sys.version_info[1]); print(os.__file__)"
)


def unreachable_by_others(path: str | os.PathLike[str]) -> list[Path]:
    """The folders on the way to ``path`` (its real path) that other accounts cannot pass, and ``path``
    itself if they cannot read it: empty when every account can use it.

    >>> import tempfile
    >>> private = Path(tempfile.mkdtemp())  # mkdtemp makes it 0700
    >>> (private / "f").write_text("x") and unreachable_by_others(private / "f") == [private]
    True
    """
    real = Path(os.path.realpath(path))
    blocked = [p for p in reversed(real.parents) if not stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH]
    if not stat.S_IMODE(real.stat().st_mode) & stat.S_IROTH:
        blocked.append(real)
    return blocked


def shared_python(candidates: list[str] | None = None) -> str | None:
    """The first candidate (default: ``python3`` on PATH, then the system's) that is new enough, can
    make a venv, and whose interpreter and standard library every account can reach; ``None`` if none.

    >>> shared_python(["/nonexistent/python3"]) is None
    True
    """
    if candidates is None:
        found = [shutil.which(name) for name in ("python3", "python3.13", "python3.12", "python3.11")]
        candidates = [*filter(None, found), "/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in dict.fromkeys(candidates):
        try:
            probe = subprocess.run([candidate, "-c", _PROBE], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        lines = probe.stdout.split()
        if probe.returncode != 0 or len(lines) != 3 or (int(lines[0]), int(lines[1])) < MIN_VERSION:
            continue
        if not unreachable_by_others(candidate) and not unreachable_by_others(lines[2]):
            return candidate
    return None


if __name__ == "__main__":  # `make setup`: print the base Python for .venv (python3 if none is shared)
    chosen = shared_python()
    if chosen is None:
        print(
            "warning: no Python that every OS account can run was found; .venv uses python3, so `esdl up` as"
            " root (one OS account per person) will refuse to start until .venv is made from such a Python",
            file=sys.stderr,
        )
    print(chosen or "python3")
