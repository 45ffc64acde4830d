"""Event labelling, event table and exact quantile chunk by chunk, for dask-backed cubes.

The same answers as the in-memory path of :mod:`platform_lib.analysis.events`, with memory bounded by
the chunk size (plus what is proportional to the events themselves), never by the cube:

- **labels** (the algorithm of dask-image's ``ndmeasure.label``, with corners and the dateline):
  pass 1 labels each chunk with ``scipy.ndimage.label`` (26-connectivity) and keeps, per local label,
  its cell count and its first cell, plus the labels on the chunk's six faces (sparse: only event
  cells). Equivalences come from every chunk boundary: the last plane before the boundary against the
  first plane after it, over the whole extent of the other two axes and with the nine shifts of
  26-connectivity, so face, edge and corner neighbours all meet; on a global grid also the last
  longitude plane against the first (the dateline seam). A union-find (``connected_components``)
  resolves them; events below ``min_size`` cells (or, with ``min_area_days``, below that many km2 x days,
  from each chunk's integer cell counts per event, step and latitude, summed in the same order as in
  memory) are dropped and the rest numbered by their first cell in ``(time, lat, lon)`` order, exactly
  as in memory. Pass 2 (lazy) relabels each chunk the same way
  and maps it through the resulting lookup table.
- **event table**: each chunk gives per-label partial sums, minima and maxima (and its footprint
  cells, peak and feature sums), renamed to event ids and reduced across chunks; in
  :func:`detect_chunked` they come from pass 1 itself, so the scores are read once for labels and
  table.
- **quantile**: :func:`exact_quantile` is numpy's ``np.quantile`` (method ``linear``) of the finite
  values, found by a radix select over the values' sortable 64-bit keys: 16 bits per pass over the
  cube (a histogram of 65536 counts per chunk, summed as a tree), until the few candidates left fit
  in memory and are sorted. Usually two or three passes. The same passes count the values ``>=`` and
  ``==`` the quantile (:func:`quantile_counts`), which ``detect_events`` needs for its tie rule.

Every pass reads the input again (``detect_events``: 3-4 passes): dask-backed scores that are
expensive to compute should be written to a store (or persisted on a cluster) first.

>>> import dask.array as da, numpy as np
>>> x = da.from_array(np.random.default_rng(0).random((20, 30, 40)), chunks=(7, 11, 13))
>>> exact_quantile(x, 0.999) == float(np.quantile(x.compute(), 0.999))
True
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from platform_lib.analysis.event_grid import (
    DIMS,
    EVENT_SUMS,
    STRUCTURE,
    cell_frame,
    connectivity_name,
    event_volumes,
    grid_geometry,
    step_counts,
    table_from_parts,
    touching_pairs,
)

RADIX_BITS = 16
SORT_AT_MOST = 1 << 22  # candidates gathered and sorted in memory (32 MiB of float64)
_SIGN = np.uint64(1 << 63)


def _sortable_keys(block: np.ndarray) -> np.ndarray:
    """uint64 keys of the finite values (as float64) that sort as the values do."""
    x = np.asarray(block, dtype=np.float64).ravel()
    x = x[np.isfinite(x)] + 0.0  # -0.0 -> 0.0
    bits = x.view(np.uint64)
    return np.where(bits >= _SIGN, ~bits, bits | _SIGN)


def _key_value(key: int) -> float:
    k = np.uint64(key)
    bits = k & ~_SIGN if k >= _SIGN else ~k
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _candidates(keys: np.ndarray, level: int, prefix: int) -> np.ndarray:
    if level == 0:
        return keys
    return keys[(keys >> np.uint64(64 - RADIX_BITS * level)) == np.uint64(prefix)]


def _histogram_block(block: np.ndarray, level: int, prefix: int) -> np.ndarray:
    keys = _candidates(_sortable_keys(block), level, prefix)
    digit = (keys >> np.uint64(64 - RADIX_BITS * (level + 1))) & np.uint64((1 << RADIX_BITS) - 1)
    counts = np.bincount(digit.astype(np.intp), minlength=1 << RADIX_BITS).astype(np.int64)
    return counts.reshape((1,) * block.ndim + (-1,))


def _histogram(data: da.Array, level: int, prefix: int) -> np.ndarray:
    hist = da.map_blocks(
        _histogram_block,
        data,
        level,
        prefix,
        dtype=np.int64,
        new_axis=data.ndim,
        chunks=tuple((1,) * n for n in data.numblocks) + ((1 << RADIX_BITS,),),
    )
    return hist.sum(axis=tuple(range(data.ndim))).compute()


def _gather(data: da.Array, level: int, prefix: int) -> np.ndarray:
    parts = dask.compute(
        *[
            dask.delayed(lambda b: np.sort(_candidates(_sortable_keys(b), level, prefix)))(block)
            for block in data.to_delayed().ravel()
        ]
    )
    return np.sort(np.concatenate([np.zeros(0, np.uint64), *parts]))


class QuantileCounts(NamedTuple):
    """A quantile and how the finite values fall around it (see :func:`quantile_counts`)."""

    value: float  #: ``np.quantile`` (linear) of the finite values
    n: int  #: number of finite values
    at_least: int  #: how many are ``>= value``
    equal: int  #: how many are ``== value`` (more than one: the quantile lands on a tie)


def exact_quantile(data: da.Array, q: float, *, sort_at_most: int = SORT_AT_MOST) -> float:
    """``np.quantile`` (linear) of the finite values of ``data`` (as float64), reading it chunk by chunk.

    Memory: one chunk, a 65536-bin histogram per chunk in flight, and at most ``sort_at_most``
    candidate values. Raises ``ValueError`` when there is no finite value.

    >>> import dask.array as da, numpy as np
    >>> exact_quantile(da.from_array(np.array([3.0, np.nan, 1.0, 2.0, np.inf]), chunks=2), 0.5)
    2.0
    """
    return quantile_counts(data, q, sort_at_most=sort_at_most).value


def quantile_counts(data: da.Array, q: float, *, sort_at_most: int = SORT_AT_MOST) -> QuantileCounts:
    """:func:`exact_quantile` and, from the same passes, how many finite values are ``>=`` it and ``==`` it.

    The radix select keeps, for each order statistic it looks for, the number of values in the digits
    above the one it follows; the last pass (the sorted candidates, or a full 64-bit key) gives the
    values equal to it. No extra pass over ``data``.

    >>> import dask.array as da, numpy as np
    >>> tuple(quantile_counts(da.from_array(np.array([0.0, 1.0, 1.0, 1.0, np.nan]), chunks=2), 0.5))
    (1.0, 4, 3, 3)
    """
    if isinstance(data, np.ndarray):
        data = da.from_array(data)
    hist = _histogram(data, 0, 0)
    n = int(hist.sum())
    if n == 0:
        raise ValueError("no finite values")
    h = (n - 1) * q
    k = math.floor(h)
    ranks = sorted({k, min(k + 1, n - 1)})
    # each rank: [level, prefix, rank among the candidates, number of candidates, their histogram,
    # values above the candidates]
    state = {r: [0, 0, r, n, hist, 0] for r in ranks}
    found: dict[int, tuple[int, int, int]] = {}  # rank -> (key, values equal, values greater)
    while len(found) < len(ranks):
        todo: dict[tuple[int, int], list[int]] = {}
        for r in ranks:
            if r in found:
                continue
            level, prefix, rank, count, counts, greater = state[r]
            cum = np.cumsum(counts)
            digit = int(np.searchsorted(cum, rank, side="right"))
            below = int(cum[digit - 1]) if digit else 0
            greater += int(cum[-1] - cum[digit])
            level, prefix, rank, count = (
                level + 1,
                (prefix << RADIX_BITS) | digit,
                rank - below,
                int(counts[digit]),
            )
            if level * RADIX_BITS == 64:
                found[r] = (prefix, count, greater)  # every candidate has this very key
            else:
                state[r] = [level, prefix, rank, count, None, greater]
                todo.setdefault((level, prefix), []).append(r)
        for (level, prefix), rs in todo.items():
            if state[rs[0]][3] <= sort_at_most:
                keys = _gather(data, level, prefix)
                for r in rs:
                    key = keys[state[r][2]]
                    lo, hi = np.searchsorted(keys, key, "left"), np.searchsorted(keys, key, "right")
                    found[r] = (int(key), int(hi - lo), state[r][5] + int(keys.size - hi))
            else:
                counts = _histogram(data, level, prefix)
                for r in rs:
                    state[r][4] = counts
    (low_key, low_eq, low_gt), (high_key, high_eq, high_gt) = found[ranks[0]], found[ranks[-1]]
    low, high = _key_value(low_key), _key_value(high_key)
    value = float(np.quantile(np.array([low, high]), h - k))
    if value == low:
        at_least, equal = low_gt + low_eq, low_eq
    elif value == high:
        at_least, equal = high_gt + high_eq, high_eq
    else:  # strictly between two neighbouring order statistics: nothing equals it
        at_least, equal = low_gt, 0
    return QuantileCounts(value, n, at_least, equal)


def _label_block(
    block: np.ndarray,
    origin: tuple[int, int, int],
    shape: tuple[int, int, int],
    score: np.ndarray | None = None,
    feature: np.ndarray | None = None,
    geometry: dict | None = None,
    step_cells: bool = False,
) -> dict:
    """Pass 1 on one chunk: label count, per-label size and first cell, sparse labels on the faces,
    (``step_cells``) the per-label cell counts at each step and latitude (global indices; for
    ``min_area_days``) and (with ``geometry``) the per-label partial event table."""
    lab, n = ndimage.label(np.asarray(block, dtype=bool), structure=STRUCTURE)
    flat = lab.ravel()
    cells = np.flatnonzero(flat)
    _, first = np.unique(flat[cells], return_index=True)
    t, y, x = np.unravel_index(cells[first], lab.shape)
    first_global = np.ravel_multi_index((t + origin[0], y + origin[1], x + origin[2]), shape)
    sizes = np.bincount(flat[cells], minlength=n + 1)[1:]
    faces = {}
    for axis in range(3):
        for side, index in ((0, 0), (1, -1)):
            plane = np.take(lab, index, axis=axis)
            nz = np.flatnonzero(plane)
            faces[axis, side] = (nz, plane.ravel()[nz])
    part = {"n": n, "sizes": sizes.astype(np.int64), "first": first_global.astype(np.int64), "faces": faces}
    if step_cells:
        ct, cy, _ = np.unravel_index(cells, lab.shape)
        part["steps"] = step_counts(flat[cells], ct + origin[0], cy + origin[1])
    if geometry is not None:
        part["table"] = _table_block(lab, score, feature, origin, shape, geometry)
    return part


def _origins(chunks: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    return [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in chunks]


def _boundary_plane(
    parts: dict, chunks: tuple, origins: list, offsets: dict, axis: int, index: int, side: int
) -> np.ndarray:
    """The global plane (full extent of the two other axes) of the faces ``side`` of chunks ``index``."""
    other = [a for a in range(3) if a != axis]
    plane = np.zeros([sum(chunks[a]) for a in other], dtype=np.int64)
    for i, j in itertools.product(range(len(chunks[other[0]])), range(len(chunks[other[1]]))):
        block_id = [0, 0, 0]
        block_id[axis], block_id[other[0]], block_id[other[1]] = index, i, j
        block_id = tuple(block_id)
        nz, values = parts[block_id]["faces"][axis, side]
        if nz.size == 0:
            continue
        width = chunks[other[1]][block_id[other[1]]]
        rows = nz // width + origins[other[0]][block_id[other[0]]]
        cols = nz % width + origins[other[1]][block_id[other[1]]]
        plane[rows, cols] = values + offsets[block_id]
    return plane


def _relabel_block(block: np.ndarray, lookup: np.ndarray, offsets: np.ndarray, grid: tuple, block_id=None):
    lab, _ = ndimage.label(np.asarray(block, dtype=bool), structure=STRUCTURE)
    glob = lab.astype(np.int64)
    glob[lab > 0] += offsets[np.ravel_multi_index(block_id, grid)]
    return lookup[glob]


def _dask(data: xr.DataArray) -> da.Array:
    return data.data if isinstance(data.data, da.Array) else da.from_array(np.asarray(data.values))


def _label_pass(
    data: da.Array,
    *,
    min_size: int,
    wrap_lon: bool,
    min_area_days: float | None = None,
    grid: dict | None = None,
    scores: da.Array | None = None,
    features: da.Array | None = None,
    geometry: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Pass 1 and the merge: (lookup global label -> event id, label offset of each chunk, the parts).

    ``min_area_days`` (with ``grid``, the :func:`grid_geometry`) drops events of a smaller volume, from
    the chunks' cell counts per step and latitude summed per event, as in memory."""
    chunks, shape, numblocks = data.chunks, data.shape, data.numblocks
    origins = _origins(chunks)
    blocks = data.to_delayed()
    score_blocks = None if scores is None else scores.rechunk(chunks).to_delayed()
    feature_blocks = (
        None if features is None else features.rechunk(chunks + ((features.shape[3],),)).to_delayed()
    )
    ids = list(np.ndindex(*numblocks))
    results = dask.compute(
        *[
            dask.delayed(_label_block)(
                blocks[b],
                tuple(int(origins[a][b[a]]) for a in range(3)),
                shape,
                None if score_blocks is None else score_blocks[b],
                None if feature_blocks is None else feature_blocks[(*b, 0)],
                geometry,
                min_area_days is not None,
            )
            for b in ids
        ]
    )
    parts = dict(zip(ids, results, strict=True))
    counts = np.array([parts[b]["n"] for b in ids], dtype=np.int64)
    offset_list = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    offsets = dict(zip(ids, offset_list.tolist(), strict=True))
    n = int(counts.sum())
    pairs = []
    boundaries = [(axis, i, i + 1) for axis in range(3) for i in range(numblocks[axis] - 1)]
    if wrap_lon and shape[2] > 1:
        boundaries.append((2, numblocks[2] - 1, 0))
    for axis, before, after in boundaries:
        a = _boundary_plane(parts, chunks, origins, offsets, axis, before, 1)
        b = _boundary_plane(parts, chunks, origins, offsets, axis, after, 0)
        found = touching_pairs(a, b)
        if found.size:
            pairs.append(found)
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n + 1, n + 1))
    _, component = connected_components(graph, directed=False)
    component = component[1:]  # label 0 is the background
    sizes = np.concatenate([parts[b]["sizes"] for b in ids]) if n else np.zeros(0, np.int64)
    first = np.concatenate([parts[b]["first"] for b in ids]) if n else np.zeros(0, np.int64)
    n_comp = int(component.max()) + 1 if n else 0
    comp_size = np.bincount(component, weights=sizes, minlength=n_comp) if n else np.zeros(0)
    comp_first = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(comp_first, component, first)
    keep = comp_size >= max(min_size, 1)
    if min_area_days is not None and n:
        steps = np.concatenate([parts[b]["steps"] + [offsets[b], 0, 0, 0] for b in ids])
        steps[:, 0] = component[steps[:, 0] - 1]  # global label (1..n) -> component
        comp, km2_days = event_volumes(step_counts(*steps.T), grid)
        keep[comp[km2_days < min_area_days]] = False
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(comp_first[kept], kind="stable")]
    comp_id = np.zeros(n_comp, dtype=np.int32)
    comp_id[order] = np.arange(1, order.size + 1, dtype=np.int32)
    lookup = np.concatenate([[0], comp_id[component]]).astype(np.int32)
    return lookup, offset_list, [parts[b] for b in ids]


