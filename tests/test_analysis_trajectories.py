"""Known answers for platform_lib.analysis.trajectories (Kraemer et al. 2020 land-surface trajectories).

References are independent of our code: numpy's weighted ``np.cov`` + ``np.linalg.eigh``; an analytic
synthetic cube built from known loadings, seasonal factors and trends; ``eofs.xarray.Eof`` on the
Pacific winter SST anomalies that ``eofs`` ships; ``scipy.stats.theilslopes``; and
``pymannkendall.yue_wang_modification_test``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import subspace_angles
from scipy.stats import theilslopes

from platform_lib.analysis import (
    mann_kendall,
    pc_cube,
    pc_trajectories,
    theil_sen,
    trajectory_trends,
    weighted_pca,
)
from platform_lib.errors import EsdlError

LAT = np.array([-60.0, -20.0, 0.0, 30.0, 70.0])
LON = np.arange(4) * 10.0


def esdc_times(y0: int, y1: int) -> pd.DatetimeIndex:
    days = pd.date_range(f"{y0}-01-01", f"{y1}-12-31", freq="D")
    return days[(days.day_of_year - 1) % 8 == 0]


def synthetic(seed: int = 0, years: tuple[int, int] = (2001, 2012), noise: float = 0.02):
    """x_v = m_v + s_v (sum_f L[v, f] F_f + noise): two factors, F_1 a seasonal cycle of per-pixel
    amplitude plus a per-pixel trend, F_2 a slow random walk; 5 variables."""
    rng = np.random.default_rng(seed)
    t = esdc_times(*years)
    frac = (t.day_of_year.to_numpy() - 1) / 365.0
    yrs = (t.year - years[0]).to_numpy() + frac
    amp = rng.uniform(1.0, 3.0, size=(LAT.size, LON.size))
    trend = rng.uniform(-0.1, 0.1, size=(LAT.size, LON.size))
    f1 = amp * np.sin(2 * np.pi * frac)[:, None, None] + trend * yrs[:, None, None]
    f2 = np.cumsum(rng.normal(0, 0.3, size=(t.size, LAT.size, LON.size)), axis=0)
    loadings = rng.normal(size=(5, 2))
    m = rng.normal(0, 100, size=5)
    s = rng.uniform(0.5, 20, size=5)
    x = np.einsum("tyxf,vf->tyxv", np.stack([f1, f2], -1), loadings)
    x = m + s * (x + noise * rng.normal(size=x.shape))
    da = xr.DataArray(
        x,
        dims=("time", "lat", "lon", "variable"),
        coords={"time": t, "lat": LAT, "lon": LON, "variable": [f"v{i}" for i in range(5)]},
    )
    return da, {"loadings": loadings, "scale": s, "amp": amp, "trend": trend}


def reference_pca(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """numpy: complete rows, cos-lat aweights, np.cov of standardised data, eigh (descending)."""
    x = da.transpose("time", "lat", "lon", "variable").values.reshape(-1, da.sizes["variable"])
    w = np.broadcast_to(np.cos(np.deg2rad(da["lat"].values))[None, :, None], da.shape[:-1]).reshape(-1)
    ok = np.isfinite(x).all(1)
    x, w = x[ok], w[ok]
    c = np.cov(x, rowvar=False, aweights=w, bias=True)
    sd = np.sqrt(np.diag(c))
    vals, vecs = np.linalg.eigh(c / np.outer(sd, sd))
    return vals[::-1], vecs[:, ::-1]


def test_pca_matches_numpy_weighted_cov_and_eigh():
    da, _ = synthetic()
    da[5:9, 1, 2, 3] = np.nan  # dropped rows
    pca = weighted_pca(da)
    vals, vecs = reference_pca(da)
    np.testing.assert_allclose(pca["explained_variance"].values, vals, rtol=1e-9, atol=1e-12)
    # eigenvectors agree up to sign (tolerance 1e-8 in |cos|)
    for c in range(2):
        assert abs(abs(vecs[:, c] @ pca["loadings"].values[:, c]) - 1) < 1e-8


def test_pca_recovers_known_loading_subspace():
    da, truth = synthetic(noise=0.02)
    pca = weighted_pca(da)
    # in standardised units the true loadings are diag(1 / sd_v) s_v L; sd_v from numpy (not our code)
    x = da.values.reshape(-1, 5)
    w = np.broadcast_to(np.cos(np.deg2rad(LAT))[None, :, None], da.shape[:-1]).reshape(-1)
    sd = np.sqrt(np.cov(x, rowvar=False, aweights=w, bias=True).diagonal())
    true = (truth["scale"] / sd)[:, None] * truth["loadings"]
    angles = np.rad2deg(subspace_angles(pca["loadings"].values[:, :2], true))
    assert angles.max() < 0.1, angles  # degrees (measured 0.012); 2 % noise on the factors
    assert pca["explained_variance_ratio"][:2].sum() > 0.99


def test_chunked_equals_in_memory():
    da, _ = synthetic(seed=3)
    da[0:20, 0, 0, :] = np.nan
    mem = weighted_pca(da)
    lazy_da = da.chunk({"time": 50, "lat": 2, "lon": 3})
    lazy = weighted_pca(lazy_da)
    xr.testing.assert_allclose(mem.drop_vars("loadings"), lazy.drop_vars("loadings"), rtol=1e-10, atol=1e-12)
    # eigenvectors move by rounding / eigen-gap: eps 2e-16 over the smallest gap here (~1e-5) -> ~1e-11
    np.testing.assert_allclose(mem["loadings"].values, lazy["loadings"].values, atol=1e-9)
    pcs_lazy = pc_cube(lazy_da, lazy)
    assert pcs_lazy.chunks is not None  # not loaded
    np.testing.assert_allclose(pcs_lazy.values, pc_cube(da, mem).values, rtol=1e-9, atol=1e-9)
    assert np.isnan(pcs_lazy.values[0:20, 0, 0]).all()


def test_dataset_input_and_variable_choice():
    da, _ = synthetic(seed=4)
    ds = da.to_dataset("variable")
    a = weighted_pca(ds, ["v0", "v2", "v4"])
    b = weighted_pca(da.sel(variable=["v0", "v2", "v4"]))
    xr.testing.assert_allclose(a, b)


def test_trajectory_amplitude_and_trend_recovered():
    """One factor F = amp sin(2 pi doy/365) + trend*years: PC1 = c F + const with one c for all
    pixels, so trend/amplitude per pixel is scale-free: PC1's ratio must equal the true one."""
    rng = np.random.default_rng(7)
    t = esdc_times(2001, 2015)
    frac = (t.day_of_year.to_numpy() - 1) / 365.0
    amp = rng.uniform(1.0, 3.0, size=(LAT.size, LON.size))
    trend = rng.uniform(-0.2, 0.2, size=(LAT.size, LON.size))
    f = amp * np.sin(2 * np.pi * frac)[:, None, None] + trend * (t.year - 2001).to_numpy()[:, None, None]
    load = np.array([1.0, -0.5, 2.0])
    x = f[..., None] * load + 1e-3 * rng.normal(size=(*f.shape, 3)) + np.array([5.0, 1.0, -3.0])
    da = xr.DataArray(
        x,
        dims=("time", "lat", "lon", "variable"),
        coords={"time": t, "lat": LAT, "lon": LON, "variable": ["a", "b", "c"]},
    )
    pca = weighted_pca(da)
    traj = pc_trajectories(pc_cube(da, pca, n_components=1))
    trends = trajectory_trends(traj)
    ratio = (trends["mean_slope"] / traj["amplitude"]).isel(component=0).values
    # true: annual-mean slope of F is `trend`; amplitude of F's mean cycle is 2 amp (max - min of a
    # sine sampled every 8 days: within 0.3 %)
    np.testing.assert_allclose(ratio, trend / (2 * amp), atol=5e-4)  # measured 7e-5
    # annual amplitude carries no trend here: |slope| tiny relative to the amplitude
    assert np.abs(trends["amplitude_slope"].values / traj["amplitude"].values).max() < 5e-4  # measured 3e-5
    assert np.all(trends["mean_p"].values[np.abs(trend) > 0.05] < 0.01)


