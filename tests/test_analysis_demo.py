"""The analyses on the demo cube: same answers as the per-pixel references, and the injected events found."""

from __future__ import annotations

import doctest

import dask
import numpy as np
import pytest
import xarray as xr
from analysis_reference import reference_block, reference_dimension

import platform_lib.analysis.events as events_module
import platform_lib.analysis.extremes as extremes_module
import platform_lib.analysis.intrinsic as intrinsic_module
from platform_lib.analysis import (
    anomaly_features,
    anomaly_scores,
    detect_events,
    event_skill,
    intrinsic_dimension,
)
from platform_lib.compute import gap_fill
from platform_lib.demo import event_mask, injected_events, make_demo_cube

DIM_VARS = [
    "air_temperature_2m",
    "precipitation_era5",
    "radiation_era5",
    "root_moisture",
    "gross_primary_productivity",
    "kndvi",
]
EVENT_VARS = ["air_temperature_2m", "root_moisture", "gross_primary_productivity"]


@pytest.fixture(scope="module")
def demo(request) -> xr.Dataset:
    """The small demo cube (5 deg, 2001-2012): the session's stores when conftest offers them, in memory."""
    try:
        paths = request.getfixturevalue("demo_cubes")
        cube = xr.open_zarr(paths["ts"])
    except pytest.FixtureLookupError:
        cube = make_demo_cube(resolution=5.0, years=(2001, 2012))
    with dask.config.set(scheduler="threads"):
        return cube.persist()


def test_intrinsic_dimension_on_the_demo_cube_equals_the_per_pixel_reference(demo):
    dim = intrinsic_dimension(demo, DIM_VARS)
    with dask.config.set(scheduler="threads"):
        got = dim.values
        filled = gap_fill(demo[DIM_VARS]).compute()
    stacked = (
        filled.to_dataarray("variable").transpose("lat", "lon", "time", "variable").values.astype(np.float64)
    )
    ref = np.array(
        [
            [reference_dimension(stacked[i, j]) for j in range(stacked.shape[1])]
            for i in range(stacked.shape[0])
        ]
    )
    np.testing.assert_array_equal(got, ref)
    land = np.isfinite(got)
    assert 300 < land.sum() < got.size  # land pixels have a dimension, the ocean has none
    assert set(np.unique(got[land])) >= {3.0, 4.0}


def test_scores_on_demo_features_equal_the_per_pixel_reference(demo):
    europe = demo.sel(lat=slice(35, 60), lon=slice(-10, 30))
    features = anomaly_features(europe, EVENT_VARS + ["kndvi"])  # kNDVI brings gaps: rows left out
    scores = anomaly_scores(features, ensemble_methods=None)
    with dask.config.set(scheduler="threads"):
        feats = features.transpose("lat", "lon", "time", "variable").values
        got = np.stack([scores[m].transpose("lat", "lon", "time").values for m in scores.data_vars], axis=-1)
    n_lat, n_lon, n_time, n_feat = feats.shape
    ref = reference_block(feats.reshape(-1, n_time, n_feat))
    np.testing.assert_allclose(got.reshape(-1, n_time, 6), ref[..., 5:], atol=1e-6, equal_nan=True)
    assert np.isfinite(got).sum() > 0.3 * got.size  # the box is part sea


def test_the_injected_events_are_found(demo):
    """Honest threshold: raw KNN-Gamma scores above their 99.9th percentile, events of >= 8 cells."""
    features = anomaly_features(demo, EVENT_VARS)
    scores = anomaly_scores(features, ["KNN_Gamma"], quantiles=False, ensemble=None)
    with dask.config.set(scheduler="threads"):
        found = detect_events(scores, 0.999, variable="KNN_Gamma", min_size=8, features=features)
    truth = event_mask(demo)
    skill = event_skill(found.labels, truth)
    assert skill["event_recall"] == 1.0  # every injected event touched
    assert skill["recall"] >= 0.8 and skill["precision"] >= 0.5, skill
    table = found.table
    for ev in injected_events(demo).itertuples():
        truth_one = event_mask(demo, ev.event_id).values
        ids = np.unique(found.labels.values[truth_one & (found.labels.values > 0)])
        assert len(ids) == 1, (ev.event_id, ids)  # one detected event per injected one, the dateline too
        row = table.set_index("event_id").loc[int(ids[0])]
        assert row.start <= ev.end and row.end >= ev.start
        assert "air_temperature_2m" in row.variables
        if ev.lon_min > ev.lon_max:
            assert row.lon_min > row.lon_max  # the detected event crosses the dateline as well
    assert len(table) <= 12


def test_docstring_examples_run():
    for module in (intrinsic_module, extremes_module, events_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 3 and result.failed == 0, module.__name__
