"""Real records with published answers, run through the library as a scientist would.

Each record is written as an ESDC-style Zarr cube and catalogued (tests/real_data.py), opened with
:func:`platform_lib.catalog.open_cube`, then gap-filled, deseasonalised, split into time scales and
scored. The known answers come from the literature or the data themselves, never from our scores:

- Mauna Loa CO2 1958-2001 (statsmodels): growth ~1.32 ppm/yr (NOAA GML annual means, 315.98 ppm in
  1959 and 371.32 ppm in 2001: 55.34 ppm in 42 years), a seasonal cycle of ~6 ppm peak to trough with
  its maximum in May and its minimum in late September / early October (Keeling et al. 1976, Tellus
  28, 538; Thoning et al. 1989, J. Geophys. Res. 94, 8549);
- Seattle weather 2012-2015 (vega_datasets): the 8-day windows holding the record's five wettest
  days must score high;
- Pacific winter SST anomalies 1963-2012 (eofs): the strongest El Nino winters of the period are
  1982/83 and 1997/98 (NOAA CPC Oceanic Nino Index, peak ONI 2.2 and 2.4), so the Nino 3.4 box
  (5 S-5 N, 170 W-120 W) must score them highest, and an event across 180 degrees is one event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from platform_lib.analysis import (
    anomaly_features,
    anomaly_scores,
    decompose_time_scales,
    detect_events,
    intrinsic_dimension,
    label_events,
)
from platform_lib.analysis.cycles import time_in_years
from platform_lib.catalog import describe_cube, find_cubes, open_cube, validate_catalog
from platform_lib.compute import anomalies, gap_fill, mean_seasonal_cycle, seasonal_step

pytest.importorskip("statsmodels.api", reason="statsmodels ships the CO2 record (the dev extra installs it)")
pytest.importorskip(
    "vega_datasets", reason="vega_datasets ships Seattle's weather (the dev extra installs it)"
)
pytest.importorskip(
    "eofs.examples", reason="eofs ships the Pacific SST anomalies (the dev extra installs it)"
)

from real_data import seattle_daily, write_real_cubes  # noqa: E402

SEATTLE_VARIABLES = ["precipitation", "temp_max", "temp_min", "wind"]
#: the Pacific, in one piece across the dateline (lon_min > lon_max)
PACIFIC = (115.0, -25.0, -95.0, 65.0)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_real_cubes(tmp_path_factory.mktemp("real"))


def test_the_real_cubes_are_valid_catalog_entries(catalog):
    """The catalog's own checks (metadata and stores opened) pass for the three cubes."""
    assert validate_catalog(catalog, open_stores=True) == []


@pytest.fixture(scope="module")
def co2(catalog) -> xr.DataArray:
    return open_cube("real-co2-mlo", catalog=catalog)["co2"].load()


def _years(cube: xr.DataArray) -> np.ndarray:
    return time_in_years(cube["time"].values)


def test_the_co2_cube_is_8_daily_with_the_record_gaps(co2):
    # 44 whole years of 46 windows; the record starts 1958-03-29 (10 empty windows before it) and has
    # 59 weekly gaps, some of which leave an 8-day window empty
    assert co2.sizes == {"time": 44 * 46, "lat": 1, "lon": 1}
    assert int(co2.isnull().sum()) == 73 and bool(co2[:10].isnull().all())
    assert str(co2["time"].values[0])[:10] == "1958-01-05" and co2.attrs["units"] == "ppm"


def test_gap_filling_along_the_trend_recovers_withheld_co2_windows(co2):
    """Withhold 200 observed windows (seeded): ``gap_fill(trend=True)`` must give them back within
    0.5 ppm on average (1.5 ppm at worst); the plain mean-cycle fill (ESDL.jl's gapFillMSC) fills a
    rising record with the level of its middle years and is off by ~15 ppm."""
    observed = np.flatnonzero(co2.notnull().values[:, 0, 0])
    hidden = np.random.default_rng(0).choice(observed, 200, replace=False)
    holed = co2.copy(data=co2.values.copy())
    holed[hidden] = np.nan
    truth = co2.values[hidden, 0, 0]
    along_trend = np.abs(gap_fill(holed, trend=True).values[hidden, 0, 0] - truth)
    mean_cycle = np.abs(gap_fill(holed).values[hidden, 0, 0] - truth)
    assert along_trend.mean() < 0.5 and along_trend.max() < 1.5, (along_trend.mean(), along_trend.max())
    assert mean_cycle.mean() > 10 * along_trend.mean()  # why trend=True exists
    assert not bool(gap_fill(co2, trend=True).isnull().any())


