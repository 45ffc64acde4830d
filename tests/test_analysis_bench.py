"""Smoke run of bench/analysis.py's comparisons at the smallest size, so the benchmark does not rot.

Only that the sections run and that ours and the references agree; speed is never asserted here.
"""

from __future__ import annotations

import dask
import pytest
import xarray as xr
from bench_helpers import loaded_bench


@pytest.fixture(scope="module")
def bench():
    with loaded_bench("analysis") as module:
        yield module


def test_bench_sections_run_and_agree(bench, capsys, demo_cubes):
    small = xr.open_zarr(demo_cubes["ts"]).isel(time=slice(0, 92), lat=slice(20, 32), lon=slice(30, 50))
    with dask.config.set(scheduler="threads"):
        cube = small.persist()  # two years over Europe from the session's demo cube
    bench.bench_intrinsic(cube, repeat=1)
    bench.bench_scores(cube, n_pixels=3, repeat=1)
    out = capsys.readouterr().out
    n = cube.sizes["lat"] * cube.sizes["lon"]
    runs = len(bench.THREADS)  # ours on 1 thread, then on all cores
    assert out.count(f"same on {n}/{n} px") == runs
    assert out.count("max |diff| 0.0e+00") + out.count("e-16") + out.count("e-17") >= 3 * runs
    assert out.count("ratio") == 4 * runs