def eofs_sst():
    eofs = pytest.importorskip("eofs")
    from eofs.examples import example_data_path

    with xr.open_dataset(example_data_path("sst_ndjfm_anom.nc"), engine="scipy") as raw:
        return raw["sst"].load(), eofs


def test_eofs_enso_mode():
    sst, _ = eofs_sst()
    from eofs.xarray import Eof

    wgt = np.sqrt(np.cos(np.deg2rad(sst["latitude"]))).broadcast_like(sst.isel(time=0))
    solver = Eof(sst, weights=wgt.values)
    ref_frac = float(solver.varianceFraction(1)[0])
    ref_pc = solver.pcs(npcs=1, pcscaling=0)[:, 0].values
    # ours: grid points as variables, sqrt(cos lat) applied to the data, every winter alike, covariance
    stacked = (sst * wgt).stack(point=("latitude", "longitude")).dropna("point", how="all")
    pts = stacked.reset_index("point").rename(point="variable")
    pts = pts.drop_vars(["latitude", "longitude"]).assign_coords(
        variable=[f"p{i}" for i in range(pts.sizes["variable"])]
    )
    pca = weighted_pca(pts.expand_dims(lat=[0.0], axis=1), lat=None, standardise=False)
    frac = float(pca["explained_variance_ratio"][0])
    pc1 = pc_cube(pts.expand_dims(lat=[0.0], axis=1), pca, n_components=1).values.ravel()
    assert abs(frac - ref_frac) < 1e-6, (frac, ref_frac)
    assert abs(abs(np.corrcoef(pc1, ref_pc)[0, 1]) - 1) < 1e-8
    # the documented pattern: ENSO, PC1 against the Nino3.4 index (5S-5N, 170W-120W)
    nino = sst.sel(latitude=slice(-5, 5), longitude=slice(190, 240))
    nino34 = nino.weighted(np.cos(np.deg2rad(nino["latitude"]))).mean(("latitude", "longitude")).values
    r = np.corrcoef(pc1, nino34)[0, 1]
    assert abs(r) > 0.95, r  # measured 0.982


