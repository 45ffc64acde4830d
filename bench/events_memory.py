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

A second section does the same for :func:`~platform_lib.analysis.detect_events` of the lazily
generated float32 scores (the mask above is those scores above 4.8): the exact 0.99 quantile
(radix select over the chunks vs ``np.quantile`` of the loaded values: the same threshold), labels
and the table with peak scores.

    .venv/bin/python bench/events_memory.py [--small] [--years N] [--detect-years N] [--chunked-only]

``--chunked-only`` skips the reference, for cubes whose in-memory labelling would not fit (about 36
bytes a cell, 46 with the quantile: 20 years at 0.25 degree would take ~32-41 GiB).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import sys, time, warnings
import dask, dask.array as da, numpy as np, pandas as pd, xarray as xr
from platform_lib.analysis import detect_events, event_table, label_events
warnings.simplefilter("ignore")
what, mode, n_time, res, chunk_t, chunk_xy = *sys.argv[1:3], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
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
    # plus white noise, each chunk alone: its top 1% (above 4.8) makes events of 1 to 1000s of cells
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    t, y, x = (np.arange(a, b, dtype=np.float32) / n for a, b, n in ((t0, t1, shape[0]), (y0, y1, shape[1]), (x0, x1, shape[2])))
    out = np.zeros((t.size, y.size, x.size), np.float32)
    for (ft, fy, fx), p in zip(freq, phase):
        out += np.cos(2 * np.pi * (ft * t[:, None, None] + fy * y[None, :, None] + fx * x[None, None, :]) + p)
    rng = np.random.default_rng([t0, y0, x0])
    out += 0.5 * rng.standard_normal(out.shape, dtype=np.float32)
    return out

scores = xr.DataArray(da.map_blocks(field, dtype=np.float32, chunks=da.core.normalize_chunks(chunks, shape)),
                      dims=("time", "lat", "lon"), coords={"time": time_axis, "lat": lat, "lon": lon})
mask, threshold = scores > 4.8, float("nan")
def vmhwm():  # this process image's own peak (ru_maxrss carries the parent's over the fork and exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
base = vmhwm()
start = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=2):
    if what == "detect":  # threshold at the 0.99 quantile, label, table with peak scores
        found = detect_events(scores if mode == "chunked" else scores.compute(), 0.99, min_size=4,
                              chunked=mode == "chunked")
        table, threshold = found.table, found.threshold
    elif mode == "chunked":
        table = event_table(label_events(mask, min_size=4, chunked=True), chunked=True)
    else:
        table = event_table(label_events(mask.compute(), min_size=4))
seconds = time.perf_counter() - start
peak = vmhwm()
ends = table.iloc[[0, -1]][["event_id", "start", "n_cells", "lat_min", "lon_min", "lon_max"]].to_json()
crossing = int((table["lon_min"] > table["lon_max"]).sum())
print("RESULT", mask.size, mask.data.npartitions, base, peak, seconds, len(table), int(table["n_cells"].sum()), crossing,
      repr(threshold), ends)
"""


def run(what: str, mode: str, n_time: int, resolution: float, chunk_t: int, chunk_xy: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, what, mode, str(n_time), str(resolution), str(chunk_t), str(chunk_xy)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    cells, blocks, base, peak, seconds, events, event_cells, crossing, threshold, ends = line.split(" ", 10)[
        1:
    ]
    return {
        "cells": int(cells),
        "blocks": int(blocks),
        "base": int(base),
        "peak": int(peak),
        "seconds": float(seconds),
        "events": int(events),
        "event_cells": int(event_cells),
        "crossing": int(crossing),
        "threshold": threshold,
        "ends": ends,
    }


BYTES_PER_CELL = {"label": 36, "detect": 46}  # in memory, measured (the float64 copy for the quantile)


def bench_events_memory(
    n_time: int,
    resolution: float,
    chunk_t: int,
    chunk_xy: int,
    *,
    what: str = "label",
    reference: bool = True,
) -> dict[str, dict]:
    """Run both ways, print the figures and return them (raises if the two disagree).

    ``what``: ``"label"`` (label_events + event_table of a mask) or ``"detect"`` (detect_events of
    scores: the exact 0.99 quantile, labels and the table with peak scores).
    """
    chunked = run(what, "chunked", n_time, resolution, chunk_t, chunk_xy)
    in_memory = run(what, "in_memory", n_time, resolution, chunk_t, chunk_xy) if reference else None
    cells = chunked["cells"]
    title = {
        "label": "label_events + event_table of a mask",
        "detect": "detect_events (q = 0.99) of float32 scores",
    }
    print(
        f"{title[what]}, {n_time} x {round(180 / resolution)} x {round(360 / resolution)} = {cells / 1e6:.0f} M cells "
        f"in {chunked['blocks']} chunks of {chunk_t} x {chunk_xy} x {chunk_xy}"
    )
    for name, r in (("chunk by chunk", chunked), ("in memory", in_memory)):
        if r is None:
            need = BYTES_PER_CELL[what] * cells / 2**30
            print(f"  {name:<15} not run (it needs ~{BYTES_PER_CELL[what]} bytes a cell: {need:.1f} GiB)")
            return {"chunked": chunked}
        print(
            f"  {name:<15} peak RSS {r['peak'] / 2**20:7.0f} MiB (after imports {r['base'] / 2**20:4.0f} MiB, "
            f"+{(r['peak'] - r['base']) / 2**20:.0f}), {r['seconds']:6.1f} s, {r['events']} events "
            f"({r['event_cells']} cells, {r['crossing']} across the dateline)"
            + (f", threshold {r['threshold']}" if what == "detect" else "")
        )
    same = all(chunked[k] == in_memory[k] for k in ("events", "event_cells", "crossing", "threshold", "ends"))
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
    parser.add_argument("--years", type=int, default=5, help="label: years of 46 steps at 0.25 degree")
    parser.add_argument("--detect-years", type=int, default=2, help="detect_events: years (0: skip)")
    parser.add_argument("--chunked-only", action="store_true", help="skip the in-memory reference")
    args = parser.parse_args(argv)
    reference = not args.chunked_only
    if args.small:
        bench_events_memory(46, 5.0, 16, 16, reference=reference)
        bench_events_memory(46, 5.0, 16, 16, what="detect", reference=reference)
        return 0
    if args.years:
        bench_events_memory(46 * args.years, 0.25, 256, 128, reference=reference)
    if args.detect_years:
        bench_events_memory(46 * args.detect_years, 0.25, 256, 128, what="detect", reference=reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
