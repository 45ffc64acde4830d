"""rechunk_cube: value-for-value copies between chunkings, bounded memory, sharding, atomic output,
catalog registration and clear errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from ml_helpers import CHUNKINGS, synthetic_cube, write_cube

from platform_lib.errors import EsdlError
from platform_lib.rechunk import plan_stage, plan_variable, rechunk_cube


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    ds = synthetic_cube(seed=2)
    ds.attrs["title"] = "synthetic test cube"
    return ds


@pytest.fixture(scope="module")
def stores(cube, tmp_path_factory):
    root = tmp_path_factory.mktemp("rechunk-src")
    return {name: write_cube(cube, root / f"{name}.zarr", chunks) for name, chunks in CHUNKINGS.items()}


def assert_same_cube(out_path, cube, chunks):
    out = xr.open_zarr(out_path, chunks=None)
    xr.testing.assert_identical(out.load(), cube)  # values (NaN where NaN), coords and attrs
    for name in cube.data_vars:
        assert out[name].encoding["chunks"] == tuple(chunks[d] for d in out[name].dims)


def test_map_to_ts_and_back_equals_the_source_value_for_value(stores, cube, tmp_path, max_mem="64MB"):
    ts = rechunk_cube(
        stores["map"], {"time": 32, "lat": 6, "lon": 8}, tmp_path / "ts.zarr", max_mem=max_mem, progress=False
    )
    assert_same_cube(ts, cube, {"time": 32, "lat": 6, "lon": 8})
    back = rechunk_cube(ts, "map", tmp_path / "map.zarr", max_mem=max_mem, progress=False)
    assert_same_cube(back, cube, {"time": 1, "lat": 12, "lon": 24})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.zarr", "ts.zarr"]  # no temporary left


def test_a_small_budget_takes_the_two_stage_path_and_stays_within_it(stores, cube, tmp_path):
    src = [np.arange(0, 93), np.array([0, 12]), np.array([0, 24])]  # map chunks (1, 12, 24)
    direct = plan_stage(src, (32, 6, 8), (92, 12, 24), 4, 30_000)
    assert direct.reads_per_chunk > 1  # 30 kB cannot hold 32 whole maps: each map would be decoded again
    roomy = plan_stage(src, (32, 6, 8), (92, 12, 24), 4, 64_000_000)
    assert roomy.reads_per_chunk == 1.0 and roomy.block_shape[1:] == (12, 24)

    source = xr.open_zarr(stores["map"], chunks=None)
    target = {"time": 32, "lat": 6, "lon": 8}
    tight = plan_variable(source, "kndvi", target, target, 30_000)
    assert tight.intermediate_chunks == (1, 6, 8) and len(tight.stages) == 2
    assert all(st.reads_per_chunk == 1.0 for st in tight.stages)  # each chunk decoded once per stage
    assert tight.peak_bytes <= 30_000 < source["kndvi"].nbytes  # never the whole variable in memory
    assert plan_variable(source, "kndvi", target, target, 64_000_000).intermediate_chunks is None
    out = rechunk_cube(stores["map"], target, tmp_path / "ts.zarr", max_mem=30_000, progress=False)
    assert_same_cube(out, cube, target)


def test_sharded_output(stores, cube, tmp_path):
    out = rechunk_cube(
        stores["ts"],
        {"time": 8, "lat": 6, "lon": 8},
        tmp_path / "sharded.zarr",
        shards={"time": 32, "lon": 24},
        progress=False,
    )
    ds = xr.open_zarr(out, chunks=None)
    assert ds["kndvi"].encoding["shards"] == (32, 6, 24)
    xr.testing.assert_identical(ds.load(), cube)


def test_output_is_atomic_and_existing_stores_are_kept(stores, cube, tmp_path):
    target = tmp_path / "out.zarr"
    rechunk_cube(stores["ts"], "map", target, progress=False)
    with pytest.raises(EsdlError, match="already exists; pass overwrite=True"):
        rechunk_cube(stores["ts"], "ts", target, progress=False)

    def boom(block):
        raise RuntimeError("disk on fire")

    broken = cube.copy()
    data = da.from_array(cube["kndvi"].values, chunks=(46, 12, 24)).map_blocks(boom, dtype="float32")
    broken["kndvi"] = (cube["kndvi"].dims, data)
    with pytest.raises(RuntimeError, match="disk on fire"):
        rechunk_cube(broken, "ts", target, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # no half-written store
    assert_same_cube(target, cube, {"time": 1, "lat": 12, "lon": 24})  # the old one is intact


def test_bad_arguments_give_clear_errors(stores, tmp_path):
    with pytest.raises(EsdlError, match="below the .* bytes one write unit"):
        rechunk_cube(stores["map"], "ts", tmp_path / "x.zarr", max_mem="1kB", progress=False)
    with pytest.raises(EsdlError, match="target 'columns' is not known"):
        rechunk_cube(stores["map"], "columns", tmp_path / "x.zarr", progress=False)
    with pytest.raises(EsdlError, match="unknown dims"):
        rechunk_cube(stores["map"], {"depth": 3}, tmp_path / "x.zarr", progress=False)
    with pytest.raises(EsdlError, match="multiple of the chunk size 8"):
        rechunk_cube(stores["map"], {"lon": 8}, tmp_path / "x.zarr", shards={"lon": 12}, progress=False)
    with pytest.raises(EsdlError, match="max_mem='lots' is not a size"):
        rechunk_cube(stores["map"], "ts", tmp_path / "x.zarr", max_mem="lots", progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_register_adds_the_result_to_the_team_catalog(stores, cube, tmp_path):
    from platform_lib.team import list_team_cubes, team_cube_entries

    catalog = tmp_path / "team.yaml"
    out = rechunk_cube(
        stores["map"],
        "ts",
        tmp_path / "cubes" / "my-ts.zarr",
        register="my-ts",
        catalog_path=catalog,
        progress=False,
    )
    assert list_team_cubes(catalog_path=catalog) == ["my-ts"]
    meta = team_cube_entries(catalog)["my-ts"]["metadata"]
    assert meta["chunking"] == "ts" and "rechunked from" in meta["source"]
    assert out.exists()


def test_blocks_run_on_a_dask_cluster(stores, cube, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the 'hub' extra (distributed) is not installed")
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
    ) as client:
        out = rechunk_cube(
            stores["map"],
            {"time": 32, "lat": 6, "lon": 8},
            tmp_path / "ts.zarr",
            client=client,
            progress=False,
        )
    assert_same_cube(out, cube, {"time": 32, "lat": 6, "lon": 8})


def test_cli_rechunks_and_reports_bad_input(stores, cube, tmp_path, capsys):
    from platform_lib.cli import main

    out = tmp_path / "cli.zarr"
    args = [
        str(stores["map"]),
        str(out),
        "--target",
        "time=32,lat=6,lon=8",
        "--max-mem",
        "64MB",
        "--no-progress",
    ]
    assert main(["rechunk", *args]) == 0
    assert "rechunked" in capsys.readouterr().out
    assert_same_cube(out, cube, {"time": 32, "lat": 6, "lon": 8})
    with pytest.raises(SystemExit) as refused:  # the parser refuses it, naming the option
        main(["rechunk", str(stores["map"]), str(tmp_path / "x.zarr"), "--target", "time:32"])
    assert refused.value.code == 2
    assert (
        "argument --target: 'time:32' is not allowed: use ts, map or dim=size pairs"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "x.zarr").exists()
