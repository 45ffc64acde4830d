"""Benchmark: cycle dominance (A1/A2 per pixel and variable) against a plain per-pixel version, in one run.

Both start from the same demo cube, written to a Zarr store first (so generation is not timed), and
each runs in a fresh process that reports its time and peak resident memory:

- ours: :func:`platform_lib.analysis.cycle_dominance` on the lazily opened store (dask, all cores):
  one shared pseudo-inverse for the pixels without gaps, batched normal equations for the others;
- the reference: the loaded cube through ``xarray.apply_ufunc(..., vectorize=True)`` with one
  ``numpy.linalg.lstsq`` per pixel and variable over its finite values (the same model: mean, linear
  trend, two harmonics), on one thread.

The maps must agree (NaN where either says no answer). Prints both and the ratios (> 1: ours faster
or smaller).

    .venv/bin/python bench/cycle_dominance.py [--small] [--resolution DEG] [--years FIRST LAST]
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
    from platform_lib.analysis import cycle_dominance
    with dask.config.set(scheduler="threads"):
        result = cycle_dominance(xr.open_zarr(store), variables).compute()
else:
    from platform_lib.analysis.cycles import time_in_years
    cube = xr.open_zarr(store)[variables].load()
    t = time_in_years(cube["time"].values)
    w = 2 * np.pi * t
    design = np.stack([np.ones_like(t), t - t.mean(), np.cos(w), np.sin(w), np.cos(2 * w), np.sin(2 * w)], 1)

    def ratio(x):
        ok = np.isfinite(x)
        if ok.sum() < 12:
            return np.nan
        c = np.linalg.lstsq(design[ok], x[ok], rcond=None)[0]
        return np.hypot(c[2], c[3]) / np.hypot(c[4], c[5])

    with dask.config.set(scheduler="synchronous"):
        result = xr.apply_ufunc(ratio, cube.to_dataarray("variable"), input_core_dims=[["time"]], vectorize=True)
elapsed = time.perf_counter() - t0
result.transpose("variable", "lat", "lon").astype("float64").to_netcdf(out)
"""
CHILD += REPORT


def measure(mode: str, store: Path, out: Path) -> dict:
    """Run one way in a fresh process: its time and peak memory."""
    return run_fresh(CHILD, mode, str(store), str(out), json.dumps(VARIABLES))


def main(argv: list[str] | None = None) -> dict:
    """Write the cube, run both ways, compare, print; returns the measurements."""
    import numpy as np
    import xarray as xr

    from platform_lib.demo import make_demo_cube

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10 degrees, 2001-2004 (a smoke run)")
    parser.add_argument("--resolution", type=float, default=2.5)
    parser.add_argument("--years", type=int, nargs=2, default=(2001, 2012))
    args = parser.parse_args(argv)
    if args.small:
        args.resolution, args.years = 10.0, (2001, 2004)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "cube.zarr"
        make_demo_cube(args.resolution, tuple(args.years))[VARIABLES].to_zarr(store)
        runs = {mode: measure(mode, store, Path(tmp) / f"{mode}.nc") for mode in ("ours", "reference")}
        ours = xr.open_dataarray(Path(tmp) / "ours.nc").load()
        ref = xr.open_dataarray(Path(tmp) / "reference.nc").load()
    both = np.isfinite(ours.values) & np.isfinite(ref.values)
    rel = np.abs(ours.values[both] / ref.values[both] - 1).max() if both.any() else 0.0
    runs["pixels"] = int(ours.sizes["lat"] * ours.sizes["lon"])
    runs["agree"] = int(both.sum())
    runs["only_ours"] = int((np.isfinite(ours.values) & ~np.isfinite(ref.values)).sum())
    runs["only_reference"] = int((~np.isfinite(ours.values) & np.isfinite(ref.values)).sum())
    print(
        f"cycle dominance, {args.resolution:g} deg {args.years[0]}-{args.years[1]}, {len(VARIABLES)} variables,"
        f" {runs['pixels']} pixels: {runs['agree']} answers agree (max rel diff {rel:.1e}); NaN in ours only"
        f" {runs['only_reference']}, in the reference only {runs['only_ours']} (ours refuses series whose"
        " observations cannot separate the harmonics)"
    )
    for mode in ("ours", "reference"):
        print(f"  {mode:9s} {runs[mode]['seconds']:7.2f} s  peak {runs[mode]['peak_mib']:7.0f} MiB")
    print(
        f"  ratio (reference / ours): time {runs['reference']['seconds'] / runs['ours']['seconds']:.1f}x,"
        f" peak memory {runs['reference']['peak_mib'] / runs['ours']['peak_mib']:.2f}x"
    )
    runs["max_rel_diff"] = float(rel)
    return runs


if __name__ == "__main__":
    main()
