"""Benchmark: the cube analyses against per-pixel references, and their dask scaling, in one run.

On the same demo cube (built in memory first, so generation is not timed):

1. intrinsic dimension -- ours (batched Gram matrices + one ``eigvalsh`` per block) vs a direct port of
   the talk's per-pixel function (z-score, ``np.linalg.svd``) through
   ``xarray.apply_ufunc(..., vectorize=True)``; both start from the same gap-filled cube, and the maps
   must be identical;
2. KNN-Gamma and KDE scores -- ours vs (a) a direct per-pixel port of MultivariateAnomalies.jl
   (``cdist`` distance matrix; ``knn_dists`` sorts each row; ``kernel_matrix`` + ``KDE`` on the full
   matrix) and (b) a peer library per pixel (scikit-learn ``NearestNeighbors``), both through
   ``apply_ufunc(vectorize=True)``; the scores must agree to 1e-6;
3. features + all five scores + ensemble from the lazy cube on a local dask cluster of 1 worker and
   of 2 workers (one thread each): the scaling ratio, and the workers' peak memory;
4. peak resident memory of a fresh process computing the intrinsic dimension of a lazily generated
   random cube in the ESDC "ts" chunking, larger than RAM / 4 in the full run (memory is bounded by
   the chunk size, not the cube size).

Prints pixels per second and ratios (> 1: ours faster). Timings are wall clock, best of ``--repeat``.
Ours runs twice: on one thread (dask config ``esdl.threads: 1``) and on all cores, which an eager
call uses (``platform_lib.compute.kernel_threads``); the per-pixel references run on one thread.

    .venv/bin/python bench/analysis.py [--small] [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import dask
import numpy as np
import xarray as xr
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from platform_lib.analysis import anomaly_features, anomaly_scores, anomaly_scores_block, intrinsic_dimension
from platform_lib.compute import as_variable_array, gap_fill
from platform_lib.demo import make_demo_cube
from platform_lib.paths import repo_root

DIM_VARS = [
    "air_temperature_2m", "max_air_temperature_2m", "precipitation_era5", "radiation_era5",
    "gross_primary_productivity", "terrestrial_ecosystem_respiration", "latent_energy", "sensible_heat",
    "root_moisture", "surface_moisture", "evaporative_stress", "kndvi",
]  # fmt: skip
CORES = len(os.sched_getaffinity(0))
THREADS = sorted({1, CORES})  # ours runs on 1 thread, then on all cores (the references: on 1)
SCORE_VARS = [
    "air_temperature_2m",
    "precipitation_era5",
    "root_moisture",
    "gross_primary_productivity",
    "sensible_heat",
]


def best_time(func: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def line(name: str, pixels: int, ours: float, ref: float, ref_name: str, check: str) -> None:
    print(
        f"{name:<24} ours {pixels / ours:>9.1f} px/s | {ref_name:<28} {pixels / ref:>8.1f} px/s | "
        f"ratio {ref / ours:>6.2f}x | {check}"
    )


# --- references -------------------------------------------------------------------------------------


def _test_references():
    """``tests/analysis_reference.py``: the plain per-pixel references the tests check against."""
    spec = importlib.util.spec_from_file_location(
        "analysis_reference", repo_root() / "tests" / "analysis_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


talk_dimension = _test_references().reference_dimension  # the talk's per-pixel function (z-score, SVD)


def port_knn_gamma(x: np.ndarray) -> np.ndarray:
    """MultivariateAnomalies.jl: dist_matrix, knn_dists (self set to max, rows sorted), KNN_Gamma."""
    if np.isnan(x).any():
        return np.full(len(x), np.nan)
    d = cdist(x, x)
    k = math.ceil(0.05 * len(x))
    np.fill_diagonal(d, d.max())
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1).mean(axis=1)


def sklearn_knn_gamma(x: np.ndarray) -> np.ndarray:
    if np.isnan(x).any():
        return np.full(len(x), np.nan)
    k = math.ceil(0.05 * len(x))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, 1:].mean(axis=1)


def port_kde(x: np.ndarray) -> np.ndarray:
    """MultivariateAnomalies.jl: dist_matrix, sigma = median(D), kernel_matrix, KDE = 1 - mean(K)."""
    if np.isnan(x).any():
        return np.full(len(x), np.nan)
    d = cdist(x, x)
    sigma = np.median(d)
    return 1.0 - np.exp(-0.5 * d / sigma**2).mean(axis=1)


def per_pixel(func: Callable[[np.ndarray], np.ndarray], stacked: xr.DataArray, scalar: bool) -> np.ndarray:
    return xr.apply_ufunc(
        func,
        stacked,
        input_core_dims=[["time", "variable"]],
        output_core_dims=[[] if scalar else ["time"]],
        vectorize=True,
    ).values


# --- sections ---------------------------------------------------------------------------------------


def bench_intrinsic(cube: xr.Dataset, repeat: int) -> None:
    filled = gap_fill(cube[DIM_VARS]).compute()  # the same gap-filled, stacked input for both
    stacked = as_variable_array(filled).transpose("lat", "lon", "time", "variable").copy()
    is_land = ~np.isnan(stacked.values).any(axis=(2, 3))
    land = int(is_land.sum())
    # load the compiled kernels (not timed)
    _ = intrinsic_dimension(stacked, gap_fill=False).values
    t_ref, ref = best_time(lambda: per_pixel(talk_dimension, stacked, scalar=True), repeat)
    t_read, _ = best_time(lambda: stacked.values[is_land], repeat)  # the land pixels' bytes, read once
    n = ref.size
    for threads in THREADS:
        with dask.config.set({"scheduler": "synchronous", "esdl.threads": threads}):
            t_ours, ours = best_time(lambda: intrinsic_dimension(stacked, gap_fill=False).values, repeat)
        same = int(np.sum((ours == ref) | (np.isnan(ours) & np.isnan(ref))))
        line(
            f"intrinsic dim., {threads} thr.",
            n,
            t_ours,
            t_ref,
            "per-pixel svd (vectorize)",
            f"same on {same}/{n} px ({land} land)",
        )
    print(
        f"  (the reference runs on one thread; reading the land pixels' bytes once into pixel order takes "
        f"{t_read * 1e3:.0f} ms: ours on {CORES} threads is {t_ours / t_read:.1f}x that, the reference "
        f"{t_ref / t_read:.1f}x)"
    )


def bench_scores(cube: xr.Dataset, n_pixels: int, repeat: int) -> None:
    features = anomaly_features(cube, SCORE_VARS).compute().transpose("lat", "lon", "time", "variable")
    block = features.values.reshape(-1, features.sizes["time"], features.sizes["variable"])
    land = np.flatnonzero(~np.isnan(block).any(axis=(1, 2)))
    pick = land[np.linspace(0, land.size - 1, min(n_pixels, land.size)).astype(int)]
    block = block[pick]
    stacked = xr.DataArray(block, dims=("pixel", "time", "variable"))
    n, t = block.shape[:2]
    print(f"  scores on {n} land pixels x {t} steps x {block.shape[2]} features")
    # load the compiled kernels (not timed)
    anomaly_scores_block(block, ["KDE", "KNN_Gamma"], quantiles=False)
    for method, port, peer in [("KNN_Gamma", port_knn_gamma, sklearn_knn_gamma), ("KDE", port_kde, None)]:
        t_port, ref = best_time(lambda f=port: per_pixel(f, stacked, scalar=False), repeat)
        t_peer, ref2 = (
            best_time(lambda f=peer: per_pixel(f, stacked, scalar=False), repeat) if peer else (0, None)
        )
        for threads in THREADS:
            with dask.config.set({"esdl.threads": threads}):
                t_ours, ours = best_time(
                    lambda m=method: anomaly_scores_block(block, [m], quantiles=False)[..., 0], repeat
                )
            err = float(np.nanmax(np.abs(ours - ref)))
            name = f"{method}, {threads} thr."
            line(name, n, t_ours, t_port, "per-pixel port of the .jl", f"max |diff| {err:.1e}")
            if ref2 is not None:
                err2 = float(np.nanmax(np.abs(ours - ref2)))
                line(name, n, t_ours, t_peer, "per-pixel scikit-learn", f"max |diff| {err2:.1e}")


def reset_peak_rss() -> None:
    """Reset this process's peak resident memory (Linux: ``VmHWM``, via ``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    """This process's peak resident memory since start or :func:`reset_peak_rss` (``VmHWM``)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib * 1024