def _lazy_labels(data: da.Array, lookup: np.ndarray, offsets: np.ndarray, like: xr.DataArray, wrap_lon: bool):
    labels = da.map_blocks(
        _relabel_block,
        data,
        dtype=np.int32,
        lookup=dask.delayed(lookup, pure=True),
        offsets=dask.delayed(offsets, pure=True),
        grid=data.numblocks,
    )
    return xr.DataArray(
        labels,
        coords=like.coords,
        dims=DIMS,
        name="event",
        attrs={"long_name": "event label (0: no event)", "connectivity": connectivity_name(wrap_lon)},
    )


def label_chunked(
    mask: xr.DataArray, *, min_size: int, wrap_lon: bool, min_area_days: float | None = None
) -> xr.DataArray:
    """Labels of a (time, lat, lon) boolean mask, chunk by chunk; the result is lazy (dask)."""
    data = _dask(mask).astype(bool)
    grid = None if min_area_days is None else grid_geometry(mask)
    lookup, offsets, _ = _label_pass(
        data, min_size=min_size, wrap_lon=wrap_lon, min_area_days=min_area_days, grid=grid
    )
    return _lazy_labels(data, lookup, offsets, mask, wrap_lon)


def detect_chunked(
    mask: xr.DataArray,
    scores: xr.DataArray,
    features: xr.DataArray | None,
    *,
    min_size: int,
    wrap_lon: bool,
    affected_threshold: float,
    min_area_days: float | None = None,
) -> tuple[xr.DataArray, pd.DataFrame]:
    """Lazy labels and the event table in one pass over the chunks (the table from per-label partials
    of pass 1, renamed to event ids after the merge): the scores are read once, not twice."""
    data = _dask(mask).astype(bool)
    geometry = grid_geometry(mask)
    lookup, offsets, parts = _label_pass(
        data,
        min_size=min_size,
        wrap_lon=wrap_lon,
        min_area_days=min_area_days,
        grid=geometry,
        scores=_dask(scores),
        features=None if features is None else _dask(features),
        geometry=geometry,
    )
    tables = []
    for part, offset in zip(parts, offsets.tolist(), strict=True):
        if part["table"] is not None:
            tables.append(_rename_partials(part["table"], lookup, offset))
    names = None if features is None else [str(v) for v in features["variable"].values]
    table = _reduce_partials(tables, data.shape, geometry, names, affected_threshold, scores=True)
    return _lazy_labels(data, lookup, offsets, mask, wrap_lon), table


