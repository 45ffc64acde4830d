"""PyTorch adapters: an ``IterableDataset`` sharded over workers and ranks, a map-style ``Dataset``, a
chunk-aware ``Sampler`` and :func:`make_dataloader`. Needs the ``ml`` extra (``pip install
'esdl-platform[ml]'``).

The iterable dataset gives every (rank, worker) pair its own share of the plan's blocks, so each
sample is seen exactly once per epoch whatever ``num_workers`` and the world size, and every block is
read by one process only. Batches are cut inside the dataset (``DataLoader(batch_size=None)``).
:func:`make_dataloader` has the dataset yield a *segment* of several batches at a time (about 8 MB of
samples, :meth:`TrainingSet.iter_segments`) as one item, so the ``DataLoader``'s own cost per item is
paid once per segment; from a worker process a segment's large arrays travel as shared-memory tensors
they were cut into, its small ones pickled through the pipe (:class:`SharedSegments`). The loader
hands out its batches as views.

>>> import numpy as np, xarray as xr
>>> from platform_lib.ml import SampleSpec, TrainingSet
>>> ds = xr.Dataset({"a": (("time", "lat"), np.arange(40, dtype="float32").reshape(10, 4))})
>>> ts = TrainingSet(ds, SampleSpec(inputs="a", targets="a", patch={"time": 2}), normalise=False)
>>> loader = make_dataloader(ts, batch_size=8, seed=0)
>>> [tuple(b["x"].shape) for b in loader]
[(8, 1, 2), (8, 1, 2), (4, 1, 2)]
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from platform_lib.arguments import number_argument
from platform_lib.errors import EsdlError, import_extra
from platform_lib.ml.reader import BlockCache
from platform_lib.ml.training_set import TrainingSet, batches_of, rows_of

torch = import_extra("torch", "ml", "The PyTorch adapters (platform_lib.ml.torch)")
_data = torch.utils.data


#: a worker cuts a segment array of at least this many bytes into shared memory; smaller ones (and
#: origins, sample ids, masks) are pickled through the worker's pipe, cheaper than a segment each
SHARE_ABOVE = 1 << 20


class SharedSegments:
    """What a DataLoader worker sends for a segment: its large arrays allocated in shared memory from
    the start (they cross to the main process as tensors without another copy), the small ones as
    numpy arrays, pickled through the worker's pipe (no shared-memory segment of their own).

    >>> alloc = SharedSegments()
    >>> big, small = alloc.empty((2**18, 2), np.dtype("float32")), alloc.empty((3,), np.dtype("int64"))
    >>> big[:] = 1
    >>> sent = alloc.prepare({"x": big[1:], "sample": small})
    >>> sent["x"].is_shared(), tuple(sent["x"].shape), type(sent["sample"]).__name__
    (True, (262143, 2), 'ndarray')
    """

    def __init__(self) -> None:
        self._bases: list[tuple[int, int, Any]] = []  # (address, bytes, tensor) of recent shared arrays

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An empty array: a numpy view of a new shared-memory tensor when large."""
        dtype = np.dtype(dtype)
        if int(np.prod(shape)) * dtype.itemsize < SHARE_ABOVE:
            return np.empty(shape, dtype=dtype)
        tensor = torch.from_numpy(np.empty(0, dtype=dtype)).new_empty(shape).share_memory_()
        array = tensor.numpy()
        # the arrays of the segment being cut and of the one before it (a segment may be handed
        # over in two parts): older ones are no longer looked up
        self._bases = [*self._bases[-3:], (array.ctypes.data, array.nbytes, tensor)]
        return array

    def prepare(self, segment: dict[str, np.ndarray]) -> dict[str, Any]:
        """``segment`` to send: views of the shared tensors where an array lies in one, the rest as
        they are (numpy, converted by :func:`split_segment` in the main process)."""
        return {k: self._shared_view(v) for k, v in segment.items()}

    def _shared_view(self, value: np.ndarray) -> Any:
        address = value.ctypes.data
        for base, nbytes, tensor in self._bases:
            if base <= address < base + nbytes and value.dtype == tensor.numpy().dtype:
                size = value.itemsize
                return torch.as_strided(
                    tensor, value.shape, [st // size for st in value.strides], (address - base) // size
                )
        return value


def _as_is(item: Any) -> Any:
    """The ``DataLoader`` ``collate_fn`` of segments: items are sent as they are (numpy arrays
    pickled, not turned into tensors, each with a shared-memory segment, inside the worker)."""
    return item


def _tensors(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)) if np.ndim(v) else torch.as_tensor(v)
        for k, v in batch.items()
    }


