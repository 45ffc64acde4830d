"""Intrinsic dimension of the land surface per pixel (Mahecha, Gans et al. 2020, ESD 11, 201-234, case 2).

For each pixel the ``time x variable`` matrix is gap-filled (mean seasonal cycle, then linear
interpolation); a pixel that still has a gap gives NaN. Each column is z-scored (a column with zero
variance becomes a column of ones), a PCA by SVD keeps the components up to ``retained_variance``
(0.999) of the variance, and the intrinsic dimension is the first ``k`` whose cumulative share of the
*retained* variance is strictly greater than ``explained_variance`` (0.95).

Optionally the series are first split into time scales (linear trend removed, then FFT bands:
long-term below the annual band, the annual band within +-10 % of the first three harmonics, and the
fast oscillations -- every other frequency), giving one map per scale.

The fast path works on whole blocks of pixels: the squared singular values of the z-scored matrix
``Z`` are the eigenvalues of its Gram matrix ``Z.T @ Z``, which one compiled pass over the data builds
for every pixel where it lies in memory and a compiled symmetric eigensolver solves
(:mod:`platform_lib.analysis.kernels`); an eager call splits the pixels over the cores.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> signals = rng.standard_normal((3, 200, 2))            # 3 pixels, 200 steps, 2 independent signals
>>> block = signals @ rng.standard_normal((2, 6))         # mixed into 6 variables
>>> intrinsic_dimension_block(block).tolist()
[2.0, 2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from platform_lib.arguments import flag_argument, number_argument
from platform_lib.compute import (
    STEPS_PER_YEAR,
    as_variable_array,
    gap_fill_numpy,
    map_cube,
    seasonal_step,
    split_over_threads,
)
from platform_lib.errors import EsdlError

TIME_SCALES = ("long_term", "annual", "fast")
_FILL_BATCH = 256  # pixels gap-filled at a time (float64 copies: 14 MB at 552 x 12)


def _shifted_grams(x: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrices (n, var, var) and column sums (n, var) of ``x[p] - x[p, 0]`` for ``p`` in ``pixels``."""
    from platform_lib.analysis.kernels import shifted_gram

    n_var = x.shape[2]
    raw, sums = np.empty((pixels.size, n_var, n_var)), np.empty((pixels.size, n_var))
    if pixels.size:
        shifted_gram(x, pixels.astype(np.intp, copy=False), raw, sums)
    return raw, sums


def _zscore_from_raw_gram(raw: np.ndarray, sums: np.ndarray, n: int) -> np.ndarray:
    """Gram matrices ``Z.T @ Z`` (..., var, var) of the z-scored columns, from ``raw`` (..., var, var)
    and ``sums`` (..., var): the Gram matrix and sums over ``n`` steps of the columns shifted by their
    first value (:func:`_shifted_grams`).

    ``Z`` is never built: the centred Gram matrix is ``G - s s' / T`` (the shift keeps this free of
    cancellation), then scaled by ``1 / (s_v s_w)``. A zero-variance column adds nothing: the reference
    (``sufficient_dimensions`` of Mahecha, Gans et al. 2020) makes it a column of ones, and its PCA centres
    the columns again, so that the ones become zeros -- a row and column of zeros here.

    >>> x = np.array([[[1.0, 5.0], [3.0, 5.0]]])          # one pixel, 2 steps: z = [-1, 1] and a constant
    >>> _zscore_from_raw_gram(*_shifted_grams(x, np.array([0])), 2).tolist()
    [[[2.0, 0.0], [0.0, 0.0]]]
    """
    gram = raw - sums[..., :, None] * sums[..., None, :] / n
    var = np.diagonal(gram, axis1=-2, axis2=-1) / n  # population variance (ddof 0), as np.std
    flat = var == 0
    scale = 1.0 / np.sqrt(np.where(flat, 1.0, var))
    gram *= scale[..., :, None] * scale[..., None, :]
    gram[np.broadcast_to(flat[..., :, None] | flat[..., None, :], gram.shape)] = 0.0
    return gram


def _descending_eigenvalues(gram: np.ndarray) -> np.ndarray:
    """Eigenvalues (n, var), largest first, of symmetric matrices ``gram`` (n, var, var): compiled
    (:func:`platform_lib.analysis.kernels.symmetric_eigenvalues`), LAPACK for any that did not converge."""
    from platform_lib.analysis.kernels import symmetric_eigenvalues

    lam = np.empty(gram.shape[:2])
    failed = symmetric_eigenvalues(np.ascontiguousarray(gram), lam)
    if failed.any():
        lam[failed] = np.linalg.eigvalsh(gram[failed])
    return lam[:, ::-1]


