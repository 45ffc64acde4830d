"""The team's shared space: its cube catalog and its notebook folder.

A project (team) has one folder, ``ESDL_TEAM_DIR`` (else ``<state>/team``), that every member's
session mounts, and one Intake catalog file, ``ESDL_TEAM_CATALOG`` (else ``<team>/catalog.yaml``),
that :func:`platform_lib.catalog.list_cubes` reads after the shared catalog. Regional cubes are
written to ``<team>/cubes/`` and registered here; notebooks are shared to ``<team>/notebooks/`` with
their outputs stripped.

Every change to the catalog file happens under a file lock (``<catalog>.lock``) as read, modify,
atomic rewrite, so two members registering at the same moment never lose each other's entry; the next
change removes the temporary of a rewrite that was killed midway.

>>> import os, tempfile
>>> from pathlib import Path
>>> cat = Path(tempfile.mkdtemp()) / "team.yaml"
>>> register_cube("my-region", "/data/my-region.zarr", {"bbox": [5, 45, 15, 55]}, catalog_path=cat)
'my-region'
>>> list_team_cubes(catalog_path=cat)
['my-region']
>>> remove_cube("my-region", catalog_path=cat, delete_data=False)
>>> list_team_cubes(catalog_path=cat)
[]
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from platform_lib.catalog import (
    catalog_paths,
    catalog_source,
    malformed_entries,
    read_catalog,
    read_catalog_document,
    write_catalog,
)
from platform_lib.errors import CatalogWarning, EsdlError, allowed, did_you_mean
from platform_lib.paths import team_catalog_path, team_dir
from platform_lib.storage import crash_point, remove_path, remove_text_temporaries, write_text_atomic

CUBE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
NOTEBOOK_SUFFIX = ".ipynb"
LOCK_TIMEOUT_S = 60.0

__all__ = [
    "check_cube_name",
    "current_user",
    "list_shared_notebooks",
    "list_team_cubes",
    "register_cube",
    "remove_cube",
    "share_notebook",
    "team_catalog_path",
    "team_cube_entries",
    "team_cubes_dir",
    "team_dir",
    "team_notebooks_dir",
    "strip_outputs",
]


# --------------------------------------------------------------------------------------------- places
def team_cubes_dir(team: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """Where team cubes are stored: ``<team>/cubes`` (created if missing, unless ``create=False``).

    >>> team_cubes_dir().name
    'cubes'
    """
    path = (Path(team) if team is not None else team_dir(create=create)) / "cubes"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def current_user() -> str:
    """Who is acting: the hub user (``JUPYTERHUB_USER``) inside a platform session, else the login name.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"JUPYTERHUB_USER": "ada"}):
    ...     current_user()
    'ada'
    """
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


# -------------------------------------------------------------------------------------- the catalog
def check_cube_name(name: str) -> str:
    """Return ``name`` if it is a valid cube name (lower case letters, digits, ``-``, ``_``, ``.``;
    starting with a letter or digit; at most 63 characters), else raise :class:`EsdlError`.

    >>> check_cube_name("alps-2003")
    'alps-2003'
    >>> check_cube_name("Alps 2003")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: invalid cube name 'Alps 2003': use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit (at most 63 characters), e.g. 'alps-2003'.
    """
    if not isinstance(name, str) or not CUBE_NAME_PATTERN.match(name):
        raise EsdlError(
            f"invalid cube name {name!r}: use lower-case letters, digits, '-', '_' and '.', starting with"
            " a letter or digit (at most 63 characters), e.g. 'alps-2003'."
        )
    return name


def _lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)


TEAM_CATALOG_TITLE = "Team cubes"


def _urlpath_for_catalog(urlpath: str | os.PathLike[str], catalog: Path) -> str:
    """Store local paths under the catalog's folder relative to it (``{{ CATALOG_DIR }}/...``) so the
    team folder can be mounted elsewhere; remote URLs and other paths as given."""
    text = os.fspath(urlpath)
    if "://" in text:
        return text
    path = Path(text).absolute()
    try:
        rel = path.relative_to(catalog.parent.absolute())
    except ValueError:
        return str(path)
    return "{{ CATALOG_DIR }}/" + rel.as_posix()


def _resolve_urlpath(urlpath: str, catalog: Path) -> str:
    return urlpath.replace("{{ CATALOG_DIR }}", str(catalog.parent.absolute())).replace(
        "{{CATALOG_DIR}}", str(catalog.parent.absolute())
    )


def _plain(value: Any) -> Any:
    """Metadata as YAML-safe plain types (tuples to lists, numpy scalars to Python, dates to text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    return str(value)


def _shared_catalog_names(team_catalog: Path) -> dict[str, Path]:
    """Names in the other catalogs that :func:`platform_lib.catalog.list_cubes` reads (a team cube may
    not shadow them), mapped to their catalog file."""
    names: dict[str, Path] = {}
    for other in catalog_paths():
        if other.exists() and other.resolve() != team_catalog.resolve():
            names.update({n: other for n in read_catalog(other)})
    return names


def register_cube(
    name: str,
    urlpath: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    *,
    description: str | None = None,
    overwrite: bool = False,
    args: Mapping[str, Any] | None = None,
) -> str:
    """Add cube ``name`` (a Zarr store at ``urlpath``) to the team catalog; return ``name``.

    The entry is a classic Intake source (``driver: zarr``) with ``metadata`` plus who registered it
    and when; ``args`` override the reader's arguments (e.g. ``{"chunks": {}}``: one dask chunk per
    stored chunk). A name already in the team catalog is an error unless ``overwrite=True``. Safe under
    concurrent registration from several processes (file lock, atomic rewrite).

    >>> import tempfile
    >>> cat = Path(tempfile.mkdtemp()) / "team.yaml"
    >>> register_cube("a", cat.parent / "a.zarr", {"source": "esdc-demo-ts"}, catalog_path=cat)
    'a'
    >>> read_catalog_document(cat)["sources"]["a"]["args"]["urlpath"]
    '{{ CATALOG_DIR }}/a.zarr'
    """
    check_cube_name(name)
    path = team_catalog_path(catalog_path)
    meta = _plain(dict(metadata or {}))
    meta.setdefault("registered_by", current_user())
    meta.setdefault("registered_at", _now())
    entry = catalog_source(
        _urlpath_for_catalog(urlpath, path),
        description or meta.get("title") or f"Team cube {name}",
        meta,
        **dict(args or {}),
    )
    shared = _shared_catalog_names(path)
    if name in shared:
        raise EsdlError(
            f"cube name {name!r} is taken by the shared catalog ({shared[name]}); choose another name."
        )
    with _lock(path):
        remove_text_temporaries(path)  # of a rewrite killed midway (every rewrite holds this lock)
        sources = read_catalog_document(path, missing_ok=True)["sources"]
        if name in sources and not overwrite:
            raise EsdlError(
                f"cube name {name!r} is already taken in the team catalog {path}; choose another name "
                f"or remove it first (esdl cubes regional --remove {name})."
            )
        sources[name] = entry
        crash_point("team:catalog-write")
        write_catalog(path, sources, title=TEAM_CATALOG_TITLE)
    return name


def remove_cube(
    name: str, catalog_path: str | os.PathLike[str] | None = None, *, delete_data: bool = True
) -> None:
    """Remove cube ``name`` from the team catalog and, with ``delete_data``, its store if it lives in
    the team folder (stores elsewhere are never deleted).

    >>> import tempfile
    >>> cat = Path(tempfile.mkdtemp()) / "team.yaml"
    >>> remove_cube("nope", catalog_path=cat)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: no cube 'nope' in the team catalog ...; team cubes: (none).
    """
    path = team_catalog_path(catalog_path)
    with _lock(path):
        remove_text_temporaries(path)  # of a rewrite killed midway (every rewrite holds this lock)
        sources = read_catalog_document(path, missing_ok=True)["sources"]
        if name not in sources:
            names = list(sources)
            raise EsdlError(
                f"no cube {name!r} in the team catalog {path}; team cubes: {allowed(names) or '(none)'}."
                + did_you_mean(name, names)
            )
        entry = sources.pop(name)
        write_catalog(path, sources, title=TEAM_CATALOG_TITLE)
    if delete_data:
        store = Path(_resolve_urlpath(str(entry.get("args", {}).get("urlpath", "")), path))
        owned = [path.parent.absolute(), team_dir(create=False).absolute()]
        if store.exists() and any(store.absolute().is_relative_to(root) for root in owned):
            remove_path(store)


def team_cube_entries(catalog_path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The team catalog's entries by name (``description``, ``driver``, ``args`` with the resolved
    ``urlpath``, ``metadata``).

    >>> import tempfile
    >>> team_cube_entries(Path(tempfile.mkdtemp()) / "none.yaml")
    {}
    """
    path = team_catalog_path(catalog_path)
    out = {}
    sources = read_catalog_document(path, missing_ok=True)["sources"]
    bad = malformed_entries(sources)
    for name, reason in bad.items():
        warnings.warn(CatalogWarning(f"{path}: entry {name!r} skipped: it {reason}"), stacklevel=2)
    for name, entry in sources.items():
        if name in bad:
            continue
        entry = dict(entry)
        args = dict(entry.get("args") or {})
        if "urlpath" in args:
            args["urlpath"] = _resolve_urlpath(str(args["urlpath"]), path)
        entry["args"] = args
        out[name] = entry
    return out


def list_team_cubes(catalog_path: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the cubes in the team catalog, sorted.

    >>> import tempfile
    >>> list_team_cubes(Path(tempfile.mkdtemp()) / "none.yaml")
    []
    """
    return sorted(team_cube_entries(catalog_path))


# ------------------------------------------------------------------------------------- notebooks
def team_notebooks_dir(team: str | os.PathLike[str] | None = None) -> Path:
    """Where shared notebooks live: ``<team>/notebooks`` (created if missing).

    >>> team_notebooks_dir().name
    'notebooks'
    """
    path = (Path(team) if team is not None else team_dir()) / "notebooks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def strip_outputs(notebook: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a notebook (nbformat 4 JSON as a dict) without outputs, execution counts, widget
    state or per-cell execution timing.

    >>> nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"widgets": {}}, "cells": [
    ...     {"cell_type": "code", "source": "1", "outputs": [{"output_type": "stream"}],
    ...      "execution_count": 3, "metadata": {"execution": {}}}]}
    >>> out = strip_outputs(nb)
    >>> out["cells"][0]["outputs"], out["cells"][0]["execution_count"], out["metadata"]
    ([], None, {})
    """
    nb = json.loads(json.dumps(notebook))
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {})
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def _load_notebook(path: Path) -> dict[str, Any]:
    if path.suffix != NOTEBOOK_SUFFIX:
        raise EsdlError(f"{path} is not a notebook: expected a '{NOTEBOOK_SUFFIX}' file.")
    if not path.is_file():
        raise EsdlError(f"notebook {path} does not exist.")
    try:
        nb = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EsdlError(f"{path} is not a valid notebook (JSON error: {exc}).") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat") != 4:
        raise EsdlError(f"{path} is not a Jupyter notebook in format 4 (needs 'nbformat': 4 and 'cells').")
    return nb


def share_notebook(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    team: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Publish notebook ``path`` to the team folder with its outputs stripped; return the shared path.

    The copy records who shared it, when and from where in ``metadata.esdl``. A notebook of the same
    name already shared is an error unless ``overwrite=True``; the original is never changed.

    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code",
    ...       "source": "print(1)", "metadata": {}, "outputs": [{"output_type": "stream",
    ...       "name": "stdout", "text": "1"}], "execution_count": 1}]}
    >>> _ = (d / "a.ipynb").write_text(json.dumps(nb))
    >>> shared = share_notebook(d / "a.ipynb", team=d / "team")
    >>> json.loads(shared.read_text())["cells"][0]["outputs"]
    []
    >>> [n["name"] for n in list_shared_notebooks(team=d / "team")]
    ['a.ipynb']
    """
    source = Path(path)
    nb = strip_outputs(_load_notebook(source))
    target_name = name or source.name
    if not target_name.endswith(NOTEBOOK_SUFFIX):
        target_name += NOTEBOOK_SUFFIX
    if "/" in target_name or target_name.startswith("."):
        raise EsdlError(
            f"invalid notebook name {target_name!r}: use a plain file name like 'analysis.ipynb'."
        )
    folder = team_notebooks_dir(team)
    target = folder / target_name
    nb.setdefault("metadata", {})["esdl"] = {
        "shared_by": current_user(),
        "shared_at": _now(),
        "shared_from": str(source.absolute()),
    }
    with _lock(folder / ".share"):
        if target.exists() and not overwrite:
            raise EsdlError(
                f"a notebook named {target_name!r} is already shared in {folder}; pass overwrite=True "
                "(esdl share --overwrite) to replace it or choose another name (--name)."
            )
        write_text_atomic(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return target


def list_shared_notebooks(team: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The team's shared notebooks, sorted by name: ``name``, ``path``, ``shared_by``, ``shared_at``.

    >>> import tempfile
    >>> list_shared_notebooks(team=tempfile.mkdtemp())
    []
    """
    out = []
    for nb_path in sorted(team_notebooks_dir(team).glob(f"*{NOTEBOOK_SUFFIX}")):
        try:
            meta = json.loads(nb_path.read_text()).get("metadata", {}).get("esdl", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            meta = {}
        out.append(
            {
                "name": nb_path.name,
                "path": nb_path,
                "shared_by": meta.get("shared_by", ""),
                "shared_at": meta.get("shared_at", ""),
            }
        )
    return out
