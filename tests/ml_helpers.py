"""Small synthetic ESDC-like Zarr v3 cubes for the ML and rechunk tests (two chunkings, NaN ocean)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.storage import write_zarr_atomic

CHUNKINGS = {"ts": {"time": 32, "lat": 6, "lon": 8}, "map": {"time": 1, "lat": 12, "lon": 24}}


def eight_daily(years: range) -> pd.DatetimeIndex:
    """46 steps a year, restarting each 1 January (as the ESDC)."""
    return pd.DatetimeIndex(
        [pd.Timestamp(f"{y}-01-01") + pd.Timedelta(days=8 * k) for y in years for k in range(46)]
    )


def synthetic_cube(seed: int = 0, years: range = range(2001, 2003)) -> xr.Dataset:
    """A (time, lat, lon) cube: smooth seasonal fields plus noise, land variables NaN over 'ocean'."""
    rng = np.random.default_rng(seed)
    time = eight_daily(years)
    lat = np.linspace(-55, 55, 12)
    lon = np.linspace(-172.5, 172.5, 24)
    t = np.arange(len(time))[:, None, None]
    season = np.sin(2 * np.pi * (t % 46) / 46)
    shape = (len(time), len(lat), len(lon))
    air = (15 + 10 * season + 0.1 * lat[None, :, None] + rng.normal(0, 1, shape)).astype("float32")
    ocean = np.zeros((len(lat), len(lon)), bool)
    ocean[:, :5] = True  # a strip of 'ocean'
    gpp = (3 + 2 * season + rng.normal(0, 0.5, shape)).astype("float32")
    gpp[:, ocean] = np.nan
    gpp[rng.random(shape) < 0.02] = np.nan  # scattered gaps
    kndvi = (0.4 + 0.2 * season + rng.normal(0, 0.05, shape)).astype("float32")
    kndvi[:, ocean] = np.nan
    dims = ("time", "lat", "lon")
    return xr.Dataset(
        {
            "air_temperature_2m": (dims, air, {"units": "degC"}),
            "gross_primary_productivity": (dims, gpp, {"units": "g C m-2 d-1"}),
            "kndvi": (dims, kndvi, {"units": "1"}),
        },
        coords={"time": time, "lat": lat, "lon": lon},
    )


def write_cube(ds: xr.Dataset, path: Path, chunks: dict[str, int]) -> Path:
    """Write ``ds`` as Zarr v3 with ``chunks`` on every data variable."""
    encoding = {v: {"chunks": tuple(min(chunks[d], ds.sizes[d]) for d in ds[v].dims)} for v in ds.data_vars}
    return write_zarr_atomic(ds, path, encoding=encoding, progress=False)
