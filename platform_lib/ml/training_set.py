"""A training set: a cube, a sample spec, a split, a NaN policy and normalisation, read chunk-aware.

:class:`TrainingSet` is framework-neutral (numpy); the PyTorch and Keras adapters wrap it.

>>> import numpy as np, xarray as xr
>>> from platform_lib.ml import SampleSpec, TrainingSet
>>> ds = xr.Dataset({"a": (("time", "lat"), np.arange(40, dtype="float32").reshape(10, 4))}).chunk({"time": 4})
>>> ts = TrainingSet(ds, SampleSpec(inputs=["a"], targets=["a"], patch={"time": 2}), normalise=False)
>>> len(ts), ts.plan.n_blocks
(20, 3)
>>> batch = next(ts.iter_batches(4, seed=0, progress=False))
>>> batch["x"].shape, batch["y"].shape, batch["origin"].shape
((4, 1, 2), (4, 1, 2), (4, 2))
>>> t, lat = batch["origin"][0]
>>> bool((batch["x"][0, 0] == ds["a"].values[t : t + 2, lat]).all())
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from platform_lib.arguments import number_argument, text_argument
from platform_lib.chunks import chunk_edges
from platform_lib.errors import EsdlError, short_repr
from platform_lib.ml.nan import NanPolicy, keep_samples
from platform_lib.ml.plan import SamplePlan, plan_samples, window_rng
from platform_lib.ml.reader import BlockCache, BlockReader, open_cube_for_reading, read_ahead
from platform_lib.ml.spec import SampleSpec
from platform_lib.ml.splits import BlockSplit, SplitGrid, TimeSplit
from platform_lib.ml.stats import NormStats, compute_stats, season_slots

NORMALISE = (True, False, "inputs")
SEGMENT_BYTES = 8 * 2**20  # batches are cut this many bytes of samples at a time


@dataclass
class _Block:
    data: np.ndarray | None  # (channels, *region); None once every sample is in ``tiles``
    lo: np.ndarray
    ids: np.ndarray  # sample ids kept in this block
    tiles: dict[str, np.ndarray] | None = None  # "x"/"y": every grid sample of the block, contiguous
    counts: tuple[int, ...] = ()  # grid samples per dim of ``tiles``
    rows: np.ndarray | None = None  # the row in ``tiles`` of each sample in ``ids``
    shared: dict[str, np.ndarray] | None = None  # its window's tiles, ``tiles`` a run of their rows
    first_row: int = 0  # where that run starts


class TrainingSet:
    """Samples of ``spec`` cut from ``cube`` (a Zarr path or a lazy ``xarray.Dataset``).

    ``split`` (a :class:`BlockSplit` or :class:`TimeSplit`) with ``subset`` (default ``"train"``) keeps
    the samples of one split; ``nan`` is a :class:`NanPolicy` or shorthand; ``normalise`` is ``True``
    (inputs and targets), ``"inputs"`` or ``False``, with ``stats`` computed once over the *train* cells
    (or given). ``block_bytes`` caps the memory of one read block; ``window`` blocks are mixed by the
    within-window shuffle; ``prefetch`` blocks are read ahead by ``threads`` threads.
    """

    def __init__(
        self,
        cube: Any,
        spec: SampleSpec,
        *,
        split: BlockSplit | TimeSplit | None = None,
        subset: str | None = None,
        nan: NanPolicy | str | None = None,
        normalise: bool | str = True,
        stats: NormStats | None = None,
        block_bytes: int = 512 * 2**20,
        window: int = 4,
        prefetch: int = 2,
        threads: int = 2,
        plan: SamplePlan | None = None,
    ) -> None:
        if not isinstance(spec, SampleSpec):
            raise EsdlError(f"spec must be a SampleSpec; got {type(spec).__name__}.")
        if not (isinstance(normalise, bool) or normalise == "inputs"):
            raise EsdlError(f"normalise={short_repr(normalise)} is not one of True, False, 'inputs'.")
        block_bytes = number_argument(block_bytes, "block_bytes", low=1, integer=True)
        window = number_argument(window, "window", low=1, integer=True)
        prefetch = number_argument(prefetch, "prefetch", low=0, integer=True)
        threads = number_argument(threads, "threads", low=1, integer=True)
        if stats is not None and not isinstance(stats, NormStats):
            raise EsdlError(
                f"stats must be a NormStats (TrainingSet.stats of another set); got {short_repr(stats)}."
            )
        if subset is not None:
            subset = text_argument(subset, "subset")
        if split is not None and not isinstance(split, BlockSplit | TimeSplit):
            raise EsdlError(f"split must be a BlockSplit or TimeSplit; got {type(split).__name__}.")
        if subset is not None and split is None:
            raise EsdlError(f"subset={subset!r} needs a split (BlockSplit or TimeSplit).")
        self.ds = open_cube_for_reading(cube)
        self.spec = spec
        self.dims = spec.check(self.ds)
        self.nan = NanPolicy.coerce(nan)
        self.normalise = normalise
        self.split = split
        self.grid: SplitGrid | None = split.grid(self.ds, self.dims) if split is not None else None
        self.subset_name = (subset or "train") if self.grid is not None else None
        code = self.grid.code(self.subset_name) if self.grid is not None and self.subset_name else None
        self.window, self.prefetch, self.threads, self.block_bytes = window, prefetch, threads, block_bytes
        self.variables = spec.variables
        self.reader = BlockReader(self.ds, self.variables)
        self.x_channels = np.array([self.variables.index(v) for v in spec.inputs], dtype=np.int64)
        self.y_channels = np.array([self.variables.index(v) for v in spec.targets], dtype=np.int64)
        self.x_window = tuple(spec.patch_of(d) for d in self.dims)
        self.y_window = tuple(spec.y_window(d) for d in self.dims)
        self.y_offset = np.array([spec.y_offset(d) for d in self.dims], dtype=np.int64)
        self.extent = tuple(spec.extent_of(d) for d in self.dims)
        self.stride = np.array([spec.stride_of(d) for d in self.dims], dtype=np.int64)
        if plan is None:
            grid = self.grid
            keep = (
                (lambda starts: grid.sample_labels(starts, self.extent) == code) if grid is not None else None
            )
            plan = plan_samples(
                self.dims,
                {d: int(self.ds.sizes[d]) for d in self.dims},
                chunk_edges(self.ds, self.variables),
                extent=self.extent,
                stride=tuple(spec.stride_of(d) for d in self.dims),
                keep=keep,
                bytes_per_cell=len(self.variables) * self.reader.itemsize,
                block_bytes=block_bytes,
            )
        self.plan = plan
        self._in_place = self.reader.decodes_in_place
        self._stats = stats
        self._cache: BlockCache | None = None
        self._slots = season_slots(self.ds["time"].values) if self.nan.fill == "seasonal" else None

    # -- basics -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.plan.n_samples

    def __repr__(self) -> str:
        subset = f", subset={self.subset_name!r}" if self.subset_name else ""
        return (
            f"TrainingSet({len(self)} samples in {self.plan.n_blocks} blocks, inputs={list(self.spec.inputs)}, "
            f"targets={list(self.spec.targets)}, x{self.x_shape}{subset})"
        )

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one input sample ``(channels, *patch)``."""
        return self.spec.x_shape(self.dims)

    @property
    def y_shape(self) -> tuple[int, ...]:
        """Shape of one target sample."""
        return self.spec.y_shape(self.dims)

    @property
    def stats(self) -> NormStats | None:
        """Normalisation statistics (computed on first use, one streaming pass), or None.

        Over the cells of the split's ``train`` subset (else of this subset), never of other splits.
        """
        needs = self.normalise or self.nan.fill in ("mean", "seasonal")
        if self._stats is None and needs:
            cell_mask = None
            if self.grid is not None:  # never count cells of other splits: the "train" split, else our own
                grid = self.grid
                code = grid.code("train" if "train" in grid.names else str(self.subset_name))
                cell_mask = lambda region: grid.cell_labels(region) == code  # noqa: E731
            self._stats = compute_stats(
                self.ds,
                self.variables,
                cell_mask=cell_mask,
                climatology=self.nan.fill == "seasonal",
                threads=self.threads,
                progress=False,
            )
        return self._stats

    def subset(self, name: str) -> TrainingSet:
        """The same training set restricted to split ``name``, sharing the train statistics.

        >>> import numpy as np, xarray as xr
        >>> from platform_lib.ml import SampleSpec, TimeSplit
        >>> ds = xr.Dataset({"a": (("time",), np.zeros(20, "float32"))},
        ...                 coords={"time": __import__("pandas").date_range("2001", periods=20, freq="8D")})
        >>> ts = TrainingSet(ds, SampleSpec(inputs="a", patch={"time": 2}),
        ...                  split=TimeSplit({"train": (None, "2001-03-31"), "val": ("2001-04-01", None)}))
        >>> len(ts), len(ts.subset("val"))
        (6, 4)
        """
        if self.grid is None:
            raise EsdlError("subset() needs a TrainingSet built with a split (BlockSplit or TimeSplit).")
        self.grid.code(name)
        return TrainingSet(
            self.ds,
            self.spec,
            split=self.split,
            subset=name,
            nan=self.nan,
            normalise=self.normalise,
            stats=self.stats,
            block_bytes=self.block_bytes,
            window=self.window,
            prefetch=self.prefetch,
            threads=self.threads,
        )

    # -- reading and cutting --------------------------------------------------------------------
    def read_block(self, block: int, into: tuple[dict[str, np.ndarray], int] | None = None) -> _Block:
        """Read block ``block`` once and keep the ids of its samples that survive the NaN policy.

        ``into``: its window's shared tile arrays and the row where this block's tiles go."""
        region = self.plan.region(block)
        outer = self._whole_chunks(region)
        data = self.reader.read(outer)
        if outer != region:  # the block is a view of whole chunks decoded in place
            inner = (slice(r.start - o.start, r.stop - o.start) for r, o in zip(region, outer, strict=True))
            data = data[(slice(None), *inner)]
        lo = np.array([sl.start for sl in region], dtype=np.int64)
        ids = np.arange(*self.plan.block_samples(block).indices(self.plan.n_samples))
        if self.nan.drop is not None:
            keep = keep_samples(
                self.nan,
                data,
                self.plan.starts[ids] - lo,
                self.x_channels,
                self.x_window,
                self.y_channels,
                self.y_window,
                self.y_offset,
            )
            ids = ids[keep]
        return self._tiled(_Block(data, lo, ids), into)

    def _whole_chunks(self, region: tuple[slice, ...]) -> tuple[slice, ...]:
        """``region`` grown to the edges of the chunks it touches, when the reader then decodes every
        chunk straight into the block (saving a copy of each value), the block is tiled (a view is
        cut like a block) and that at most doubles it."""
        if not self._in_place or self._tile_counts(tuple(s.stop - s.start for s in region)) is None:
            return region
        outer = []
        for sl, edges in zip(region, self.plan.chunk_edges, strict=True):
            lo = int(edges[np.searchsorted(edges, sl.start, side="right") - 1])
            hi = int(edges[min(np.searchsorted(edges, sl.stop, side="left"), len(edges) - 1)])
            outer.append(slice(lo, max(hi, sl.stop)))
        grown = np.prod([s.stop - s.start for s in outer]) / np.prod([s.stop - s.start for s in region])
        return tuple(outer) if grown <= 2 else region

    def _tile_counts(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Grid samples per dim of a block of ``shape``, or None when its samples cannot be tiled
        (they overlap, or a target window runs past the block)."""
        counts = tuple(
            (n - e) // s + 1 for n, e, s in zip(shape, self.extent, self.stride.tolist(), strict=True)
        )
        for _, _, offset, window in self._parts():
            for k, (off, w, s, c) in enumerate(
                zip(offset.tolist(), window, self.stride.tolist(), counts, strict=True)
            ):
                if w > s or off + c * s > shape[k]:
                    return None
        return counts

    def _window_jobs(
        self, blocks: np.ndarray
    ) -> Iterator[tuple[int, tuple[dict[str, np.ndarray], int] | None]]:
        """``(block, into)`` for :meth:`read_block`, window by window: when every block of a window can
        be tiled, one array per key is allocated for all their tiles (the reader threads fill it), so a
        segment is then one gather per key."""
        for w0 in range(0, len(blocks), self.window):
            group = [int(b) for b in blocks[w0 : w0 + self.window]]
            counts = [
                self._tile_counts(tuple(sl.stop - sl.start for sl in self.plan.region(b))) for b in group
            ]
            if any(c is None for c in counts):
                yield from ((b, None) for b in group)
                continue
            n_rows = [int(np.prod(c)) for c in counts]  # type: ignore[arg-type]
            shared = {
                key: np.empty((sum(n_rows), len(ch), *win), dtype=self.reader.dtype)
                for key, ch, _, win in self._parts()
            }
            first = np.r_[0, np.cumsum(n_rows)[:-1]].tolist()
            yield from ((b, (shared, f)) for b, f in zip(group, first, strict=True))

    def _tiled(self, block: _Block, into: tuple[dict[str, np.ndarray], int] | None = None) -> _Block:
        """Cut every sample of a non-overlapping sample grid at once (a reshape and one transposed copy),
        in the reader thread; later batches are plain row gathers. Blocks that cannot be tiled (overlap)
        are cut sample by sample instead."""
        data = block.data
        assert data is not None
        counts = self._tile_counts(data.shape[1:])
        if counts is None:
            return block
        n_rows = int(np.prod(counts))
        tiles = {}
        for key, channels, offset, window in self._parts():
            out = into[0][key][into[1] : into[1] + n_rows] if into is not None else None
            tiles[key] = _tile(data, channels, offset, window, tuple(self.stride.tolist()), counts, out=out)
        local = (self.plan.starts[block.ids] - block.lo) // self.stride
        rows = local @ _row_steps(counts)
        shared, first = into if into is not None else (None, 0)
        return _Block(None, block.lo, block.ids, tiles, counts, rows, shared, first)

    def cut(self, block: _Block, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Cut samples ``ids`` (all in ``block``) from memory: a batch dict of numpy arrays."""
        return self._cut_mixed([block], np.zeros(len(ids), dtype=np.int64), ids, keep_order=True)

    def _windows(
        self, data: np.ndarray, channels: np.ndarray, origins: np.ndarray, window: tuple[int, ...]
    ) -> np.ndarray:
        """Gather the ``window`` boxes at ``origins`` of ``channels``: ``(n, channels, *window)``.

        Big patches are copied slice by slice (row memcpy); small ones (pixel series) with one flat
        ``take`` per channel, which costs a few ns per value whatever the number of samples.
        """
        n = len(origins)
        out = np.empty((n, len(channels), *window), dtype=data.dtype)
        if n == 0:
            return out
        if int(np.prod(window)) >= 256:
            contiguous = len(channels) > 0 and np.array_equal(
                channels, np.arange(channels[0], channels[0] + len(channels))
            )
            ch: slice | np.ndarray = (
                slice(int(channels[0]), int(channels[0]) + len(channels)) if contiguous else channels
            )
            for i, origin in enumerate(origins.tolist()):
                out[i] = data[(ch, *(slice(o, o + w) for o, w in zip(origin, window, strict=True)))]
            return out
        plane = data[0]
        steps = np.array(plane.strides, dtype=np.int64) // data.itemsize
        offsets = (np.indices(window).reshape(len(window), -1).T @ steps).astype(np.int64)
        index = (origins.astype(np.int64) @ steps)[:, None] + offsets[None, :]
        for j, c in enumerate(channels):
            out[:, j] = np.take(data[c].reshape(-1), index).reshape(n, *window)
        return out

    def _fill(self, arr: np.ndarray, names: tuple[str, ...], origins: np.ndarray) -> None:
        holes = np.isnan(arr)
        if not holes.any():
            return
        if not isinstance(self.nan.fill, str):
            arr[holes] = float(self.nan.fill)  # type: ignore[arg-type]
            return
        stats = self.stats
        assert stats is not None
        idx = stats.index(names)
        if self.nan.fill == "seasonal" and stats.climatology is not None and self._slots is not None:
            where = np.nonzero(holes)
            sample, chan, offs = where[0], where[1], where[2:]
            glob = [origins[sample, k] + offs[k] for k in range(len(self.dims))]
            t = self.dims.index("time")
            space = [glob[k] for k, d in enumerate(self.dims) if d != "time"]
            arr[where] = stats.climatology[(idx[chan], self._slots[glob[t]], *space)]
            holes = np.isnan(arr)
        means = np.broadcast_to(
            stats.mean[idx].astype(arr.dtype).reshape(1, -1, *([1] * (arr.ndim - 2))), arr.shape
        )
        arr[holes] = means[holes]

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Random access to sample id ``i`` (see :meth:`take`)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        return {k: v[0] for k, v in self.take(np.array([i])).items()}

    def take(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """A batch of the sample ids ``ids`` in that order, read through a small block cache.

        Block-ordered access (as :meth:`SamplePlan.epoch_order` gives) decodes each chunk once per
        epoch; the NaN drop policy is not applied here, use :meth:`without_dropped` first.

        >>> import xarray as xr
        >>> ds = xr.Dataset({"a": (("time",), np.arange(10, dtype="float32"))})
        >>> ts = TrainingSet(ds, SampleSpec(inputs="a", patch={"time": 2}), normalise=False)
        >>> ts.take(np.array([4, 0]))["x"].tolist()
        [[[8.0, 9.0]], [[0.0, 1.0]]]
        """
        ids = np.asarray(ids, dtype=np.int64)
        if self._cache is None:
            self._cache = BlockCache(self._read_region, size=self.window + self.prefetch + 1)
        blocks = np.searchsorted(self.plan.block_ptr, ids, side="right") - 1
        window = []
        which = np.empty(len(ids), dtype=np.int64)
        for k, b in enumerate(np.unique(blocks)):
            window.append(self._cache.get(int(b)))
            which[blocks == b] = k
        return self._cut_mixed(window, which, ids, keep_order=True)

    def _read_region(self, block: int) -> _Block:
        region = self.plan.region(block)
        lo = np.array([s.start for s in region], dtype=np.int64)
        return _Block(self.reader.read(region), lo, np.zeros(0, dtype=np.int64))

    def without_dropped(self, progress: bool = True) -> TrainingSet:
        """A copy whose plan no longer holds the samples the NaN drop policy removes (one read pass).

        Needed for random access (map-style datasets, Keras), whose length must be known up front.

        >>> import xarray as xr
        >>> ds = xr.Dataset({"a": (("time",), np.array([1, np.nan, 3, 4], "float32"))})
        >>> ts = TrainingSet(ds, SampleSpec(inputs="a", patch={"time": 2}), nan="drop-any", normalise=False)
        >>> len(ts), len(ts.without_dropped(progress=False))
        (2, 1)
        """
        if self.nan.drop is None:
            return self
        keep = np.zeros(self.plan.n_samples, dtype=bool)
        blocks = np.arange(self.plan.n_blocks)
        bar = _bar(progress, len(blocks), "NaN filter")
        for _, block in read_ahead(self.read_block, blocks, prefetch=self.prefetch, threads=self.threads):
            keep[block.ids] = True
            bar.update(1)
        bar.close()
        return self._replace_plan(self.plan.subset(keep))

    def _replace_plan(self, plan: SamplePlan) -> TrainingSet:
        new = TrainingSet.__new__(TrainingSet)
        new.__dict__.update(self.__dict__)
        new.plan, new._cache = plan, None
        new._stats = self.stats
        return new

    # -- epoch iteration ------------------------------------------------------------------------
    def iter_batches(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        shard: int = 0,
        n_shards: int = 1,
        drop_last: bool = False,
        progress: bool = False,
    ) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of batches (dicts of numpy arrays) for shard ``shard`` of ``n_shards``.

        Blocks are read once each (``prefetch`` ahead, in threads) in a seeded shuffled order; samples
        are shuffled within ``window`` blocks. ``batch_size=None`` yields single samples. The batches
        are views of the segments :meth:`iter_segments` cuts.
        """
        for segment, sizes in self.iter_segments(
            batch_size,
            seed=seed,
            epoch=epoch,
            shuffle=shuffle,
            shard=shard,
            n_shards=n_shards,
            drop_last=drop_last,
            progress=progress,
        ):
            yield from rows_of(segment) if batch_size is None else batches_of(segment, sizes)

    def iter_segments(
        self,
        batch_size: int | None,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        shard: int = 0,
        n_shards: int = 1,
        drop_last: bool = False,
        progress: bool = False,
        empty: Callable[[tuple[int, ...], Any], np.ndarray] = np.empty,
    ) -> Iterator[tuple[dict[str, np.ndarray], list[int]]]:
        """One epoch of :meth:`iter_batches`' batches, several at a time: ``(segment, sizes)``.

        ``segment`` is a dict of arrays whose consecutive rows, split by ``sizes``, are consecutive
        batches (about ``SEGMENT_BYTES`` of samples at a time): one gather, one fill and normalise
        pass per segment instead of per batch, and a consumer (the PyTorch loader) converts and hands
        over a segment at once. With ``batch_size=None`` every size is 1. ``empty(shape, dtype)``
        allocates a segment's ``x`` and ``y`` (a DataLoader worker passes shared memory).

        >>> import xarray as xr
        >>> ds = xr.Dataset({"a": (("time",), np.arange(10, dtype="float32"))})
        >>> ts = TrainingSet(ds, SampleSpec(inputs="a", patch={"time": 2}), normalise=False)
        >>> [(len(seg["x"]), sizes) for seg, sizes in ts.iter_segments(2, seed=0)]
        [(4, [2, 2]), (1, [1])]
        """
        if batch_size is not None:
            batch_size = number_argument(batch_size, "batch_size (or None)", low=1, integer=True)
        if self.stats is None and (self.normalise or self.nan.fill in ("mean", "seasonal")):
            raise EsdlError("Normalisation statistics could not be computed.")
        blocks = self.plan.epoch_blocks(
            seed=seed, epoch=epoch, shuffle=shuffle, shard=shard, n_shards=n_shards
        )
        rng = window_rng(seed, epoch, shard, n_shards)
        bar = _bar(progress, len(blocks), "blocks")
        stream = read_ahead(
            lambda job: self.read_block(*job),
            self._window_jobs(blocks),
            prefetch=self.prefetch,
            threads=self.threads,
        )
        size = batch_size or 1
        per_segment = size * max(1, SEGMENT_BYTES // max(1, size * self._sample_bytes))
        carry: list[dict[str, np.ndarray]] = []  # the first rows of a batch that spans two windows
        n_carry = 0
        window: list[_Block] = []
        for i, (_, block) in enumerate(stream):
            window.append(block)
            bar.update(1)
            if len(window) < self.window and i < len(blocks) - 1:
                continue
            which = np.concatenate([np.full(len(b.ids), k) for k, b in enumerate(window)]).astype(np.int64)
            gids = np.concatenate([b.ids for b in window]).astype(np.int64)
            order = rng.permutation(len(which)) if shuffle else np.arange(len(which))
            shared = window[0].shared
            rows = None  # each sample's row in the window's shared tiles, when they have them
            if shared is not None and all(b.shared is shared and b.rows is not None for b in window):
                rows = np.concatenate([b.first_row + b.rows for b in window])  # type: ignore[operator]
            # row j of this window's order belongs to batch (offset + j) // size of the stream
            offset = n_carry
            start = 0
            while start < len(order):
                stop = min(len(order), start + per_segment - (offset if start == 0 else 0))
                take = order[start:stop]
                slot = (np.arange(start, stop) + offset) // size
                if rows is not None and shared is not None:
                    seg = self._finish(
                        {
                            k: np.take(v, rows[take], axis=0, out=empty((len(take), *v.shape[1:]), v.dtype))
                            for k, v in shared.items()
                        },
                        self.plan.starts[gids[take]],
                        gids[take],
                    )
                else:
                    seg = self._cut_mixed(window, which[take], gids[take], batch=slot - slot[0], empty=empty)
                bounds = np.r_[0, np.flatnonzero(np.diff(slot)) + 1, len(take)].tolist()
                first = 0
                if n_carry:  # the first piece completes (or extends) the batch carried over
                    piece = {k: v[: bounds[1]] for k, v in seg.items()}
                    first = 1
                    if n_carry + bounds[1] < size:
                        carry.append({k: v.copy() for k, v in piece.items()})
                        n_carry += bounds[1]
                    else:
                        yield _concat([*carry, piece]), [size]
                        carry, n_carry = [], 0
                last = len(bounds) - 1
                if last > first and bounds[last] - bounds[last - 1] < size and batch_size is not None:
                    # the window's last rows: wait for the next window to fill their batch
                    carry.append({k: v[bounds[last - 1] :].copy() for k, v in seg.items()})
                    n_carry += bounds[last] - bounds[last - 1]
                    last -= 1
                if last > first:
                    a, b = bounds[first], bounds[last]
                    yield (
                        {k: v[a:b] for k, v in seg.items()},
                        [
                            y - x
                            for x, y in zip(bounds[first:last], bounds[first + 1 : last + 1], strict=True)
                        ],
                    )
                start = stop
            window = []
        bar.close()
        if carry and not drop_last:
            yield _concat(carry), [n_carry]

    @property
    def _sample_bytes(self) -> int:
        """Bytes of one sample's inputs and targets."""
        return self.reader.itemsize * (
            len(self.x_channels) * int(np.prod(self.x_window))
            + len(self.y_channels) * int(np.prod(self.y_window))
        )

    def _cut_mixed(
        self,
        window: list[_Block],
        which: np.ndarray,
        ids: np.ndarray,
        keep_order: bool = False,
        batch: np.ndarray | None = None,
        empty: Callable[[tuple[int, ...], Any], np.ndarray] = np.empty,
    ) -> dict[str, np.ndarray]:
        """Cut samples ``ids`` (``which``: their block's position in ``window``) into one batch.

        Samples are gathered block by block straight into the batch arrays (grouped by block, so the
        order inside a batch follows the blocks unless ``keep_order``; with ``batch``, a batch number
        per sample, grouped by batch first, then block); then masks, fill and normalisation run once
        on the whole batch.
        """
        ids = np.asarray(ids, dtype=np.int64)
        which = np.asarray(which, dtype=np.int64)
        group = which if batch is None else np.asarray(batch, dtype=np.int64) * len(window) + which
        order = np.argsort(group, kind="stable")
        which, ids, group = which[order], ids[order], group[order]
        n = len(ids)
        origins = self.plan.starts[ids]
        parts = self._parts()
        batch_arrays = {key: empty((n, len(ch), *win), self.reader.dtype) for key, ch, _, win in parts}
        runs = np.r_[0, np.flatnonzero(np.diff(group)) + 1, n] if n else np.zeros(1, dtype=np.int64)
        # the row of every sample in its block's tiles, for all samples at once
        lo = np.stack([blk.lo for blk in window])[which]
        steps = np.stack([_row_steps(blk.counts or (1,) * len(self.dims)) for blk in window])[which]
        flat = (((origins - lo) // self.stride) * steps).sum(axis=1)
        for a, b in zip(runs[:-1].tolist(), runs[1:].tolist(), strict=True):
            block = window[int(which[a])]
            if block.tiles is not None:
                for key in batch_arrays:
                    np.take(block.tiles[key], flat[a:b], axis=0, out=batch_arrays[key][a:b], mode="clip")
            else:
                assert block.data is not None
                local = origins[a:b] - block.lo
                for key, channels, offset, win in parts:
                    batch_arrays[key][a:b] = self._windows(block.data, channels, local + offset, win)
        out = self._finish(batch_arrays, origins, ids)
        if keep_order and n:
            inverse = np.empty(n, dtype=np.int64)
            inverse[order] = np.arange(n)
            out = {k: v[inverse] for k, v in out.items()}
        return out

    def _parts(self) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, ...]]]:
        """``(key, channels, offset, window)`` of the inputs ``x`` and (when there are targets) ``y``."""
        parts = [("x", self.x_channels, np.zeros(len(self.dims), dtype=np.int64), self.x_window)]
        if len(self.y_channels):
            parts.append(("y", self.y_channels, self.y_offset, self.y_window))
        return parts

    def _finish(
        self, batch: dict[str, np.ndarray], origins: np.ndarray, ids: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Masks, fill and normalisation of cut samples ``batch`` (``x``/``y``), once over all of them;
        the patch dims squeezed as the spec asks; ``origin`` and ``sample`` added."""
        n = len(ids)
        for key, names, offset in (("x", self.spec.inputs, 0), ("y", self.spec.targets, self.y_offset)):
            if key not in batch:
                continue
            arr = batch[key]
            if self.nan.mask:
                batch[f"{key}_mask"] = ~np.isnan(arr)
            if self.nan.fill is not None:
                self._fill(arr, names, origins + offset)
            if self.normalise is True or (self.normalise == "inputs" and key == "x"):
                stats = self.stats
                assert stats is not None
                stats.normalise(arr, names)
        keep_dims = [k for k, d in enumerate(self.dims) if d in self.spec.patch]
        for key in list(batch):
            arr = batch[key]
            batch[key] = arr.reshape(n, arr.shape[1], *(arr.shape[2 + k] for k in keep_dims))
        batch["origin"] = origins
        batch["sample"] = ids
        return batch


def _tile(
    data: np.ndarray,
    channels: np.ndarray,
    offset: np.ndarray,
    window: tuple[int, ...],
    stride: tuple[int, ...],
    counts: tuple[int, ...],
    out: np.ndarray | None = None,
) -> np.ndarray | None:
    """All windows of a regular grid (``counts`` per dim, ``stride`` apart, first at ``offset``) as one
    contiguous ``(n, channels, *window)`` array (written into ``out`` when given), or None when windows
    overlap or overrun the block.

    >>> data = np.arange(16, dtype="float32").reshape(1, 4, 4)
    >>> _tile(data, np.array([0]), np.array([0, 0]), (2, 2), (2, 2), (2, 2))[3].tolist()
    [[[10.0, 11.0], [14.0, 15.0]]]
    """
    cut, shape = [], [len(channels)]
    for k, (off, w, s, n) in enumerate(zip(offset, window, stride, counts, strict=True)):
        if w > s or off + n * s > data.shape[1 + k]:
            return None
        cut.append(slice(int(off), int(off) + n * s))
        shape += [n, s]
    first = int(channels[0])
    contiguous = np.array_equal(channels, np.arange(first, first + len(channels)))
    arr = data[slice(first, first + len(channels)) if contiguous else channels]
    arr = arr[(slice(None), *cut)].reshape(shape)
    arr = arr[(slice(None), *(x for w in window for x in (slice(None), slice(0, w))))]
    nd = len(window)
    axes = [1 + 2 * k for k in range(nd)] + [0] + [2 + 2 * k for k in range(nd)]
    if out is None:
        out = np.empty((int(np.prod(counts)), len(channels), *window), dtype=data.dtype)
    target = out.reshape(arr.transpose(axes).shape)  # a view: ``out`` is contiguous
    if window[-1] > 1:  # copy each run along the last dim as one unit: a few times faster than by value
        unit = f"V{window[-1] * data.itemsize}"
        try:
            target.view(unit)[...] = arr.view(unit).transpose(axes)
            return out
        except ValueError:  # the run is not contiguous in ``data``
            pass
    target[...] = arr.transpose(axes)
    return out


def _row_steps(counts: tuple[int, ...]) -> np.ndarray:
    """Row-major steps of a grid of ``counts``: ``(index * steps).sum()`` is ``ravel_multi_index``."""
    return np.r_[np.cumprod(counts[:0:-1])[::-1], 1].astype(np.int64)


def _concat(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def batches_of(segment: dict[str, np.ndarray], sizes: list[int]) -> Iterator[dict[str, np.ndarray]]:
    """The consecutive batches of ``sizes`` rows of ``segment`` (views).

    >>> [b["x"].tolist() for b in batches_of({"x": np.arange(5)}, [2, 3])]
    [[0, 1], [2, 3, 4]]
    """
    start = 0
    for size in sizes:
        yield {k: v[start : start + size] for k, v in segment.items()}
        start += size


def rows_of(batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """The samples of ``batch`` one by one (each field without its leading dim).

    >>> [r["x"].tolist() for r in rows_of({"x": np.arange(4).reshape(2, 2)})]
    [[0, 1], [2, 3]]
    """
    for i in range(len(next(iter(batch.values())))):
        yield {k: v[i] for k, v in batch.items()}


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(progress: bool, total: int, desc: str) -> Any:
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="block")
