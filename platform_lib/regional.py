"""Regional cubes on demand: subset (and optionally coarsen) a shared cube, store it for the team.

:func:`make_regional_cube` selects variables, a bounding box and a time range of a catalog cube
(through :func:`platform_lib.catalog.subset_cube`, the one place subsetting is checked), optionally
averages it to a coarser grid, re-chunks it for time-series ("ts") or map ("map") access, records its
provenance (source cube, bbox, time range, who, when) in the store's attributes and the catalog entry,
writes it atomically to the team storage and registers it in the team catalog, so every member sees
it in :func:`platform_lib.catalog.list_cubes` at once. The catalog entry is made from the store's own
attributes, so a call killed between publishing the store and registering it is finished by the next
call (:func:`reconcile_team_cubes`, which also removes the temporaries of killed writes).

Bad requests (bbox outside the source, an empty selection, an unknown variable, a name already
taken, a resolution that is not a multiple of the source's) raise
:class:`~platform_lib.errors.EsdlError` before anything is written.

>>> import os, tempfile
>>> from platform_lib.demo import make_demo_cube
>>> team = tempfile.mkdtemp()
>>> src = make_demo_cube(resolution=10.0, years=(2003, 2003))
>>> path = make_regional_cube(src, bbox=(-10, 35, 30, 60), time_range=("2003-06-01", "2003-08-31"),
...     variables=["air_temperature_2m"], name="europe-2003", team_dir=team,
...     catalog_path=os.path.join(team, "catalog.yaml"), progress=False)
>>> path.name
'europe-2003.zarr'
>>> xr.open_zarr(path).attrs["esdl_bbox"]
[-10.0, 35.0, 30.0, 60.0]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from filelock import FileLock, Timeout

from platform_lib.arguments import (
    bbox_argument,
    file_argument,
    number_argument,
    path_argument,
    text_argument,
    time_range_argument,
)
from platform_lib.catalog import describe_cube, list_cubes, open_cube, subset_cube
from platform_lib.errors import CatalogWarning, EsdlError, allowed, short_repr
from platform_lib.storage import crash_point, remove_path, remove_stale_temporaries, write_zarr_atomic
from platform_lib.team import (
    check_cube_name,
    current_user,
    list_team_cubes,
    register_cube,
    team_catalog_path,
    team_cube_entries,
    team_cubes_dir,
)

#: output chunk shapes (upper bounds; a small region gets smaller chunks)
CHUNKINGS: dict[str, dict[str, int | None]] = {
    "ts": {"time": 256, "lat": 128, "lon": 128},  # the ESDC's "ts" chunks: up to 16 MB of float32
    "map": {"time": 1, "lat": None, "lon": None},  # one time step, the whole region
}
SPACE_DIMS = ("lat", "lon")

__all__ = [
    "CHUNKINGS",
    "coarsen_cube",
    "coarsen_factor",
    "grid_resolution",
    "make_regional_cube",
    "output_chunks",
    "reconcile_team_cubes",
]

#: the provenance a regional cube's store carries as attributes (and its catalog entry as ``provenance``)
PROVENANCE_ATTRS = (
    "esdl_source_cube",
    "esdl_bbox",
    "esdl_time_range",
    "esdl_variables",
    "esdl_resolution",
    "esdl_chunking",
    "esdl_created_by",
    "esdl_created_at",
)
#: the store attribute that keeps a description given to :func:`make_regional_cube`
DESCRIPTION_ATTR = "esdl_description"


def grid_resolution(ds: xr.Dataset) -> float:
    """The cube's grid spacing in degrees (from ``lat``).

    >>> ds = xr.Dataset(coords={"lat": [0.5, 1.5, 2.5], "lon": [0.5, 1.5]})
    >>> grid_resolution(ds)
    1.0
    """
    lat = np.asarray(ds["lat"].values, dtype=float)
    if lat.size < 2:
        res = ds.attrs.get("geospatial_lat_resolution")
        if res is None:
            raise EsdlError(
                "cannot tell the grid resolution of a cube with a single latitude and no "
                "'geospatial_lat_resolution' attribute."
            )
        return float(str(res).split()[0])
    return float(np.round(np.median(np.abs(np.diff(lat))), 9))


def coarsen_factor(ds: xr.Dataset, resolution: float, label: str = "the cube") -> int:
    """How many source cells per side make one cell of ``resolution`` degrees (checked: a whole
    multiple of the source grid, and no coarser than the region).

    >>> coarsen_factor(xr.Dataset(coords={"lat": [0.5, 1.5, 2.5], "lon": [0.5, 1.5]}), 2.0)
    2
    """
    source_res = grid_resolution(ds)
    factor = float(resolution) / source_res
    if float(resolution) <= 0 or abs(factor - round(factor)) > 1e-6 or round(factor) < 1:
        examples = ", ".join(f"{source_res * k:g}" for k in (1, 2, 3, 4, 5))
        raise EsdlError(
            f"resolution {resolution!r} degrees is not a whole multiple of the grid of {label}"
            f" ({source_res:g} degrees); allowed: {examples}, ..."
        )
    factor = round(factor)
    if any(ds.sizes[d] < factor for d in SPACE_DIMS):
        raise EsdlError(
            f"resolution {resolution:g} degrees is coarser than the selected region of {label}"
            f" ({ds.sizes['lat']} x {ds.sizes['lon']} cells of {source_res:g} degrees): the selection would be"
            " empty. Choose a larger bbox or a finer resolution."
        )
    return factor


def coarsen_cube(ds: xr.Dataset, resolution: float, label: str = "the cube") -> xr.Dataset:
    """Average ``ds`` to ``resolution`` degrees (an integer multiple of its own), NaN-aware.

    Cells at the region's edge that do not fill a whole coarse cell are dropped. Longitudes are
    averaged on the circle, so a region across the dateline keeps correct cell centres.

    >>> ds = xr.Dataset({"t": (("lat", "lon"), np.arange(16.0).reshape(4, 4))},
    ...                 coords={"lat": [0.5, 1.5, 2.5, 3.5], "lon": [178.5, 179.5, -179.5, -178.5]})
    >>> out = coarsen_cube(ds, 2.0)
    >>> out["lon"].values.tolist(), out["t"].values[0].tolist()
    ([179.0, -179.0], [2.5, 4.5])
    """
    factor = coarsen_factor(ds, resolution, label)
    if factor == 1:
        return ds
    lon = np.asarray(ds["lon"].values, dtype=float)
    unwrapped = np.where(lon < lon[0], lon + 360.0, lon)  # contiguous across the dateline
    work = ds.assign_coords(lon=unwrapped)
    with xr.set_options(keep_attrs=True):
        out = work.coarsen(lat=factor, lon=factor, boundary="trim").mean()  # NaN-aware for floats
    new_lon = ((out["lon"].values + 180.0) % 360.0) - 180.0
    out = out.assign_coords(lon=("lon", new_lon, ds["lon"].attrs))
    out["lat"].attrs.update(ds["lat"].attrs)
    for name, var in ds.data_vars.items():
        out[name] = out[name].astype(var.dtype)
    return out


def output_chunks(
    sizes: Mapping[str, int], chunking: str | Mapping[str, int], what: str = "chunking"
) -> dict[str, int]:
    """The chunk shape of a regional cube of ``sizes`` for ``chunking`` ("ts", "map" or a mapping).

    >>> output_chunks({"time": 460, "lat": 200, "lon": 30}, "ts")
    {'time': 256, 'lat': 128, 'lon': 30}
    >>> output_chunks({"time": 46, "lat": 100, "lon": 30}, "map")
    {'time': 1, 'lat': 100, 'lon': 30}
    """
    if isinstance(chunking, Mapping):
        unknown = [d for d in chunking if d not in sizes]
        if unknown:
            raise EsdlError(
                f"{what} names unknown dims {sorted(map(short_repr, unknown))}; the cube has {allowed(sizes)}."
            )
        spec = {d: chunking.get(d) for d in sizes}
    elif isinstance(chunking, str) and chunking in CHUNKINGS:
        spec = {d: CHUNKINGS[chunking].get(d) for d in sizes}
    else:
        raise EsdlError(
            f"{what} {short_repr(chunking)} is not known: use {allowed(CHUNKINGS)} or a mapping dim -> size."
        )
    out = {}
    for dim, size in sizes.items():
        want = spec.get(dim)
        if want is not None:
            number_argument(want, f"{what}: the chunk size of dim {dim!r}", low=1, integer=True)
        out[dim] = int(size if want is None else min(want, size))
    return out


def _open_source(source: str | xr.Dataset) -> tuple[xr.Dataset, str, dict[str, Any]]:
    if isinstance(source, xr.Dataset):
        label = str(source.attrs.get("id") or source.attrs.get("title") or "an in-memory dataset")
        return source, label, {}
    if not isinstance(source, str):
        raise EsdlError(
            f"source must be a catalog cube name or an xarray.Dataset, not {type(source).__name__}."
        )
    # no dask yet: the region is cut lazily, then chunked so that each task reads exactly one output
    # chunk in one call, whose stored chunks zarr fetches concurrently (bench/regional_cube.py)
    return open_cube(source, chunks=None), source, describe_cube(source)


def _check_overlap(ds: xr.Dataset, bbox: tuple[float, float, float, float], label: str) -> None:
    """A bbox (checked by ``bbox_argument``) that does not touch the source's extent gets its own message."""
    lon_min, lat_min, lon_max, lat_max = bbox
    half = grid_resolution(ds) / 2 if ds.sizes.get("lat", 0) > 1 else 0.0
    lat = ds["lat"].values
    lon = ds["lon"].values
    s_lat = (float(lat.min()) - half, float(lat.max()) + half)
    s_lon = (float(lon.min()) - half, float(lon.max()) + half)
    lat_overlap = lat_max >= s_lat[0] and lat_min <= s_lat[1]
    if lon_min <= lon_max:
        lon_overlap = lon_max >= s_lon[0] and lon_min <= s_lon[1]
    else:  # across the dateline: [lon_min, 180] or [-180, lon_max]
        lon_overlap = s_lon[1] >= lon_min or s_lon[0] <= lon_max
    if not (lat_overlap and lon_overlap):
        raise EsdlError(
            f"bbox {tuple(bbox)} lies outside the source {label} (it covers lon {s_lon[0]:g}..{s_lon[1]:g},"
            f" lat {s_lat[0]:g}..{s_lat[1]:g}); nothing was written."
        )


