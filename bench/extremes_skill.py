"""Benchmark: how well the extremes detection finds the demo cube's injected events, on held-out seeds.

A protocol that cannot be tuned to its test:

1. **Calibration** on demo cubes generated with injection switched off
   (``make_demo_cube(..., inject_events=False)``, seeds ``--calibrate``, 101-105): whatever is
   detected there is a false event. For each feature set and score, the threshold is the lowest one at
   which the calibration cubes have at most ``--false-events`` events of at least ``--min-size`` cells
   in all (default 1: one false event in 5 x 12 = 60 cube-years). The thresholds never see an injected
   event.

How the protocol was fixed: seeds 1-5 were evaluated while it was written (with no false event allowed:
cell recall 0.83 for the best score, the first step of each event, where the generator ramps it in,
went undetected); the tolerance of one false event and the feature sets were then chosen on
development seeds 201-205; seeds 11-15 were run once, with the protocol as it stands.
2. **Evaluation** on cubes with the events injected, seeds ``--evaluate`` (disjoint from the
   calibration seeds; 11-15 by default, held out: never run before the protocol was fixed), with those
   thresholds: cell- and event-level precision and recall
   (:func:`~platform_lib.analysis.event_skill` against :func:`~platform_lib.demo.event_mask`), mean and
   standard deviation over the seeds.

The task is declared **directional**: the injected events are hot and dry (heat, drought, and their
effect on productivity), and the detector is told so. The features are each pixel's standardised
anomalies (:func:`~platform_lib.analysis.anomaly_features`) with their sign turned so that hot, dry
and unproductive is positive, and the other side cut to zero, ``max(sign * z, 0)``: a wet or cold
extreme of the generator's own weather is no anomaly of this kind. (Non-directional scores see those
too and count them as false events; the ``--both-sides`` run shows what that costs.)

Scores: the five raw scores of Flach et al. (2017) (thresholds across pixels need raw scores, not
per-pixel quantiles), and an ensemble: the mean of KDE, REC and KNN-Gamma each turned into its
surprise in the calibration runs' scores (``-log10`` of the share of calibration cells that score as
high: one global scale per score, learnt without injected events). Feature sets, as in Flach et al. (2017): the anomalies alone; smoothed by an exponentially
weighted moving average (``ewma_lambda``, MultivariateAnomalies.jl's ``EWMA``); with a time-delay
embedding (``embedding=(delay, dimension)``, its ``TDE``).

Prints one row per feature set and score, and the time each part took.

    .venv/bin/python bench/extremes_skill.py [--small] [--resolution 5] [--years 2001 2012]
        [--calibrate 101 102 103 104 105] [--evaluate 1 2 3 4 5] [--both-sides]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence

import dask
import numpy as np
import xarray as xr

from platform_lib.analysis import (
    BEST_METHODS,
    METHODS,
    anomaly_features,
    anomaly_scores,
    detect_events,
    event_skill,
)
from platform_lib.analysis.events import label_events
from platform_lib.demo import event_mask, injected_events, make_demo_cube

# hot, dry and unproductive is positive
DIRECTIONS = {"air_temperature_2m": 1.0, "root_moisture": -1.0, "gross_primary_productivity": -1.0}
FEATURE_SETS: dict[str, dict] = {
    "anomalies": {},
    "ewma": {"ewma_lambda": 0.5},
    "embedding": {"embedding": (1, 2)},
}
ENSEMBLE = "ensemble"
SKILL_KEYS = ("precision", "recall", "event_precision", "event_recall")


def directional(features: xr.DataArray, directions: dict[str, float]) -> xr.DataArray:
    """Features turned so the named direction is positive, the other side cut to zero.

    Lagged copies (``<name>_lag<k>``) take the sign of their variable.

    >>> import numpy as np
    >>> f = xr.DataArray(np.array([[1.0, -2.0], [-1.0, 3.0]]), dims=("time", "variable"),
    ...                  coords={"variable": ["air_temperature_2m", "root_moisture"]})
    >>> directional(f, DIRECTIONS).values.tolist()
    [[1.0, 2.0], [0.0, 0.0]]
    """
    base = [str(v).split("_lag")[0] for v in features["variable"].values]
    sign = xr.DataArray(
        [directions[b] for b in base], dims="variable", coords={"variable": features["variable"]}
    )
    return (features * sign).clip(min=0.0)


def score_cube(
    seed: int,
    resolution: float,
    years: tuple[int, int],
    inject: bool,
    feature_set: dict,
    both_sides: bool,
) -> tuple[xr.Dataset, xr.Dataset]:
    """The demo cube of ``seed`` and its raw scores (all five methods), computed into memory."""
    cube = make_demo_cube(resolution=resolution, years=years, seed=seed, inject_events=inject)
    features = anomaly_features(cube, list(DIRECTIONS), **feature_set)
    if not both_sides:
        features = directional(features, DIRECTIONS)
    scores = anomaly_scores(features, METHODS, quantiles=False, ensemble=None)
    with dask.config.set(scheduler="threads"):
        return cube, scores.compute()


def calibrated_scale(calibration: Sequence[xr.DataArray]) -> np.ndarray:
    """The calibration runs' finite scores, sorted: a score's quantile among them is its global scale."""
    values = np.concatenate([np.asarray(s.values).ravel() for s in calibration])
    return np.sort(values[np.isfinite(values)])


def surprise(score: xr.DataArray, scale: np.ndarray) -> xr.DataArray:
    """``-log10`` of the share of calibration scores ``scale`` at or above ``score`` (NaN stays NaN).

    The tail of a score in one global unit: 3 means one calibration cell in a thousand scores as
    high; above every calibration score it is ``log10(n + 1)``. (Quantiles themselves crowd at 1 in
    the tail, where events are.)

    >>> surprise(xr.DataArray([0.5, 2.0, np.nan]), np.array([0.0, 1.0, 1.0])).round(3).values.tolist()
    [0.301, 0.602, nan]
    """
    above = scale.size - np.searchsorted(scale, np.asarray(score.values), side="left")
    value = -np.log10((above + 1) / (scale.size + 1))
    return score.copy(data=np.where(np.isfinite(score.values), value, np.nan))


def with_ensemble(scores: xr.Dataset, scales: dict[str, np.ndarray]) -> xr.Dataset:
    """``scores`` plus the ensemble: the mean of the best methods' calibrated surprises."""
    parts = [surprise(scores[m], scales[m]) for m in BEST_METHODS]
    return scores.assign({ENSEMBLE: sum(parts[1:], parts[0]) / len(parts)})