def _relabelled(frame: pd.DataFrame, ids: np.ndarray, by_index: bool) -> pd.DataFrame:
    frame = frame.copy()
    if by_index:
        frame.index = ids
        return frame[ids > 0]
    frame["id"] = ids
    return frame[ids > 0]


def _rename_partials(table: dict, lookup: np.ndarray, offset: int) -> dict:
    """One chunk's per-label partials renamed to event ids (id 0, a dropped event, is left out)."""
    out = {}
    for key, frame in table.items():
        by_index = key in ("agg", "feature_sum", "feature_count")
        local = np.asarray(frame.index if by_index else frame["id"], dtype=np.int64)
        out[key] = _relabelled(frame, lookup[local + offset], by_index)
    return out


def _table_block(
    lab: np.ndarray,
    score: np.ndarray | None,
    feature: np.ndarray | None,
    origin: tuple[int, int, int],
    shape: tuple[int, int, int],
    geometry: dict,
) -> dict | None:
    """Per-event partial sums, minima and maxima of one chunk of labels."""
    t, y, x = np.nonzero(lab)
    if t.size == 0:
        return None
    ids = lab[t, y, x]
    t, y, x = t + origin[0], y + origin[1], x + origin[2]
    df = cell_frame(ids, t, y, x, geometry)
    agg = df.groupby("id", sort=True).agg(**EVENT_SUMS)
    out = {"agg": agg, "footprint": df[["id", "y", "x"]].drop_duplicates()}
    if score is not None:
        s = pd.DataFrame(
            {
                "id": ids,
                "score": np.asarray(score[lab > 0], dtype=np.float64),
                "flat": np.ravel_multi_index((t, y, x), shape),
            }
        ).dropna()
        out["peak"] = s.loc[s.groupby("id")["score"].idxmax().to_numpy()] if len(s) else s
    if feature is not None:
        values = np.abs(np.asarray(feature[lab > 0], dtype=np.float64))  # (cells, variables)
        finite = ~np.isnan(values)
        grouped = pd.DataFrame(np.where(finite, values, 0.0)).groupby(ids)
        out["feature_sum"] = grouped.sum()
        out["feature_count"] = pd.DataFrame(finite.astype(np.int64)).groupby(ids).sum()
    return out


