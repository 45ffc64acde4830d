"""The chunk-aware sampler: samples equal the cube, each once per epoch, seeded order, chunks decoded once,
leak-free splits, NaN policies, streaming statistics and clear errors for bad specs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_helpers import CHUNKINGS, synthetic_cube, write_cube

from platform_lib.errors import EsdlError
from platform_lib.ml import BlockSplit, NanPolicy, SampleSpec, TimeSplit, TrainingSet

VARS = ["air_temperature_2m", "gross_primary_productivity"]
SPECS = {
    "aligned": SampleSpec(inputs=VARS, targets=["kndvi"], patch={"time": 8, "lat": 6, "lon": 8}),
    "overlap-forecast": SampleSpec(
        inputs=VARS,
        targets=["kndvi", "air_temperature_2m"],
        patch={"time": 5, "lat": 3, "lon": 5},
        stride={"time": 3, "lat": 2},
        target_time="next",
        horizon=2,
    ),
    "pixel-series": SampleSpec(inputs=["kndvi"], patch={"time": 46}, stride={"time": 23}),
}


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    return synthetic_cube()


@pytest.fixture(scope="module")
def stores(cube, tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ml-cubes")
    return {name: write_cube(cube, root / f"{name}.zarr", chunks) for name, chunks in CHUNKINGS.items()}


def expected(cube: xr.Dataset, spec: SampleSpec, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The sample at ``origin`` by direct isel on the in-memory cube."""
    dims = ("time", "lat", "lon")
    sl = {d: slice(int(o), int(o) + spec.patch_of(d)) for d, o in zip(dims, origin, strict=True)}
    keep = [d for d in dims if d in spec.patch]
    x = np.stack([cube[v].isel(sl).transpose(*dims).values for v in spec.inputs])
    x = x.reshape(len(spec.inputs), *(spec.patch[d] for d in keep))
    if not spec.targets:
        return x, None
    ysl = {
        d: slice(int(o) + spec.y_offset(d), int(o) + spec.y_offset(d) + spec.y_window(d))
        for d, o in zip(dims, origin, strict=True)
    }
    y = np.stack([cube[v].isel(ysl).transpose(*dims).values for v in spec.targets])
    return x, y.reshape(len(spec.targets), *(spec.y_window(d) for d in keep))


@pytest.mark.parametrize("chunking", ["ts", "map"])
@pytest.mark.parametrize("spec_name", list(SPECS))
def test_every_sample_equals_the_cube_at_its_coordinates(cube, stores, chunking, spec_name):
    spec = SPECS[spec_name]
    ts = TrainingSet(stores[chunking], spec, normalise=False)
    seen = 0
    for batch in ts.iter_batches(16, seed=3):
        assert batch["x"].shape[1:] == ts.x_shape
        for i, origin in enumerate(batch["origin"]):
            x, y = expected(cube, spec, origin)
            np.testing.assert_array_equal(batch["x"][i], x)
            if y is not None:
                assert batch["y"].shape[1:] == ts.y_shape
                np.testing.assert_array_equal(batch["y"][i], y)
        seen += len(batch["sample"])
    n_expected = 1
    for d in ("time", "lat", "lon"):
        n_expected *= (cube.sizes[d] - spec.extent_of(d)) // spec.stride_of(d) + 1
    assert seen == len(ts) == n_expected


