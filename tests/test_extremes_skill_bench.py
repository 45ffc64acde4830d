"""Smoke run of bench/extremes_skill.py at its smallest size, so the benchmark does not rot.

The protocol's own promises are checked, not its figures: the thresholds leave the event-free
calibration cubes with at most the allowed false events and are the lowest that do, and the held-out
seeds never calibrate.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import loaded_bench


@pytest.fixture(scope="module")
def bench():
    with loaded_bench("extremes_skill") as module:
        yield module


def test_thresholds_are_the_lowest_that_leave_the_calibration_runs_the_allowed_false_events(bench):
    args = bench.parse_args(["--small", "--feature-sets", "anomalies"])
    thresholds, scales, calibration = bench.calibrate(args, bench.FEATURE_SETS["anomalies"])
    assert set(thresholds) == {*bench.METHODS, bench.ENSEMBLE}
    assert args.false_events == 1  # the protocol's tolerance: one false event in all calibration runs
    for method, threshold in thresholds.items():
        runs = [c[method] for c in calibration]
        assert sum(bench.events_above(r, threshold, args.min_size) for r in runs) <= args.false_events, method
        below = bench.calibrated_scale(runs)
        below = below[below < threshold]
        if below.size:  # the next lower calibration value makes more false events than allowed
            assert sum(bench.events_above(r, below[-1], args.min_size) for r in runs) > args.false_events, (
                method
            )


def test_small_run_prints_a_table_of_skills_for_every_feature_set(bench, capsys):
    results = bench.run(bench.parse_args(["--small"]))
    out = capsys.readouterr().out
    assert set(results) == set(bench.FEATURE_SETS)
    for rows in results.values():
        assert set(rows) == {*bench.METHODS, bench.ENSEMBLE}
        for row in rows.values():
            assert all(0.0 <= row[k][0] <= 1.0 and row[k][1] >= 0.0 for k in bench.SKILL_KEYS)
    assert out.count("| KNN_Gamma |") == len(bench.FEATURE_SETS) and "best: " in out
    # the 2003 heatwave is strong: the best score finds it on every held-out seed
    assert max(r[m]["event_recall"][0] for r in results.values() for m in r) == 1.0


def test_calibration_and_evaluation_seeds_must_differ(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--calibrate", "1", "2", "--evaluate", "2", "3"])
    assert "must differ; both have [2]" in capsys.readouterr().err


def test_surprise_orders_like_the_score_and_puts_the_calibration_maximum_on_top(bench):
    import xarray as xr

    scale = np.sort(np.random.default_rng(0).normal(size=1000))
    s = bench.surprise(xr.DataArray(np.array([-5.0, 0.0, scale[-1], 99.0])), scale).values
    assert np.all(np.diff(s) >= 0) and s[0] == 0.0
    assert s[-1] == pytest.approx(np.log10(1001)) and s[2] == pytest.approx(np.log10(1001 / 2))
