"""Real records with published answers, written as ESDC-style cubes and catalogued for the tests.

Three small data sets that dev-only packages ship (no network needed):

- ``mauna_loa_co2``: statsmodels' weekly Mauna Loa CO2 record (1958-03-29 to 2001-12-29, 59 weekly
  gaps), averaged into the ESDC's 8-daily windows (46 a year, restarting each 1 January) at the
  station's cell (19.5 N, 155.5 W);
- ``seattle_weather``: vega_datasets' Seattle daily weather 2012-2015 (precipitation, temp_max,
  temp_min, wind and a weather label), averaged into 8-daily windows at Seattle's cell
  (47.5 N, 122.5 W);
- ``pacific_sst``: eofs' Pacific November-March SST anomalies 1963-2012 (one winter a year, stamped
  15 January of the winter's second year; 5 degree grid 117.5 E to 97.5 W, 22.5 S to 62.5 N, land
  NaN), with longitudes turned to the ESDC's -180..180 and sorted, so the Pacific is split at 180
  in the store and a bbox across the dateline gives it back in one piece.

:func:`write_real_cubes` writes each with :func:`platform_lib.storage.write_zarr_atomic` and a catalog
file (:func:`platform_lib.catalog.write_catalog`); the tests open them with
:func:`platform_lib.catalog.open_cube`. The packages are imported inside the functions, so a test
module can skip when one is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.catalog import catalog_source, cube_metadata, write_catalog
from platform_lib.compute import STEPS_PER_YEAR
from platform_lib.demo import time_axis
from platform_lib.storage import write_zarr_atomic

#: Mauna Loa Observatory (19.54 N, 155.58 W) and Seattle (47.61 N, 122.33 W) as cell centres
MAUNA_LOA = (19.5, -155.5)
SEATTLE = (47.5, -122.5)


def eight_daily(series: pd.DataFrame | pd.Series, years: tuple[int, int]) -> pd.DataFrame:
    """Mean of the values in each ESDC 8-daily window (``demo.time_axis``); a window without data is NaN."""
    axis = time_axis(years)
    stamps = pd.DatetimeIndex(series.index)
    step = np.minimum((stamps.day_of_year.to_numpy() - 1) // 8, STEPS_PER_YEAR - 1)
    means = series.groupby([stamps.year.to_numpy(), step]).mean()
    wanted = pd.MultiIndex.from_arrays(
        [axis.year.to_numpy(), np.minimum((axis.day_of_year.to_numpy() - 1) // 8, STEPS_PER_YEAR - 1)]
    )
    out = means.reindex(wanted)
    out.index = axis
    return out.to_frame() if isinstance(out, pd.Series) else out


def point_cube(frame: pd.DataFrame, lat: float, lon: float, units: dict[str, str], title: str) -> xr.Dataset:
    """One grid cell's series as a (time, lat, lon) cube."""
    return xr.Dataset(
        {
            name: (
                ("time", "lat", "lon"),
                frame[name].to_numpy(np.float64)[:, None, None],
                {"units": units[name]},
            )
            for name in frame.columns
        },
        coords={"time": frame.index.rename("time"), "lat": [lat], "lon": [lon]},
        # one cell of 1 degree (cube_metadata reads its size from these ACDD attributes)
        attrs={
            "title": title,
            "time_coverage_resolution": "P8D",
            "geospatial_lat_resolution": 1.0,
            "geospatial_lon_resolution": 1.0,
        },
    )


def mauna_loa_co2() -> xr.Dataset:
    """statsmodels' weekly Mauna Loa CO2 (ppm) in 8-daily windows, 1958-2001 (whole years, gaps NaN)."""
    import statsmodels.api as sm

    co2 = sm.datasets.co2.load_pandas().data["co2"]
    return point_cube(
        eight_daily(co2, (1958, 2001)), *MAUNA_LOA, {"co2": "ppm"}, "Mauna Loa CO2 (statsmodels), 8-daily"
    )


def seattle_daily() -> pd.DataFrame:
    """vega_datasets' Seattle daily weather 2012-2015, from the file the package ships (no network)."""
    from vega_datasets import data

    source = data.seattle_weather
    if not source.is_local:  # pragma: no cover - the package ships it
        raise RuntimeError("vega_datasets' seattle_weather is not a local data set")
    return source().set_index("date")


def seattle_weather() -> xr.Dataset:
    """Seattle's daily precipitation (mm), temperatures (degC) and wind (m/s) in 8-daily windows."""
    daily = seattle_daily()[["precipitation", "temp_max", "temp_min", "wind"]]
    units = {"precipitation": "mm d-1", "temp_max": "degC", "temp_min": "degC", "wind": "m s-1"}
    return point_cube(
        eight_daily(daily, (2012, 2015)), *SEATTLE, units, "Seattle weather (vega_datasets), 8-daily"
    )


def pacific_sst() -> xr.Dataset:
    """eofs' Pacific winter (NDJFM) SST anomalies 1963-2012 on -180..180 sorted longitudes."""
    from eofs.examples import example_data_path

    with xr.open_dataset(example_data_path("sst_ndjfm_anom.nc"), engine="scipy") as raw:
        sst = raw["sst"].load()
    lon = (sst["longitude"].values.astype(np.float64) + 180.0) % 360.0 - 180.0
    sst = sst.rename(latitude="lat", longitude="lon").assign_coords(
        lat=sst["latitude"].values.astype(np.float64), lon=lon
    )
    sst = sst.sortby("lon").drop_vars([c for c in sst.coords if c not in ("time", "lat", "lon")])
    sst.attrs = {"units": "K", "long_name": "NDJFM mean sea surface temperature anomaly"}
    return xr.Dataset(
        {"sst": sst.transpose("time", "lat", "lon")},
        attrs={
            "title": "Pacific winter SST anomalies (eofs example data)",
            "time_coverage_resolution": "P1Y",
        },
    )


CUBES = {
    "real-co2-mlo": (mauna_loa_co2, "NOAA/SIO via statsmodels.datasets.co2"),
    "real-seattle-weather": (seattle_weather, "vega_datasets seattle_weather"),
    "real-pacific-sst": (pacific_sst, "eofs example data sst_ndjfm_anom.nc"),
}


def write_real_cubes(folder: Path, names: list[str] | None = None) -> Path:
    """Write the cubes ``names`` (default: all) as Zarr stores in ``folder``; return their catalog file."""
    sources = {}
    for name in names or list(CUBES):
        make, source = CUBES[name]
        ds = make()
        chunks = dict(ds.sizes)  # one chunk: these records are small
        encoding = {v: {"chunks": tuple(chunks[d] for d in ds[v].dims)} for v in ds.data_vars}
        store = write_zarr_atomic(ds, folder / f"{name}.zarr", encoding=encoding, progress=False)
        meta = cube_metadata(ds, chunking="ts", chunks=chunks, license="see source", source=source)
        sources[name] = catalog_source(str(store), str(ds.attrs["title"]), meta)
    return write_catalog(folder / "real.yaml", sources, title="real records for the tests")
