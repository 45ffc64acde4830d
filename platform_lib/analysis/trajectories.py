"""Low-dimensional trajectories of the land surface (Kraemer et al. 2020, Biogeosciences 17, 2397-2424).

Each variable is standardised globally with ``cos(latitude)``-weighted means and standard deviations,
the weighted covariance (a correlation matrix) is built from per-chunk sums, and every (time, pixel)
is projected onto its principal components: the *PC cube*. Per pixel, the mean seasonal cycle of
the PCs is the *trajectory*; its amplitude and centre, and the trends of annual means and annual
amplitudes (Theil-Sen slopes, Yue-Wang autocorrelation-aware Mann-Kendall test) follow.

Missing values: a (time, pixel) row with any variable missing is *dropped* from the statistics
(complete cases; its PCs are NaN). Filling would put values into the covariance that no sensor
saw; a caller who wants filled rows runs :func:`platform_lib.compute.gap_fill` first.

>>> import numpy as np, xarray as xr
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(40, 3, 4))
>>> ds = xr.Dataset({"a": (("time", "lat", "lon"), a), "b": (("time", "lat", "lon"), 2 * a + 0.1 * rng.normal(size=a.shape))},
...                 coords={"lat": [-10.0, 0.0, 10.0]})
>>> pca = weighted_pca(ds)
>>> round(float(pca["explained_variance_ratio"][0]), 3)
0.999
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import norm

from platform_lib.arguments import cube_argument, flag_argument, number_argument, text_argument
from platform_lib.compute import STEPS_PER_YEAR, as_variable_array, seasonal_cycle_numpy, seasonal_step
from platform_lib.errors import EsdlError

__all__ = ["mann_kendall", "pc_cube", "pc_trajectories", "theil_sen", "trajectory_trends", "weighted_pca"]


def _lat_weights(arr: xr.DataArray, lat: str | None) -> xr.DataArray:
    if lat is None:
        return xr.DataArray(1.0)
    if lat not in arr.coords:
        raise EsdlError(
            f"the cube has no {lat!r} coordinate to weight by cos(latitude); it has: {list(arr.coords)}."
        )
    return np.cos(np.deg2rad(arr[lat].astype(np.float64)))


#: rows converted to float64 at a time inside a block: temporaries of a few MiB, not a block's worth
SLAB_ROWS = 1 << 16


def _block_sums(x: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """One block's complete rows as (sum w, weighted mean, sum w (x - mean)(x - mean)^T), float64."""
    k = x.shape[-1]
    x2 = np.asarray(x).reshape(-1, k)
    w2 = np.broadcast_to(w, x.shape[:-1]).reshape(-1)
    out: tuple[float, np.ndarray, np.ndarray] = (0.0, np.zeros(k), np.zeros((k, k)))
    for start in range(0, x2.shape[0], SLAB_ROWS):
        xs = x2[start : start + SLAB_ROWS].astype(np.float64)
        ws = np.asarray(w2[start : start + SLAB_ROWS], dtype=np.float64)
        ok = np.isfinite(xs).all(axis=1) & (ws > 0)
        xs, ws = xs[ok], ws[ok]
        total = float(ws.sum())
        if total == 0:
            continue
        mean = ws @ xs / total
        d = xs - mean
        out = _merge(out, (total, mean, (d * ws[:, None]).T @ d))
    return out


def _merge(a: tuple[float, np.ndarray, np.ndarray], b: tuple[float, np.ndarray, np.ndarray]) -> tuple:
    """Chan, Golub & LeVeque's pairwise update: the sums of two blocks as one, without cancellation."""
    wa, ma, ca = a
    wb, mb, cb = b
    w = wa + wb
    if w == 0:
        return a
    delta = mb - ma
    return w, ma + delta * (wb / w), ca + cb + np.outer(delta, delta) * (wa * wb / w)


