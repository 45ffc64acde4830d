"""Dominance of the annual over the semi-annual cycle, per pixel and variable.

The ESDL talk's global map: "values > 1: dominant annual cycle". Each series is fitted by least squares
with a mean, a linear trend and the first two harmonics of the year,

    x(t) = c0 + c1 t + a cos(w t) + b sin(w t) + c cos(2 w t) + d sin(2 w t),    w = 2 pi / year,

with ``t`` the time coordinate in years (365.2425 days). The amplitudes are ``A1 = hypot(a, b)`` and
``A2 = hypot(c, d)``; the dominance is ``A1 / A2`` (or ``(A1 / A2) ** 2``, the power ratio).

The fit uses the observed steps only, so gaps need no filling (filling them from a seasonal cycle
would hand the fit its own guess back) and the record need not be whole years; the trend is removed
in the same fit, not before it, so trend and harmonics do not leak into each other on uneven records.
A series with fewer than :data:`MIN_STEPS` observations, or whose observations cannot separate the
terms (less than about half of each year observed), gives NaN.

>>> import numpy as np, pandas as pd, xarray as xr
>>> time = pd.date_range("2001-01-01", periods=5 * 46, freq="8D")
>>> t = np.asarray((time - time[0]).days) / 365.2425
>>> x = 3.0 * np.cos(2 * np.pi * t) + 0.5 * np.cos(4 * np.pi * t + 1.0) + 0.2 * t
>>> cube = xr.Dataset({"co2": (("time", "lat", "lon"), x[:, None, None])},
...                   coords={"time": time, "lat": [0.0], "lon": [0.0]})
>>> round(float(cycle_dominance(cube).sel(variable="co2", lat=0, lon=0)), 6)
6.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from platform_lib.arguments import cube_argument, flag_argument
from platform_lib.compute import as_variable_array, map_cube
from platform_lib.errors import EsdlError

DAYS_PER_YEAR = 365.2425
MIN_STEPS = 12  # observations a series needs: twice the five fitted terms and the mean
# the normal equations' condition number beyond which the observed steps cannot separate the terms: NaN.
# A full record gives 2-3 (any length), half of each year observed about 800, a fifth of it 3e6.
_MAX_CONDITION = 1e3
_ZERO = 1e-9  # a harmonic below this share of the fit's largest term is rounding, not a cycle


def time_in_years(time: xr.DataArray | np.ndarray) -> np.ndarray:
    """Time since the first step in years of 365.2425 days (float64).

    >>> import pandas as pd
    >>> time_in_years(pd.date_range("2000-01-01", periods=3, freq="366D").values).round(4).tolist()
    [0.0, 1.0021, 2.0041]
    """
    values = np.asarray(time)
    if not np.issubdtype(values.dtype, np.datetime64):
        raise EsdlError(f"the time coordinate must hold dates (datetime64); it holds {values.dtype}.")
    days = (values - values[0]) / np.timedelta64(1, "D")
    return days.astype(np.float64) / DAYS_PER_YEAR


def harmonic_design(t_years: np.ndarray) -> np.ndarray:
    """The least-squares design ``(time, 6)``: 1, t (centred, unit variance), cos/sin of 1 and 2 cycles per year.

    The trend column is scaled like the others, so the design's condition number measures how well
    the observed steps separate the harmonics, whatever the record's length.

    >>> harmonic_design(np.array([0.0, 0.25, 0.5])).round(3).tolist()[1]
    [1.0, 0.0, 0.0, 1.0, -1.0, 0.0]
    """
    t = np.asarray(t_years, dtype=np.float64)
    w = 2.0 * np.pi * t
    centred = t - (t.mean() if t.size else 0.0)
    spread = centred.std() if t.size else 0.0
    centred = centred / spread if spread > 0 else centred
    return np.stack([np.ones_like(t), centred, np.cos(w), np.sin(w), np.cos(2 * w), np.sin(2 * w)], axis=-1)


def harmonic_amplitudes(series: np.ndarray, t_years: np.ndarray) -> np.ndarray:
    """Amplitudes ``(..., 2)`` of the annual and semi-annual harmonics of ``series`` (..., time).

    One least-squares fit per series of mean, trend and both harmonics over its finite values; NaN
    where fewer than :data:`MIN_STEPS` values are left or they cannot separate the terms. Series
    without gaps share one pseudo-inverse; those with gaps solve their own normal equations.

    >>> t = np.arange(92) / 46
    >>> harmonic_amplitudes(2 * np.sin(2 * np.pi * t) + np.cos(4 * np.pi * t), t).round(6).tolist()
    [2.0, 1.0]
    """
    x = np.asarray(series)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    design = harmonic_design(t_years)
    flat = x.reshape(-1, x.shape[-1])  # float32 stays float32 until a row is fitted (no float64 copy)
    coef = np.full((flat.shape[0], design.shape[1]), np.nan)
    ok = np.isfinite(flat)
    n_ok = ok.sum(axis=1)
    full = n_ok == flat.shape[1]
    if full.any() and flat.shape[1] >= MIN_STEPS and np.linalg.cond(design.T @ design) < _MAX_CONDITION:
        coef[full] = flat[full] @ np.linalg.pinv(design).T
    gappy = np.flatnonzero(~full & (n_ok >= MIN_STEPS))
    for start in range(0, gappy.size, 4096):  # bounded memory: (pixels, 6, 6) normal equations at a time
        idx = gappy[start : start + 4096]
        w = ok[idx].astype(np.float64)
        normal = np.einsum("pt,ti,tj->pij", w, design, design)
        rhs = np.where(ok[idx], flat[idx], 0.0) @ design
        good = np.linalg.cond(normal) < _MAX_CONDITION
        if good.any():
            coef[idx[good]] = np.linalg.solve(normal[good], rhs[good][..., None])[..., 0]
    amplitudes = np.stack([np.hypot(coef[:, 2], coef[:, 3]), np.hypot(coef[:, 4], coef[:, 5])], axis=-1)
    # rounding leaves ~1e-16 of the series' size where a harmonic is absent: that is no cycle
    size = np.maximum(np.abs(coef[:, :2]).max(axis=1), amplitudes.max(axis=1))
    amplitudes[amplitudes <= _ZERO * size[:, None]] = 0.0
    return amplitudes.reshape(*x.shape[:-1], 2)


def _dominance_kernel(block: np.ndarray, t_years: np.ndarray, power: bool) -> np.ndarray:
    """(pixels, time) -> (pixels,): A1 / A2 (squared with ``power``)."""
    amplitudes = harmonic_amplitudes(block, t_years)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = amplitudes[:, 0] / amplitudes[:, 1]
    return ratio**2 if power else ratio


def cycle_dominance(
    cube: xr.Dataset | xr.DataArray, variables: Sequence[str] | None = None, *, power: bool = False
) -> xr.DataArray:
    """How much the annual cycle dominates the semi-annual one: ``(variable, lat, lon)`` of A1 / A2 (lazy).

    ``cube``: a Dataset (``variables``, default all with a time axis) or a DataArray with ``time``.
    Values above 1: the annual cycle dominates; below 1: the semi-annual one (a rain belt that crosses
    twice a year). ``power=True`` gives the power ratio ``(A1 / A2) ** 2``. A series whose harmonics
    both vanish (a constant) gives NaN; one with no semi-annual harmonic at all gives ``inf``. See the
    module docstring for the fit.

    >>> from platform_lib.demo import make_demo_cube
    >>> cube = make_demo_cube(resolution=10.0, years=(2001, 2004))
    >>> d = cycle_dominance(cube, ["air_temperature_2m"])
    >>> d.dims, bool((d.sel(lat=55, lon=45) > 1).all())  # Russia: one summer a year
    (('variable', 'lat', 'lon'), True)
    """
    cube = cube_argument(cube, "cube")
    power = flag_argument(power, "power")
    if isinstance(cube, xr.Dataset) and variables is None:
        variables = [str(n) for n, v in cube.data_vars.items() if "time" in v.dims]
        if not variables:
            raise EsdlError(
                f"no variable of the cube has a 'time' dimension; it has: {list(cube.data_vars)}."
            )
    stacked = as_variable_array(cube, variables)
    if "time" not in stacked.dims:
        raise EsdlError(f"the cube needs a 'time' dimension; it has: {list(map(str, stacked.dims))}.")
    t_years = time_in_years(stacked["time"].values)
    out = map_cube(
        _dominance_kernel,
        stacked,
        input_dims=("time",),
        batched=True,
        kwargs={"t_years": t_years, "power": power},
        name="cycle_dominance",
        attrs={
            "long_name": "dominance of the annual over the semi-annual cycle"
            + (" (power ratio)" if power else " (amplitude ratio)"),
            "units": "1",
            "description": "A1/A2" + ("**2" if power else "") + ": least-squares amplitudes of the 1 and 2"
            " cycles-per-year harmonics, fitted with mean and linear trend over the observed steps",
        },
    )
    loop = [d for d in ("variable", "lat", "lon") if d in out.dims]
    return out.transpose(*loop, ...)


__all__ = ["MIN_STEPS", "cycle_dominance", "harmonic_amplitudes", "harmonic_design", "time_in_years"]
