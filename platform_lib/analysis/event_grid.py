"""The (time, lat, lon) grid of event labels, shared by the in-memory and the chunked event paths.

What :mod:`platform_lib.analysis.events` and :mod:`platform_lib.analysis.events_chunked` both need,
so that neither imports the other's internals: the dims and the 26-connectivity of events
(:data:`STRUCTURE`, :func:`touching_pairs`), the grid's geometry (:func:`grid_geometry`: cell areas,
step lengths, whether longitude wraps around) and the event table built from per-event sums
(:func:`cell_frame` gives one row per event cell, :data:`EVENT_SUMS` reduces them per event, in one
go or chunk by chunk, and :func:`table_from_parts` turns the sums into :data:`EVENT_COLUMNS`).

One event, two steps long and 1 x 2 cells wide, on a 1 degree grid:

>>> import numpy as np, pandas as pd, xarray as xr
>>> labels = xr.DataArray(np.zeros((3, 2, 2), np.int32), dims=DIMS, coords={
...     "time": pd.date_range("2001-01-01", periods=3, freq="8D"), "lat": [0.5, 1.5], "lon": [10.5, 11.5]})
>>> labels[1:, 0, :] = 1
>>> geometry = grid_geometry(labels)
>>> t, y, x = np.nonzero(labels.values)
>>> cells = cell_frame(labels.values[t, y, x], t, y, x, geometry)
>>> sums = cells.groupby("id").agg(**EVENT_SUMS)
>>> table = table_from_parts(sums, cells[["id", "y", "x"]].drop_duplicates(), None, {}, geometry)
>>> table[["event_id", "n_steps", "duration_days", "n_cells", "lon_min", "lon_max"]].to_dict("records")
[{'event_id': 1, 'n_steps': 2, 'duration_days': 16.0, 'n_cells': 4, 'lon_min': 10.0, 'lon_max': 12.0}]
>>> table[["lat_min", "lat_max", "centroid_lat", "centroid_lon"]].round(6).values.tolist()
[[0.0, 1.0, 0.5, 11.0]]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.catalog import dateline_order

EARTH_RADIUS_KM = 6371.0088
DIMS = ("time", "lat", "lon")
STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def _spacing(coord: xr.DataArray) -> float:
    values = np.asarray(coord.values, dtype=np.float64)
    return float(np.median(np.abs(np.diff(values)))) if values.size > 1 else 1.0


def is_global_lon(lon: xr.DataArray | np.ndarray) -> bool:
    """True when ``lon`` cell centres cover all 360 degrees (so the first and last columns touch).

    >>> is_global_lon(np.arange(-175.0, 180.0, 10.0)), is_global_lon(np.arange(0.0, 90.0, 10.0))
    (True, False)
    """
    values = np.asarray(lon, dtype=np.float64)
    if values.size < 2:
        return False
    step = float(np.median(np.abs(np.diff(values))))
    return math.isclose(step * values.size, 360.0, rel_tol=1e-6)


def touching_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(k, 2)`` unique label pairs of two adjacent planes that touch with 26-connectivity.

    ``a`` and ``b`` are label planes on either side of a boundary (same shape); a cell of ``a``
    touches the nine cells of ``b`` around the same position (face, edge and corner neighbours).

    >>> a = np.array([[0, 1], [0, 0]])
    >>> b = np.array([[0, 0], [2, 3]])  # 1 touches 2 by a corner, 3 by an edge
    >>> touching_pairs(a, b).tolist()
    [[1, 2], [1, 3]]
    """
    n_t, n_y = a.shape
    pairs = []
    for dt in (-1, 0, 1):
        for dy in (-1, 0, 1):
            pa = a[max(0, -dt) : n_t - max(0, dt), max(0, -dy) : n_y - max(0, dy)]
            pb = b[max(0, dt) : n_t - max(0, -dt), max(0, dy) : n_y - max(0, -dy)]
            hit = (pa > 0) & (pb > 0)
            if hit.any():
                pairs.append(np.stack([pa[hit], pb[hit]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def connectivity_name(wrap_lon: bool) -> str:
    """The ``connectivity`` attribute of event labels.

    >>> connectivity_name(True), connectivity_name(False)
    ('26, wrap-around in lon', '26')
    """
    return "26, wrap-around in lon" if wrap_lon else "26"


def _step_days(time: xr.DataArray) -> np.ndarray:
    """Length in days of each time step: the gap to the next stamp (the last repeats the median)."""
    t = pd.DatetimeIndex(time.values)
    if len(t) < 2:
        return np.ones(len(t))
    gaps = np.diff(t.values).astype("timedelta64[s]").astype(np.float64) / 86400.0
    return np.append(gaps, np.median(gaps))


def cell_area_km2(lat: np.ndarray, dlat: float, dlon: float) -> np.ndarray:
    """Area of grid cells centred at ``lat`` (degrees), ``cos(lat)``-weighted.

    >>> round(float(cell_area_km2(np.array([0.0]), 1.0, 1.0)[0]))
    12364
    """
    km_per_degree = EARTH_RADIUS_KM * math.pi / 180.0
    return km_per_degree**2 * dlat * dlon * np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64)))


