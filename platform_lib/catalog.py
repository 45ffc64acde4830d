"""The shared cube catalog: find cubes by name, read their metadata, open them lazily.

The catalog is a classic Intake YAML catalog (``sources:`` with ``driver: zarr`` from intake-xarray),
so ``intake.open_catalog(path)[name].to_dask()`` works too; this module adds search across the shared
and the team catalogs, metadata checks and clear errors.

Where the catalogs are (:func:`catalog_paths`): the files named by ``ESDL_CATALOG`` (separated by
``os.pathsep``), else ``<repo>/catalog/esdl.yaml``; then the project's team catalog when that file
exists: ``ESDL_TEAM_CATALOG``, else ``catalog.yaml`` in the team folder (``ESDL_TEAM_DIR``). A later catalog may not redefine an earlier name.

Catalog templates: ``{{ CATALOG_DIR }}`` is the catalog's folder and ``{{ env(ESDL_DATA_DIR) }}`` the
demo data folder (:func:`platform_lib.paths.data_dir`, filled in when it is not set).

>>> names = list_cubes()
>>> "esdc-demo-ts" in names and "esdc-v3-ts" in names
True
>>> describe_cube("esdc-demo-map")["chunking"]
'map'
"""

from __future__ import annotations

import datetime
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from platform_lib.arguments import (
    bbox_argument,
    catalog_argument,
    date_argument,
    flag_argument,
    names_argument,
    path_argument,
    text_argument,
    time_range_argument,
)
from platform_lib.errors import (
    CatalogError,
    CatalogWarning,
    CubeNotFoundError,
    CubeNotGeneratedError,
    CubeUnreachableError,
    EsdlError,
    allowed,
    did_you_mean,
    short_repr,
)
from platform_lib.paths import data_dir, repo_root, team_catalog_path
from platform_lib.strict_yaml import YamlError, load_yaml

if (
    TYPE_CHECKING
):  # numpy, pandas and xarray are imported where cubes are opened: reading a catalog needs none
    import numpy as np
    import xarray as xr

DEFAULT_CATALOG = "catalog/esdl.yaml"
#: metadata keys every catalog entry must carry (in the spirit of DeepESDL's dataset spec)
REQUIRED_METADATA = (
    "title",
    "variables",
    "spatial_extent",
    "temporal_extent",
    "chunking",
    "license",
    "source",
)
_TEMPLATE = re.compile(r"\{\{\s*(CATALOG_DIR|env\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\))\s*\}\}")