def dimension_from_variances(
    variances: np.ndarray, explained_variance: float = 0.95, retained_variance: float = 0.999
) -> np.ndarray:
    """The intrinsic dimension from component variances (..., n) sorted in descending order.

    Components are kept while the cumulative share of the total variance has not yet exceeded
    ``retained_variance``; the answer is the first ``k`` whose cumulative share of the retained variance
    is strictly greater than ``explained_variance``.

    No variance at all (every variable constant) is dimension 0.

    >>> dimension_from_variances(np.array([[6.0, 3.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])).tolist()
    [3, 1, 0]
    """
    lam = np.clip(np.asarray(variances, dtype=np.float64), 0.0, None)
    n = lam.shape[-1]
    total = lam.sum(axis=-1, keepdims=True)
    share = np.cumsum(lam, axis=-1) / np.where(total > 0, total, 1.0)
    above = share > retained_variance
    n_keep = np.where(above.any(axis=-1), above.argmax(axis=-1) + 1, n)
    kept = np.where(np.arange(n) < n_keep[..., None], lam, 0.0)
    kept_total = kept.sum(axis=-1, keepdims=True)
    kept_share = np.cumsum(kept, axis=-1) / np.where(kept_total > 0, kept_total, 1.0)
    over = kept_share > explained_variance
    dimension = np.where(over.any(axis=-1), over.argmax(axis=-1) + 1, n_keep)
    return np.where(total[..., 0] > 0, dimension, 0)


def intrinsic_dimension_block(
    block: np.ndarray, explained_variance: float = 0.95, retained_variance: float = 0.999
) -> np.ndarray:
    """Intrinsic dimension of each pixel of ``block`` (pixels, time, variable), NaN where data are missing.

    Batched: the Gram matrices of all pixels from one compiled pass, then their eigenvalues
    (:func:`_pixel_dimensions`, as for a cube).

    >>> import numpy as np
    >>> intrinsic_dimension_block(np.full((1, 10, 3), np.nan)).tolist()
    [nan]
    """
    block = np.asarray(block)
    if block.ndim != 3:
        raise EsdlError(f"expected a (pixels, time, variable) block, got shape {block.shape}.")
    return _pixel_dimensions(block, np.arange(block.shape[0]), explained_variance, retained_variance, None)


def _band_index(length: int, period_steps: float) -> int:
    """The FFT bin (0-based) of a period, as ESDL.jl's ``tscale2ind``: ``round(l / b + 1) - 1`` with
    Julia's rounding (to nearest, ties to even: numpy's ``rint``)."""
    return int(np.rint(length / period_steps + 1.0)) - 1