@pytest.mark.parametrize("chunking", ["ts", "map"])
def test_each_sample_once_per_epoch_over_shards_and_seeded_order(stores, chunking):
    ts = TrainingSet(stores[chunking], SPECS["overlap-forecast"], normalise=False, window=2)

    def epoch(seed, ep, n_shards):
        return [
            s
            for shard in range(n_shards)
            for b in ts.iter_batches(7, seed=seed, epoch=ep, shard=shard, n_shards=n_shards)
            for s in b["sample"].tolist()
        ]

    for n_shards in (1, 3, 6):
        ids = epoch(1, 0, n_shards)
        assert sorted(ids) == list(range(len(ts))), f"not exactly once with {n_shards} shards"
    assert epoch(1, 0, 1) == epoch(1, 0, 1)  # same seed, same order
    assert epoch(1, 0, 1) != epoch(1, 1, 1)  # the next epoch reshuffles
    assert epoch(1, 0, 1) != epoch(2, 0, 1)
    ordered = epoch(1, 0, 1)
    assert ordered != sorted(ordered)  # it is shuffled at all
    sizes = [len(b["sample"]) for b in ts.iter_batches(7, seed=1)]
    n_full, rest = divmod(len(ts), 7)
    assert n_full > 2 and sizes == [7] * n_full + [rest] * (rest > 0)  # full batches across window boundaries


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch_size=st.integers(1, 200),
    segment_bytes=st.integers(1, 40_000),
    window=st.integers(1, 5),
    chunking=st.sampled_from(sorted(CHUNKINGS)),
    drop_last=st.booleans(),
)
def test_batches_are_full_whatever_the_segment_and_window_sizes(
    stores, monkeypatch, batch_size, segment_bytes, window, chunking, drop_last
):
    import platform_lib.ml.training_set as training_set

    monkeypatch.setattr(training_set, "SEGMENT_BYTES", segment_bytes)  # windows span many segments
    spec = SampleSpec(inputs=VARS, targets=["kndvi"], patch={"time": 4, "lat": 3, "lon": 4})
    ts = TrainingSet(stores[chunking], spec, normalise=False, window=window)
    sizes, ids = [], []
    for segment, parts in ts.iter_segments(batch_size, seed=2, drop_last=drop_last):
        assert len(segment["sample"]) == sum(parts)
        sizes += parts
        ids += segment["sample"].tolist()
    n_full, rest = divmod(len(ts), batch_size)
    assert sizes == [batch_size] * n_full + [rest] * (rest > 0 and not drop_last)
    assert len(set(ids)) == len(ids) and len(ids) == len(ts) - (rest if drop_last else 0)


class CountingStore(zarr.storage.LocalStore):
    """A real local store that counts chunk reads per array."""

    reads: Counter

    async def get(self, key, prototype, byte_range=None):
        if "/c/" in key:
            self.reads[key.split("/c/")[0]] += 1
        return await super().get(key, prototype, byte_range)