@dataclass(frozen=True)
class CubeEntry:
    """One catalog entry: its name, where it came from, how to open it and what it holds."""

    name: str
    catalog: Path
    driver: str
    args: dict[str, Any]
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def urlpath(self) -> str:
        """The store location with catalog templates filled in."""
        return expand_template(str(self.args.get("urlpath", "")), self.catalog.parent)

    @property
    def is_local(self) -> bool:
        """True for a store on a local filesystem (no ``s3://`` or other protocol)."""
        return "://" not in self.urlpath or self.urlpath.startswith("file://")

    @property
    def endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` a remote store is read from (None for a local one, or a protocol without a host).

        From ``storage_options`` (``endpoint_url``, also under ``client_kwargs``), else the protocol's
        public service (``s3://`` on AWS, ``gs://`` on Google Cloud Storage) or the URL's own host.

        >>> CubeEntry("x", Path("c.yaml"), "zarr", {"urlpath": "s3://b/c.zarr", "storage_options":
        ...     {"client_kwargs": {"endpoint_url": "https://s3.example.org:9000"}}}).endpoint
        ('s3.example.org', 9000)
        """
        from urllib.parse import urlsplit

        if self.is_local:
            return None
        options = self.args.get("storage_options") or {}
        client = options.get("client_kwargs") or {} if isinstance(options, dict) else {}
        url = (options.get("endpoint_url") if isinstance(options, dict) else None) or client.get(
            "endpoint_url"
        )
        protocol = self.urlpath.split("://", 1)[0]
        if not url:
            url = {"s3": "https://s3.amazonaws.com", "gs": "https://storage.googleapis.com",
                   "gcs": "https://storage.googleapis.com"}.get(protocol, self.urlpath)  # fmt: skip
        parts = urlsplit(str(url))
        if not parts.hostname or parts.scheme not in ("http", "https"):
            return None
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def expand_template(text: str, catalog_dir: Path) -> str:
    """Fill ``{{ CATALOG_DIR }}`` and ``{{ env(NAME) }}`` as Intake does (``ESDL_DATA_DIR`` defaults).

    >>> expand_template("{{ CATALOG_DIR }}/x.zarr", Path("/cat"))
    '/cat/x.zarr'
    """

    def repl(m: re.Match[str]) -> str:
        if m.group(1) == "CATALOG_DIR":
            return str(catalog_dir)
        var = m.group(2)
        if var == "ESDL_DATA_DIR" and not os.environ.get(var):
            return str(data_dir())
        return os.environ.get(var, "")

    return _TEMPLATE.sub(repl, text)


def catalog_paths() -> list[Path]:
    """The catalog files searched, in order: ``ESDL_CATALOG`` (or the repository's), then the team's
    (:func:`platform_lib.paths.team_catalog_path`) if it exists.

    >>> catalog_paths()[0].name
    'esdl.yaml'
    """
    env = os.environ.get("ESDL_CATALOG")
    paths = [Path(p) for p in env.split(os.pathsep) if p] if env else [repo_root() / DEFAULT_CATALOG]
    team = team_catalog_path()  # ESDL_TEAM_CATALOG, else <team folder>/catalog.yaml
    if team.exists():
        paths.append(team)
    return paths


_CACHE: dict[Path, tuple[tuple[int, int], dict[str, CubeEntry]]] = {}


def read_catalog(path: str | os.PathLike[str]) -> dict[str, CubeEntry]:
    """Parse one catalog file into entries (cached until the file changes).

    >>> sorted(read_catalog(repo_root() / DEFAULT_CATALOG))[:2]
    ['esdc-demo-map', 'esdc-demo-ts']
    """
    path = Path(path).resolve()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CatalogError(
            f"catalog file {path} does not exist (set ESDL_CATALOG to an existing file)."
        ) from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _CACHE.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    sources = read_catalog_document(path)["sources"]
    bad = malformed_entries(sources)
    for name, reason in bad.items():  # one bad entry never hides the others
        warnings.warn(CatalogWarning(f"{path}: entry {name!r} skipped: it {reason}"), stacklevel=2)
    entries = {
        name: CubeEntry(
            name=name,
            catalog=path,
            driver=str(src["driver"]),
            args=dict(src["args"]),
            description=(src.get("description") or "").strip(),
            metadata=dict(src.get("metadata") or {}),
        )
        for name, src in sources.items()
        if name not in bad
    }
    _CACHE[path] = (stamp, entries)
    return entries


def read_catalog_document(path: str | os.PathLike[str], *, missing_ok: bool = False) -> dict[str, Any]:
    """The catalog file as a document (``metadata``, ``sources``), its structure checked: every reader
    of catalog files (:func:`read_catalog`, the team catalog) goes through here.

    A missing file is an error, or with ``missing_ok`` an empty catalog.

    >>> import tempfile
    >>> read_catalog_document(Path(tempfile.mkdtemp()) / "none.yaml", missing_ok=True)["sources"]
    {}
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return {"metadata": {"version": 1}, "sources": {}}
    try:
        doc = load_yaml(path) or {}
    except FileNotFoundError:
        raise CatalogError(
            f"catalog file {path} does not exist (set ESDL_CATALOG to an existing file)."
        ) from None
    except YamlError as exc:  # not UTF-8, not YAML, a key given twice: where, and what to do
        raise CatalogError(str(exc)) from None
    sources = doc.get("sources") if isinstance(doc, dict) else None
    if not isinstance(sources, dict):
        raise CatalogError(f"{path}: a catalog needs a 'sources:' mapping of entry name -> entry.")
    return {**doc, "sources": {str(name): src for name, src in sources.items()}}


#: the type each field of an entry must have where it is given (``None``: the field may be empty), and
#: what a message says is allowed; nothing is converted (a number is not a path, a mapping not a text)
ENTRY_FIELD_TYPES: dict[str, tuple[tuple[type | None, ...], str]] = {
    "driver": ((str,), "a string ('zarr')"),
    "description": ((str, None), "a string"),
    "metadata": ((dict, None), "a mapping (title, variables, ...)"),
    "args": ((dict,), "a mapping (urlpath, chunks, consolidated, storage_options)"),
    "args.urlpath": ((str,), "a string: the store's path or URL"),
    "args.chunks": ((str, int, dict, None), "'auto', a whole number or a mapping of dimension -> chunk size"),
    "args.consolidated": ((bool,), "true or false"),
    "args.storage_options": ((dict,), "a mapping of fsspec options"),
}


def field_type_problem(node: Any, key: str, types: tuple[type | None, ...], what: str) -> str | None:
    """``"has KEY VALUE (TYPE); allowed: WHAT"`` when ``node[key]`` (dotted) is given with another type.

    Strict: a boolean is not a number, ``None`` only where ``types`` holds it.

    >>> field_type_problem({"args": {"urlpath": [1]}}, "args.urlpath", (str,), "a string")
    'has args.urlpath [1] (list); allowed: a string'
    >>> field_type_problem({"args": {}}, "args.urlpath", (str,), "a string") is None
    True
    """
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    kinds = tuple(type(None) if t is None else t for t in types)
    if isinstance(node, kinds) and not (isinstance(node, bool) and bool not in kinds):
        return None
    return f"has {key} {short_repr(node)} ({type(node).__name__}); allowed: {what}"


def malformed_entries(sources: dict[str, Any]) -> dict[str, str]:
    """``name -> what is wrong`` for the entries of ``sources`` that cannot be read as cubes: no
    ``driver:`` or ``args:``, or a field of the wrong type (:data:`ENTRY_FIELD_TYPES`).

    >>> malformed_entries({"ok": {"driver": "zarr", "args": {}}, "bad": {"args": 3}})
    {'bad': "needs 'driver:' and an 'args:' mapping"}
    >>> malformed_entries({"x": {"driver": "zarr", "args": {}, "description": {}}})
    {'x': 'has description {} (dict); allowed: a string'}
    """
    bad = {}
    for name, src in sources.items():
        if not isinstance(src, dict) or "driver" not in src or "args" not in src:
            bad[name] = "needs 'driver:' and an 'args:' mapping"
            continue
        for key, (types, what) in ENTRY_FIELD_TYPES.items():
            problem = field_type_problem(src, key, types, what)
            if problem:
                bad[name] = problem
                break
    return bad


def _entries(
    catalog: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, CubeEntry]:
    paths = catalog_argument(catalog)
    if paths is None:
        paths = catalog_paths()
    team = team_catalog_path() if catalog is None else None
    merged: dict[str, CubeEntry] = {}
    for p in paths:
        try:
            entries = read_catalog(p)
        except CatalogError as exc:
            if team is None or Path(p) != team:
                raise
            # the team catalog is everyone's to edit: a broken file must not hide the shared cubes
            warnings.warn(CatalogWarning(f"the team catalog was skipped: {exc}"), stacklevel=2)
            continue
        for name, entry in entries.items():
            if name in merged:
                warnings.warn(
                    CatalogWarning(
                        f"{entry.catalog}: entry {name!r} skipped: it is already defined in {merged[name].catalog}"
                    ),
                    stacklevel=2,
                )
                continue
            merged[name] = entry
    return merged


def list_cubes(
    catalog: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    remote: bool | None = None,
) -> list[str]:
    """Names of every cube in the shared and team catalogs (or in ``catalog``), sorted.

    ``remote=False`` lists only the cubes stored on this machine's file systems (they work offline),
    ``remote=True`` only those read over the network (they need internet); ``None`` lists all.

    >>> "esdc-demo-map" in list_cubes()
    True
    >>> list_cubes(remote=True)  # the public ESDC v3 on its S3 endpoint
    ['esdc-v3-map', 'esdc-v3-tiny', 'esdc-v3-ts']
    """
    entries = _entries(catalog)
    if remote is not None:
        remote = flag_argument(remote, "remote")
        entries = {name: e for name, e in entries.items() if e.is_local != remote}
    return sorted(entries)


def find_cubes(
    variable: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    time: Any = None,
    catalog: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    remote: bool | None = None,
) -> list[str]:
    """Names of the cubes whose catalog metadata hold every ``variable``, overlap ``bbox`` and cover ``time``.

    - ``variable``: a name or a list of names (all must be in the cube), exact ESDC names;
    - ``bbox``: ``(lon_min, lat_min, lon_max, lat_max)`` (``lon_min > lon_max`` crosses the dateline):
      the cube's ``spatial_extent`` must overlap it;
    - ``time``: a date (covered by the cube's ``temporal_extent``) or a ``(start, end)`` range (overlapped);
    - ``remote``: as for :func:`list_cubes`.

    Only the catalogs are read, no store is opened.

    >>> find_cubes(variable="kndvi", bbox=(-10, 35, 30, 60), time="2003-08-01", remote=False)
    ['esdc-demo-map', 'esdc-demo-ts']
    >>> find_cubes(variable="sea_ice_fraction")
    []
    """
    import pandas as pd

    wanted = [] if variable is None else list(names_argument(variable, "variable"))
    box = None if bbox is None else bbox_argument(bbox)
    if time is None:
        window = None
    elif isinstance(time, list | tuple):
        window = time_range_argument(time, "time")
    else:
        day = date_argument(time, "time")
        window = (day, day)
    if remote is not None:
        remote = flag_argument(remote, "remote")
    found = []
    for name, entry in sorted(_entries(catalog).items()):  # one read of the catalogs, not one per cube
        if remote is not None and entry.is_local == remote:
            continue
        meta = entry.metadata
        if wanted and not set(wanted) <= set(meta.get("variables") or {}):
            continue
        if box is not None and not extents_overlap(meta.get("spatial_extent"), box):
            continue
        if window is not None:
            extent = meta.get("temporal_extent") or [None, None]
            start, end = (
                (pd.Timestamp(extent[0]), pd.Timestamp(extent[1])) if None not in extent else (None, None)
            )
            if start is None or window[1] < start or window[0] > end:
                continue
        found.append(name)
    return found


def _lon_intervals(lon_min: float, lon_max: float) -> list[tuple[float, float]]:
    """A longitude range as intervals within -180..180 (two when it crosses the dateline)."""
    lo, hi = (lon if -180.0 <= lon <= 180.0 else (lon + 180.0) % 360.0 - 180.0 for lon in (lon_min, lon_max))
    if lon_max - lon_min >= 360.0:
        return [(-180.0, 180.0)]
    return [(lo, hi)] if lo <= hi else [(lo, 180.0), (-180.0, hi)]


def extents_overlap(extent: Any, box: tuple[float, float, float, float]) -> bool:
    """Does a catalog ``spatial_extent`` ``[lon_min, lat_min, lon_max, lat_max]`` overlap ``box`` (the same
    order; ``lon_min > lon_max`` across the dateline)? Edges that touch overlap.

    >>> extents_overlap([170, 40, -170, 50], (-175, 45, -160, 60)), extents_overlap([0, 0, 10, 10], (20, 0, 30, 10))
    (True, False)
    """
    if not isinstance(extent, list | tuple) or len(extent) != 4:
        return False
    e_lon_min, e_lat_min, e_lon_max, e_lat_max = (float(v) for v in extent)
    if box[3] < e_lat_min or box[1] > e_lat_max:
        return False
    return any(
        a_hi >= b_lo and a_lo <= b_hi
        for a_lo, a_hi in _lon_intervals(e_lon_min, e_lon_max)
        for b_lo, b_hi in _lon_intervals(box[0], box[2])
    )


def get_entry(
    name: str, catalog: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None
) -> CubeEntry:
    """The catalog entry called ``name``; an unknown name lists what exists.

    >>> get_entry("esdc-demo-ts").driver
    'zarr'
    """
    name = text_argument(name, "the cube name")
    entries = _entries(catalog)
    if name not in entries:
        raise CubeNotFoundError(
            f"no cube named {name!r} in the catalog.{did_you_mean(name, entries)} Available: {allowed(entries)}."
        )
    return entries[name]


def describe_cube(
    name: str, catalog: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None
) -> dict[str, Any]:
    """Everything the catalog says about a cube, without opening it.

    Keys: ``name``, ``description``, ``urlpath``, ``catalog``, and the entry's metadata (``title``,
    ``variables`` with units, ``spatial_extent`` [lon_min, lat_min, lon_max, lat_max],
    ``temporal_extent`` [start, end], ``chunking``, ``chunks``, ``license``, ``source`` ...).

    >>> d = describe_cube("esdc-demo-ts")
    >>> d["variables"]["air_temperature_2m"]["units"]
    'degC'
    """
    entry = get_entry(name, catalog)
    return {
        "name": entry.name,
        "description": entry.description,
        "urlpath": entry.urlpath,
        "catalog": str(entry.catalog),
        "remote": not entry.is_local,
        **entry.metadata,
    }


_STORED: Any = {}  # open_cube's default chunks: the catalog entry's (whole multiples of the stored chunks)
_DATASET_CACHE: dict[tuple[Any, ...], xr.Dataset] = {}


def _open_entry(entry: CubeEntry, chunks: Any = _STORED) -> xr.Dataset:
    """Open an entry's store lazily through Intake; a local store opened before (and unchanged since)
    is served from a cache of lazy datasets, as a shallow copy, so repeated opens cost almost nothing."""
    key = None
    if entry.is_local:
        meta = Path(entry.urlpath.removeprefix("file://")) / "zarr.json"
        if meta.exists():
            st = meta.stat()
            key = (entry.catalog, entry.name, entry.urlpath, repr(chunks), st.st_mtime_ns, st.st_size)
            if key in _DATASET_CACHE:
                return _DATASET_CACHE[key].copy(deep=False)
    ds = _open_entry_uncached(entry, chunks)
    if key is not None:
        _DATASET_CACHE[key] = ds
        return ds.copy(deep=False)
    return ds


def _open_entry_uncached(entry: CubeEntry, chunks: Any) -> xr.Dataset:
    if entry.is_local and not Path(entry.urlpath.removeprefix("file://")).exists():
        hint = ""
        if entry.metadata.get("demo"):
            demo = entry.metadata["demo"]
            hint = (
                f" It is a demo cube that has not been generated yet: run `esdl cubes generate"
                f" --resolution {demo.get('resolution')} --years {demo['years'][0]}-{demo['years'][1]}`"
                " (or `make up`), or set ESDL_DATA_DIR to the folder that holds it."
            )
        raise CubeNotGeneratedError(f"cube {entry.name!r}: no store at {entry.urlpath}.{hint}")
    if entry.driver != "zarr":
        raise CatalogError(
            f"{entry.catalog}: entry {entry.name!r} has driver {entry.driver!r}; only 'zarr' is supported."
        )
    if not entry.is_local:
        check_reachable(entry)
    # Intake fills {{ env(ESDL_DATA_DIR) }} from the environment: give it the default data folder
    os.environ.setdefault("ESDL_DATA_DIR", str(data_dir()))
    source = _intake_catalog(entry.catalog)[entry.name]
    try:
        if chunks is _STORED:
            return source.to_dask()
        return source.reader.read(chunks=chunks)
    except Exception as exc:
        if entry.is_local:
            raise
        # a remote store's failure surfaces from deep in an async stack (s3fs, aiobotocore), often as
        # an unrelated follow-up error: say in one line what failed, with the first cause
        cause = _first_cause(exc)
        raise EsdlError(
            f"cube {entry.name!r}: could not open {entry.urlpath}: {type(cause).__name__}: {_one_line(cause)}"
        ) from None


