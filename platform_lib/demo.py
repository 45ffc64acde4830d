"""Deterministic demo cubes that imitate the Earth System Data Cube v3 (ESDC, DeepESDL).

There is no internet on a platform laptop or in CI, so the embedded platform ships its own data: a
generator of realistic, reproducible cubes with the ESDC's conventions and a few injected extreme events
whose extents are known (the ground truth for the extremes analysis).

Conventions copied from ESDC v3.0.2:

- dims ``(time, lat, lon)``; ``lat`` ascending cell centres, ``lon`` -180..180 cell centres;
- 8-daily time axis, 46 steps a year restarting every 1 January (the last step of a year is short);
  time stamps sit at the centre of each 8-day window (1979-01-05 is the ESDC's first);
- float32 variables with ESDC names, ``units``, ``long_name``, ``standard_name``, ``source``,
  ``references``, ``time_coverage_start/end``; CF-1.9 global attributes;
- land variables are NaN over the ocean, and every variable is NaN outside its coverage period
  (FLUXCOM variables end in 2020, as in the real cube); kNDVI has cloud and polar-night gaps.

Structure: an annual cycle that follows latitude and hemisphere, a migrating tropical rain belt,
monsoon and storm-track rains, warming and greening trends, spatially coherent weather noise and
coupling between variables (hot and dry lowers soil moisture, GPP and kNDVI, raises sensible heat).
Geography comes from the real land/sea mask (``global-land-mask``): cold ice sheets on Antarctica and
Greenland, deserts where the subtropical highs and distance from the upwind coast put them (Sahara,
Arabia, Australian interior, Namib, Atacama, Gobi). Magnitudes sit in published ranges: about 120 Pg C
yr-1 of land GPP and 8-10 g C m-2 d-1 in the Amazon (Beer et al. 2010; Jung et al. 2019), more latent
than sensible heat over land (Wild et al. 2015). How many independent drivers act varies with the
climate zone (one strong seasonal cycle in the boreal zone; own cloud and leaf dynamics in the tropics
and drylands), so the intrinsic-dimension map has structure (Mahecha et al. 2020).

>>> ds = make_demo_cube(resolution=10.0, years=(2003, 2003))
>>> dict(ds.sizes)
{'time': 46, 'lat': 18, 'lon': 36}
>>> float(ds.lat[0]), float(ds.lon[0])
(-85.0, -175.0)
>>> injected_events(ds)["event_id"].tolist()
['eu-heatwave-2003']
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.arguments import flag_argument
from platform_lib.errors import EsdlError
from platform_lib.storage import write_zarr_atomic

STEPS_PER_YEAR = 46
STEP_DAYS = 8
DEMO_VERSION = "demo1.2"
DEFAULT_RESOLUTION = 1.0
DEFAULT_YEARS = (2001, 2021)
MIN_YEAR, MAX_YEAR = 1979, 2030


@dataclass(frozen=True)
class VariableInfo:
    """Metadata of one ESDC variable as the demo cube carries it."""

    name: str
    long_name: str
    standard_name: str
    units: str
    source: str
    references: str
    land_only: bool
    coverage: tuple[str, str]  # first and last date with data (ISO)


_ERA5 = (
    "ERA5 reanalysis (imitated by the ESDL demo generator)",
    "Hersbach et al. (2020), doi:10.1002/qj.3803",
)
_FLUXCOM = (
    "FLUXCOM-RS (imitated by the ESDL demo generator)",
    "Jung et al. (2019), doi:10.1038/s41597-019-0076-8",
)
_GLEAM = (
    "GLEAM v3.5 (imitated by the ESDL demo generator)",
    "Martens et al. (2017), doi:10.5194/gmd-10-1903-2017",
)
_MODIS = (
    "MODIS MCD43A4 kNDVI (imitated by the ESDL demo generator)",
    "Camps-Valls et al. (2021), doi:10.1126/sciadv.abc7447",
)

VARIABLES: dict[str, VariableInfo] = {
    v.name: v
    for v in [
        VariableInfo(
            "air_temperature_2m",
            "Air temperature at 2 m",
            "air_temperature",
            "degC",
            *_ERA5,
            False,
            ("1979-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "max_air_temperature_2m",
            "Daily maximum air temperature at 2 m",
            "air_temperature",
            "degC",
            *_ERA5,
            False,
            ("1979-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "precipitation_era5",
            "Total precipitation",
            "precipitation_flux",
            "mm d-1",
            *_ERA5,
            False,
            ("1979-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "radiation_era5",
            "Surface solar radiation downwards",
            "surface_downwelling_shortwave_flux_in_air",
            "J m-2",
            *_ERA5,
            False,
            ("1979-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "gross_primary_productivity",
            "Gross primary productivity",
            "gross_primary_productivity_of_biomass_expressed_as_carbon",
            "g C m-2 d-1",
            *_FLUXCOM,
            True,
            ("2001-01-01", "2020-12-31"),
        ),
        VariableInfo(
            "terrestrial_ecosystem_respiration",
            "Terrestrial ecosystem respiration",
            "ecosystem_respiration_carbon_flux",
            "g C m-2 d-1",
            *_FLUXCOM,
            True,
            ("2001-01-01", "2020-12-31"),
        ),
        VariableInfo(
            "latent_energy",
            "Latent heat flux",
            "surface_upward_latent_heat_flux",
            "MJ m-2 d-1",
            *_FLUXCOM,
            True,
            ("2001-01-01", "2020-12-31"),
        ),
        VariableInfo(
            "sensible_heat",
            "Sensible heat flux",
            "surface_upward_sensible_heat_flux",
            "MJ m-2 d-1",
            *_FLUXCOM,
            True,
            ("2001-01-01", "2020-12-31"),
        ),
        VariableInfo(
            "root_moisture",
            "Root-zone soil moisture",
            "soil_moisture_content",
            "m3 m-3",
            *_GLEAM,
            True,
            ("1980-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "surface_moisture",
            "Surface soil moisture",
            "soil_moisture_content",
            "m3 m-3",
            *_GLEAM,
            True,
            ("1980-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "evaporative_stress",
            "Evaporative stress",
            "evaporative_stress",
            "1",
            *_GLEAM,
            True,
            ("1980-01-01", "2021-12-31"),
        ),
        VariableInfo(
            "kndvi",
            "Kernel normalized difference vegetation index",
            "kndvi",
            "1",
            *_MODIS,
            True,
            ("2000-03-01", "2021-12-31"),
        ),
    ]
}


@dataclass(frozen=True)
class InjectedEvent:
    """An extreme event written into the demo cube: land pixels inside the box during the window."""

    event_id: str
    name: str
    kind: str
    start: str
    end: str
    lat_min: float
    lat_max: float
    lon_min: float  # lon_min > lon_max means the box crosses the dateline
    lon_max: float
    temperature_anomaly: float  # degC added at the peak
    dryness: float  # 0..1: how much rain and soil water are removed at the peak

    @property
    def variables(self) -> list[str]:
        """The variables the event changes."""
        drought = ["precipitation_era5", "root_moisture", "surface_moisture", "evaporative_stress"]
        heat = ["air_temperature_2m", "max_air_temperature_2m", "sensible_heat", "latent_energy"]
        bio = ["gross_primary_productivity", "terrestrial_ecosystem_respiration", "kndvi"]
        return heat + (drought if self.dryness > 0 else []) + bio


EVENTS: tuple[InjectedEvent, ...] = (
    InjectedEvent(
        "eu-heatwave-2003",
        "European heatwave 2003",
        "heatwave",
        "2003-07-20",
        "2003-08-24",
        42.0,
        54.0,
        -5.0,
        18.0,
        9.0,
        0.6,
    ),
    InjectedEvent(
        "chukotka-heatwave-2007",
        "Bering heatwave 2007 (crosses the dateline)",
        "heatwave",
        "2007-06-26",
        "2007-07-31",
        60.0,
        70.0,
        160.0,
        -165.0,
        9.0,
        0.3,
    ),
    InjectedEvent(
        "ru-heat-drought-2010",
        "Russian heat-drought 2010",
        "heat-drought",
        "2010-07-04",
        "2010-08-21",
        48.0,
        60.0,
        35.0,
        56.0,
        10.0,
        0.8,
    ),
    InjectedEvent(
        "us-drought-2012",
        "US Great Plains drought 2012",
        "drought",
        "2012-06-17",
        "2012-08-29",
        34.0,
        46.0,
        -104.0,
        -86.0,
        6.0,
        0.9,
    ),
    InjectedEvent(
        "au-heatwave-2019",
        "Australian heatwave 2019/20",
        "heatwave",
        "2019-12-11",
        "2020-01-24",
        -38.0,
        -25.0,
        135.0,
        153.0,
        8.0,
        0.7,
    ),
)


# --- axes and masks -------------------------------------------------------------------------------


def _check_args(resolution: float, years: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    resolution = float(resolution)
    allowed_res = "a divisor of 180 between 0.25 and 30, for example 0.25, 0.5, 1, 2, 2.5, 5 or 10"
    if not (0.25 <= resolution <= 30) or abs(180 / resolution - round(180 / resolution)) > 1e-9:
        raise EsdlError(f"resolution {resolution!r} degrees is not allowed: use {allowed_res}.")
    try:
        first, last = (int(y) for y in years)
    except (TypeError, ValueError):
        raise EsdlError(f"years {years!r} must be two integers (first, last), e.g. (2001, 2021).") from None
    if first > last or first < MIN_YEAR or last > MAX_YEAR:
        raise EsdlError(f"years {first}-{last} are not allowed: first <= last, within {MIN_YEAR}-{MAX_YEAR}.")
    return resolution, (first, last)


def check_resolution(resolution: float) -> float:
    """``resolution`` (degrees) as a float if the generator makes that grid, else an error naming the ones
    it makes (``esdl cubes generate --resolution`` checks with this before anything is written).

    >>> check_resolution(2.5)
    2.5
    """
    return _check_args(resolution, DEFAULT_YEARS)[0]


def time_axis(years: tuple[int, int]) -> pd.DatetimeIndex:
    """The ESDC 8-daily axis: 46 window centres a year, restarting each 1 January.

    >>> t = time_axis((2001, 2002))
    >>> len(t), str(t[0].date()), str(t[45].date()), str(t[46].date())
    (92, '2001-01-05', '2001-12-31', '2002-01-05')
    """
    stamps = [
        pd.Timestamp(year=y, month=1, day=1) + pd.Timedelta(days=STEP_DAYS * k + STEP_DAYS // 2)
        for y in range(years[0], years[1] + 1)
        for k in range(STEPS_PER_YEAR)
    ]
    return pd.DatetimeIndex(stamps, name="time")


def grid(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (ascending) and longitudes (-180..180) at ``resolution`` degrees.

    >>> lat, lon = grid(30)
    >>> lat.tolist(), lon[:2].tolist()
    ([-75.0, -45.0, -15.0, 15.0, 45.0, 75.0], [-165.0, -135.0])
    """
    n_lat, n_lon = round(180 / resolution), round(360 / resolution)
    lat = -90 + resolution * (np.arange(n_lat) + 0.5)
    lon = -180 + resolution * (np.arange(n_lon) + 0.5)
    return lat, lon