@pytest.mark.parametrize("seed", range(5))
def test_theil_sen_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(6, 17)).cumsum(-1)
    x = np.sort(rng.uniform(0, 30, 17))
    slope, intercept = theil_sen(y, x)
    for i in range(6):
        ref = theilslopes(y[i], x)
        np.testing.assert_allclose(
            [slope[i], intercept[i]], [ref.slope, ref.intercept], rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("seed", range(8))
def test_mann_kendall_matches_pymannkendall(seed):
    mk = pytest.importorskip("pymannkendall")
    rng = np.random.default_rng(seed)
    n = 12 + seed * 3
    e = np.zeros((7, n))
    for k in range(1, n):  # AR(1) noise, phi 0.6, plus trends
        e[:, k] = 0.6 * e[:, k - 1] + rng.normal(size=7)
    y = e + np.linspace(-0.3, 0.3, 7)[:, None] * np.arange(n)
    y[5] = np.round(y[5])  # ties
    ours = mann_kendall(y)
    for i in range(7):
        ref = mk.yue_wang_modification_test(y[i])
        np.testing.assert_allclose(
            [ours["s"][i], ours["var_s"][i], ours["z"][i], ours["p"][i], ours["slope"][i]],
            [ref.s, ref.var_s, ref.z, ref.p, ref.slope],
            rtol=1e-9,
            atol=1e-12,
        )


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=6), st.floats(), st.text(), st.booleans()))
def test_bad_n_components(value):
    da, _ = synthetic(years=(2001, 2001))
    with pytest.raises(EsdlError, match="n_components"):
        pc_cube(da, weighted_pca(da), n_components=value)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.integers(), st.text(), st.none(), st.floats()))
def test_bad_standardise(value):
    da, _ = synthetic(years=(2001, 2001))
    with pytest.raises(EsdlError, match="standardise"):
        weighted_pca(da, standardise=value)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2))
def test_mann_kendall_too_short(n):
    with pytest.raises(EsdlError, match="at least 3"):
        mann_kendall(np.zeros(n))


def test_missing_lat_and_constant_variable():
    da, _ = synthetic(years=(2001, 2001))
    with pytest.raises(EsdlError, match="latitude"):
        weighted_pca(da.rename(lat="y"))
    flat = da.copy()
    flat[..., 2] = 1.0
    with pytest.raises(EsdlError, match="constant"):
        weighted_pca(flat)


def test_demo_cube_lazy_equals_loaded():
    """The demo cube (dask, one chunk a year, NaN over the ocean) runs lazily and gives the loaded
    cube's answer; no demo values are hard-coded (its geography changes)."""
    from platform_lib.demo import make_demo_cube

    cube = make_demo_cube(10.0, (2001, 2002))[["air_temperature_2m", "gross_primary_productivity", "kndvi"]]
    lazy = weighted_pca(cube)
    mem = weighted_pca(cube.load())
    xr.testing.assert_allclose(lazy.drop_vars("loadings"), mem.drop_vars("loadings"), rtol=1e-10)
    np.testing.assert_allclose(lazy["loadings"].values, mem["loadings"].values, atol=1e-9)
    vals, _ = reference_pca(cube.to_dataarray("variable").transpose("time", "lat", "lon", "variable"))
    np.testing.assert_allclose(lazy["explained_variance"].values, vals, rtol=1e-9)