_SIZES = "_esdl_batch_sizes"


def split_segment(item: dict[str, Any], pin: bool = False) -> list[dict[str, Any]]:
    """The batches of a segment item :class:`CubeIterableDataset` yields with ``grouped=True``
    (tensors or numpy arrays, plus the batch sizes under ``"_esdl_batch_sizes"``): dicts of tensors,
    views of the segment's, one ``torch.split`` per field (``pin``: its fields pinned first, once).
    Anything else comes back as a one-batch list.

    >>> import numpy as np, torch
    >>> item = {"x": torch.arange(5.0), "sample": np.arange(5), "_esdl_batch_sizes": np.array([2, 3])}
    >>> [(b["x"].tolist(), b["sample"].tolist()) for b in split_segment(item)]
    [([0.0, 1.0], [0, 1]), ([2.0, 3.0, 4.0], [2, 3, 4])]
    >>> split_segment({"x": 1})
    [{'x': 1}]
    """
    if not isinstance(item, dict) or _SIZES not in item:
        return [item]
    sizes = np.asarray(item[_SIZES]).tolist()
    fields = {k: torch.as_tensor(v) for k, v in item.items() if k != _SIZES}
    if pin:
        fields = {k: v if v.is_pinned() else v.pin_memory() for k, v in fields.items()}
    parts = {k: torch.split(v, sizes) for k, v in fields.items()}
    return [{k: v[i] for k, v in parts.items()} for i in range(len(sizes))]


class _SegmentDataLoader(_data.DataLoader):
    """A ``DataLoader`` whose items are segments of several batches (from a worker: one transfer for
    all of them; in the main process: one pass of the ``DataLoader`` machinery), handed out batch by
    batch as views."""

    def __iter__(self) -> Iterator[Any]:
        pin = bool(self.pin_memory) and torch.cuda.is_available()  # fields pickled as numpy too
        for item in super().__iter__():
            yield from split_segment(item, pin=pin)


def _first_rows(sizes: list[int], room: int) -> list[int]:
    """The batch sizes that hold the first ``room`` rows of batches of ``sizes`` (the last cut short).

    >>> _first_rows([4, 4, 4], 6), _first_rows([4, 4], 8), _first_rows([4], 9)
    ([4, 2], [4, 4], [4])
    """
    kept = []
    for size in sizes:
        if room <= 0:
            break
        kept.append(min(size, room))
        room -= kept[-1]
    return kept


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None and world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise EsdlError(f"rank must be in [0, world_size={world_size}); got {rank}.")
    return rank, world_size


