"""Minicubes for a prediction challenge: one around the start of each extreme event, matched controls
without an event, and a split by event that leaks nothing between training and test.

A minicube is ``patch x patch`` grid cells over ``context + horizon`` time steps: the ``context`` steps
before the forecast start and the ``horizon`` steps from it. An event's minicube is centred on the
event (its centroid, else its box's centre) and its forecast starts at the event's first step, so every
target window holds its event. Each event gets ``controls`` matched minicubes: the same step of the
year (season) and a latitude within one patch of the event's, anywhere in longitude and in any year,
whose space-time box touches no event's box and no other minicube.

The split is by event: minicubes whose space-time boxes overlap are one group (union-find), an
event's controls join its group, and whole groups go to ``train``, ``val`` or ``test`` (seeded), so no
cell of a test minicube lies in any training minicube's box (:func:`leaking_pairs` checks it).

Every variable comes with ``<variable>_climatology``: the mean of the same cell at the same step of
the year over all *other* years, so a value never enters its own climatology.

>>> from platform_lib.demo import make_demo_cube, injected_events
>>> cube = make_demo_cube(resolution=5.0, years=(2001, 2012))
>>> mc = make_minicubes(cube, injected_events(cube), patch=2, context=4, horizon=3, fractions=(1, 0, 1),
...     progress=False)
>>> dict(mc.sizes)
{'minicube': 6, 'step': 7, 'y': 2, 'x': 2}
>>> mc["kind"].values.tolist().count("event"), sorted(set(mc["split"].values.tolist()))
(3, ['test', 'train'])
>>> leaking_pairs(mc)
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.analysis.event_grid import is_global_lon
from platform_lib.arguments import names_argument, number_argument, text_argument
from platform_lib.errors import EsdlError, allowed
from platform_lib.ml.materialise import vlen_strings
from platform_lib.ml.stats import season_slots

DEFAULT_TARGET = "gross_primary_productivity"
TARGETS = ("gross_primary_productivity", "kndvi")
DEFAULT_DRIVERS = ("air_temperature_2m", "precipitation_era5", "radiation_era5", "root_moisture")
SPLITS = ("train", "val", "test")
KINDS = ("event", "control")
EVENT_COLUMNS = ("event_id", "start", "end", "lat_min", "lat_max", "lon_min", "lon_max")
CONTROL_TRIES = 400  # random draws per control before giving up on it


@dataclass(frozen=True)
class Box:
    """A space-time box in index space: steps ``t0 <= t < t1``, rows ``y0 <= y < y1``, the columns
    in ``x`` (a set of indices, so a box may wrap around the dateline)."""

    t0: int
    t1: int
    y0: int
    y1: int
    x: frozenset[int]

    def overlaps(self, other: Box) -> bool:
        """True when the two boxes share a cell.

        >>> Box(0, 5, 0, 2, frozenset({0, 1})).overlaps(Box(4, 9, 1, 3, frozenset({1})))
        True
        >>> Box(0, 5, 0, 2, frozenset({0, 1})).overlaps(Box(5, 9, 0, 2, frozenset({0})))
        False
        """
        return (
            self.t0 < other.t1
            and other.t0 < self.t1
            and self.y0 < other.y1
            and other.y0 < self.y1
            and not self.x.isdisjoint(other.x)
        )


@dataclass
class _Minicube:
    kind: str
    event_id: str
    start: int  # index of the forecast start
    y0: int
    x: np.ndarray  # column indices, in order
    box: Box
    group: int = -1


def check_events(events: pd.DataFrame) -> pd.DataFrame:
    """The event table with the columns a challenge needs, or a clear error naming what is missing.

    >>> check_events(pd.DataFrame({"event_id": [1]}))
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: the event table lacks the columns 'end', 'lat_max', 'lat_min', 'lon_max', 'lon_min', 'start' (it needs 'end', 'event_id', 'lat_max', 'lat_min', 'lon_max', 'lon_min', 'start': from detect_events(...).table or injected_events(cube)).
    """
    if not isinstance(events, pd.DataFrame):
        raise EsdlError(f"events must be a pandas DataFrame (an event table); got {type(events).__name__}.")
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise EsdlError(
            f"the event table lacks the columns {allowed(missing)} (it needs {allowed(EVENT_COLUMNS)}: "
            "from detect_events(...).table or injected_events(cube))."
        )
    out = events.copy()
    out["event_id"] = out["event_id"].astype(str)
    if out["event_id"].duplicated().any():
        raise EsdlError("the event table has repeated event_id values; each event needs its own id.")
    out["start"] = pd.to_datetime(out["start"])
    out["end"] = pd.to_datetime(out["end"])
    return out.sort_values(["start", "event_id"]).reset_index(drop=True)


def _lon_columns(lon: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Columns whose centres lie in ``[lo, hi]`` (``lo > hi``: across the dateline)."""
    if lo <= hi:
        return np.flatnonzero((lon >= lo) & (lon <= hi))
    return np.flatnonzero((lon >= lo) | (lon <= hi))