def test_trajectories_and_trends_lazy_equal_eager():
    da, _ = synthetic(seed=5, years=(2001, 2008))
    da[40:50, 2, 1, 0] = np.nan
    pca = weighted_pca(da)
    eager = pc_trajectories(pc_cube(da, pca, n_components=2))
    lazy = pc_trajectories(pc_cube(da.chunk({"time": 46, "lat": 2}), pca, n_components=2))
    assert lazy["amplitude"].chunks is not None
    xr.testing.assert_allclose(eager, lazy.compute(), rtol=1e-12, atol=1e-12)
    xr.testing.assert_allclose(
        trajectory_trends(eager), trajectory_trends(lazy).compute(), rtol=1e-12, atol=1e-12
    )
    # a pixel's mean cycle is its per-step mean, by a plain loop
    pc = pc_cube(da, pca, n_components=2).isel(lat=0, lon=0, component=0).values
    step = (da["time"].dt.dayofyear.values - 1) // 8
    ref = np.array([pc[step == k].mean() for k in range(46)])
    np.testing.assert_allclose(eager["trajectory"].isel(lat=0, lon=0, component=0).values, ref, rtol=1e-12)
    year = da["time"].dt.year.values
    amp = np.array([np.ptp(pc[year == y]) for y in range(2001, 2009)])
    np.testing.assert_allclose(
        eager["annual_amplitude"].isel(lat=0, lon=0, component=0).values, amp, rtol=1e-12
    )


def test_bench_small_runs_and_agrees():
    """bench/trajectories.py --small, so the benchmark does not rot: ours and the numpy reference agree
    (no speed is asserted: speed lives in the benchmark's printed ratios)."""
    from bench_helpers import loaded_bench

    with loaded_bench("trajectories") as bench:
        runs = bench.main(["--small"])
    assert runs["eigen_rel_diff"] < 1e-9
    assert runs["pc1_map_max_diff"] < 1e-9
    assert runs["nan_mismatch"] == 0
    assert runs["chain"]["peak_mib"] > 0


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.integers(), st.just(""), st.floats(), st.lists(st.text(), max_size=2)))
def test_bad_lat_name(value):
    da, _ = synthetic(years=(2001, 2001))
    with pytest.raises(EsdlError, match="lat must be a non-empty string"):
        weighted_pca(da, lat=value)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=3, max_value=30), st.integers(min_value=3, max_value=30))
def test_theil_sen_x_length_must_match(n, m):
    if n == m:
        m += 1
    with pytest.raises(EsdlError, match="x must have the length"):
        theil_sen(np.zeros(n), np.arange(m, dtype=float))


def test_pca_argument_must_be_weighted_pca_result():
    da, _ = synthetic(years=(2001, 2001))
    with pytest.raises(EsdlError, match="pca must be an xarray Dataset"):
        pc_cube(da, "pca")
    with pytest.raises(EsdlError, match="loadings"):
        pc_cube(da, xr.Dataset())
    with pytest.raises(EsdlError, match="annual_mean"):
        trajectory_trends(xr.Dataset())


def test_ocean_pixels_are_quiet_under_dask_threads():
    """All-NaN (ocean) pixels give NaN without a RuntimeWarning when dask runs blocks on threads.

    ``warnings.catch_warnings()`` around ``np.nanmax`` was not enough: it swaps the process's warning
    filters, so one thread leaving it re-enabled the warnings of a block still inside (seen as
    "All-NaN slice encountered" in notebook 09 on the 1-degree demo cube). Racy by nature, hence many
    small blocks on many threads, several times."""
    import warnings

    import dask

    t = esdc_times(2001, 2004)
    x = np.random.default_rng(7).normal(size=(t.size, 40, 40, 2))
    x[:, ::2] = np.nan  # every other row of pixels is ocean
    pcs = xr.DataArray(x, dims=("time", "lat", "lon", "component"), coords={"time": t})
    for _ in range(5):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask.config.set({"array.chunk-size": "64KiB"}, scheduler="threads", num_workers=8):
                traj = pc_trajectories(pcs.chunk({"lat": 1}))
                assert traj["amplitude"].data.numblocks[0] > 10
                traj = traj.compute()
        assert [str(w.message) for w in caught] == []
    eager = pc_trajectories(pcs)
    xr.testing.assert_allclose(traj, eager, rtol=1e-12, atol=0)
    assert (
        np.isnan(eager["amplitude"].values[::2]).all() and np.isfinite(eager["amplitude"].values[1::2]).all()
    )
    # the NaN-skipping statistics are numpy's
    amp, centre = eager["amplitude"].values[1::2], eager["centre"].values[1::2]
    cycle = eager["trajectory"].values[1::2]
    np.testing.assert_allclose(amp, np.nanmax(cycle, axis=-1) - np.nanmin(cycle, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(centre, np.nanmean(cycle, axis=-1), rtol=1e-12)