def check_name_free(name: str, catalog: Path, target: Path, recovered: Sequence[str] = ()) -> None:
    """Raise :class:`EsdlError` (nothing was written) if team cube ``name`` cannot be made at ``target``:
    the name is in a catalog, or a store is already there (finished or not)."""
    names = set(list_team_cubes(catalog))
    names.update(list_cubes())
    if name in recovered:
        raise EsdlError(
            f"cube name {name!r} is already taken: an earlier call making {name!r} was killed after its store"
            f" {target} was finished and before it was registered, and that finished cube is registered now."
            f" Open it (open_cube({name!r})), or remove it first (esdl cubes regional --remove {name})."
            " Nothing was written."
        )
    if name in names:
        raise EsdlError(
            f"cube name {name!r} is already taken (see `esdl cubes list`); choose another name or remove"
            f" the team cube first (esdl cubes regional --remove {name}). Nothing was written."
        )
    if target.exists():
        problem = _unfinished(target)
        why = (
            f"it {problem}, so it is never registered by itself"
            if problem
            else "it is complete but its registration has not happened yet (another call is registering it"
            " now, or was killed a moment ago: the next call registers it)"
        )
        raise EsdlError(
            f"a store {target} already exists for cube name {name!r} and is not in the team catalog {catalog}:"
            f" {why}. Choose another name, or remove that store if nobody needs it. Nothing was written."
        )


