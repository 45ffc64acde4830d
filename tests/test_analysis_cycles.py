"""Dominance of the annual over the semi-annual cycle (issue 18, part 1): known answers.

- a synthetic series ``a1 cos(wt) + a2 cos(2wt + phi)`` plus mean and trend returns ``a1 / a2`` exactly,
  whatever its gaps, length (not whole years) and time step (generated with hypothesis);
- the Mauna Loa CO2 record shipped by statsmodels (weekly, 1958-2001, with gaps) gives the published
  amplitudes: annual about 2.8 ppm, semi-annual about 0.75 ppm;
- on the demo cube, temperature is annual-dominated everywhere on land, and precipitation on the
  equator (the rain belt passes twice a year) is not.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_lib.analysis import cycle_dominance
from platform_lib.analysis.cycles import MIN_STEPS, harmonic_amplitudes, time_in_years
from platform_lib.errors import EsdlError


def point_cube(time: pd.DatetimeIndex, values: np.ndarray, name: str = "x") -> xr.Dataset:
    return xr.Dataset(
        {name: (("time", "lat", "lon"), np.asarray(values, dtype=np.float64)[:, None, None])},
        coords={"time": time, "lat": [19.5], "lon": [-155.6]},
    )


@settings(max_examples=60, deadline=None)
@given(
    a1=st.floats(0.05, 20.0),
    a2=st.floats(0.05, 20.0),
    phi1=st.floats(0.0, 2 * np.pi),
    phi2=st.floats(0.0, 2 * np.pi),
    trend=st.floats(-5.0, 5.0),
    mean=st.floats(-300.0, 300.0),
    years=st.floats(2.0, 11.0),  # rarely whole years
    step_days=st.sampled_from([1, 7, 8]),
    gap_share=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
)
def test_a_two_harmonic_series_returns_a1_over_a2_whatever_its_gaps_and_length(
    a1, a2, phi1, phi2, trend, mean, years, step_days, gap_share, seed
):
    n_steps = int(years * 365.2425 / step_days)
    time = pd.date_range("1999-03-07", periods=n_steps, freq=f"{step_days}D")
    t = np.asarray((time - time[0]).days) / 365.2425
    w = 2 * np.pi * t
    x = mean + trend * t + a1 * np.cos(w + phi1) + a2 * np.cos(2 * w + phi2)
    gaps = np.random.default_rng(seed).random(n_steps) < gap_share
    x[gaps] = np.nan
    got = cycle_dominance(point_cube(time, x)).values.item()
    assert got == pytest.approx(a1 / a2, rel=1e-6)
    assert cycle_dominance(point_cube(time, x), power=True).values.item() == pytest.approx(
        (a1 / a2) ** 2, rel=1e-6
    )


def test_noise_leaves_the_ratio_close_and_unbiased_enough():
    time = pd.date_range("2001-01-05", periods=20 * 46, freq="8D")
    t = time_in_years(time.values)
    rng = np.random.default_rng(1)
    ratios = [
        cycle_dominance(
            point_cube(time, 4 * np.cos(2 * np.pi * t) + np.sin(4 * np.pi * t) + rng.normal(0, 1, t.size))
        ).values.item()
        for _ in range(20)
    ]
    assert np.mean(ratios) == pytest.approx(4.0, rel=0.05) and np.std(ratios) < 0.5


def test_degenerate_series_say_nan_or_inf_rather_than_guess():
    time = pd.date_range("2001-01-05", periods=4 * 46, freq="8D")
    t = time_in_years(time.values)
    summer_only = np.where((t % 1 > 0.4) & (t % 1 < 0.6), np.cos(2 * np.pi * t), np.nan)
    too_short = np.full(t.size, np.nan)
    too_short[: MIN_STEPS - 1] = 1.0
    cases = {
        "constant": np.full(t.size, 3.0),  # no cycle at all: 0 / 0
        "annual only": np.cos(2 * np.pi * t),  # no semi-annual harmonic: inf
        "one season observed": summer_only,  # the harmonics cannot be told apart
        "too short": too_short,
        "all gaps": np.full(t.size, np.nan),
    }
    got = {name: cycle_dominance(point_cube(time, x)).values.item() for name, x in cases.items()}
    assert np.isinf(got.pop("annual only"))
    assert all(np.isnan(v) for v in got.values()), got


def test_the_mauna_loa_co2_record_gives_its_published_amplitudes():
    """statsmodels' weekly Mauna Loa CO2 (1958-03-29 to 2001-12-29, 59 gaps): annual harmonic about 2.8 ppm and
    semi-annual about 0.75 ppm (the amplitudes of the record's two-harmonic seasonal fit, e.g. Thoning et al.
    1989, J. Geophys. Res. 94, 8549). The trend of this record is not linear (about 0.8 ppm/yr in the 1960s,
    1.5 in the 1990s): a quadratic-trend fit, done here with numpy's lstsq, must agree, so the answer does not
    hang on the trend model."""
    sm = pytest.importorskip(
        "statsmodels.api", reason="statsmodels ships the record (the dev extra installs it)"
    )
    data = sm.datasets.co2.load_pandas().data["co2"]
    assert data.isna().sum() > 0  # the record has gaps, left as they are
    cube = point_cube(pd.DatetimeIndex(data.index), data.to_numpy(), "co2")
    t = time_in_years(cube["time"].values)
    a1, a2 = harmonic_amplitudes(cube["co2"].values[:, 0, 0], t)
    assert a1 == pytest.approx(2.8, abs=0.1) and a2 == pytest.approx(0.75, abs=0.08)
    assert cycle_dominance(cube).values.item() == pytest.approx(a1 / a2, rel=1e-12)
    ok = np.isfinite(data.to_numpy())
    w = 2 * np.pi * t
    design = np.stack([np.ones_like(t), t, t**2, np.cos(w), np.sin(w), np.cos(2 * w), np.sin(2 * w)], axis=1)
    coef = np.linalg.lstsq(design[ok], data.to_numpy()[ok], rcond=None)[0]
    assert np.hypot(*coef[3:5]) == pytest.approx(a1, abs=0.05)
    assert np.hypot(*coef[5:7]) == pytest.approx(a2, abs=0.05)


def test_on_the_demo_cube_temperature_is_annual_dominated_on_land_and_chunks_do_not_matter():
    from platform_lib.demo import make_demo_cube

    cube = make_demo_cube(resolution=10.0, years=(2001, 2006))
    with dask.config.set(scheduler="threads"):
        lazy = cycle_dominance(cube, ["air_temperature_2m", "gross_primary_productivity"])
        assert lazy.chunks is not None  # lazy on a dask-backed cube
        got = lazy.compute()
        loaded = cycle_dominance(cube[["air_temperature_2m", "gross_primary_productivity"]].load())
    xr.testing.assert_allclose(got, loaded.transpose(*got.dims), rtol=1e-12)
    land = np.isfinite(got.sel(variable="gross_primary_productivity"))
    temperature = got.sel(variable="air_temperature_2m").where(land)
    assert int(land.sum()) > 100 and float((temperature > 1).sum() / land.sum()) > 0.95
    assert got.attrs["units"] == "1" and got.dims == ("variable", "lat", "lon")


def test_on_the_demo_cube_the_rain_belt_makes_equatorial_precipitation_semi_annual():
    """The demo's tropical rain belt follows the sun 9 degrees north and south: on the equator it passes
    twice a year (semi-annual, A1/A2 < 1 on every land pixel), 5-9 degrees away once (annual)."""
    from platform_lib.demo import make_demo_cube

    cube = make_demo_cube(resolution=2.0, years=(2001, 2006)).sel(lat=slice(-10, 10))
    with dask.config.set(scheduler="threads"):
        got = cycle_dominance(cube, ["precipitation_era5", "gross_primary_productivity"]).compute()
    land = np.isfinite(got.sel(variable="gross_primary_productivity"))
    rain = got.sel(variable="precipitation_era5").where(land)
    equator = rain.sel(lat=[-1.0, 1.0])
    assert int(equator.count()) > 40 and float(equator.max()) < 1, equator.values
    away = rain.sel(lat=[-9.0, -7.0, -5.0, 5.0, 7.0, 9.0])
    assert float((away > 1).sum() / away.count()) > 0.95


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda c: cycle_dominance(c, power="yes"), "power must be True or False"),
        (lambda c: cycle_dominance(c, ["nope"]), "nope"),
        (lambda c: cycle_dominance(c.isel(time=0)), "no variable of the cube has a 'time' dimension"),
        (lambda c: cycle_dominance(c["x"].isel(time=0)), "needs a 'time' dimension"),
        (lambda c: cycle_dominance(c.assign_coords(time=np.arange(c.sizes["time"]))), "must hold dates"),
    ],
)
def test_bad_input_is_named(call, said):
    time = pd.date_range("2001-01-05", periods=92, freq="8D")
    with pytest.raises(EsdlError, match=said):
        call(point_cube(time, np.arange(92.0)))


def test_the_benchmark_runs_and_ours_agrees_with_the_per_pixel_lstsq(capsys):
    """Smoke run of bench/cycle_dominance.py at its smallest size (speed is printed there, never asserted)."""
    from bench_helpers import loaded_bench

    with loaded_bench("cycle_dominance") as bench:
        runs = bench.main(["--small"])
    assert runs["agree"] > 1000 and runs["only_ours"] == runs["only_reference"] == 0
    assert runs["max_rel_diff"] < 1e-9
    assert "ratio (reference / ours): time" in capsys.readouterr().out
