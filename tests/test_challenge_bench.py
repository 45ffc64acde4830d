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


def test_the_fresh_process_helper_reports_a_childs_own_time_peak_and_extras():
    import doctest

    with loaded_bench("fresh_process") as helper:
        result = doctest.testmod(helper)
        assert result.attempted >= 1 and result.failed == 0
        out = helper.run_fresh("elapsed = 0.25\nblob = bytearray(200 * 2**20)\n" + helper.REPORT)
    assert out["seconds"] == 0.25 and out["peak_mib"] > 200  # the child's own 200 MiB, read from VmHWM
