"""Benchmark: cutting a prediction challenge's minicubes against plain xarray, in one run.

Both start from the same demo cube written to a Zarr store ("ts" chunking, as the catalog serves it) and
the same event table (the injected and the detected growing-season extremes, found once here and timed
on its own). Each runs in a fresh process that reports its time and peak resident memory (``VmHWM``
from ``/proc/self/status``: the process image's own peak):

- ours: :func:`platform_lib.challenge.make_minicubes` (placing the event minicubes, searching the
  controls, the split, then per variable one read of the cube, the per-slot sums and one gather);
- plain xarray: what a careful user writes for the same minicubes (their placement taken from ours):
  per variable the per-slot sums with ``groupby``, then for each minicube ``.sel(...).load()`` of its
  box and of the sums, and the leave-one-year-out climatology.

The two must agree to float32 rounding (values and climatologies). Prints both and the ratios (> 1:
ours faster or smaller).

    PYTHONPATH=. .venv/bin/python bench/challenge.py [--small] [--resolution DEG] [--years FIRST LAST]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fresh_process import REPORT, run_fresh

CHILD = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd, xarray as xr
warnings.simplefilter("ignore")
mode, store, events_csv, out, ours_out, patch, drivers = sys.argv[1:8]
events = pd.read_csv(events_csv, parse_dates=["start", "end"])
t0 = time.perf_counter()
if mode == "ours":
    from platform_lib.challenge import make_minicubes
    mc = make_minicubes(xr.open_zarr(store), events, patch=int(patch), drivers=json.loads(drivers), progress=False)
    names = [mc.attrs["target"], *mc.attrs["drivers"]]
    arrays = {n: mc[n].values for n in names}
    arrays.update({f"{n}_climatology": mc[f"{n}_climatology"].values for n in names})
    arrays.update(time=mc["time"].values.astype("int64"), lat=mc["lat"].values, lon=mc["lon"].values)
    np.savez(out, **arrays, names=np.array(names))
else:
    from platform_lib.ml.stats import season_slots
    placement = np.load(ours_out)
    names = [str(n) for n in placement["names"]]
    times = placement["time"].astype("datetime64[ns]")
    lats, lons = placement["lat"], placement["lon"]
    ds = xr.open_zarr(store)
    slot = xr.DataArray(season_slots(ds["time"].values), dims="time", coords={"time": ds["time"]}, name="slot")
    arrays = {}
    for name in names:
        da = ds[name]
        total = da.fillna(0).groupby(slot).sum("time").load()
        count = da.notnull().groupby(slot).sum("time").load()
        cuts, clims = [], []
        for i in range(len(times)):
            cut = da.sel(time=times[i], lat=lats[i], lon=lons[i]).load()
            s = season_slots(times[i])
            tot = total.sel(slot=s, lat=lats[i], lon=lons[i]).values
            cnt = count.sel(slot=s, lat=lats[i], lon=lons[i]).values
            own = np.isfinite(cut.values)
            others = cnt - own
            clim = np.where(others > 0, (tot - np.where(own, cut.values, 0)) / np.maximum(others, 1), np.nan)
            cuts.append(cut.values)
            clims.append(clim.astype("float32"))
        arrays[name] = np.stack(cuts)
        arrays[f"{name}_climatology"] = np.stack(clims)
    np.savez(out, **arrays)
elapsed = time.perf_counter() - t0
"""
CHILD += REPORT


def measure(
    mode: str, store: Path, events: Path, out: Path, ours: Path, patch: int, drivers: list[str]
) -> dict:
    """Run one way in a fresh process: its time and peak memory."""
    return run_fresh(
        CHILD, mode, str(store), str(events), str(out), str(ours), str(patch), json.dumps(drivers)
    )


def main(argv: list[str] | None = None) -> dict:
    """Write the cube, find the events, cut both ways, compare, print; returns the measurements."""
    import numpy as np
    import xarray as xr

    from platform_lib.challenge import DEFAULT_DRIVERS, challenge_events
    from platform_lib.demo import write_demo_cubes

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--small", action="store_true", help="5 degrees, 2001-2004, patch 2, one driver (a smoke run)"
    )
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--years", type=int, nargs=2, default=(2001, 2021), metavar=("FIRST", "LAST"))
    parser.add_argument("--patch", type=int, default=8, help="cells a side (default 8)")
    args = parser.parse_args(argv)
    resolution, years = (5.0, (2001, 2004)) if args.small else (args.resolution, tuple(args.years))
    patch = 2 if args.small else args.patch
    drivers = list(DEFAULT_DRIVERS[:1] if args.small else DEFAULT_DRIVERS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = write_demo_cubes(tmp_path, resolution=resolution, years=years, progress=False)["ts"]
        opened = xr.open_zarr(store)
        start = time.perf_counter()
        events = challenge_events(opened, "both", quantile=0.99 if args.small else 0.995)
        events_seconds = time.perf_counter() - start
        events_csv = tmp_path / "events.csv"
        events.drop(columns=[c for c in ("variables",) if c in events]).to_csv(events_csv, index=False)
        ours_out, plain_out = tmp_path / "ours.npz", tmp_path / "plain.npz"
        ours = measure("ours", store, events_csv, ours_out, ours_out, patch, drivers)
        plain = measure("plain", store, events_csv, plain_out, ours_out, patch, drivers)
        a, b = np.load(ours_out), np.load(plain_out)
        names = [str(n) for n in a["names"]]
        for key in [*names, *(f"{n}_climatology" for n in names)]:
            np.testing.assert_allclose(a[key], b[key], rtol=2e-6, atol=1e-6, equal_nan=True, err_msg=key)
        n_minicubes = len(a["time"])
    size = f"{resolution:g} deg, {years[0]}-{years[1]}, patch {patch}, {1 + len(drivers)} variables"
    print(
        f"challenge minicubes, {size}: {len(events)} events found in {events_seconds:.1f} s, {n_minicubes} minicubes"
    )
    print(f"  ours (make_minicubes) {ours['seconds']:7.1f} s  peak {ours['peak_mib']:7.0f} MiB")
    print(f"  plain xarray          {plain['seconds']:7.1f} s  peak {plain['peak_mib']:7.0f} MiB")
    print(
        f"  ratio: {plain['seconds'] / ours['seconds']:.1f}x faster, peak memory "
        f"{plain['peak_mib'] / ours['peak_mib']:.2f}x (plain / ours); values and climatologies agree"
    )
    return {"ours": ours, "plain": plain, "events": len(events), "minicubes": n_minicubes}


if __name__ == "__main__":
    main()