#: seconds to wait for a remote cube's endpoint to accept a connection before calling it unreachable
REACH_TIMEOUT = 5.0


def check_reachable(entry: CubeEntry, timeout: float = REACH_TIMEOUT) -> None:
    """Raise :class:`CubeUnreachableError` (one line) when a remote cube's endpoint takes no connection.

    Without a network, opening a remote store fails after seconds deep inside an async S3 client, with
    a traceback of hundreds of lines; one TCP connection answers the question first.

    >>> entry = CubeEntry("far", Path("c.yaml"), "zarr", {"urlpath": "s3://b/c.zarr", "storage_options":
    ...     {"endpoint_url": "http://127.0.0.1:9"}})
    >>> check_reachable(entry)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    platform_lib.errors.CubeUnreachableError: cube 'far' needs internet: could not reach 127.0.0.1:9 (...); the demo cubes work offline: ...
    """
    import socket

    where = entry.endpoint
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout):
            return
    except OSError as exc:
        try:
            offline = [name for name, e in _entries().items() if e.is_local]
        except EsdlError:  # a broken shared catalog must not hide why this cube failed
            offline = []
        raise CubeUnreachableError(
            f"cube {entry.name!r} needs internet: could not reach {where[0]}:{where[1]} ({_one_line(exc)});"
            f" the demo cubes work offline: {allowed(offline)}."
        ) from None