@lru_cache(maxsize=8)
def land_fraction(resolution: float) -> np.ndarray:
    """Fraction of land in each cell (lat, lon), from the GLOBE 1-km mask shipped by ``global-land-mask``.

    Each cell is sampled on a 5 x 5 sub-grid, so coarse grids keep their coastlines.

    >>> f = land_fraction(10.0)
    >>> f.shape, 0.2 < float(f.mean()) < 0.4
    ((18, 36), True)
    """
    from global_land_mask import globe

    lat, lon = grid(resolution)
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    la = np.clip(lat[:, None] + resolution * sub[None, :], -89.99, 89.99).ravel()
    lo = (lon[:, None] + resolution * sub[None, :]).ravel()
    lo = np.where(lo >= 180, lo - 360, lo)
    la2, lo2 = np.meshgrid(la, lo, indexing="ij")
    is_land = globe.is_land(la2, lo2).astype(np.float32)
    return is_land.reshape(len(lat), 5, len(lon), 5).mean(axis=(1, 3))


@lru_cache(maxsize=8)
def geography(resolution: float) -> dict[str, np.ndarray]:
    """Fixed (lat, lon) fields from the real land/sea mask: ice sheets, their elevation, aridity.

    - ``ice``: Antarctica and the Greenland ice sheet (land south of 60 S; land in 60-84 N, 55-20 W);
    - ``ice_elevation_km``: a plateau rising 1 km per 250 km from the coast up to 3.2 km (the East
      Antarctic plateau is about 3 km high, Greenland's summit 3.2 km);
    - ``aridity`` (0 wet .. 1 hyper-arid): subtropical high-pressure belts (Hadley descent near 25 degrees)
      dry where the moist trade winds have crossed much land (far from the coast to the east: Sahara,
      Arabia, Kalahari and Namib, Australian interior, Atacama, Sonora) or where the air is cold-current
      coastal; continental interiors in mid-latitudes far from any coast (Gobi, Central Asia). No random
      field: the deserts are where the geography puts them.
    """
    from scipy.ndimage import distance_transform_edt

    lat, lon = grid(resolution)
    land = land_fraction(resolution) >= 0.5
    km_per_cell = 111.2 * resolution
    coslat = np.cos(np.deg2rad(lat))[:, None]
    # distance to the nearest coast (km), computed on a tripled longitude strip so it wraps
    tiled = np.concatenate([land, land, land], axis=1)
    n_x = land.shape[1]
    dist = distance_transform_edt(tiled)[:, n_x : 2 * n_x] * km_per_cell
    # land crossed by the trade winds (from the east) since the last ocean cell, km along the parallel
    fetch_cells = np.zeros(land.shape)
    run = np.zeros(land.shape[0])
    for i in range(2 * n_x - 1, -1, -1):  # east to west, twice round so the run wraps
        j = i % n_x
        run = np.where(land[:, j], run + 1, 0)
        fetch_cells[:, j] = run
    east_fetch = fetch_cells * km_per_cell * np.maximum(coslat, 0.05)
    # land crossed by the westerlies since the last ocean cell to the west
    run = np.zeros(land.shape[0])
    for i in range(2 * n_x):
        j = i % n_x
        run = np.where(land[:, j], run + 1, 0)
        fetch_cells[:, j] = run
    west_fetch = fetch_cells * km_per_cell * np.maximum(coslat, 0.05)
    abs_lat = np.abs(lat)[:, None]
    subtropical = np.exp(-(((abs_lat - 24.0) / 9.0) ** 2))
    midlat = np.exp(-(((abs_lat - 43.0) / 8.0) ** 2))
    trade_dry = 1.0 - np.exp(-east_fetch / 900.0)
    coast_wet = np.exp(-dist / 350.0)
    aridity = subtropical * (0.35 + 0.65 * trade_dry) * (1.0 - 0.4 * coast_wet)
    aridity = aridity + 1.2 * midlat * (1.0 - np.exp(-west_fetch / 3000.0)) ** 2 * (
        1.0 - np.exp(-dist / 700.0)
    )
    aridity = np.clip(1.5 * aridity - 0.15, 0.0, 1.0)
    greenland = (lat[:, None] >= 60) & (lat[:, None] <= 84) & (lon[None, :] >= -55) & (lon[None, :] <= -20)
    ice = land & ((lat[:, None] <= -60) | greenland)
    elevation = np.where(ice, np.minimum(3.2, dist / 250.0), 0.0)
    return {
        "aridity": np.where(ice, 0.0, aridity).astype(np.float32),
        "ice": ice,
        "ice_elevation_km": elevation.astype(np.float32),
    }