def _tree_merge(parts: list) -> tuple:
    while len(parts) > 1:
        parts = [
            _merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def weighted_pca(
    cube: xr.Dataset | xr.DataArray,
    variables: Sequence[str] | None = None,
    *,
    lat: str | None = "lat",
    standardise: bool = True,
) -> xr.Dataset:
    """Weighted PCA of a cube's variables over all (time, pixel) rows, ``cos(lat)``-weighted.

    ``lat=None`` weighs every row alike; ``standardise=False`` keeps the covariance (not correlation).

    Means, standard deviations and the covariance come from per-chunk sums in float64 (``sum w``,
    the block's weighted mean and ``sum w (x - mean)(x - mean)^T``, merged pairwise as Chan, Golub &
    LeVeque 1979, free of the cancellation of ``E[x x^T] - m m^T``), so a dask-backed cube is read
    once, block by block, never loaded whole. Rows with any variable missing are dropped. Eigenvectors are signed so that
    their largest loading is positive. Returns ``loadings`` (variable, component),
    ``explained_variance`` and ``explained_variance_ratio`` (component), ``mean`` and ``std``
    (variable) and ``weight_sum``.

    >>> import numpy as np, xarray as xr
    >>> x = np.random.default_rng(1).normal(size=(50, 2, 2, 2))
    >>> da = xr.DataArray(x, dims=("time", "lat", "lon", "variable"), coords={"lat": [0.0, 60.0], "variable": ["p", "q"]})
    >>> weighted_pca(da)["loadings"].dims
    ('variable', 'component')
    """
    import dask

    if lat is not None:
        text_argument(lat, "lat")
    standardise = flag_argument(standardise, "standardise")
    arr = as_variable_array(cube_argument(cube, "cube"), variables)
    w = _lat_weights(arr, lat)
    dims = [d for d in arr.dims if d != "variable"]
    w = w.broadcast_like(arr.isel(variable=0)).transpose(*dims)
    names = [str(v) for v in arr["variable"].values]
    k = len(names)
    if arr.chunks is not None:
        data = arr.data.rechunk({arr.ndim - 1: -1})
        wd = w.chunk(dict(zip(dims, data.chunks[:-1], strict=True))).data
        parts = [
            dask.delayed(_block_sums)(xb, wb)
            for xb, wb in zip(data.to_delayed().ravel(), wd.to_delayed().ravel(), strict=True)
        ]
        while len(parts) > 1:  # merged in a tree inside the graph: a few (k, k) sums in flight
            parts = [dask.delayed(_tree_merge)(parts[i : i + 8]) for i in range(0, len(parts), 8)]
        total, mean, m2 = parts[0].compute()
    else:
        total, mean, m2 = _block_sums(arr.values, w.values)
    if not total > 0:
        raise EsdlError("no complete (time, pixel) row with all variables present and a positive weight.")
    cov = m2 / total
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    if standardise:
        flat_var = std <= 1e-7 * np.maximum(np.abs(mean), 1.0)  # zero up to rounding
        if flat_var.any():
            flat = [n for n, f in zip(names, flat_var, strict=True) if f]
            raise EsdlError(f"variables {flat} are constant: they cannot be standardised.")
        cov = cov / np.outer(std, std)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    vals, vecs = np.clip(vals[order], 0, None), vecs[:, order]
    flip = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(flip == 0, 1, flip)
    comp = np.arange(1, k + 1)
    return xr.Dataset(
        {
            "loadings": (("variable", "component"), vecs),
            "explained_variance": ("component", vals),
            "explained_variance_ratio": ("component", vals / vals.sum()),
            "mean": ("variable", mean),
            "std": ("variable", std if standardise else np.ones(k)),
            "weight_sum": ((), total),
        },
        coords={"variable": names, "component": comp},
    )


def pc_cube(
    cube: xr.Dataset | xr.DataArray, pca: xr.Dataset, n_components: int | None = None
) -> xr.DataArray:
    """Project every (time, pixel) of ``cube`` onto the components of ``pca`` (lazy for dask cubes).

    A row with any variable missing gets NaN PCs.

    >>> import numpy as np, xarray as xr
    >>> x = np.random.default_rng(2).normal(size=(30, 2, 3, 3))
    >>> da = xr.DataArray(x, dims=("time", "lat", "lon", "variable"), coords={"lat": [0.0, 45.0], "variable": list("abc")})
    >>> pc_cube(da, weighted_pca(da), n_components=2).sizes["component"]
    2
    """
    cube_argument(pca, "pca", arrays=False)
    for need in ("loadings", "mean", "std"):
        if need not in pca:
            raise EsdlError(
                f"pca must be weighted_pca's result with {need!r}; it has: {list(pca.data_vars)}."
            )
    arr = as_variable_array(cube_argument(cube, "cube"), list(pca["variable"].values))
    k = pca.sizes["component"]
    n = (
        k
        if n_components is None
        else number_argument(n_components, "n_components", low=1, high=k, integer=True)
    )
    z = (arr - pca["mean"]) / pca["std"]
    out = xr.dot(z, pca["loadings"].isel(component=slice(0, n)), dim="variable")
    return out.rename("pc")


def _pair_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, k=1)


