"""The batched intrinsic dimension against a per-pixel SVD reference and known answers."""

from __future__ import annotations

import os
import threading

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from analysis_reference import esdc_time, reference_dimension, reference_gap_fill, reference_scales
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA

from platform_lib.analysis import (
    TIME_SCALES,
    decompose_time_scales,
    intrinsic_dimension,
    intrinsic_dimension_block,
    kernels,
)
from platform_lib.compute import kernel_threads
from platform_lib.errors import EsdlError


def sklearn_dimension(matrix: np.ndarray, explained: float = 0.95) -> float:
    """The same with scikit-learn's PCA (it centres again, a no-op for z-scored columns)."""
    z = (matrix - matrix.mean(axis=0)) / matrix.std(axis=0)
    pca = PCA(n_components=0.999, svd_solver="full").fit(z)
    share = np.cumsum(pca.explained_variance_) / pca.explained_variance_.sum()
    return float(np.argmax(share > explained) + 1)


def random_block(n_pixels: int, n_time: int, n_var: int, seed: int) -> np.ndarray:
    """Pixels with different numbers of latent signals, noise levels and variable scales."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_pixels, n_time, n_var))
    for p in range(n_pixels):
        k = rng.integers(1, n_var + 1)
        mix = rng.standard_normal((k, n_var)) * rng.uniform(0.2, 3.0, size=(k, 1))
        signals = rng.standard_normal((n_time, k))
        noise = rng.uniform(1e-3, 0.5) * rng.standard_normal((n_time, n_var))
        out[p] = (signals @ mix + noise) * rng.uniform(0.01, 100.0, size=n_var) + rng.uniform(
            -50, 50, size=n_var
        )
    return out


def test_a_constant_variable_adds_no_dimension():
    """Two redundant variables and one that never changes (bare soil, ice): one dimension, as in the
    paper's code, where the constant's column of ones is centred away by the PCA (issue 17)."""
    t = np.linspace(0, 20, 230)
    signal = np.sin(t) + 0.1 * np.cos(3 * t)
    block = np.stack([signal, 2 * signal + 1, np.full_like(t, 4.0)], axis=-1)[None]
    assert intrinsic_dimension_block(block).tolist() == [1.0] == [reference_dimension(block[0])]
    assert intrinsic_dimension_block(np.full((1, 230, 3), 4.0)).tolist() == [0.0]  # nothing varies


def test_batched_dimension_matches_the_per_pixel_svd_reference_on_random_data():
    block = random_block(300, 230, 6, seed=1)
    block[7, :, 2] = 4.0  # a zero-variance column: no variance after the PCA's centring
    block[8, 5, 1] = np.nan  # a gap: NaN
    got = intrinsic_dimension_block(block)
    ref = np.array([reference_dimension(m) for m in block])
    np.testing.assert_array_equal(got, ref)
    assert np.isnan(got[8]) and len(set(ref[~np.isnan(ref)])) >= 4  # the test covers many answers
    for p in range(0, 300, 10):
        if p not in (7, 8):
            assert got[p] == sklearn_dimension(block[p])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_k_independent_signals_have_dimension_k(k):
    rng = np.random.default_rng(k)
    signals = rng.standard_normal((5, 400, k))  # 5 pixels
    copies = 12 // k  # each signal measured by 12/k variables, with their own scale and tiny noise
    block = np.concatenate([signals * rng.uniform(0.5, 5.0) for _ in range(copies)], axis=2)
    block += 1e-4 * rng.standard_normal(block.shape)
    assert intrinsic_dimension_block(block).tolist() == [float(k)] * 5


def cube_from_block(block: np.ndarray, n_lat: int, n_lon: int, time: pd.DatetimeIndex) -> xr.Dataset:
    data = block.reshape(n_lat, n_lon, len(time), -1)
    return xr.Dataset(
        {f"v{i}": (("lat", "lon", "time"), data[..., i].astype(np.float32)) for i in range(data.shape[-1])},
        coords={"lat": np.arange(n_lat) + 0.5, "lon": np.arange(n_lon) + 0.5, "time": time},
    ).transpose("time", "lat", "lon")


def test_cube_dimension_is_lazy_gap_filled_and_matches_the_reference():
    time = esdc_time(2001, 2004)
    block = random_block(4 * 5, len(time), 5, seed=4)
    rng = np.random.default_rng(5)
    block[rng.random(block.shape) < 0.05] = np.nan  # scattered gaps: filled
    block[3, :, 1] = np.nan  # a variable with no data at one pixel: stays NaN
    cube = cube_from_block(block, 4, 5, time).chunk({"time": 46, "lat": 2, "lon": 5})
    dim = intrinsic_dimension(cube)
    assert dim.chunks is not None and dim.dims == ("lat", "lon")
    assert "Mahecha" in dim.attrs["references"]
    got = dim.values.ravel()
    steps = np.tile(np.arange(46), 4)
    stored = block.astype(np.float32).astype(np.float64)
    for p in range(block.shape[0]):
        filled = np.stack([reference_gap_fill(stored[p, :, v], steps) for v in range(5)], axis=1)
        assert got[p] == reference_dimension(filled) or (np.isnan(got[p]) and p == 3), p


def test_time_scale_decomposition_matches_a_per_series_fft_and_adds_up():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 46 * 6)).cumsum(axis=1)
    got = decompose_time_scales(x)
    for i in range(7):
        trend, *scales = reference_scales(x[i])  # ESDL.jl's filterTSFFT, line by line
        np.testing.assert_allclose(got[i], scales, atol=1e-9)
        np.testing.assert_allclose(got[i].sum(axis=0), x[i] - trend, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(26, 3000), steps_per_year=st.sampled_from([46, 12, 52, 365]), seed=st.integers(0, 2**16))
def test_time_scales_follow_esdl_filter_ts_fft_at_any_length(n, steps_per_year, seed):
    """Every length upstream can split (from half a year of 8-day steps), with its bin rounding: long-term
    and fast as upstream; annual as upstream plus any bin upstream loses where two harmonics' bands meet
    (lengths up to 75 at 46 steps a year), so the three always add up to the detrended series."""
    assume(n >= 0.55 * steps_per_year * 1.1)  # upstream's first annual bin is above the mean's
    x = np.random.default_rng(seed).standard_normal(n).cumsum()
    trend, long_term, annual, fast = reference_scales(x, annfreq=steps_per_year)
    lost = (x - trend) - (long_term + annual + fast)
    got = decompose_time_scales(x, steps_per_year)
    np.testing.assert_allclose(got[0], long_term, atol=1e-8)
    np.testing.assert_allclose(got[1], annual + lost, atol=1e-8)
    np.testing.assert_allclose(got[2], fast, atol=1e-8)
    np.testing.assert_allclose(got.sum(axis=0), x - trend, atol=1e-8)


def test_bands_are_ten_percent_in_period_with_upstreams_rounding():
    """A 4-year 8-daily series (n = 184): in frequency +-10 % would give bin 4 +- 0.4 for the annual
    cycle; in period, 1.1 and 0.9 years are bins round(184 / 50.6 + 1) - 1 = 4 and round(184 / 41.4 + 1) - 1
    = 4 (and 7-9, 11-13 for the next harmonics): a cosine in bin 9 is annual (2.25 cycles a year: fast
    by +-10 % in frequency), one in bin 10 is fast, one in bin 3 long-term."""
    t = np.arange(184) - 183 / 2  # even about the middle: no linear trend to remove
    for k, scale in ((4, 1), (9, 1), (10, 2), (3, 0)):
        parts = decompose_time_scales(np.cos(2 * np.pi * k * t / 184))
        assert np.abs(parts[scale]).max() > 0.99 and np.abs(np.delete(parts, scale, axis=0)).max() < 1e-9, k


def test_time_scales_give_one_map_per_scale_with_the_built_in_dimensions():
    time = esdc_time(2001, 2010)
    n = len(time)
    t = np.arange(n)
    rng = np.random.default_rng(7)
    slow = np.convolve(rng.standard_normal(n + 200), np.ones(200) / 200, "valid")[:n]  # below 0.9 / year
    block = np.empty((2, n, 4))
    for p in range(2):
        for v in range(4):
            phase = v * np.pi / 3
            block[p, :, v] = (
                (v + 1) * slow * 20
                + (1 + v) * np.cos(2 * np.pi * t / 46 + phase)
                + 0.3 * np.convolve(rng.standard_normal(n + 2), [1, 1, 1], "valid")  # fast, independent
            )
    cube = cube_from_block(block, 1, 2, time)
    dims = intrinsic_dimension(cube, time_scales=True)
    assert dims.dims == ("scale", "lat", "lon") and dims["scale"].values.tolist() == list(TIME_SCALES)
    assert dims.sel(scale="annual").values.ravel().tolist() == [2.0, 2.0]  # cos and sin
    assert dims.sel(scale="fast").values.ravel().tolist() == [4.0, 4.0]
    for p in range(2):
        parts = np.stack(
            [reference_scales(block[p, :, v].astype(np.float32).astype(float)) for v in range(4)]
        )
        expected = [reference_dimension(parts[:, s, :].T) for s in (1, 2, 3)]  # after upstream's trend
        assert dims.values[:, 0, p].tolist() == expected


def test_clear_errors():
    cube = cube_from_block(random_block(2, 46, 3, seed=0), 1, 2, esdc_time(2001, 2001))
    with pytest.raises(EsdlError, match=r"explained_variance must be a number above 0 and below 1"):
        intrinsic_dimension(cube, explained_variance=95)
    with pytest.raises(EsdlError, match="at least 2 variables"):
        intrinsic_dimension(cube, ["v0"])
    with pytest.raises(EsdlError, match="no variable 'v9'"):
        intrinsic_dimension(cube, ["v0", "v9"])


def test_time_major_cube_without_gap_filling_matches_the_reference_pixel_by_pixel():
    """The kernel reads the time-major block in place: ocean, late gaps and flat columns included."""
    time = esdc_time(2001, 2003)
    block = random_block(6 * 8, len(time), 7, seed=11)
    block[:12] = np.nan  # ocean: ruled out at the first step
    block[20, 100, 3] = np.nan  # a late gap: found from the column sums
    block[21, 0, 0] = np.nan  # a gap at the first step
    block[30, :, 5] = 2.5  # a zero-variance column
    cube = cube_from_block(block, 6, 8, time)  # numpy, (time, lat, lon) in memory
    got = intrinsic_dimension(cube, gap_fill=False).values.ravel()
    stored = block.astype(np.float32)
    ref = np.array([reference_dimension(stored[p].astype(np.float64)) for p in range(block.shape[0])])
    np.testing.assert_array_equal(got, ref)
    assert np.isnan(got[[0, 11, 20, 21]]).all() and not np.isnan(got[12:20]).any() and got[30] >= 1


@pytest.mark.parametrize("n_var", [2, 5, 12])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_gram_pass_matches_numpy_in_both_layouts(n_var, dtype):
    """The one pass over the data: pixel-major and time-major blocks, any number of variables."""
    rng = np.random.default_rng(n_var)
    x = (rng.standard_normal((30, 50, n_var)) * 10 + 280).astype(dtype)
    x[3, 7, 1] = np.nan
    d = x.astype(np.float64) - x[:, :1].astype(np.float64)
    want_gram, want_sums = np.matmul(np.swapaxes(d, 1, 2), d), d.sum(axis=1)
    time_major = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, 0)), 0, 1)  # a strided view
    pixels = np.array([0, 3, 5, 29])
    for block in (x, time_major):
        gram, sums = np.empty((4, n_var, n_var)), np.empty((4, n_var))
        kernels.shifted_gram(block, pixels, gram, sums)
        np.testing.assert_allclose(gram, want_gram[pixels], rtol=1e-12)
        np.testing.assert_allclose(sums, want_sums[pixels], rtol=1e-12, atol=1e-9)
        assert np.isnan(sums[1, 1]) and not np.isnan(np.delete(sums, 1, axis=0)).any()


def test_an_eager_map_is_split_over_threads_with_identical_results():
    time = esdc_time(2001, 2002)
    block = random_block(24 * 30, len(time), 5, seed=5)
    block[:100] = np.nan  # some ocean
    cube = cube_from_block(block, 24, 30, time)
    assert kernel_threads(620) == min(2, len(os.sched_getaffinity(0)))  # the main thread: all cores
    with dask.config.set({"esdl.threads": 2}):
        two = intrinsic_dimension(cube, gap_fill=False).values
    with dask.config.set({"esdl.threads": 1}):
        one = intrinsic_dimension(cube, gap_fill=False).values
    np.testing.assert_array_equal(one, two)
    seen = []
    worker = threading.Thread(target=lambda: seen.append(kernel_threads(10**6)))
    worker.start()
    worker.join()
    assert seen == [1]  # dask's and distributed's worker threads already keep the cores busy


@pytest.mark.parametrize("k", [1, 2, 3, 5, 12, 13])
def test_compiled_eigenvalues_match_lapack(k):
    rng = np.random.default_rng(k)
    general = rng.standard_normal((100, k, k))
    points = rng.standard_normal((100, 50, k)) * rng.uniform(0.01, 100.0, (100, 1, k))
    low = rng.standard_normal((100, k, 2))
    cases = [
        general + np.swapaxes(general, 1, 2),  # indefinite
        np.swapaxes(points, 1, 2) @ points,  # Gram matrices, badly scaled columns
        low @ np.swapaxes(low, 1, 2),  # rank 2
        np.stack([np.diag(rng.random(k)) for _ in range(5)]),  # already diagonal
        np.zeros((3, k, k)),
        np.stack([np.eye(k)] * 3),  # one eigenvalue, k times
        np.full((2, k, k), 3.0),  # rank 1
    ]
    for matrices in cases:
        got = np.empty(matrices.shape[:2])
        assert not kernels.symmetric_eigenvalues(matrices, got).any()
        want = np.linalg.eigvalsh(matrices)
        norm = np.abs(want).max(axis=1, keepdims=True)
        assert (np.abs(got - want) <= 1e-14 * norm + 1e-300).all()