def _lon_extent(lons: np.ndarray, dlon: float, circular: bool) -> tuple[float, float]:
    lons = np.unique(lons)
    if not circular or lons.size == 1:
        return float(lons.min() - dlon / 2), float(lons.max() + dlon / 2)
    gaps = np.diff(np.append(lons, lons[0] + 360.0))
    i = int(np.argmax(gaps))  # the widest empty stretch is outside the event
    if i == lons.size - 1:
        return float(lons[0] - dlon / 2), float(lons[-1] + dlon / 2)
    lo, hi = lons[i + 1] - dlon / 2, lons[i] + dlon / 2
    return float((lo + 180.0) % 360.0 - 180.0), float((hi + 180.0) % 360.0 - 180.0)


EVENT_COLUMNS = [
    "event_id", "start", "end", "n_steps", "duration_days", "n_cells", "area_km2", "volume_km2_days",
    "lat_min", "lat_max", "lon_min", "lon_max", "centroid_lat", "centroid_lon", "peak_score", "peak_time",
    "variables",
]  # fmt: skip


def grid_geometry(labels: xr.DataArray) -> dict:
    """Coordinates, spacings, cell areas and step lengths of a (time, lat, lon) grid.

    Keys: ``lat, lon, times, dlat, dlon, circular`` (longitude wraps around: a global grid, or a
    regional one across the dateline, whose longitudes go up to 180 and on from -180, as a bbox
    across the dateline selects them, or sorted and split at 180,
    :func:`~platform_lib.catalog.dateline_order`; event
    extents are then found on the circle), ``days`` (length of each
    step: the gap to the next stamp, the last repeats the median), ``cum_days`` (their running sum from
    0) and ``area`` (km2 of a cell at each latitude).

    >>> grid = xr.DataArray(np.zeros((3, 1, 36)), dims=DIMS, coords={"time": pd.date_range("2001-01-01",
    ...     periods=3, freq="8D"), "lat": [0.5], "lon": np.arange(-175.0, 180.0, 10.0)})
    >>> g = grid_geometry(grid)
    >>> g["dlon"], g["circular"], g["days"].tolist(), g["cum_days"].tolist(), round(float(g["area"][0]))
    (10.0, True, [8.0, 8.0, 8.0], [0.0, 8.0, 16.0, 24.0], 123639)
    >>> grid_geometry(grid.isel(lon=[34, 35, 0, 1]))["circular"]  # 165, 175, -175, -165: across 180
    True
    """
    lat = np.asarray(labels["lat"].values, dtype=np.float64)
    lon = np.asarray(labels["lon"].values, dtype=np.float64)
    dlat, dlon = _spacing(labels["lat"]), _spacing(labels["lon"])
    days = _step_days(labels["time"])
    return {
        "lat": lat,
        "lon": lon,
        "times": pd.DatetimeIndex(labels["time"].values),
        "dlat": dlat,
        "dlon": dlon,
        "circular": is_global_lon(lon) or bool((np.diff(lon) < 0).any()) or dateline_order(lon) is not None,
        "days": days,
        "cum_days": np.concatenate([[0.0], np.cumsum(days)]),
        "area": cell_area_km2(lat, dlat, dlon),
    }