def theil_sen(y: np.ndarray, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Theil-Sen slope and intercept of ``y`` (..., n) against ``x`` (n,), vectorised over leading axes.

    Slope = median of pairwise slopes; intercept = median(y) - slope * median(x), as
    ``scipy.stats.theilslopes``. Series with NaN give NaN.

    >>> theil_sen(np.array([[1.0, 2.0, 3.0, 4.0, 20.0]]))[0].tolist()  # the outlier does not pull
    [1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    x = np.arange(n, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    if x.shape != (n,):
        raise EsdlError(f"x must have the length of y's last axis ({n}); got shape {x.shape}.")
    i, j = _pair_index(n)
    dx = x[j] - x[i]
    keep = dx != 0
    slopes = (y[..., j[keep]] - y[..., i[keep]]) / dx[keep]
    slope = np.median(slopes, axis=-1)
    intercept = np.median(y, axis=-1) - slope * np.median(x)
    return slope, intercept


def mann_kendall(y: np.ndarray) -> dict[str, np.ndarray]:
    """Yue-Wang (2004) autocorrelation-aware Mann-Kendall test of ``y`` (..., n), vectorised.

    S and its tie-corrected variance as in Mann-Kendall; the variance is multiplied by
    ``1 + 2 sum_k (1 - k/n) r_k`` over all lags of the Sen-detrended series' autocorrelation ``r_k``
    (the ``pymannkendall.yue_wang_modification_test`` convention). Returns ``s``, ``var_s``, ``z``,
    ``p`` (two-sided) and ``slope`` (Theil-Sen, per step). Series with NaN give NaN.

    >>> r = mann_kendall(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 6.0, 8.0]))
    >>> float(r["s"]), float(r["slope"])
    (26.0, 1.0)
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    if n < 3:
        raise EsdlError(f"mann_kendall needs at least 3 values per series; got {n}.")
    i, j = _pair_index(n)
    s = np.sign(y[..., j] - y[..., i]).sum(axis=-1)
    ties = (y[..., :, None] == y[..., None, :]).sum(axis=-1).astype(np.float64)  # group size per element
    var_s = (n * (n - 1) * (2 * n + 5) - ((ties - 1) * (2 * ties + 5)).sum(axis=-1)) / 18.0
    slope, _ = theil_sen(y)
    det = y - np.arange(1, n + 1) * slope[..., None]
    d = det - det.mean(axis=-1, keepdims=True)
    acov = np.stack([(d[..., : n - k] * d[..., k:]).sum(axis=-1) for k in range(n)], axis=-1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = acov / acov[..., :1]
        lags = np.arange(1, n)
        var_s = var_s * (1 + 2 * ((1 - lags / n) * acf[..., 1:]).sum(axis=-1))
        z = np.where(s > 0, (s - 1) / np.sqrt(var_s), np.where(s < 0, (s + 1) / np.sqrt(var_s), 0.0))
    bad = np.isnan(y).any(axis=-1)
    z = np.where(bad, np.nan, z)
    p = 2 * (1 - norm.cdf(np.abs(z)))
    return {
        "s": np.where(bad, np.nan, s),
        "var_s": np.where(bad, np.nan, var_s),
        "z": z,
        "p": p,
        "slope": slope,
    }


def pc_trajectories(pcs: xr.DataArray, steps_per_year: int = STEPS_PER_YEAR) -> xr.Dataset:
    """Per pixel in PC space: the mean seasonal cycle (``trajectory``), its ``amplitude`` and
    ``centre``; per year the ``annual_mean`` and ``annual_amplitude``.

    ``amplitude`` is max - min of the mean seasonal cycle per component, ``centre`` its mean;
    ``annual_amplitude`` is max - min of each year's values. Lazy for dask-backed PCs (each block
    holds whole series of a few pixels: dask's default block size), eager otherwise.

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.DatetimeIndex([d for d in pd.date_range("2001-01-01", "2002-12-31", freq="D") if (d.day_of_year - 1) % 8 == 0])
    >>> pcs = xr.DataArray(np.sin(2 * np.pi * t.day_of_year.to_numpy() / 366)[:, None], dims=("time", "component"), coords={"time": t})
    >>> round(float(pc_trajectories(pcs)["amplitude"][0]), 2)
    2.0
    """
    cube_argument(pcs, "pcs")
    if "time" not in pcs.dims:
        raise EsdlError(f"pcs must have a 'time' dimension; it has {pcs.dims}.")
    steps = seasonal_step(pcs["time"], steps_per_year)
    years_all = pd.DatetimeIndex(pcs["time"].values).year.to_numpy()
    years = np.unique(years_all)
    yidx = np.searchsorted(years, years_all)
    if pcs.chunks is not None:  # whole series per block, pixels split to dask's default block size
        pcs = pcs.chunk({d: (-1 if d == "time" else "auto") for d in pcs.dims})
    out = xr.apply_ufunc(
        _trajectory_block,
        pcs,
        input_core_dims=[["time"]],
        output_core_dims=[["step"], [], [], ["year"], ["year"]],
        kwargs={"steps": steps, "yidx": yidx, "n_years": years.size, "steps_per_year": steps_per_year},
        dask="parallelized",
        output_dtypes=[np.float64] * 5,
        dask_gufunc_kwargs={"output_sizes": {"step": steps_per_year, "year": years.size}},
    )
    names = ("trajectory", "amplitude", "centre", "annual_mean", "annual_amplitude")
    ds = xr.Dataset(dict(zip(names, out, strict=True)))
    return ds.assign_coords(step=np.arange(steps_per_year), year=years)


def _trajectory_block(
    x: np.ndarray, steps: np.ndarray, yidx: np.ndarray, n_years: int, steps_per_year: int
) -> tuple[np.ndarray, ...]:
    x = np.asarray(x, dtype=np.float64)
    cycle = seasonal_cycle_numpy(x, steps, yidx, steps_per_year, "mean")
    grid = np.full((*x.shape[:-1], n_years, steps_per_year), np.nan)
    grid[..., yidx, steps] = x
    amplitude, centre = _range_and_mean(cycle)
    ann_amp, ann_mean = _range_and_mean(grid)
    return cycle, amplitude, centre, ann_mean, ann_amp


def _range_and_mean(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``nanmax - nanmin`` and ``nanmean`` over the last axis, NaN where a row has no value, without
    warnings. Not ``np.nanmax`` inside ``warnings.catch_warnings()``: that context swaps the process's
    warning filters, so under dask's threads one block leaving it turns the warnings of all-NaN
    (ocean) pixels back on for a block still inside.

    >>> [v.tolist() for v in _range_and_mean(np.array([[1.0, np.nan, 4.0], [np.nan] * 3]))]
    [[3.0, nan], [2.5, nan]]
    """
    valid = ~np.isnan(a)
    count = valid.sum(axis=-1)
    some = count > 0
    spread = np.where(valid, a, -np.inf).max(axis=-1) - np.where(valid, a, np.inf).min(axis=-1)
    mean = np.where(valid, a, 0.0).sum(axis=-1) / np.maximum(count, 1)
    return np.where(some, spread, np.nan), np.where(some, mean, np.nan)


def _trend_block(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mk = mann_kendall(y)
    return mk["slope"], mk["p"]


def trajectory_trends(traj: xr.Dataset) -> xr.Dataset:
    """Theil-Sen slopes (per year) and Yue-Wang Mann-Kendall p-values of the annual means and annual
    amplitudes from :func:`pc_trajectories`: maps of trend and amplitude change (lazy for dask input).

    >>> import numpy as np, xarray as xr
    >>> traj = xr.Dataset({"annual_mean": (("component", "year"), [np.arange(8.0)]),
    ...                    "annual_amplitude": (("component", "year"), [np.ones(8)])}, coords={"year": np.arange(2001, 2009)})
    >>> float(trajectory_trends(traj)["mean_slope"][0])
    1.0
    """
    cube_argument(traj, "traj", arrays=False)
    out = {}
    for name, key in (("annual_mean", "mean"), ("annual_amplitude", "amplitude")):
        if name not in traj:
            raise EsdlError(
                f"traj must be pc_trajectories' result with {name!r}; it has: {list(traj.data_vars)}."
            )
        da = traj[name]
        if da.chunks is not None:
            da = da.chunk({"year": -1})
        slope, p = xr.apply_ufunc(
            _trend_block,
            da,
            input_core_dims=[["year"]],
            output_core_dims=[[], []],
            dask="parallelized",
            output_dtypes=[np.float64, np.float64],
        )
        out[f"{key}_slope"], out[f"{key}_p"] = slope, p
    return xr.Dataset(out)
