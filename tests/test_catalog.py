"""The shared catalog and the cube API: list, describe, open, subset, errors, validation, S3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import platform_lib
from platform_lib import catalog
from platform_lib.demo import demo_catalog_sources
from platform_lib.errors import CatalogWarning, CubeNotFoundError, CubeNotGeneratedError, EsdlError
from platform_lib.paths import repo_root

SHIPPED = repo_root() / "catalog" / "esdl.yaml"


def run_esdl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "platform_lib.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


# --- the shipped catalog --------------------------------------------------------------------------


def test_shipped_catalog_lists_demo_and_public_cubes():
    names = catalog.list_cubes(SHIPPED)
    assert {"esdc-demo-ts", "esdc-demo-map", "esdc-v3-ts", "esdc-v3-map", "esdc-v3-tiny"} <= set(names)
    assert catalog.validate_catalog(SHIPPED) == []


def test_shipped_demo_entries_match_the_generator():
    shipped = yaml.safe_load(SHIPPED.read_text())["sources"]
    for name, entry in demo_catalog_sources().items():
        assert shipped[name] == entry, f"catalog/esdl.yaml entry {name} is stale: regenerate it"


def test_public_entries_point_at_the_esdc_endpoint():
    d = catalog.describe_cube("esdc-v3-ts", SHIPPED)
    assert d["urlpath"] == "s3://esdl-esdc-v3.0.2/esdc-8d-0.25deg-256x128x128-3.0.2.zarr"
    entry = catalog.get_entry("esdc-v3-map", SHIPPED)
    assert entry.args["storage_options"] == {
        "anon": True,
        "client_kwargs": {"endpoint_url": "https://s3.bgc-jena.mpg.de:9000"},
    }
    assert d["variables"]["kndvi"]["units"] == "1"
    for key in catalog.REQUIRED_METADATA:
        assert key in d


def test_shipped_catalog_opens_with_plain_intake(demo_cubes, monkeypatch):
    """The catalog is a real Intake catalog: intake alone opens the demo entry."""
    import intake

    monkeypatch.setenv("ESDL_DATA_DIR", str(demo_cubes["ts"].parent))
    # the shipped entries name the default 1-degree stores; point a copy at the test cube's names
    cat = intake.open_catalog(str(SHIPPED))
    assert "esdc-demo-ts" in list(cat)


# --- the API on the test cube ---------------------------------------------------------------------


def test_list_and_describe_use_the_environment(demo_catalog):
    assert platform_lib.list_cubes() == ["esdc-demo-map", "esdc-demo-ts"]
    d = platform_lib.describe_cube("esdc-demo-ts")
    assert d["chunking"] == "ts" and d["chunks"] == {"time": 256, "lat": 6, "lon": 6}
    assert d["temporal_extent"] == ["2001-01-05", "2012-12-30"]
    assert d["spatial_extent"] == [-180.0, -90.0, 180.0, 90.0]
    assert d["variables"]["air_temperature_2m"]["units"] == "degC"


def test_open_cube_is_lazy_and_equals_the_store(demo_catalog, demo_cubes):
    ds = platform_lib.open_cube("esdc-demo-map")
    assert ds["kndvi"].chunks is not None, "dask-backed"
    stored = (1, 36, 72)
    for dim_chunks, size in zip(ds["kndvi"].chunks, stored, strict=True):
        assert all(c % size == 0 for c in dim_chunks[:-1]), (
            "dask chunks are whole multiples of the stored chunks"
        )
    raw = xr.open_zarr(demo_cubes["map"])
    assert ds.attrs == raw.attrs and list(ds.data_vars) == list(raw.data_vars)
    for name in ("kndvi", "air_temperature_2m"):
        xr.testing.assert_identical(
            ds[name].isel(time=slice(40, 60)).load(), raw[name].isel(time=slice(40, 60)).load()
        )


def test_open_cube_subsets_lazily(demo_catalog, demo_cubes):
    ds = platform_lib.open_cube(
        "esdc-demo-ts",
        variables=["kndvi", "air_temperature_2m"],
        bbox=(-10, 35, 30, 60),
        time_range=("2003-06-01", "2003-08-31"),
    )
    assert set(ds.data_vars) == {"kndvi", "air_temperature_2m"}
    assert float(ds.lon.min()) == -7.5 and float(ds.lon.max()) == 27.5
    assert float(ds.lat.min()) == 37.5 and float(ds.lat.max()) == 57.5
    assert str(ds.time.values[0])[:10] == "2003-06-06" and str(ds.time.values[-1])[:10] == "2003-08-25"
    assert ds["kndvi"].chunks is not None
    raw = xr.open_zarr(demo_cubes["ts"])["kndvi"].sel(
        lat=slice(35, 60), lon=slice(-10, 30), time=slice("2003-06-01", "2003-08-31")
    )
    np.testing.assert_array_equal(ds["kndvi"].values, raw.values)
    one = platform_lib.open_cube("esdc-demo-ts", variables="kndvi")
    assert list(one.data_vars) == ["kndvi"]


def test_reopening_is_cached_until_the_store_changes(tmp_path):
    from platform_lib.storage import write_zarr_atomic

    store = tmp_path / "c.zarr"
    times = xr.date_range("2001-01-05", periods=2, freq="8D")
    cube = xr.Dataset(
        {"t": (("time", "lat", "lon"), np.zeros((2, 2, 2), "float32"), {"units": "K"})},
        coords={"time": times, "lat": [-45.0, 45.0], "lon": [-90.0, 90.0]},
    )
    write_zarr_atomic(cube, store, progress=False)
    cat = tmp_path / "cat.yaml"
    meta = catalog.cube_metadata(cube, chunking="map", license="CC-BY-4.0", source="test")
    cat.write_text(catalog.dump_catalog({"c": catalog.catalog_source(str(store), "c", meta)}, title="t"))
    first = catalog.open_cube("c", catalog=cat)
    first.attrs["mine"] = 1  # a caller's change does not leak into the next open
    assert "mine" not in catalog.open_cube("c", catalog=cat).attrs
    write_zarr_atomic(cube + 1, store, overwrite=True, progress=False)
    assert float(catalog.open_cube("c", catalog=cat)["t"].sum()) == 8.0, "a rewritten store is opened anew"


def test_bbox_across_the_dateline(demo_catalog):
    ds = platform_lib.open_cube("esdc-demo-ts", variables="air_temperature_2m", bbox=(170, 60, -170, 70))
    assert ds["lon"].values.tolist() == [172.5, 177.5, -177.5, -172.5]
    assert ds["lat"].values.tolist() == [62.5, 67.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"variables": ["kndvi", "air_temprature_2m"]},
            r"no variable 'air_temprature_2m'\. Did you mean 'air_temperature_2m'\?",
        ),
        ({"variables": "nope"}, r"Available: .*'kndvi'"),
        ({"bbox": (0, 10, 20)}, r"four numbers"),
        ({"bbox": (0, 60, 20, 10)}, r"lat_min 60 > lat_max 10"),
        ({"bbox": (0, 95, 20, 99)}, r"lat within -90\.\.90"),
        ({"bbox": (0.1, 0.1, 0.2, 0.2)}, r"holds no grid cell .* span lon -177\.5\.\.177\.5"),
        ({"time_range": ("2005-01-01", "2004-01-01")}, r"starts \(2005-01-01\) after it ends"),
        ({"time_range": ("1990-01-01", "1990-12-31")}, r"covers 2001-01-05\.\.2012-12-30"),
        ({"time_range": ("soon", "later")}, r"time_range\[0\] must be a date"),
    ],
)
def test_bad_arguments_say_what_exists(demo_catalog, kwargs, message):
    with pytest.raises(EsdlError, match=message):
        platform_lib.open_cube("esdc-demo-ts", **kwargs)


def test_unknown_cube_lists_the_catalog(demo_catalog):
    with pytest.raises(
        CubeNotFoundError,
        match=r"no cube named 'esdc-demo-tss' in the catalog\. Did you mean 'esdc-demo-ts'\?.*Available: 'esdc-demo-map', 'esdc-demo-ts'",
    ):
        platform_lib.open_cube("esdc-demo-tss")


def test_missing_demo_store_says_how_to_generate(tmp_path):
    cat = tmp_path / "cat.yaml"
    cat.write_text(
        catalog.dump_catalog(demo_catalog_sources(10.0, (2003, 2003), data_ref=str(tmp_path)), title="t")
    )
    with pytest.raises(
        CubeNotGeneratedError, match=r"esdl cubes generate --resolution 10.0 --years 2003-2003"
    ):
        catalog.open_cube("esdc-demo-ts", catalog=cat)


def test_team_catalog_adds_entries_and_refuses_duplicates(demo_catalog, demo_cubes, tmp_path, monkeypatch):
    team = tmp_path / "team.yaml"
    meta = catalog.cube_metadata(
        xr.open_zarr(demo_cubes["ts"]), chunking="ts", license="CC-BY-4.0", source="test"
    )
    team.write_text(
        catalog.dump_catalog(
            {"europe-2003": catalog.catalog_source(str(demo_cubes["ts"]), "team cube", meta)}, title="team"
        )
    )
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(team))
    assert "europe-2003" in platform_lib.list_cubes()
    assert platform_lib.open_cube("europe-2003", variables="kndvi").sizes["time"] == 12 * 46
    team.write_text(
        catalog.dump_catalog(
            {"esdc-demo-ts": catalog.catalog_source(str(demo_cubes["ts"]), "dup", meta)}, title="team"
        )
    )
    # a team entry may not take a shared cube's name: it is skipped with a warning, the shared one stays
    with pytest.warns(CatalogWarning, match="entry 'esdc-demo-ts' skipped: it is already defined in"):
        assert "esdc-demo-ts" in platform_lib.list_cubes()
    with pytest.warns(CatalogWarning):
        assert catalog.get_entry("esdc-demo-ts").catalog != team.resolve()


# --- validation -----------------------------------------------------------------------------------


def test_validate_cli_passes_and_opens(demo_catalog):
    ok = run_esdl("catalog", "validate", str(demo_catalog), "--open")
    assert ok.returncode == 0, ok.stderr
    assert "2 entries OK (opened and compared)" in ok.stdout


def test_validate_cli_names_the_broken_entry(demo_catalog, tmp_path):
    doc = yaml.safe_load(demo_catalog.read_text())
    doc["sources"]["esdc-demo-map"]["metadata"]["variables"]["kndvi"] = {"long_name": "no units"}
    doc["sources"]["esdc-demo-ts"]["metadata"]["spatial_extent"] = [10, 0, 200, 5]  # lon beyond 180
    del doc["sources"]["esdc-demo-ts"]["metadata"]["license"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc).replace("{{ CATALOG_DIR }}", str(demo_catalog.parent)))
    res = run_esdl("catalog", "validate", str(broken))
    assert res.returncode == 1
    assert "entry 'esdc-demo-map': variable 'kndvi' needs 'units'" in res.stderr
    assert "entry 'esdc-demo-ts': spatial_extent [10, 0, 200, 5] must be" in res.stderr
    assert "entry 'esdc-demo-ts': metadata is missing 'license'" in res.stderr
    assert "3 problem(s)" in res.stderr


def test_validate_open_finds_metadata_that_lies(demo_catalog, tmp_path):
    doc = yaml.safe_load(demo_catalog.read_text())
    doc["sources"]["esdc-demo-ts"]["metadata"]["variables"]["kndvi"]["units"] = "K"
    doc["sources"]["esdc-demo-ts"]["metadata"]["temporal_extent"] = ["2001-01-05", "2021-12-31"]
    doc["sources"]["esdc-demo-map"]["args"]["urlpath"] = "{{ CATALOG_DIR }}/missing.zarr"
    lying = demo_catalog.parent / "lying.yaml"
    lying.write_text(yaml.safe_dump(doc))
    problems = catalog.validate_catalog(lying, open_stores=True)
    assert any(
        "'esdc-demo-ts': variable 'kndvi' has units '1' in the store, 'K' in the metadata" in p
        for p in problems
    )
    assert any("'esdc-demo-ts': temporal_extent" in p and "2012-12-30" in p for p in problems)
    assert any("'esdc-demo-map': does not open" in p and "missing.zarr" in p for p in problems)


def test_malformed_catalog_files_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [1, 2]\n")
    assert "a catalog needs a 'sources:' mapping" in catalog.validate_catalog(bad)[0]
    bad.write_text("sources: {x: {driver: zarr}}\n")
    assert "entry 'x' needs 'driver:' and an 'args:' mapping" in catalog.validate_catalog(bad)[0]
    assert "does not exist" in catalog.validate_catalog(tmp_path / "nope.yaml")[0]


def test_cli_list_and_describe(demo_catalog):
    res = run_esdl("cubes", "list")
    assert res.returncode == 0 and "esdc-demo-map" in res.stdout and "map" in res.stdout
    res = run_esdl("cubes", "describe", "esdc-demo-ts")
    assert "air_temperature_2m" in res.stdout and "[degC]" in res.stdout
    res = run_esdl("cubes", "describe", "nope")
    assert res.returncode == 2 and "no cube named 'nope'" in res.stderr


# --- S3 -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3-compatible endpoint on loopback (moto_server)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_open_cube_over_s3(s3_endpoint, demo_cubes, tmp_path):
    import s3fs

    opts = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="cubes")
    fs = s3fs.S3FileSystem(**opts)
    fs.put(str(demo_cubes["ts"]), "cubes/" + demo_cubes["ts"].name, recursive=True)
    meta = catalog.cube_metadata(
        xr.open_zarr(demo_cubes["ts"]), chunking="ts", license="CC-BY-4.0", source="test"
    )
    cat = tmp_path / "s3.yaml"
    cat.write_text(
        catalog.dump_catalog(
            {
                "s3-cube": catalog.catalog_source(
                    f"s3://cubes/{demo_cubes['ts'].name}", "over S3", meta, storage_options=opts
                )
            },
            title="s3",
        )
    )
    ds = catalog.open_cube("s3-cube", variables="kndvi", bbox=(-10, 35, 30, 60), catalog=cat)
    local = xr.open_zarr(demo_cubes["ts"])["kndvi"].sel(lat=slice(35, 60), lon=slice(-10, 30))
    np.testing.assert_array_equal(ds["kndvi"].values, local.values)
    assert catalog.validate_catalog(cat, open_stores=True) == []


def test_repo_catalog_path_is_default(monkeypatch, tmp_path):
    monkeypatch.delenv("ESDL_CATALOG", raising=False)
    monkeypatch.delenv("ESDL_TEAM_CATALOG", raising=False)
    monkeypatch.setenv("ESDL_TEAM_DIR", str(tmp_path))
    assert catalog.catalog_paths() == [SHIPPED]
    # the team folder's catalog joins once it exists, without ESDL_TEAM_CATALOG
    (tmp_path / "catalog.yaml").write_text(catalog.dump_catalog({}, title="team"))
    assert catalog.catalog_paths() == [SHIPPED, tmp_path / "catalog.yaml"]
    assert Path(catalog.describe_cube("esdc-demo-ts")["catalog"]) == SHIPPED.resolve()


# --- remote cubes, finding cubes (issue 20) -------------------------------------------------------


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return _free_port()


def _remote_catalog(
    tmp_path: Path, endpoint_url: str, meta: dict, urlpath: str = "s3://cubes/far.zarr"
) -> Path:
    cat = tmp_path / "remote.yaml"
    options = {"anon": True, "client_kwargs": {"endpoint_url": endpoint_url}}
    cat.write_text(
        catalog.dump_catalog(
            {"far-cube": catalog.catalog_source(urlpath, "far away", meta, storage_options=options)},
            title="remote",
        )
    )
    return cat


@pytest.mark.parametrize("endpoint", ["refused", "no such host"])
def test_an_unreachable_remote_cube_fails_at_once_in_one_line(tmp_path, demo_catalog, endpoint):
    """No network (a name that does not resolve, RFC 2606's .invalid) or no server (a closed port): one line
    that says the cube needs internet and which cubes work offline -- not 270 lines of async traceback."""
    from platform_lib.errors import CubeUnreachableError

    url = (
        f"http://127.0.0.1:{_closed_port()}" if endpoint == "refused" else "https://esdl-nowhere.invalid:9000"
    )
    meta = catalog.describe_cube("esdc-demo-ts")
    cat = _remote_catalog(tmp_path, url, {k: meta[k] for k in catalog.REQUIRED_METADATA})
    started = time.monotonic()
    with pytest.raises(CubeUnreachableError) as caught:
        catalog.open_cube("far-cube", catalog=cat)
    message = str(caught.value)
    assert time.monotonic() - started < catalog.REACH_TIMEOUT + 5  # told at once, not after retries
    assert len(message.splitlines()) == 1 and "cube 'far-cube' needs internet: could not reach" in message
    assert url.split("//")[1] in message and caught.value.__suppress_context__
    done = run_esdl("cubes", "regional", "far-cube", "--name", "x", "--bbox", "0", "0", "10", "10",
                    env={"ESDL_CATALOG": f"{cat}{os.pathsep}{demo_catalog}"})  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("esdl: error: cube 'far-cube' needs internet"), done.stderr
    assert "the demo cubes work offline: 'esdc-demo-map', 'esdc-demo-ts'" in lines[0]


def test_a_reachable_endpoint_without_the_store_is_one_line_too(s3_endpoint, tmp_path):
    meta = catalog.describe_cube("esdc-demo-ts")
    cat = _remote_catalog(
        tmp_path, s3_endpoint, {k: meta[k] for k in catalog.REQUIRED_METADATA}, "s3://nobucket/x.zarr"
    )
    with pytest.raises(EsdlError) as caught:
        catalog.open_cube("far-cube", catalog=cat)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith(
        "cube 'far-cube': could not open s3://nobucket/x.zarr:"
    )


def test_listings_say_which_cubes_need_the_internet():
    assert catalog.list_cubes(SHIPPED, remote=True) == ["esdc-v3-map", "esdc-v3-tiny", "esdc-v3-ts"]
    assert catalog.list_cubes(SHIPPED, remote=False) == ["esdc-demo-map", "esdc-demo-ts"]
    assert catalog.describe_cube("esdc-v3-ts", SHIPPED)["remote"] is True
    assert catalog.describe_cube("esdc-demo-ts", SHIPPED)["remote"] is False
    done = run_esdl("cubes", "list", "--catalog", str(SHIPPED))
    rows = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert done.returncode == 0 and set(rows) == set(catalog.list_cubes(SHIPPED))
    assert all(("needs internet" in row) == name.startswith("esdc-v3") for name, row in rows.items())
    assert all(("offline" in row) == name.startswith("esdc-demo") for name, row in rows.items())


def _extent_cube(
    lon: list[float], lat: list[float], start: str, steps: int, variables: list[str]
) -> xr.Dataset:
    import pandas as pd

    shape = (steps, len(lat), len(lon))
    return xr.Dataset(
        {v: (("time", "lat", "lon"), np.zeros(shape, "float32"), {"units": "1"}) for v in variables},
        coords={"time": pd.date_range(start, periods=steps, freq="8D"), "lat": lat, "lon": lon},
    )


@pytest.fixture()
def find_catalog(tmp_path) -> Path:
    """Three cubes: one across the dateline (Chukotka), one over Europe, one global with other variables."""
    cubes = {
        "chukotka": _extent_cube(
            [170.0, 175.0, -180.0, -175.0], [62.5, 67.5], "2007-06-01", 10, ["kndvi", "t2m"]
        ),
        "europe": _extent_cube([0.0, 5.0, 10.0], [45.0, 50.0], "2003-01-01", 46, ["kndvi"]),
        "global": _extent_cube([-135.0, -45.0, 45.0, 135.0], [-45.0, 45.0], "2001-01-01", 92, ["sst"]),
    }
    sources = {
        name: catalog.catalog_source(
            str(tmp_path / f"{name}.zarr"),
            name,
            catalog.cube_metadata(ds, chunking="ts", license="x", source="y"),
        )
        for name, ds in cubes.items()
    }
    for name, ds in cubes.items():
        ds.to_zarr(tmp_path / f"{name}.zarr")
    cat = tmp_path / "find.yaml"
    cat.write_text(catalog.dump_catalog(sources, title="find"))
    return cat


def test_find_cubes_by_variable_box_and_time(find_catalog):
    find = lambda **kw: catalog.find_cubes(catalog=find_catalog, **kw)  # noqa: E731
    assert catalog.describe_cube("chukotka", find_catalog)["spatial_extent"] == [167.5, 60.0, -172.5, 70.0]
    assert (
        catalog.validate_catalog(find_catalog, open_stores=True) == []
    )  # an extent across the dateline is valid
    assert find(variable="kndvi") == ["chukotka", "europe"]
    assert find(variable=["kndvi", "t2m"]) == ["chukotka"]
    assert find(variable="nope") == []
    assert find(bbox=(-178, 60, -170, 70)) == ["chukotka", "global"]  # east of the dateline
    assert find(bbox=(160, 60, 169, 70)) == ["chukotka", "global"]  # west of it
    assert find(bbox=(150, 60, 160, 70)) == ["global"]
    assert find(bbox=(179, 40, -179, 50)) == ["global"]  # a box across the dateline, south of Chukotka
    assert find(variable="kndvi", time="2003-08-01") == ["europe"]
    assert find(time=("2007-07-01", "2010-01-01")) == ["chukotka"]
    assert find(time="1990-01-01") == []
    done = run_esdl(
        "cubes",
        "list",
        "--catalog",
        str(find_catalog),
        "--variable",
        "kndvi",
        "--bbox",
        "-178",
        "60",
        "-170",
        "70",
    )
    assert done.returncode == 0 and [line.split()[0] for line in done.stdout.splitlines()] == ["chukotka"]
    done = run_esdl("cubes", "list", "--catalog", str(find_catalog), "--variable", "nope")
    assert done.returncode == 1 and done.stdout == "" and "no cube matches" in done.stderr


lons = st.floats(-180, 180, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(a=st.tuples(lons, lons), b=st.tuples(lons, lons))
def test_longitude_overlap_agrees_with_counting_degrees(a, b):
    """Two longitude ranges (either may cross the dateline) overlap exactly when some longitude on a fine grid
    lies in both (the reference walks the circle instead of reasoning about intervals)."""
    assume(a[0] != a[1] and b[0] != b[1])

    def covers(lo, hi, x):
        return lo <= x <= hi if lo <= hi else x >= lo or x <= hi

    grid = np.union1d(np.linspace(-180, 180, 36001), [*a, *b])
    expected = any(covers(*a, x) and covers(*b, x) for x in grid)
    assert catalog.extents_overlap([a[0], -10, a[1], 10], (b[0], -5, b[1], 5)) == expected


def test_a_bbox_with_swapped_longitudes_warns_and_one_across_the_dateline_does_not():
    from platform_lib.arguments import bbox_argument
    from platform_lib.errors import DatelineWarning

    with pytest.warns(DatelineWarning, match=r"spans 320 degrees.*write \(-10, 35, 30, 60\)"):
        bbox_argument((30, 35, -10, 60))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bbox_argument((170, 60, -170, 70)) == (170.0, 60.0, -170.0, 70.0)
        bbox_argument((-10, 35, 30, 60))
    done = run_esdl("cubes", "list", "--bbox", "30", "35", "-10", "60", "--catalog", str(SHIPPED))
    assert "esdl: warning: bbox (30.0, 35.0, -10.0, 60.0) has lon_min 30 > lon_max -10" in done.stderr