def event_box(ev: pd.Series, times: pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray) -> Box | None:
    """The event's box in index space (steps of its window, rows and columns of its bbox), or None when
    it misses the cube.

    >>> ev = pd.Series({"start": pd.Timestamp("2001-01-09"), "end": pd.Timestamp("2001-01-20"),
    ...     "lat_min": 0, "lat_max": 10, "lon_min": 170, "lon_max": -170})
    >>> b = event_box(ev, pd.date_range("2001-01-05", periods=4, freq="8D"), np.array([5.0, 15.0]),
    ...     np.array([-175.0, 0.0, 175.0]))
    >>> (b.t0, b.t1, b.y0, b.y1, sorted(b.x))
    (1, 2, 0, 1, [0, 2])
    """
    t = np.flatnonzero((times >= ev["start"]) & (times <= ev["end"]))
    rows = np.flatnonzero((lat >= ev["lat_min"]) & (lat <= ev["lat_max"]))
    cols = _lon_columns(lon, float(ev["lon_min"]), float(ev["lon_max"]))
    if t.size == 0 or rows.size == 0 or cols.size == 0:
        return None
    return Box(int(t[0]), int(t[-1]) + 1, int(rows[0]), int(rows[-1]) + 1, frozenset(cols.tolist()))


def _centre(ev: pd.Series) -> tuple[float, float]:
    """The event's centroid when the table has it, else its box's centre (across the dateline too)."""
    if "centroid_lat" in ev and "centroid_lon" in ev and np.isfinite(ev["centroid_lat"]):
        return float(ev["centroid_lat"]), float(ev["centroid_lon"])
    lo, hi = float(ev["lon_min"]), float(ev["lon_max"])
    width = (hi - lo) % 360.0 if lo > hi else hi - lo
    return (float(ev["lat_min"]) + float(ev["lat_max"])) / 2, (lo + width / 2 + 180.0) % 360.0 - 180.0


def _columns(x0: int, patch: int, nx: int, wrap: bool) -> np.ndarray:
    if wrap:
        return (x0 + np.arange(patch)) % nx
    x0 = min(max(x0, 0), nx - patch)
    return x0 + np.arange(patch)


