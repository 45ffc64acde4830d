"""Where the platform keeps things: the repository, the git-ignored state folder and the data folder.

Everything generated at run time (demo cubes, hub databases, secrets, user homes, team folders) lives
under one state folder, ``.esdl-state/`` at the repository root unless ``ESDL_STATE_DIR`` names another.
It is created with owner-only permissions (0700) because it holds secrets.

>>> from platform_lib.paths import state_dir, data_dir
>>> state_dir().name in (".esdl-state",) or "ESDL_STATE_DIR" in __import__("os").environ
True
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def repo_root() -> Path:
    """The repository (or installed tree) that holds ``catalog/``, ``projects/`` and ``notebooks/``.

    >>> (repo_root() / "platform_lib").is_dir()
    True
    """
    return REPO_ROOT


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) if needed and make it owner-only (0700); return it.

    >>> import tempfile, stat
    >>> p = private_dir(Path(tempfile.mkdtemp()) / "secret")
    >>> stat.S_IMODE(p.stat().st_mode) == 0o700
    True
    """
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, 0o700)
    return p


def state_dir() -> Path:
    """The git-ignored state folder (``ESDL_STATE_DIR`` or ``<repo>/.esdl-state``), created 0700.

    >>> state_dir().is_dir()
    True
    """
    env = os.environ.get("ESDL_STATE_DIR")
    return private_dir(Path(env) if env else REPO_ROOT / ".esdl-state")


def data_dir() -> Path:
    """The folder that holds the demo cubes: ``ESDL_DATA_DIR`` or ``<state>/data``.

    Catalog entries for the demo cubes are relative to this folder.

    >>> data_dir().name == "data" or "ESDL_DATA_DIR" in os.environ
    True
    """
    env = os.environ.get("ESDL_DATA_DIR")
    if env:
        return Path(env)
    return state_dir() / "data"