def _coherent_noise(rng: np.random.Generator, shape: tuple[int, int, int], scale_cells: float) -> np.ndarray:
    """Unit-variance noise (time, lat, lon), smooth in space over ``scale_cells``, white in time.

    Drawn on a grid coarser by up to 4x, smoothed there and interpolated back: cheap, and smooth fields
    compress far better than pixel noise.
    """
    from scipy.ndimage import gaussian_filter, zoom

    n_t, n_y, n_x = shape
    factor = int(max(1, min(4, scale_cells // 2)))
    while n_y % factor or n_x % factor:
        factor -= 1
    coarse = rng.standard_normal((n_t, n_y // factor, n_x // factor), dtype=np.float32)
    sigma = max(scale_cells / factor, 0.5)
    coarse = gaussian_filter(coarse, sigma=(0, sigma, 1.5 * sigma), mode=("nearest", "nearest", "wrap"))
    fine = (
        zoom(coarse, (1, factor, factor), order=1, mode="grid-wrap", grid_mode=True) if factor > 1 else coarse
    )
    return fine / (fine.std() + 1e-6)


def _in_lon_range(lon: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lon >= lo) & (lon <= hi) if lo <= hi else (lon >= lo) | (lon <= hi)


# --- the physics-flavoured generator --------------------------------------------------------------


def _toa_insolation(lat: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Daily mean top-of-atmosphere insolation (W m-2), shape (time, lat)."""
    phi = np.deg2rad(lat)[None, :]
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0)[:, None]
    cos_h0 = np.clip(-np.tan(phi) * np.tan(decl), -1, 1)
    h0 = np.arccos(cos_h0)
    dist = 1 + 0.033 * np.cos(2 * np.pi * doy / 365.0)[:, None]
    q = 1361.0 / np.pi * dist * (h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0))
    return np.clip(q, 0, None)


def vegetation_limits(temp: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The demo's temperature and water limits of photosynthesis, each 0..1 (``temp`` in degC, ``root``
    the root-zone soil moisture in m3 m-3).

    >>> [float(f) for f in vegetation_limits(np.array(20.0), np.array(0.19))]
    [0.7857142857142857, 0.5]
    """
    f_temp = np.clip((temp + 2.0) / 28.0, 0, 1) * np.clip((45.0 - temp) / 12.0, 0, 1)
    f_water = np.clip((root - 0.10) / 0.18, 0, 1)
    return f_temp, f_water


def gpp_from_state(
    rad_wm2: np.ndarray,
    temp: np.ndarray,
    root: np.ndarray,
    arid: np.ndarray,
    tropics: np.ndarray,
    greening: np.ndarray,
    weather: np.ndarray,
) -> np.ndarray:
    """The demo generator's GPP (g C m-2 d-1): light use limited by temperature and soil water.

    ``rad_wm2`` is the surface shortwave radiation (W m-2), ``arid`` the aridity (0 wet .. 1 hyper-arid),
    ``tropics`` ``exp(-(lat / 18)**2)``, ``greening`` the leaf-area factor (trend times phenology) and
    ``weather`` the standardised weather anomaly. The light-use efficiency is highest in the humid
    tropical forests and about a fifth lower elsewhere (crops, grasslands, boreal forests), which puts
    the land total at 123 +- 8 Pg C yr-1 (Beer et al. 2010). The same function gives the generator its
    GPP and the prediction challenge its oracle (:mod:`platform_lib.challenge.oracle`).

    >>> round(float(gpp_from_state(np.array(250.0), np.array(25.0), np.array(0.4), np.array(0.0),
    ...     np.array(1.0), np.array(1.0), np.array(0.0))), 2)
    8.68
    """
    f_temp, f_water = vegetation_limits(temp, root)
    efficiency = 0.036 * (0.78 + 0.22 * tropics * (1.0 - arid) ** 2)
    gpp = efficiency * rad_wm2 * f_temp * f_water * greening * (1.0 - 0.6 * arid)
    sparse = 0.15 * f_temp * np.clip((root - 0.02) / 0.1, 0, 1)  # desert shrubs: 0.1-0.3 g C m-2 d-1
    return np.clip(gpp + 0.25 * weather * f_temp * f_water, sparse, None)


def kndvi_from_gpp(gpp: np.ndarray, dry: np.ndarray | float = 0.0) -> np.ndarray:
    """The demo generator's kNDVI from GPP (g C m-2 d-1) and the dryness of an event (0..1, browning).

    NDVI saturates with GPP; kNDVI = tanh(NDVI^2) (Camps-Valls et al. 2021, for the usual sigma).

    >>> round(float(kndvi_from_gpp(np.array(8.0))), 3)
    0.505
    """
    ndvi = 0.08 + 0.77 * (1.0 - np.exp(-gpp * (1 - 0.4 * np.clip(dry, 0, 1)) / 4.0))
    return np.tanh(ndvi**2)


def _year_block(year: int, resolution: float, seed: int, inject_events: bool = True) -> dict[str, np.ndarray]:
    """All variables for one year, each float32 (46, lat, lon). Deterministic in (year, resolution, seed).

    The weather fields come from one generator seeded by (seed, year, resolution) and are drawn in the
    same order with or without ``inject_events``, so an event-free cube has the same weather.
    """
    lat, lon = grid(resolution)
    times = time_axis((year, year))
    doy = times.day_of_year.to_numpy().astype(np.float64)
    n_t, n_y, n_x = len(times), len(lat), len(lon)
    land = land_fraction(resolution) >= 0.5
    geo = geography(resolution)
    cells_per_1000km = 9.0 / resolution
    rng = np.random.default_rng([seed, year, round(resolution * 1000)])

    f32 = np.float32
    abs_lat = np.abs(lat).astype(f32)[None, :, None]
    lat3 = lat.astype(f32)[None, :, None]
    hemi = (np.sign(lat) + (lat == 0)).astype(f32)[None, :, None]
    phase = np.cos(2 * np.pi * (doy - 200.0) / 365.25).astype(f32)[:, None, None]  # +1 mid-July
    years_since = (year - 2000 + doy / 365.25).astype(f32)[:, None, None]
    arid = geo["aridity"][None]  # 0 wet .. 1 hyper-arid, from geography (see geography)
    ice = geo["ice"][None]
    elev_km = geo["ice_elevation_km"][None]
    tropics = np.exp(-((lat3 / 18.0) ** 2))  # weak seasons, convective weather

    # weather: spatially coherent noise, red in time (AR(1) with lag-1 correlation 0.6)
    weather = _coherent_noise(rng, (n_t, n_y, n_x), 1.5 * cells_per_1000km)
    for k in range(1, n_t):
        weather[k] = 0.6 * weather[k - 1] + 0.8 * weather[k]
    weather /= weather.std() + 1e-6

    # temperature: zonal climate, continental seasons, ice sheets cold (ice albedo and a lapse rate of
    # 6.5 K km-1 over the plateaus: the South Pole's summer about -28 C, Greenland's summit about -10 C;
    # ERA5, Hersbach et al. 2020), deserts hot
    continental = np.where(land, f32(1.4), f32(0.6))[None] * np.where(ice, f32(0.6), f32(1.0))
    t_mean = 27.0 - 32.0 * np.sin(np.deg2rad(abs_lat)) ** 2 + 3.0 * arid - ice * (14.0 + 6.5 * elev_km)
    t_amp = (1.0 + 16.0 * np.sin(np.deg2rad(abs_lat)) ** 1.5) * continental
    warming = (0.02 + 0.03 * (abs_lat / 90.0)) * years_since
    temp = t_mean + hemi * t_amp * phase + warming + 1.6 * weather * continental

    # rain: a tropical belt that follows the sun (ITCZ), mid-latitude storm tracks, deserts where the
    # geography makes them (subtropical highs, far from the upwind coast, cold-current coasts)
    itcz = 9.0 * phase
    belt = (
        8.0 * np.exp(-(((lat3 - itcz) / 8.0) ** 2))
        + 2.5 * np.exp(-((lat3 / 10.0) ** 2))
        + 2.8 * np.exp(-(((abs_lat - 50.0) / 13.0) ** 2))
    )
    monsoon = 2.5 * np.exp(-(((abs_lat - 28.0) / 14.0) ** 2)) * (1.0 + 0.6 * hemi * phase)  # summer rains
    rain_clim = (belt + monsoon + 0.5) * (1.0 - 0.95 * arid) * np.where(ice, f32(0.3), f32(1.0))
    # storms: a second coherent field (coarse noise, smoothed and interpolated), so rain has structure
    # rather than pixel noise; the driest 8-day means are exactly zero, as in the reanalysis
    storms = _coherent_noise(rng, (n_t, n_y, n_x), 0.8 * cells_per_1000km)
    polar = np.clip((abs_lat - 35.0) / 20.0, 0, 1)  # cyclones tie rain to the temperature anomalies
    rain = rain_clim * np.exp(
        (0.8 - 0.7 * polar) * (1.0 - 0.5 * arid) * storms - (0.35 + 0.45 * polar) * weather - 0.35
    )
    rain = np.where(rain < 0.1, f32(0), rain)

    # radiation: clear-sky fraction of the top of the atmosphere, less under rain clouds; in the tropics
    # convective cloud cover varies on its own (a driver independent of the temperature anomalies)
    clouds_own = _coherent_noise(rng, (n_t, n_y, n_x), 0.6 * cells_per_1000km)
    toa = _toa_insolation(lat, doy).astype(f32)[:, :, None]
    cloud = np.clip(rain / (rain_clim + 1.0), 0, 1.5)
    rad_wm2 = toa * np.clip(0.78 - 0.2 * cloud + 0.08 * arid - 0.12 * tropics * clouds_own, 0.2, 0.85)
    radiation = rad_wm2 * 86400.0  # J m-2 per day

    # events: anomalies with a short ramp at both ends of the window
    heat = np.zeros((n_t, n_y, n_x), dtype=np.float32)
    dry = np.zeros((n_t, n_y, n_x), dtype=np.float32)
    for ev in EVENTS if inject_events else ():
        window = (times >= pd.Timestamp(ev.start)) & (times <= pd.Timestamp(ev.end))
        if not window.any():
            continue
        idx = np.flatnonzero(window)
        ramp = np.ones(len(idx), dtype=np.float32)
        if len(idx) > 2:
            ramp[0] = ramp[-1] = 0.7
        box = ((lat >= ev.lat_min) & (lat <= ev.lat_max))[:, None] & _in_lon_range(
            lon, ev.lon_min, ev.lon_max
        )[None, :]
        box &= land
        heat[idx] += ramp[:, None, None] * box[None] * ev.temperature_anomaly
        dry[idx] += ramp[:, None, None] * box[None] * ev.dryness
    temp = temp + heat
    rain = rain * (1.0 - 0.95 * np.clip(dry, 0, 1))
    radiation = radiation * (1.0 + 0.15 * np.clip(dry, 0, 1))

    # soil water: a leaky bucket fed by rain, drained by heat
    demand = np.clip(0.12 * (temp + 5.0), 0.0, None) * (rad_wm2 / 250.0)
    forcing = np.clip(rain - demand, -6.0, 12.0)
    bucket = np.empty_like(forcing)
    state = np.clip(0.25 + 0.02 * rain_clim[0] - 0.15 * arid[0], 0.05, 0.45)
    for k in range(n_t):
        state = np.clip(0.85 * state + 0.15 * (0.22 - 0.04 * arid[0] + 0.022 * forcing[k]), 0.03, 0.48)
        bucket[k] = state
    root = np.clip(bucket - 0.20 * dry, 0.03, 0.48)
    surface = np.clip(0.7 * root + 0.12 * np.tanh(rain / 5.0) - 0.05 * weather - 0.1 * dry, 0.02, 0.5)

    # vegetation: light use efficiency limited by temperature and water. Where the bucket stays full
    # (wet tropics, boreal) GPP follows light and temperature (energy-limited); where it empties it follows
    # soil water (water-limited), so which drivers act varies between climate zones. Leaf phenology has its
    # own year-to-year variability outside the tropics. Annual means: about 8-10 g C m-2 d-1 in the Amazon
    # and Congo and about 120 Pg C yr-1 over the land (Beer et al. 2010, doi:10.1126/science.1184984;
    # Jung et al. 2019 FLUXCOM, doi:10.1038/s41597-019-0076-8).
    f_temp, f_water = vegetation_limits(temp, root)
    phenology = _coherent_noise(rng, (n_t, n_y, n_x), 1.0 * cells_per_1000km)
    for k in range(1, n_t):
        phenology[k] = 0.8 * phenology[k - 1] + 0.6 * phenology[k]
    phenology /= phenology.std() + 1e-6
    greening = (1.0 + 0.006 * years_since) * np.exp(0.25 * np.maximum(tropics, arid) * phenology)
    gpp = gpp_from_state(rad_wm2, temp, root, arid, tropics, greening, weather)
    ter = (0.6 + 0.35 * gpp) * 1.8 ** ((temp - 15.0) / 10.0) * (0.4 + 0.6 * f_water)
    ter = np.minimum(ter, 14.0)
    stress = np.clip(np.clip((root - 0.05) / 0.2, 0, 1) * (1.0 - 0.3 * np.clip(dry, 0, 1)), 0, 1)

    # energy balance over land: net radiation (albedo higher and net long-wave loss larger in deserts),
    # split into latent heat (Priestley-Taylor, times the evaporative stress) and sensible heat. Land
    # means about 38-45 W m-2 latent and 25-35 W m-2 sensible heat: latent exceeds sensible (Wild et al.
    # 2015, doi:10.1007/s00382-014-2430-z; Jung et al. 2019). The cube stores MJ m-2 d-1 (x 0.0864).
    net_wm2 = (0.68 - 0.2 * arid) * rad_wm2 - (55.0 + 45.0 * arid)
    slope = np.clip(0.4 + 0.013 * temp, 0.2, 0.8)  # Delta / (Delta + gamma)
    le_wm2 = np.clip(1.2 * slope * net_wm2 * stress, 0.0, None)
    le_wm2 = np.minimum(le_wm2, 0.9 * np.clip(net_wm2, 0, None) + 5.0)
    latent = le_wm2 * 0.0864  # MJ m-2 d-1
    sensible = (net_wm2 - le_wm2) * 0.0864
    kndvi = kndvi_from_gpp(gpp, dry)
    tmax = temp + 7.0 + 5.0 * arid + 0.5 * heat

    out = {
        "air_temperature_2m": temp,
        "max_air_temperature_2m": tmax,
        "precipitation_era5": rain,
        "radiation_era5": radiation,
        "gross_primary_productivity": gpp,
        "terrestrial_ecosystem_respiration": ter,
        "latent_energy": latent,
        "sensible_heat": sensible,
        "root_moisture": root,
        "surface_moisture": surface,
        "evaporative_stress": stress,
        "kndvi": kndvi,
    }
    # gaps: MODIS clouds in wet seasons and no data in the polar night
    clouds = rng.random((n_t, n_y, n_x)) < np.clip(0.02 + 0.25 * cloud - 0.1, 0.0, 0.3)
    polar_night = toa < 60.0
    out["kndvi"] = np.where(clouds | polar_night, np.nan, out["kndvi"])

    ocean = ~land[None]
    ice = ocean | geo["ice"][None]  # no vegetation, no fluxes on Antarctica and Greenland
    for name, arr in out.items():
        info = VARIABLES[name]
        arr = _bitround(np.broadcast_to(arr, (n_t, n_y, n_x)).astype(np.float32, copy=True))
        if info.land_only:
            arr[np.broadcast_to(ice if name in _VEGETATION else ocean, arr.shape)] = np.nan
        start, end = pd.Timestamp(info.coverage[0]), pd.Timestamp(info.coverage[1])
        arr[~((times >= start) & (times <= end))] = np.nan
        out[name] = arr
    return out


_VEGETATION = {
    "gross_primary_productivity",
    "terrestrial_ecosystem_respiration",
    "latent_energy",
    "sensible_heat",
    "kndvi",
}
KEEP_BITS = 7  # mantissa bits kept: relative precision 2**-8 (0.4 %), far below the demo's noise


def _bitround(arr: np.ndarray, keepbits: int = KEEP_BITS) -> np.ndarray:
    """Round float32 mantissas to ``keepbits`` bits (round half to even), in place; NaN stays NaN.

    Done in the generator rather than as a Zarr filter, so the stores use only codecs of the Zarr v3
    specification and any reader opens them.
    """
    bits = arr.view(np.uint32)
    drop = 23 - keepbits
    half = np.uint32((1 << (drop - 1)) - 1)
    keep_mask = np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    nan = np.isnan(arr)
    bits += half + ((bits >> np.uint32(drop)) & np.uint32(1))
    bits &= keep_mask
    arr[nan] = np.nan
    return arr


# --- the public API -------------------------------------------------------------------------------


def make_demo_cube(
    resolution: float = DEFAULT_RESOLUTION,
    years: tuple[int, int] = DEFAULT_YEARS,
    seed: int = 0,
    inject_events: bool = True,
) -> xr.Dataset:
    """A lazy, dask-backed ESDC-like cube: one dask chunk per year, computed only when read.

    The same arguments always give the same values. Events whose window falls in ``years`` are
    injected and listed in ``attrs["injected_events"]`` (JSON; see :func:`injected_events`);
    ``inject_events=False`` gives the generator's weather alone (no event is injected or listed).

    >>> ds = make_demo_cube(resolution=10.0, years=(2001, 2002))
    >>> ds["air_temperature_2m"].dtype, ds["kndvi"].attrs["units"]
    (dtype('float32'), '1')
    >>> bool(ds["gross_primary_productivity"].isel(time=0).isnull().any())  # ocean is NaN
    True
    """
    resolution, years = _check_args(resolution, years)
    inject_events = flag_argument(inject_events, "inject_events")
    lat, lon = grid(resolution)
    times = time_axis(years)
    shape = (STEPS_PER_YEAR, len(lat), len(lon))
    blocks = {
        y: dask.delayed(_year_block, pure=True)(y, resolution, seed, inject_events)
        for y in range(years[0], years[1] + 1)
    }
    data_vars = {}
    for name, info in VARIABLES.items():
        parts = [
            da.from_delayed(dask.delayed(lambda b, n=name: b[n], pure=True)(blocks[y]), shape, np.float32)
            for y in blocks
        ]
        attrs = {
            "long_name": info.long_name,
            "standard_name": info.standard_name,
            "units": info.units,
            "source": info.source,
            "references": info.references,
            "time_coverage_start": info.coverage[0],
            "time_coverage_end": info.coverage[1],
        }
        data_vars[name] = (("time", "lat", "lon"), da.concatenate(parts, axis=0), attrs)
    events = [e for e in EVENTS if inject_events and _event_in_years(e, years)]
    ds = xr.Dataset(
        data_vars,
        coords={
            "time": ("time", times, {"long_name": "time", "standard_name": "time"}),
            "lat": (
                "lat",
                lat,
                {"long_name": "latitude", "standard_name": "latitude", "units": "degrees_north"},
            ),
            "lon": (
                "lon",
                lon,
                {"long_name": "longitude", "standard_name": "longitude", "units": "degrees_east"},
            ),
        },
        attrs={
            "Conventions": "CF-1.9",
            "title": f"ESDL demo cube imitating the Earth System Data Cube v3 ({resolution:g} deg, 8-daily)",
            "summary": "Synthetic, deterministic cube with ESDC variables, structure and injected extremes.",
            "project": "Earth System Data Lab platform (demo data)",
            "license": "CC-BY-4.0",
            "source": f"platform_lib.demo.make_demo_cube(resolution={resolution:g}, years={years}, seed={seed})",
            "institution": "ESDL platform developers",
            "time_coverage_start": str(times[0].date()),
            "time_coverage_end": str(times[-1].date()),
            "time_coverage_resolution": "P8D",
            "geospatial_lat_min": -90.0,
            "geospatial_lat_max": 90.0,
            "geospatial_lon_min": -180.0,
            "geospatial_lon_max": 180.0,
            "geospatial_lat_resolution": resolution,
            "geospatial_lon_resolution": resolution,
            "geospatial_lat_units": "degrees_north",
            "geospatial_lon_units": "degrees_east",
            "demo_version": DEMO_VERSION,
            "demo_seed": seed,
            "injected_events": json.dumps([{**asdict(e), "variables": e.variables} for e in events]),
        },
    )
    return ds


def _event_in_years(ev: InjectedEvent, years: tuple[int, int]) -> bool:
    return pd.Timestamp(ev.start).year <= years[1] and pd.Timestamp(ev.end).year >= years[0]


def injected_events(ds: xr.Dataset) -> pd.DataFrame:
    """The injected events recorded in a demo cube, one row each.

    Columns: ``event_id, name, kind, start, end, lat_min, lat_max, lon_min, lon_max, variables``
    (``lon_min > lon_max`` means the box crosses the dateline).

    >>> df = injected_events(make_demo_cube(resolution=10.0, years=(2010, 2010)))
    >>> df.loc[0, ["event_id", "kind"]].tolist()
    ['ru-heat-drought-2010', 'heat-drought']
    """
    raw = ds.attrs.get("injected_events")
    if raw is None:
        raise EsdlError(
            "this cube has no 'injected_events' attribute: only demo cubes carry injected events."
        )
    rows = json.loads(raw) if isinstance(raw, str) else list(raw)
    cols = [
        "event_id",
        "name",
        "kind",
        "start",
        "end",
        "lat_min",
        "lat_max",
        "lon_min",
        "lon_max",
        "variables",
    ]
    df = pd.DataFrame(rows, columns=[*cols, "temperature_anomaly", "dryness"])
    df["start"] = pd.to_datetime(df["start"])
    df["end"] = pd.to_datetime(df["end"])
    return df[cols]


def event_mask(ds: xr.Dataset, event_id: str | None = None) -> xr.DataArray:
    """Boolean ``(time, lat, lon)`` mask of the injected events (all, or one by ``event_id``).

    True on land cells inside the event's box during its time window: the ground truth for scoring
    detected extremes.

    >>> ds = make_demo_cube(resolution=5.0, years=(2003, 2003))
    >>> m = event_mask(ds, "eu-heatwave-2003")
    >>> int(m.any(["lat", "lon"]).sum())  # 8-day steps centred inside 20 Jul - 24 Aug
    4
    """
    events = injected_events(ds)
    if event_id is not None:
        if event_id not in set(events["event_id"]):
            from platform_lib.errors import allowed

            raise EsdlError(
                f"no injected event {event_id!r} in this cube; it has: {allowed(events['event_id'])}."
            )
        events = events[events["event_id"] == event_id]
    resolution = float(ds.attrs.get("geospatial_lat_resolution", abs(float(ds.lat[1] - ds.lat[0]))))
    lat, lon = ds["lat"].values, ds["lon"].values
    full_lat, full_lon = grid(resolution)
    land_full = land_fraction(resolution) >= 0.5
    land = land_full[np.searchsorted(full_lat, lat - 1e-9 * resolution)][
        :, np.searchsorted(full_lon, lon - 1e-9 * resolution)
    ]
    times = pd.DatetimeIndex(ds["time"].values)
    mask = np.zeros((len(times), len(lat), len(lon)), dtype=bool)
    for ev in events.itertuples():
        window = (times >= ev.start) & (times <= ev.end)
        box = ((lat >= ev.lat_min) & (lat <= ev.lat_max))[:, None] & _in_lon_range(
            lon, ev.lon_min, ev.lon_max
        )[None, :]
        mask |= window[:, None, None] & (box & land)[None]
    return xr.DataArray(
        mask,
        coords={"time": ds["time"], "lat": ds["lat"], "lon": ds["lon"]},
        dims=("time", "lat", "lon"),
        name="injected_event",
    )


# --- chunkings and stores -------------------------------------------------------------------------


def chunk_shapes(resolution: float, n_time: int) -> dict[str, tuple[int, int, int]]:
    """The "ts" (long time, small space) and "map" (one step, whole map) chunk shapes of a cube.

    "ts" follows the ESDC's 256-step time chunks with square spatial tiles of about 32 degrees.

    >>> chunk_shapes(1.0, 966)
    {'ts': (256, 32, 32), 'map': (1, 180, 360)}
    """
    n_lat, n_lon = round(180 / resolution), round(360 / resolution)
    tile = max(1, min(n_lat, round(32 / resolution) if resolution >= 1 else 128))
    return {"ts": (min(256, n_time), tile, tile), "map": (1, n_lat, n_lon)}


def store_name(chunking: str, resolution: float, chunks: tuple[int, int, int]) -> str:
    """The store name in the ESDC id pattern ``esdc-8d-<res>-<T>x<Y>x<X>-<version>.zarr``.

    >>> store_name("ts", 1.0, (256, 32, 32))
    'esdc-8d-1deg-256x32x32-demo1.2.zarr'
    """
    res = f"{resolution:g}deg"
    return f"esdc-8d-{res}-{'x'.join(str(c) for c in chunks)}-{DEMO_VERSION}.zarr"


def zarr_encoding(ds: xr.Dataset, chunks: tuple[int, int, int]) -> dict[str, dict]:
    """Zarr v3 encoding for every variable of ``ds``: the chunk shape and zstd compression.

    Blosc with zstd and byte shuffling, both in the Zarr v3 specification; together with the bit
    rounding done by the generator this keeps the default cube to a few hundred MB per chunking.
    """
    from zarr.codecs import BloscCodec

    codec = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    return {name: {"chunks": chunks, "compressors": [codec]} for name in ds.data_vars}


def stored_demo(path: str | os.PathLike[str]) -> dict[str, object]:
    """The years and seed of the demo cube stored at ``path`` (from its attributes; ``None`` where a store
    does not say).

    >>> import tempfile
    >>> paths = write_demo_cubes(tempfile.mkdtemp(), resolution=30.0, years=(2003, 2004), progress=False)
    >>> stored_demo(paths["ts"])
    {'years': [2003, 2004], 'seed': 0}
    """
    try:
        attrs = json.loads((Path(path) / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return {"years": None, "seed": None}
    start, end = attrs.get("time_coverage_start"), attrs.get("time_coverage_end")
    years = [int(str(start)[:4]), int(str(end)[:4])] if start and end else None
    return {"years": years, "seed": attrs.get("demo_seed")}


def write_demo_cubes(
    data_dir: str | os.PathLike[str] | None = None,
    resolution: float = DEFAULT_RESOLUTION,
    years: tuple[int, int] = DEFAULT_YEARS,
    overwrite: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Path]:
    """Generate the demo cube and write both chunkings ("ts" and "map") as Zarr v3 stores.

    Each store is written atomically (temporary folder, then rename) with consolidated metadata.
    Stores that already exist are kept unless ``overwrite``. Returns ``{"ts": path, "map": path}``.

    >>> import tempfile
    >>> paths = write_demo_cubes(tempfile.mkdtemp(), resolution=10.0, years=(2003, 2003), progress=False)
    >>> sorted(paths), paths["map"].name
    (['map', 'ts'], 'esdc-8d-10deg-1x18x36-demo1.2.zarr')
    """
    from platform_lib.paths import data_dir as default_data_dir
    from platform_lib.paths import state_dir

    resolution, years = _check_args(resolution, years)
    if data_dir is None and "ESDL_DATA_DIR" not in os.environ:
        state_dir()  # the default folder is in the state folder: make that one owner-only first
    out_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = make_demo_cube(resolution, years, seed=seed)
    shapes = chunk_shapes(resolution, ds.sizes["time"])
    paths = {c: out_dir / store_name(c, resolution, chunks) for c, chunks in shapes.items()}
    todo = [c for c, p in paths.items() if overwrite or not p.exists()]
    for chunking in set(paths) - set(todo):  # kept: it must be this cube, not another one of the same name
        found = stored_demo(paths[chunking])
        wanted = {"years": list(years), "seed": seed}
        if found != wanted:
            raise EsdlError(
                f"{paths[chunking]} holds the demo cube of years {found['years']} and seed {found['seed']}, "
                f"not {wanted['years']} and {seed} (the store name does not say the years): replace it "
                "(overwrite=True, `esdl cubes generate --overwrite`) or use another data folder."
            )
    if not todo:
        return paths
    with dask.config.set(scheduler="threads"):
        # generate once, in memory (4 bytes x cells x variables; ~3 GB at 1 deg for 21 years), then
        # write each chunking from it: cheaper than generating the years again for each store
        if progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=f"generating {resolution:g} deg {years[0]}-{years[1]}", unit="task"):
                ds = ds.persist()
        else:
            ds = ds.persist()
        for chunking in todo:
            chunks = shapes[chunking]
            cube = ds.chunk(dict(zip(("time", "lat", "lon"), chunks, strict=True)))
            cube.attrs["esdl_chunking"] = chunking
            label = f"writing {paths[chunking].name}" if progress else False
            write_zarr_atomic(
                cube,
                paths[chunking],
                encoding=zarr_encoding(cube, chunks),
                overwrite=overwrite,
                progress=label,
            )
    return paths


# --- catalog entries ------------------------------------------------------------------------------

DEMO_LICENSE = "CC-BY-4.0"
DEMO_SOURCE = "Synthetic: platform_lib.demo (imitates ESDC v3.0.2, https://www.earthsystemdatalab.net)"


def demo_catalog_sources(
    resolution: float = DEFAULT_RESOLUTION,
    years: tuple[int, int] = DEFAULT_YEARS,
    data_ref: str = "{{ env(ESDL_DATA_DIR) }}",
    prefix: str = "esdc-demo",
) -> dict[str, dict]:
    """Catalog ``sources:`` entries (``<prefix>-ts``, ``<prefix>-map``) for the demo cube's two chunkings.

    Metadata comes from the lazy cube itself, so nothing is generated. ``data_ref`` is the folder the
    store paths are relative to (an Intake template by default).

    >>> srcs = demo_catalog_sources(resolution=10.0, years=(2003, 2003))
    >>> srcs["esdc-demo-map"]["args"]["urlpath"]
    '{{ env(ESDL_DATA_DIR) }}/esdc-8d-10deg-1x18x36-demo1.2.zarr'
    """
    from platform_lib.catalog import catalog_source, cube_metadata

    resolution, years = _check_args(resolution, years)
    ds = make_demo_cube(resolution, years)
    sources = {}
    for chunking, chunks in chunk_shapes(resolution, ds.sizes["time"]).items():
        what = (
            "time-series optimised (long time, small tiles)"
            if chunking == "ts"
            else "map optimised (one step, whole map)"
        )
        meta = cube_metadata(
            ds,
            chunking=chunking,
            chunks=dict(zip(("time", "lat", "lon"), chunks, strict=True)),
            license=DEMO_LICENSE,
            source=DEMO_SOURCE,
            title=f"ESDL demo cube, {resolution:g} deg 8-daily, {chunking} chunking",
            demo={"resolution": resolution, "years": list(years)},
            injected_events=[e["event_id"] for e in json.loads(ds.attrs["injected_events"])],
        )
        sources[f"{prefix}-{chunking}"] = catalog_source(
            f"{data_ref}/{store_name(chunking, resolution, chunks)}",
            f"Deterministic ESDC-like demo cube ({resolution:g} deg, {years[0]}-{years[1]}), {what}. "
            "Generate it with `esdl cubes generate`.",
            meta,
        )
    return sources
