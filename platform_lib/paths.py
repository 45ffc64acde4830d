"""Where the platform keeps things: the repository, the git-ignored state folder and the data folder.

Everything generated at run time (demo cubes, hub databases, secrets, user homes, team folders) lives
under one state folder, ``.esdl-state/`` at the repository root unless ``ESDL_STATE_DIR`` names another.
It is created with owner-only permissions (0700) because it holds secrets.

>>> import os, tempfile
>>> from unittest import mock
>>> here = tempfile.mkdtemp()
>>> with mock.patch.dict(os.environ, {"ESDL_STATE_DIR": here}):
...     os.environ.pop("ESDL_DATA_DIR", None) and None
...     data_dir() == state_dir() / "data", oct(state_dir().stat().st_mode & 0o777)
(True, '0o700')
"""

from __future__ import annotations

import os
import stat
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
    """Create ``path`` (and parents) if needed and make it owner-only; return it.

    A new folder is 0700. An existing one loses every read and write bit of group and others, but keeps
    their traverse bits: the embedded platform run as root grants those on the way to members' homes
    (``platform_lib.local.accounts.secure_layout``), and a later ``esdl`` command must not take them away.

    >>> import tempfile, stat
    >>> p = private_dir(Path(tempfile.mkdtemp()) / "secret")
    >>> stat.S_IMODE(p.stat().st_mode) == 0o700
    True
    >>> os.chmod(p, 0o755); oct(stat.S_IMODE(private_dir(p).stat().st_mode))
    '0o711'
    """
    p = Path(path)
    existed = p.is_dir()
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, (stat.S_IMODE(p.stat().st_mode) & 0o711 if existed else 0) | 0o700)
    return p


def state_dir(*, create: bool = True) -> Path:
    """The git-ignored state folder (``ESDL_STATE_DIR`` or ``<repo>/.esdl-state``), created 0700 (with
    ``create=False`` only its path: a reader must not make folders, the repository may be read-only).

    >>> import tempfile
    >>> from unittest import mock
    >>> here = Path(tempfile.mkdtemp()) / "state"
    >>> with mock.patch.dict(os.environ, {"ESDL_STATE_DIR": str(here)}):
    ...     state_dir() == here, oct(here.stat().st_mode & 0o777)
    (True, '0o700')
    """
    env = os.environ.get("ESDL_STATE_DIR")
    path = Path(env) if env else REPO_ROOT / ".esdl-state"
    return private_dir(path) if create else path


def data_dir() -> Path:
    """The folder that holds the demo cubes: ``ESDL_DATA_DIR`` or ``<state>/data`` (not created: the
    demo generator makes it).

    Catalog entries for the demo cubes are relative to this folder.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"ESDL_DATA_DIR": "/srv/cubes"}):
    ...     data_dir()
    PosixPath('/srv/cubes')
    """
    env = os.environ.get("ESDL_DATA_DIR")
    if env:
        return Path(env)
    return state_dir(create=False) / "data"


def team_dir(*, create: bool = True) -> Path:
    """The team's shared folder: ``ESDL_TEAM_DIR`` or ``<state>/team`` (created if missing, unless
    ``create=False``: then only its path).

    >>> import tempfile
    >>> from unittest import mock
    >>> here = Path(tempfile.mkdtemp()) / "team"
    >>> with mock.patch.dict(os.environ, {"ESDL_TEAM_DIR": str(here)}):
    ...     team_dir() == here, here.is_dir()
    (True, True)
    """
    env = os.environ.get("ESDL_TEAM_DIR")
    if not create:
        return Path(env) if env else state_dir(create=False) / "team"
    path = Path(env) if env else state_dir() / "team"
    path.mkdir(parents=True, exist_ok=True)
    return path


def team_catalog_path(
    catalog_path: str | os.PathLike[str] | None = None, team: str | os.PathLike[str] | None = None
) -> Path:
    """The team catalog file: ``catalog_path`` if given, else ``ESDL_TEAM_CATALOG``, else
    ``catalog.yaml`` in ``team`` (default :func:`team_dir`). The file need not exist yet.

    >>> team_catalog_path("/tmp/x.yaml")
    PosixPath('/tmp/x.yaml')
    """
    if catalog_path is not None:
        return Path(catalog_path)
    env = os.environ.get("ESDL_TEAM_CATALOG")
    if env:
        return Path(env)
    return (Path(team) if team is not None else team_dir(create=False)) / "catalog.yaml"