def test_the_co2_trend_is_the_published_growth_rate(co2):
    """The linear trend of the gap-filled, deseasonalised record: 1.32 ppm/yr (NOAA GML annual means
    1959-2001, see the module docstring), tolerance 0.08 ppm/yr (the growth was not constant: ~0.8
    ppm/yr in the 1960s, ~1.5 in the 1990s, so the fitted line depends a little on the weighting)."""
    deseasonalised = anomalies(gap_fill(co2, trend=True))
    slope = np.polyfit(_years(co2), deseasonalised.values[:, 0, 0], 1)[0]
    assert slope == pytest.approx(1.318, abs=0.08)


def test_the_co2_seasonal_cycle_peaks_in_may_and_spans_6_ppm(co2):
    """Mean seasonal cycle of the gap-filled record minus its linear trend: peak to trough 6 ppm
    (tolerance 0.7 ppm), maximum in May, minimum between mid September and mid October (Keeling et al.
    1976; the two harmonics of Thoning et al. 1989, 2.8 and 0.75 ppm, tests/test_analysis_cycles.py)."""
    filled = gap_fill(co2, trend=True)
    t = _years(co2)
    line = np.polyval(np.polyfit(t, filled.values[:, 0, 0], 1), t)
    cycle = mean_seasonal_cycle(filled - line[:, None, None]).values[:, 0, 0]
    assert cycle.max() - cycle.min() == pytest.approx(6.0, abs=0.7)
    peak = pd.Timestamp("2001-01-01") + pd.Timedelta(days=8 * int(cycle.argmax()) + 4)
    trough = pd.Timestamp("2001-01-01") + pd.Timedelta(days=8 * int(cycle.argmin()) + 4)
    assert peak.month == 5, peak
    assert pd.Timestamp("2001-09-15") <= trough <= pd.Timestamp("2001-10-15"), trough


def test_the_co2_time_scale_split_finds_the_trend_and_the_seasonal_cycle(co2):
    """decompose_time_scales on the gap-filled record (kept in one test: its trend handling is being
    aligned with ESDL.jl's filterTSFFT). The annual scale carries the 6 ppm seasonal cycle (tolerance
    0.7 ppm, as above); what the split removes as linear trend rises 1.32 ppm/yr (tolerance 0.08);
    the fast scale (weather, sampling) is small next to both (std < 0.5 ppm)."""
    x = gap_fill(co2, trend=True).values[:, 0, 0]
    long_term, annual, fast = decompose_time_scales(x)
    cycle = mean_seasonal_cycle(xr.DataArray(annual, dims="time", coords={"time": co2["time"]})).values
    assert cycle.max() - cycle.min() == pytest.approx(6.0, abs=0.7)
    removed = x - (long_term + annual + fast)
    assert np.polyfit(_years(co2), removed, 1)[0] == pytest.approx(1.318, abs=0.08)
    assert fast.std() < 0.5 < annual.std()


@pytest.fixture(scope="module")
def seattle(catalog) -> xr.Dataset:
    return open_cube("real-seattle-weather", catalog=catalog).load()


def _window_of(day: str, times: pd.DatetimeIndex) -> pd.Timestamp:
    """The 8-daily window (ESDC axis) that holds ``day``."""
    day = pd.Timestamp(day)
    step = seasonal_step(pd.DatetimeIndex([day]))[0]
    return times[(times.year == day.year) & (seasonal_step(times) == step)][0]


def test_seattle_weather_loads_offline_and_has_three_dimensions(seattle):
    """Four variables, two of them near copies (daily max and min temperature, r = 0.96 in the
    8-daily means): the intrinsic dimension at 95% explained variance is 3, as a principal component
    analysis of the standardised series (numpy's SVD) says; at the annual time scale, where the
    variables share one seasonal rhythm, it is lower than at the fast scale (Mahecha et al. 2020,
    Earth Syst. Dynam. 11, 201: the seasonal cycle compresses the variables)."""
    assert seattle.sizes == {"time": 4 * 46, "lat": 1, "lon": 1}
    x = np.stack([seattle[v].values[:, 0, 0] for v in SEATTLE_VARIABLES], axis=1)
    assert not np.isnan(x).any()
    assert np.corrcoef(x[:, 1], x[:, 2])[0, 1] > 0.9
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    shares = np.cumsum(np.linalg.svd(z, compute_uv=False) ** 2) / z.size
    pca_dimension = int(np.argmax(shares > 0.95)) + 1
    assert pca_dimension == 3
    assert int(intrinsic_dimension(seattle, SEATTLE_VARIABLES).values.item()) == pca_dimension
    scales = intrinsic_dimension(seattle, SEATTLE_VARIABLES, time_scales=True)
    assert int(scales.sel(scale="annual").item()) < int(scales.sel(scale="fast").item())


