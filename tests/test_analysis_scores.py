"""Batched anomaly scores against a plain per-pixel port of MultivariateAnomalies.jl's definitions."""

from __future__ import annotations

import math

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from analysis_reference import esdc_time, reference_block, reference_quantiles
from scipy.spatial.distance import cdist

from platform_lib.analysis import (
    METHODS,
    anomaly_features,
    anomaly_scores,
    anomaly_scores_block,
    ewma,
    extremes,
    kernels,
    quantile_scores,
    time_delay_embedding,
)
from platform_lib.errors import EsdlError


def random_block(seed: int, n_pixels=12, n_time=150, n_features=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = rng.standard_normal((n_pixels, n_time, n_features)) * rng.uniform(
        0.5, 3, (n_pixels, 1, n_features)
    )
    block[:, 40:44] += 4.0  # a multivariate event
    block[2, rng.random(n_time) < 0.2, 1] = np.nan  # gaps: steps without a score
    block[3, 17] = np.nan
    block[5, :] = np.nan  # no data (ocean)
    block[6, 5:] = np.nan  # too short to score
    return block


@pytest.mark.parametrize("seed", [0, 1])
def test_raw_and_quantile_scores_match_the_per_pixel_reference(seed):
    block = random_block(seed)
    ref = reference_block(block)
    raw = anomaly_scores_block(block, quantiles=False)
    quant = anomaly_scores_block(block, quantiles=True, ensemble="mean", max_bytes=150 * 150 * 40 * 3)
    np.testing.assert_allclose(raw, ref[..., :5], rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(quant[..., :5], ref[..., 5:10], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(quant[..., 5], ref[..., 10], atol=1e-6, equal_nan=True)
    assert np.isnan(quant[5]).all() and np.isnan(quant[6]).all() and np.isnan(quant[3, 17]).all()
    assert np.isfinite(quant[0]).all()
    # the injected event scores at the top for every method at an untouched pixel
    assert (quant[0, 40:44, :5] >= 0.9).all()


def test_method_subsets_and_ensembles():
    block = random_block(3, n_pixels=7)
    ref = reference_block(block, ensemble_methods=("KDE", "KNN_Gamma"))
    got = anomaly_scores_block(
        block, ["KNN_Gamma", "KDE"], ensemble="mean", ensemble_methods=["KDE", "KNN_Gamma"]
    )
    np.testing.assert_allclose(got[..., 0], ref[..., 7], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got[..., 2], ref[..., 10], atol=1e-6, equal_nan=True)
    maxed = anomaly_scores_block(block, ["KDE", "T2"], ensemble="max")
    np.testing.assert_allclose(maxed[..., 2], np.fmax(ref[..., 5], ref[..., 9]), atol=1e-6, equal_nan=True)
    with pytest.raises(EsdlError, match="unknown score method 'LOF'"):
        anomaly_scores_block(block, ["LOF"])
    with pytest.raises(EsdlError, match="ensemble='vote' is not allowed"):
        anomaly_scores_block(block, ensemble="vote")


def test_quantile_scores_handle_ties_and_nan_like_the_reference():
    rng = np.random.default_rng(9)
    scores = np.round(rng.random((3, 80)), 1)  # many ties
    scores[1, ::7] = np.nan
    got = quantile_scores(scores, axis=1)
    for row, g in zip(scores, got, strict=True):
        ok = ~np.isnan(row)
        np.testing.assert_array_equal(g[ok], reference_quantiles(row[ok]))
        assert np.isnan(g[~ok]).all()


def test_ewma_and_embedding_follow_the_package():
    x = np.random.default_rng(2).standard_normal((30, 2))
    z = np.empty_like(x)
    z[0] = 0.15 * x[0]
    for t in range(1, 30):
        z[t] = 0.15 * x[t] + 0.85 * z[t - 1]
    np.testing.assert_allclose(ewma(x, 0.15, axis=0), z, rtol=1e-12)
    emb = time_delay_embedding(x, delay=2, dimension=3)
    assert emb.shape == (30, 6) and np.isnan(emb[:4, 2:]).any() and not np.isnan(emb[4:]).any()
    np.testing.assert_array_equal(emb[10], np.r_[x[10], x[8], x[6]])
    with pytest.raises(EsdlError, match="0 < lambda <= 1"):
        ewma(x, 0.0)


def test_cube_scores_are_lazy_and_equal_the_reference_on_features():
    time = esdc_time(2001, 2004)
    rng = np.random.default_rng(4)
    season = np.cos(2 * np.pi * np.arange(len(time)) / 46)[:, None, None]
    cube = xr.Dataset(
        {
            "a": (
                ("time", "lat", "lon"),
                (10 * season + rng.standard_normal((len(time), 2, 3))).astype(np.float32),
            ),
            "b": (
                ("time", "lat", "lon"),
                (1e6 * season + 1e5 * rng.standard_normal((len(time), 2, 3))).astype(np.float32),
            ),
        },
        coords={"time": time, "lat": [10.0, 20.0], "lon": [0.0, 10.0, 20.0]},
    ).chunk({"time": 46, "lat": 1})
    cube["a"][:, 1, 2] = np.nan
    features = anomaly_features(cube, ["a", "b"], ewma_lambda=0.5, cycle="median")
    scores = anomaly_scores(features)
    assert scores["ensemble"].chunks is not None and scores["KDE"].dims == ("time", "lat", "lon")
    feats = features.transpose("lat", "lon", "time", "variable").values.reshape(6, len(time), 2)
    # the features themselves: standardised anomalies against the median cycle, then EWMA
    x = cube["b"][:, 0, 1].values.astype(np.float64)
    steps = np.tile(np.arange(46), 4)
    anom = x - pd.Series(x).groupby(steps).median().to_numpy()[steps]
    np.testing.assert_allclose(
        feats[1, :, 1], ewma((anom - anom.mean()) / anom.std(), 0.5), rtol=1e-6, atol=1e-9
    )
    ref = reference_block(feats, ensemble_methods=("KDE", "REC", "KNN_Gamma"))
    got = np.stack(
        [scores[m].transpose("lat", "lon", "time").values.reshape(6, -1) for m in [*METHODS, "ensemble"]], -1
    )
    np.testing.assert_allclose(got, ref[..., 5:], atol=1e-6, equal_nan=True)
    assert np.isnan(got[5]).all()


def remove_msc(x: np.ndarray, npy: int) -> np.ndarray:
    """MultivariateAnomalies.jl's ``sMSC(datacube, cycle_length)`` (src/FeatureExtraction.jl), which calls
    ``removeMSC!(xin, xout, NpY, 1)``: per series, ``msc[imsc] += curval; nmsc[imsc] += 1`` over the
    non-NaN values with ``imsc`` cycling 1..NpY from the first step, ``msc = nmsc > 0 ? msc / nmsc : NaN``,
    then ``xout = xin - msc[imsc]``: the mean seasonal cycle (time is the first axis)."""
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        msc, nmsc = [0.0] * npy, [0] * npy
        for i, v in enumerate(x[:, j]):
            if not math.isnan(v):
                msc[i % npy] += v
                nmsc[i % npy] += 1
        msc = [m / c if c > 0 else math.nan for m, c in zip(msc, nmsc, strict=True)]
        for i in range(x.shape[0]):
            out[i, j] = x[i, j] - msc[i % npy]
    return out


def median_cycle(x: np.ndarray, cycle_length: int) -> np.ndarray:
    """MultivariateAnomalies.jl's ``get_MedianCycle!`` (src/FeatureExtraction.jl): the first
    ``complete_years * cycle_length`` steps are copied column-major into a ``cycle_length x complete_years``
    matrix; each row's median over its non-NaN values (NaN when there are none) is that step's cycle."""
    years = len(x) // cycle_length
    rows = x[: years * cycle_length].reshape(years, cycle_length).T  # row i: step i of every year
    out = np.empty(cycle_length)
    for i, row in enumerate(rows):
        ok = [v for v in row if not math.isnan(v)]
        out[i] = float(np.median(ok)) if ok else math.nan  # Statistics.median: mean of the middle two
    return out


def test_features_subtract_the_package_mean_seasonal_cycle_or_the_median_one():
    """The default is what MultivariateAnomalies.jl's ``sMSC`` computes (the mean, as ESDL.jl's
    ``removeMSC``); ``cycle="median"`` is its ``get_MedianCycle``. Whole years on the ESDC axis, which
    restarts on 1 January, so the package's step counter and the calendar step agree."""
    time = esdc_time(2001, 2004)  # 4 x 46 steps
    rng = np.random.default_rng(12)
    season = 5 * np.sin(2 * np.pi * np.arange(len(time)) / 46)[:, None, None]
    values = season + rng.standard_normal((len(time), 2, 2))
    values[50:53, 0, 0] += 9.0  # an event in one year: it moves the mean cycle, not the median
    values[rng.random(values.shape) < 0.1] = np.nan  # gaps, some steps of a year all missing
    values[[3, 49, 95, 141], 1, 1] = np.nan
    cube = xr.Dataset(
        {"a": (("time", "lat", "lon"), values)},
        coords={"time": time, "lat": [0.0, 10.0], "lon": [0.0, 10.0]},
    )
    series = values.reshape(len(time), 4)  # (time, pixel) in (lat, lon) order
    default = anomaly_features(cube, ["a"], standardize=False)
    median = anomaly_features(cube, ["a"], standardize=False, cycle="median")
    got_mean = default.transpose("time", "lat", "lon", "variable").values.reshape(len(time), 4)
    got_median = median.transpose("time", "lat", "lon", "variable").values.reshape(len(time), 4)
    np.testing.assert_allclose(got_mean, remove_msc(series, 46), rtol=1e-12, atol=1e-12, equal_nan=True)
    want = np.stack([series[:, p] - np.tile(median_cycle(series[:, p], 46), 4) for p in range(4)], 1)
    np.testing.assert_allclose(got_median, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert not np.allclose(got_mean[50:53, 0], got_median[50:53, 0])  # the two cycles differ
    assert np.isnan(got_mean[[3, 49, 95, 141], 3]).all() and np.isnan(got_median[[3, 49], 3]).all()
    assert default.attrs["long_name"] == "anomalies against the mean seasonal cycle"
    assert median.attrs["long_name"] == "anomalies against the median seasonal cycle"
    for bad in ("Median", "", None, 1, ["mean"]):
        with pytest.raises(EsdlError, match=r"cycle must be one of 'mean', 'median'; got"):
            anomaly_features(cube, ["a"], cycle=bad)


def test_ties_and_duplicates_follow_the_package_stable_order():
    rng = np.random.default_rng(8)
    block = np.round(rng.standard_normal((6, 120, 2)), 1)  # coarse values: many equal distances
    block[:, 60:90] = block[:, :1]  # 31 copies of the same point: more ties than the k-d tree's extras
    ref = reference_block(block)
    got = anomaly_scores_block(block, quantiles=False)
    np.testing.assert_allclose(got, ref[..., :5], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("case", "chunk", "panel"),
    [
        ("offset", 2**22, 2**17),
        ("integers", 2**22, 2**17),
        ("integers", 500, 64),
        ("wide", 2**22, 2**17),
        ("short", 2000, 2**17),  # two whole pixels per stacked matmul
        ("tiny", 2**22, 2**17),  # squared differences underflow: cdist's zeros decide
    ],
)
def test_nearest_neighbours_are_exactly_the_packages(monkeypatch, case, chunk, panel):
    """The float32 candidate search never loses a neighbour: KNN-Gamma equals the port bit for bit."""
    monkeypatch.setattr(extremes, "CHUNK_ENTRIES", chunk)  # several row chunks per pixel
    monkeypatch.setattr(extremes, "PANEL_PRODUCT", panel)  # one-row matmul panels
    rng = np.random.default_rng(11)
    if case == "offset":  # far from the origin, tiny spread: float32 alone could not rank these
        block = 1e6 + 1e-3 * rng.standard_normal((3, 200, 4))
    elif case == "integers":  # coarse values: many equal distances at the k-th neighbour
        block = rng.integers(0, 4, (3, 200, 3)).astype(float)
    elif case == "tiny":
        block = 1e-200 * rng.standard_normal((2, 60, 3))
    elif case == "short":  # many short series with ties
        block = rng.integers(0, 3, (7, 30, 3)).astype(float)
    else:  # many features, one huge outlier
        block = rng.standard_normal((2, 150, 24))
        block[:, 7] *= 1e4
    for k_perc in (0.05, 0.4):
        got = anomaly_scores_block(block, ["KNN_Gamma", "KNN_Delta"], k_perc=k_perc, quantiles=False)
        for p, pixel in enumerate(block):
            d = cdist(pixel, pixel)
            k = math.ceil(k_perc * len(pixel))
            masked = d.copy()
            np.fill_diagonal(masked, np.inf)
            ind = np.argsort(masked, axis=1, kind="stable")[:, :k]
            gamma = np.take_along_axis(d, ind, axis=1).mean(axis=1)
            delta = np.linalg.norm((pixel[:, None] - pixel[ind]).sum(axis=1) / k, axis=1)
            np.testing.assert_array_equal(got[p, :, 0], gamma)
            np.testing.assert_allclose(got[p, :, 1], delta, rtol=1e-12, atol=1e-12)


def test_default_ensemble_uses_the_computed_best_methods():
    """Without KDE (or REC) among the methods, the default ensemble combines what is computed."""
    time = esdc_time(2001, 2002)
    rng = np.random.default_rng(5)
    cube = xr.Dataset(
        {v: (("time", "lat", "lon"), rng.standard_normal((len(time), 2, 2))) for v in ("a", "b")},
        coords={"time": time, "lat": [0.0, 10.0], "lon": [0.0, 10.0]},
    )
    features = anomaly_features(cube, ["a", "b"])
    block = features.transpose("lat", "lon", "time", "variable").values.reshape(4, len(time), 2)
    scores = anomaly_scores(features, ["KNN_Gamma", "T2"])  # default ensemble: KNN_Gamma only
    expected = anomaly_scores_block(
        block, ["KNN_Gamma", "T2"], ensemble="mean", ensemble_methods=["KNN_Gamma"]
    )
    got = scores["ensemble"].transpose("lat", "lon", "time").values.reshape(4, -1)
    np.testing.assert_array_equal(got, expected[..., 2])
    np.testing.assert_array_equal(
        got, scores["KNN_Gamma"].transpose("lat", "lon", "time").values.reshape(4, -1)
    )
    only_t2 = anomaly_scores(features, ["T2"]).compute()  # none of the three: all methods (T2)
    np.testing.assert_array_equal(only_t2["ensemble"].values, only_t2["T2"].values)
    assert sorted(anomaly_scores(features, ["T2"], ensemble=None).data_vars) == ["T2"]
    with pytest.raises(EsdlError, match=r"ensemble_methods \['KDE'\] are not among the computed methods"):
        anomaly_scores(features, ["KNN_Gamma", "T2"], ensemble_methods=["KDE"])


def test_order_statistics_are_exact_with_ties_and_misleading_guesses():
    rng = np.random.default_rng(3)
    misleading = np.full(100_000, 5.0)
    misleading[: 100_000 // 2 + 10] = rng.random(100_000 // 2 + 10) * 1e-12  # a cliff at the median
    cases = {
        "uniform": rng.random(50_000),
        "heavy ties": np.round(rng.random(50_000), 2),
        "skewed": rng.standard_normal(50_000) ** 4,
        "cliff": misleading,
        "all equal": np.full(40_000, 2.0),
    }
    for name, c in cases.items():
        s = np.sort(c)
        for r in (0, 1, 12_345, c.size // 2, c.size - 2):
            want = (s[r], s[r + 1])
            assert extremes._order_statistics(c, r) == want, (name, r)
            for lo, hi in [(s[r] + 1.0, s[r] + 2.0), (-1.0, 0.0), (s[0], np.nextafter(s[-1], np.inf))]:
                assert kernels.order_statistics(c, r, r + 1, lo, hi) == want, (name, r, lo, hi)
        assert kernels.order_statistics(c, c.size - 1, c.size - 1, 0.0, 1.0) == (s[-1], s[-1])


def test_scores_are_identical_on_one_thread_and_on_several():
    block = random_block(7, n_pixels=24, n_time=120)[:, :100]
    block = block[~np.isnan(block).any(axis=(1, 2))]
    with dask.config.set({"esdl.threads": 1}):
        one = extremes.raw_scores(block, METHODS)
    with dask.config.set({"esdl.threads": 2}):
        two = extremes.raw_scores(block, METHODS)
    np.testing.assert_array_equal(one, two)
    ref = np.concatenate([reference_block(p[None])[:, :, :5] for p in block])
    np.testing.assert_allclose(one, ref, rtol=1e-9, atol=1e-12)