def bench_scaling(resolution: float, years: tuple[int, int], repeat: int) -> None:
    from distributed import Client, LocalCluster

    def workload() -> xr.Dataset:
        cube = make_demo_cube(resolution=resolution, years=years)
        features = anomaly_features(cube.chunk({"lat": 6, "lon": 12}), SCORE_VARS)
        return anomaly_scores(features)

    times = {}
    for workers in (1, 2):
        with (
            warnings.catch_warnings(),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,  # shutdown chatter (heartbeats to a closed scheduler)
            ) as cluster,
            Client(cluster) as client,
        ):
            warnings.simplefilter("ignore")
            client.run(
                lambda: __import__("platform_lib.demo").demo.land_fraction(resolution)
            )  # warm the caches
            client.run(reset_peak_rss)  # a forked worker starts with its parent's peak
            times[workers], _ = best_time(lambda: workload().compute(), repeat)
            peak = max(client.run(peak_rss_bytes).values())
        print(f"  dask {workers} worker(s): {times[workers]:.2f} s, worker peak RSS {peak / 2**20:.0f} MiB")
    print(
        f"{'dask scaling 2 vs 1':<24} ratio {times[1] / times[2]:.2f}x (ideal 2.00x; cores shared with others)"
    )


MEMORY_CHILD = """
import sys, time, dask, dask.array as da, numpy as np, pandas as pd, xarray as xr
from platform_lib.analysis import intrinsic_dimension
res, first, last, n_var = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
time_axis = pd.DatetimeIndex([pd.Timestamp(y, 1, 1) + pd.Timedelta(days=8 * k + 4)
                              for y in range(first, last + 1) for k in range(46)])
lat = -90 + res * (np.arange(round(180 / res)) + 0.5)
lon = -180 + res * (np.arange(round(360 / res)) + 0.5)
shape, chunks = (len(time_axis), lat.size, lon.size), (256, 128, 128)  # the ESDC "ts" chunking
season = da.cos(2 * np.pi * da.arange(shape[0], chunks=256) / 46)[:, None, None].astype(np.float32)
rng = da.random.default_rng(0)
cube = xr.Dataset(
    {f"v{i}": (("time", "lat", "lon"), (i + 1) * season + rng.standard_normal(shape, chunks=chunks, dtype=np.float32))
     for i in range(n_var)},
    coords={"time": time_axis, "lat": lat, "lon": lon},
)
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=2):
    dim = intrinsic_dimension(cube).compute()
# VmHWM: this process image's own peak (ru_maxrss carries the parent's over the fork and exec)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
print(cube.nbytes, peak, time.perf_counter() - start, int(dim.count()))
"""