def test_seattle_windows_of_the_wettest_days_score_high(seattle):
    """The five wettest days of the record (from its own precipitation column: 2015-03-15, 2012-11-19,
    2015-12-08 -- the December 2015 atmospheric river --, 2015-11-14 and 2014-03-05) lie in 8-day
    windows whose ensemble score (quantile-normalised, 0..1) is at least 0.85 each and 0.9 on average:
    five random windows would all reach 0.85 with a chance of 0.15**5 < 1e-4."""
    daily = seattle_daily()
    wettest = daily["precipitation"].nlargest(5).index
    assert sorted(wettest.strftime("%Y-%m-%d")) == [
        "2012-11-19", "2014-03-05", "2015-03-15", "2015-11-14", "2015-12-08",
    ]  # fmt: skip
    scores = anomaly_scores(anomaly_features(seattle, SEATTLE_VARIABLES))["ensemble"].values[:, 0, 0]
    times = pd.DatetimeIndex(seattle["time"].values)
    known = np.array([scores[times.get_loc(_window_of(str(day.date()), times))] for day in wettest])
    assert known.min() >= 0.85 and known.mean() >= 0.9, known


@pytest.fixture(scope="module")
def pacific(catalog) -> xr.Dataset:
    return open_cube("real-pacific-sst", bbox=PACIFIC, catalog=catalog).load()


def test_the_pacific_opens_in_one_piece_across_the_dateline(catalog, pacific):
    stored = open_cube("real-pacific-sst", catalog=catalog)
    assert bool((np.diff(stored["lon"].values) > 0).all())  # the store: sorted -180..180, split at 180
    # the catalog extent: the cell edges of eofs' grid (5 degree cells centred 117.5 E .. 97.5 W)
    assert describe_cube("real-pacific-sst", catalog=catalog)["spatial_extent"] == [115.0, -25.0, -95.0, 65.0]
    assert find_cubes(bbox=(-60, 0, -20, 40), catalog=catalog) == []  # the Atlantic: not the Pacific
    assert "real-pacific-sst" in find_cubes(bbox=(170, -5, -170, 5), catalog=catalog)
    lon = pacific["lon"].values
    assert lon[0] == 117.5 and lon[-1] == -97.5 and list(lon[12:14]) == [177.5, -177.5]
    assert pacific.sizes == {"time": 50, "lat": 18, "lon": 30}


def _nino34_mean(field: xr.DataArray) -> pd.Series:
    box = field.sel(lat=slice(-5, 5)).where((field["lon"] >= -170) & (field["lon"] <= -120))
    return box.mean(("lat", "lon")).to_series()


def test_the_leading_eof_of_the_pacific_is_enso(pacific):
    """eofs' own solver on the cube as our catalog serves it (cos-latitude weights, as in eofs'
    sst_example): PC1 is largest in the winters 1982/83 and 1997/98 (NOAA CPC ONI), follows the Nino
    3.4 mean SST (r > 0.9) and its pattern peaks on the equator east of the dateline."""
    from eofs.xarray import Eof

    sst = pacific["sst"]
    weights = np.sqrt(np.cos(np.deg2rad(sst["lat"].values)))[:, None]
    solver = Eof(sst, weights=weights)
    pc1 = solver.pcs(npcs=1, pcscaling=1)[:, 0].to_series()
    nino34 = _nino34_mean(sst)
    pc1 = pc1 * np.sign(np.corrcoef(pc1, nino34)[0, 1])
    assert sorted(pc1.nlargest(2).index.year) == [1983, 1998]
    assert np.corrcoef(pc1, nino34)[0, 1] > 0.9
    # the pattern: strongest in the eastern equatorial Pacific (Rasmusson and Carpenter 1982, Mon. Wea.
    # Rev. 110, 354), here as the correlation of PC1 with each cell's SST, signed as PC1
    pattern = solver.eofsAsCorrelation(neofs=1)[0] * np.sign(
        np.corrcoef(solver.pcs(npcs=1)[:, 0], nino34)[0, 1]
    )
    peak = pattern.where(pattern == pattern.max(), drop=True)
    assert -10 <= float(peak["lat"][0]) <= 10 and -180 < float(peak["lon"][0]) < -80, peak


