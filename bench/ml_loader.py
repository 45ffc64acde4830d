"""Benchmark: training-set loading from a demo cube, ours vs xbatcher vs a raw zarr read; rechunk memory.

In one run, on both chunkings ("ts" and "map") of the same demo cube and the same patch spec:

- ours: ``platform_lib.ml.make_dataloader`` (chunk-aware, batches cut in memory), one full epoch;
- peer: xbatcher 0.4 ``BatchGenerator`` + ``xbatcher.loaders.torch.MapDataset`` in a torch
  ``DataLoader`` on the lazily opened cube (its documented use); timed over a time budget and
  extrapolated, since it reads a chunk per sample;
- ceiling: read and decode every stored chunk of the sample variables once with zarr (same threads).

Ours and the ceiling are the best of ``--repeat`` runs (the machine is shared).

It prints samples/s and MB/s (sample bytes delivered; decoded cube bytes for the ceiling) and the
ratios ours/xbatcher (target >= 10) and ours/ceiling (target >= 0.5). Then ``rechunk_cube``
map -> ts: MB/s and the peak memory (RSS) of the copy against ``max_mem``, each in a fresh process.

    .venv/bin/python bench/ml_loader.py            # 1 deg, 2001-2004 demo cube
    .venv/bin/python bench/ml_loader.py --small    # 5 deg, 2001-2002 (seconds; the smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

INPUTS = ["air_temperature_2m", "precipitation_era5", "radiation_era5"]
TARGETS = ["gross_primary_productivity"]


def demo_stores(data_dir: Path, resolution: float, years: tuple[int, int]) -> dict[str, Path]:
    """Both chunkings of the demo cube (generated once into ``data_dir``)."""
    from platform_lib.demo import write_demo_cubes

    return write_demo_cubes(data_dir, resolution=resolution, years=years, progress=False)


def spec_for(path: Path):
    from platform_lib.ml import SampleSpec

    ds = xr.open_zarr(path, chunks=None)
    tile = min(16, ds.sizes["lat"], ds.sizes["lon"])
    return SampleSpec(inputs=INPUTS, targets=TARGETS, patch={"time": 8, "lat": tile, "lon": tile})


def bench_ours(path: Path, spec, batch_size: int, num_workers: int, repeat: int = 1) -> dict[str, float]:
    from platform_lib.ml import TrainingSet
    from platform_lib.ml.torch import make_dataloader

    ts = TrainingSet(path, spec, normalise=False)
    loader = make_dataloader(ts, batch_size=batch_size, num_workers=num_workers, seed=0)
    seconds = float("inf")
    for epoch in range(repeat):  # best epoch of `repeat`: the machine is shared
        loader.dataset.set_epoch(epoch)
        start = time.perf_counter()
        n = nbytes = 0
        for batch in loader:
            n += len(batch["sample"])
            nbytes += sum(batch[k].numel() * 4 for k in ("x", "y") if k in batch)
        seconds = min(seconds, time.perf_counter() - start)
        assert n == len(ts), (n, len(ts))
    return {
        "samples": n,
        "seconds": seconds,
        "samples_s": n / seconds,
        "mb_s": nbytes / seconds / 1e6,
        "amplification": ts.plan.read_amplification,
        "blocks": ts.plan.n_blocks,
    }


def bench_xbatcher(path: Path, spec, batch_size: int, budget_s: float) -> dict[str, float]:
    import torch
    import xbatcher
    from xbatcher.loaders.torch import MapDataset

    ds = xr.open_zarr(path)  # lazy, dask chunks = stored chunks: xbatcher's documented use
    dims = dict(spec.patch)
    x_gen = xbatcher.BatchGenerator(ds[list(spec.inputs)].to_array("channel"), input_dims=dims)
    y_gen = xbatcher.BatchGenerator(ds[list(spec.targets)].to_array("channel"), input_dims=dims)
    loader = torch.utils.data.DataLoader(MapDataset(x_gen, y_gen), batch_size=batch_size, shuffle=True)
    total = len(x_gen)
    start = time.perf_counter()
    n = nbytes = 0
    for x, y in loader:
        n += x.shape[0]
        nbytes += x.numel() * 4 + y.numel() * 4
        if time.perf_counter() - start > budget_s:
            break
    seconds = time.perf_counter() - start
    return {
        "samples": n,
        "of": total,
        "seconds": seconds,
        "samples_s": n / seconds,
        "mb_s": nbytes / seconds / 1e6,
    }


def bench_raw(path: Path, spec, n_samples: int, threads: int = 2, repeat: int = 1) -> dict[str, float]:
    """Read and decode every stored chunk of the sample variables once, with zarr, in ``threads``.

    Big reads (time slabs of whole chunks) so zarr's own concurrency decodes chunks in parallel: the
    fastest plain way to get every decoded value into memory once.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r")
    jobs = []
    for name in spec.variables:  # slabs of whole chunks along time (~64 MB): zarr decodes them concurrently
        arr = group[name]
        step = max(
            arr.chunks[0], (64 * 2**20 // (arr.nbytes // arr.shape[0])) // arr.chunks[0] * arr.chunks[0]
        )
        jobs += [(arr, slice(t, t + step)) for t in range(0, arr.shape[0], step)]

    def read(job):
        arr, region = job
        return arr[region].nbytes

    seconds = float("inf")
    for _ in range(repeat):  # best of `repeat`, as for ours
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            nbytes = sum(pool.map(read, jobs))
        seconds = min(seconds, time.perf_counter() - start)
    n_chunks = sum(
        int(np.prod([-(-n // c) for n, c in zip(group[v].shape, group[v].chunks, strict=True)]))
        for v in spec.variables
    )
    return {
        "chunks": n_chunks,
        "seconds": seconds,
        "samples_s": n_samples / seconds,
        "mb_s": nbytes / seconds / 1e6,
    }


RECHUNK_CHILD = """
import json, sys, time
import xarray as xr
from platform_lib.rechunk import rechunk_cube, plan_variable, parse_mem
src, out, max_mem = sys.argv[1], sys.argv[2], sys.argv[3]
ds = xr.open_zarr(src, chunks=None)
xr.open_zarr(src, chunks=None)[list(ds.data_vars)[0]].isel(time=0).values  # warm the imports
import dask.array, platform_lib.regional, tqdm.auto  # noqa: E401,F401  (imported by rechunk_cube)
xr.open_zarr(src, chunks=None).chunk()
def status(key):  # VmHWM is this process's own peak (ru_maxrss survives exec from the parent)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
before = status("VmRSS")
start = time.perf_counter()
rechunk_cube(src, "ts", out, max_mem=max_mem, progress=False)
seconds = time.perf_counter() - start
peak = status("VmHWM")
nbytes = sum(v.nbytes for v in ds.data_vars.values())
print(json.dumps({"seconds": seconds, "mb_s": nbytes / seconds / 1e6, "peak_over_start": max(0, peak - before),
                  "max_mem": parse_mem(max_mem), "cube_bytes": nbytes}))
"""


def bench_rechunk(src: Path, tmp: Path, max_mems: list[str]) -> list[dict[str, float]]:
    out = []
    for i, mm in enumerate(max_mems):
        res = subprocess.run(
            [sys.executable, "-c", RECHUNK_CHILD, str(src), str(tmp / f"rechunked-{i}.zarr"), mm],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append({"max_mem": mm, **json.loads(res.stdout.strip().splitlines()[-1])})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5 deg, 2001-2002: a quick smoke run")
    parser.add_argument(
        "--data-dir", type=Path, help="reuse/generate the demo cubes here (default: temporary)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for ours")
    parser.add_argument(
        "--xbatcher-seconds", type=float, default=None, help="time budget of the xbatcher run"
    )
    parser.add_argument("--rechunk-mem", action="append", help="max_mem of a rechunk run (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N epochs / raw reads (default 3)")
    parser.add_argument(
        "--resolution", type=float, help="demo cube resolution in degrees (overrides --small)"
    )
    parser.add_argument("--years", help="demo cube years FIRST-LAST, e.g. 2001-2012 (overrides --small)")
    args = parser.parse_args(argv)
    resolution, years = (5.0, (2001, 2002)) if args.small else (1.0, (2001, 2004))
    resolution = args.resolution or resolution
    if args.years:
        first, _, last = args.years.partition("-")
        years = (int(first), int(last or first))
    budget = args.xbatcher_seconds or (3.0 if args.small else 20.0)
    max_mems = args.rechunk_mem or (["16MB", "64MB"] if args.small else ["64MB", "256MB", "1GB"])
    with tempfile.TemporaryDirectory(prefix="esdl-bench-ml-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = args.data_dir or tmp / "data"
        t0 = time.perf_counter()
        stores = demo_stores(data_dir, resolution, years)
        print(f"demo cube {resolution:g} deg {years[0]}-{years[1]} ready in {time.perf_counter() - t0:.0f} s")
        results = {}
        for chunking, path in stores.items():
            spec = spec_for(path)
            ours = bench_ours(path, spec, args.batch_size, args.workers, args.repeat)
            raw = bench_raw(path, spec, ours["samples"], repeat=args.repeat)
            peer = bench_xbatcher(path, spec, args.batch_size, budget)
            results[chunking] = (ours, peer, raw)
            chunks = xr.open_zarr(path)[INPUTS[0]].encoding["chunks"]
            print(
                f"\n[{chunking}] chunks {chunks}, patch {dict(spec.patch)}, {ours['samples']} samples, "
                f"{len(spec.variables)} variables, read amplification {ours['amplification']}"
            )
            print(
                f"  ours      {ours['samples_s']:10.0f} samples/s {ours['mb_s']:8.1f} MB/s  ({ours['seconds']:.2f} s/epoch)"
            )
            print(
                f"  xbatcher  {peer['samples_s']:10.0f} samples/s {peer['mb_s']:8.1f} MB/s  "
                f"({peer['samples']} of {peer['of']} samples in {peer['seconds']:.1f} s)"
            )
            print(
                f"  raw zarr  {raw['samples_s']:10.0f} samples/s {raw['mb_s']:8.1f} MB/s decoded "
                f"({raw['chunks']} chunks in {raw['seconds']:.2f} s)"
            )
            print(
                f"  ratio ours/xbatcher {ours['samples_s'] / peer['samples_s']:.1f}x (target >= 10), "
                f"ours/raw ceiling {ours['samples_s'] / raw['samples_s']:.2f} (target >= 0.5)"
            )
        print("\nrechunk_cube map -> ts (fresh process each):")
        for r in bench_rechunk(stores["map"], tmp, max_mems):
            print(
                f"  max_mem {r['max_mem']:>6}: {r['mb_s']:7.1f} MB/s ({r['seconds']:.1f} s for "
                f"{r['cube_bytes'] / 1e6:.0f} MB), peak RSS over start {r['peak_over_start'] / 1e6:7.1f} MB "
                f"= {r['peak_over_start'] / r['max_mem']:.2f} x max_mem"
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "torch")
    sys.exit(main())
