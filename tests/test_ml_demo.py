"""The ML bridge on the real demo cube through the catalog: both chunkings give the same samples, a
rechunked map cube equals the ts cube, and pixel time series with the NaN policy."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from platform_lib.ml import SampleSpec, TimeSplit, TrainingSet

SPEC = SampleSpec(
    inputs=["air_temperature_2m", "radiation_era5"],
    targets=["kndvi"],
    patch={"time": 46},
    stride={"lat": 3, "lon": 3},
)


def _samples(ts: TrainingSet) -> dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]:
    return {
        tuple(o): (x, y)
        for b in ts.iter_batches(128, seed=1)
        for o, x, y in zip(b["origin"].tolist(), b["x"], b["y"], strict=True)
    }


def test_both_chunkings_of_the_demo_cube_give_the_same_samples(demo_catalog):
    from platform_lib.catalog import open_cube

    by_chunking = {}
    for chunking in ("ts", "map"):
        cube = open_cube(f"esdc-demo-{chunking}", variables=list(SPEC.variables))
        ts = TrainingSet(cube, SPEC, nan="drop-all", normalise=False)
        assert ts.plan.read_amplification == 1.0
        by_chunking[chunking] = _samples(ts)
    assert by_chunking["ts"].keys() == by_chunking["map"].keys() and len(by_chunking["ts"]) > 100
    cube = open_cube("esdc-demo-ts", variables=list(SPEC.variables)).load()
    rng = np.random.default_rng(0)
    origins = list(by_chunking["ts"])
    for k in rng.choice(len(origins), 25, replace=False):
        t, y, x = origins[k]
        want_x = np.stack([cube[v].values[t : t + 46, y, x] for v in SPEC.inputs])
        want_y = cube["kndvi"].values[t : t + 46, y, x][None]
        for chunking in ("ts", "map"):
            got_x, got_y = by_chunking[chunking][origins[k]]
            np.testing.assert_array_equal(got_x, want_x)
            np.testing.assert_array_equal(got_y, want_y)
            assert not np.isnan(got_y).all()  # drop-all: ocean pixels (kndvi all NaN) are gone


def test_a_time_split_on_the_demo_cube_is_leak_free(demo_catalog):
    from platform_lib.catalog import open_cube

    cube = open_cube("esdc-demo-ts", variables=list(SPEC.variables))
    split = TimeSplit({"train": (None, "2008-12-31"), "val": ("2009-01-01", None)}, buffer=2)
    train = TrainingSet(cube, SPEC, split=split, nan="fill-mean")
    val = train.subset("val")
    last_train = max(o[0] + 45 for o in _samples(train))
    first_val = min(o[0] for o in _samples(val))
    times = cube["time"].values
    assert times[last_train] <= np.datetime64("2008-12-31") < np.datetime64("2009-01-01") <= times[first_val]
    x = np.concatenate([b["x"] for b in train.iter_batches(256)])
    assert not np.isnan(x).any() and abs(float(x.mean())) < 0.2  # normalised with train statistics


def test_rechunked_demo_map_cube_equals_the_ts_cube(demo_cubes, demo_catalog, tmp_path):
    from platform_lib.rechunk import rechunk_cube
    from platform_lib.team import list_team_cubes

    catalog = tmp_path / "team.yaml"
    out = rechunk_cube(
        "esdc-demo-map",
        "ts",
        tmp_path / "demo-ts.zarr",
        variables=["kndvi", "air_temperature_2m"],
        max_mem="8MB",
        register="demo-ts-copy",
        catalog_path=catalog,
        progress=False,
    )
    assert list_team_cubes(catalog_path=catalog) == ["demo-ts-copy"]
    got = xr.open_zarr(out, chunks=None)
    want = xr.open_zarr(demo_cubes["ts"], chunks=None)
    for name in ("kndvi", "air_temperature_2m"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
        assert got[name].attrs == want[name].attrs
    assert got["kndvi"].encoding["chunks"][0] == min(256, got.sizes["time"])


@pytest.mark.parametrize("chunking", ["ts", "map"])
def test_normalisation_stats_match_numpy_on_the_demo_cube(demo_cubes, chunking):
    ts = TrainingSet(demo_cubes[chunking], SPEC)
    cube = xr.open_zarr(demo_cubes[chunking], chunks=None)
    for k, v in enumerate(SPEC.variables):
        values = cube[v].values.astype("float64")
        assert ts.stats.mean[k] == pytest.approx(np.nanmean(values), rel=1e-9)
        assert ts.stats.std[k] == pytest.approx(np.nanstd(values), rel=1e-9)