def events_above(score: xr.DataArray, threshold: float, min_size: int) -> int:
    """How many events of at least ``min_size`` cells ``score >= threshold`` makes."""
    labels = label_events(score >= threshold, min_size=min_size, chunked=False)
    return int(np.unique(labels.values[labels.values > 0]).size)


def calibrate_threshold(calibration: Sequence[xr.DataArray], min_size: int, allowed: int = 0) -> float:
    """The lowest threshold at which the calibration cubes have at most ``allowed`` events of ``min_size``
    cells in all (they have no injected event: every one is false).

    Bisection over the calibration scores' own values (the answer is one of them, or just above
    the largest): at most ~log2(cells) labellings per cube. (The count of events can rise again at a
    lower threshold when events split; the bisection takes the first crossing it meets.)
    """
    values = calibrated_scale(calibration)
    lo, hi = 0, values.size  # values[hi:] thresholds are clean (hi == size: above every score)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(events_above(s, values[mid], min_size) for s in calibration) > allowed:
            lo = mid + 1
        else:
            hi = mid
    return float(values[hi]) if hi < values.size else float(np.nextafter(values[-1], np.inf))


def calibrate(
    args: argparse.Namespace, feature_set: dict
) -> tuple[dict[str, float], dict[str, np.ndarray], list[xr.Dataset]]:
    """Thresholds per score, the ensemble's scales, and the calibration runs' scores (no injected event)."""
    years = tuple(args.years)
    calibration = [
        score_cube(s, args.resolution, years, False, feature_set, args.both_sides)[1] for s in args.calibrate
    ]
    scales = {m: calibrated_scale([c[m] for c in calibration]) for m in BEST_METHODS}
    calibration = [with_ensemble(c, scales) for c in calibration]
    thresholds = {
        m: calibrate_threshold([c[m] for c in calibration], args.min_size, args.false_events)
        for m in [*METHODS, ENSEMBLE]
    }
    return thresholds, scales, calibration


