"""The prediction challenge: minicubes that hold their events, controls without one, a split that leaks
nothing, climatologies that never hold their own value, the oracle as the floor, scores with known
answers, clear refusals of bad forecasts, a leaderboard that keeps every member's row, and the command.

The science checks run on a 2-degree demo cube (2001-2012) with its injected events and the detected
growing-season extremes, as on the platform; the properties run on generated cubes and event tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_lib.challenge import (
    append_to_leaderboard,
    baseline,
    challenge_events,
    demo_oracle,
    leaking_pairs,
    make_minicubes,
    read_leaderboard,
    save_forecast,
    score,
)
from platform_lib.challenge.minicubes import SPLITS, Box, check_events, event_box, labels
from platform_lib.cli import main as esdl
from platform_lib.demo import event_mask, make_demo_cube
from platform_lib.errors import EsdlError
from platform_lib.ml.stats import season_slots

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    return make_demo_cube(resolution=2.0, years=(2001, 2012)).compute()


@pytest.fixture(scope="module")
def events(cube) -> pd.DataFrame:
    return challenge_events(cube, "both", quantile=0.99)


@pytest.fixture(scope="module")
def minicubes(cube, events) -> xr.Dataset:
    return make_minicubes(cube, events, patch=4, context=8, horizon=4, progress=False)


def _boxes(cube: xr.Dataset, events: pd.DataFrame) -> list[Box]:
    times = pd.DatetimeIndex(cube["time"].values)
    table = check_events(events)
    return [
        b for _, ev in table.iterrows() if (b := event_box(ev, times, cube["lat"].values, cube["lon"].values))
    ]


def test_the_challenge_has_events_of_both_sources_in_every_split(minicubes):
    kinds, splits, ids = labels(minicubes, "kind"), labels(minicubes, "split"), labels(minicubes, "event_id")
    assert (kinds == "event").sum() >= 60, "too few events to learn from"
    for split in SPLITS:
        assert ((splits == split) & (kinds == "event")).sum() >= 5, split
        assert ((splits == split) & (kinds == "control")).sum() >= 5, split
    injected = {i for i in ids[kinds == "event"] if not i.startswith("detected-")}
    assert injected >= {"eu-heatwave-2003", "ru-heat-drought-2010", "us-drought-2012"}


def test_every_target_window_holds_its_event(cube, events, minicubes):
    """An injected event's cells (the generator's truth) lie in its minicube's horizon; a detected event's
    first step is the horizon's first step and its box meets the minicube's."""
    table = check_events(events).set_index("event_id")
    horizon = minicubes.isel(step=minicubes["step"].values >= 0)
    truth = event_mask(cube)
    for i in np.flatnonzero(labels(minicubes, "kind") == "event"):
        eid = labels(minicubes, "event_id")[i]
        times, lat, lon = horizon["time"].values[i], horizon["lat"].values[i], horizon["lon"].values[i]
        ev = table.loc[eid]
        assert ev["start"] <= pd.Timestamp(times[0]) <= ev["end"], eid
        assert (lat.max() >= ev["lat_min"]) and (lat.min() <= ev["lat_max"]), eid
        if not eid.startswith("detected-"):
            cells = event_mask(cube, eid).sel(time=times, lat=lat, lon=lon)
            assert bool(cells.any()), f"{eid}: no cell of the injected event in its target window"
            assert int(cells.sum()) >= 4
    # and controls hold none of the injected events' cells in their whole space-time box
    for i in np.flatnonzero(labels(minicubes, "kind") == "control"):
        m = minicubes.isel(minicube=i)
        assert not bool(truth.sel(time=m["time"].values, lat=m["lat"].values, lon=m["lon"].values).any())


def test_no_test_cell_in_any_training_box(minicubes):
    for held in ("test", "val"):
        assert leaking_pairs(minicubes, "train", held) == []
    assert leaking_pairs(minicubes, "val", "test") == []


def test_leaking_pairs_finds_a_planted_leak(minicubes):
    """The check is not vacuous: a test minicube moved onto a training one's box is found."""
    leaky = minicubes.copy(deep=True)
    splits = labels(leaky, "split")
    train, test = np.flatnonzero(splits == "train")[0], np.flatnonzero(splits == "test")[0]
    for coord in ("time", "lat", "lon"):
        leaky[coord].values[test] = leaky[coord].values[train]
    assert (str(leaky["minicube"].values[test]), str(leaky["minicube"].values[train])) in leaking_pairs(leaky)


