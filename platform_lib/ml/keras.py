"""Keras 3 adapter: a ``keras.utils.PyDataset`` over a :class:`~platform_lib.ml.TrainingSet`.

Works with any Keras 3 backend; on this platform ``KERAS_BACKEND=torch`` (set by default here when
Keras was not imported yet). Needs the ``ml`` extra (``pip install 'esdl-platform[ml]'``).

Batch ``i`` of an epoch holds the samples the plan's chunk-aware epoch order puts there (blocks
shuffled, then samples within a window of blocks), read through a small block cache, so each stored
chunk is decoded about once per epoch; :meth:`on_epoch_end` reshuffles with the next epoch's seed.

>>> import numpy as np, xarray as xr
>>> from platform_lib.ml import SampleSpec, TrainingSet
>>> ds = xr.Dataset({"a": (("time", "lat"), np.arange(40, dtype="float32").reshape(10, 4))})
>>> data = make_keras_dataset(TrainingSet(ds, SampleSpec(inputs="a", targets="a", patch={"time": 2})), 8)
>>> len(data), [a.shape for a in data[0]]
(3, [(8, 1, 2), (8, 1, 2)])
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from platform_lib.arguments import number_argument
from platform_lib.errors import EsdlError, import_extra
from platform_lib.ml.training_set import TrainingSet

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = import_extra("keras", "ml", "The Keras adapter (platform_lib.ml.keras)")


class CubePyDataset(keras.utils.PyDataset):
    """Batches ``(x, y)`` (or ``(x, y, sample_weight)`` with ``weights="mask"``) of a training set.

    ``weights="mask"`` returns the targets' validity mask as sample weights (NaN policy ``mask=True``
    with a ``fill``), so gaps do not count in the loss. ``workers``/``use_multiprocessing``/
    ``max_queue_size`` go to ``PyDataset``.
    """

    def __init__(
        self,
        training_set: TrainingSet,
        batch_size: int = 32,
        *,
        seed: int = 0,
        shuffle: bool = True,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        batch_size = number_argument(batch_size, "batch_size", low=1, integer=True)
        if not training_set.spec.targets:
            raise EsdlError("A Keras dataset needs targets: give the SampleSpec targets=[...].")
        if weights not in (None, "mask"):
            raise EsdlError(f"weights={weights!r} is not one of None, 'mask'.")
        if weights == "mask" and not training_set.nan.mask:
            raise EsdlError("weights='mask' needs a NaN policy with mask=True (for example nan='mask').")
        self.training_set = training_set.without_dropped(progress=False)
        _ = self.training_set.stats
        self.batch_size, self.seed, self.shuffle, self.weights = batch_size, seed, shuffle, weights
        self.epoch = 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        return self.training_set.plan.epoch_order(
            seed=self.seed, epoch=self.epoch, shuffle=self.shuffle, window=self.training_set.window
        )

    def __len__(self) -> int:
        return math.ceil(len(self._order) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        ids = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self.training_set.take(ids)
        if self.weights == "mask":
            weight = batch["y_mask"].reshape(len(ids), -1).mean(axis=1).astype(np.float32)
            return batch["x"], batch["y"], weight
        return batch["x"], batch["y"]

    def on_epoch_end(self) -> None:
        """Next epoch: a new seeded order."""
        self.epoch += 1
        self._order = self._epoch_order()


def make_keras_dataset(training_set: TrainingSet, batch_size: int = 32, **kwargs: Any) -> CubePyDataset:
    """A :class:`CubePyDataset` for ``model.fit(...)``; keyword arguments as for the class."""
    return CubePyDataset(training_set, batch_size, **kwargs)
