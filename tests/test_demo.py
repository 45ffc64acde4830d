"""The demo cube generator: ESDC conventions, physical structure, injected events, stores, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from platform_lib import demo
from platform_lib.errors import EsdlError

ESDC_UNITS = {  # the units the real ESDC v3 uses for these names
    "air_temperature_2m": "degC",
    "max_air_temperature_2m": "degC",
    "precipitation_era5": "mm d-1",
    "radiation_era5": "J m-2",
    "gross_primary_productivity": "g C m-2 d-1",
    "terrestrial_ecosystem_respiration": "g C m-2 d-1",
    "latent_energy": "MJ m-2 d-1",
    "sensible_heat": "MJ m-2 d-1",
    "root_moisture": "m3 m-3",
    "surface_moisture": "m3 m-3",
    "evaporative_stress": "1",
    "kndvi": "1",
}


@pytest.fixture(scope="module")
def cube(demo_cubes):
    return xr.open_zarr(demo_cubes["ts"]).load()


def test_dims_axes_and_dtypes(cube):
    assert tuple(cube["air_temperature_2m"].dims) == ("time", "lat", "lon")
    lat, lon = cube["lat"].values, cube["lon"].values
    assert np.all(np.diff(lat) > 0), "lat must be ascending"
    assert lat[0] == -87.5 and lat[-1] == 87.5  # 5-degree cell centres
    assert lon[0] == -177.5 and lon[-1] == 177.5
    assert len(cube.data_vars) >= 10
    assert all(v.dtype == np.float32 for v in cube.data_vars.values())


def test_time_axis_is_8_daily_restarting_each_year(cube):
    t = pd.DatetimeIndex(cube["time"].values)
    assert len(t) == 12 * 46
    assert str(t[0].date()) == "2001-01-05"
    per_year = pd.Series(t.year).value_counts()
    assert set(per_year.values) == {46}
    for year in (2002, 2008):
        first = t[t.year == year][0]
        assert str(first.date()) == f"{year}-01-05", "each year restarts on 1 January (+4 d centre)"
    steps = np.diff(t.values).astype("timedelta64[D]").astype(int)
    assert set(steps) <= {8, 5, 6}  # 8 days, and the short last step of a (leap) year


def test_cf_and_esdc_attributes(cube):
    for key in (
        "Conventions",
        "title",
        "time_coverage_start",
        "time_coverage_end",
        "project",
        "license",
        "geospatial_lat_min",
        "geospatial_lat_max",
        "geospatial_lon_min",
        "geospatial_lon_max",
    ):
        assert key in cube.attrs, key
    assert cube.attrs["Conventions"] == "CF-1.9"
    assert cube.attrs["time_coverage_start"] == "2001-01-05"
    for name, units in ESDC_UNITS.items():
        attrs = cube[name].attrs
        assert attrs["units"] == units, name
        for key in (
            "long_name",
            "standard_name",
            "source",
            "references",
            "time_coverage_start",
            "time_coverage_end",
        ):
            assert attrs.get(key), f"{name} lacks {key}"


def test_land_variables_are_nan_over_ocean_only(cube):
    pacific = dict(lat=2.5, lon=-152.5)  # open ocean
    sahara_lat, sahara_lon = 22.5, 12.5
    t = cube.isel(time=100)
    assert np.isnan(t["gross_primary_productivity"].sel(**pacific).item())
    assert np.isnan(t["root_moisture"].sel(**pacific).item())
    assert np.isfinite(t["air_temperature_2m"].sel(**pacific).item()), "ERA5 variables cover the ocean"
    assert np.isfinite(t["root_moisture"].sel(lat=sahara_lat, lon=sahara_lon).item())
    land_share = float(np.isfinite(cube["root_moisture"].isel(time=0)).mean())
    assert 0.2 < land_share < 0.45


def test_coverage_periods_give_nan_outside():
    ds = demo.make_demo_cube(resolution=10.0, years=(2020, 2021)).compute()
    gpp = ds["gross_primary_productivity"]
    assert np.isfinite(gpp.sel(time="2020")).any()
    assert gpp.sel(time="2021").isnull().all(), "FLUXCOM ends in 2020 as in the ESDC"
    assert np.isfinite(ds["air_temperature_2m"].sel(time="2021")).all()
    # kNDVI has gaps (clouds, polar night) over land
    land = np.isfinite(ds["root_moisture"])
    assert int((land & ds["kndvi"].isnull()).sum()) > 0


def test_seasonal_cycle_follows_latitude_and_hemisphere(cube):
    clim = cube["air_temperature_2m"].groupby("time.month").mean()
    north = clim.sel(lat=52.5, method="nearest").mean("lon")
    south = clim.sel(lat=-42.5, method="nearest").mean("lon")
    assert north.sel(month=7) > north.sel(month=1) + 8
    assert south.sel(month=1) > south.sel(month=7) + 3
    zonal = cube["air_temperature_2m"].mean(["time", "lon"])
    assert zonal.sel(lat=2.5) > zonal.sel(lat=62.5) + 20 > zonal.sel(lat=87.5) + 20


def test_variables_are_coupled_and_trending(cube):
    land = cube.where(np.isfinite(cube["root_moisture"]))
    summer = land.sel(time=land["time.month"].isin([6, 7, 8])).sel(lat=slice(30, 60))
    anom = summer - summer.mean("time")
    dry = anom["root_moisture"] < -0.03
    hot = anom["air_temperature_2m"] > 2
    stressed = hot & dry
    assert float(anom["gross_primary_productivity"].where(stressed).mean()) < float(
        anom["gross_primary_productivity"].where(~stressed).mean()
    )
    assert float(anom["kndvi"].where(stressed).mean()) < float(anom["kndvi"].where(~stressed).mean())
    yearly = cube["air_temperature_2m"].groupby("time.year").mean(...)
    assert float(yearly.sel(year=slice(2009, 2012)).mean()) > float(yearly.sel(year=slice(2001, 2004)).mean())


def test_injected_events_are_where_the_metadata_says(cube):
    events = demo.injected_events(cube)
    assert {"eu-heatwave-2003", "ru-heat-drought-2010", "chukotka-heatwave-2007"} <= set(events["event_id"])
    t = cube["air_temperature_2m"]
    clim = t.groupby("time.dayofyear").mean()
    anomaly = t.groupby("time.dayofyear") - clim
    for ev in events.itertuples():
        mask = demo.event_mask(cube, ev.event_id)
        assert int(mask.sum()) > 0, ev.event_id
        inside = float(anomaly.where(mask).mean())
        # same pixels, same season, other years: no event there
        assert inside > 4.0, f"{ev.event_id}: temperature anomaly inside is only {inside:.1f}"
        steps = mask.any(["lat", "lon"])
        window = pd.DatetimeIndex(cube["time"].values[steps.values])
        assert window.min() >= ev.start and window.max() <= ev.end
    ru = demo.event_mask(cube, "ru-heat-drought-2010")
    rm = cube["root_moisture"]
    rm_anom = rm.groupby("time.dayofyear") - rm.groupby("time.dayofyear").mean()
    assert float(rm_anom.where(ru).mean()) < -0.02, "the Russian event is a drought as well"
    chukotka = demo.event_mask(cube, "chukotka-heatwave-2007").any("time")
    lons = cube["lon"].values[chukotka.any("lat").values]
    assert lons.min() < -170 and lons.max() > 170, "the Bering event crosses the dateline"


def test_event_mask_unknown_id_lists_known(cube):
    with pytest.raises(EsdlError, match="eu-heatwave-2003"):
        demo.event_mask(cube, "atlantis-2005")


def test_both_chunkings_hold_identical_values(demo_cubes):
    ts = xr.open_zarr(demo_cubes["ts"])
    mp = xr.open_zarr(demo_cubes["map"])
    assert ts["kndvi"].encoding["chunks"] == (256, 6, 6)
    assert mp["kndvi"].encoding["chunks"] == (1, 36, 72)
    assert demo_cubes["ts"].name == "esdc-8d-5deg-256x6x6-demo1.2.zarr"
    assert demo_cubes["map"].name == "esdc-8d-5deg-1x36x72-demo1.2.zarr"
    xr.testing.assert_identical(ts.load().drop_attrs(), mp.load().drop_attrs())


def test_stores_are_zarr3_consolidated(demo_cubes):
    for path in demo_cubes.values():
        group = zarr.open_group(path, mode="r")
        assert group.metadata.zarr_format == 3
        assert group.metadata.consolidated_metadata is not None
        assert not list(path.parent.glob(".*tmp*")), "no temporary store left behind"


def test_generation_is_deterministic():
    a = demo.make_demo_cube(resolution=10.0, years=(2003, 2003))["kndvi"].values
    b = demo.make_demo_cube(resolution=10.0, years=(2003, 2003))["kndvi"].values
    np.testing.assert_array_equal(a, b)
    c = demo.make_demo_cube(resolution=10.0, years=(2003, 2003), seed=1)["kndvi"].values
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(c))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 0.35}, "resolution 0.35 degrees is not allowed"),
        ({"resolution": 7.0}, "divisor of 180"),
        ({"years": (2005, 2001)}, "first <= last"),
        ({"years": (1900, 1901)}, "1979-2030"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(EsdlError, match=message):
        demo.make_demo_cube(**kwargs)


def test_failed_write_leaves_nothing(tmp_path):
    """A write that fails half-way leaves neither the target nor a temporary store."""
    import dask.array as da

    from platform_lib.storage import write_zarr_atomic

    def explode(block):
        raise RuntimeError("disk on fire")

    good = da.zeros((4, 2), chunks=(2, 2))
    bad = good.map_blocks(
        lambda b, block_info=None: explode(b) if block_info[0]["chunk-location"][0] == 1 else b,
        dtype=good.dtype,
    )
    ds = xr.Dataset({"v": (("time", "x"), bad)})
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_zarr_atomic(ds, tmp_path / "x.zarr", progress=False)
    assert list(tmp_path.iterdir()) == []
    # and an existing store is kept unless overwrite is asked for
    write_zarr_atomic(xr.Dataset({"v": (("time", "x"), good)}), tmp_path / "x.zarr", progress=False)
    with pytest.raises(EsdlError, match="already exists"):
        write_zarr_atomic(ds, tmp_path / "x.zarr", progress=False)
    assert float(xr.open_zarr(tmp_path / "x.zarr")["v"].sum()) == 0.0


def test_cli_generate_prints_stores_and_sizes(tmp_path):
    generate = [sys.executable, "-m", "platform_lib.cli", "cubes", "generate", "--data-dir", str(tmp_path)]
    out = subprocess.run(
        [*generate, "--resolution", "10", "--years", "2003"], capture_output=True, text=True, check=True
    )
    assert "esdc-8d-10deg-46x3x3-demo1.2.zarr" in out.stdout
    assert "esdc-8d-10deg-1x18x36-demo1.2.zarr" in out.stdout
    assert "demo cubes ready" in out.stdout
    assert (tmp_path / "esdc-8d-10deg-1x18x36-demo1.2.zarr").is_dir()
    bad = subprocess.run([*generate, "--resolution", "0.35"], capture_output=True, text=True)
    assert bad.returncode == 2 and "resolution 0.35 degrees is not allowed" in bad.stderr


def test_without_injection_the_cube_differs_only_where_and_after_the_events_are():
    """The benchmark calibrates on event-free runs: they must be the same weather, minus the events."""
    make_demo_cube, event_mask, injected_events = demo.make_demo_cube, demo.event_mask, demo.injected_events
    with_events = make_demo_cube(resolution=5.0, years=(2003, 2003))
    without = make_demo_cube(resolution=5.0, years=(2003, 2003), inject_events=False)
    assert injected_events(without).empty and list(injected_events(with_events)["event_id"]) == [
        "eu-heatwave-2003"
    ]
    truth = event_mask(with_events).values
    footprint, start = truth.any(axis=0), np.flatnonzero(truth.any(axis=(1, 2)))[0]
    for name in ["air_temperature_2m", "root_moisture", "gross_primary_productivity"]:
        a, b = with_events[name].values, without[name].values
        differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        assert differs[truth].mean() > 0.9, name  # the event changes (nearly) every one of its cells
        assert not differs[:, ~footprint].any() and not differs[:start].any(), name


# --- closer to Earth: magnitudes against published ranges ------------------------------------------

EARTH_RES, EARTH_YEARS = 2.0, (2003, 2006)


@pytest.fixture(scope="module")
def earth():
    """A 2-degree cube of four years, without injected events (the climate, not the extremes)."""
    return demo.make_demo_cube(resolution=EARTH_RES, years=EARTH_YEARS, inject_events=False).load()


def _land_area_m2(ds):
    res = float(ds.attrs["geospatial_lat_resolution"])
    cell = (np.deg2rad(res) * 6.371e6) ** 2 * np.cos(np.deg2rad(ds["lat"].values))[:, None]
    return cell * demo.land_fraction(res)


def _box(da, lat, lon):
    return da.sel(lat=slice(*lat), lon=slice(*lon))


def test_ice_sheets_stay_frozen_in_summer(earth):
    """ERA5 (Hersbach et al. 2020): the East Antarctic plateau's January mean is about -25 to -35 C and
    the Antarctic coast's about 0 C; central Greenland's July mean is about -10 C."""
    t = earth["air_temperature_2m"]
    land = np.isfinite(earth["root_moisture"].isel(time=0))
    january = t.sel(time=t["time.month"] == 1).mean("time").where(land)
    july = t.sel(time=t["time.month"] == 7).mean("time").where(land)
    antarctica = january.sel(lat=slice(-90, -60))
    assert float(antarctica.max()) < 1.0, "no Antarctic land is warmer than about 0 C in January"
    assert -40.0 < float(january.sel(lat=slice(-90, -80)).mean()) < -15.0, "the plateau is far below 0"
    greenland_interior = _box(july, (66, 80), (-48, -28))
    assert int(greenland_interior.count()) > 0
    assert float(greenland_interior.max()) < 0.0, "Greenland's interior stays frozen in July"
    assert float(january.sel(lat=slice(-10, 10)).mean()) > 20.0, "the tropics stay warm"


def test_deserts_and_rain_belts_are_where_they_are_on_earth(earth):
    """Annual mean precipitation (GPCP, Adler et al. 2003) and GPP (Jung et al. 2019): the Sahara, Arabia,
    the Australian interior, the Namib/Kalahari and the Gobi are dry and bare; the Amazon and Congo wet."""
    rain = earth["precipitation_era5"].mean("time")
    gpp = earth["gross_primary_productivity"].mean("time")
    wet = {"Amazon": ((-10, 0), (-70, -55)), "Congo": ((-4, 4), (15, 28))}
    dry = {
        "Sahara": ((18, 28), (-10, 30)),
        "Arabia": ((18, 28), (42, 55)),
        "Australian interior": ((-30, -20), (122, 140)),
        "Namib/Kalahari": ((-28, -20), (14, 22)),
        "Gobi": ((40, 46), (95, 110)),
    }
    for name, (lat, lon) in wet.items():
        assert float(_box(rain, lat, lon).mean()) > 4.0, name  # mm d-1; observed 5-7
    for name, (lat, lon) in dry.items():
        assert float(_box(rain, lat, lon).mean()) < 1.0, name  # mm d-1; observed < 1
        assert float(_box(gpp, lat, lon).mean()) < 1.0, name  # g C m-2 d-1; observed < 1
    europe = float(_box(rain, (45, 55), (0, 25)).mean())
    assert 1.0 < europe < 4.0, "mid-latitude storm tracks: observed about 2 mm d-1"


def test_gpp_magnitudes_match_fluxcom(earth):
    """Beer et al. (2010, doi:10.1126/science.1184984): 123 +- 8 Pg C yr-1 of land GPP; Jung et al. (2019,
    FLUXCOM): tropical rain forests about 8-10 g C m-2 d-1 as annual means."""
    gpp = earth["gross_primary_productivity"].mean("time")
    for name, (lat, lon) in {"Amazon": ((-10, 0), (-70, -55)), "Congo": ((-4, 4), (15, 28))}.items():
        assert 7.0 < float(_box(gpp, lat, lon).mean()) < 11.0, name
    # the total on the default 1-degree grid: a 2-degree grid drops more coastal land (cells under half
    # land are ocean), about 8 % of the total
    default = demo.make_demo_cube(years=(2003, 2004), inject_events=False)
    gpp = default["gross_primary_productivity"].mean("time").load()
    total = float(np.nansum(gpp.values * _land_area_m2(default)) * 365.25 / 1e15)
    assert 115.0 < total < 131.0, f"global land GPP {total:.0f} Pg C yr-1 on the 1-degree grid"


def test_latent_heat_exceeds_sensible_heat_over_land(earth):
    """Wild et al. (2015, doi:10.1007/s00382-014-2430-z) and Jung et al. (2019): land means of about
    38-45 W m-2 latent and 25-35 W m-2 sensible heat. The cube stores MJ m-2 d-1 (1 W m-2 = 0.0864)."""
    area = _land_area_m2(earth)
    means = {}
    for name in ("latent_energy", "sensible_heat"):
        field = earth[name].mean("time").values / 0.0864  # W m-2
        weight = np.where(np.isfinite(field), area, 0.0)
        means[name] = float(np.nansum(field * weight) / weight.sum())
    assert 33.0 < means["latent_energy"] < 55.0, means
    assert 20.0 < means["sensible_heat"] < 40.0, means
    assert means["latent_energy"] > means["sensible_heat"], means
    sahara = _box(earth["sensible_heat"].mean("time"), (18, 28), (-10, 30))
    amazon = _box(earth["latent_energy"].mean("time"), (-10, 0), (-70, -55))
    assert float(sahara.mean()) > float(_box(earth["latent_energy"].mean("time"), (18, 28), (-10, 30)).mean())
    assert float(amazon.mean()) / 0.0864 > 80.0, "the Amazon evaporates about 100 W m-2"


def test_intrinsic_dimension_map_varies_between_climate_zones(earth):
    """Mahecha et al. (2020, Earth Syst. Dynam. 11, 201-234): the dimension differs between climate zones.

    Same variables as notebooks/03-intrinsic-dimension.ipynb.
    """
    from platform_lib.analysis import intrinsic_dimension

    variables = [
        "air_temperature_2m",
        "precipitation_era5",
        "radiation_era5",
        "gross_primary_productivity",
        "terrestrial_ecosystem_respiration",
        "latent_energy",
        "sensible_heat",
        "root_moisture",
        "surface_moisture",
        "evaporative_stress",
        "kndvi",
    ]
    dim = intrinsic_dimension(earth, variables).compute()
    values = dim.values[np.isfinite(dim.values)]
    shares = pd.Series(values).value_counts(normalize=True)
    assert (shares >= 0.05).sum() >= 3, f"at least three dimensions each on 5 % of land: {shares.to_dict()}"
    assert shares.max() < 0.8, shares.to_dict()
    tropics = float(_box(dim, (-10, 5), (-75, -50)).mean())  # Amazon: weak seasons, own cloud weather
    boreal = float(_box(dim, (55, 70), (60, 130)).mean())  # Siberia: one strong seasonal cycle
    assert tropics > boreal + 1.0, (tropics, boreal)


def test_a_kept_store_of_another_cube_is_refused_not_passed_off(tmp_path):
    """Store names carry the resolution and chunk shape, not the years or the seed: 2001-2012 and 2001-2021
    share a name at 256 time steps a chunk, and so do two seeds. Asked for another cube than a kept store
    holds, the generator says so (the years are read from the store as the seed is: see stored_demo)."""
    from platform_lib.demo import stored_demo, write_demo_cubes
    from platform_lib.errors import EsdlError

    first = write_demo_cubes(tmp_path, resolution=30.0, years=(2003, 2003), progress=False)
    with pytest.raises(
        EsdlError, match=r"holds the demo cube of years \[2003, 2003\] and seed 0, not \[2003, 2003\] and 1"
    ):
        write_demo_cubes(tmp_path, resolution=30.0, years=(2003, 2003), seed=1, progress=False)
    again = write_demo_cubes(
        tmp_path, resolution=30.0, years=(2003, 2003), seed=1, overwrite=True, progress=False
    )
    assert again == first and stored_demo(again["ts"]) == {"years": [2003, 2003], "seed": 1}