def test_anomaly_scores_rank_the_great_el_nino_winters_first_in_nino34(pacific):
    """Raw KNN-Gamma scores of the yearly anomalies (one step a year), averaged over the Nino 3.4 box:
    the two highest are the winters 1982/83 and 1997/98 (NOAA CPC ONI, the strongest of 1963-2012)."""
    features = anomaly_features(pacific, ["sst"], steps_per_year=1, standardize=False)
    scores = anomaly_scores(features, ["KNN_Gamma"], quantiles=False, ensemble=None)["KNN_Gamma"]
    box = _nino34_mean(scores.compute())
    assert sorted(box.nlargest(2).index.year) == [1983, 1998]
    assert box.nlargest(2).min() > 1.5 * box.nlargest(3).iloc[-1]  # well ahead of the third


@pytest.mark.parametrize("chunked", [False, True])
def test_an_event_across_180_degrees_is_one_event_with_a_wrapping_bbox(pacific, chunked):
    """On the Pacific served across the dateline, every event with cells on both sides of 180 is one
    event whose table bbox wraps (lon_min > lon_max), in memory and chunk by chunk; the largest is the
    1990/91 North Pacific anomaly (16 cells, 160 E to 160 W at the 0.99 quantile). Before the fix in
    event_grid.grid_geometry, a regional grid across 180 got lon_min -180, lon_max 180."""
    features = anomaly_features(pacific, ["sst"], steps_per_year=1, standardize=False)
    scores = anomaly_scores(features, ["KNN_Gamma"], quantiles=False, ensemble=None)["KNN_Gamma"]
    if chunked:
        scores = scores.chunk({"time": 10, "lat": 6, "lon": 10})
    events = detect_events(scores, quantile=0.99, min_size=3, chunked=chunked)
    labels = events.labels.compute()
    west = labels.where(labels["lon"] > 170).max(("lat", "lon"))
    east = labels.where(labels["lon"] < -170).max(("lat", "lon"))
    across = sorted({int(i) for i in np.intersect1d(west.values, east.values) if i > 0})
    assert across, "no event on both sides of 180"
    table = events.table.set_index("event_id")
    for event_id in across:
        cells = labels == event_id
        lons = labels["lon"].where(cells.any(("time", "lat")), drop=True).values
        assert (lons > 0).any() and (lons < 0).any()
        assert table.loc[event_id, "lon_min"] > table.loc[event_id, "lon_max"], table.loc[event_id]
    crossing = table.loc[across]
    big = crossing.loc[crossing["n_cells"].idxmax()]
    assert pd.Timestamp(big["start"]).year == 1991 and big["lon_min"] >= 150 and big["lon_max"] <= -150


def test_the_pacific_stored_split_at_180_gives_the_same_events(catalog, pacific):
    """The stored cube (sorted -180..180: -177.5 .. -97.5, then 117.5 .. 177.5) is labelled in one
    piece: the same events as on the cube served across the dateline, labels back in stored order,
    and the columns at 97.5 W and 117.5 E (the jump, 145 degrees apart) never join."""
    stored = open_cube("real-pacific-sst", catalog=catalog).load()

    def found(cube: xr.Dataset, chunked: bool):
        features = anomaly_features(cube, ["sst"], steps_per_year=1, standardize=False)
        scores = anomaly_scores(features, ["KNN_Gamma"], quantiles=False, ensemble=None)["KNN_Gamma"]
        scores = scores.chunk({"time": 10, "lat": 6, "lon": 10}) if chunked else scores
        return detect_events(scores, quantile=0.99, min_size=3, chunked=chunked)

    served = found(pacific, False)
    for chunked in (False, True):
        events = found(stored, chunked)
        labels = events.labels.compute()
        assert bool((labels["lon"] == stored["lon"]).all())
        pd.testing.assert_frame_equal(events.table, served.table)
        xr.testing.assert_equal(labels, served.labels.sel(lon=stored["lon"]))
    mask = xr.zeros_like(stored["sst"], dtype=bool)
    mask.loc[{"time": "1983", "lat": 2.5, "lon": [-177.5, 177.5]}] = True  # touch across 180
    mask.loc[{"time": "1998", "lat": 2.5, "lon": [-97.5, 117.5]}] = True  # neighbours in storage only
    labels = label_events(mask).sel(lat=2.5)
    assert labels.sel(time="1983", lon=[-177.5, 177.5]).values.ravel().tolist() == [1, 1]
    assert labels.sel(time="1998", lon=[-97.5, 117.5]).values.ravel().tolist() == [3, 2]
