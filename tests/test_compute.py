"""map_cube and the seasonal helpers against plain per-pixel references written here."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import platform_lib.compute as compute
from platform_lib.compute import (
    anomalies,
    gap_fill,
    interpolate_gaps,
    map_cube,
    mean_seasonal_cycle,
    median_seasonal_cycle,
    seasonal_step,
)
from platform_lib.errors import EsdlError


def esdc_time(first: int, last: int) -> pd.DatetimeIndex:
    """The ESDC 8-daily axis: window centres, 46 a year, restarting each 1 January."""
    return pd.DatetimeIndex(
        [
            pd.Timestamp(y, 1, 1) + pd.Timedelta(days=8 * k + 4)
            for y in range(first, last + 1)
            for k in range(46)
        ]
    )


def synthetic_cube(years=(2001, 2004), n_lat=3, n_lon=4, seed=0, gaps=0.1, chunks=None) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    time = esdc_time(*years)
    shape = (len(time), n_lat, n_lon)
    season = np.sin(2 * np.pi * np.arange(len(time)) / 46)[:, None, None]
    data = {}
    for i, name in enumerate(["air_temperature_2m", "root_moisture", "kndvi"]):
        values = (i + 1) * season + rng.standard_normal(shape)
        values[rng.random(shape) < gaps] = np.nan
        data[name] = (("time", "lat", "lon"), values.astype(np.float32), {"units": f"u{i}"})
    ds = xr.Dataset(
        data,
        coords={"time": time, "lat": np.arange(n_lat) + 0.5, "lon": np.arange(n_lon) * 10.0 - 175.0},
        attrs={"title": "synthetic"},
    )
    data_vars = list(ds.data_vars)
    ds["root_moisture"][:, 0, 0] = np.nan  # an "ocean" pixel with no data at all
    assert data_vars == list(ds.data_vars)
    return ds.chunk(chunks) if chunks else ds


# --- map_cube ---------------------------------------------------------------------------------------


def test_map_cube_batched_and_per_pixel_agree_with_a_loop():
    ds = synthetic_cube(gaps=0.0)

    def per_pixel(block):  # (time, variable) -> (variable,)
        return block.std(axis=0)

    def batched(block):  # (pixels, time, variable) -> (pixels, variable)
        return block.std(axis=1)

    a = map_cube(per_pixel, ds, output_dims=("variable",))
    b = map_cube(batched, ds, output_dims=("variable",), batched=True)
    assert a.dims == ("lat", "lon", "variable")
    for name in ds.data_vars:
        for i in range(ds.sizes["lat"]):
            for j in range(ds.sizes["lon"]):
                expected = float(ds[name][:, i, j].values.std())  # func sees float32, as stored
                assert float(a.sel(variable=name)[i, j]) == pytest.approx(expected, rel=1e-6, nan_ok=True)
    xr.testing.assert_allclose(a, b)
    assert a["variable"].values.tolist() == list(ds.data_vars)


def test_map_cube_is_lazy_keeps_coords_and_rechunks_only_core_dims():
    ds = synthetic_cube(chunks={"time": 46, "lat": 2, "lon": 2})
    calls = []

    def count(block):
        calls.append(block.shape)
        return np.isnan(block).sum(axis=(1, 2)).astype(float)

    out = map_cube(count, ds, batched=True, name="gaps", attrs={"units": "1"})
    assert calls == [] and out.chunks is not None  # nothing computed yet
    assert out.chunks == ((2, 1), (2, 2))  # loop dims keep their chunks
    assert out.name == "gaps" and out.attrs == {"units": "1"}
    np.testing.assert_array_equal(out["lon"].values, ds["lon"].values)
    values = out.compute()
    assert len(calls) == 4 and all(c[1:] == (ds.sizes["time"], 3) for c in calls)  # whole time axis per call
    expected = ds.to_dataarray("variable").isnull().sum(["time", "variable"]).transpose("lat", "lon")
    np.testing.assert_array_equal(values.values, expected.values)


def test_map_cube_splits_blocks_that_would_be_too_big():
    ds = synthetic_cube(chunks={"time": 46})  # one spatial chunk; time merged -> 184 x 12 x 3 x 4 bytes
    out = map_cube(lambda b: np.nanmean(b, axis=(1, 2)), ds, batched=True, max_block_bytes=184 * 3 * 4 * 4)
    assert max(out.chunks[0]) * max(out.chunks[1]) <= 4
    expected = ds.to_dataarray("variable").mean(["time", "variable"]).values
    np.testing.assert_allclose(out.values, expected, rtol=1e-4, atol=1e-6)


def test_map_cube_new_output_dim_and_dataarray_input():
    da = synthetic_cube(gaps=0.0)["kndvi"]
    out = map_cube(
        lambda ts: np.array([ts.min(), ts.max()]),
        da,
        input_dims=("time",),
        output_dims=("stat",),
        output_coords={"stat": ["min", "max"]},
    )
    assert out.dims == ("lat", "lon", "stat")
    np.testing.assert_allclose(out.sel(stat="max").values, da.max("time").values)
    assert out.attrs == da.attrs


def test_map_cube_clear_errors():
    ds = synthetic_cube()
    with pytest.raises(EsdlError, match=r"no variable 'kndvj'.*Did you mean 'kndvi'"):
        map_cube(np.mean, ds, variables=["kndvj"])
    with pytest.raises(EsdlError, match=r"input dimension 'tiem' is not a dimension.*Did you mean 'time'"):
        map_cube(np.mean, ds, input_dims=("tiem", "variable"))
    with pytest.raises(EsdlError, match=r"output dimension 'stat' is new: give its length"):
        map_cube(np.mean, ds, output_dims=("stat",))
    with pytest.raises(EsdlError, match=r"needs 'variable' in input_dims"):
        map_cube(np.mean, ds, input_dims=("time",))
    with pytest.raises(EsdlError, match=r"returned shape \(2,\) per pixel; expected \(\)"):
        map_cube(lambda b: np.zeros(2), ds).compute()


# --- seasonal helpers -------------------------------------------------------------------------------


def test_seasonal_step_is_the_position_within_the_calendar_year():
    time = esdc_time(2003, 2005)  # 2004 is a leap year
    expected = pd.Series(np.ones(len(time)), index=time).groupby(time.year).cumcount().to_numpy()
    np.testing.assert_array_equal(seasonal_step(time), expected)
    np.testing.assert_array_equal(seasonal_step(time[50:70]), expected[50:70])  # a cube cut mid-year
    with pytest.raises(EsdlError, match="not on a 46-steps-a-year grid"):
        seasonal_step(pd.date_range("2001-01-01", periods=20, freq="D"))


def _reference_cycle(series: np.ndarray, steps: np.ndarray, how: str) -> np.ndarray:
    out = np.full(46, np.nan)
    for s in range(46):
        values = series[steps == s]
        values = values[~np.isnan(values)]
        if values.size:
            out[s] = values.mean() if how == "mean" else np.median(values)
    return out


@pytest.mark.parametrize("how", ["mean", "median"])
def test_seasonal_cycles_match_a_per_pixel_loop(how):
    ds = synthetic_cube(years=(2001, 2005), chunks={"time": 50})
    ds = ds.isel(time=slice(10, None))  # start mid-year: steps must still follow the calendar
    func = mean_seasonal_cycle if how == "mean" else median_seasonal_cycle
    cycle = func(ds)
    assert isinstance(cycle, xr.Dataset) and cycle["kndvi"].dims == ("step", "lat", "lon")
    assert cycle["kndvi"].chunks is not None  # lazy
    assert cycle["kndvi"].attrs == ds["kndvi"].attrs
    steps = seasonal_step(ds.time)
    for name in ds.data_vars:
        got = cycle[name].values
        for i in range(ds.sizes["lat"]):
            for j in range(ds.sizes["lon"]):
                ref = _reference_cycle(ds[name][:, i, j].values.astype(np.float64), steps, how)
                np.testing.assert_allclose(got[:, i, j], ref, rtol=1e-6, equal_nan=True)


def test_anomalies_subtract_the_cycle_step_by_step():
    ds = synthetic_cube(years=(2001, 2003))
    for how in ("mean", "median"):
        anom = anomalies(ds["air_temperature_2m"], how)
        steps = seasonal_step(ds.time)
        series = ds["air_temperature_2m"][:, 1, 2].values.astype(np.float64)
        ref = series - _reference_cycle(series, steps, how)[steps]
        np.testing.assert_allclose(anom[:, 1, 2].values, ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    with pytest.raises(EsdlError, match="cycle='mode' is not allowed"):
        anomalies(ds, "mode")


def test_gap_fill_uses_the_mean_cycle_then_linear_interpolation():
    ds = synthetic_cube(years=(2001, 2003), gaps=0.2)
    ds["kndvi"][:, :, 1] = np.nan
    ds["kndvi"][30:40, 2, 1] = 1.0  # steps 30-39 of 2001 only: other steps of pixel (2, 1) never seen
    filled = gap_fill(ds)
    steps = seasonal_step(ds.time)
    t = np.arange(ds.sizes["time"])
    for name in ds.data_vars:
        for i in range(ds.sizes["lat"]):
            for j in range(ds.sizes["lon"]):
                series = ds[name][:, i, j].values.astype(np.float64)
                got = filled[name][:, i, j].values
                if np.isnan(series).all():
                    assert np.isnan(got).all()
                    continue
                msc = _reference_cycle(series, steps, "mean")
                ref = np.where(np.isnan(series), msc[steps], series)
                ok = ~np.isnan(ref)
                ref = np.interp(t, t[ok], ref[ok])
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert not np.isnan(filled["kndvi"][:, 2, 1].values).any()


def test_interpolate_gaps_matches_numpy_interp_on_random_series():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 30))
    x[rng.random(x.shape) < 0.4] = np.nan
    x[0] = np.nan
    got = interpolate_gaps(x)
    t = np.arange(30)
    for row, g in zip(x, got, strict=True):
        ok = ~np.isnan(row)
        if ok.any():
            np.testing.assert_allclose(g, np.interp(t, t[ok], row[ok]), rtol=1e-12)
        else:
            assert np.isnan(g).all()


def test_docstring_examples_run():
    result = doctest.testmod(compute, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


def test_stacking_keeps_dask_lazy_and_puts_variables_innermost():
    from platform_lib.compute import as_variable_array

    ds = synthetic_cube()
    ds["kndvi"] = ds["kndvi"].chunk({"time": 46})  # one lazy member among numpy ones
    stacked = as_variable_array(ds, ["kndvi", "air_temperature_2m"])
    assert stacked.chunks is not None and stacked.dims == ("time", "lat", "lon", "variable")
    np.testing.assert_array_equal(
        stacked.sel(variable="air_temperature_2m").values, ds["air_temperature_2m"].values
    )
    eager = as_variable_array(synthetic_cube())
    assert eager.values.strides[-1] == eager.dtype.itemsize  # variable innermost in memory


def test_map_cube_contiguous_false_hands_the_block_as_it_lies_in_memory():
    time = pd.date_range("2001-01-05", periods=6, freq="8D")
    data = np.arange(6 * 2 * 3, dtype=np.float64).reshape(6, 2, 3)  # (time, lat, lon) in memory
    da = xr.DataArray(data, dims=("time", "lat", "lon"), coords={"time": time})
    seen = []

    def record(block: np.ndarray) -> np.ndarray:
        seen.append(block.flags.c_contiguous)
        return block.sum(axis=1)

    strided = map_cube(record, da, input_dims=("time",), batched=True, contiguous=False)
    copied = map_cube(record, da, input_dims=("time",), batched=True)
    np.testing.assert_array_equal(strided.values, data.sum(axis=0))
    np.testing.assert_array_equal(copied.values, data.sum(axis=0))
    assert seen == [False, True]
