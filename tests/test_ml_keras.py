"""The Keras 3 PyDataset (torch backend): chunk-aware epoch order, masks as sample weights, and a tiny
model that learns with model.fit on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np
import pytest
from ml_helpers import CHUNKINGS, synthetic_cube, write_cube

from platform_lib.errors import EsdlError
from platform_lib.ml import SampleSpec, TrainingSet

SPEC = SampleSpec(
    inputs=["air_temperature_2m", "kndvi"],
    targets="gross_primary_productivity",
    patch={"time": 8},
    stride={"time": 4},
)


@pytest.fixture(scope="module")
def keras() -> Iterator[ModuleType]:
    """Keras on the torch backend. Keras reads ``KERAS_BACKEND`` once, when first imported (its
    ``keras.config.set_backend`` needs an imported Keras, and the default backend, TensorFlow, is not
    installed), so it is set for this module's tests only, before the import."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_BACKEND", "torch")
        keras = pytest.importorskip("keras", reason="the 'ml' extra (keras) is not installed")
        assert keras.config.backend() == "torch", "Keras was imported on another backend before this module"
        yield keras


@pytest.fixture(scope="module")
def make_keras_dataset(keras: ModuleType) -> Callable[..., object]:
    """:func:`platform_lib.ml.keras.make_keras_dataset`, imported once Keras is."""
    from platform_lib.ml.keras import make_keras_dataset

    return make_keras_dataset


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_cube(
        synthetic_cube(seed=3), tmp_path_factory.mktemp("ml-keras") / "ts.zarr", CHUNKINGS["ts"]
    )


def test_pydataset_covers_each_sample_once_per_epoch_and_reshuffles(store, make_keras_dataset):
    ts = TrainingSet(store, SPEC, nan="drop-any", normalise=False)
    data = make_keras_dataset(ts, 16, seed=4)
    kept = data.training_set
    assert len(kept) < len(ts)  # the NaN drop happened up front
    first = np.concatenate([data._order])
    assert sorted(first.tolist()) == list(range(len(kept)))
    x, y = data[0]
    assert x.shape == (16, 2, 8) and y.shape == (16, 1, 8) and not np.isnan(y).any()
    np.testing.assert_array_equal(x[0], kept.sample(int(first[0]))["x"])
    data.on_epoch_end()
    assert data._order.tolist() != first.tolist() and sorted(data._order.tolist()) == sorted(first.tolist())
    assert kept._cache.misses <= kept.plan.n_blocks  # block-ordered batches: each block read once
    with pytest.raises(IndexError):
        data[len(data)]


def test_mask_weights_and_clear_errors(store, make_keras_dataset):
    ts = TrainingSet(store, SPEC, nan="mask")
    x, y, w = make_keras_dataset(ts, 8, weights="mask")[0]
    assert not np.isnan(x).any() and w.shape == (8,) and ((w >= 0) & (w <= 1)).all()
    with pytest.raises(EsdlError, match="needs a NaN policy with mask=True"):
        make_keras_dataset(TrainingSet(store, SPEC), 8, weights="mask")
    with pytest.raises(EsdlError, match="needs targets"):
        make_keras_dataset(TrainingSet(store, SampleSpec(inputs="kndvi", patch={"time": 8})), 8)


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_a_tiny_keras_model_learns_on_cpu(store, keras, make_keras_dataset):
    keras.utils.set_random_seed(0)
    spec = SampleSpec(
        inputs=SPEC.inputs, targets=SPEC.targets, patch={"time": 8}, stride={"time": 4, "lat": 3, "lon": 3}
    )
    ts = TrainingSet(store, spec, nan="drop-any")
    data = make_keras_dataset(ts, 32, seed=0)
    assert 10 < len(data) < 30
    model = keras.Sequential(
        [
            keras.Input((2, 8)),
            keras.layers.Permute((2, 1)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1),
            keras.layers.Permute((2, 1)),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(data, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
