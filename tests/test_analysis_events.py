"""Event labelling and the event table against a plain flood fill and hand-computed answers."""

from __future__ import annotations

import math
import warnings
from collections import deque

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from bench_helpers import loaded_bench
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_lib.analysis import (
    anomaly_features,
    anomaly_scores,
    cell_area_km2,
    detect_events,
    event_skill,
    event_table,
    label_events,
)
from platform_lib.analysis.events_chunked import exact_quantile, quantile_counts
from platform_lib.demo import event_mask
from platform_lib.errors import EsdlError

KM_PER_DEGREE = 6371.0088 * math.pi / 180


def grid_cube(
    values: np.ndarray, resolution: float = 10.0, lat0: float = -85.0, lon0: float = -175.0
) -> xr.DataArray:
    n_t, n_y, n_x = values.shape
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={
            "time": pd.date_range("2003-06-02", periods=n_t, freq="8D"),
            "lat": lat0 + resolution * np.arange(n_y),
            "lon": lon0 + resolution * np.arange(n_x),
        },
    )


def flood_fill(mask: np.ndarray, wrap: bool) -> np.ndarray:
    """Reference labelling: breadth-first search over the 26 neighbours, lon taken modulo n if wrap."""
    labels = np.zeros(mask.shape, int)
    n_t, n_y, n_x = mask.shape
    current = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        current += 1
        labels[start] = current
        queue = deque([start])
        while queue:
            t, y, x = queue.popleft()
            for dt in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        tt, yy, xx = t + dt, y + dy, x + dx
                        if wrap:
                            xx %= n_x
                        if (
                            0 <= tt < n_t
                            and 0 <= yy < n_y
                            and 0 <= xx < n_x
                            and mask[tt, yy, xx]
                            and not labels[tt, yy, xx]
                        ):
                            labels[tt, yy, xx] = current
                            queue.append((tt, yy, xx))
    return labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two labellings group the cells identically (labels may be numbered differently)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = set(zip(a[a > 0].tolist(), b[b > 0].tolist(), strict=True))
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_equal_a_flood_fill_with_and_without_wrap(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((9, 7, 36)) < 0.12
    global_mask = grid_cube(mask)  # 36 x 10 degrees: global, wraps
    regional = grid_cube(mask, resolution=1.0)  # 36 x 1 degree: does not wrap
    wrapped = label_events(global_mask).values
    flat = label_events(regional).values
    assert same_partition(wrapped, flood_fill(mask, wrap=True))
    assert same_partition(flat, flood_fill(mask, wrap=False))
    assert wrapped.max() < flat.max()  # the seam joined some events
    starts = [np.nonzero(wrapped == i)[0].min() for i in range(1, wrapped.max() + 1)]
    assert starts == sorted(starts)  # numbered by start


def test_min_size_drops_small_events():
    rng = np.random.default_rng(5)
    mask = rng.random((8, 6, 36)) < 0.1
    ref = flood_fill(mask, wrap=True)
    sizes = np.bincount(ref.ravel())
    keep = [i for i in range(1, sizes.size) if sizes[i] >= 4]
    assert 0 < len(keep) < ref.max()  # some events go, some stay
    got = label_events(grid_cube(mask), min_size=4).values
    assert same_partition(got, np.where(np.isin(ref, keep), ref, 0))
    with pytest.raises(EsdlError, match="needs a boolean mask"):
        label_events(grid_cube(mask.astype(float)))
    with pytest.raises(EsdlError, match=r"exactly the dims \('time', 'lat', 'lon'\)"):
        label_events(grid_cube(mask).rename(lat="y"))


def test_an_injected_block_is_one_event_with_the_right_area_and_duration():
    scores = np.random.default_rng(1).random((20, 18, 36)) * 0.5
    scores[5:9, 12:15, 3:6] = 0.9 + 0.01 * np.arange(4)[:, None, None]  # 4 steps x 3 lat x 3 lon
    scores[12, 2, 30] = 0.95  # a single cell: below min_size
    cube = grid_cube(scores)
    events = detect_events(cube, threshold=0.8, min_size=2)
    assert len(events.table) == 1
    row = events.table.iloc[0]
    lats = cube.lat.values[12:15]
    area = sum(3 * (KM_PER_DEGREE * 10) ** 2 * math.cos(math.radians(la)) for la in lats)
    assert row.n_steps == 4 and row.n_cells == 36
    assert row.duration_days == 32.0
    assert row.start == cube.time.values[5] and row.end == cube.time.values[8]
    assert row.area_km2 == pytest.approx(area, rel=1e-12)
    assert row.volume_km2_days == pytest.approx(area * 32, rel=1e-12)
    assert (row.lat_min, row.lat_max, row.lon_min, row.lon_max) == (30.0, 60.0, -150.0, -120.0)
    weights = np.cos(np.radians(lats))
    assert row.centroid_lat == pytest.approx(float((weights * lats).sum() / weights.sum()), rel=1e-12)
    assert row.centroid_lon == pytest.approx(-135.0, abs=1e-9)
    assert row.peak_score == pytest.approx(0.93) and row.peak_time == cube.time.values[8]
    assert int((events.labels > 0).sum()) == 36 and events.threshold == 0.8 and events.quantile is None


def test_an_event_crossing_the_dateline_is_one_event():
    scores = np.zeros((10, 18, 36))
    scores[3:6, 14, 34:36] = 1.0  # 160..180 E
    scores[4:7, 15, 0:2] = 1.0  # 180..160 W, one step later and one row up: touches only across the seam
    events = detect_events(grid_cube(scores), threshold=0.5, min_size=1)
    assert len(events.table) == 1
    row = events.table.iloc[0]
    assert (row.lon_min, row.lon_max) == (160.0, -160.0)  # lon_min > lon_max: crosses the dateline
    assert row.n_steps == 4 and row.n_cells == 12
    assert abs(row.centroid_lon) > 170  # near the dateline, not near 0
    regional = detect_events(grid_cube(scores, resolution=1.0), threshold=0.5, min_size=1)
    assert len(regional.table) == 2  # a regional grid does not wrap


def test_event_table_matches_per_event_sums():
    rng = np.random.default_rng(3)
    scores = rng.random((12, 9, 36))
    cube = grid_cube(scores, resolution=10.0, lat0=-40.0)
    features = xr.DataArray(
        rng.standard_normal((12, 9, 36, 2)) * [0.3, 3.0],
        dims=("time", "lat", "lon", "variable"),
        coords={**cube.coords, "variable": ["calm", "wild"]},
    )
    events = detect_events(cube, quantile=0.9, min_size=3, features=features)
    labels = events.labels.values
    assert events.threshold == pytest.approx(np.quantile(scores, 0.9))
    assert len(events.table) == labels.max() > 1
    lat = cube.lat.values
    for row in events.table.itertuples():
        t, y, x = np.nonzero(labels == row.event_id)
        area = cell_area_km2(lat, 10.0, 10.0)
        assert row.n_cells == t.size
        assert row.volume_km2_days == pytest.approx((area[y] * 8.0).sum(), rel=1e-12)
        cells = {(a, b) for a, b in zip(y.tolist(), x.tolist(), strict=True)}
        assert row.area_km2 == pytest.approx(sum(area[a] for a, _ in cells), rel=1e-12)
        assert row.peak_score == pytest.approx(scores[t, y, x].max())
        assert row.start == cube.time.values[t.min()] and row.n_steps == t.max() - t.min() + 1
        assert row.lat_min == lat[y.min()] - 5 and row.lat_max == lat[y.max()] + 5
        assert row.variables == ["wild"]  # mean |anomaly| >= 1 only for the wild variable


def test_event_skill_counts_cells_and_events():
    truth = np.zeros((10, 6, 36), bool)
    truth[2:4, 1:3, 5:7] = True  # event A: 8 cells
    truth[6:8, 3, 35] = True  # event B: 2 cells
    found = np.zeros_like(truth)
    found[3:5, 1:3, 5:7] = True  # half of A, plus 4 wrong cells
    found[8, 0, 20] = True  # a false event
    skill = event_skill(grid_cube(found), grid_cube(truth))
    assert skill == pytest.approx(
        {
            "precision": 4 / 9,
            "recall": 4 / 10,
            "f1": 2 * (4 / 9) * 0.4 / (4 / 9 + 0.4),
            "event_precision": 0.5,
            "event_recall": 0.5,
        }
    )


def test_thresholding_per_pixel_quantile_scores_warns():
    scores = grid_cube(np.random.default_rng(0).random((6, 4, 36)))
    scores.attrs["quantile_normalised"] = 1
    with pytest.warns(UserWarning, match="quantile-normalised per pixel"):
        detect_events(scores, 0.99, min_size=1)
    with pytest.raises(EsdlError, match=r"quantile must be a number above 0 and below 1; got 1\.5"):
        detect_events(scores, 1.5)
    with pytest.raises(EsdlError, match="no score 'ensemble'"):
        detect_events(scores.to_dataset(name="KDE"), variable="ensemble")


# --- chunk by chunk: the same labels, table and threshold as in memory --------------------------------


def assert_same_tables(chunked: pd.DataFrame, in_memory: pd.DataFrame) -> None:
    """Same rows and columns; sums may differ in the last bits (they are added chunk by chunk)."""
    assert len(in_memory) > 0
    pd.testing.assert_frame_equal(chunked, in_memory, check_exact=False, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("seed", "chunks"),
    [
        (0, {"time": 1, "lat": 2, "lon": 4}),
        (1, {"time": 2, "lat": 3, "lon": 5}),
        (2, {"time": 4, "lat": 2, "lon": 12}),
        (3, {"time": 3, "lat": 7, "lon": 36}),
        (4, {"time": 9, "lat": 7, "lon": 7}),
    ],
)
def test_chunked_labels_equal_the_in_memory_labels_on_random_masks(seed, chunks):
    rng = np.random.default_rng(seed)
    mask = rng.random((9, 7, 36)) < 0.15
    for resolution in (10.0, 1.0):  # global (wraps at the dateline) and regional
        cube = grid_cube(mask, resolution=resolution)
        for min_size in (1, 3):
            ref = label_events(cube, min_size=min_size)
            got = label_events(cube.chunk(chunks), min_size=min_size, chunked=True)
            assert got.chunks is not None  # lazy: computed chunk by chunk when asked
            values = got.values
            assert values.dtype == np.int32 and values.max() == ref.values.max() > 3
            np.testing.assert_array_equal(values, ref.values)  # the very same ids, not only the same groups
            assert got.attrs == ref.attrs and got.name == ref.name
    assert same_partition(
        label_events(grid_cube(mask).chunk(chunks), chunked=True).values, flood_fill(mask, True)
    )


NEIGHBOUR_OFFSETS = [d for d in np.ndindex(3, 3, 3) if d != (1, 1, 1)]


@pytest.mark.parametrize(
    "offset", NEIGHBOUR_OFFSETS, ids=lambda d: "dt{:+d} dy{:+d} dx{:+d}".format(*np.subtract(d, 1))
)
def test_two_cells_touching_across_a_chunk_face_edge_or_corner_are_one_event(offset):
    """Chunks of 2 x 2 x 2: every neighbour direction of 26-connectivity crosses a chunk boundary."""
    d = np.subtract(offset, 1)
    base = np.where(d >= 0, 1, 2)  # a cell on the near side of the boundary at index 2
    mask = np.zeros((4, 4, 8), bool)
    mask[tuple(base)] = mask[tuple(base + d)] = True
    mask[0, 3, 6] = True  # a second, separate event
    cube = grid_cube(mask, resolution=1.0)
    got = label_events(cube.chunk({"time": 2, "lat": 2, "lon": 2}), chunked=True).values
    np.testing.assert_array_equal(got, label_events(cube).values)
    assert got[tuple(base)] == got[tuple(base + d)] > 0 and got.max() == 2
    assert got[0, 3, 6] not in (0, got[tuple(base)])


@pytest.mark.parametrize(("dt", "dy"), [(dt, dy) for dt in (-1, 0, 1) for dy in (-1, 0, 1)])
def test_cells_touching_across_the_dateline_seam_are_one_event_chunk_by_chunk(dt, dy):
    mask = np.zeros((4, 6, 36), bool)
    mask[1, 2, 35] = mask[1 + dt, 2 + dy, 0] = True  # last and first longitude column
    mask[1, 2, 17] = True  # a lone cell in the middle
    chunks = {"time": 1, "lat": 2, "lon": 12}  # the seam is also a chunk boundary
    got = label_events(grid_cube(mask).chunk(chunks), chunked=True).values
    assert got[1, 2, 35] == got[1 + dt, 2 + dy, 0] > 0 and got.max() == 2
    np.testing.assert_array_equal(got, label_events(grid_cube(mask)).values)
    regional = label_events(grid_cube(mask, resolution=1.0).chunk(chunks), chunked=True).values
    assert regional[1, 2, 35] != regional[1 + dt, 2 + dy, 0] and regional.max() == 3  # no wrap


def test_an_event_snaking_through_many_chunks_and_the_seam_is_one_event():
    mask = np.zeros((12, 8, 36), bool)
    for i in range(12):  # a diagonal through time, lat and lon: only corners touch
        y = i if i < 8 else 14 - i
        mask[i, y, (30 + 2 * i) % 36] = mask[i, y, (31 + 2 * i) % 36] = True
    cube = grid_cube(mask)
    got = label_events(cube.chunk({"time": 5, "lat": 3, "lon": 7}), chunked=True).values
    np.testing.assert_array_equal(got, label_events(cube).values)
    assert got.max() == 1


def test_chunked_event_table_equals_the_in_memory_table():
    rng = np.random.default_rng(11)
    scores = rng.random((14, 9, 36))
    scores[3, 4, 5] = scores[3, 4, 6] = scores.max()  # a tie for the peak: the first cell wins both ways
    cube = grid_cube(scores, resolution=10.0, lat0=-40.0)
    features = xr.DataArray(
        rng.standard_normal((14, 9, 36, 3)) * [0.3, 3.0, 1.2],
        dims=("time", "lat", "lon", "variable"),
        coords={**cube.coords, "variable": ["calm", "wild", "middling"]},
    )
    features[..., 1] = features[..., 1].where(rng.random((14, 9, 36)) > 0.2)  # gaps are left out of means
    ref = detect_events(cube, quantile=0.85, min_size=3, features=features)
    chunks = {"time": 4, "lat": 4, "lon": 10}
    got = detect_events(
        cube.chunk(chunks), quantile=0.85, min_size=3, features=features.chunk(chunks), chunked=True
    )
    assert got.threshold == ref.threshold and got.quantile == ref.quantile == 0.85
    assert got.labels.chunks is not None
    np.testing.assert_array_equal(got.labels.values, ref.labels.values)
    assert_same_tables(got.table, ref.table)
    assert len(ref.table) > 5 and any(len(v) > 1 for v in ref.table["variables"])
    again = event_table(ref.labels.chunk({"time": 3}), cube, features, chunked=True)  # numpy scores too
    assert_same_tables(again, ref.table)


@pytest.mark.parametrize("quantile", [1e-9, 0.1, 0.5, 0.9, 0.999, 1 - 1e-9])
@pytest.mark.parametrize("sort_at_most", [1, 64, 1 << 22])
def test_exact_quantile_equals_numpy_quantile(quantile, sort_at_most):
    rng = np.random.default_rng(7)
    values = rng.standard_normal((20, 15, 30)).astype(np.float32)
    values[::4] = np.round(values[::4], 1)  # many ties
    values[1, :, :] = 0.0
    values[2, :, :] = -0.0
    values[values > 2.2] = np.nan
    values[0, 0, :3] = [np.inf, -np.inf, np.nan]  # not finite: left out as by the in-memory path
    data = da.from_array(values, chunks=(6, 7, 11))
    finite = values.astype(np.float64)
    expected = float(np.quantile(finite[np.isfinite(finite)], quantile))
    assert exact_quantile(data, quantile, sort_at_most=sort_at_most) == expected
    same = da.full((5, 4, 3), 2.5, chunks=2)  # one value: every radix level down to the full key
    assert exact_quantile(same, quantile, sort_at_most=sort_at_most) == 2.5


def test_chunked_detection_errors_name_the_problem():
    empty = grid_cube(np.full((4, 3, 36), np.nan)).chunk({"time": 2})
    with pytest.raises(EsdlError, match="no finite values"):
        detect_events(empty, chunked=True)
    with pytest.raises(EsdlError, match=r"quantile must be a number above 0 and below 1; got 0\."):
        detect_events(empty, 0, chunked=True)
    with pytest.raises(EsdlError, match="needs a boolean mask"):
        label_events(empty, chunked=True)


def test_detect_events_on_the_demo_cube_chunk_by_chunk_equals_in_memory(demo_cubes):
    """The injected events (Europe 2003, Russia 2010, one across the dateline) found the same both ways."""
    cube = xr.open_zarr(demo_cubes["ts"])
    features = anomaly_features(cube, ["air_temperature_2m", "root_moisture", "gross_primary_productivity"])
    with dask.config.set(scheduler="threads"):
        scores = anomaly_scores(features, ["KNN_Gamma"], quantiles=False, ensemble=None)
        scores = scores["KNN_Gamma"].compute()
        features = features.compute()
    chunks = {"time": 100, "lat": 12, "lon": 20}  # several chunks in every direction, the seam a boundary
    ref = detect_events(scores, features=features)
    with dask.config.set(scheduler="threads"):
        got = detect_events(scores.chunk(chunks), features=features.chunk(chunks), chunked=True)
        labels = got.labels.values
    assert got.threshold == ref.threshold and got.quantile == ref.quantile == 0.999
    np.testing.assert_array_equal(labels, ref.labels.values)
    assert_same_tables(got.table, ref.table)
    assert (ref.table["lon_min"] > ref.table["lon_max"]).any()  # the dateline event is among them
    skill = event_skill(got.labels, event_mask(cube))
    assert skill == event_skill(ref.labels, event_mask(cube)) and skill["event_recall"] == 1.0


def test_memory_benchmark_runs_both_ways_and_they_agree(capsys):
    """Smoke run of bench/events_memory.py at its smallest size (speed and memory are not asserted)."""
    with loaded_bench("events_memory") as bench:
        result = bench.bench_events_memory(46, 5.0, 16, 16)
    assert result["chunked"]["events"] == result["in_memory"]["events"] > 0
    assert result["chunked"]["blocks"] == 45 and "same events: True" in capsys.readouterr().out


def test_large_dask_cubes_go_chunk_by_chunk_by_default(monkeypatch):
    import platform_lib.analysis.events as events_module

    scores = grid_cube(np.random.default_rng(2).random((6, 5, 36)))
    small = detect_events(scores.chunk({"time": 2}), 0.95, min_size=1)
    assert small.labels.chunks is None  # small: computed once, labelled in memory
    monkeypatch.setattr(events_module, "IN_MEMORY_MAX_CELLS", scores.size - 1)
    large = detect_events(scores.chunk({"time": 2}), 0.95, min_size=1)
    assert large.labels.chunks is not None  # above the limit: lazy labels, chunk by chunk
    assert detect_events(scores, 0.95, min_size=1).labels.chunks is None  # numpy stays in memory
    np.testing.assert_array_equal(large.labels.values, small.labels.values)
    assert large.threshold == small.threshold
    assert_same_tables(large.table, small.table)


def test_chunk_by_chunk_runs_on_a_distributed_cluster_of_worker_processes():
    """What a dask-gateway cluster does: tasks and the lookup table are pickled to other processes."""
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(4)
    scores = grid_cube(rng.random((20, 18, 36)))
    ref = detect_events(scores, 0.95, min_size=2)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        got = detect_events(scores.chunk({"time": 7, "lat": 5, "lon": 12}), 0.95, min_size=2, chunked=True)
        labels = got.labels.values
    assert got.threshold == ref.threshold
    np.testing.assert_array_equal(labels, ref.labels.values)
    assert_same_tables(got.table, ref.table)


def test_event_skill_counts_the_events_a_size_filter_left_not_the_largest_label():
    """Labels 1 and 5 are left of 5 events: one touches a true event, so event precision is 1/2, not 1/5
    (it counted ``labels.max()`` events, issue 17)."""
    truth = xr.DataArray(np.zeros((4, 3, 3), bool), dims=("time", "lat", "lon"))
    truth[0, 0, 0] = True
    labels = xr.DataArray(np.zeros((4, 3, 3), np.int32), dims=("time", "lat", "lon"))
    labels[0, 0, 0] = 1
    labels[3, 2, 2] = 5
    skill = event_skill(labels, truth)
    assert skill["event_precision"] == 0.5 and skill["event_recall"] == 1.0


# --- ties at the quantile: REC and other scores with many equal values ------------------------------


def tie_reference(values: np.ndarray, quantile: float) -> tuple[bool, int, float, float]:
    """The tie rule of ``detect_events`` written out: numpy's quantile of the finite values; held by two
    or more cells, flag ``>`` when its share is at least as close to ``1 - quantile`` as that of ``>=``.
    Returns (strict, cells flagged, flagged share, requested share)."""
    finite = values[np.isfinite(values)].astype(np.float64)
    tau = np.quantile(finite, quantile)
    n_ge, n_gt = int(np.count_nonzero(finite >= tau)), int(np.count_nonzero(finite > tau))
    wanted = 1 - quantile
    strict = n_ge - n_gt >= 2 and abs(n_gt / finite.size - wanted) <= abs(n_ge / finite.size - wanted)
    flagged = n_gt if strict else n_ge
    return strict, flagged, flagged / finite.size, wanted


def test_rec_on_the_demo_cube_does_not_flag_its_whole_tie_and_says_so(demo_cubes):
    """REC = 1 - a recurrence rate moves in steps of 1/T: its 0.999 quantile lands on a value hundreds of
    cells share. Flagged as ``>=`` they would be far more than 0.1 % of the cells; the closer share is
    taken, with a warning, the same in memory and chunk by chunk."""
    cube = xr.open_zarr(demo_cubes["ts"])
    features = anomaly_features(cube, ["air_temperature_2m", "root_moisture", "gross_primary_productivity"])
    with dask.config.set(scheduler="threads"):
        rec = anomaly_scores(features, ["REC"], quantiles=False, ensemble=None)["REC"].compute()
    strict, flagged, share, wanted = tie_reference(rec.values, 0.999)
    finite = rec.values[np.isfinite(rec.values)]
    tau = np.quantile(finite, 0.999)
    tied = int((finite == tau).sum())
    assert tied > 100 and (finite >= tau).mean() > 1.5 * wanted  # the tie: >= flags too many
    with pytest.warns(
        UserWarning, match=rf"REC: its 0.999 quantile, {tau:g}, is held by {tied} cells"
    ) as said:
        ref = detect_events(rec, min_size=1)
    message = str(said[0].message)
    assert f"flagging the {flagged} cells {'>' if strict else '>='} {tau:g} ({share:.3%}" in message
    assert "requested 0.100%" in message
    assert ref.strict == strict and ref.threshold == tau
    assert int((ref.labels > 0).sum()) == flagged and share <= 2 * wanted
    with pytest.warns(UserWarning, match="is held by") as said_chunked, dask.config.set(scheduler="threads"):
        got = detect_events(rec.chunk({"time": 100, "lat": 12, "lon": 20}), min_size=1, chunked=True)
        labels = got.labels.values
    assert str(said_chunked[0].message) == message
    assert got.strict == ref.strict and got.threshold == ref.threshold
    np.testing.assert_array_equal(labels, ref.labels.values)
    assert_same_tables(got.table, ref.table)


TIED_CUBES = st.tuples(
    st.integers(2, 7), st.integers(1, 5), st.integers(1, 9), st.integers(1, 4), st.integers(0, 2**32 - 1)
)


@settings(max_examples=60)
@given(
    shape_levels_seed=TIED_CUBES,
    quantile=st.floats(0.01, 0.99) | st.sampled_from([0.5, 0.9, 0.999]),
    top_share=st.floats(0, 0.6),
)
def test_tied_scores_flag_no_more_than_the_tie_rule_allows_both_ways(shape_levels_seed, quantile, top_share):
    """Scores with few distinct values (heavy ties, a block of equal top values, gaps): the flagged share
    is the reference rule's, at most twice the requested one (or one cell above it), and the in-memory
    and the chunked path flag the very same cells and count the same ties."""
    n_t, n_y, n_x, levels, seed = shape_levels_seed
    rng = np.random.default_rng(seed)
    values = rng.integers(0, levels + 1, (n_t, n_y, n_x)).astype(np.float64)
    values[rng.random(values.shape) < top_share] = levels + 1.0  # a tie at the top, as REC's 1.0
    values[rng.random(values.shape) < 0.1] = np.nan
    if not np.isfinite(values).any():
        values[0, 0, 0] = 1.0
    cube = grid_cube(values, resolution=10.0)
    strict, flagged, share, wanted = tie_reference(values, quantile)
    n = int(np.isfinite(values).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = detect_events(cube, quantile, min_size=1)
        got = detect_events(cube.chunk({"time": 3, "lat": 2, "lon": 4}), quantile, min_size=1, chunked=True)
        labels = got.labels.values
    assert ref.strict == got.strict == strict and ref.threshold == got.threshold
    assert int((ref.labels.values > 0).sum()) == flagged
    np.testing.assert_array_equal(labels, ref.labels.values)
    assert share - wanted <= max(wanted, 1 / n) + 1e-12
    counts = quantile_counts(da.from_array(values, chunks=3), quantile, sort_at_most=1)  # every radix pass
    finite = values[np.isfinite(values)]
    assert counts == (
        ref.threshold,
        n,
        int((finite >= ref.threshold).sum()),
        int((finite == ref.threshold).sum()),
    )


def test_a_threshold_value_is_used_as_given_even_on_a_tie():
    values = np.zeros((4, 3, 36))
    values[0, 0, :10] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no tie warning: the user chose the value
        events = detect_events(grid_cube(values), threshold=1.0, min_size=1)
    assert not events.strict and int((events.labels > 0).sum()) == 10


# --- size filters in km2 x days -------------------------------------------------------------------------


def box_cube(resolution: float) -> xr.DataArray:
    """Scores on a regional grid (30..60 N, 0..40 E) of 8-day steps: one event 8 x 8 degrees x 3 steps at
    40..48 N, 10..18 E, one 2 x 2 degrees x 2 steps at 50..52 N, 30..32 E, whatever the resolution."""
    lat = np.arange(30 + resolution / 2, 60, resolution)
    lon = np.arange(resolution / 2, 40, resolution)
    values = np.zeros((8, lat.size, lon.size))
    big = ((lat > 40) & (lat < 48))[:, None] & ((lon > 10) & (lon < 18))[None, :]
    small = ((lat > 50) & (lat < 52))[:, None] & ((lon > 30) & (lon < 32))[None, :]
    values[2:5][:, big] = 1.0
    values[5:7][:, small] = 1.0
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": pd.date_range("2003-06-02", periods=8, freq="8D"), "lat": lat, "lon": lon},
    )


def reference_km2_days(
    labels: np.ndarray, lat: np.ndarray, time: np.ndarray, dlat: float, dlon: float
) -> dict:
    """Per label: sum over its cells of the cos(lat)-weighted cell area (km2) times its step's length in
    days (the gap to the next stamp; the last step the median gap)."""
    gaps = np.diff(time).astype("timedelta64[s]").astype(float) / 86400.0
    days = np.append(gaps, np.median(gaps))
    out: dict[int, float] = {}
    for t, y, x in zip(*np.nonzero(labels), strict=True):
        area = KM_PER_DEGREE**2 * dlat * dlon * math.cos(math.radians(lat[y]))
        out[int(labels[t, y, x])] = out.get(int(labels[t, y, x]), 0.0) + area * days[t]
    return out


def test_a_km2_days_filter_keeps_the_same_event_on_a_1_and_a_2_degree_grid_a_cell_filter_does_not():
    fine, coarse = box_cube(1.0), box_cube(2.0)
    big_volume = (
        KM_PER_DEGREE**2 * 24 * sum(math.cos(math.radians(la)) for la in np.arange(40.5, 48, 1.0)) * 8
    )
    # cells: 8 x 8 x 3 = 192 on the 1 degree grid, 4 x 4 x 3 = 48 on the 2 degree grid
    by_cells = [len(detect_events(c, threshold=0.5, min_size=100).table) for c in (fine, coarse)]
    assert by_cells == [1, 0]  # the same event, kept on one grid and dropped on the other
    for min_area_days, kept in [(0.5 * big_volume, 1), (2.0 * big_volume, 0), (0.01 * big_volume, 2)]:
        found = [detect_events(c, threshold=0.5, min_area_days=min_area_days) for c in (fine, coarse)]
        assert [len(f.table) for f in found] == [kept, kept], min_area_days
        if kept == 1:
            volumes = [float(f.table["volume_km2_days"].iloc[0]) for f in found]
            assert volumes == pytest.approx([big_volume, big_volume], rel=1e-3)  # cos(lat) of 1 vs 2 degrees
    truth = box_cube(2.0) > 0
    truth[5:7] = False  # the big event only
    skill = event_skill(detect_events(coarse, threshold=0.5, min_area_days=0.5 * big_volume).labels, truth)
    assert skill["event_precision"] == 1.0 and skill["event_recall"] == 1.0
    skill = event_skill(detect_events(coarse, threshold=0.5, min_size=1).labels, truth)
    assert skill["event_precision"] == 0.5  # the small one counts against it when kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_km2_days_filter_agrees_with_a_reference_sum_in_memory_and_chunk_by_chunk(seed):
    """Random events on a global 10 degree grid (wraps at the dateline) whose time axis crosses a year end
    (the ESDC's 5- or 6-day last step of a year): kept are those of at least the reference volume."""
    rng = np.random.default_rng(seed)
    time = pd.DatetimeIndex(
        [d for y in (2003, 2004) for d in pd.date_range(f"{y}-01-01", periods=46, freq="8D")]
    )[40:52]
    mask = rng.random((len(time), 9, 36)) < 0.15
    cube = grid_cube(mask, resolution=10.0, lat0=-80.0).assign_coords(time=time)
    ref_labels = flood_fill(mask, wrap=True)
    volumes = reference_km2_days(ref_labels, cube.lat.values, time.values, 10.0, 10.0)
    sizes = np.bincount(ref_labels.ravel())
    limit = float(np.median(list(volumes.values())))
    for min_size in (1, 4):
        keep = [i for i, v in volumes.items() if v >= limit and sizes[i] >= min_size]
        assert 0 < len(keep) < len(volumes)
        want = np.where(np.isin(ref_labels, keep), ref_labels, 0)
        got = label_events(cube, min_size=min_size, min_area_days=limit)
        assert same_partition(got.values, want)
        chunked = label_events(
            cube.chunk({"time": 5, "lat": 4, "lon": 12}), min_size=min_size, min_area_days=limit, chunked=True
        )
        np.testing.assert_array_equal(chunked.values, got.values)
        table = event_table(got)
        assert (table["volume_km2_days"] >= limit * (1 - 1e-12)).all()
    for edge in sorted(volumes.values())[:: max(1, len(volumes) // 5)]:  # a limit that equals a volume
        np.testing.assert_array_equal(
            label_events(
                cube.chunk({"time": 3, "lat": 5, "lon": 7}), min_area_days=edge, chunked=True
            ).values,
            label_events(cube, min_area_days=edge).values,
        )


def test_detect_events_with_min_area_days_is_the_same_chunk_by_chunk():
    rng = np.random.default_rng(9)
    scores = grid_cube(rng.random((14, 9, 36)), resolution=10.0, lat0=-40.0)
    ref = detect_events(scores, 0.9, min_area_days=3e7, min_size=2)
    got = detect_events(
        scores.chunk({"time": 4, "lat": 4, "lon": 10}), 0.9, min_area_days=3e7, min_size=2, chunked=True
    )
    np.testing.assert_array_equal(got.labels.values, ref.labels.values)
    assert_same_tables(got.table, ref.table)
    assert (ref.table["volume_km2_days"] >= 3e7).all() and (ref.table["n_cells"] >= 2).all()
    everything = detect_events(scores, 0.9, min_size=2).table
    dropped = everything[everything["volume_km2_days"] < 3e7]
    assert len(dropped) > 0 and len(ref.table) == len(everything) - len(dropped) > 0  # the area filter bit
    with pytest.raises(EsdlError, match=r"min_area_days must be a number of at least 0; got -1"):
        detect_events(scores, min_area_days=-1)
    with pytest.raises(
        EsdlError, match=r"min_area_days needs the grid's coordinates .* none for \['time', 'lat'\]"
    ):
        label_events(xr.DataArray(np.ones((2, 2, 2), bool), dims=("time", "lat", "lon")), min_area_days=1.0)