def bench_memory(resolution: float, years: tuple[int, int], n_var: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(resolution), str(years[0]), str(years[1]), str(n_var)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    nbytes, rss, seconds, pixels = out.stdout.split()[-4:]
    nbytes, rss = int(nbytes), int(rss)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"{'memory bound':<24} cube {nbytes / 2**30:.2f} GiB ({n_var} variables, {nbytes / ram:.2f} x RAM; lazily "
        f"generated in ESDC 'ts' chunks) -> intrinsic dimension of {int(pixels)} px in {float(seconds):.0f} s, "
        f"peak RSS {rss / 2**30:.2f} GiB ({rss / nbytes:.2f}x the cube)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke run of a few seconds)")
    parser.add_argument("--repeat", type=int, default=None, help="best of N runs (default 1 small, 2 full)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.small else 2)
    if args.small:
        res, years, n_pixels, scale_years, memory = (
            10.0,
            (2001, 2003),
            24,
            (2001, 2002),
            (10.0, (2001, 2003), 3),
        )
    else:
        res, years, n_pixels, scale_years, memory = (
            2.5,
            (2001, 2012),
            200,
            (2001, 2010),
            (0.5, (2001, 2021), 7),
        )
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        cube = make_demo_cube(resolution=res, years=years).persist()
    print(
        f"demo cube {res:g} deg, {years[0]}-{years[1]}: {dict(cube.sizes)} (built in {time.perf_counter() - start:.1f} s)"
    )
    bench_intrinsic(cube, repeat)
    bench_scores(cube, n_pixels, repeat)
    bench_scaling(res, scale_years, repeat)
    if memory:
        bench_memory(*memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