def _provenance(
    source_label: str,
    bbox: Sequence[float],
    time_range: Sequence[Any] | None,
    variables: list[str],
    resolution: float,
    chunking: str | Mapping[str, int],
) -> dict[str, Any]:
    """The provenance attributes (:data:`PROVENANCE_ATTRS`) of a new regional cube."""
    return {
        "esdl_source_cube": source_label,
        "esdl_bbox": [float(b) for b in bbox],
        "esdl_time_range": [str(pd.Timestamp(t).date()) for t in time_range]
        if time_range is not None
        else None,
        "esdl_variables": variables,
        "esdl_resolution": resolution,
        "esdl_chunking": chunking if isinstance(chunking, str) else dict(chunking),
        "esdl_created_by": current_user(),
        "esdl_created_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def make_regional_cube(
    source: str | xr.Dataset,
    *,
    bbox: Sequence[float],
    name: str,
    time_range: Sequence[Any] | None = None,
    variables: str | Iterable[str] | None = None,
    resolution: float | None = None,
    chunking: str | Mapping[str, int] = "ts",
    team_dir: str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    description: str | None = None,
    progress: bool | str = True,
) -> Path:
    """Make a regional cube from ``source`` and share it with the team; return its store path.

    - ``source``: a catalog cube name (e.g. ``"esdc-demo-ts"``) or an ``xarray.Dataset``.
    - ``bbox``: ``(lon_min, lat_min, lon_max, lat_max)``; ``lon_min > lon_max`` crosses the dateline.
    - ``time_range``: ``(start, end)`` inclusive (default: all); ``variables``: names (default: all).
    - ``resolution``: degrees, a whole multiple of the source grid, to average to (default: keep).
    - ``chunking``: ``"ts"`` (long time series, small tiles), ``"map"`` (one step per chunk) or a
      mapping dim -> chunk size.
    - ``name``: the catalog name (lower case, digits, ``-_.``); stored as ``<team>/cubes/<name>.zarr``.
    - ``team_dir`` / ``catalog_path``: the team folder and catalog (default ``ESDL_TEAM_DIR`` and
      ``ESDL_TEAM_CATALOG``).

    The store carries the provenance as ``esdl_*`` attributes; the catalog entry carries it as
    metadata, plus the ``title``, ``variables``, extents and ``chunking`` every catalog entry has.
    All checks happen before anything is written, and the store is written atomically.

    >>> import tempfile
    >>> from platform_lib.demo import make_demo_cube
    >>> team = tempfile.mkdtemp()
    >>> make_regional_cube(make_demo_cube(10.0, (2003, 2003)), bbox=(0, -80, 10, -60), name="x",
    ...     variables=["kndvi"], team_dir=team, catalog_path=team + "/c.yaml", progress=False).name
    'x.zarr'
    >>> make_regional_cube(make_demo_cube(10.0, (2003, 2003)), bbox=(0, -80, 10, -60), name="x",
    ...     team_dir=team, catalog_path=team + "/c.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: cube name 'x' is already taken ...
    """
    check_cube_name(name)
    if bbox is None:
        raise EsdlError("bbox is required: (lon_min, lat_min, lon_max, lat_max) in degrees.")
    bbox = bbox_argument(bbox)
    time_range = None if time_range is None else time_range_argument(time_range)
    if resolution is not None:
        resolution = number_argument(resolution, "resolution", low=0, low_open=True)
    if description is not None:
        description = text_argument(description, "description")
    if not isinstance(progress, bool | str):
        raise EsdlError(f"progress must be True, False or a label for the bar; got {short_repr(progress)}.")
    team_dir = None if team_dir is None else path_argument(team_dir, "team_dir")
    catalog_path = None if catalog_path is None else file_argument(catalog_path, "catalog_path")
    catalog = team_catalog_path(catalog_path, team=team_dir)
    target = team_cubes_dir(team_dir, create=False) / f"{name}.zarr"  # made by the write, not before
    recovered = reconcile_team_cubes(team_dir, catalog)  # finish what a killed earlier call left
    check_name_free(name, catalog, target, recovered)  # fail fast; checked again under the name's lock

    ds, label, source_meta = _open_source(source)
    label_q = f"cube {label!r}"
    _check_overlap(ds, bbox, label_q)
    region = subset_cube(ds, variables=variables, bbox=bbox, time_range=time_range, label=label_q)
    missing_dims = [d for d in ("time", *SPACE_DIMS) if d not in region.dims]
    if missing_dims:
        raise EsdlError(f"{label_q} lacks dims {missing_dims}; a regional cube needs (time, lat, lon).")
    if not region.data_vars:
        raise EsdlError(f"the selection from {label_q} holds no variable; nothing was written.")
    source_res = grid_resolution(ds)
    out_res = source_res if resolution is None else float(resolution)
    factor = coarsen_factor(region, out_res, label_q)
    sizes = {d: n // factor if d in SPACE_DIMS else n for d, n in region.sizes.items()}
    if any(n == 0 for n in sizes.values()):
        raise EsdlError(f"the selection from {label_q} is empty ({sizes}); nothing was written.")
    chunks = output_chunks(sizes, chunking)
    # one read per output chunk (times the coarsening factor in space), then average, then store
    region = region.chunk({d: c * factor if d in SPACE_DIMS else c for d, c in chunks.items()})
    region = coarsen_cube(region, out_res, label_q).chunk(chunks)
    # zarr's default codec (zstd), not the source's: its filters may be lossy (bit rounding) and cost
    # time on every chunk (bench/regional_cube.py)
    encoding = {}
    for var_name, var in region.data_vars.items():
        encoding[var_name] = {"chunks": tuple(chunks[d] for d in var.dims)}
        region[var_name].encoding = {}
    for coord in region.coords:
        region[coord].encoding = {}

    var_names = list(region.data_vars)
    prov = _provenance(label, bbox, time_range, var_names, out_res, chunking)
    times = pd.DatetimeIndex(region["time"].values)
    lat = region["lat"].values
    attrs = dict(ds.attrs)
    attrs.update(prov)
    attrs.update(
        {
            "title": f"Regional cube {name} from {label}",
            "id": name,
            "time_coverage_start": str(times[0].date()),
            "time_coverage_end": str(times[-1].date()),
            "geospatial_lat_min": float(lat.min() - out_res / 2),
            "geospatial_lat_max": float(lat.max() + out_res / 2),
            "geospatial_lon_min": float(bbox[0]),
            "geospatial_lon_max": float(bbox[2]),
            "geospatial_lat_resolution": out_res,
            "geospatial_lon_resolution": out_res,
            "history": (str(ds.attrs.get("history", "")) + "\n" if ds.attrs.get("history") else "")
            + f"{prov['esdl_created_at']} {prov['esdl_created_by']}: regional subset of {label}"
            f" bbox={prov['esdl_bbox']} time_range={prov['esdl_time_range']} resolution={out_res:g}",
        }
    )
    region.attrs = attrs

    # the license the catalog gives the source, which the store keeps like its other attributes
    region.attrs["license"] = source_meta.get("license") or ds.attrs.get("license", "see source cube")
    if description:
        region.attrs[DESCRIPTION_ATTR] = description
    # the catalog entry is made from the store's own attributes, as the next call makes it for a store
    # whose registration a killed call lost (reconcile_team_cubes)
    metadata, description = _catalog_entry(
        region.attrs, {v: region[v].attrs for v in var_names}, chunks=chunks
    )
    # one member at a time per name: two members making the same name never overwrite each other
    with name_lock(target.parent, name, timeout=-1):
        check_name_free(name, catalog, target, recovered)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
            write_zarr_atomic(
                region,
                target,
                encoding=encoding,
                overwrite=False,
                progress=progress if progress is not True else f"regional {name}",
            )
        crash_point("regional:stored")
        try:
            register_cube(name, target, metadata, catalog_path=catalog, description=description)
        except BaseException:
            remove_path(target)  # the name was registered meanwhile: leave nothing
            raise
    return target


def name_lock(folder: Path, name: str, timeout: float) -> FileLock:
    """The lock that one call making (or reconciling) cube ``name`` holds."""
    return FileLock(str(folder / f".{name}.lock"), timeout=timeout)


def _catalog_entry(
    attrs: Mapping[str, Any], variables: Mapping[str, Mapping[str, Any]], chunks: Mapping[str, int]
) -> tuple[dict[str, Any], str]:
    """A regional cube's catalog ``metadata`` and ``description``, from its store's attributes, its
    variables' attributes and its chunk shape: the one place they are made, for a new cube and for one
    whose registration was lost."""
    prov = {k: attrs[k] for k in PROVENANCE_ATTRS}
    metadata = {
        "title": attrs["title"],
        "variables": {v: {k: var.get(k, "") for k in ("long_name", "units")} for v, var in variables.items()},
        "spatial_extent": [float(b) for b in prov["esdl_bbox"]],
        "temporal_extent": [attrs["time_coverage_start"], attrs["time_coverage_end"]],
        "resolution": prov["esdl_resolution"],
        "chunking": prov["esdl_chunking"] if isinstance(prov["esdl_chunking"], str) else "custom",
        "chunks": [int(chunks[d]) for d in ("time", *SPACE_DIMS)],
        "license": attrs.get("license", "see source cube"),
        "source": f"regional subset of {prov['esdl_source_cube']}",
        "provenance": {k.removeprefix("esdl_"): v for k, v in prov.items()},
    }
    description = attrs.get(DESCRIPTION_ATTR) or f"{attrs['title']} (bbox {prov['esdl_bbox']})."
    return metadata, description


def _finished_store(store: Path) -> tuple[dict[str, Any], str] | str:
    """The catalog entry (``metadata``, ``description``) of a finished regional cube's store, made from its
    attributes (:func:`_catalog_entry`); or, for a store that is not one, what it lacks.

    Finished means: Zarr v3 group metadata with consolidated metadata, the provenance attributes, and the
    metadata of every variable and coordinate on disk. (Chunks are not counted: zarr writes no chunk that
    holds only the fill value, so a complete store of an ocean region may have none.)"""
    try:
        root = json.loads((store / "zarr.json").read_text())
    except OSError:
        return "has no Zarr metadata (zarr.json)"
    except (ValueError, UnicodeDecodeError):
        return "has unreadable Zarr metadata (zarr.json is not JSON)"
    if not isinstance(root, dict) or root.get("node_type") != "group":
        return "is not a Zarr v3 group"
    attrs = root.get("attributes")
    arrays = (root.get("consolidated_metadata") or {}).get("metadata")
    if not isinstance(attrs, dict) or not isinstance(arrays, dict):
        return "has no consolidated metadata"
    missing = [
        k for k in (*PROVENANCE_ATTRS, "title", "time_coverage_start", "time_coverage_end") if k not in attrs
    ]
    if missing:
        return f"is not a regional cube (no {', '.join(missing)} attributes)"
    variables = attrs["esdl_variables"]
    if not isinstance(variables, list) or not variables or not all(isinstance(v, str) for v in variables):
        return f"names no variables in esdl_variables ({variables!r})"
    for array in (*variables, "time", *SPACE_DIMS):
        meta = arrays.get(array)
        if not isinstance(meta, dict) or not (store / array / "zarr.json").is_file():
            return f"lacks the metadata of its array {array!r}"
    try:
        first = arrays[variables[0]]
        chunks = dict(
            zip(first["dimension_names"], first["chunk_grid"]["configuration"]["chunk_shape"], strict=True)
        )
        return _catalog_entry(attrs, {v: arrays[v].get("attributes") or {} for v in variables}, chunks)
    except (KeyError, TypeError, ValueError) as exc:
        return f"has metadata this version cannot read ({type(exc).__name__}: {exc})"


def _unfinished(store: Path) -> str | None:
    """What a store lacks to be a finished regional cube, or ``None`` if it is one."""
    found = _finished_store(store)
    return found if isinstance(found, str) else None


def reconcile_team_cubes(
    team_dir: str | os.PathLike[str] | None = None, catalog_path: str | os.PathLike[str] | None = None
) -> list[str]:
    """Finish what killed calls of :func:`make_regional_cube` left in the team folder; return the names
    registered now. Every call of :func:`make_regional_cube` and ``esdl cubes regional --list`` runs it.

    - Temporaries of writes that died are removed (never a live write's, in this process or another
      member's: see :func:`platform_lib.storage.remove_stale_temporaries`).
    - A store is renamed into place only when complete, so a finished regional cube's store without a
      catalog entry means its call died between the rename and the registration: it is registered from
      its own attributes (the provenance ``esdl_*``, title, extents, variables and chunks; the entry is
      the one the call would have written, plus ``recovered_by`` / ``recovered_at``). Registering, not
      removing, keeps the work the member asked for and that was finished; nothing of it is guessed.
    - A store that is not a finished regional cube (no ``zarr.json``, an array's metadata missing, no
      provenance) is never registered; it is left alone (it may be someone's data) and its name stays
      refused with a message that says why. A name another call is making right now is left to it.

    A store that cannot be registered (its name taken by the shared catalog meanwhile, a team catalog
    with a bad entry, no write permission) is reported as a :class:`~platform_lib.errors.CatalogWarning`
    and the others are still registered.

    >>> import tempfile
    >>> reconcile_team_cubes(tempfile.mkdtemp())
    []
    """
    folder = team_cubes_dir(team_dir, create=False)
    if not folder.is_dir():
        return []
    remove_stale_temporaries(folder)
    catalog = team_catalog_path(catalog_path, team=team_dir)
    registered: list[str] = []
    entries = team_cube_entries(catalog)
    for store in sorted(folder.glob("*.zarr")):
        name = store.name.removesuffix(".zarr")
        if name in entries or not store.is_dir() or not isinstance(found := _finished_store(store), tuple):
            continue
        lock = name_lock(folder, name, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            continue  # a live call is making this cube: it registers it itself
        try:
            if name in team_cube_entries(catalog) or not store.is_dir():
                continue
            metadata, description = found
            metadata = {
                **metadata,
                "registered_by": metadata["provenance"]["created_by"],
                "recovered_by": current_user(),
                "recovered_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            }
            register_cube(name, store, metadata, catalog_path=catalog, description=description)
            registered.append(name)
        except (EsdlError, OSError) as exc:
            warnings.warn(
                CatalogWarning(
                    f"{store} is a finished regional cube whose registration was lost, and registering it"
                    f" as {name!r} failed: {exc} It is left in place: register it under another name"
                    " (platform_lib.team.register_cube), or remove it if nobody needs it."
                ),
                stacklevel=2,
            )
        finally:
            lock.release()
    return registered
