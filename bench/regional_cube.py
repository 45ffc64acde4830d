"""Benchmark: making a regional cube vs a plain xarray subset + ``to_zarr`` of the same selection.

For each chunking of the source demo cube ("ts": long time chunks, small tiles; "map": one time step
per chunk), time :func:`platform_lib.regional.make_regional_cube` (subset, re-chunk to the regional
"ts" layout, provenance, atomic write, team-catalog registration) and the reference a scientist would
write by hand::

    ds = xr.open_zarr(source)[variables].sel(lat=..., lon=..., time=...)
    ds = ds.chunk({"lat": -1, "lon": -1})          # to_zarr refuses the irregular edge chunks of a subset
    for v in ds.variables: ds[v].encoding = {}     # and the source's chunk encoding
    ds.to_zarr(target, zarr_format=3)

(the smallest change that makes the plain write work: the source's time chunks, the region whole).

Both run in this process, on the same selection, interleaved, best of ``--repeat`` runs; throughput
is the selection's uncompressed size over wall time (MB/s), memory the peak resident-set growth during
the run (sampled every 5 ms). Prints one line per chunking with the ratio reference time / our time
(> 1: ours is faster), by wall time and by CPU time (steadier on a shared machine).

    .venv/bin/python bench/regional_cube.py [--small] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import psutil
import xarray as xr
import yaml

BBOX = (-20.0, 25.0, 60.0, 72.0)  # Europe and its margins; every variable, every time step


class PeakRSS:
    """Peak growth of this process's resident set while the block runs (a 5 ms sampling thread)."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        self._base = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss - self._base)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss - self._base)


def source_stores(resolution: float, years: tuple[int, int], data_dir: str | None = None) -> dict[str, Path]:
    """The demo cube in both chunkings, generated once into ``data_dir`` (default
    ``<state>/bench-data/...``) and reused."""
    from platform_lib.demo import write_demo_cubes
    from platform_lib.paths import state_dir

    folder = (
        Path(data_dir)
        if data_dir
        else state_dir() / "bench-data" / f"{resolution:g}deg-{years[0]}-{years[1]}"
    )
    return write_demo_cubes(folder, resolution=resolution, years=years, progress=True)


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(repeat: int, runs: dict[str, Callable[[int], None]]) -> dict[str, dict[str, float]]:
    """Best wall time, best CPU time and largest peak memory of each run, interleaved ``repeat`` times
    (so load from other processes on a shared machine hits both alike)."""
    out = {name: {"wall": float("inf"), "cpu": float("inf"), "peak": 0.0} for name in runs}
    for i in range(repeat):
        for name, run in runs.items():
            with PeakRSS() as mem:
                c0, t0 = cpu_seconds(), time.perf_counter()
                run(i)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            out[name]["wall"] = min(out[name]["wall"], wall)
            out[name]["cpu"] = min(out[name]["cpu"], cpu)
            out[name]["peak"] = max(out[name]["peak"], mem.peak)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5-degree, 2-year source (a smoke run)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case (default 5, --small 1)")
    parser.add_argument(
        "--data-dir", help="folder with (or for) the demo stores (default: <state>/bench-data)"
    )
    parser.add_argument("--resolution", type=float, help="demo cube resolution (default 1, --small 5)")
    parser.add_argument("--years", help="FIRST-LAST (default 2001-2006, --small 2001-2002)")
    parser.add_argument(
        "--select-years", help="FIRST-LAST of the selection (default: every year of the cube)"
    )
    args = parser.parse_args(argv)
    resolution, years = (5.0, (2001, 2002)) if args.small else (1.0, (2001, 2006))
    if args.resolution:
        resolution = args.resolution
    if args.years:
        first, _, last = args.years.partition("-")
        years = (int(first), int(last or first))
    repeat = args.repeat or (1 if args.small else 5)
    selected = years
    if args.select_years:
        first, _, last = args.select_years.partition("-")
        selected = (int(first), int(last or first))
    time_range = (f"{selected[0]}-01-01", f"{selected[1]}-12-31")

    stores = source_stores(resolution, years, args.data_dir)
    work = Path(tempfile.mkdtemp(prefix="esdl-bench-regional-"))
    catalog = work / "shared.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "sources": {
                    f"bench-{chunking}": {
                        "driver": "zarr",
                        "args": {"urlpath": str(path)},
                        "metadata": {"title": "bench"},
                    }
                    for chunking, path in stores.items()
                }
            }
        )
    )
    from platform_lib.regional import make_regional_cube
    from platform_lib.team import remove_cube

    print(
        f"source: demo cube {resolution:g} deg, {years[0]}-{years[1]}; selection: every variable in bbox {BBOX}"
    )
    print(f"best of {repeat} interleaved runs; MB = uncompressed float32 of the selection")
    print(
        f"{'source':>6} {'MB':>7} {'ours MB/s':>10} {'xarray MB/s':>11} {'ratio':>6} {'cpu ratio':>9}"
        f" {'ours peak MB':>12} {'xarray peak MB':>14}"
    )
    # the bench's catalog and team folder, until main() returns (a smoke test runs main() in the test process)
    bench_env = mock.patch.dict(
        os.environ,
        ESDL_CATALOG=str(catalog),
        ESDL_TEAM_DIR=str(work / "team"),
        ESDL_TEAM_CATALOG=str(work / "team" / "catalog.yaml"),
    )
    bench_env.start()
    try:
        for chunking, path in stores.items():

            def select(path: Path = path) -> xr.Dataset:
                ds = xr.open_zarr(path)
                return ds.sel(
                    lat=slice(BBOX[1], BBOX[3]), lon=slice(BBOX[0], BBOX[2]), time=slice(*time_range)
                )

            mb = select().nbytes / 1e6

            def ours(i: int, chunking: str = chunking) -> None:
                name = f"ours-{chunking}-{i}"
                make_regional_cube(
                    f"bench-{chunking}", bbox=BBOX, time_range=time_range, name=name, progress=False
                )
                remove_cube(name)

            def reference(
                i: int, chunking: str = chunking, select: Callable[[], xr.Dataset] = select
            ) -> None:
                target = work / f"ref-{chunking}-{i}.zarr"
                ds = select().chunk({"lat": -1, "lon": -1})
                for v in ds.variables:
                    ds[v].encoding = {}
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                    ds.to_zarr(target, mode="w", zarr_format=3, consolidated=True)
                shutil.rmtree(target)

            r = measure(repeat, {"xarray": reference, "ours": ours})
            o, x = r["ours"], r["xarray"]
            print(
                f"{chunking:>6} {mb:7.1f} {mb / o['wall']:10.1f} {mb / x['wall']:11.1f} {x['wall'] / o['wall']:6.2f}"
                f" {x['cpu'] / o['cpu']:9.2f} {o['peak'] / 1e6:12.0f} {x['peak'] / 1e6:14.0f}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        bench_env.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