def step_counts(
    ids: np.ndarray, t: np.ndarray, y: np.ndarray, counts: np.ndarray | None = None
) -> np.ndarray:
    """``(k, 4)`` int64 rows ``(id, t, y, cells)``: how many cells each event has at each step and latitude.

    ``ids, t, y`` are event cells (``counts``: how many cells each row stands for, default one). Rows
    for the same ``(id, t, y)`` are summed (integers: the same whatever the order or the chunks), and
    the result is sorted by ``(id, t, y)``; :func:`event_volumes` turns it into km2 x days.

    >>> step_counts(np.array([2, 1, 2, 2]), np.array([0, 0, 0, 1]), np.array([5, 5, 5, 5])).tolist()
    [[1, 0, 5, 1], [2, 0, 5, 2], [2, 1, 5, 1]]
    """
    keys = np.stack([np.asarray(a, dtype=np.int64) for a in (ids, t, y)], axis=1)
    weights = np.ones(len(keys), np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros((0, 4), np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)  # sorted by (id, t, y)
    summed = np.bincount(inverse.ravel(), weights=weights, minlength=len(unique)).astype(np.int64)
    return np.column_stack([unique, summed])


def event_volumes(rows: np.ndarray, geometry: dict) -> tuple[np.ndarray, np.ndarray]:
    """Event ids and their volume in km2 x days (cell area x step length, summed) from
    :func:`step_counts` rows.

    The sums run in ``(id, t, y)`` order over integer cell counts, so the in-memory and the chunked
    path get the very same floats, and a size filter on them keeps the same events both ways.

    >>> grid = xr.DataArray(np.zeros((2, 2, 3)), dims=DIMS, coords={"time": pd.date_range("2001-01-01",
    ...     periods=2, freq="8D"), "lat": [0.0, 60.0], "lon": [0.0, 1.0, 2.0]})
    >>> ids, km2_days = event_volumes(step_counts([4, 4, 4], [0, 0, 1], [0, 1, 1]), grid_geometry(grid))
    >>> equator_cell = cell_area_km2(np.array([0.0]), 60.0, 1.0)[0]  # 60 x 1 degree cells
    >>> ids.tolist(), round(float(km2_days[0] / equator_cell / 8), 6)  # 1 + 2 x cos(60) cells, 8 days
    ([4], 2.0)
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    ids, inverse = np.unique(rows[:, 0], return_inverse=True)
    w = geometry["area"][rows[:, 2]] * geometry["days"][rows[:, 1]] * rows[:, 3]
    return ids, np.bincount(inverse.ravel(), weights=w, minlength=len(ids))


def needs_coords(grid: xr.DataArray, what: str) -> None:
    """Raise an :class:`~platform_lib.errors.EsdlError` unless ``grid`` has ``time`` and ``lat`` coordinates
    (cell areas and step lengths come from them).

    >>> needs_coords(xr.DataArray(np.zeros((1, 1, 1)), dims=DIMS), "min_area_days")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: min_area_days needs the grid's coordinates (cell areas and step lengths); it has none for ['time', 'lat'].
    """
    from platform_lib.errors import EsdlError

    missing = [d for d in ("time", "lat") if d not in grid.coords]
    if missing:
        raise EsdlError(
            f"{what} needs the grid's coordinates (cell areas and step lengths); it has none for {missing}."
        )


#: per-event reductions of the cell frame (:func:`cell_frame`); chunk by chunk they combine again by
#: the same reduction (min of mins, sum of sums)
EVENT_SUMS = {
    "t0": ("t", "min"), "t1": ("t", "max"), "n": ("t", "size"), "vol": ("w", "sum"), "s": ("sin", "sum"),
    "c": ("cos", "sum"), "wlat": ("wlat", "sum"), "y0": ("y", "min"), "y1": ("y", "max"),
}  # fmt: skip


def cell_frame(ids: np.ndarray, t: np.ndarray, y: np.ndarray, x: np.ndarray, geometry: dict) -> pd.DataFrame:
    """One row per event cell: its id, indices, weight (area x days) and weighted sin/cos(lon), lat.

    ``ids`` and the indices ``t, y, x`` are the event cells (e.g. from ``np.nonzero(labels)``);
    ``geometry`` is :func:`grid_geometry` of the grid.

    >>> grid = xr.DataArray(np.zeros((2, 1, 2)), dims=DIMS, coords={"time": pd.date_range("2001-01-01",
    ...     periods=2, freq="8D"), "lat": [60.0], "lon": [0.0, 90.0]})
    >>> t, y, x = np.array([0, 1]), np.array([0, 0]), np.array([0, 1])  # one cell at lon 0, one at 90
    >>> cells = cell_frame(np.array([7, 7]), t, y, x, grid_geometry(grid))
    >>> (cells["w"] / cell_area_km2(np.array([60.0]), 1.0, 90.0)[0]).tolist()  # cell area x 8 days
    [8.0, 8.0]
    >>> cells[["sin", "cos", "wlat"]].div(cells["w"], axis=0).round(6).values.tolist()
    [[0.0, 1.0, 60.0], [1.0, 0.0, 60.0]]
    """
    weight = geometry["area"][y] * geometry["days"][t]
    lon = np.deg2rad(geometry["lon"][x])
    df = pd.DataFrame({"id": ids, "t": t, "y": y, "x": x, "w": weight})
    df["sin"] = weight * np.sin(lon)
    df["cos"] = weight * np.cos(lon)
    df["wlat"] = weight * geometry["lat"][y]
    return df


def table_from_parts(
    agg: pd.DataFrame | None,
    footprint: pd.DataFrame | None,
    peak: pd.DataFrame | None,
    affected: dict[int, list[str]],
    geometry: dict,
) -> pd.DataFrame:
    """The event table from per-event sums (``agg``, by id), footprint cells ``(id, y, x)``, peaks
    (``score, t`` in ``agg`` order) and affected variables; no sums give an empty table.

    See the module docstring for a whole event; with no events:

    >>> table_from_parts(None, None, None, {}, {}).columns.tolist() == EVENT_COLUMNS
    True
    """
    if agg is None or len(agg) == 0:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    lat, lon, times, area = geometry["lat"], geometry["lon"], geometry["times"], geometry["area"]
    dlat, dlon, cum_days = geometry["dlat"], geometry["dlon"], geometry["cum_days"]
    fp_area = pd.Series(area[footprint["y"].to_numpy()], index=footprint.index).groupby(footprint["id"]).sum()
    fp_lons = {int(eid): lon[xs.to_numpy()] for eid, xs in footprint.groupby("id")["x"]}
    rows = []
    for a in agg.itertuples():
        eid = int(a.Index)
        lon_min, lon_max = _lon_extent(fp_lons[eid], dlon, geometry["circular"])
        row = {
            "event_id": int(eid),
            "start": times[a.t0],
            "end": times[a.t1],
            "n_steps": int(a.t1 - a.t0 + 1),
            "duration_days": float(cum_days[a.t1 + 1] - cum_days[a.t0]),
            "n_cells": int(a.n),
            "area_km2": float(fp_area[eid]),
            "volume_km2_days": float(a.vol),
            "lat_min": float(lat[a.y0] - dlat / 2),
            "lat_max": float(lat[a.y1] + dlat / 2),
            "lon_min": lon_min,
            "lon_max": lon_max,
            "centroid_lat": float(a.wlat / a.vol),
            "centroid_lon": float(np.rad2deg(np.arctan2(a.s, a.c))),
            "peak_score": np.nan,
            "peak_time": pd.NaT,
            "variables": affected.get(int(eid), []),
        }
        rows.append(row)
    table = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    if peak is not None:
        table["peak_score"] = peak["score"].to_numpy()
        table["peak_time"] = times[peak["t"].to_numpy()]
    return table


__all__ = [
    "DIMS",
    "EARTH_RADIUS_KM",
    "EVENT_COLUMNS",
    "EVENT_SUMS",
    "STRUCTURE",
    "cell_area_km2",
    "cell_frame",
    "connectivity_name",
    "event_volumes",
    "grid_geometry",
    "is_global_lon",
    "needs_coords",
    "step_counts",
    "table_from_parts",
    "touching_pairs",
]