def evaluate(
    args: argparse.Namespace, feature_set: dict, thresholds: dict[str, float], scales: dict[str, np.ndarray]
) -> tuple[dict[str, list[dict[str, float]]], int]:
    """Skill of each score on each held-out seed (events injected), and the injected events per cube."""
    skills: dict[str, list[dict[str, float]]] = {m: [] for m in thresholds}
    n_true = 0
    for seed in args.evaluate:
        cube, scores = score_cube(
            seed, args.resolution, tuple(args.years), True, feature_set, args.both_sides
        )
        scores = with_ensemble(scores, scales)
        truth = event_mask(cube)
        n_true = len(injected_events(cube))
        for m, threshold in thresholds.items():
            found = detect_events(scores, None, threshold=threshold, variable=m, min_size=args.min_size)
            skills[m].append(event_skill(found.labels, truth))
    return skills, n_true


def run(args: argparse.Namespace) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """Calibrate, evaluate and print the table; returns {feature set: {score: {key: (mean, std)}}}."""
    results: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for name in args.feature_sets:
        feature_set = FEATURE_SETS[name]
        t0 = time.perf_counter()
        thresholds, scales, _ = calibrate(args, feature_set)
        t1 = time.perf_counter()
        skills, n_true = evaluate(args, feature_set, thresholds, scales)
        t2 = time.perf_counter()
        results[name] = {
            m: {
                k: (float(np.mean([s[k] for s in runs])), float(np.std([s[k] for s in runs])))
                for k in SKILL_KEYS
            }
            for m, runs in skills.items()
        }
        print(
            f"\n## features: {name} {feature_set or ''} ({'both sides' if args.both_sides else 'hot-dry'}):"
            f" calibrated on seeds {list(args.calibrate)} without events in {t1 - t0:.0f} s,"
            f" evaluated on seeds {list(args.evaluate)} ({n_true} injected events each) in {t2 - t1:.0f} s"
        )
        print("| score | threshold | cell precision | cell recall | event precision | event recall |")
        print("| --- | --- | --- | --- | --- | --- |")
        for m, row in results[name].items():
            cells = " | ".join(f"{row[k][0]:.2f} +- {row[k][1]:.2f}" for k in SKILL_KEYS)
            print(f"| {m} | {thresholds[m]:.4g} | {cells} |")
    best = max(
        ((n, m) for n in results for m in results[n]),
        key=lambda nm: min(results[nm[0]][nm[1]][k][0] for k in SKILL_KEYS),
    )
    lowest = min(results[best[0]][best[1]][k][0] for k in SKILL_KEYS)
    print(f"\nbest: {best[1]} on {best[0]} features; its lowest mean skill {lowest:.2f} (target >= 0.9)")
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10 degrees, 2001-2005, 2+2 seeds (a smoke run)")
    parser.add_argument("--resolution", type=float, default=5.0)
    parser.add_argument("--years", type=int, nargs=2, default=(2001, 2012))
    parser.add_argument("--calibrate", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    parser.add_argument("--evaluate", type=int, nargs="+", default=[11, 12, 13, 14, 15])
    parser.add_argument("--min-size", type=int, default=8, help="cells an event needs (default 8)")
    parser.add_argument(
        "--false-events",
        type=int,
        default=1,
        help="false events allowed in all calibration runs together (default 1: one in 60 cube-years)",
    )
    parser.add_argument("--feature-sets", nargs="+", choices=list(FEATURE_SETS), default=list(FEATURE_SETS))
    parser.add_argument(
        "--both-sides", action="store_true", help="non-directional features (cold and wet count)"
    )
    args = parser.parse_args(argv)
    if args.small:
        args.resolution, args.years, args.calibrate, args.evaluate = 10.0, (2001, 2005), [101, 102], [1, 2]
    if set(args.calibrate) & set(args.evaluate):
        parser.error(
            f"calibration and evaluation seeds must differ; both have {sorted(set(args.calibrate) & set(args.evaluate))}"
        )
    return args


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    run(parse_args())