@pytest.mark.parametrize("chunking", ["ts", "map"])
def test_each_stored_chunk_is_decoded_once_per_epoch(stores, chunking):
    store = CountingStore(str(stores[chunking]), read_only=True)
    store.reads = Counter()
    ds = xr.open_zarr(store, chunks=None)
    spec = SampleSpec(
        inputs=["gross_primary_productivity"], targets=["kndvi"], patch={"time": 8, "lat": 6, "lon": 8}
    )
    ts = TrainingSet(ds, spec, normalise=False)
    assert ts.plan.read_amplification == 1.0
    assert not any(store.reads[v] for v in ds.data_vars)  # planning reads metadata only, never the data
    chunks = CHUNKINGS[chunking]
    used = {
        d: (ds.sizes[d] - spec.patch[d]) // spec.patch[d] * spec.patch[d] + spec.patch[d] for d in spec.patch
    }
    n_chunks = int(
        np.prod([-(-used[d] // chunks[d]) for d in ("time", "lat", "lon")])
    )  # chunks the samples touch
    for epoch in (1, 2):  # nothing is cached between epochs: each epoch decodes each chunk once
        n = sum(len(b["sample"]) for b in ts.iter_batches(32, seed=0, epoch=epoch))
        assert n == len(ts)
        for var in spec.variables:
            assert store.reads[var] == epoch * n_chunks, (var, store.reads[var], n_chunks)
    assert "air_temperature_2m" not in store.reads  # variables the spec does not use are never read


def test_misaligned_patches_read_each_chunk_at_most_once_when_memory_allows(stores):
    ts = TrainingSet(stores["ts"], SPECS["overlap-forecast"], normalise=False)
    assert ts.plan.read_amplification == 1.0  # blocks grew to whole chunk runs
    small = TrainingSet(
        stores["ts"], SPECS["overlap-forecast"], normalise=False, block_bytes=4 * 6 * 8 * 32 * 4
    )
    assert small.plan.read_amplification > 1.0  # a tight budget trades re-reads for memory
    assert len(small) == len(ts)


def _labels_of_extent(grid, origin, extent):
    region = tuple(
        slice(max(0, o - b), min(int(e[-1]), o + x + b))
        for o, x, b, e in zip(origin, extent, grid.buffer, grid.edges, strict=True)
    )
    return np.unique(grid.cell_labels(region))


def test_block_split_no_sample_crosses_a_boundary(stores):
    split = BlockSplit(
        {"time": 23, "lat": 6, "lon": 8},
        {"train": 0.6, "val": 0.2, "test": 0.2},
        buffer={"time": 2, "lat": 1},
        seed=4,
    )
    spec = SampleSpec(
        inputs=VARS, patch={"time": 4, "lat": 3, "lon": 3}, stride={"time": 2, "lat": 1, "lon": 1}
    )
    train = TrainingSet(stores["ts"], spec, split=split, normalise=False)
    cells = {}
    for name in ("train", "val", "test"):
        ts = train.subset(name)
        assert len(ts) > 0
        code = ts.grid.code(name)
        covered = np.zeros((92, 12, 24), bool)
        for batch in ts.iter_batches(64, seed=0):
            for origin in batch["origin"]:
                assert _labels_of_extent(ts.grid, origin, ts.extent).tolist() == [code]
                t, y, x = origin
                covered[t : t + 4, y : y + 3, x : x + 3] = True
        cells[name] = covered
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not (cells[a] & cells[b]).any()
        # the buffer keeps 2 time steps between samples of different splits that share a pixel
        dilated = cells[a].copy()
        for shift in (1, 2):
            dilated[shift:] |= cells[a][:-shift]
            dilated[:-shift] |= cells[a][shift:]
        assert not (dilated & cells[b]).any()


def test_time_split_keeps_a_buffer_between_periods(stores, cube):
    split = TimeSplit({"train": (None, "2001-12-31"), "val": ("2002-01-01", None)}, buffer=3)
    spec = SampleSpec(inputs=VARS, targets="kndvi", patch={"time": 6}, target_time="next", horizon=2)
    train = TrainingSet(stores["map"], spec, split=split, normalise=False)
    val = train.subset("val")
    last_train = (
        max(int(b["origin"][:, 0].max()) for b in train.iter_batches(256)) + spec.extent_of("time") - 1
    )
    first_val = min(int(b["origin"][:, 0].min()) for b in val.iter_batches(256))
    assert cube.time.values[last_train] < np.datetime64("2002-01-01")
    assert first_val - last_train > 3
    with pytest.raises(EsdlError, match="Unknown split 'valid'.*Did you mean 'val'"):
        train.subset("valid")


def _all_raw(ts):
    raw = TrainingSet(ts.ds, ts.spec, normalise=False)
    return {
        int(s): (x, y)
        for b in raw.iter_batches(256)
        for s, x, y in zip(b["sample"], b["x"], b["y"], strict=True)
    }


def test_nan_policies_do_what_they_say(stores):
    spec = SampleSpec(
        inputs=["gross_primary_productivity", "kndvi"],
        targets="air_temperature_2m",
        patch={"time": 4, "lat": 2, "lon": 2},
    )
    raw = _all_raw(TrainingSet(stores["ts"], spec, normalise=False))
    any_nan = {s for s, (x, y) in raw.items() if np.isnan(x).any() or np.isnan(y).any()}
    all_nan = {s for s, (x, y) in raw.items() if np.isnan(x).all() or np.isnan(y).all()}
    assert any_nan and all_nan and len(any_nan) > len(all_nan)

    def ids(nan):
        ts = TrainingSet(stores["ts"], spec, nan=nan, normalise=False)
        return [s for b in ts.iter_batches(32) for s in b["sample"].tolist()]

    assert sorted(ids("drop-any")) == sorted(set(raw) - any_nan)
    assert sorted(ids(NanPolicy(drop="all"))) == sorted(set(raw) - all_nan)

    filled = TrainingSet(stores["ts"], spec, nan=NanPolicy(fill=-9.0, mask=True), normalise=False)
    for b in filled.iter_batches(64):
        for s, x, m in zip(b["sample"], b["x"], b["x_mask"], strict=True):
            x0 = raw[int(s)][0]
            np.testing.assert_array_equal(m, ~np.isnan(x0))
            np.testing.assert_array_equal(x, np.where(np.isnan(x0), -9.0, x0))

    mean = TrainingSet(stores["ts"], spec, nan="fill-mean")  # normalised: holes become 0
    for b in mean.iter_batches(64):
        assert not np.isnan(b["x"]).any()
        holes = np.stack([np.isnan(raw[int(s)][0]) for s in b["sample"]])
        np.testing.assert_allclose(b["x"][holes], 0.0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_seasonal_fill_uses_the_pixel_mean_seasonal_cycle(stores, cube):
    spec = SampleSpec(inputs=["gross_primary_productivity"], patch={"time": 46, "lat": 1, "lon": 1})
    ts = TrainingSet(stores["ts"], spec, nan="fill-seasonal", normalise=False)
    gpp = cube["gross_primary_productivity"].values
    clim = np.nanmean(gpp.reshape(2, 46, 12, 24), axis=0)  # two years, same slots
    overall = np.nanmean(gpp)
    for b in ts.iter_batches(64):
        for (t, y, x), series in zip(b["origin"], b["x"][:, 0, :, 0, 0], strict=True):
            want = gpp[t : t + 46, y, x].copy()
            fill = clim[(np.arange(t, t + 46) % 46), y, x]
            fill = np.where(np.isnan(fill), overall, fill)
            want[np.isnan(want)] = fill[np.isnan(want)]
            np.testing.assert_allclose(series, want, rtol=1e-5)


def test_normalisation_stats_are_computed_on_train_cells_only(stores, cube):
    split = BlockSplit({"time": 46, "lon": 12}, {"train": 0.5, "test": 0.5}, seed=1)
    spec = SampleSpec(inputs=VARS, patch={"time": 8})
    ts = TrainingSet(stores["map"], spec, split=split)
    grid = ts.grid
    labels = grid.cell_labels((slice(0, 92), slice(0, 12), slice(0, 24)))
    train = labels == grid.code("train")
    for k, v in enumerate(VARS):
        values = cube[v].values[train]
        assert ts.stats.mean[k] == pytest.approx(np.nanmean(values.astype("float64")), rel=1e-9)
        assert ts.stats.std[k] == pytest.approx(np.nanstd(values.astype("float64")), rel=1e-9)
        assert ts.stats.count[k] == np.isfinite(values).sum()
    x = np.concatenate([b["x"] for b in ts.iter_batches(256)])
    assert abs(np.nanmean(x[:, 0])) < 0.1 and abs(np.nanstd(x[:, 0]) - 1) < 0.1
    assert ts.subset("test").stats is ts.stats


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"inputs": ["air_temprature_2m"], "patch": {"time": 4}},
            "not in the cube.*Did you mean 'air_temperature_2m'",
        ),
        ({"inputs": VARS, "patch": {"time": 400}}, "needs 400 cells along 'time' but the cube has only 92"),
        ({"inputs": VARS, "patch": {"lat": 4, "lon": 30}}, "along 'lon' but the cube has only 24"),
        ({"inputs": VARS, "patch": {"depth": 4}}, "patch dim 'depth' is not a dim of the cube"),
        (
            {"inputs": VARS, "targets": "kndvi", "patch": {"time": 90}, "target_time": "next", "horizon": 3},
            "needs 93",
        ),
    ],
)
def test_bad_spec_gives_a_clear_error(stores, kwargs, message):
    with pytest.raises(EsdlError, match=message):
        TrainingSet(stores["ts"], SampleSpec(**kwargs))