def _group(cubes: list[_Minicube], partner: list[int]) -> np.ndarray:
    """Union-find: minicubes whose boxes overlap, and each control with its event, share a group."""
    parent = list(range(len(cubes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(cubes):
        if partner[i] >= 0:
            parent[find(i)] = find(partner[i])
        for j in range(i):
            if a.box.overlaps(cubes[j].box):
                parent[find(i)] = find(j)
    roots = [find(i) for i in range(len(cubes))]
    _, groups = np.unique(roots, return_inverse=True)
    return groups


def assign_splits(group_sizes: Sequence[int], fractions: Sequence[float], seed: int) -> np.ndarray:
    """A split index (0 train, 1 val, 2 test) per group: groups in a seeded random order, each to the
    split furthest below its share of minicubes (a split with share 0 gets none).

    >>> assign_splits([1] * 10, (0.6, 0.2, 0.2), seed=0).tolist().count(0)
    6
    """
    share = np.asarray(fractions, dtype=np.float64) / float(np.sum(fractions))
    counts = np.zeros(len(share))
    out = np.empty(len(group_sizes), dtype=np.int64)
    for g in np.random.default_rng(seed).permutation(len(group_sizes)):
        total = counts.sum() + group_sizes[g]
        deficit = np.where(share > 0, share * total - counts, -np.inf)
        k = int(np.argmax(deficit))
        out[g] = k
        counts[k] += group_sizes[g]
    return out


def load_variable(ds: xr.Dataset, name: str) -> np.ndarray:
    """Variable ``name`` of a cube, whole, as float32 ``(time, lat, lon)`` (one variable at a time).

    >>> load_variable(xr.Dataset({"a": (("lat", "time", "lon"), np.zeros((2, 3, 4)))}), "a").shape
    (3, 2, 4)
    """
    # computed by the session's scheduler: on a gateway cluster the workers read the store (a band of rows
    # at a time keeps the gathered copy small)
    return np.asarray(ds[name].transpose("time", "lat", "lon").values, dtype=np.float32)


def row_bands(cube: xr.Dataset, name: str) -> list[tuple[int, int]]:
    """``(first, end)`` row ranges of ``lat`` that follow the variable's chunks (32 rows when in memory).

    >>> row_bands(xr.Dataset({"a": (("time", "lat", "lon"), np.zeros((1, 70, 2)))}), "a")
    [(0, 32), (32, 64), (64, 70)]
    """
    da = cube[name]
    n = da.sizes["lat"]
    if da.chunks is not None:
        sizes = da.chunks[da.dims.index("lat")]
    else:
        sizes = [32] * (n // 32) + ([n % 32] if n % 32 else [])
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e)) for s, e in zip(sizes, ends, strict=True)]


def finite_mask(cube: xr.Dataset, name: str) -> np.ndarray:
    """Where variable ``name`` has a value: bool ``(time, lat, lon)``, read band by band (a quarter of the
    variable's float32 size in memory).

    >>> finite_mask(xr.Dataset({"a": (("time", "lat", "lon"), [[[1.0, np.nan]]])}), "a").tolist()
    [[[True, False]]]
    """
    da = cube[name]
    out = np.empty((da.sizes["time"], da.sizes["lat"], da.sizes["lon"]), dtype=bool)
    for r0, r1 in row_bands(cube, name):
        out[:, r0:r1] = np.isfinite(load_variable(cube.isel(lat=slice(r0, r1)), name))
    return out


def slot_sums(arr: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step of the year (``slots``, 0..45): the sum and the count of the finite values of each cell.

    >>> total, count = slot_sums(np.array([[1.0], [np.nan], [3.0]]), np.array([0, 0, 0]))
    >>> total.tolist(), count.tolist()
    ([[4.0]], [[2]])
    """
    n_slots = int(slots.max()) + 1
    total = np.zeros((n_slots, *arr.shape[1:]), dtype=np.float64)
    count = np.zeros((n_slots, *arr.shape[1:]), dtype=np.int32)
    for s in range(n_slots):
        block = arr[slots == s]
        finite = np.isfinite(block)
        total[s] = np.where(finite, block, 0.0).sum(axis=0, dtype=np.float64)
        count[s] = finite.sum(axis=0)
    return total, count


def check_minicube_arguments(
    patch: int,
    context: int,
    horizon: int,
    controls: int,
    fractions: Sequence[float],
    seed: int,
    min_valid: float = 0.5,
) -> tuple[int, int, int, int, list[float], int, float]:
    """The shape and split arguments of :func:`make_minicubes` in their normal form, or a clear error
    (checked before any data is read).

    >>> check_minicube_arguments(8, 10, 6, 1, (0.7, 0.15, 0.15), 0)[4]
    [0.7, 0.15, 0.15]
    >>> check_minicube_arguments(8, 10, 6, 1, (0.7, 0.3, 0), 0)
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: fractions must be three shares (train, val, test) with train and test above 0; got [0.7, 0.3, 0.0].
    """
    patch = number_argument(patch, "patch", low=1, integer=True)
    context = number_argument(context, "context", low=1, integer=True)
    horizon = number_argument(horizon, "horizon", low=1, integer=True)
    controls = number_argument(controls, "controls", low=0, integer=True)
    seed = number_argument(seed, "seed", low=0, integer=True)
    min_valid = number_argument(min_valid, "min_valid", low=0, high=1)
    if isinstance(fractions, str) or not isinstance(fractions, Sequence):
        raise EsdlError(f"fractions must be three shares (train, val, test); got {fractions!r}.")
    shares = [float(number_argument(f, "fractions", low=0)) for f in fractions]
    if len(shares) != 3 or shares[0] <= 0 or shares[2] <= 0:
        raise EsdlError(
            f"fractions must be three shares (train, val, test) with train and test above 0; got {shares}."
        )
    return patch, context, horizon, controls, shares, seed, min_valid


def make_minicubes(
    cube: xr.Dataset,
    events: pd.DataFrame,
    *,
    target: str = DEFAULT_TARGET,
    drivers: Sequence[str] = DEFAULT_DRIVERS,
    patch: int = 8,
    context: int = 10,
    horizon: int = 6,
    controls: int = 1,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    min_valid: float = 0.5,
    progress: bool = True,
) -> xr.Dataset:
    """The challenge's minicubes cut from ``cube`` around ``events`` (see the module docstring).

    ``events`` is an event table (``detect_events(...).table``, ``injected_events(cube)``). Minicubes
    whose target has fewer than ``min_valid`` finite cells over the horizon (ocean, ice, gaps) or whose
    window leaves the record are left out; ``ds.attrs["skipped"]`` says how many and why. ``fractions``
    are the shares of train, val and test minicubes (by whole groups). Memory: where the target is
    observed (bool: 62 MB on the 1-degree demo cube), one band of rows of one variable at a time (the
    store's chunk rows: 44 MB) and the minicubes.
    """
    from tqdm.auto import tqdm

    if not isinstance(cube, xr.Dataset):
        raise EsdlError(f"cube must be an xarray Dataset (open_cube(...)); got {type(cube).__name__}.")
    target = text_argument(target, "target")
    drivers = names_argument(drivers, "drivers")
    missing = [v for v in (target, *drivers) if v not in cube.data_vars]
    if missing:
        raise EsdlError(f"the cube has no variable {allowed(missing)}; it has: {allowed(cube.data_vars)}.")
    if target in drivers:
        raise EsdlError(f"the target {target!r} cannot also be a driver (drivers: {', '.join(drivers)}).")
    for dim in ("time", "lat", "lon"):
        if dim not in cube.dims:
            raise EsdlError(f"the cube needs a {dim!r} dim; it has: {allowed(map(str, cube.dims))}.")
    patch, context, horizon, controls, fractions, seed, min_valid = check_minicube_arguments(
        patch, context, horizon, controls, fractions, seed, min_valid
    )
    events = check_events(events)
    times = pd.DatetimeIndex(cube["time"].values)
    lat, lon = cube["lat"].values.astype(np.float64), cube["lon"].values.astype(np.float64)
    nt, ny, nx = len(times), len(lat), len(lon)
    if patch > ny or patch > nx:
        raise EsdlError(f"patch={patch} is larger than the cube's grid ({ny} x {nx} cells).")
    if context + horizon > nt:
        raise EsdlError(
            f"context + horizon = {context + horizon} steps is longer than the record ({nt} steps)."
        )
    wrap = is_global_lon(lon)
    slots = season_slots(times)
    event_boxes = [b for b in (event_box(ev, times, lat, lon) for _, ev in events.iterrows()) if b]

    target_finite = finite_mask(cube, target)
    skipped = {"outside the record": 0, "too little target": 0, "no control found": 0}

    def valid_share(start: int, y0: int, cols: np.ndarray) -> float:
        return float(target_finite[start : start + horizon, y0 : y0 + patch][:, :, cols].mean())

    def minicube(kind: str, eid: str, start: int, y0: int, cols: np.ndarray) -> _Minicube:
        box = Box(start - context, start + horizon, y0, y0 + patch, frozenset(cols.tolist()))
        return _Minicube(kind, eid, start, y0, cols, box)

    cubes: list[_Minicube] = []
    partner: list[int] = []
    for _, ev in events.iterrows():
        start = int(np.searchsorted(times.values, ev["start"].to_datetime64()))
        if start - context < 0 or start + horizon > nt:
            skipped["outside the record"] += 1
            continue
        c_lat, c_lon = _centre(ev)
        cy = int(np.argmin(np.abs(lat - c_lat)))
        cx = int(np.argmin(np.abs((lon - c_lon + 180.0) % 360.0 - 180.0)))
        y0 = min(max(cy - patch // 2, 0), ny - patch)
        cols = _columns(cx - patch // 2, patch, nx, wrap)
        if valid_share(start, y0, cols) < min_valid:
            skipped["too little target"] += 1
            continue
        cubes.append(minicube("event", str(ev["event_id"]), start, y0, cols))
        partner.append(-1)

    rng = np.random.default_rng(seed)
    n_events = len(cubes)
    for i in range(n_events):
        ev_cube = cubes[i]
        starts = np.flatnonzero(slots == slots[ev_cube.start])
        starts = starts[(starts - context >= 0) & (starts + horizon <= nt)]
        for _ in range(controls):
            for _try in range(CONTROL_TRIES):
                start = int(rng.choice(starts))
                y0 = min(max(ev_cube.y0 + int(rng.integers(-patch, patch + 1)), 0), ny - patch)
                cols = _columns(int(rng.integers(nx if wrap else nx - patch + 1)), patch, nx, wrap)
                candidate = minicube("control", ev_cube.event_id, start, y0, cols)
                if any(candidate.box.overlaps(b) for b in event_boxes):
                    continue
                if any(candidate.box.overlaps(c.box) for c in cubes):
                    continue
                if valid_share(start, y0, cols) < min_valid:
                    continue
                cubes.append(candidate)
                partner.append(i)
                break
            else:
                skipped["no control found"] += 1
    if not cubes:
        raise EsdlError(
            f"no minicube could be cut from {len(events)} events: {skipped} (try a smaller patch, "
            "context or horizon, or min_valid)."
        )
    groups = _group(cubes, partner)
    n_groups = int(groups.max()) + 1
    sizes = np.bincount(groups, minlength=n_groups)
    needed = sum(f > 0 for f in fractions)
    if n_groups < needed:
        raise EsdlError(
            f"{len(cubes)} minicubes form only {n_groups} independent groups: too few to split into "
            f"{needed} parts (give more events, or fractions with val = 0)."
        )
    split_of_group = assign_splits(sizes, fractions, seed)

    # the data: per variable and band of rows (the store's chunk rows), one read for the climatology sums
    # and one gather of the minicube cells in the band, so memory holds one band at a time
    t_idx = np.array([c.start + np.arange(-context, horizon) for c in cubes])  # (n, step)
    y_idx = np.array([c.y0 + np.arange(patch) for c in cubes])  # (n, y)
    x_idx = np.array([c.x for c in cubes])  # (n, x)
    dims = ("minicube", "step", "y", "x")
    data: dict[str, tuple] = {}
    names = [target, *drivers]
    for name in tqdm(names, desc="minicubes", unit="variable", disable=not progress):
        cut = np.full((len(cubes), context + horizon, patch, patch), np.nan, dtype=np.float32)
        clim = np.full_like(cut, np.nan)
        for r0, r1 in row_bands(cube, name):
            m, r = np.nonzero((y_idx >= r0) & (y_idx < r1))  # (minicube, row of the patch) in the band
            if m.size == 0:
                continue
            band = load_variable(cube.isel(lat=slice(r0, r1)), name)
            total, count = slot_sums(band, slots)
            where = (t_idx[m][:, :, None], (y_idx[m, r] - r0)[:, None, None], x_idx[m][:, None, :])
            values = band[where]  # (pairs, step, x)
            finite = np.isfinite(values)
            slot_of = slots[t_idx[m]][:, :, None]
            others = count[slot_of, where[1], where[2]] - finite
            sums = total[slot_of, where[1], where[2]] - np.where(finite, values, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                clim[m, :, r, :] = np.where(others > 0, sums / np.maximum(others, 1), np.nan)
            cut[m, :, r, :] = values
        attrs = dict(cube[name].attrs)
        data[name] = (dims, cut, attrs)
        data[f"{name}_climatology"] = (
            dims,
            clim,
            {**{k: v for k, v in attrs.items() if k in ("units",)}, "long_name": f"climatology of {name}"},
        )
    ids = [
        f"{'e' if c.kind == 'event' else 'c'}{i:05d}" for i, c in enumerate(cubes)
    ]  # stable, sortable names
    steps = np.arange(-context, horizon)
    ds = xr.Dataset(
        data,
        coords={
            "minicube": vlen_strings(ids),
            "step": ("step", steps, {"long_name": "steps from the forecast start (0: first target step)"}),
            "y": np.arange(patch),
            "x": np.arange(patch),
            "kind": ("minicube", vlen_strings([c.kind for c in cubes])),
            "event_id": ("minicube", vlen_strings([c.event_id for c in cubes])),
            "split": ("minicube", vlen_strings([SPLITS[split_of_group[g]] for g in groups])),
            "group": ("minicube", groups.astype(np.int32)),
            "time": (("minicube", "step"), times.values[t_idx]),
            "lat": (("minicube", "y"), lat[y_idx]),
            "lon": (("minicube", "x"), lon[x_idx]),
        },
    )
    ds.attrs = {
        "title": f"prediction-challenge minicubes of {target}",
        "target": target,
        "drivers": list(drivers),
        "patch": patch,
        "context": context,
        "horizon": horizon,
        "seed": seed,
        "fractions": [float(f) for f in fractions],
        "skipped": {k: int(v) for k, v in skipped.items()},
        "events_given": len(events),
    }
    return ds


def leaking_pairs(ds: xr.Dataset, other: str = "train", held_out: str = "test") -> list[tuple[str, str]]:
    """Pairs ``(held_out minicube, other minicube)`` whose space-time boxes share a cell (should be none).

    Boxes come from the stored coordinates (times, latitudes, longitudes), not from how they were made,
    so this checks a store as written.

    >>> leaking_pairs(xr.Dataset(coords={"split": ("minicube", [])}))
    []
    """

    def boxes(split: str) -> list[tuple[str, set, set, set]]:
        sub = ds.isel(minicube=np.flatnonzero(labels(ds, "split") == split))
        return [
            (
                str(sub["minicube"].values[i]),
                set(sub["time"].values[i].tolist()),
                set(np.round(sub["lat"].values[i], 6).tolist()),
                set(np.round(sub["lon"].values[i], 6).tolist()),
            )
            for i in range(sub.sizes["minicube"])
        ]

    if "minicube" not in ds.dims or ds.sizes["minicube"] == 0:
        return []
    held, rest = boxes(held_out), boxes(other)
    return [
        (a[0], b[0])
        for a in held
        for b in rest
        if not (a[1].isdisjoint(b[1]) or a[2].isdisjoint(b[2]) or a[3].isdisjoint(b[3]))
    ]


def labels(ds: xr.Dataset, name: str) -> np.ndarray:
    """A label coordinate (``split``, ``kind``, ``minicube``...) as a plain numpy array of ``str``, whatever
    string type the store gave it.

    >>> labels(xr.Dataset(coords={"kind": ("minicube", np.array(["event"], dtype=object))}), "kind")
    array(['event'], dtype='<U5')
    """
    return np.array([str(v) for v in ds[name].values.tolist()], dtype=str)


def split_counts(ds: xr.Dataset) -> dict[str, dict[str, int]]:
    """How many minicubes of each kind each split holds.

    >>> split_counts(xr.Dataset(coords={"split": ("minicube", ["train", "test"]),
    ...     "kind": ("minicube", ["event", "control"])}))
    {'train': {'event': 1, 'control': 0}, 'val': {'event': 0, 'control': 0}, 'test': {'event': 0, 'control': 1}}
    """
    split, kind = labels(ds, "split"), labels(ds, "kind")
    return {s: {k: int(((split == s) & (kind == k)).sum()) for k in KINDS} for s in SPLITS}
