"""Multivariate extreme events: features, anomaly scores and event scores per pixel time series.

Faithful to Flach et al. (2017, Earth Syst. Dynam. 8, 677-696) and the definitions in
MultivariateAnomalies.jl (``detectAnomalies``), computed for every pixel's ``time x feature`` matrix
``X`` of ``T`` valid steps, with ``D`` its Euclidean distance matrix:

- ``KDE``: ``1 - mean_j exp(-0.5 * D_ij / sigma**2)`` with ``sigma = median(D)`` over all ``T*T``
  entries (as in the package, the Gaussian kernel is applied to the distance ``D``, not ``D**2``);
- ``REC``: ``1 - #{j != i : D_ij < eps} / T``, the recurrence rate within ``eps = median(D)``;
- ``KNN_Gamma``: mean distance to the ``k = ceil(0.05 T)`` nearest neighbours, self excluded;
- ``KNN_Delta``: ``|| x_i - mean of its k nearest neighbours ||``;
- ``T2``: Hotelling's T2, ``(x_i - m)' Q^-1 (x_i - m)`` with the mean ``m`` and covariance ``Q`` of
  ``X``, inverted by SVD with eigenvalues ``+1e-10`` as in the package.

Quantile normalisation follows ``get_quantile_scores``: the 0, 0.01, ..., 1 quantiles of a pixel's
scores are thresholds and each score becomes the first level whose threshold it does not exceed; the
ensemble is the mean (median, max or min) of the methods' quantile scores.

Time steps where any feature is missing get no score (NaN) and are left out of the pixel's matrix.

How it is fast, exactly: pixels that miss the same steps are scored together (one gather, batched
T2 with one ``eigh``, batched quantile normalisation). The nearest neighbours are found without
sorting rows of the T x T distance matrix: float32 ranks from one matmul (in single-threaded BLAS
panels, at most ``CHUNK_ENTRIES`` at a time), a per-row bound on the k-th smallest from the minima
of 4k column groups, then exact float64 distances (computed as ``cdist`` does) of the few
candidates below the bound plus its rigorous rounding margin, sorted (ties broken by time index, as
the package's stable sort). KDE and REC use the symmetry of ``D``: the ``T (T-1) / 2`` pair
distances (compiled, bit for bit ``pdist``), the exact median of the full matrix from two order
statistics of that half (a random sample guesses a bracket; compiled counting passes narrow it to a
few dozen values, which are sorted), one ``exp`` over the pairs and compiled row sums -- half the
work of the square matrix, all in float64 (quantile levels hinge on exact ties). The compiled loops
are in :mod:`platform_lib.analysis.kernels`; an eager call splits the pixels over the cores.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> block = rng.standard_normal((2, 100, 3))       # 2 pixels, 100 steps, 3 features
>>> block[:, 50] += 6.0                            # one multivariate outlier at step 50
>>> scores = anomaly_scores_block(block, quantiles=False)
>>> scores.shape                                   # pixels, time, (5 methods)
(2, 100, 5)
>>> [bool(scores[0, 50, m] == scores[0, :, m].max()) for m in range(5)]  # step 50 scores highest
[True, True, True, True, True]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
import xarray as xr
from scipy.spatial.distance import pdist, squareform

from platform_lib.arguments import (
    cube_argument,
    flag_argument,
    names_argument,
    number_argument,
    text_argument,
)
from platform_lib.compute import (
    STEPS_PER_YEAR,
    as_variable_array,
    map_cube,
    seasonal_cycle_numpy,
    seasonal_step,
    split_over_threads,
)
from platform_lib.errors import EsdlError, allowed, short_repr

METHODS: tuple[str, ...] = ("KDE", "REC", "KNN_Gamma", "KNN_Delta", "T2")
BEST_METHODS: tuple[str, ...] = ("KDE", "REC", "KNN_Gamma")  # the default ensemble (Flach et al. 2017)
ENSEMBLES = ("mean", "median", "max", "min")
QUANTILE_LEVELS = np.arange(101) / 100.0  # Julia's 0.0:0.01:1.0, each level correctly rounded
#: seasonal cycles :func:`anomaly_features` can subtract; the default is MultivariateAnomalies.jl's
CYCLES = ("mean", "median")
DEFAULT_CYCLE = "mean"
MIN_STEPS = 10  # fewer valid time steps than this in a pixel: no scores
DEFAULT_SCORE_BYTES = 128 * 2**20  # working memory of one batch of pixels (points, neighbour lists)


# --- features ---------------------------------------------------------------------------------------


def ewma(x: np.ndarray, lam: float = 0.15, axis: int = -1) -> np.ndarray:
    """Exponentially weighted moving average along ``axis``: ``z_t = lam x_t + (1 - lam) z_(t-1)``.

    As MultivariateAnomalies.jl's ``EWMA`` (``z_1 = lam x_1``). A missing value gives NaN and leaves
    the running average untouched.

    >>> ewma(np.array([1.0, 1.0, np.nan, 1.0]), 0.5).tolist()
    [0.5, 0.75, nan, 0.875]
    """
    if not 0 < lam <= 1:
        raise EsdlError(f"ewma lambda={lam} is not allowed: 0 < lambda <= 1 (1 means no smoothing).")
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    out = np.empty_like(x)
    state = np.zeros(x.shape[1:])
    for t in range(x.shape[0]):
        ok = ~np.isnan(x[t])
        state = np.where(ok, lam * np.where(ok, x[t], 0.0) + (1.0 - lam) * state, state)
        out[t] = np.where(ok, state, np.nan)
    return np.moveaxis(out, 0, axis)


def time_delay_embedding(x: np.ndarray, delay: int, dimension: int = 3) -> np.ndarray:
    """Stack ``x`` (..., time, feature) with its copies lagged by ``delay, 2 delay, ...``: (..., time, feature * dimension).

    As MultivariateAnomalies.jl's ``TDE``; the first ``(dimension - 1) * delay`` steps, which have no
    complete history, are NaN instead of being cut off so the time axis is kept.

    >>> time_delay_embedding(np.arange(4.0)[:, None], delay=1, dimension=2).tolist()
    [[0.0, nan], [1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]
    """
    if delay < 1 or dimension < 1:
        raise EsdlError(
            f"time delay embedding needs delay >= 1 and dimension >= 1; got {delay}, {dimension}."
        )
    x = np.asarray(x, dtype=np.float64)
    parts = []
    for d in range(dimension):
        lag = d * delay
        shifted = np.full_like(x, np.nan)
        if lag < x.shape[-2]:
            shifted[..., lag:, :] = x[..., : x.shape[-2] - lag, :]
        parts.append(shifted)
    return np.concatenate(parts, axis=-1)


def _cycle_anomalies(
    x: np.ndarray, steps: np.ndarray, years: np.ndarray, n_steps: int, cycle: str
) -> np.ndarray:
    msc = seasonal_cycle_numpy(np.moveaxis(x, -2, -1), steps, years, n_steps, cycle)  # (..., feature, step)
    return x - np.moveaxis(msc[..., steps], -1, -2)


def _feature_kernel(
    block: np.ndarray,
    steps: np.ndarray,
    years: np.ndarray,
    steps_per_year: int,
    standardize: bool,
    ewma_lambda: float | None,
    embedding: tuple[int, int] | None,
    cycle: str = "mean",
) -> np.ndarray:
    x = _cycle_anomalies(np.asarray(block, dtype=np.float64), steps, years, steps_per_year, cycle)
    if standardize:
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (ocean) stay NaN
            mean = np.nanmean(x, axis=1, keepdims=True) if x.size else x
            std = np.nanstd(x, axis=1, keepdims=True) if x.size else x
            x = np.where(
                std > 0, (x - mean) / np.where(std > 0, std, 1.0), np.where(np.isnan(x), np.nan, 0.0)
            )
    if ewma_lambda is not None:
        x = ewma(x, ewma_lambda, axis=1)
    if embedding is not None:
        x = time_delay_embedding(x, *embedding)
    return x


def anomaly_features(
    cube: xr.Dataset | xr.DataArray,
    variables: Sequence[str] | None = None,
    *,
    standardize: bool = True,
    ewma_lambda: float | None = None,
    embedding: tuple[int, int] | None = None,
    steps_per_year: int = STEPS_PER_YEAR,
    cycle: Literal["mean", "median"] = DEFAULT_CYCLE,
) -> xr.DataArray:
    """Features for the scores: anomalies against each pixel's seasonal cycle (lazy).

    ``cycle`` is the seasonal cycle subtracted, per pixel, variable and step of the year (missing
    values left out): ``"mean"`` (the default) or ``"median"``. The default is what
    MultivariateAnomalies.jl does: its deseasonalisation ``sMSC`` is documented as "subtract the median
    seasonal cycle", but it calls ``removeMSC!``, which sums the non-NaN values of each step and divides
    by their count -- the mean seasonal cycle (the function's first commit calls it "fast version of
    fabian to remove the mean seasonal cycle"), as ESDL.jl's ``removeMSC`` does. The package's
    ``get_MedianCycle(s)`` only returns a median cycle; nothing in it subtracts one. ``"median"`` is
    the robust choice its documentation names: an event that fills a step in one year of few moves a
    mean cycle, not a median one.

    ``standardize`` divides each pixel's anomalies of each variable by their standard deviation (so
    variables in J m-2 and in degC weigh alike); ``ewma_lambda`` smooths them with an exponentially
    weighted moving average; ``embedding=(delay, dimension)`` appends lagged copies. The result has the
    loop dims, then ``time`` and ``variable`` (one entry per feature).

    >>> from platform_lib.demo import make_demo_cube
    >>> cube = make_demo_cube(resolution=10.0, years=(2001, 2003))
    >>> f = anomaly_features(cube, ["air_temperature_2m", "root_moisture"], embedding=(1, 2))
    >>> f.dims, f["variable"].values.tolist()
    (('lat', 'lon', 'time', 'variable'), ['air_temperature_2m', 'root_moisture', 'air_temperature_2m_lag1', 'root_moisture_lag1'])
    >>> f.attrs["long_name"]
    'anomalies against the mean seasonal cycle (standardised)'
    >>> anomaly_features(cube, ["root_moisture"], cycle="mode")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: cycle must be one of 'mean', 'median'; got 'mode'.
    """
    cycle = text_argument(cycle, "cycle", choices=CYCLES)
    stacked = as_variable_array(cube, variables)
    if "time" not in stacked.dims:
        raise EsdlError(f"the cube needs a 'time' dimension; it has: {list(map(str, stacked.dims))}.")
    names = [str(v) for v in stacked["variable"].values]
    n_out = len(names)
    if embedding is not None:
        delay, dimension = embedding
        names = names + [f"{n}_lag{d * delay}" for d in range(1, dimension) for n in names]
        n_out = len(names)
    steps = seasonal_step(stacked["time"], steps_per_year)
    years = stacked["time"].dt.year.values - int(stacked["time"].dt.year.min())
    return (
        map_cube(
            _feature_kernel,
            stacked,
            input_dims=("time", "variable"),
            output_dims=("time", "feature"),
            batched=True,
            output_sizes={"feature": n_out},
            kwargs={
                "steps": steps,
                "years": years,
                "steps_per_year": steps_per_year,
                "standardize": standardize,
                "ewma_lambda": ewma_lambda,
                "embedding": embedding,
                "cycle": cycle,
            },
            name="features",
            attrs={
                "long_name": f"anomalies against the {cycle} seasonal cycle"
                + (" (standardised)" if standardize else "")
            },
        )
        .rename({"feature": "variable"})
        .assign_coords(variable=names)
    )


# --- scores -----------------------------------------------------------------------------------------


def _check_methods(methods: Sequence[str], what: str = "methods") -> list[str]:
    methods = list(names_argument(methods, what, empty_ok=True))
    for m in methods:
        if m not in METHODS:
            raise EsdlError(f"unknown score method {m!r}; allowed: {allowed(METHODS)}.")
    if not methods or len(set(methods)) != len(methods):
        raise EsdlError(
            f"methods must be a non-empty list of distinct names from {allowed(METHODS)}; got {methods}."
        )
    return methods


def _check_ensemble(ensemble: object) -> None:
    if ensemble is not None and (not isinstance(ensemble, str) or ensemble not in ENSEMBLES):
        raise EsdlError(
            f"ensemble={short_repr(ensemble)} is not allowed; use one of {allowed(ENSEMBLES)} or None."
        )


def distance_matrices(x: np.ndarray) -> np.ndarray:
    """Euclidean distance matrices (batch, T, T) of ``x`` (batch, T, features).

    >>> distance_matrices(np.array([[[0.0, 0.0], [3.0, 4.0]]])).tolist()
    [[[0.0, 5.0], [5.0, 0.0]]]
    """
    return np.stack([squareform(pdist(p)) for p in x]) if len(x) else np.empty((0, x.shape[1], x.shape[1]))


@lru_cache(maxsize=8)
def _sample_index(size: int, samples: int) -> np.ndarray:
    """``samples`` random positions in ``range(size)``, sorted (fixed seed: the same every call)."""
    return np.sort(np.random.default_rng(0).integers(0, size, samples))


def _order_statistics(c: np.ndarray, r: int, samples: int = 2048) -> tuple[float, float]:
    """The ``r``-th and ``(r+1)``-th smallest values of ``c`` (float64), exactly, without sorting it.

    A random sample of ``samples`` values guesses a bracket (4 standard deviations of a sample
    quantile either side); compiled counting passes narrow it and copy out the few values left
    (:func:`platform_lib.analysis.kernels.order_statistics`).

    >>> c = np.random.default_rng(0).random(100_000)
    >>> _order_statistics(c, 4321) == tuple(np.sort(c)[[4321, 4322]])
    True
    """
    from platform_lib.analysis.kernels import order_statistics

    size = c.size
    r2 = min(r + 1, size - 1)
    if size <= 4 * samples:
        part = np.partition(c, [r, r2])
        return float(part[r]), float(part[r2])
    sample = c[_sample_index(size, samples)]
    q, margin = r * samples / size, 2.0 * math.sqrt(samples) + 2.0
    a, b = int(max(0.0, q - margin)), int(min(samples - 1.0, q + margin + 1.0))
    lo, hi = np.partition(sample, [a, b])[[a, b]]
    low, high = order_statistics(c, r, r2, lo, np.nextafter(hi, np.inf))
    return float(low), float(high)


def _full_median_from_condensed(c: np.ndarray, n: int) -> float:
    """Median of all ``n*n`` entries of the square distance matrix (``n`` zeros + each pair twice).

    In the sorted full matrix, position ``p < n`` is a zero on the diagonal and position ``p >= n`` is
    the ``(p - n) // 2``-th smallest pair distance, so two order statistics of the condensed vector
    (half the data) give the exact median.

    >>> from scipy.spatial.distance import pdist, squareform
    >>> x = np.random.default_rng(0).standard_normal((51, 3))
    >>> bool(_full_median_from_condensed(pdist(x), 51) == np.median(squareform(pdist(x))))
    True
    """
    lo, hi = (n * n - 1) // 2, n * n // 2
    r_lo, r_hi = (lo - n) // 2, (hi - n) // 2
    if r_lo < 0:  # tiny matrices (n < 3): sort the square matrix
        return float(np.median(squareform(c))) if c.size else 0.0
    low, nxt = _order_statistics(c, r_lo)
    return 0.5 * (low + (low if r_hi == r_lo else nxt))


def _density_scores(
    x: np.ndarray, methods: Sequence[str], pairs: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """KDE and REC of one complete pixel (T, features) from its condensed distances.

    The distance matrix is symmetric with a zero diagonal: the distances (compiled, bit for bit
    ``pdist``), their median, the kernel and the threshold test run over the ``T (T-1) / 2`` pairs
    only, in ``pairs`` (a reusable float64 buffer of that size) if given.
    """
    from platform_lib.analysis.kernels import pair_distances, pair_row_counts_below, pair_row_sums

    n = x.shape[0]
    size = n * (n - 1) // 2
    c = pairs[:size] if pairs is not None and pairs.size >= size else np.empty(size)
    pair_distances(x, c)
    sigma = _full_median_from_condensed(c, n)  # sigma = eps = median of all T*T distances
    out = {}
    if "REC" in methods:
        inside = np.empty(n, dtype=np.int64)
        pair_row_counts_below(c, n, sigma, inside)  # recurrences, self excluded
        out["REC"] = 1.0 - inside / n
    if "KDE" in methods:
        # identical time steps have identical scores in exact arithmetic; summed in different orders
        # they could differ in the last bit, and quantile levels hinge on exact ties: copy them over
        duplicates = n > 1 and c.min() == 0  # (exact duplicates have distance 0, and only they)
        # float64 throughout: quantile normalisation turns 1e-8 differences into whole 0.01 levels
        if sigma > 0:
            np.exp(np.multiply(c, -0.5 / sigma**2, out=c), out=c)  # the kernel, in place
        else:
            np.equal(c, 0.0, out=c, casting="unsafe")
        row_sums = np.empty(n)
        pair_row_sums(c, n, 1.0, row_sums)  # 1: the self term exp(0)
        if duplicates:
            _, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
            row_sums = row_sums[first[inverse.ravel()]]
        out["KDE"] = 1.0 - row_sums / n
    return out


PANEL_PRODUCT = 2**17  # rows x columns x features of one matmul: small enough for BLAS to use one thread
GROUPS_PER_NEIGHBOUR = 4  # column groups per neighbour sought (step 2 of _nearest_neighbours)
CHUNK_ENTRIES = 2**19  # float32 ranks held at once (2 MiB, about the L2 cache; best for T = 92-2000)


def _rank_operands(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 operands ``a`` (b, n, f+1), ``m`` (b, f+1, n) with ``a @ m = |x_j|^2 - 2 x_i . x_j``.

    For a fixed row ``i`` these ranks order the columns ``j`` as the squared distances do. Each pixel
    is centred and scaled by a power of two (exact) to ``|x| < 1`` first. Returns also the float64
    squared norms (b, n) of the scaled points, for the rounding-error bound, and each pixel's
    largest absolute centred value.
    """
    b, n, f = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    top = np.abs(centred).max(axis=(1, 2))
    scaled = centred * np.where(top > 0, np.ldexp(1.0, -np.frexp(top)[1]), 1.0)[:, None, None]
    nrm = np.einsum("pij,pij->pi", scaled, scaled)
    a = np.empty((b, n, f + 1), np.float32)
    a[..., :f] = scaled
    a[..., f] = 1.0
    m = np.empty((b, f + 1, n), np.float32)
    m[:, :f] = -2.0 * scaled.transpose(0, 2, 1)
    m[:, f] = nrm
    return a, m, nrm, top


def _nearest_neighbours(
    x: np.ndarray, k: int, with_index: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """k nearest neighbours (self excluded) of every step of every pixel: distances and indices (b, n, k).

    Exactly the package's ``knn_dists``: distances as scipy's ``cdist`` computes them, rows ordered by
    (distance, index) -- its stable ``sortperm`` -- without sorting whole rows. The rows of all
    pixels are handled alike, ``CHUNK_ENTRIES`` ranks at a time:

    1. float32 ranks ``|x_j|^2 - 2 x_i . x_j`` by matmul (``_rank_operands``), in products small
       enough that BLAS runs each on one thread (a threaded BLAS on tiny products mostly waits for
       cores that other work holds), with a rigorous bound ``e_i`` on their rounding error;
    2. an upper bound ``u_i`` on each row's k-th smallest: split the columns into ``4k`` strided
       groups, take each group's minimum and the k-th smallest of those (k distinct entries lie
       below it);
    3. candidates: entries with rank ``<= u_i + 2 e_i`` -- a superset of the true k nearest and of any
       ties with the k-th (about 1.1k per row on demo features);
    4. exact float64 distances of the candidates only, then a sort of each short candidate row
       (stable where two tie: candidates are in index order).
    """
    b, n, f = x.shape
    dist = np.empty((b * n, k))
    idx = np.empty((b * n, k), dtype=np.intp) if with_index else None
    groups = min(GROUPS_PER_NEIGHBOUR * k, n)
    a, m, nrm, top = _rank_operands(x)
    # step 3's bound, per row: float32 rounding of inputs, products and (f+1)-term sums, times 2
    margin = ((f + 4) * 2.0**-21 * (nrm + nrm.max(axis=1, keepdims=True))).ravel()
    columns = [np.ascontiguousarray(x[:, :, g]).ravel() for g in range(f)]  # (b * n,) each
    chunk = max(1, CHUNK_ENTRIES // n)
    if chunk >= n:
        chunk -= chunk % n  # whole pixels per chunk
    whole = n * n * (f + 1) <= PANEL_PRODUCT
    panel = max(1, PANEL_PRODUCT // (n * (f + 1)))
    ranks = np.empty((min(chunk, b * n), n), np.float32)
    for r0 in range(0, b * n, chunk):
        r1 = min(r0 + chunk, b * n)
        h = r1 - r0
        s = ranks[:h]
        if whole and chunk % n == 0:  # many small pixels: one stacked matmul
            p0, p1 = r0 // n, r1 // n
            np.matmul(a[p0:p1], m[p0:p1], out=s.reshape(p1 - p0, n, n))
        else:
            t0 = r0
            while t0 < r1:  # row panels, none across two pixels
                p, i0 = divmod(t0, n)
                t1 = min(t0 + panel, r1, (p + 1) * n)
                np.matmul(a[p, i0 : i0 + t1 - t0], m[p], out=s[t0 - r0 : t1 - r0])
                t0 = t1
        rows = np.arange(h)
        s.reshape(-1)[rows * n + (rows + r0) % n] = np.inf  # self is no candidate
        # 2: the minimum of each strided column group, then the k-th smallest of the minima
        low = s[:, :groups].copy()
        full, rest = divmod(n, groups)
        for g in range(1, full):
            np.minimum(low, s[:, g * groups : (g + 1) * groups], out=low)
        if rest:
            np.minimum(low[:, :rest], s[:, full * groups :], out=low[:, :rest])
        bound = np.partition(low, k - 1, axis=1)[:, k - 1].astype(np.float64) + margin[r0:r1]
        limit = np.nextafter(bound.astype(np.float32), np.float32(np.inf))  # round up, never down
        # 3: the candidates, row by row in index order
        flat = np.flatnonzero(s <= limit[:, None])
        starts = np.searchsorted(flat, np.arange(h + 1) * n)
        counts = np.diff(starts)
        width = int(counts.max())
        row = np.repeat(rows, counts)
        col = flat - row * n
        here = row + r0  # global row: pixel * n + step
        there = here - here % n + col
        # 4: exact distances, summed over features in order as cdist does
        diff = columns[0][here] - columns[0][there]
        sq = diff * diff
        for g in range(1, f):
            diff = columns[g][here] - columns[g][there]
            sq += diff * diff
        slot = np.arange(flat.size) - starts[row] + row * width
        cand = np.full(h * width, np.inf)
        cand[slot] = np.sqrt(sq)
        cand = cand.reshape(h, width)
        if idx is None:  # distances only: sorted values (the same whichever of tied entries)
            cand.sort(axis=1)
            dist[r0:r1] = cand[:, :k]
            continue
        cand_idx = np.zeros(h * width, np.intp)
        cand_idx[slot] = col
        order = np.argsort(cand, axis=1)
        ranked = np.take_along_axis(cand, order[:, : k + 1], axis=1)
        tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)  # within the k, or at the k-th
        if tied.any():  # candidates are in index order: a stable sort breaks ties by index
            order[tied] = np.argsort(cand[tied], axis=1, kind="stable")
        order = order[:, :k]
        dist[r0:r1] = np.take_along_axis(cand, order, axis=1)
        idx[r0:r1] = np.take_along_axis(cand_idx.reshape(h, width), order, axis=1)
    dist = dist.reshape(b, n, k)
    idx = idx.reshape(b, n, k) if idx is not None else None
    # values so tiny or huge that cdist's squares under- or overflow: its distances no longer follow
    # the true ones, which the candidates are chosen by -- sort its matrix instead
    for p in np.flatnonzero((top > 0) & ((top < 2.0**-460) | (top > 2.0**460))):
        d = distance_matrices(x[p : p + 1])[0]
        d.reshape(-1)[:: n + 1] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        dist[p] = np.take_along_axis(d, order, axis=1)
        if idx is not None:
            idx[p] = order
    return dist, idx


def raw_scores(x: np.ndarray, methods: Sequence[str] = METHODS, k_perc: float = 0.05) -> np.ndarray:
    """Scores (batch, T, len(methods)) of complete matrices ``x`` (batch, T, features), no NaN allowed.

    >>> x = np.array([[[0.0], [0.1], [0.2], [5.0]]])   # 4 steps, 1 feature; the last is far away
    >>> raw_scores(x, ["KNN_Gamma", "REC"]).round(3).tolist()
    [[[0.1, 0.75], [0.1, 0.5], [0.1, 0.75], [4.8, 1.0]]]
    """
    methods = _check_methods(methods)
    x = np.asarray(x, dtype=np.float64)
    b, n, f = x.shape
    out = np.empty((b, n, len(methods)))
    density = [m for m in ("KDE", "REC") if m in methods]
    if density:

        def density_scores(start: int, stop: int) -> None:
            pairs = np.empty(n * (n - 1) // 2)  # one pixel's pair distances, reused: no page faults
            for p in range(start, stop):  # O(T^2) per pixel, compiled or in NumPy: cache-sized work
                for name, values in _density_scores(x[p], density, pairs).items():
                    out[p, :, methods.index(name)] = values

        split_over_threads(density_scores, b, min_per_thread=8)  # on all cores when called eagerly
    if "KNN_Gamma" in methods or "KNN_Delta" in methods:
        k = math.ceil(k_perc * n)
        if not 1 <= k <= n - 1:
            raise EsdlError(
                f"k = ceil({k_perc} * {n}) = {k} nearest neighbours is not possible with {n} steps."
            )
        with_index = "KNN_Delta" in methods

        def neighbour_scores(start: int, stop: int) -> None:
            dist, idx = _nearest_neighbours(x[start:stop], k, with_index=with_index)
            if "KNN_Gamma" in methods:
                out[start:stop, :, methods.index("KNN_Gamma")] = dist.mean(axis=2)
            if with_index:
                offset = np.empty((n, f))
                for p in range(stop - start):  # as the package: sum of x_i - x_j over the neighbours, / k
                    for g in range(f):
                        column = x[start + p, :, g]
                        offset[:, g] = (column[:, None] - column[idx[p]]).sum(axis=1) / k
                    out[start + p, :, methods.index("KNN_Delta")] = np.linalg.norm(offset, axis=1)

        split_over_threads(neighbour_scores, b, min_per_thread=8)  # on all cores when called eagerly
    if "T2" in methods:
        centred = x - x.mean(axis=1, keepdims=True)
        cov = np.matmul(np.swapaxes(centred, 1, 2), centred) / max(n - 1, 1)
        w, u = np.linalg.eigh(cov)  # batched; Q is symmetric, so its SVD is its eigendecomposition
        proj = np.matmul(centred, u)
        out[..., methods.index("T2")] = (proj**2 / (np.abs(w) + 1e-10)[:, None, :]).sum(axis=2)
    return out


def quantile_scores(scores: np.ndarray, axis: int = 1) -> np.ndarray:
    """Quantile-normalise ``scores`` along ``axis`` as MultivariateAnomalies.jl's ``get_quantile_scores``.

    Thresholds are the 0, 0.01, ..., 1 quantiles of the scores; a score ``s`` becomes the first level
    whose threshold is ``>= s``. NaN stays NaN.

    >>> quantile_scores(np.arange(101.0)[None], axis=1)[0, [0, 1, 50, 100]].tolist()
    [0.0, 0.01, 0.5, 1.0]
    """
    s = np.moveaxis(np.asarray(scores, dtype=np.float64), axis, -1)
    out = np.full(s.shape, np.nan)
    valid = ~np.isnan(s)
    if valid.all():
        thresholds = np.moveaxis(np.quantile(s, QUANTILE_LEVELS, axis=-1), 0, -1)  # (..., 101)
        below = (s[..., :, None] > thresholds[..., None, :]).sum(axis=-1)
        out = QUANTILE_LEVELS[np.minimum(below, len(QUANTILE_LEVELS) - 1)]
    else:
        flat_s, flat_out = s.reshape(-1, s.shape[-1]), out.reshape(-1, s.shape[-1])
        for i in range(flat_s.shape[0]):
            ok = ~np.isnan(flat_s[i])
            if ok.any():
                flat_out[i, ok] = quantile_scores(flat_s[i, ok][None], axis=1)[0]
    return np.moveaxis(out, -1, axis)


def _ensemble_index(
    methods: list[str], ensemble: str | None, ensemble_methods: Sequence[str] | None
) -> list[int]:
    if ensemble is None or not ensemble_methods:
        return list(range(len(methods)))
    chosen = _check_methods(ensemble_methods)
    missing = [m for m in chosen if m not in methods]
    if missing:
        raise EsdlError(
            f"ensemble_methods {missing} are not among the computed methods {methods}; add them or pass ensemble_methods=None."
        )
    return [methods.index(m) for m in chosen]


def _combine(q: np.ndarray, how: str) -> np.ndarray:
    return {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min}[how](q, axis=-1)


def anomaly_scores_block(
    block: np.ndarray,
    methods: Sequence[str] = METHODS,
    *,
    k_perc: float = 0.05,
    quantiles: bool = True,
    ensemble: Literal["mean", "median", "max", "min"] | None = None,
    ensemble_methods: Sequence[str] | None = None,
    max_bytes: int = DEFAULT_SCORE_BYTES,
) -> np.ndarray:
    """Scores of every pixel of ``block`` (pixels, time, features) -> (pixels, time, n_out).

    ``n_out`` is ``len(methods)``, plus one last column with the ensemble when ``ensemble`` is given.
    Steps with a missing feature are left out of their pixel's matrix and score NaN; pixels with fewer
    than 10 complete steps score NaN. Pixels that miss the same steps are scored together in batches of
    at most ``max_bytes`` of working memory.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((3, 40, 2)); x[1, 5] = np.nan
    >>> s = anomaly_scores_block(x, ["KDE", "KNN_Gamma"], ensemble="mean")
    >>> s.shape, bool(np.isnan(s[1, 5]).all()), float(np.nanmax(s))
    ((3, 40, 3), True, 1.0)
    """
    methods = _check_methods(methods)
    _check_ensemble(ensemble)
    ens_idx = _ensemble_index(methods, ensemble, ensemble_methods)
    block = np.asarray(block, dtype=np.float64)
    if block.ndim != 3:
        raise EsdlError(f"expected a (pixels, time, features) block, got shape {block.shape}.")
    p, t, _ = block.shape
    n_out = len(methods) + (ensemble is not None)
    out = np.full((p, t, n_out), np.nan)
    valid = ~np.isnan(block).any(axis=2)
    usable = valid.sum(axis=1) >= MIN_STEPS
    if not usable.any():
        return out
    patterns, group = np.unique(np.packbits(valid[usable], axis=1), axis=0, return_inverse=True)
    pixels = np.flatnonzero(usable)
    for g in range(len(patterns)):
        members = pixels[group.ravel() == g]
        rows = np.flatnonzero(valid[members[0]])
        n = rows.size
        per_pixel = 8 * n * (block.shape[2] + 1) + 24 * n * (math.ceil(k_perc * n) + 1)
        batch = max(1, int(max_bytes // per_pixel))  # points, neighbour distances and indices of a batch
        for start in range(0, members.size, batch):
            chunk = members[start : start + batch]
            x = block[np.ix_(chunk, rows)]
            s = raw_scores(x, methods, k_perc)
            q = quantile_scores(s, axis=1) if (quantiles or ensemble) else s
            res = q if quantiles else s
            if ensemble is not None:
                res = np.concatenate([res, _combine(q[..., ens_idx], ensemble)[..., None]], axis=2)
            out[np.ix_(chunk, rows)] = res
    return out


def anomaly_scores(
    features: xr.DataArray | xr.Dataset,
    methods: Sequence[str] = METHODS,
    *,
    variables: Sequence[str] | None = None,
    k_perc: float = 0.05,
    quantiles: bool = True,
    ensemble: Literal["mean", "median", "max", "min"] | None = "mean",
    ensemble_methods: Sequence[str] | None = BEST_METHODS,
) -> xr.Dataset:
    """Anomaly scores per pixel time series (lazy): one ``(time, lat, lon)`` variable per method.

    ``features``: usually :func:`anomaly_features` (dims ``..., time, variable``); a Dataset of raw
    variables is stacked as is. With ``quantiles=True`` each score is quantile-normalised per pixel; the
    ``ensemble`` variable combines the quantile scores of ``ensemble_methods``: by default those of
    KDE, REC and KNN-Gamma (the best performers in Flach et al. 2017) that are among ``methods``, or
    all ``methods`` when none of the three is; None uses all methods; a list naming a method that is
    not computed is an error.

    >>> from platform_lib.demo import make_demo_cube
    >>> cube = make_demo_cube(resolution=10.0, years=(2001, 2003))
    >>> scores = anomaly_scores(anomaly_features(cube, ["air_temperature_2m", "root_moisture"]))
    >>> sorted(scores.data_vars), scores["ensemble"].dims
    (['KDE', 'KNN_Delta', 'KNN_Gamma', 'REC', 'T2', 'ensemble'], ('time', 'lat', 'lon'))
    """
    features = cube_argument(features, "features")
    methods = _check_methods(methods)
    _check_ensemble(ensemble)
    k_perc = number_argument(k_perc, "k_perc", low=0, high=1, low_open=True, high_open=True)
    quantiles = flag_argument(quantiles, "quantiles")
    if ensemble_methods is not None and ensemble_methods is not BEST_METHODS:
        ensemble_methods = _check_methods(ensemble_methods, "ensemble_methods")
    if ensemble_methods is BEST_METHODS:  # the default: the best performers that are computed
        ensemble_methods = [m for m in BEST_METHODS if m in methods] or None
    _ensemble_index(methods, ensemble, ensemble_methods)  # fail now, not inside a dask task
    stacked = as_variable_array(features, variables)
    if "time" not in stacked.dims:
        raise EsdlError(f"the features need a 'time' dimension; they have: {list(map(str, stacked.dims))}.")
    n_steps = stacked.sizes["time"]
    if {"KNN_Gamma", "KNN_Delta"} & set(methods) and not 1 <= math.ceil(k_perc * n_steps) <= n_steps - 1:
        raise EsdlError(
            f"k_perc={k_perc:g} of {n_steps} time steps gives k = {math.ceil(k_perc * n_steps)} nearest"
            f" neighbours; the KNN scores need 1 <= k <= {n_steps - 1}."
        )
    names = methods + (["ensemble"] if ensemble is not None else [])
    scored = map_cube(
        anomaly_scores_block,
        stacked,
        input_dims=("time", "variable"),
        output_dims=("time", "score"),
        batched=True,
        output_coords={"score": names},
        kwargs={
            "methods": methods,
            "k_perc": k_perc,
            "quantiles": quantiles,
            "ensemble": ensemble,
            "ensemble_methods": list(ensemble_methods) if ensemble_methods and ensemble else None,
        },
        name="score",
        attrs={},
    )
    loop = [d for d in stacked.dims if d not in ("time", "variable")]
    ds = scored.transpose("score", "time", *loop).to_dataset("score")
    for name in names:
        ds[name].attrs = {
            "long_name": f"{name} anomaly score"
            + (" (quantile-normalised per pixel)" if quantiles or name == "ensemble" else ""),
            "units": "1",
            "quantile_normalised": int(bool(quantiles or name == "ensemble")),
            "features": ", ".join(map(str, stacked["variable"].values)),
            "references": "Flach et al. (2017), Earth Syst. Dynam. 8, 677-696, doi:10.5194/esd-8-677-2017",
        }
    return ds


__all__ = [
    "BEST_METHODS",
    "CYCLES",
    "DEFAULT_CYCLE",
    "ENSEMBLES",
    "METHODS",
    "QUANTILE_LEVELS",
    "anomaly_features",
    "anomaly_scores",
    "anomaly_scores_block",
    "distance_matrices",
    "ewma",
    "quantile_scores",
    "raw_scores",
    "time_delay_embedding",
]