def test_bad_arguments_give_clear_errors(stores):
    with pytest.raises(EsdlError, match=r"patch\[.time.\] must be a whole number of at least 1"):
        SampleSpec(inputs=VARS, patch={"time": -1})
    with pytest.raises(EsdlError, match="stride dim 'depth' is not a dim of the cube"):
        TrainingSet(stores["ts"], SampleSpec(inputs=VARS, patch={"time": 4}, stride={"depth": 2}))
    with pytest.raises(EsdlError, match="nan='drop' is not a NaN policy"):
        TrainingSet(stores["ts"], SampleSpec(inputs=VARS, patch={"time": 4}), nan="drop")
    with pytest.raises(EsdlError, match="no such store"):
        TrainingSet(stores["ts"].parent / "missing.zarr", SampleSpec(inputs=VARS, patch={"time": 4}))
    with pytest.raises(EsdlError, match="BlockSplit names dim 'height'"):
        TrainingSet(stores["ts"], SampleSpec(inputs=VARS, patch={"time": 4}), split=BlockSplit({"height": 3}))


def test_stats_never_count_other_splits_cells_even_without_a_train_split(stores, cube):
    split = BlockSplit({"time": 46}, {"fit": 0.5, "holdout": 0.5}, seed=3)
    ts = TrainingSet(stores["ts"], SampleSpec(inputs=VARS, patch={"time": 8}), split=split, subset="fit")
    labels = ts.grid.cell_labels((slice(0, 92), slice(0, 12), slice(0, 24)))
    fit = cube[VARS[0]].values[labels == ts.grid.code("fit")].astype("float64")
    assert ts.stats.mean[0] == pytest.approx(np.nanmean(fit), rel=1e-9)
    assert ts.subset("holdout").stats is ts.stats