def _first_cause(exc: BaseException) -> BaseException:
    """The earliest exception in ``exc``'s chain (``__cause__`` / ``__context__``): what went wrong first."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


_INTAKE_CACHE: dict[Path, tuple[tuple[int, int], Any]] = {}


def _intake_catalog(path: Path) -> Any:
    """``intake.open_catalog(path)``, cached until the file changes."""
    import intake

    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _INTAKE_CACHE.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, intake.open_catalog(str(path)))
        _INTAKE_CACHE[path] = cached
    return cached[1]


def open_cube(
    name: str,
    variables: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    time_range: Sequence[Any] | None = None,
    catalog: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    chunks: Any = _STORED,
) -> xr.Dataset:
    """Open a catalog cube as a lazy, dask-backed ``xarray.Dataset``, optionally subset.

    - ``variables``: a name or a list of names (default: all).
    - ``bbox``: ``(lon_min, lat_min, lon_max, lat_max)`` in degrees; ``lon_min > lon_max`` selects a
      box across the dateline. Cells whose centres fall inside are kept.
    - ``time_range``: ``(start, end)``, inclusive, anything pandas reads as a date.
    - ``chunks``: as for ``xarray.open_dataset``; the default is one dask chunk per stored chunk,
      ``None`` gives lazily indexed arrays without dask (``.chunk(...)`` them to read exactly the
      pieces you need, each in one call that zarr serves concurrently: regional cubes do this).

    Nothing is read but metadata: subsetting is lazy. Unknown variables, a bbox outside the cube or
    an inverted time range raise :class:`~platform_lib.errors.EsdlError` saying what exists.

    >>> ds = open_cube("esdc-demo-ts", variables=["kndvi"], bbox=(-10, 35, 30, 60),
    ...                time_range=("2003-06-01", "2003-08-31"))  # doctest: +SKIP
    >>> dict(ds.sizes)  # doctest: +SKIP
    {'time': 12, 'lat': 25, 'lon': 40}
    """
    entry = get_entry(name, catalog)
    ds = _open_entry(entry, chunks)
    return subset_cube(ds, variables=variables, bbox=bbox, time_range=time_range, label=f"cube {name!r}")


def open_store(path: str | os.PathLike[str], what: str = "cube") -> xr.Dataset:
    """Open the Zarr store at ``path`` lazily without dask (``chunks=None``), or raise
    :class:`~platform_lib.errors.EsdlError` saying it is not one.

    >>> open_store("/")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: cube / is not a Zarr store (no zarr.json or .zgroup in it): pass an xarray.Dataset or the path of a Zarr store.
    """
    import xarray as xr
    import zarr.errors

    path = path_argument(path, what)
    if "://" not in str(path) and not path.exists():
        raise EsdlError(f"{what} {path}: no such store; pass an xarray.Dataset or the path of a Zarr store.")
    try:
        return xr.open_zarr(str(path), chunks=None)
    except (zarr.errors.BaseZarrError, OSError) as exc:
        reason = (
            "no zarr.json or .zgroup in it" if isinstance(exc, zarr.errors.NodeNotFoundError) else str(exc)
        )
        raise EsdlError(
            f"{what} {path} is not a Zarr store ({reason}): pass an xarray.Dataset or the path"
            " of a Zarr store."
        ) from None


def subset_cube(
    ds: xr.Dataset,
    variables: str | Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    time_range: Sequence[Any] | None = None,
    label: str = "the cube",
) -> xr.Dataset:
    """Lazily select ``variables``, a ``bbox`` and a ``time_range`` of a cube, with clear errors.

    The one place cube subsetting is checked; :func:`open_cube` and regional cubes call it.

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset({"t": (("time", "lat", "lon"), np.zeros((2, 3, 4)))},
    ...     coords={"time": pd.date_range("2001-01-05", periods=2, freq="8D"),
    ...             "lat": [-45.0, 0.0, 45.0], "lon": [-135.0, -45.0, 45.0, 135.0]})
    >>> dict(subset_cube(ds, bbox=(100, -10, -100, 50)).sizes)  # across the dateline
    {'time': 2, 'lat': 2, 'lon': 2}
    """
    if variables is not None:
        wanted = list(names_argument(variables, "variables", empty_ok=True))
        have = list(ds.data_vars)
        missing = [v for v in wanted if v not in ds.data_vars]
        if missing:
            hints = "".join(did_you_mean(m, have) for m in missing)
            raise EsdlError(
                f"{label} has no variable {', '.join(map(repr, missing))}.{hints} Available: {allowed(have)}."
            )
        if not wanted:
            raise EsdlError(f"variables=[] selects nothing from {label}; pass None for all variables.")
        ds = ds[wanted]
    if bbox is not None:
        ds = _select_bbox(ds, bbox, label)
    if time_range is not None:
        ds = _select_time(ds, time_range, label)
    return ds


def _select_bbox(ds: xr.Dataset, bbox: Sequence[float], label: str) -> xr.Dataset:
    import numpy as np

    lon_min, lat_min, lon_max, lat_max = bbox_argument(bbox)
    lat = ds["lat"].values
    lon = ds["lon"].values
    extent = f"lon {lon.min():g}..{lon.max():g}, lat {lat.min():g}..{lat.max():g}"
    lat_idx = np.flatnonzero((lat >= lat_min) & (lat <= lat_max))
    if lon_min <= lon_max:
        lon_idx = np.flatnonzero((lon >= lon_min) & (lon <= lon_max))
    else:  # across the dateline: the eastern part first, so longitudes stay contiguous on the map
        lon_idx = np.concatenate([np.flatnonzero(lon >= lon_min), np.flatnonzero(lon <= lon_max)])
    if lat_idx.size == 0 or lon_idx.size == 0:
        raise EsdlError(f"bbox {tuple(bbox)} holds no grid cell of {label} (its cell centres span {extent}).")
    if lon_min <= lon_max:
        return ds.isel(lat=slice(lat_idx[0], lat_idx[-1] + 1), lon=slice(lon_idx[0], lon_idx[-1] + 1))
    return ds.isel(lat=slice(lat_idx[0], lat_idx[-1] + 1), lon=lon_idx)


def _select_time(ds: xr.Dataset, time_range: Sequence[Any], label: str) -> xr.Dataset:
    import numpy as np
    import pandas as pd

    start, end = time_range_argument(time_range)
    times = pd.DatetimeIndex(ds["time"].values)
    idx = np.flatnonzero((times >= start) & (times <= end))
    if idx.size == 0:
        raise EsdlError(
            f"time_range {start.date()}..{end.date()} holds no time step of {label}"
            f" (it covers {times[0].date()}..{times[-1].date()})."
        )
    return ds.isel(time=slice(idx[0], idx[-1] + 1))


# --- writing entries ------------------------------------------------------------------------------


def dateline_order(lon: xr.DataArray | np.ndarray | Sequence[float]) -> np.ndarray | None:
    """Column order that puts a region stored split at the dateline back in one piece, or None.

    A regional grid across 180 degrees stored with sorted -180..180 longitudes (the Pacific at 5
    degrees: -177.5 .. -97.5, then 117.5 .. 177.5) has its first and last columns touching across
    180 and one jump inside, where no columns were stored. The order returned starts after the jump,
    as a bbox across the dateline selects it (:func:`subset_cube`), so the
    columns that touch are next to each other and those that do not are not. None for any other grid
    (global, in one piece, not sorted, or more than one jump).

    >>> import numpy as np
    >>> dateline_order(np.array([-175.0, -165.0, 155.0, 165.0, 175.0])).tolist()
    [2, 3, 4, 0, 1]
    >>> dateline_order(np.arange(-175.0, 180.0, 10.0)), dateline_order(np.array([0.0, 10.0, 30.0]))
    (None, None)
    """
    import math

    import numpy as np

    values = np.asarray(lon, dtype=np.float64)
    if values.size < 3:
        return None
    gaps = np.diff(values)
    if (gaps <= 0).any():
        return None
    step = float(np.median(gaps))
    jumps = np.flatnonzero(gaps > 1.5 * step)
    if jumps.size != 1 or not math.isclose(values[0] + 360.0 - values[-1], step, rel_tol=1e-3):
        return None
    start = int(jumps[0]) + 1
    return np.r_[np.arange(start, values.size), np.arange(start)]


def cube_metadata(
    ds: xr.Dataset,
    *,
    chunking: str,
    license: str,
    source: str,
    title: str | None = None,
    chunks: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Catalog metadata for a cube, derived from the dataset itself (DeepESDL dataset-spec style).

    ``spatial_extent`` is ``[lon_min, lat_min, lon_max, lat_max]`` of the cell edges (``lon_min > lon_max``
    for a cube across the dateline, whose longitudes wrap from 180 to -180 or are sorted and split at
    180, :func:`dateline_order`), ``temporal_extent``
    the first and last time stamps, ``chunks`` the stored chunk shape (from the encoding or dask chunks).

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset({"t": (("time", "lat", "lon"), np.zeros((2, 2, 2), "float32"), {"units": "K"})},
    ...     coords={"time": pd.date_range("2001-01-05", periods=2, freq="8D"), "lat": [-45.0, 45.0], "lon": [-90.0, 90.0]})
    >>> m = cube_metadata(ds, chunking="map", license="CC-BY-4.0", source="test")
    >>> m["spatial_extent"], m["variables"]["t"]["units"]
    ([-180.0, -90.0, 180.0, 90.0], 'K')

    A cube of one cell (a station's record) has no spacing to read; its ACDD attributes
    ``geospatial_lat_resolution`` / ``geospatial_lon_resolution`` give the cell's size:

    >>> station = ds.isel(lat=[0], lon=[0]).assign_attrs(geospatial_lat_resolution=1.0, geospatial_lon_resolution=1.0)
    >>> cube_metadata(station, chunking="ts", license="CC-BY-4.0", source="test")["spatial_extent"]
    [-90.5, -45.5, -89.5, -44.5]
    """
    import numpy as np
    import pandas as pd

    lat, lon = ds["lat"].values, ds["lon"].values
    dlat = (
        float(abs(lat[1] - lat[0])) if lat.size > 1 else float(ds.attrs.get("geospatial_lat_resolution", 0.0))
    )
    dlon = (
        float(abs(lon[1] - lon[0])) if lon.size > 1 else float(ds.attrs.get("geospatial_lon_resolution", 0.0))
    )
    times = pd.DatetimeIndex(ds["time"].values)
    # a cube across the dateline (longitudes that wrap, 170..180 then -180..-170): west > east, as in a bbox
    wraps = lon.size > 1 and bool((np.diff(lon) < 0).any())
    split = None if wraps else dateline_order(lon)  # stored sorted, split at 180
    if split is not None:
        west, east = lon[split[0]], lon[split[-1]]
    else:
        west, east = (lon[0], lon[-1]) if wraps else (lon.min(), lon.max())
    if chunks is None:
        first = next(iter(ds.data_vars.values()))
        enc = first.encoding.get("chunks") or first.encoding.get("preferred_chunks")
        if isinstance(enc, dict):
            chunks = {d: int(enc[d]) for d in first.dims}
        elif enc:
            chunks = dict(zip(first.dims, (int(c) for c in enc), strict=True))
        elif first.chunks:
            chunks = {d: int(c[0]) for d, c in zip(first.dims, first.chunks, strict=True)}
        else:
            chunks = dict(first.sizes)
    return {
        "title": title or str(ds.attrs.get("title", "")),
        "variables": {
            name: {"units": str(v.attrs.get("units", "")), "long_name": str(v.attrs.get("long_name", name))}
            for name, v in ds.data_vars.items()
        },
        "dims": {d: int(n) for d, n in ds.sizes.items()},
        "spatial_extent": [
            round(float(west) - dlon / 2, 6),
            round(float(lat.min()) - dlat / 2, 6),
            round(float(east) + dlon / 2, 6),
            round(float(lat.max()) + dlat / 2, 6),
        ],
        "spatial_resolution": dlat,
        "temporal_extent": [str(times[0].date()), str(times[-1].date())],
        "temporal_resolution": str(ds.attrs.get("time_coverage_resolution", "")),
        "chunking": chunking,
        "chunks": chunks,
        "license": license,
        "source": source,
        **extra,
    }


