"""Benchmark: peak memory of event labelling chunk by chunk vs in memory, in one run.

A random event mask on the ESDC's 0.25 degree grid (the top ~1% of a sum of plane waves plus white
noise: events of one to thousands of cells, crossing chunk boundaries and the dateline) is generated
lazily, each chunk on its own, in the ESDC "ts" chunking
(256 x 128 x 128, fewer time steps when the cube is shorter). Each way runs in a fresh process that
labels it (:func:`~platform_lib.analysis.label_events`, 26-connectivity, dateline wrap-around) and
builds the event table (:func:`~platform_lib.analysis.event_table`):

- chunk by chunk (``chunked=True``): the mask is generated chunk by chunk, twice (labels, then the
  table through the lazy labels), on 2 dask threads;
- in memory (the reference): the mask is generated and held whole, labelled with one
  ``scipy.ndimage.label`` call and the table built from the whole label cube.

Prints the peak RSS of each process (and its RSS after imports), the time, and checks that both find
the same events (count, cells, and the first and last rows of the table).

    .venv/bin/python bench/events_memory.py [--small] [--years N] [--chunked-only]

``--chunked-only`` skips the reference, for cubes whose in-memory labelling would not fit (about 36
bytes a cell: 20 years at 0.25 degree would take ~32 GiB).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import resource, sys, time, warnings
import dask, dask.array as da, numpy as np, pandas as pd, xarray as xr
from platform_lib.analysis import event_table, label_events
warnings.simplefilter("ignore")
mode, n_time, res, chunk_t, chunk_xy = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lat = -90 + res * (np.arange(round(180 / res)) + 0.5)
lon = -180 + res * (np.arange(round(360 / res)) + 0.5)
time_axis = pd.date_range("2001-01-01", periods=n_time, freq="8D")
shape, chunks = (n_time, lat.size, lon.size), (chunk_t, chunk_xy, chunk_xy)

waves = np.random.default_rng(0)
n_waves = 8
freq = np.stack([waves.integers(1, 24, n_waves), waves.integers(1, 12, n_waves), waves.integers(1, 36, n_waves)], 1)
phase = waves.uniform(0, 2 * np.pi, n_waves)

def field(block_info=None):
    # a sum of plane waves (integer cycles around the globe: continuous across chunks and the dateline)
    # plus white noise: its top 1% makes events of one to thousands of cells; each chunk alone
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    t, y, x = (np.arange(a, b, dtype=np.float32) / n for a, b, n in ((t0, t1, shape[0]), (y0, y1, shape[1]), (x0, x1, shape[2])))
    out = np.zeros((t.size, y.size, x.size), np.float32)
    for (ft, fy, fx), p in zip(freq, phase):
        out += np.cos(2 * np.pi * (ft * t[:, None, None] + fy * y[None, :, None] + fx * x[None, None, :]) + p)
    rng = np.random.default_rng([t0, y0, x0])
    out += 0.5 * rng.standard_normal(out.shape, dtype=np.float32)
    return out > 4.8

mask = xr.DataArray(da.map_blocks(field, dtype=bool, chunks=da.core.normalize_chunks(chunks, shape)),
                    dims=("time", "lat", "lon"), coords={"time": time_axis, "lat": lat, "lon": lon})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=2):
    if mode == "chunked":
        labels = label_events(mask, min_size=4, chunked=True)
        table = event_table(labels, chunked=True)
    else:
        labels = label_events(mask.compute(), min_size=4)
        table = event_table(labels)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ends = table.iloc[[0, -1]][["event_id", "start", "n_cells", "lat_min", "lon_min", "lon_max"]].to_json()
crossing = int((table["lon_min"] > table["lon_max"]).sum())
print("RESULT", mask.size, mask.data.npartitions, base, peak, seconds, len(table), int(table["n_cells"].sum()), crossing, ends)
"""


def run(mode: str, n_time: int, resolution: float, chunk_t: int, chunk_xy: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(n_time), str(resolution), str(chunk_t), str(chunk_xy)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    cells, blocks, base, peak, seconds, events, event_cells, crossing, ends = line.split(" ", 9)[1:]
    return {
        "cells": int(cells),
        "blocks": int(blocks),
        "base": int(base),
        "peak": int(peak),
        "seconds": float(seconds),
        "events": int(events),
        "event_cells": int(event_cells),
        "crossing": int(crossing),
        "ends": ends,
    }


def bench_events_memory(
    n_time: int, resolution: float, chunk_t: int, chunk_xy: int, *, reference: bool = True
) -> dict[str, dict]:
    """Run both ways, print the figures and return them (raises if the two disagree)."""
    chunked = run("chunked", n_time, resolution, chunk_t, chunk_xy)
    in_memory = run("in_memory", n_time, resolution, chunk_t, chunk_xy) if reference else None
    cells = chunked["cells"]
    print(
        f"mask {n_time} x {round(180 / resolution)} x {round(360 / resolution)} = {cells / 1e6:.0f} M cells "
        f"({cells / 2**20:.0f} MiB as bool; {chunked['blocks']} chunks of {chunk_t} x {chunk_xy} x {chunk_xy})"
    )
    for name, r in (("chunk by chunk", chunked), ("in memory", in_memory)):
        if r is None:
            print(f"  {name:<15} not run (it needs ~36 bytes a cell: {36 * cells / 2**30:.1f} GiB)")
            return {"chunked": chunked}
        print(
            f"  {name:<15} peak RSS {r['peak'] / 2**20:7.0f} MiB (after imports {r['base'] / 2**20:4.0f} MiB, "
            f"+{(r['peak'] - r['base']) / 2**20:.0f}), {r['seconds']:6.1f} s, {r['events']} events "
            f"({r['event_cells']} cells, {r['crossing']} across the dateline)"
        )
    same = all(chunked[k] == in_memory[k] for k in ("events", "event_cells", "crossing", "ends"))
    net = (in_memory["peak"] - in_memory["base"]) / max(chunked["peak"] - chunked["base"], 1)
    print(
        f"  ratio: in memory / chunked peak RSS {in_memory['peak'] / chunked['peak']:.1f}x "
        f"(above the imports {net:.1f}x), time {in_memory['seconds'] / chunked['seconds']:.2f}x; "
        f"same events: {same}"
    )
    if not same:
        raise SystemExit(f"the two ways disagree:\n{chunked}\n{in_memory}")
    return {"chunked": chunked, "in_memory": in_memory}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a 5 degree grid, one year (a smoke run)")
    parser.add_argument("--years", type=int, default=5, help="years of 46 steps on the 0.25 degree grid")
    parser.add_argument("--chunked-only", action="store_true", help="skip the in-memory reference")
    args = parser.parse_args(argv)
    if args.small:
        bench_events_memory(46, 5.0, 16, 16, reference=not args.chunked_only)
    else:
        bench_events_memory(46 * args.years, 0.25, 256, 128, reference=not args.chunked_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