def test_direct_zarr_reads_equal_xarray_reads(stores, cube, tmp_path):
    from platform_lib.ml.reader import BlockReader, open_cube_for_reading
    from platform_lib.storage import write_zarr_atomic

    fast = BlockReader(open_cube_for_reading(stores["ts"]), VARS)
    slow = BlockReader(xr.open_zarr(stores["ts"], chunks=None), VARS)  # a user's dataset: through xarray
    assert fast.direct == set(VARS) and not slow.direct
    region = (slice(3, 40), slice(1, 11), slice(2, 20))
    np.testing.assert_array_equal(fast.read(region), slow.read(region))
    # a CF fill value other than NaN must be masked by xarray: no direct read there
    path = write_zarr_atomic(
        cube[["kndvi"]], tmp_path / "fill.zarr", encoding={"kndvi": {"_FillValue": -9999.0}}, progress=False
    )
    masked = BlockReader(open_cube_for_reading(path), ["kndvi"])
    assert not masked.direct
    everything = (slice(0, 92), slice(0, 12), slice(0, 24))
    np.testing.assert_array_equal(masked.read(everything)[0], cube["kndvi"].values)


@pytest.mark.parametrize("chunking", ["ts", "map"])
def test_a_lazily_opened_and_sliced_cube_is_read_from_its_store_at_its_offsets(stores, cube, chunking):
    from platform_lib.catalog import subset_cube
    from platform_lib.ml.reader import BlockReader

    opened = xr.open_zarr(stores[chunking])  # dask chunks = stored chunks, as open_cube gives
    sub = subset_cube(
        opened, variables=VARS + ["kndvi"], bbox=(-100, -40, 90, 50), time_range=("2001-03", "2002-06")
    )
    reader = BlockReader(sub, VARS)
    assert reader.direct == set(VARS) and reader.direct_store == str(stores[chunking])
    t0 = int(np.flatnonzero(cube["time"].values == sub["time"].values[0])[0])
    la0 = int(np.flatnonzero(cube["lat"].values == sub["lat"].values[0])[0])
    lo0 = int(np.flatnonzero(cube["lon"].values == sub["lon"].values[0])[0])
    assert reader.offsets == (t0, la0, lo0) and min(reader.offsets) > 0
    everything = tuple(slice(0, int(sub.sizes[d])) for d in ("time", "lat", "lon"))
    np.testing.assert_array_equal(reader.read(everything), np.stack([sub[v].values for v in VARS]))
    # the samples of a training set over it equal those cut from the in-memory subset
    spec = SampleSpec(inputs=VARS, targets=["kndvi"], patch={"time": 4, "lat": 3, "lon": 3})
    ts = TrainingSet(sub, spec, normalise=False)
    assert ts.reader.direct == {*VARS, "kndvi"}
    loaded = sub.load()
    batch = ts.take(np.arange(0, len(ts), 7))
    for k, origin in enumerate(batch["origin"]):
        x, y = expected(loaded, spec, origin)
        np.testing.assert_array_equal(batch["x"][k], x)
        np.testing.assert_array_equal(batch["y"][k], y)