def test_the_climatology_never_holds_its_own_value(cube, minicubes):
    """Known answer: each cell's climatology is the plain mean of the same cell and step of the year over
    the other years (xarray groupby over the source, the cell's own year left out)."""
    target = minicubes.attrs["target"]
    slots = season_slots(cube["time"].values)
    rng = np.random.default_rng(0)
    for i in rng.choice(minicubes.sizes["minicube"], 12, replace=False):
        m = minicubes.isel(minicube=i)
        s, y, x = rng.integers(m.sizes["step"]), rng.integers(4), rng.integers(4)
        t = pd.Timestamp(m["time"].values[s])
        series = cube[target].sel(lat=m["lat"].values[y], lon=m["lon"].values[x])
        same_slot = series.isel(time=np.flatnonzero(slots == slots[cube.indexes["time"].get_loc(t)]))
        others = same_slot.drop_sel(time=t).values
        expected = np.nanmean(others) if np.isfinite(others).any() else np.nan
        got = float(m[f"{target}_climatology"].values[s, y, x])
        np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)


def test_the_oracle_is_the_floor_and_the_learned_baselines_beat_the_climatology(cube, minicubes):
    rmse = {
        name: score(minicubes, baseline(minicubes, name))["rmse"]
        for name in ("climatology", "persistence", "decaying_anomaly", "ridge", "torch_mlp")
    }
    rmse["oracle"] = score(minicubes, demo_oracle(minicubes, cube))["rmse"]
    for kind in ("event", "control"):
        for name in ("climatology", "persistence", "decaying_anomaly", "ridge", "torch_mlp"):
            assert rmse["oracle"][kind] < rmse[name][kind], (kind, name, rmse)
        for name in ("decaying_anomaly", "ridge", "torch_mlp"):
            assert rmse[name][kind] < rmse["climatology"][kind], (kind, name, rmse)
        # the demo's weather anomalies have little memory (lag-1 autocorrelation about 0.4 per 8 days),
        # so holding the last value carries its noise into every step: persistence loses to the climatology
        assert rmse["persistence"][kind] > rmse["climatology"][kind], (kind, rmse)
    assert rmse["ridge"]["event"] < rmse["decaying_anomaly"]["event"]


def test_scores_have_known_answers(minicubes):
    target = minicubes.attrs["target"]
    test = minicubes.isel(minicube=labels(minicubes, "split") == "test")
    truth = test[target].isel(step=test["step"].values >= 0)
    perfect = score(minicubes, truth.fillna(0))
    assert (perfect["rmse"] == 0).all() and (perfect["nse"] == 1).all() and (perfect["skill"] == 1).all()
    clim = score(minicubes, baseline(minicubes, "climatology"))
    np.testing.assert_allclose(clim["skill"], 0.0, atol=1e-12)
    shifted = score(minicubes, truth.fillna(0) + 0.5)
    np.testing.assert_allclose(shifted["rmse"], 0.5, rtol=1e-6)
    assert list(perfect.index) == ["event", "control", "all"]
    assert perfect.loc["all", "minicubes"] == truth.sizes["minicube"]


