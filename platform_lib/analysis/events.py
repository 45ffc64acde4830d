"""Extreme events from a score cube: threshold, label in space-time, describe, and check against truth.

An event is a connected set of ``(time, lat, lon)`` cells whose score reaches a threshold, with
26-connectivity (cells touching by a face, an edge or a corner, in time as in space) and, on a global
grid, wrap-around in longitude: a cell in the last longitude column touches the first column, so an
event crossing the dateline is one event (labels touching across the seam are merged with a
union-find). A regional grid across the dateline is one piece too: in the order a bbox across 180
selects (lon up to 180, then on from -180), or sorted -180..180 and split at 180 (the Pacific stored
as -177.5 .. -97.5, 117.5 .. 177.5: labelled in dateline order, handed back in stored order, so
-97.5 and 117.5 do not touch; :func:`~platform_lib.catalog.dateline_order`). Events smaller than
``min_size`` cells, or (``min_area_days``) covering fewer km2 x days (cell area x step length: the
same for the same event on any grid), are dropped. A quantile threshold that lands on a tie of many
equal scores (REC) flags the closer share, ``>`` or ``>=``, with a warning.

Large dask-backed cubes are thresholded, labelled and described chunk by chunk (memory bounded by
the chunk size; :mod:`platform_lib.analysis.events_chunked`), with the same threshold, labels and
table as in memory; ``chunked=`` chooses explicitly.

The event table has one row per event: ``event_id, start, end, n_steps, duration_days, n_cells,
area_km2`` (footprint of cells hit at any time, each weighted by ``cos(lat)``), ``volume_km2_days``
(the sum of cell area x step length over the event's cells), the bounding box ``lat_min, lat_max,
lon_min, lon_max`` (cell edges; ``lon_min > lon_max`` when it crosses the dateline), the
``centroid_lat, centroid_lon`` (area-and-time weighted; circular mean in longitude), ``peak_score,
peak_time`` and ``variables`` (features whose mean absolute standardised anomaly in the event is at
least ``affected_threshold``, strongest first).

>>> import numpy as np, pandas as pd, xarray as xr
>>> lon = np.arange(-175.0, 180.0, 10.0)                     # global 10 degree grid
>>> score = xr.DataArray(np.zeros((6, 3, 36)), dims=("time", "lat", "lon"),
...     coords={"time": pd.date_range("2003-07-04", periods=6, freq="8D"), "lat": [40.0, 50.0, 60.0], "lon": lon})
>>> score[1:4, 1, [0, 35]] = 1.0                             # one event on both sides of the dateline
>>> events = detect_events(score, threshold=0.5, min_size=2)
>>> events.table[["event_id", "n_steps", "duration_days", "lon_min", "lon_max"]].to_dict("records")
[{'event_id': 1, 'n_steps': 3, 'duration_days': 24.0, 'lon_min': 170.0, 'lon_max': -170.0}]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from platform_lib.analysis.event_grid import (
    DIMS,
    EVENT_COLUMNS,
    EVENT_SUMS,
    STRUCTURE,
    cell_area_km2,
    cell_frame,
    connectivity_name,
    event_volumes,
    grid_geometry,
    is_global_lon,
    needs_coords,
    step_counts,
    table_from_parts,
    touching_pairs,
)
from platform_lib.arguments import cube_argument, flag_argument, number_argument, text_argument
from platform_lib.catalog import dateline_order
from platform_lib.errors import EsdlError, allowed

DEFAULT_QUANTILE = 0.999
DEFAULT_MIN_SIZE = 8
#: dask-backed cubes with more cells are done chunk by chunk by default (in memory: 36-46 bytes a cell)
IN_MEMORY_MAX_CELLS = 2**24


def _as_cube(da: xr.DataArray, what: str) -> xr.DataArray:
    missing = [d for d in DIMS if d not in da.dims]
    extra = [d for d in da.dims if d not in DIMS]
    if missing or extra:
        raise EsdlError(
            f"{what} must have exactly the dims {DIMS}; it has {tuple(map(str, da.dims))}"
            + (f" (missing {missing})" if missing else "")
            + (f" (select or reduce {extra} first)" if extra else "")
            + "."
        )
    return da.transpose(*DIMS)


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


def _merge_across_dateline(labels: np.ndarray, n: int) -> np.ndarray:
    """Lookup table old label -> merged label for labels touching across the first/last lon column."""
    parent = np.arange(n + 1)
    for a, b in touching_pairs(labels[:, :, 0], labels[:, :, -1]):
        ra, rb = _find(parent, int(a)), _find(parent, int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([_find(parent, i) for i in range(n + 1)])


def use_chunks(data: xr.DataArray, chunked: bool | None) -> bool:
    """Whether to label chunk by chunk: ``chunked``, or (``None``) dask-backed and above
    :data:`IN_MEMORY_MAX_CELLS` cells.

    >>> import dask.array as da
    >>> cube = xr.DataArray(da.zeros((2, 3, 4), chunks=2), dims=("time", "lat", "lon"))
    >>> use_chunks(cube, None), use_chunks(cube, True), use_chunks(cube.compute(), None)
    (False, True, False)
    """
    if chunked is None:
        return data.chunks is not None and data.size > IN_MEMORY_MAX_CELLS
    return bool(chunked)


def label_events(
    mask: xr.DataArray,
    *,
    min_size: int = 1,
    min_area_days: float | None = None,
    wrap_lon: bool | None = None,
    chunked: bool | None = None,
) -> xr.DataArray:
    """Label connected events in a boolean ``(time, lat, lon)`` mask: 0 outside events, 1..N inside.

    26-connectivity in (time, lat, lon); ``wrap_lon`` (default: when the grid is global) also joins
    the first and last longitude columns. A region stored sorted and split at 180 is labelled in one
    piece (:func:`~platform_lib.catalog.dateline_order`; its events are numbered in that
    order). An event is kept when it has at least ``min_size`` cells
    **and** (when given) covers at least ``min_area_days`` km2 x days: the sum over its cells of the
    cell area (``cos(lat)``-weighted, :func:`~platform_lib.analysis.event_grid.cell_area_km2`) times
    the step length in days -- the event table's ``volume_km2_days``, which, unlike a number of cells,
    does not change with the grid's resolution or latitude. The kept events are numbered by their
    first cell in ``(time, lat, lon)`` order (earliest start first).

    In memory (numpy, or ``chunked=False``) the mask is loaded (one byte per cell; the labels take
    four). Chunk by chunk (``chunked=True``; by default for dask-backed masks of more than
    :data:`IN_MEMORY_MAX_CELLS` cells) memory is bounded by the chunk size: each chunk is labelled
    alone, labels touching across chunk faces, edges, corners and the dateline are merged, and the
    labels come back lazy (dask), identical to the in-memory ones.

    >>> import numpy as np, xarray as xr
    >>> m = xr.DataArray(np.zeros((3, 2, 4), bool), dims=("time", "lat", "lon"), coords={"lon": [-135.0, -45.0, 45.0, 135.0]})
    >>> m[0, 0, 0] = m[1, 1, 3] = m[2, 0, 1] = True   # (1,1,3) touches (0,0,0) across the dateline
    >>> label_events(m).values[:, :, [0, 1, 3]].max(axis=(1, 2)).tolist()
    [1, 1, 2]
    >>> chunked = label_events(m.chunk({"time": 1, "lon": 2}), chunked=True)   # one chunk at a time
    >>> bool((chunked == label_events(m)).all())
    True

    On a 10 degree grid of 8-day steps a cell at 45N covers 874,000 km2 for 8 days: 7.0 million km2 x
    days. With ``min_area_days=1e7`` one cell is dropped, two cells over two steps are kept:

    >>> grid = xr.DataArray(np.zeros((3, 2, 4), bool), dims=("time", "lat", "lon"), coords={
    ...     "time": pd.date_range("2003-07-04", periods=3, freq="8D"), "lat": [45.0, 55.0], "lon": [0.0, 10.0, 20.0, 30.0]})
    >>> grid[0, 0, 0] = True; grid[0:2, 0, 2:4] = True
    >>> label_events(grid, min_area_days=1e7).values[:, 0].tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]
    >>> int((label_events(grid, min_size=1).values > 0).sum())   # by cells alone: 5, the single one too
    5
    """
    min_size = number_argument(min_size, "min_size", low=1, integer=True)
    if min_area_days is not None:
        min_area_days = number_argument(min_area_days, "min_area_days", low=0)
    if mask.dtype != bool:
        raise EsdlError(
            f"label_events needs a boolean mask, got dtype {mask.dtype}; threshold the scores first."
        )
    mask = _as_cube(mask, "the event mask")
    order = dateline_order(mask["lon"]) if "lon" in mask.coords else None
    if order is not None:  # a region stored split at 180: labelled in one piece, back in stored order
        labels = label_events(
            mask.isel(lon=order),
            min_size=min_size,
            min_area_days=min_area_days,
            wrap_lon=wrap_lon,
            chunked=chunked,
        )
        return labels.isel(lon=np.argsort(order))
    if min_area_days is not None:
        needs_coords(mask, "min_area_days")
    if wrap_lon is None:
        wrap_lon = is_global_lon(mask["lon"]) if "lon" in mask.coords else False
    if use_chunks(mask, chunked):
        from platform_lib.analysis.events_chunked import label_chunked

        return label_chunked(mask, min_size=min_size, min_area_days=min_area_days, wrap_lon=wrap_lon)
    m = np.asarray(mask.values, dtype=bool)
    labels, n = ndimage.label(m, structure=STRUCTURE)
    if n and wrap_lon and m.shape[2] > 1:
        labels = _merge_across_dateline(labels, n)[labels]
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= max(min_size, 1)
        keep[0] = False
        if min_area_days is not None:
            t, y, x = np.nonzero(labels)
            ids, km2_days = event_volumes(step_counts(labels[t, y, x], t, y), grid_geometry(mask))
            keep[ids[km2_days < min_area_days]] = False
        flat = labels.ravel()
        _, first_at = np.unique(flat, return_index=True)  # first cell of each label, raster (time) order
        present = np.unique(flat)
        order = present[keep[present]][np.argsort(first_at[keep[present]], kind="stable")]
        lookup = np.zeros(labels.max() + 1, dtype=np.int32)
        lookup[order] = np.arange(1, order.size + 1, dtype=np.int32)
        labels = lookup[labels]
    return xr.DataArray(
        labels.astype(np.int32, copy=False),
        coords=mask.coords,
        dims=DIMS,
        name="event",
        attrs={"long_name": "event label (0: no event)", "connectivity": connectivity_name(wrap_lon)},
    )


def _features_cube(features: xr.DataArray | None) -> xr.DataArray | None:
    if features is None:
        return None
    if "variable" not in features.dims:
        raise EsdlError(f"features need a 'variable' dim; they have {tuple(map(str, features.dims))}.")
    return features.transpose(*DIMS, "variable")


def event_table(
    labels: xr.DataArray,
    scores: xr.DataArray | None = None,
    features: xr.DataArray | None = None,
    *,
    affected_threshold: float = 1.0,
    chunked: bool | None = None,
) -> pd.DataFrame:
    """One row per labelled event (see the module docstring for the columns).

    ``scores`` (same grid) gives ``peak_score``/``peak_time``; ``features`` (the grid plus a
    ``variable`` dim, e.g. :func:`~platform_lib.analysis.anomaly_features`) gives the affected
    ``variables``: those whose mean absolute value over the event's cells is at least
    ``affected_threshold`` (1 standard deviation for standardised anomalies). ``chunked`` as in
    :func:`label_events`: chunk by chunk, each chunk's per-event sums, extremes and footprint are
    reduced, so no whole-cube array is built (the same table, up to floating-point rounding in
    the sums).

    >>> import numpy as np, xarray as xr
    >>> lab = xr.DataArray(np.zeros((2, 2, 2), np.int32), dims=("time", "lat", "lon"),
    ...     coords={"time": np.array(["2001-01-05", "2001-01-13"], "datetime64[ns]"), "lat": [0.5, 1.5], "lon": [0.5, 1.5]})
    >>> lab[:, 0, 0] = 1
    >>> row = event_table(lab).iloc[0]
    >>> int(row.n_steps), float(row.duration_days), round(float(row.area_km2)), round(float(row.volume_km2_days))
    (2, 16.0, 12364, 197822)
    >>> event_table(lab.chunk(time=1), chunked=True).equals(event_table(lab))
    True
    """
    labels = _as_cube(labels, "the labels")
    sc = _as_cube(scores, "the scores") if scores is not None else None
    ft = _features_cube(features)
    if use_chunks(labels, chunked):
        from platform_lib.analysis.events_chunked import event_table_chunked

        return event_table_chunked(labels, sc, ft, affected_threshold=affected_threshold)
    geometry = grid_geometry(labels)
    lab = np.asarray(labels.values)
    t, y, x = np.nonzero(lab)
    if t.size == 0:
        return table_from_parts(None, None, None, {}, geometry)
    df = cell_frame(lab[t, y, x], t, y, x, geometry)
    if sc is not None:
        values = (
            sc.data.vindex[t, y, x].compute() if sc.chunks is not None else np.asarray(sc.values)[t, y, x]
        )
        df["score"] = np.asarray(values, dtype=np.float64)
    g = df.groupby("id", sort=True)
    agg = g.agg(**EVENT_SUMS)
    footprint = df[["id", "y", "x"]].drop_duplicates()
    affected: dict[int, list[str]] = {}
    if ft is not None:
        names = [str(v) for v in ft["variable"].values]
        fv = ft.data.vindex[t, y, x].compute() if ft.chunks is not None else np.asarray(ft.values)[t, y, x]
        mean_abs = (
            pd.DataFrame(np.abs(np.asarray(fv, dtype=np.float64)), columns=names)
            .groupby(df["id"].to_numpy())
            .mean()
        )
        for eid, row in mean_abs.iterrows():
            strong = row[row >= affected_threshold].sort_values(ascending=False)
            affected[int(eid)] = list(strong.index)
    peak = df.loc[g["score"].idxmax().to_numpy()] if sc is not None else None
    return table_from_parts(agg, footprint, peak, affected, geometry)


@dataclass
class Events:
    """What :func:`detect_events` found: the label cube, the event table and the threshold used."""

    labels: xr.DataArray
    table: pd.DataFrame
    threshold: float
    quantile: float | None
    #: the cells flagged were those ``> threshold`` (a tie at the quantile, see :func:`detect_events`),
    #: not ``>=`` it
    strict: bool = False

    @property
    def mask(self) -> xr.DataArray:
        """Boolean (time, lat, lon): inside any kept event."""
        return (self.labels > 0).rename("event_mask")


def detect_events(
    scores: xr.DataArray | xr.Dataset,
    quantile: float | None = DEFAULT_QUANTILE,
    *,
    threshold: float | None = None,
    variable: str = "KNN_Gamma",
    min_size: int | None = None,
    min_area_days: float | None = None,
    features: xr.DataArray | None = None,
    wrap_lon: bool | None = None,
    affected_threshold: float = 1.0,
    chunked: bool | None = None,
) -> Events:
    """Threshold a score cube, label its events and describe them.

    The threshold is the ``quantile`` (default 0.999) of all finite scores, or ``threshold`` when
    given; cells with ``score >= threshold`` are candidates, labelled with :func:`label_events`
    (26-connectivity, dateline wrap-around) and kept when they have at least ``min_size`` cells
    and, when given, cover at least ``min_area_days`` km2 x days (cell area times step length, summed
    over the event's cells: its ``volume_km2_days``; unlike cells, the same for the same event on a
    finer or coarser grid). Both filters apply when both are given; ``min_size`` defaults to 8 cells,
    or to 1 (no cell filter) when ``min_area_days`` is given. ``scores`` is a DataArray or a Dataset from
    :func:`~platform_lib.analysis.anomaly_scores` (``variable`` picks the score, default KNN-Gamma).
    ``features`` (e.g. :func:`~platform_lib.analysis.anomaly_features`) name the affected variables.
    In memory (numpy scores, dask-backed ones of at most :data:`IN_MEMORY_MAX_CELLS` cells, or
    ``chunked=False``) the scores are computed once and loaded. Chunk by chunk (``chunked=True``, the
    default above that size) memory is bounded by the chunk size: the exact same quantile comes from
    a radix select over the chunks (:func:`~platform_lib.analysis.events_chunked.exact_quantile`),
    then one pass labels the chunks and sums the table; the labels stay lazy (reading them labels the
    chunks again). The scores are read 3-4 times (2-3 passes for the quantile, 1 for labels and
    table): write expensive scores to a store, or persist them on a cluster, first. Both ways give
    the same threshold, labels and table.

    **Ties.** A quantile of scores with many equal values (REC, ``1 -`` a recurrence rate, moves in
    steps of ``1/T``; quantile scores in steps of 0.01) can land on a value that many cells share, and
    ``>=`` would flag all of them: far more than the requested share ``1 - quantile``. So when the
    threshold from ``quantile`` is held by two or more cells, the cells flagged are those ``>`` it
    when that share of the finite scores is at least as close to ``1 - quantile`` as the share of
    those ``>=`` it, else those ``>=`` it; a warning names the score, the requested share, the tie
    and the share flagged. The flagged share is then never above twice the requested share (or one
    cell above it); it can be far below it (down to none, when the tie is at the top: the score
    cannot rank those cells). ``Events.strict`` says which was used. A ``threshold=`` value is used
    as given (``>=``).
    One threshold for all pixels needs scores that compare across pixels: use raw scores
    (``anomaly_scores(..., quantiles=False)``). Per-pixel quantile scores put the same share of every
    pixel's steps at the top, so they find as many "events" in calm places as in hot ones (a warning
    says so).

    On the demo cube (its injected events are the truth), with the defaults:

    >>> from platform_lib.demo import event_mask, make_demo_cube
    >>> from platform_lib.analysis import anomaly_features, anomaly_scores
    >>> cube = make_demo_cube(resolution=5.0, years=(2001, 2012))
    >>> features = anomaly_features(cube, ["air_temperature_2m", "root_moisture", "gross_primary_productivity"])
    >>> events = detect_events(anomaly_scores(features, ["KNN_Gamma"], quantiles=False, ensemble=None))
    >>> skill = event_skill(events.labels, event_mask(cube))
    >>> {k: round(v, 2) for k, v in skill.items()}
    {'precision': 0.59, 'recall': 0.85, 'f1': 0.7, 'event_precision': 0.36, 'event_recall': 1.0}
    """
    scores = cube_argument(scores, "scores")
    variable = text_argument(variable, "variable")
    if min_area_days is not None:
        min_area_days = number_argument(min_area_days, "min_area_days", low=0)
    if min_size is None:
        min_size = DEFAULT_MIN_SIZE if min_area_days is None else 1
    if quantile is not None:
        quantile = number_argument(quantile, "quantile", low=0, high=1, low_open=True, high_open=True)
    if threshold is not None:
        threshold = number_argument(threshold, "threshold")
    min_size = number_argument(min_size, "min_size", low=1, integer=True)
    affected_threshold = number_argument(affected_threshold, "affected_threshold")
    wrap_lon = None if wrap_lon is None else flag_argument(wrap_lon, "wrap_lon")
    chunked = None if chunked is None else flag_argument(chunked, "chunked")
    if features is not None:
        features = cube_argument(features, "features")
    if isinstance(scores, xr.Dataset):
        if variable not in scores.data_vars:
            raise EsdlError(f"no score {variable!r} in the Dataset; it has: {allowed(scores.data_vars)}.")
        scores = scores[variable]
    scores = _as_cube(scores, "the scores")
    order = dateline_order(scores["lon"]) if "lon" in scores.coords else None
    if order is not None:  # a region stored split at 180: labelled in one piece, back in stored order
        found = detect_events(
            scores.isel(lon=order),
            quantile,
            threshold=threshold,
            min_size=min_size,
            min_area_days=min_area_days,
            features=features.isel(lon=order)
            if features is not None and "lon" in features.dims
            else features,
            wrap_lon=wrap_lon,
            affected_threshold=affected_threshold,
            chunked=chunked,
        )
        return replace(found, labels=found.labels.isel(lon=np.argsort(order)))
    if scores.attrs.get("quantile_normalised") and threshold is None:
        warnings.warn(
            f"{scores.name or 'the score'} is quantile-normalised per pixel: every pixel has the same share "
            "of top scores, so one quantile over all pixels also flags calm places. Threshold raw scores "
            "(anomaly_scores(..., quantiles=False)) to compare pixels.",
            UserWarning,
            stacklevel=2,
        )
    if threshold is None and quantile is None:
        raise EsdlError("quantile=None needs a threshold value: give 0 < quantile < 1, or threshold=.")
    if threshold is not None:
        quantile = None
    if min_area_days is not None:
        needs_coords(scores, "min_area_days")
    name = str(scores.name or variable)
    strict = False
    if use_chunks(scores, chunked):  # exact quantile, then labels and table in one pass over the chunks
        from platform_lib.analysis.events_chunked import detect_chunked, quantile_counts

        if threshold is None:
            try:
                threshold, n, at_least, equal = quantile_counts(scores.data, quantile)
            except ValueError:
                raise EsdlError("the score cube has no finite values: nothing to threshold.") from None
            strict = tie_rule(name, quantile, threshold, n, at_least, equal)
        if wrap_lon is None:
            wrap_lon = is_global_lon(scores["lon"]) if "lon" in scores.coords else False
        labels, table = detect_chunked(
            ((scores > threshold) if strict else (scores >= threshold)).fillna(False).astype(bool),
            scores,
            _features_cube(features),
            min_size=min_size,
            min_area_days=min_area_days,
            wrap_lon=wrap_lon,
            affected_threshold=affected_threshold,
        )
    else:
        values = scores.compute()
        if threshold is None:
            finite = np.asarray(values.values, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            if finite.size == 0:
                raise EsdlError("the score cube has no finite values: nothing to threshold.")
            threshold = float(np.quantile(finite, quantile))
            at_least, equal = int((finite >= threshold).sum()), int((finite == threshold).sum())
            strict = tie_rule(name, quantile, threshold, finite.size, at_least, equal)
        mask = ((values > threshold) if strict else (values >= threshold)).fillna(False).astype(bool)
        labels = label_events(
            mask, min_size=min_size, min_area_days=min_area_days, wrap_lon=wrap_lon, chunked=False
        )
        table = event_table(labels, values, features, affected_threshold=affected_threshold, chunked=False)
    return Events(labels=labels, table=table, threshold=threshold, quantile=quantile, strict=strict)


def tie_rule(name: str, quantile: float, threshold: float, n: int, at_least: int, equal: int) -> bool:
    """Whether to flag the scores ``> threshold`` rather than ``>=`` it (see :func:`detect_events`).

    ``threshold`` is the ``quantile`` of ``n`` finite scores of which ``at_least`` are ``>=`` it and
    ``equal`` are ``==`` it. Held by two or more: ``>`` when its share is at least as close to
    ``1 - quantile`` as that of ``>=``, with a warning naming the score, the shares and the tie.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as said:
    ...     warnings.simplefilter("always")
    ...     tie_rule("REC", 0.999, 1.0, 100_000, 4_000, 4_000)   # REC = 1.0 in 4 % of the cells
    True
    >>> print(said[0].message)
    REC: its 0.999 quantile, 1, is held by 4000 cells (a tie); flagging the 0 cells > 1 (0.000% of the finite scores) rather than the 4000 cells >= 1 (4.000%), the closer share to the requested 0.100%. Give threshold= to choose otherwise.
    >>> tie_rule("KNN_Gamma", 0.999, 2.5, 100_000, 100, 1)   # no tie: >=
    False
    """
    if equal < 2:
        return False
    wanted = 1.0 - quantile
    share_ge, share_gt = at_least / n, (at_least - equal) / n
    strict = abs(share_gt - wanted) <= abs(share_ge - wanted)
    chosen, other = ((">", at_least - equal, share_gt), (">=", at_least, share_ge))[:: 1 if strict else -1]
    warnings.warn(
        f"{name}: its {quantile:g} quantile, {threshold:g}, is held by {equal} cells (a tie); flagging the"
        f" {chosen[1]} cells {chosen[0]} {threshold:g} ({chosen[2]:.3%} of the finite scores) rather than"
        f" the {other[1]} cells {other[0]} {threshold:g} ({other[2]:.3%}), the closer share to the"
        f" requested {wanted:.3%}. Give threshold= to choose otherwise.",
        UserWarning,
        stacklevel=3,
    )
    return strict


def event_skill(
    detected: xr.DataArray, truth: xr.DataArray, *, wrap_lon: bool | None = None
) -> dict[str, float]:
    """Precision and recall of detected events against known ones, cell by cell and event by event.

    ``detected``: labels (int, 0 = none) or a boolean mask; ``truth``: boolean mask of the true events
    (for the demo cube, :func:`platform_lib.demo.event_mask`). Cell scores: ``precision`` = share of
    detected cells that are true, ``recall`` = share of true cells detected, ``f1``. Event scores:
    ``event_recall`` = share of true events (connected parts of ``truth``) touched by a detection,
    ``event_precision`` = share of detected events that touch a true event.

    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.zeros((4, 3, 3), bool), dims=("time", "lat", "lon")); truth[2:4, 1, 1] = True
    >>> found = truth.copy(); found[0, 0, 0] = True
    >>> {k: round(v, 2) for k, v in event_skill(found, truth).items()}
    {'precision': 0.67, 'recall': 1.0, 'f1': 0.8, 'event_precision': 0.5, 'event_recall': 1.0}
    """
    truth = _as_cube(truth, "truth").astype(bool)
    detected = _as_cube(detected, "the detections")
    det_mask = detected.astype(bool) if detected.dtype != bool else detected
    det_labels = detected if detected.dtype != bool else label_events(det_mask, wrap_lon=wrap_lon)
    d, tr = np.asarray(det_mask.values), np.asarray(truth.values)
    if d.shape != tr.shape:
        raise EsdlError(f"detections {d.shape} and truth {tr.shape} must be on the same grid.")
    hit = float((d & tr).sum())
    precision = hit / d.sum() if d.sum() else 0.0
    recall = hit / tr.sum() if tr.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tl = np.asarray(label_events(truth, wrap_lon=wrap_lon).values)
    dl = np.asarray(det_labels.values)
    # events are the distinct labels: after a size filter the numbers that are left need not be 1..n
    n_true, n_det = np.unique(tl[tl > 0]).size, np.unique(dl[dl > 0]).size
    true_found = np.unique(tl[(tl > 0) & d]).size
    det_true = np.unique(dl[(dl > 0) & tr]).size
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "event_precision": det_true / n_det if n_det else 0.0,
        "event_recall": true_found / n_true if n_true else 0.0,
    }


__all__ = [
    "DEFAULT_MIN_SIZE",
    "DEFAULT_QUANTILE",
    "EVENT_COLUMNS",
    "IN_MEMORY_MAX_CELLS",
    "Events",
    "cell_area_km2",
    "detect_events",
    "event_skill",
    "event_table",
    "is_global_lon",
    "label_events",
    "tie_rule",
    "use_chunks",
]