class CubeIterableDataset(_data.IterableDataset):
    """Batches (or samples, with ``batch_size=None``) of a :class:`TrainingSet`, one epoch per iteration.

    Shards by ``torch.utils.data.get_worker_info()`` and by distributed rank (``rank``/``world_size``,
    default from ``torch.distributed`` when initialised). :meth:`set_epoch` reshuffles; the epoch is
    kept in shared memory so persistent workers see it too. ``even=True`` stops every shard after the
    same number of samples (the smallest shard's), so distributed ranks run the same number of steps
    (as ``DistributedDataParallel`` needs); the few samples beyond it change from epoch to epoch.
    In a ``DataLoader`` worker the training set's read threads (``threads``, and the reader's) are
    divided among the workers, at least one each. ``grouped=True`` (what :func:`make_dataloader`
    uses) yields segments of several batches, which its loader splits again.
    """

    def __init__(
        self,
        training_set: TrainingSet,
        batch_size: int | None = 32,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        even: bool = False,
        grouped: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(training_set, TrainingSet):
            raise EsdlError(f"Expected a TrainingSet; got {type(training_set).__name__}.")
        if even:  # shard sizes must be known up front: apply the NaN drop now
            training_set = training_set.without_dropped(progress=False)
        self.even, self.grouped = even, grouped
        self._threads_shared = False  # set in a worker once its read threads are divided
        self.training_set = training_set
        _ = training_set.stats  # computed once here, not in every worker
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.rank, self.world_size = _rank_world(rank, world_size)
        self._epoch = multiprocessing.get_context().Value("q", 0, lock=False)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s shuffle for the next iteration."""
        self._epoch.value = int(epoch)

    def shard(self) -> tuple[int, int]:
        """``(shard, n_shards)`` of the calling process: rank-major, then DataLoader worker."""
        info = _data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * n_workers + worker, self.world_size * n_workers

    def even_limit(self, epoch: int, n_shards: int) -> int:
        """Samples every shard yields with ``even=True``: the smallest shard's size this epoch."""
        plan = self.training_set.plan
        per_block = np.diff(plan.block_ptr)
        sizes = [
            int(
                per_block[
                    plan.epoch_blocks(
                        seed=self.seed, epoch=epoch, shuffle=self.shuffle, shard=s, n_shards=n_shards
                    )
                ].sum()
            )
            for s in range(n_shards)
        ]
        limit = min(sizes)
        if self.drop_last and self.batch_size:
            limit -= limit % self.batch_size
        if limit == 0 and plan.n_samples:
            raise EsdlError(
                f"even=True over {n_shards} shards (ranks x workers) leaves nothing: the plan has only "
                f"{plan.n_blocks} blocks; use fewer workers or smaller blocks (TrainingSet block_bytes=...)."
            )
        return limit

    def _share_threads(self) -> None:
        """In a DataLoader worker: the read threads of the training set divided among the workers
        (at least one each), so that workers x threads stays what one process would use."""
        info = _data.get_worker_info()
        if info is None or self._threads_shared:
            return
        ts = self.training_set
        ts.threads = max(1, ts.threads // info.num_workers)
        ts.reader.threads = max(1, ts.reader.threads // info.num_workers)
        self._threads_shared = True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._share_threads()
        shard, n_shards = self.shard()
        epoch = int(self._epoch.value)
        limit = self.even_limit(epoch, n_shards) if self.even else None
        grouped = self.grouped and self.batch_size is not None
        # a worker's grouped segments are cut into shared memory: the hand-over copies nothing
        shared = SharedSegments() if grouped and _data.get_worker_info() is not None else None
        seen = 0
        for segment, sizes in self.training_set.iter_segments(
            self.batch_size,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            shard=shard,
            n_shards=n_shards,
            drop_last=self.drop_last,
            empty=shared.empty if shared is not None else np.empty,
        ):
            if limit is not None:  # even: stop every shard after the same number of samples
                if seen >= limit:
                    break
                sizes = _first_rows(sizes, limit - seen)
                segment = {k: v[: sum(sizes)] for k, v in segment.items()}
                seen += sum(sizes)
            if self.batch_size is None:
                yield from (_tensors(row) for row in rows_of(segment))
            elif grouped:
                sent = shared.prepare(segment) if shared is not None else _tensors(segment)
                yield {**sent, _SIZES: np.asarray(sizes, dtype=np.int64)}
            else:
                yield from (_tensors(batch) for batch in batches_of(segment, sizes))


class CubeMapDataset(_data.Dataset):
    """Random access to the samples of a :class:`TrainingSet` (NaN-dropped samples removed up front).

    Use it with :class:`ChunkAwareSampler` so consecutive indices come from the same blocks.
    """

    def __init__(self, training_set: TrainingSet, *, progress: bool = False) -> None:
        self.training_set = training_set.without_dropped(progress=progress)
        _ = self.training_set.stats

    def __len__(self) -> int:
        return len(self.training_set)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _tensors(self.training_set.sample(int(index)))

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        batch = self.training_set.take(np.asarray(indices, dtype=np.int64))
        return [_tensors({k: v[i] for k, v in batch.items()}) for i in range(len(indices))]


class ChunkAwareSampler(_data.Sampler):
    """Sample ids in the plan's epoch order: blocks shuffled, then samples within a window of blocks.

    ``rank``/``world_size`` split the blocks between distributed ranks.
    """

    def __init__(
        self,
        training_set: TrainingSet,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.plan, self.window = training_set.plan, training_set.window
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.rank, self.world_size = _rank_world(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s shuffle for the next iteration."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        return self.plan.epoch_order(
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            shard=self.rank,
            n_shards=self.world_size,
            window=self.window,
        )

    def __iter__(self) -> Iterator[int]:
        return iter(self._order().tolist())

    def __len__(self) -> int:
        return len(self._order())


def make_dataloader(
    training_set: TrainingSet,
    batch_size: int = 32,
    *,
    num_workers: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    map_style: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    even: bool = False,
    **loader_kwargs: Any,
) -> Any:
    """A ready ``torch.utils.data.DataLoader`` over ``training_set``.

    The default is the iterable dataset (chunk-aware, batches cut in the workers); ``map_style=True``
    gives a map-style dataset with a :class:`ChunkAwareSampler`. Extra keyword arguments go to the
    ``DataLoader`` (``pin_memory``, ``persistent_workers``, ``prefetch_factor``...). With workers,
    ``persistent_workers`` defaults to True: the workers (and the stores they opened) live from epoch
    to epoch instead of starting again each time (about 0.15 s an epoch on a laptop); the next epoch's
    shuffle still reaches them (``loader.dataset.set_epoch(n)``). ``even=True`` gives every rank and
    worker the same number of samples (for ``DistributedDataParallel``). The iterable loader's items
    are segments of several batches, which it splits into batches of tensors; a ``collate_fn`` given
    here receives those segments, not batches.
    """
    batch_size = number_argument(batch_size, "batch_size", low=1, integer=True)
    if num_workers < 0:
        raise EsdlError(f"num_workers must be >= 0; got {num_workers}.")
    if num_workers > 0:
        loader_kwargs.setdefault("persistent_workers", True)
    if not map_style:  # segments travel as they are (see SharedSegments); the loader splits them
        loader_kwargs.setdefault("collate_fn", _as_is)
    if map_style:
        dataset = CubeMapDataset(training_set)
        sampler = ChunkAwareSampler(
            dataset.training_set, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size
        )
        return _data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=num_workers,
            drop_last=drop_last,
            **loader_kwargs,
        )
    dataset = CubeIterableDataset(
        training_set,
        batch_size,
        seed=seed,
        shuffle=shuffle,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
        even=even,
        grouped=True,
    )
    return _SegmentDataLoader(dataset, batch_size=None, num_workers=num_workers, **loader_kwargs)


class MaterialisedDataset(_data.Dataset):
    """Map-style access to a training set written by :func:`platform_lib.ml.materialise` (one ``subset``).

    Items are dicts of tensors (``x``, ``y``, masks, ``origin``); stored chunks of samples are decoded
    once and cached, so sequential or chunk-local access is cheap.
    """

    def __init__(
        self, path: str | os.PathLike[str], subset: str | None = None, cache_chunks: int = 4
    ) -> None:
        import zarr

        from platform_lib.ml.materialise import load_training_set

        ds = load_training_set(path)
        names = ds["split"].attrs["flag_meanings"].split()
        codes = ds["split"].values
        if subset is None:
            self.index = np.arange(len(codes))
        else:
            if subset not in names:
                raise EsdlError(f"Unknown subset {subset!r}; this training set has {names}.")
            self.index = np.flatnonzero(codes == names.index(subset))
        keys = [k for k in ("x", "y", "x_mask", "y_mask", "origin") if k in ds]
        self.arrays = {k: zarr.open_array(str(path), path=k, mode="r") for k in keys}
        self.chunk = int(self.arrays["x"].chunks[0])
        self._cache = BlockCache(self._load, size=cache_chunks)

    def _load(self, c: int) -> dict[str, np.ndarray]:
        return {k: a[c * self.chunk : (c + 1) * self.chunk] for k, a in self.arrays.items()}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.index[int(i)])
        block = self._cache.get(j // self.chunk)
        return _tensors({k: v[j % self.chunk] for k, v in block.items()})