def decompose_time_scales(x: np.ndarray, steps_per_year: int = STEPS_PER_YEAR) -> np.ndarray:
    """Split series ``x`` (..., time) into (..., 3, time): long-term, annual and fast components.

    ESDL.jl's ``filterTSFFT`` (src/TSDecomposition.jl), which the intrinsic-dimension study used: the
    least-squares line is removed first (upstream's first output, "Trend"; not returned here, as the
    study's time scales are the other three); in the FFT of the rest, the annual band of harmonic
    ``j`` (1, 2, 3) is the bins from period ``1.1 / j`` to ``0.9 / j`` years, i.e. +-10 % in *period*,
    each bin ``round(n / period + 1)`` in upstream's 1-based numbering, rounded to nearest with ties
    to even; the long-term band is the bins above the mean and below the first annual bin; the fast
    scale is every other bin (the mean's too). The three add up to the detrended series.

    Where the harmonics' bands share a bin (series shorter than about 76 steps, under two years at 8
    days), upstream copies the bin to the annual band once, then again from the already emptied
    spectrum, so that bin is lost from every scale; here it stays in the annual band. Under half a year
    upstream fails (the mean's bin has no mirror); here the mean is never annual.

    >>> import numpy as np
    >>> t = np.arange(46 * 10) - (46 * 10 - 1) / 2             # 10 years, centred
    >>> x = 0.01 * t + np.cos(2 * np.pi * t / 46) + 0.5 * np.cos(2 * np.pi * t / 4.6)  # trend, annual, fast
    >>> [round(float(np.abs(p).max()), 2) for p in decompose_time_scales(x)]
    [0.0, 1.0, 0.5]
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    xm = x.mean(axis=-1, keepdims=True)
    slope = ((x - xm) * t).sum(axis=-1, keepdims=True) / (t**2).sum() if n > 1 else 0.0 * xm
    spec = np.fft.rfft(x - xm - slope * t, axis=-1)  # bin k stands for k and its mirror n - k
    bins = np.arange(spec.shape[-1])
    annual = np.zeros(bins.size, bool)
    for harmonic in (1, 2, 3):
        low = max(_band_index(n, steps_per_year * 1.1 / harmonic), 1)  # never the mean (under half a year)
        high = _band_index(n, steps_per_year * 0.9 / harmonic)
        annual |= (bins >= low) & (bins <= high)
    long_term = (bins >= 1) & (bins < _band_index(n, steps_per_year * 1.1)) & ~annual
    fast = ~(long_term | annual)
    parts = [np.fft.irfft(spec * band, n=n, axis=-1) for band in (long_term, annual, fast)]
    return np.stack(parts, axis=-2)


def _dimension_kernel(
    block: np.ndarray,
    steps: np.ndarray,
    years: np.ndarray,
    explained_variance: float,
    retained_variance: float,
    time_scales: bool,
    fill_gaps: bool,
    steps_per_year: int,
) -> np.ndarray:
    """(pixels, time, variable) -> (pixels,) or (pixels, 3) with time scales.

    ``block`` may be a strided view of a time-major cube: pixels that cannot have an answer (a variable
    with no data at all, e.g. the ocean; without gap filling, any NaN) are found on that view, and
    only the others are read (:func:`_pixel_dimensions`, split over the cores when called eagerly;
    with time scales, gathered ``_FILL_BATCH`` at a time and decomposed).
    """
    n_out = len(TIME_SCALES) if time_scales else 1
    out = np.full((block.shape[0], n_out), np.nan)
    if fill_gaps:  # a variable with no data at all cannot be filled (the ocean in a land variable)
        candidates = ~np.isnan(block).all(axis=1).any(axis=1)
    else:  # a NaN anywhere gives NaN: the first step rules out most; the rest is checked per batch
        candidates = ~np.isnan(block[:, 0, :]).any(axis=1)
    idx = np.flatnonzero(candidates)
    if not time_scales:
        fill = (steps, years, steps_per_year) if fill_gaps else None

        def dimensions(start: int, stop: int) -> None:
            part = idx[start:stop]
            out[part, 0] = _pixel_dimensions(block, part, explained_variance, retained_variance, fill)

        split_over_threads(dimensions, idx.size)  # on all cores when called eagerly
        return out[:, 0]
    gather = _FILL_BATCH  # pixels gathered (copied pixel-major) at a time
    for start in range(0, idx.size, gather):
        part = idx[start : start + gather]
        x = block[part]  # pixel-major copy of these pixels only
        gappy = np.isnan(x).any(axis=(1, 2))
        if gappy.any():
            if not fill_gaps:
                part, x = part[~gappy], x[~gappy]
            else:  # gap_fill_numpy works along the last axis
                x = np.asarray(x, dtype=np.float64)
                filled = gap_fill_numpy(np.moveaxis(x[gappy], 1, -1), steps, years, steps_per_year)
                x[gappy] = np.moveaxis(filled, -1, 1)
        ok = ~np.isnan(x).any(axis=(1, 2))
        if ok.any():
            scales = decompose_time_scales(np.moveaxis(x[ok], 1, -1), steps_per_year)  # (p, var, 3, time)
            for i in range(n_out):
                out[part[ok], i] = intrinsic_dimension_block(
                    np.moveaxis(scales[:, :, i, :], 1, -1), explained_variance, retained_variance
                )
    return out


def _pixel_dimensions(
    block: np.ndarray,
    idx: np.ndarray,
    explained_variance: float,
    retained_variance: float,
    fill: tuple[np.ndarray, np.ndarray, int] | None,
) -> np.ndarray:
    """Intrinsic dimension of the pixels ``idx`` of ``block`` (pixels, time, variable), NaN where a gap is left.

    ``block`` may be pixel-major or a strided view of a time-major cube (how the ESDC "ts" chunks lie in
    memory): the compiled pass (:func:`_shifted_grams`) reads each pixel's values where they are, so no
    pixel-major copy of the cube is made. A pixel with a gap has a NaN column sum; with ``fill`` (steps, years,
    steps per year), those pixels are gathered and gap-filled, ``_FILL_BATCH`` at a time, and passed
    again.
    """
    n_time = block.shape[1]
    out = np.full(idx.size, np.nan)
    if not idx.size:
        return out
    raw, sums = _shifted_grams(block, idx)
    if fill is not None:
        missing = np.flatnonzero(np.isnan(sums).any(axis=1))
        for start in range(0, missing.size, _FILL_BATCH):
            part = missing[start : start + _FILL_BATCH]
            x = np.asarray(block[idx[part]], dtype=np.float64)  # (m, time, variable)
            filled = np.moveaxis(gap_fill_numpy(np.moveaxis(x, 1, -1), *fill), -1, 1)  # along time
            raw[part], sums[part] = _shifted_grams(filled, np.arange(part.size))
    ok = ~np.isnan(sums).any(axis=1)  # a gap left anywhere in a pixel makes its column sum NaN
    if ok.any():
        gram = _zscore_from_raw_gram(raw[ok], sums[ok], n_time)
        lam = _descending_eigenvalues(gram)  # squared singular values of z
        out[ok] = dimension_from_variances(lam, explained_variance, retained_variance)
    return out


def intrinsic_dimension(
    cube: xr.Dataset | xr.DataArray,
    variables: Sequence[str] | None = None,
    explained_variance: float = 0.95,
    *,
    retained_variance: float = 0.999,
    time_scales: bool = False,
    gap_fill: bool = True,
    steps_per_year: int = STEPS_PER_YEAR,
) -> xr.DataArray:
    """Map of the intrinsic dimension of ``variables`` (lazy; computed block by block with dask).

    Returns ``(lat, lon)`` (all loop dims of the cube), or ``(scale, lat, lon)`` with
    ``time_scales=True`` (scales ``long_term``, ``annual``, ``fast``). NaN where a pixel has a gap that
    gap filling cannot close (e.g. a land variable over the ocean).

    >>> from platform_lib.demo import make_demo_cube
    >>> cube = make_demo_cube(resolution=10.0, years=(2001, 2004))
    >>> dim = intrinsic_dimension(cube, ["air_temperature_2m", "radiation_era5", "root_moisture", "kndvi"])
    >>> dim.dims, int(dim.max()) <= 4, bool(dim.isnull().any())  # NaN over the ocean
    (('lat', 'lon'), True, True)
    """
    explained_variance = number_argument(
        explained_variance, "explained_variance", low=0, high=1, low_open=True, high_open=True
    )
    retained_variance = number_argument(retained_variance, "retained_variance", low=0, high=1, low_open=True)
    time_scales = flag_argument(time_scales, "time_scales")
    gap_fill = flag_argument(gap_fill, "gap_fill")
    steps_per_year = number_argument(steps_per_year, "steps_per_year", low=1, high=366, integer=True)
    stacked = as_variable_array(cube, variables)
    if "time" not in stacked.dims:
        raise EsdlError(f"the cube needs a 'time' dimension; it has: {list(map(str, stacked.dims))}.")
    if stacked.sizes["variable"] < 2:
        raise EsdlError("the intrinsic dimension needs at least 2 variables.")
    steps = (
        seasonal_step(stacked["time"], steps_per_year) if gap_fill else np.zeros(stacked.sizes["time"], int)
    )
    years = stacked["time"].dt.year.values - int(stacked["time"].dt.year.min()) if gap_fill else steps
    kwargs = {
        "steps": steps,
        "years": years,
        "explained_variance": explained_variance,
        "retained_variance": retained_variance,
        "time_scales": time_scales,
        "fill_gaps": gap_fill,
        "steps_per_year": steps_per_year,
    }
    attrs = {
        "long_name": "intrinsic dimension",
        "units": "1",
        "variables": ", ".join(map(str, stacked["variable"].values)),
        "explained_variance": explained_variance,
        "retained_variance": retained_variance,
        "references": "Mahecha, Gans et al. (2020), Earth Syst. Dynam. 11, 201-234, doi:10.5194/esd-11-201-2020",
    }
    result = map_cube(
        _dimension_kernel,
        stacked,
        input_dims=("time", "variable"),
        output_dims=("scale",) if time_scales else (),
        batched=True,
        output_coords={"scale": list(TIME_SCALES)} if time_scales else None,
        kwargs=kwargs,
        name="intrinsic_dimension",
        attrs=attrs,
        contiguous=False,  # the kernel gathers only the pixels that can have an answer
    )
    if time_scales:
        result = result.transpose("scale", ...)
    return result


__all__ = [
    "TIME_SCALES",
    "decompose_time_scales",
    "dimension_from_variances",
    "intrinsic_dimension",
    "intrinsic_dimension_block",
]
