"""Materialised training sets: written atomically to Zarr, loaded back equal to the live samples, with
split labels and statistics; the torch MaterialisedDataset reads them."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from ml_helpers import CHUNKINGS, synthetic_cube, write_cube

from platform_lib.errors import EsdlError
from platform_lib.ml import BlockSplit, NormStats, SampleSpec, TrainingSet, load_training_set, materialise

SPEC = SampleSpec(
    inputs=["air_temperature_2m", "gross_primary_productivity"],
    targets="kndvi",
    patch={"time": 8, "lat": 2, "lon": 2},
    stride={"time": 8, "lat": 2, "lon": 2},
)
SPLIT = BlockSplit(
    {"time": 46, "lon": 8}, {"train": 0.5, "val": 0.25, "test": 0.25}, buffer={"lon": 1}, seed=2
)


@pytest.fixture(scope="module")
def cube():
    return synthetic_cube(seed=4)


@pytest.fixture(scope="module")
def store(cube, tmp_path_factory):
    return write_cube(cube, tmp_path_factory.mktemp("ml-mat") / "ts.zarr", CHUNKINGS["ts"])


def test_materialised_set_equals_the_live_samples(store, tmp_path):
    ts = TrainingSet(store, SPEC, split=SPLIT, nan="mask")
    out = materialise(ts, tmp_path / "set.zarr", batch_size=50, progress=False)
    loaded = load_training_set(out)
    names = loaded["split"].attrs["flag_meanings"].split()
    assert names == ["train", "val", "test"]
    assert SampleSpec.from_json(loaded.attrs["sample_spec"]) == SPEC
    stats = NormStats.from_dataset(loaded)
    np.testing.assert_allclose(stats.mean, ts.stats.mean)
    total = 0
    for name in names:
        live = ts.subset(name)
        want = {
            tuple(o): (x, y, m)
            for b in live.iter_batches(64, shuffle=False)
            for o, x, y, m in zip(b["origin"], b["x"], b["y"], b["y_mask"], strict=True)
        }
        part = load_training_set(out, subset=name)
        assert part.sizes["sample"] == len(want) == len(live)
        for o, x, y, m in zip(
            part["origin"].values, part["x"].values, part["y"].values, part["y_mask"].values, strict=True
        ):
            wx, wy, wm = want[tuple(o)]
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)
            np.testing.assert_array_equal(m, wm)
        total += len(want)
    assert loaded.sizes["sample"] == total
    assert loaded["x"].dims == ("sample", "channel", "time", "lat", "lon")
    assert list(loaded["channel"].values) == list(SPEC.inputs)
    o = loaded["origin"].values[0]
    assert loaded["origin_time"].values[0] == ts.ds["time"].values[o[0]]


def test_materialise_is_atomic_and_checks_its_input(store, cube, tmp_path):
    target = tmp_path / "set.zarr"
    materialise(TrainingSet(store, SPEC, normalise=False), target, progress=False)
    with pytest.raises(EsdlError, match="already exists"):
        materialise(TrainingSet(store, SPEC, normalise=False), target, progress=False)
    with pytest.raises(EsdlError, match="Unknown subset 'training'"):
        materialise(
            TrainingSet(store, SPEC, split=SPLIT),
            tmp_path / "other.zarr",
            subsets=["training"],
            progress=False,
        )

    def boom(block):
        raise RuntimeError("read failed")

    broken = cube.copy()
    broken["kndvi"] = (
        cube["kndvi"].dims,
        da.from_array(cube["kndvi"].values, chunks=(32, 6, 8)).map_blocks(boom, dtype="float32"),
    )
    with pytest.raises(RuntimeError, match="read failed"):
        materialise(TrainingSet(broken, SPEC, normalise=False), target, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.zarr"]  # nothing half-written
    assert load_training_set(target).sizes["sample"] == len(TrainingSet(store, SPEC))
    with pytest.raises(EsdlError, match="No materialised training set"):
        load_training_set(tmp_path / "missing.zarr")


def test_torch_reads_a_materialised_set(store, tmp_path):
    torch = pytest.importorskip("torch", reason="the 'ml' extra (torch) is not installed")
    from platform_lib.ml.torch import MaterialisedDataset

    ts = TrainingSet(store, SPEC, split=SPLIT, nan="drop-any")
    out = materialise(ts, tmp_path / "set.zarr", batch_size=16, progress=False)
    train = MaterialisedDataset(out, subset="train")
    want = np.concatenate([b["x"] for b in ts.iter_batches(64, shuffle=False)])
    assert 0 < len(train) == len(want) < len(ts)  # NaN samples were dropped before writing
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=False)
    xs = torch.cat([b["x"] for b in loader])
    np.testing.assert_array_equal(xs.numpy(), want)
    with pytest.raises(EsdlError, match="Unknown subset"):
        MaterialisedDataset(out, subset="holdout")
