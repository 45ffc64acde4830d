"""Benchmark: open a cube through the catalog and read one map and one pixel time series.

For each chunking of the demo cube ("ts" and "map") it times, in the same run:

- ours: ``platform_lib.open_cube(name)`` through the catalog (the catalog file is parsed once per
  process and cached; every repetition opens the store anew), then one map (one variable, one time
  step) and one pixel time series (one variable, every step);
- raw: ``zarr.open_array`` of the same variable in the same store and the same two reads, i.e. the
  bytes every reader must fetch and decode.

It prints the median of the repetitions and the ratio ours / raw, for each read and for both together
(the issue's target: <= 1.2), the cost of the first open in a process (which parses the catalog), and
the generation time and size on disk of the demo cube.

    .venv/bin/python bench/open_cube.py            # the default 1-degree, 2001-2021 cube
    .venv/bin/python bench/open_cube.py --small    # 5 degrees, 2001-2004 (seconds)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="a 5-degree, 4-year cube (quick)")
    parser.add_argument("--data-dir", help="reuse/generate the cubes here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--variable", default="air_temperature_2m")
    args = parser.parse_args()

    resolution, years = (5.0, (2001, 2004)) if args.small else (1.0, (2001, 2021))
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="esdl-bench-"))
    os.environ["ESDL_DATA_DIR"] = str(data_dir)

    from platform_lib import catalog, demo

    start = time.perf_counter()
    paths = demo.write_demo_cubes(data_dir, resolution=resolution, years=years, progress=False)
    gen_s = time.perf_counter() - start
    sizes = {c: dir_size(p) for c, p in paths.items()}
    print(
        f"demo cube {resolution:g} deg {years[0]}-{years[1]}: generated in {gen_s:.1f} s "
        f"(0 s if it existed); on disk: "
        + ", ".join(f"{c} {s / 1e6:.0f} MB" for c, s in sizes.items())
        + f", total {sum(sizes.values()) / 1e6:.0f} MB"
    )

    cat_path = data_dir / "bench-catalog.yaml"
    cat_path.write_text(
        catalog.dump_catalog(
            demo.demo_catalog_sources(resolution, years, data_ref=str(data_dir)), title="bench"
        )
    )
    start = time.perf_counter()
    catalog.open_cube("esdc-demo-ts", catalog=cat_path)
    print(f"first open in a process (parses the catalog with intake): {time.perf_counter() - start:.3f} s")
    var = args.variable
    print(f"\n{'chunking':8s} {'read':10s} {'ours [s]':>10s} {'raw zarr [s]':>13s} {'ours/raw':>9s}")
    for chunking, path in paths.items():
        results = bench_chunking(f"esdc-demo-{chunking}", path, var, cat_path, args.repeat)
        for read, (mo, mr) in results.items():
            print(f"{chunking:8s} {read:10s} {mo:10.4f} {mr:13.4f} {mo / mr:9.2f}")
        mo, mr = (sum(r[i] for r in results.values()) for i in (0, 1))
        print(
            f"{chunking:8s} {'both':10s} {mo:10.4f} {mr:13.4f} {mo / mr:9.2f}   <- open, a map and a pixel series (target <= 1.2)"
        )


def bench_chunking(
    name: str, path: Path, var: str, cat_path: Path, repeat: int
) -> dict[str, tuple[float, float]]:
    """Median seconds (ours, raw) of open + one map read and open + one pixel time-series read."""
    import zarr

    from platform_lib import catalog

    n_t, n_y, n_x = zarr.open_array(path / var, mode="r").shape
    t_idx, y_idx, x_idx = n_t // 2, n_y * 2 // 3, n_x // 3

    def ours_open():  # the catalog file is parsed once per process (cached); the store is opened anew
        return catalog.open_cube(name, catalog=cat_path)[var]

    def raw_open():
        return zarr.open_array(path / var, mode="r")

    cases = {
        "map": (lambda: ours_open().isel(time=t_idx).values, lambda: raw_open()[t_idx, :, :]),
        "pixel-ts": (
            lambda: ours_open().isel(lat=y_idx, lon=x_idx).values,
            lambda: raw_open()[:, y_idx, x_idx],
        ),
    }
    results = {}
    for read, (ours, raw) in cases.items():
        np.testing.assert_array_equal(ours(), raw())  # the same bytes
        t_ours, t_raw = [], []
        for _ in range(repeat):  # interleaved, so drift hits both alike
            s = time.perf_counter()
            ours()
            t_ours.append(time.perf_counter() - s)
            s = time.perf_counter()
            raw()
            t_raw.append(time.perf_counter() - s)
        results[read] = (statistics.median(t_ours), statistics.median(t_raw))
    return results


if __name__ == "__main__":
    main()