def event_table_chunked(
    labels: xr.DataArray,
    scores: xr.DataArray | None,
    features: xr.DataArray | None,
    *,
    affected_threshold: float,
) -> pd.DataFrame:
    """The event table of :func:`~platform_lib.analysis.events.event_table`, reduced over chunks."""
    lab = labels.data if isinstance(labels.data, da.Array) else da.from_array(np.asarray(labels.values))
    chunks, shape = lab.chunks, lab.shape
    origins = _origins(chunks)
    geometry = grid_geometry(labels)
    lab_blocks = lab.to_delayed()
    score_blocks = feature_blocks = None
    names: list[str] = []
    if scores is not None:
        sd = scores.data if isinstance(scores.data, da.Array) else da.from_array(np.asarray(scores.values))
        score_blocks = sd.rechunk(chunks).to_delayed()
    if features is not None:
        fd = (
            features.data
            if isinstance(features.data, da.Array)
            else da.from_array(np.asarray(features.values))
        )
        feature_blocks = fd.rechunk(chunks + ((fd.shape[3],),)).to_delayed()
        names = [str(v) for v in features["variable"].values]
    tasks = []
    for b in itertools.product(*(range(n) for n in lab.numblocks)):
        origin = tuple(int(origins[a][b[a]]) for a in range(3))
        tasks.append(
            dask.delayed(_table_block)(
                lab_blocks[b],
                None if score_blocks is None else score_blocks[b],
                None if feature_blocks is None else feature_blocks[(*b, 0)],
                origin,
                shape,
                geometry,
            )
        )
    parts = [p for p in dask.compute(*tasks) if p is not None]
    return _reduce_partials(parts, shape, geometry, names if features is not None else None,
                            affected_threshold, scores=scores is not None)  # fmt: skip