def test_a_computed_or_reordered_cube_is_read_through_xarray(stores, cube):
    from platform_lib.ml.reader import BlockReader

    opened = xr.open_zarr(stores["ts"])
    region = (slice(0, 20), slice(0, 6), slice(0, 10))
    cases = {
        "arithmetic": opened.assign(**{VARS[0]: opened[VARS[0]] * 2}),
        "renamed": opened.rename({VARS[0]: VARS[1], VARS[1]: VARS[0]}),
        "reversed": opened.isel(lat=slice(None, None, -1)),
        "strided": opened.isel(lon=slice(0, None, 2)),
        "rechunked": opened.chunk({"time": 7}),
        "wrapped": opened.isel(lon=np.r_[np.arange(20, 24), np.arange(0, 20)]),
    }
    for label, ds in cases.items():
        reader = BlockReader(ds, VARS)
        assert reader.direct == set() or (label == "arithmetic" and reader.direct == {VARS[1]}), label
        want = np.stack([ds[v].isel(time=region[0], lat=region[1], lon=region[2]).values for v in VARS])
        np.testing.assert_array_equal(reader.read(region), want, err_msg=label)


@st.composite
def tiling_cases(draw):
    ndim = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    stride = tuple(w + draw(st.integers(0, 3)) for w in window)
    offset = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
    counts = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    shape = tuple(o + c * s + draw(st.integers(0, 3)) for o, c, s in zip(offset, counts, stride, strict=True))
    n_channels = draw(st.integers(1, 4))
    channels = draw(st.lists(st.integers(0, n_channels - 1), min_size=1, max_size=3))
    dtype = draw(st.sampled_from(["float32", "float64", "int16"]))
    return shape, n_channels, np.array(channels), np.array(offset), window, stride, counts, dtype


@settings(max_examples=80, deadline=None)
@given(case=tiling_cases())
def test_tiles_are_the_windows_cut_one_by_one(case):
    from platform_lib.ml.training_set import _tile

    shape, n_channels, channels, offset, window, stride, counts, dtype = case
    data = np.arange(n_channels * int(np.prod(shape))).reshape(n_channels, *shape).astype(dtype)
    tiles = _tile(data, channels, offset, window, stride, counts)
    assert tiles is not None and tiles.shape == (int(np.prod(counts)), len(channels), *window)
    for row, grid in enumerate(np.ndindex(*counts)):  # row-major over the grid of samples
        lo = [o + g * s for o, g, s in zip(offset, grid, stride, strict=True)]
        box = tuple(slice(a, a + w) for a, w in zip(lo, window, strict=True))
        np.testing.assert_array_equal(tiles[row], data[(channels, *box)])
    out = np.full((len(tiles) + 2, *tiles.shape[1:]), -1, dtype=dtype)
    assert _tile(data, channels, offset, window, stride, counts, out=out[1:-1]) is not None
    np.testing.assert_array_equal(out[1:-1], tiles)  # into rows of a shared array, nothing around
    assert (out[0] == -1).all() and (out[-1] == -1).all()
