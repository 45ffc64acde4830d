"""Benchmark: the land-surface trajectories' weighted PCA (Kraemer et al. 2020) against plain numpy, in one run.

Both start from the same demo cube, written to a Zarr store first (so generation is not timed), and
each runs in a fresh process that reports its time and peak resident memory (``VmHWM`` from
``/proc/self/status``: the process image's own peak, not ``ru_maxrss``):

- ours: :func:`platform_lib.analysis.weighted_pca` on the lazily opened store (per-chunk weighted
  sums merged pairwise, dask threads), then :func:`platform_lib.analysis.pc_cube` projecting every
  (time, pixel) and reduced to the per-pixel temporal standard deviation of PC1, chunk by chunk;
- the reference: the cube loaded whole into a (rows, variables) float64 matrix, complete rows kept,
  ``np.cov(..., aweights=cos(lat))``, standardised, ``np.linalg.eigh``, every row projected and the
  same PC1 map.

A third fresh process times our whole chain (PCA, a 3-component PC cube, :func:`~platform_lib.analysis.pc_trajectories`,
:func:`~platform_lib.analysis.trajectory_trends` maps), with no reference. The explained variances must agree to 1e-9 (relative) and the PC1 maps to rounding error.
Prints both and the ratios (> 1: ours faster or smaller).

    PYTHONPATH=. .venv/bin/python bench/trajectories.py [--small] [--resolution DEG] [--years FIRST LAST]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fresh_process import REPORT, run_fresh

VARIABLES = [
    "air_temperature_2m",
    "precipitation_era5",
    "gross_primary_productivity",
    "root_moisture",
    "kndvi",
]

CHILD = r"""
import json, sys, time, warnings
import dask, numpy as np, xarray as xr
warnings.simplefilter("ignore")
mode, store, out = sys.argv[1:4]
variables = json.loads(sys.argv[4])
t0 = time.perf_counter()
if mode == "ours":
    from platform_lib.analysis import pc_cube, weighted_pca
    with dask.config.set(scheduler="threads"):
        cube = xr.open_zarr(store)[variables]
        pca = weighted_pca(cube)
        pc1 = pc_cube(cube, pca, n_components=1).isel(component=0).std("time").compute().values
    vals, first = pca["explained_variance"].values, pca["loadings"].values[:, 0]
elif mode == "chain":
    from platform_lib.analysis import pc_cube, pc_trajectories, trajectory_trends, weighted_pca
    with dask.config.set(scheduler="threads"):
        cube = xr.open_zarr(store)[variables]
        pca = weighted_pca(cube)
        traj = pc_trajectories(pc_cube(cube, pca, n_components=3))
        pc1_years = traj["annual_mean"].isel(component=0).std("year").rename("pc1_years")
        maps = xr.merge([traj[["amplitude", "centre"]], trajectory_trends(traj), pc1_years]).compute()
        pc1 = maps["pc1_years"].values  # one compute: the PC cube is projected once
    vals, first = pca["explained_variance"].values, pca["loadings"].values[:, 0]
else:
    cube = xr.open_zarr(store)[variables].load()
    x = np.stack([cube[v].values.astype(np.float64) for v in variables], -1)
    shape = x.shape
    x = x.reshape(-1, len(variables))
    w = np.broadcast_to(np.cos(np.deg2rad(cube["lat"].values))[None, :, None], shape[:-1]).reshape(-1)
    ok = np.isfinite(x).all(1)
    c = np.cov(x[ok], rowvar=False, aweights=w[ok], bias=True)
    mean = np.average(x[ok], axis=0, weights=w[ok])
    sd = np.sqrt(np.diag(c))
    vals, vecs = np.linalg.eigh(c / np.outer(sd, sd))
    vals, first = vals[::-1], vecs[:, -1]
    pcs = ((x - mean) / sd) @ first
    pc1 = np.nanstd(pcs.reshape(shape[:-1]), axis=0)
elapsed = time.perf_counter() - t0
np.save(out, pc1)  # a standard deviation: the sign of the eigenvector does not matter
extra = {"explained_variance": vals.tolist()}
"""
CHILD += REPORT


def measure(mode: str, store: Path, out: Path) -> dict:
    """Run one way in a fresh process: its time, peak memory and eigenvalues."""
    return run_fresh(CHILD, mode, str(store), str(out), json.dumps(VARIABLES))


def main(argv: list[str] | None = None) -> dict:
    """Write the cube, run both ways, compare, print; returns the measurements."""
    import numpy as np

    from platform_lib.demo import make_demo_cube

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10 degrees, 2001-2003 (a smoke run)")
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--years", type=int, nargs=2, default=(2001, 2005))
    args = parser.parse_args(argv)
    if args.small:
        args.resolution, args.years = 10.0, (2001, 2003)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "cube.zarr"
        make_demo_cube(args.resolution, tuple(args.years))[VARIABLES].to_zarr(store)
        runs = {
            mode: measure(mode, store, Path(tmp) / f"{mode}.npy") for mode in ("ours", "reference", "chain")
        }
        ours, ref = np.load(Path(tmp) / "ours.npy"), np.load(Path(tmp) / "reference.npy")
    ev_o, ev_r = (
        np.array(runs["ours"]["explained_variance"]),
        np.array(runs["reference"]["explained_variance"]),
    )
    runs["eigen_rel_diff"] = float(np.abs(ev_o / ev_r - 1).max())
    both = np.isfinite(ours) & np.isfinite(ref)
    runs["pc1_map_max_diff"] = float(np.abs(ours[both] - ref[both]).max())
    runs["nan_mismatch"] = int((np.isfinite(ours) != np.isfinite(ref)).sum())
    print(
        f"trajectories PCA, {args.resolution:g} deg {args.years[0]}-{args.years[1]}, {len(VARIABLES)} variables:"
        f" explained variance {np.round(ev_o / ev_o.sum(), 3).tolist()}, max rel diff {runs['eigen_rel_diff']:.1e};"
        f" PC1 std map max diff {runs['pc1_map_max_diff']:.1e}, NaN mismatches {runs['nan_mismatch']}"
    )
    for mode in ("ours", "reference"):
        print(f"  {mode:9s} {runs[mode]['seconds']:7.2f} s  peak {runs[mode]['peak_mib']:7.0f} MiB")
    print(
        f"  ratio (reference / ours): time {runs['reference']['seconds'] / runs['ours']['seconds']:.1f}x,"
        f" peak memory {runs['reference']['peak_mib'] / runs['ours']['peak_mib']:.2f}x"
    )
    print(
        f"  whole chain, ours only (PCA, 3-component PC cube, trajectories, trend and amplitude maps):"
        f" {runs['chain']['seconds']:.2f} s, peak {runs['chain']['peak_mib']:.0f} MiB"
    )
    return runs


if __name__ == "__main__":
    main()
