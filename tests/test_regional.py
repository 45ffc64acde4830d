"""Regional cubes: subset, coarsen, provenance, team catalog registration, clear refusals, races."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
import zarr

from platform_lib.catalog import describe_cube, list_cubes, open_cube
from platform_lib.errors import EsdlError
from platform_lib.regional import make_regional_cube
from platform_lib.storage import write_zarr_atomic
from platform_lib.team import list_team_cubes, register_cube, remove_cube, team_catalog_path

RES = 2.0


def source_cube() -> xr.Dataset:
    """A 2-degree cube over lon -30..60, lat 20..76, two years of 8-daily steps, with NaN 'ocean'."""
    times = pd.date_range("2003-01-05", periods=92, freq="8D")
    lat = np.arange(21.0, 76.0, RES)
    lon = np.arange(-29.0, 60.0, RES)
    rng = np.random.default_rng(1)
    shape = (len(times), len(lat), len(lon))
    t2m = (15 - 0.4 * (lat[None, :, None] - 40) + rng.normal(0, 2, shape)).astype("float32")
    gpp = rng.gamma(2.0, 2.0, shape).astype("float32")
    gpp[:, :, :8] = np.nan  # the Atlantic
    attrs = {"title": "Synthetic source", "license": "CC-BY-4.0", "id": "synthetic"}
    return xr.Dataset(
        {
            "air_temperature_2m": (
                ("time", "lat", "lon"),
                t2m,
                {"long_name": "Air temperature at 2 m", "units": "degC"},
            ),
            "gross_primary_productivity": (
                ("time", "lat", "lon"),
                gpp,
                {"long_name": "Gross primary productivity", "units": "g C m-2 d-1"},
            ),
        },
        coords={
            "time": times,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
        attrs=attrs,
    )


@pytest.fixture(scope="module")
def shared_catalog(tmp_path_factory):
    """The source cube in 'ts' and 'map' chunkings and a shared catalog pointing at them."""
    root = tmp_path_factory.mktemp("shared")
    ds = source_cube()
    chunkings = {"ts": {"time": 46, "lat": 8, "lon": 8}, "map": {"time": 1, "lat": -1, "lon": -1}}
    sources = {}
    for chunking, chunks in chunkings.items():
        write_zarr_atomic(ds.chunk(chunks), root / f"src-{chunking}.zarr", progress=False)
        sources[f"src-{chunking}"] = {
            "description": f"synthetic source, {chunking} chunking",
            "driver": "zarr",
            "args": {"urlpath": "{{ CATALOG_DIR }}/" + f"src-{chunking}.zarr"},
            "metadata": {"title": "Synthetic source", "license": "CC-BY-4.0", "chunking": chunking},
        }
    path = root / "shared.yaml"
    path.write_text(yaml.safe_dump({"sources": sources}))
    return path


@pytest.fixture()
def team(tmp_path, monkeypatch, shared_catalog):
    folder = tmp_path / "team"
    monkeypatch.setenv("ESDL_CATALOG", str(shared_catalog))
    monkeypatch.setenv("ESDL_TEAM_DIR", str(folder))
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(folder / "catalog.yaml"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    return folder


def _store_files(folder: Path) -> list[str]:
    cubes = folder / "cubes"
    return sorted(p.name for p in cubes.iterdir() if not p.name.endswith(".lock")) if cubes.exists() else []


@pytest.mark.parametrize("source", ["src-ts", "src-map"])
def test_regional_cube_from_each_chunking_is_found_and_opened_by_a_teammate(team, source):
    path = make_regional_cube(
        source,
        bbox=(-10, 35, 30, 60),
        time_range=("2003-06-01", "2003-08-31"),
        variables=["air_temperature_2m"],
        name="europe-summer",
        progress=False,
    )
    assert path == team / "cubes" / "europe-summer.zarr"
    assert "europe-summer" in list_cubes() and list_team_cubes() == ["europe-summer"]

    # a teammate: a fresh process that only knows the catalog name
    code = (
        "from platform_lib.catalog import open_cube; ds = open_cube('europe-summer'); print(dict(ds.sizes))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert out.returncode == 0, out.stderr
    want = source_cube()[["air_temperature_2m"]].sel(
        lat=slice(35, 60), lon=slice(-10, 30), time=slice("2003-06-01", "2003-08-31")
    )
    n_time = want.sizes["time"]
    assert out.stdout.strip() == f"{{'time': {n_time}, 'lat': 13, 'lon': 20}}"

    got = open_cube("europe-summer")
    xr.testing.assert_equal(got["air_temperature_2m"].load(), want["air_temperature_2m"])
    assert got["air_temperature_2m"].attrs["units"] == "degC"

    attrs = got.attrs
    assert attrs["esdl_source_cube"] == source
    assert attrs["esdl_bbox"] == [-10.0, 35.0, 30.0, 60.0]
    assert attrs["esdl_time_range"] == ["2003-06-01", "2003-08-31"]
    assert attrs["esdl_created_by"] == "alice" and attrs["esdl_created_at"].startswith("20")
    assert attrs["license"] == "CC-BY-4.0" and attrs["time_coverage_start"] == str(
        want.time[0].dt.date.item()
    )

    meta = describe_cube("europe-summer")
    assert meta["provenance"]["source_cube"] == source and meta["provenance"]["created_by"] == "alice"
    assert meta["variables"] == {
        "air_temperature_2m": {"long_name": "Air temperature at 2 m", "units": "degC"}
    }
    assert meta["spatial_extent"] == [-10.0, 35.0, 30.0, 60.0]
    assert meta["chunking"] == "ts" and meta["chunks"] == [n_time, 13, 20]
    assert zarr.open_group(path, mode="r")["air_temperature_2m"].chunks == (n_time, 13, 20)


def test_map_chunking_coarsening_and_dataset_source(team):
    ds = source_cube()
    path = make_regional_cube(
        ds,  # an in-memory dataset works too
        bbox=(0, 40, 20, 56),
        variables="gross_primary_productivity",
        resolution=4.0,
        chunking="map",
        name="central-europe-4deg",
        progress=False,
    )
    out = xr.open_zarr(path)
    assert zarr.open_group(path, mode="r")["gross_primary_productivity"].chunks == (1, 4, 5)
    assert out.attrs["esdl_resolution"] == 4.0 and out.attrs["esdl_source_cube"] == "synthetic"
    region = ds["gross_primary_productivity"].sel(lat=slice(40, 56), lon=slice(0, 20))  # 8 x 10 cells
    expected = region.coarsen(lat=2, lon=2).mean()
    np.testing.assert_allclose(out["gross_primary_productivity"].values, expected.values, rtol=1e-6)
    np.testing.assert_allclose(out["lat"].values, [42, 46, 50, 54])
    np.testing.assert_allclose(out["lon"].values, [2, 6, 10, 14, 18])


def test_region_across_the_dateline_coarsened(team, tmp_path):
    times = pd.date_range("2007-06-02", periods=4, freq="8D")
    lon = np.arange(-179.0, 180.0, 2.0)
    lat = np.arange(51.0, 80.0, 2.0)
    data = np.broadcast_to(lon[None, None, :], (4, len(lat), len(lon))).astype("float32")
    ds = xr.Dataset(
        {"lonval": (("time", "lat", "lon"), data, {"units": "degrees"})},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    path = make_regional_cube(ds, bbox=(170, 60, -170, 70), resolution=4.0, name="bering", progress=False)
    out = xr.open_zarr(path)
    # ten 2-degree cells 171..179, -179..-171 average to five 4-degree cells centred on the circle
    np.testing.assert_allclose(out["lon"].values, [172.0, 176.0, -180.0, -176.0, -172.0])
    np.testing.assert_allclose(out["lonval"].isel(time=0, lat=0).values, [172.0, 176.0, 0.0, -176.0, -172.0])


def test_bad_requests_write_nothing(team, shared_catalog):
    register_cube("taken", "/elsewhere/taken.zarr")
    catalog_before = team_catalog_path().read_text()
    cases = [
        (dict(bbox=(100, 0, 120, 10)), "lies outside the source cube 'src-ts'"),
        (dict(bbox=(0.2, 40.2, 0.8, 40.8)), "holds no grid cell"),  # inside the extent, between centres
        (dict(bbox=(0, 40, 20, 50), time_range=("1990-01-01", "1990-12-31")), "holds no time step"),
        (
            dict(bbox=(0, 40, 20, 50), variables=["air_temperature"]),
            "no variable 'air_temperature'.*Did you mean",
        ),
        (dict(bbox=(0, 40, 20, 50), resolution=3.0), "not a whole multiple of the grid"),
        (dict(bbox=(0, 40, 4, 44), resolution=8.0), "coarser than the selected region"),
        (dict(bbox=(0, 40, 20, 50), chunking="maps"), "chunking 'maps' is not known"),
        (dict(bbox=(0, 40, 20, 50), name="taken"), "'taken' is already taken"),
        (dict(bbox=(0, 40, 20, 50), name="src-map"), "'src-map' is already taken"),
        (dict(bbox=(0, 40, 20, 50), name="Bad Name"), "invalid cube name"),
        (dict(bbox=(0, 60, 20, 50)), "lat_min 60 > lat_max 50"),
    ]
    for kwargs, message in cases:
        kwargs = {"name": "new-cube", **kwargs}
        with pytest.raises(EsdlError, match=message):
            make_regional_cube("src-ts", progress=False, **kwargs)
    assert _store_files(team) == []
    assert team_catalog_path().read_text() == catalog_before
    assert list_team_cubes() == ["taken"]


def test_remove_a_team_cube(team):
    path = make_regional_cube("src-ts", bbox=(0, 40, 10, 50), name="small", progress=False)
    assert path.exists()
    remove_cube("small")
    assert "small" not in list_cubes() and not path.exists()
    # the name is free again
    make_regional_cube("src-ts", bbox=(0, 40, 10, 50), name="small", progress=False)
    assert "small" in list_cubes()


MAKER = textwrap.dedent(
    """
    import sys
    from platform_lib.errors import EsdlError
    from platform_lib.regional import make_regional_cube
    name, lon0 = sys.argv[1], float(sys.argv[2])
    try:
        make_regional_cube("src-ts", bbox=(lon0, 36, lon0 + 20, 60), name=name, progress=False)
        print("made")
    except EsdlError as exc:
        print("refused:", exc)
    """
)


def _run_two(team: Path, jobs: list[tuple[str, str, str]]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = []
    for user, name, lon0 in jobs:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", MAKER, name, lon0],
                env={**env, "JUPYTERHUB_USER": user},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


def test_two_members_register_regional_cubes_concurrently(team):
    outs = _run_two(team, [("alice", "alps", "0"), ("bob", "iberia", "-10")])
    assert outs == ["made", "made"]
    assert list_team_cubes() == ["alps", "iberia"]
    assert describe_cube("iberia")["provenance"]["created_by"] == "bob"
    assert open_cube("alps").attrs["esdl_created_by"] == "alice"


def test_two_members_racing_for_one_name_one_wins_nothing_lost(team):
    outs = _run_two(team, [("alice", "race", "0"), ("bob", "race", "-10")])
    assert sorted(o.split(":")[0] for o in outs) == ["made", "refused"], outs
    winner = "alice" if outs[0] == "made" else "bob"
    assert "already taken" in [o for o in outs if o != "made"][0]
    assert list_team_cubes() == ["race"]
    ds = open_cube("race")
    assert ds.attrs["esdl_created_by"] == winner == describe_cube("race")["provenance"]["created_by"]
    assert _store_files(team) == ["race.zarr"]


def _cli(*argv: str) -> int:
    """Run ``esdl cubes regional ...`` through its real parser."""
    import argparse

    from platform_lib.cli.regional import register_regional

    parser = argparse.ArgumentParser(prog="esdl")
    cubes = parser.add_subparsers(dest="command").add_parser("cubes").add_subparsers(dest="cubes_command")
    register_regional(cubes)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_regional_cli_make_list_remove(team, capsys):
    argv = ["cubes", "regional", "src-map", "--name", "sahara-edge", "--bbox", "-10", "21", "30", "35"]
    assert _cli(*argv, "--variables", "air_temperature_2m", "--resolution", "4", "--chunking", "map") == 0
    assert "registered 'sahara-edge'" in capsys.readouterr().out
    ds = open_cube("sahara-edge")
    assert dict(ds.sizes) == {"time": 92, "lat": 4, "lon": 10} and ds.attrs["esdl_resolution"] == 4.0
    assert _cli("cubes", "regional", "--list") == 0
    assert "sahara-edge" in capsys.readouterr().out
    with pytest.raises(EsdlError, match="needs --name, --bbox"):
        _cli("cubes", "regional", "src-map")
    assert _cli("cubes", "regional", "--remove", "sahara-edge") == 0
    assert "sahara-edge" not in list_cubes()


def test_coarsening_with_custom_chunks_not_dividing_the_region(team):
    """Read chunks are output chunks times the factor; a remainder that does not fill a coarse cell is
    trimmed, whatever the chunk boundaries."""
    ds = source_cube()
    path = make_regional_cube(
        "src-ts",
        bbox=(1, 41, 21, 57),  # 9 x 11 cells of 2 degrees
        variables=["air_temperature_2m"],
        resolution=4.0,
        chunking={"time": 20, "lat": 3, "lon": 2},
        name="odd",
        progress=False,
    )
    out = xr.open_zarr(path)
    assert zarr.open_group(path, mode="r")["air_temperature_2m"].chunks == (20, 3, 2)
    expected = (
        ds["air_temperature_2m"]
        .sel(lat=slice(41, 57), lon=slice(1, 21))
        .coarsen(lat=2, lon=2, boundary="trim")
        .mean()
    )
    assert dict(out.sizes) == {"time": 92, "lat": 4, "lon": 5}
    np.testing.assert_allclose(out["air_temperature_2m"].values, expected.values, rtol=1e-6)


def test_open_cube_chunks(team):
    """open_cube's chunks: stored chunks by default, None for lazily indexed arrays (regional cubes)."""
    assert open_cube("src-ts")["air_temperature_2m"].data.chunksize == (46, 8, 8)
    lazy = open_cube("src-ts", chunks=None, bbox=(0, 40, 10, 50))["air_temperature_2m"]
    assert lazy.chunks is None and not lazy.variable._in_memory
    xr.testing.assert_equal(
        lazy.load(), open_cube("src-ts", bbox=(0, 40, 10, 50))["air_temperature_2m"].load()
    )


def test_regional_bench_runs_on_the_demo_cube(demo_cubes, capsys):
    """Keep bench/regional_cube.py from rotting: one run on the session's small demo cube (no timing
    asserted)."""
    from bench_helpers import loaded_bench

    cube = xr.open_zarr(demo_cubes["ts"])
    years = f"{cube['time'].dt.year.values[0]}-{cube['time'].dt.year.values[-1]}"
    resolution = str(float(abs(cube["lat"][1] - cube["lat"][0])))
    catalog_before = os.environ.get("ESDL_CATALOG")
    args = [
        "--data-dir",
        str(demo_cubes["ts"].parent),
        "--resolution",
        resolution,
        "--years",
        years,
        "--repeat",
        "1",
        "--select-years",
        "2003",
    ]
    with loaded_bench("regional_cube") as bench:
        assert bench.main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["ts"], ["map"])]
    assert [r[0] for r in rows] == ["ts", "map"] and all(float(r[4]) > 0 for r in rows)
    assert os.environ.get("ESDL_CATALOG") == catalog_before
