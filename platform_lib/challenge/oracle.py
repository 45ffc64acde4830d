"""The oracle of a challenge cut from a demo cube: the generator's own equations on the true state.

The demo generator makes GPP from radiation, temperature and root-zone soil moisture with
:func:`platform_lib.demo.gpp_from_state` (kNDVI from GPP with :func:`~platform_lib.demo.kndvi_from_gpp`).
The oracle evaluates those equations on the cube's true temperature, radiation and soil moisture
over the horizon, with the generator's geography (aridity, the tropics) and greening trend, and the
two noise fields the state does not reveal (leaf phenology, the weather term of GPP) at their
expectation, 0. What it misses is the noise: it is the floor a forecast from the state can reach, and a
check of the scoring (a forecast that knows the equations must beat every baseline).

>>> from platform_lib.demo import make_demo_cube, injected_events
>>> from platform_lib.challenge import make_minicubes, score
>>> cube = make_demo_cube(resolution=5.0, years=(2001, 2012))
>>> mc = make_minicubes(cube, injected_events(cube), patch=2, context=4, horizon=3, fractions=(1, 0, 1),
...     progress=False)
>>> round(float(score(mc, demo_oracle(mc, cube)).loc["all", "skill"]), 2) > 0.5
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.challenge.minicubes import load_variable
from platform_lib.errors import EsdlError

ORACLE_STATE = ("air_temperature_2m", "radiation_era5", "root_moisture")
SECONDS_PER_DAY = 86400.0


def demo_oracle(ds: xr.Dataset, cube: xr.Dataset, split: str = "test") -> xr.DataArray:
    """The oracle's forecast of ``split``'s minicubes of ``ds``, cut from demo ``cube`` (its source)."""
    from platform_lib.challenge.baselines import forecast_array, split_part
    from platform_lib.demo import geography, gpp_from_state, grid, kndvi_from_gpp

    if "injected_events" not in cube.attrs or "geospatial_lat_resolution" not in cube.attrs:
        raise EsdlError(
            "the oracle knows only the demo generator's equations: give the demo cube the challenge was cut from."
        )
    target = str(ds.attrs["target"])
    if target not in ("gross_primary_productivity", "kndvi"):
        raise EsdlError(
            f"the oracle forecasts gross_primary_productivity or kndvi; the target is {target!r}."
        )
    part = split_part(ds, split)
    horizon = part.isel(step=np.flatnonzero(part["step"].values >= 0))
    resolution = float(cube.attrs["geospatial_lat_resolution"])
    full_lat, full_lon = grid(resolution)
    times = pd.DatetimeIndex(cube["time"].values)
    t = np.searchsorted(times.values, horizon["time"].values)  # (minicube, step)
    y = np.searchsorted(cube["lat"].values, horizon["lat"].values)  # (minicube, y)
    x = np.searchsorted(cube["lon"].values, horizon["lon"].values)  # (minicube, x)
    where = (t[:, :, None, None], y[:, None, :, None], x[:, None, None, :])
    state = {name: load_variable(cube, name)[where] for name in ORACLE_STATE}
    geo = geography(resolution)
    gy = np.searchsorted(full_lat, horizon["lat"].values - 1e-6 * resolution)
    gx = np.searchsorted(full_lon, horizon["lon"].values - 1e-6 * resolution)
    arid = geo["aridity"][gy[:, None, :, None], gx[:, None, None, :]]
    lat = horizon["lat"].values[:, None, :, None]
    tropics = np.exp(-((lat / 18.0) ** 2))
    stamps = pd.DatetimeIndex(horizon["time"].values.ravel())
    years_since = (stamps.year - 2000 + stamps.day_of_year / 365.25).to_numpy().reshape(t.shape)
    greening = (1.0 + 0.006 * years_since)[:, :, None, None]
    gpp = gpp_from_state(
        state["radiation_era5"] / SECONDS_PER_DAY,
        state["air_temperature_2m"],
        state["root_moisture"],
        arid,
        tropics,
        greening,
        np.zeros(1),
    )
    values = kndvi_from_gpp(gpp) if target == "kndvi" else gpp
    return forecast_array(part, np.asarray(values))