def catalog_source(urlpath: str, description: str, metadata: dict[str, Any], **args: Any) -> dict[str, Any]:
    """One ``sources:`` entry of a classic Intake catalog for a Zarr store.

    >>> catalog_source("{{ CATALOG_DIR }}/x.zarr", "a cube", {"title": "x"})["driver"]
    'zarr'
    """
    return {
        "description": description,
        "driver": "zarr",
        # dask chunks: whole multiples of the stored chunks, ~128 MiB each (xarray's "auto"), so a read
        # is a few dask tasks that each let zarr fetch and decode many chunks concurrently
        "args": {"urlpath": urlpath, "consolidated": True, "chunks": "auto", **args},
        "metadata": metadata,
    }


def dump_catalog(sources: dict[str, dict[str, Any]], *, title: str, header: str = "") -> str:
    """YAML text of a classic Intake catalog holding ``sources`` (the one writer of catalog text).

    >>> print(dump_catalog({}, title="empty").splitlines()[0])
    metadata:
    """
    doc = {"metadata": {"version": 1, "title": title}, "sources": sources}
    body = yaml.safe_dump(doc, sort_keys=False, width=110, allow_unicode=True)
    return (header.rstrip() + "\n" if header else "") + body


def write_catalog(path: str | os.PathLike[str], sources: dict[str, dict[str, Any]], *, title: str) -> Path:
    """Write a catalog file atomically (a reader sees the old file or the new one, never half of one).

    >>> import tempfile
    >>> p = write_catalog(Path(tempfile.mkdtemp()) / "c.yaml", {"x": catalog_source("/x.zarr", "x", {})}, title="t")
    >>> list(read_catalog_document(p)["sources"])
    ['x']
    """
    from platform_lib.storage import write_text_atomic

    bad = malformed_entries(sources)
    if bad:
        name, reason = next(iter(bad.items()))
        raise CatalogError(
            f"{path} was not changed: its entry {name!r} {reason}; fix or remove that entry in the file, then"
            " try again"
        )
    return write_text_atomic(path, dump_catalog(sources, title=title))


