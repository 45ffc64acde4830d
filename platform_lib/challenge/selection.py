"""Which extremes a challenge is about: growing-season extremes detected in a cube, the demo cube's
injected events, or both.

A detected event is a connected set of cells whose standardised anomaly of ``variable`` (against the
cell's mean and spread at that step of the year) is among the top ``1 - quantile`` of the cells in the
growing season: where the target's climatology at that step is at least its median over land, so a
warm spell in the polar night (no GPP to lose) is not an event. Labelling and the table are
:func:`platform_lib.analysis.detect_events`' (26-connectivity, dateline wrap-around).

>>> from platform_lib.demo import make_demo_cube
>>> cube = make_demo_cube(resolution=5.0, years=(2001, 2012))
>>> table = challenge_events(cube, "both", quantile=0.99)
>>> table["event_id"].tolist()[:3], len(table) > 5
(['eu-heatwave-2003', 'chukotka-heatwave-2007', 'ru-heat-drought-2010'], True)
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.arguments import number_argument, text_argument
from platform_lib.errors import EsdlError, allowed

EVENT_SOURCES = ("detected", "injected", "both")
DEFAULT_DETECT_VARIABLE = "air_temperature_2m"
DEFAULT_QUANTILE = 0.995


def growing_season_extremes(
    cube: xr.Dataset,
    target: str,
    *,
    variable: str = DEFAULT_DETECT_VARIABLE,
    quantile: float = DEFAULT_QUANTILE,
    min_size: int = 8,
) -> pd.DataFrame:
    """The event table of growing-season extremes of ``variable`` (see the module docstring).

    Event ids are ``detected-<n>``. The score cube is labelled chunk by chunk (a year at a time), so
    memory stays about three copies of one variable.
    """
    from platform_lib.analysis import detect_events
    from platform_lib.challenge.minicubes import load_variable, slot_sums
    from platform_lib.ml.stats import season_slots

    for name, what in ((variable, "detect variable"), (target, "target")):
        if name not in cube.data_vars:
            raise EsdlError(f"the cube has no {what} {name!r}; it has: {allowed(cube.data_vars)}.")
    quantile = number_argument(quantile, "quantile", low=0, high=1, low_open=True, high_open=True)
    slots = season_slots(cube["time"].values)
    values = load_variable(cube, variable)
    total, count = slot_sums(values, slots)
    squares = np.zeros_like(total)
    for s in range(total.shape[0]):
        block = values[slots == s].astype(np.float64)
        squares[s] = np.nansum(block**2, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        target_total, target_count = slot_sums(load_variable(cube, target), slots)
        target_clim = target_total / target_count
    active = target_clim >= np.nanmedian(np.where(target_clim > 0, target_clim, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = ((values - mean[slots]) / std[slots]).astype(np.float32)
    score[~active[slots]] = np.nan
    del values
    da = xr.DataArray(
        score,
        dims=("time", "lat", "lon"),
        coords={d: cube[d] for d in ("time", "lat", "lon")},
        name=f"{variable}_anomaly",
    ).chunk({"time": 46})
    # the scores are in this process's memory: label them here, in threads, rather than ship them to a
    # distributed cluster the session may have open (the cube was read there)
    with dask.config.set(scheduler="threads"):
        table = detect_events(da, quantile, min_size=min_size).table
    table["event_id"] = [f"detected-{i}" for i in table["event_id"]]
    return table


def challenge_events(
    cube: xr.Dataset,
    source: str = "both",
    *,
    target: str = "gross_primary_productivity",
    variable: str = DEFAULT_DETECT_VARIABLE,
    quantile: float = DEFAULT_QUANTILE,
    min_size: int = 8,
) -> pd.DataFrame:
    """The events of a challenge: ``"detected"`` (:func:`growing_season_extremes`), ``"injected"`` (a demo
    cube's own, :func:`platform_lib.demo.injected_events`) or ``"both"`` (injected first; a detected event
    whose box and window overlap an injected one's is the same event and is left out).
    """
    from platform_lib.demo import injected_events

    source = text_argument(source, "events", choices=EVENT_SOURCES)
    parts = []
    if source in ("injected", "both"):
        if "injected_events" not in cube.attrs:
            raise EsdlError(
                f"events={source!r} needs a demo cube (it records its injected events); this cube has "
                "none: use events='detected'."
            )
        parts.append(injected_events(cube))
    if source in ("detected", "both"):
        found = growing_season_extremes(cube, target, variable=variable, quantile=quantile, min_size=min_size)
        if parts:
            found = found[~_overlaps_any(found, parts[0])]
        parts.append(found)
    return pd.concat(parts, ignore_index=True)


def _overlaps_any(table: pd.DataFrame, others: pd.DataFrame) -> np.ndarray:
    """Per row of ``table``: does its window and box overlap a row of ``others``?"""
    from platform_lib.catalog import extents_overlap

    out = np.zeros(len(table), dtype=bool)
    for i, a in enumerate(table.itertuples()):
        box = (a.lon_min, a.lat_min, a.lon_max, a.lat_max)
        out[i] = any(
            a.start <= b.end
            and b.start <= a.end
            and extents_overlap([b.lon_min, b.lat_min, b.lon_max, b.lat_max], box)
            for b in others.itertuples()
        )
    return out
