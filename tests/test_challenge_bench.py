"""Smoke run of bench/challenge.py at its smallest size, so the benchmark does not rot: both ways run in
their own processes, agree on every value and climatology, and the report says so."""

from __future__ import annotations

from bench_helpers import loaded_bench


def test_the_bench_cuts_the_same_minicubes_both_ways_and_reports_the_ratios(capsys):
    with loaded_bench("challenge") as bench:
        result = bench.main(["--small"])
    out = capsys.readouterr().out
    assert result["minicubes"] >= 4 and result["events"] >= 2
    for way in ("ours", "plain"):
        assert result[way]["seconds"] > 0 and result[way]["peak_mib"] > 50
    assert "values and climatologies agree" in out and "x faster" in out