# --- validation -----------------------------------------------------------------------------------


def _check_metadata(entry: CubeEntry) -> list[str]:
    """Problems with one entry's metadata (no data read)."""
    import pandas as pd

    where = f"{entry.catalog}: entry {entry.name!r}"
    meta = entry.metadata
    problems = [f"{where}: metadata is missing {key!r}" for key in REQUIRED_METADATA if key not in meta]
    for key in ("title", "chunking", "license", "source"):
        problem = field_type_problem(meta, key, (str,), "a string")
        if problem:
            problems.append(f"{where}: {problem.replace('has ', 'has metadata.', 1)}")
    if entry.driver != "zarr":
        problems.append(f"{where}: driver {entry.driver!r} is not supported; use 'zarr' (intake-xarray)")
    if not entry.args.get("urlpath"):
        problems.append(f"{where}: args.urlpath is missing")
    variables = meta.get("variables")
    if "variables" in meta and (not isinstance(variables, dict) or not variables):
        problems.append(f"{where}: metadata.variables must map each variable name to {{units, long_name}}")
    elif isinstance(variables, dict):
        for var, info in variables.items():
            if not isinstance(info, dict) or "units" not in info:
                problems.append(f"{where}: variable {var!r} needs 'units'")
            elif not isinstance(info["units"], str):
                problems.append(
                    f"{where}: variable {var!r} has units {short_repr(info['units'])}; allowed: a string"
                    " (quote it: units: '1')"
                )
    ext = meta.get("spatial_extent")
    if "spatial_extent" in meta:
        ok = (
            isinstance(ext, list)
            and len(ext) == 4
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in ext)
        )
        if not ok or not (
            -180 <= ext[0] <= 180
            and -180 <= ext[2] <= 180
            and ext[0] != ext[2]
            and -90 <= ext[1] < ext[3] <= 90
        ):
            problems.append(
                f"{where}: spatial_extent {ext!r} must be [lon_min, lat_min, lon_max, lat_max] within -180..180,"
                " -90..90 (lon_min > lon_max across the dateline)"
            )
    span = meta.get("temporal_extent")
    if "temporal_extent" in meta:
        try:  # dates as YAML reads them (2001-01-05) or as text; a number is not a date
            if not isinstance(span, list) or not all(isinstance(t, str | datetime.date) for t in span):
                raise TypeError(span)
            start, end = (pd.Timestamp(t) for t in span)
            if pd.isna(start) or pd.isna(end):
                raise ValueError(span)
            if start > end:
                problems.append(f"{where}: temporal_extent starts after it ends: {span!r}")
        except (TypeError, ValueError):
            problems.append(f"{where}: temporal_extent {short_repr(span)} must be [start, end] dates")
    return problems


