"""Write a sampled training set to Zarr (inputs, targets, masks, origins, split labels, statistics) and
load it back.

The store is written to a temporary sibling and renamed into place when complete
(``platform_lib.storage.atomic_path``). Samples are streamed batch by batch from the chunk-aware reader,
so memory stays bounded whatever the size of the set. Layout (xarray-readable, Zarr v3):

- ``x`` (sample, channel, *patch dims), ``y`` (sample, target, *patch dims), ``x_mask``/``y_mask``
  with the NaN policy's ``mask=True``; already filled and normalised as the training set says;
- ``origin`` (sample, dim): the sample's first cell in the cube, ``origin_<dim>`` its coordinate;
- ``split`` (sample): code into the ``flag_meanings`` attribute (``train val test``);
- ``mean``/``std``/``count`` (variable): the normalisation statistics (train cells only);
- attributes ``sample_spec`` (JSON), ``nan_policy``, ``normalise``, ``source``.

>>> import tempfile, numpy as np, xarray as xr
>>> from pathlib import Path
>>> from platform_lib.ml import SampleSpec, TrainingSet
>>> ds = xr.Dataset({"a": (("time", "lat"), np.arange(40, dtype="float32").reshape(10, 4))})
>>> ts = TrainingSet(ds, SampleSpec(inputs="a", targets="a", patch={"time": 2}))
>>> out = materialise(ts, Path(tempfile.mkdtemp()) / "set.zarr", progress=False)
>>> loaded = load_training_set(out)
>>> loaded["x"].shape, loaded["split"].attrs["flag_meanings"]
((20, 1, 2), 'all')
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from platform_lib.errors import EsdlError
from platform_lib.ml.training_set import TrainingSet
from platform_lib.storage import atomic_path


def materialise(
    training_set: TrainingSet,
    path: str | os.PathLike[str],
    *,
    subsets: list[str] | None = None,
    batch_size: int = 1024,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write every sample of ``training_set`` (each split in ``subsets``, default all) to ``path``.

    Without a split the set is written as one subset named ``all``. Samples are in plan order
    (unshuffled); NaN-dropped samples are left out. Returns ``path``.
    """
    import zarr

    if not isinstance(training_set, TrainingSet):
        raise EsdlError(f"materialise() needs a TrainingSet; got {type(training_set).__name__}.")
    grid = training_set.grid
    names = list(grid.names) if grid is not None else ["all"]
    subsets = names if subsets is None else list(subsets)
    for name in subsets:
        if name not in names:
            raise EsdlError(f"Unknown subset {name!r}; the training set has {names}.")
    parts = {name: training_set.subset(name) if grid is not None else training_set for name in subsets}
    stats = training_set.stats
    dims = training_set.dims
    sample_dims = training_set.spec.sample_dims(dims)
    path = Path(path)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(p) for p in parts.values()), desc=f"materialise {path.name}", unit="sample")
    with atomic_path(path, overwrite=overwrite) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        arrays: dict[str, Any] = {}
        codes: list[np.ndarray] = []
        for name, part in parts.items():
            code = names.index(name)
            for batch in part.iter_batches(batch_size, shuffle=False):
                for key, value in batch.items():
                    if key == "sample":
                        continue
                    if key not in arrays:
                        arrays[key] = _create(group, key, value, batch_size, sample_dims, dims)
                    arrays[key].append(value, axis=0)
                codes.append(np.full(len(batch["sample"]), code, dtype=np.int8))
                if bar is not None:
                    bar.update(len(batch["sample"]))
        if not codes:
            raise EsdlError("The training set has no samples to materialise (all dropped or an empty split).")
        _write_small(tmp, training_set, np.concatenate(codes), names, arrays["origin"], stats)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            zarr.consolidate_metadata(str(tmp))
    if bar is not None:
        bar.close()
    return path


def _create(
    group: Any,
    key: str,
    value: np.ndarray,
    batch_size: int,
    sample_dims: tuple[str, ...],
    dims: tuple[str, ...],
) -> Any:
    if key == "origin":
        names = ["sample", "dim"]
    else:
        channel = "channel" if key.startswith("x") else "target"
        names = ["sample", channel, *sample_dims]
    fill = np.nan if np.issubdtype(value.dtype, np.floating) else (False if value.dtype == bool else 0)
    return group.create_array(
        key,
        shape=(0, *value.shape[1:]),
        chunks=(batch_size, *value.shape[1:]),
        dtype=value.dtype,
        fill_value=fill,
        dimension_names=names,
    )


def _write_small(
    tmp: Path, ts: TrainingSet, codes: np.ndarray, names: list[str], origin: Any, stats: Any
) -> None:
    import xarray as xr

    origins = origin[:]
    data: dict[str, Any] = {
        "split": (
            ("sample",),
            codes,
            {"flag_values": list(range(len(names))), "flag_meanings": " ".join(names)},
        ),
    }
    for k, d in enumerate(ts.dims):
        if d in ts.ds.coords:
            data[f"origin_{d}"] = (("sample",), ts.ds[d].values[origins[:, k]])
    coords: dict[str, Any] = {"dim": vlen_strings(ts.dims), "channel": vlen_strings(ts.spec.inputs)}
    if ts.spec.targets:
        coords["target"] = vlen_strings(ts.spec.targets)
    extra = xr.Dataset(data, coords=coords)
    if stats is not None:
        extra = extra.merge(stats.to_dataset())
    extra.attrs = {
        "sample_spec": ts.spec.to_json(),
        "nan_policy": json.dumps(dataclasses.asdict(ts.nan)),
        "normalise": json.dumps(ts.normalise),
        "split": json.dumps(dataclasses.asdict(ts.split), default=str) if ts.split is not None else "null",
        "source": str(ts.ds.encoding.get("source", ts.ds.attrs.get("title", ""))),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        extra.to_zarr(tmp, mode="a", zarr_format=3, consolidated=False)


def vlen_strings(values: Any) -> np.ndarray:
    """Variable-length strings (Zarr v3 has no stable fixed-width string type).

    >>> vlen_strings(["a", 1]).dtype
    dtype('O')
    """
    return np.array([str(v) for v in values], dtype=object)


def load_training_set(path: str | os.PathLike[str], subset: str | None = None) -> Any:
    """Open a materialised training set lazily as an ``xarray.Dataset`` (optionally one ``subset``).

    ``ds.attrs["sample_spec"]`` rebuilds the spec with :meth:`SampleSpec.from_json`; ``mean``/``std``
    give :class:`~platform_lib.ml.stats.NormStats` via ``NormStats.from_dataset``.
    """
    import xarray as xr

    path = Path(path)
    if not (path / "zarr.json").exists():
        raise EsdlError(f"No materialised training set at {path}.")
    ds = xr.open_zarr(path)
    if subset is None:
        return ds
    names = ds["split"].attrs["flag_meanings"].split()
    if subset not in names:
        raise EsdlError(f"Unknown subset {subset!r}; this training set has {names}.")
    keep = np.flatnonzero(ds["split"].values == names.index(subset))
    return ds.isel(sample=keep)