CORRUPTIONS = (
    "drop-minicube",
    "rename-minicube",
    "nan-cell",
    "wrong-steps",
    "wrong-dims",
    "wrong-variable",
    "repeat",
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=st.sampled_from(CORRUPTIONS), seed=st.integers(0, 2**16))
def test_a_bad_forecast_is_refused_saying_what_is_wrong(minicubes, corruption, seed):
    good = baseline(minicubes, "climatology")
    rng = np.random.default_rng(seed)
    n = good.sizes["minicube"]
    k = int(rng.integers(n))
    if corruption == "drop-minicube":
        bad, words = good.drop_isel(minicube=k), "missing 1"
    elif corruption == "rename-minicube":
        names = [str(v) for v in good["minicube"].values]
        names[k] = "x99999"
        bad, words = good.assign_coords(minicube=names), "not in the test split"
    elif corruption == "nan-cell":
        target = minicubes.attrs["target"]
        test = minicubes.isel(minicube=labels(minicubes, "split") == "test")
        observed = np.argwhere(np.isfinite(test[target].isel(step=test["step"].values >= 0).values))
        bad = good.copy(deep=True)
        bad.values[tuple(observed[int(rng.integers(len(observed)))])] = np.nan
        words = "1 missing"
    elif corruption == "wrong-steps":
        bad, words = good.assign_coords(step=good["step"].values + 1), "steps"
    elif corruption == "wrong-dims":
        bad, words = good.rename(y="lat"), "dims"
    elif corruption == "wrong-variable":
        bad, words = good.rename("something_else").to_dataset(), "no variable"
    else:
        bad, words = xr.concat([good, good.isel(minicube=[k])], "minicube"), "repeated"
    with pytest.raises(EsdlError, match=words):
        score(minicubes, bad)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_events=st.integers(3, 14),
    patch=st.integers(1, 4),
    context=st.integers(1, 6),
    horizon=st.integers(1, 5),
    controls=st.integers(0, 2),
)
def test_any_events_give_a_split_without_leaks_and_windows_that_hold_them(
    seed, n_events, patch, context, horizon, controls
):
    """Generated global 10-degree cubes and event tables (boxes across the dateline, events at the ends of
    the record, overlapping events): no test or val cell in a training box, each event minicube's horizon
    starts at its event's first step and meets its box, no control meets any event, or a clear error."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2001-01-05", periods=4 * 46, freq="8D")
    lat, lon = np.arange(-85.0, 90.0, 10.0), np.arange(-175.0, 180.0, 10.0)
    values = rng.normal(size=(len(times), len(lat), len(lon))).astype("float32")
    values[:, :3] = np.nan  # an "ocean" band
    cube = xr.Dataset(
        {"g": (("time", "lat", "lon"), values), "d": (("time", "lat", "lon"), values * 2)},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    starts = rng.integers(0, len(times), n_events)
    lat0 = rng.uniform(-90, 80, n_events)
    lon0 = rng.uniform(-180, 180, n_events)
    width = rng.uniform(0, 60, n_events)
    events = pd.DataFrame(
        {
            "event_id": [f"ev{i}" for i in range(n_events)],
            "start": times[starts],
            "end": times[np.minimum(starts + rng.integers(0, 6, n_events), len(times) - 1)],
            "lat_min": lat0,
            "lat_max": lat0 + rng.uniform(0, 30, n_events),
            "lon_min": lon0,
            "lon_max": (lon0 + width + 180) % 360 - 180,
        }
    )
    try:
        mc = make_minicubes(
            cube,
            events,
            target="g",
            drivers=["d"],
            patch=patch,
            context=context,
            horizon=horizon,
            controls=controls,
            seed=seed,
            fractions=(0.5, 0.2, 0.3),
            progress=False,
        )
    except EsdlError as exc:
        assert "minicube" in str(exc) or "groups" in str(exc)
        return
    assert leaking_pairs(mc, "train", "test") == [] and leaking_pairs(mc, "train", "val") == []
    assert leaking_pairs(mc, "val", "test") == []
    boxes = _boxes(cube, events)
    table = check_events(events).set_index("event_id")
    for i in range(mc.sizes["minicube"]):
        m = mc.isel(minicube=i)
        t = np.searchsorted(times.values, m["time"].values)
        y, x = np.searchsorted(lat, m["lat"].values), np.searchsorted(lon, m["lon"].values)
        box = Box(int(t[0]), int(t[-1]) + 1, int(y[0]), int(y[-1]) + 1, frozenset(x.tolist()))
        if str(m["kind"].values) == "control":
            assert not any(box.overlaps(b) for b in boxes)
        else:
            ev = table.loc[str(m["event_id"].values)]
            first = pd.Timestamp(m["time"].values[context])
            assert first == times[times >= ev["start"]][0]
            assert ev["start"] <= first <= ev["end"]


def test_the_leaderboard_keeps_every_members_row(tmp_path):
    """Twelve members append at the same moment from their own processes: twelve rows, none torn."""
    code = (
        "import os, sys, pandas as pd\n"
        "from platform_lib.challenge import append_to_leaderboard\n"
        "rows = pd.DataFrame({'rmse': [1.0, 2.0, 1.5], 'nse': [0.5, 0.1, 0.3], 'skill': [0.4, 0.2, 0.3],"
        " 'minicubes': [2, 2, 4]}, index=['event', 'control', 'all'])\n"
        "append_to_leaderboard('race', 'model-' + sys.argv[1], rows, team=sys.argv[2])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i), str(tmp_path)], env={**env, "JUPYTERHUB_USER": f"u{i}"}
        )
        for i in range(12)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 12
    board = read_leaderboard("race", team=tmp_path)
    assert sorted(board["label"]) == sorted(f"model-{i}" for i in range(12))
    assert sorted(board["user"]) == sorted(f"u{i}" for i in range(12))
    assert [p.name for p in (tmp_path / "challenges" / "race").iterdir() if ".tmp" in p.name] == []
    with pytest.raises(EsdlError, match="one line"):
        append_to_leaderboard("race", "two\nlines", board.head(0), team=tmp_path)


@pytest.fixture()
def team(tmp_path, monkeypatch, demo_catalog):
    folder = tmp_path / "team"
    monkeypatch.setenv("ESDL_TEAM_DIR", str(folder))
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(folder / "catalog.yaml"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    return folder


MAKE = [
    "challenge",
    "make",
    "tiny",
    "--source",
    "esdc-demo-ts",
    "--events",
    "injected",
    "--patch",
    "2",
    "--context",
    "4",
    "--horizon",
    "3",
    "--split",
    "1",
    "0",
    "1",
]


def test_the_command_makes_scores_and_ranks(team, tmp_path, capsys):
    assert esdl(MAKE) == 0
    out = capsys.readouterr().out
    assert "registered 'tiny'" in out and "test" in out
    from platform_lib.catalog import validate_catalog

    assert validate_catalog(team / "catalog.yaml", open_stores=True) == []  # a well-formed team cube entry
    from platform_lib.catalog import open_cube

    assert open_cube("tiny").sizes["step"] == 7  # a teammate opens it like any cube
    assert esdl(["challenge", "show", "tiny"]) == 0
    assert '"horizon_steps": 3' in capsys.readouterr().out
    assert esdl(MAKE) == 2  # the name is taken: refused, nothing rewritten
    assert "already taken" in capsys.readouterr().err
    assert esdl(["challenge", "baselines", "tiny", "--only", "climatology", "ridge", "--submit"]) == 0
    from platform_lib.challenge import open_challenge

    ds = open_challenge("tiny")
    forecast = baseline(ds, "decaying_anomaly")
    path = save_forecast(forecast, tmp_path / "mine.zarr")
    assert esdl(["challenge", "score", "tiny", str(path), "--label", "my model"]) == 0
    assert esdl(["challenge", "leaderboard", "tiny"]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.strip().startswith(("baseline:", "my"))]
    assert sorted(rows) == ["baseline:climatology", "baseline:ridge", "my"]
    board = read_leaderboard("tiny")
    assert list(board["event_skill"]) == sorted(board["event_skill"], reverse=True)
    assert esdl(["challenge", "score", "tiny", str(tmp_path / "nothing.zarr")]) == 2
    assert "no submission" in capsys.readouterr().err
    assert esdl(["challenge", "leaderboard", "esdc-demo-ts"]) == 2
    assert "not a challenge" in capsys.readouterr().err


def test_a_make_killed_midway_leaves_nothing_and_blocks_nothing(team, demo_catalog):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ESDL_CRASH_AT": "zarr:metadata-written"}
    child = subprocess.run([sys.executable, "-m", "platform_lib.cli", *MAKE], env=env, capture_output=True)
    assert child.returncode == -9, child.stderr.decode()
    assert not (team / "cubes" / "tiny.zarr").exists()
    assert "tiny" not in (team / "catalog.yaml").read_text() if (team / "catalog.yaml").exists() else True
    assert esdl(MAKE) == 0  # the next call is not blocked, and cleans up the dead write's temporary
    assert [p.name for p in (team / "cubes").iterdir() if ".tmp" in p.name] == []


def test_a_kndvi_challenge_has_the_same_guarantees(cube, events):
    """The other target: kNDVI (cloud and polar-night gaps) cut, split and scored the same way; the oracle
    (kNDVI from the generator's GPP) and the ridge regression beat its climatology during the events."""
    mc = make_minicubes(cube, events, target="kndvi", patch=4, context=8, horizon=4, progress=False)
    assert leaking_pairs(mc) == [] and mc.attrs["target"] == "kndvi"
    rmse = {name: score(mc, baseline(mc, name))["rmse"] for name in ("climatology", "ridge")}
    rmse["oracle"] = score(mc, demo_oracle(mc, cube))["rmse"]
    assert rmse["oracle"]["event"] < rmse["ridge"]["event"] < rmse["climatology"]["event"], rmse