def _check_store(entry: CubeEntry) -> list[str]:
    """Problems found by opening the store and comparing it with the metadata."""
    import numpy as np
    import pandas as pd

    where = f"{entry.catalog}: entry {entry.name!r}"
    try:
        ds = _open_entry(entry)
    except Exception as exc:  # any failure to open is the finding
        return [f"{where}: does not open: {exc}"]
    meta = entry.metadata
    problems = []
    for var, info in (meta.get("variables") or {}).items():
        if var not in ds.data_vars:
            problems.append(f"{where}: variable {var!r} is in the metadata but not in the store")
        elif isinstance(info, dict) and str(ds[var].attrs.get("units", "")) != str(info.get("units")):
            problems.append(
                f"{where}: variable {var!r} has units {ds[var].attrs.get('units')!r} in the store, {info.get('units')!r} in the metadata"
            )
    if "time" in ds.coords and meta.get("temporal_extent"):
        times = pd.DatetimeIndex(np.ravel(ds["time"].values))  # 2-D for minicubes: (minicube, step)
        have = [str(times.min().date()), str(times.max().date())]
        if have != [str(pd.Timestamp(t).date()) for t in meta["temporal_extent"]]:
            problems.append(f"{where}: temporal_extent {meta['temporal_extent']} but the store spans {have}")
    if {"lat", "lon"} <= set(ds.coords) and isinstance(meta.get("spatial_extent"), list):
        lon_min, lat_min, lon_max, lat_max = meta["spatial_extent"]
        lat, lon = ds["lat"].values, ds["lon"].values
        inside = np.zeros(lon.shape, bool)
        for west, east in _lon_intervals(lon_min, lon_max):
            inside |= (lon >= west) & (lon <= east)
        if lat.min() < lat_min or lat.max() > lat_max or not inside.all():
            problems.append(
                f"{where}: store cells span lon {lon.min():g}..{lon.max():g}, lat {lat.min():g}..{lat.max():g},"
                f" outside spatial_extent {meta['spatial_extent']}"
            )
    if isinstance(meta.get("chunks"), dict) and ds.data_vars:
        first = next(iter(ds.data_vars.values()))
        stored = first.encoding.get("chunks")
        if stored is not None:
            have = dict(zip(first.dims, (int(c) for c in stored), strict=True))
            if have != {d: int(c) for d, c in meta["chunks"].items()}:
                problems.append(f"{where}: chunks {meta['chunks']} in the metadata, {have} in the store")
    return problems


def validate_catalog(path: str | os.PathLike[str] | None = None, *, open_stores: bool = False) -> list[str]:
    """Check every entry of a catalog file; return one message per problem (empty when all is well).

    Checks the metadata (required keys, variables with units, extents); with ``open_stores`` also
    opens each store and compares variables, units, extents and chunks with the metadata.

    >>> validate_catalog(repo_root() / DEFAULT_CATALOG)
    []
    """
    path = Path(path) if path is not None else repo_root() / DEFAULT_CATALOG
    try:
        document = read_catalog_document(path)
    except CatalogError as exc:
        return [str(exc)]
    problems = [
        f"{Path(path).resolve()}: entry {n!r} {r}." for n, r in malformed_entries(document["sources"]).items()
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CatalogWarning)  # said above, as problems
        entries = read_catalog(path)
    for entry in entries.values():
        problems += _check_metadata(entry)
        if open_stores:
            problems += _check_store(entry)
    return problems
