"""Keep bench/ml_loader.py from rotting: run it on the session's small demo cube (timings not asserted)."""

from __future__ import annotations

import pytest
import xarray as xr
from bench_helpers import loaded_bench

pytest.importorskip("torch", reason="the 'ml' extra (torch) is not installed")
pytest.importorskip("xbatcher", reason="the 'dev' extra (xbatcher) is not installed")


def test_ml_loader_bench_runs_on_the_demo_cube(demo_cubes, capsys):
    cube = xr.open_zarr(demo_cubes["ts"])  # the same resolution and years: the bench reuses the stores
    resolution = float(abs(cube["lat"][1] - cube["lat"][0]))
    years = f"{cube['time'].dt.year.values[0]}-{cube['time'].dt.year.values[-1]}"
    args = ["--data-dir", str(demo_cubes["ts"].parent), "--resolution", str(resolution), "--years", years]
    args += ["--xbatcher-seconds", "0.3", "--batch-size", "16", "--rechunk-mem", "64MB", "--repeat", "1"]
    args += ["--patches", "small", "--variables", "4", "--workers", "0"]  # 2 cells of the matrix
    with loaded_bench("ml_loader") as bench:
        assert bench.main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("ts ", "map "))]
    assert len(rows) == 2 and {r[0] for r in rows} == {"ts", "map"} and {r[3] for r in rows} == {"0"}
    assert all(float(r[9]) > 0 for r in rows)  # ours/raw of every cell
    assert "worst cell: " in out and out.count("variables read from the store") == 2
    assert "peak RSS over start" in out