def _reduce_partials(
    parts: list[dict],
    shape: tuple[int, int, int],
    geometry: dict,
    names: list[str] | None,
    affected_threshold: float,
    *,
    scores: bool,
) -> pd.DataFrame:
    """The event table from per-chunk partials (by event id)."""
    parts = [p for p in parts if len(p["agg"])]
    if not parts:
        return table_from_parts(None, None, None, {}, geometry)
    agg = pd.concat([p["agg"] for p in parts]).groupby(level=0, sort=True)
    agg = agg.agg({k: "sum" if how in ("size", "sum") else how for k, (_, how) in EVENT_SUMS.items()})
    footprint = pd.concat([p["footprint"] for p in parts]).drop_duplicates()
    peak = None
    if scores:
        peaks = pd.concat([p["peak"] for p in parts]).sort_values(["score", "flat"], ascending=[False, True])
        peaks = peaks.drop_duplicates("id").set_index("id").reindex(agg.index)
        peak = pd.DataFrame(
            {"score": peaks["score"].to_numpy(), "t": peaks["flat"].to_numpy() // (shape[1] * shape[2])}
        )
    affected: dict[int, list[str]] = {}
    if names is not None:
        total = pd.concat([p["feature_sum"] for p in parts]).groupby(level=0).sum()
        count = pd.concat([p["feature_count"] for p in parts]).groupby(level=0).sum()
        mean_abs = total / count.where(count > 0)
        mean_abs.columns = names
        for eid, row in mean_abs.iterrows():
            strong = row[row >= affected_threshold].sort_values(ascending=False)
            affected[int(eid)] = list(strong.index)
    return table_from_parts(agg, footprint, peak, affected, geometry)


__all__ = [
    "QuantileCounts",
    "detect_chunked",
    "event_table_chunked",
    "exact_quantile",
    "label_chunked",
    "quantile_counts",
]
