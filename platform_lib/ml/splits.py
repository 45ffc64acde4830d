"""Leak-free train/validation/test splits: space-time blocks with a buffer, or a plain time split.

A split cuts the cube into a grid of blocks and labels each block with a split name. A sample belongs
to split ``s`` only if every block within ``buffer`` cells of the sample (its inputs and targets) is
labelled ``s``; so no sample straddles two splits and samples of different splits are more than
``buffer`` cells apart.

>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"a": (("time", "lat", "lon"), np.zeros((20, 8, 8), "float32"))})
>>> grid = BlockSplit({"lat": 4, "lon": 4}, {"train": 0.5, "val": 0.5}, seed=1).grid(ds)
>>> grid.labels.shape, sorted(grid.names)
((1, 2, 2), ['train', 'val'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from platform_lib.arguments import number_argument
from platform_lib.errors import EsdlError, allowed, did_you_mean
from platform_lib.ml.boxsum import box_sums, summed_area


@dataclass(frozen=True)
class SplitGrid:
    """Blocks along each cube dim (``edges[d]``: start indices plus the end) and a label per block.

    ``labels`` holds an index into ``names`` per block, or -1 for cells in no split.
    """

    dims: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    labels: np.ndarray
    names: tuple[str, ...]
    buffer: tuple[int, ...]

    def code(self, name: str) -> int:
        """The label code of split ``name`` (a clear error for an unknown name)."""
        if name not in self.names:
            raise EsdlError(
                f"Unknown split {name!r}; splits: {allowed(self.names)}.{did_you_mean(name, self.names)}"
            )
        return self.names.index(name)

    def sample_labels(self, starts: np.ndarray, extent: Sequence[int]) -> np.ndarray:
        """Split code per sample (rows of ``starts``), or -1 where a sample (plus buffer) touches two labels.

        >>> g = SplitGrid(("t",), (np.array([0, 5, 10]),), np.array([0, 1]), ("a", "b"), (1,))
        >>> g.sample_labels(np.array([[0], [3], [6], [8]]), [2]).tolist()
        [0, -1, 1, 1]
        """
        n = starts.shape[0]
        lo_idx, hi_idx = [], []
        for k, edges in enumerate(self.edges):
            size = int(edges[-1])
            lo = np.clip(starts[:, k].astype(np.int64) - self.buffer[k], 0, size - 1)
            hi = np.clip(starts[:, k].astype(np.int64) + extent[k] - 1 + self.buffer[k], 0, size - 1)
            lo_idx.append(np.searchsorted(edges, lo, side="right") - 1)
            hi_idx.append(np.searchsorted(edges, hi, side="right") - 1)
        volume = np.ones(n, dtype=np.int64)
        for lo, hi in zip(lo_idx, hi_idx, strict=True):
            volume *= hi - lo + 1
        out = np.full(n, -1, dtype=np.int16)
        for code in range(len(self.names)):
            counts = box_sums(summed_area(self.labels == code), lo_idx, hi_idx)
            out[counts == volume] = code
        return out

    def cell_labels(self, region: Sequence[slice]) -> np.ndarray:
        """The split code of every cell in ``region`` (a tuple of slices, one per dim)."""
        idx = [
            np.searchsorted(edges, np.arange(sl.start, sl.stop), side="right") - 1
            for edges, sl in zip(self.edges, region, strict=True)
        ]
        return self.labels[np.ix_(*idx)]


def _check_names(ds: Any, names: Sequence[str], what: str, dims: Sequence[str] | None) -> tuple[str, ...]:
    dims = tuple(str(d) for d in (dims or ds.dims))
    for d in names:
        if d not in dims:
            raise EsdlError(f"{what} names dim {d!r} that the cube does not have; dims: {allowed(dims)}.")
    return dims


@dataclass(frozen=True)
class BlockSplit:
    """Random space-time blocks of ``block`` cells (per dim) assigned to splits by ``fractions``.

    ``buffer`` (cells per dim) keeps samples of different splits apart; dims not in ``block`` are not
    split. The assignment is deterministic for a ``seed``.

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"a": (("time", "lat"), np.zeros((100, 4), "float32"))})
    >>> g = BlockSplit({"time": 10}, {"train": 0.8, "test": 0.2}, seed=0).grid(ds)
    >>> int((g.labels == g.code("train")).sum()), int((g.labels == g.code("test")).sum())
    (8, 2)
    """

    block: Mapping[str, int]
    fractions: Mapping[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    buffer: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0

    def grid(self, ds: Any, dims: Sequence[str] | None = None) -> SplitGrid:
        """The labelled block grid for the cube ``ds`` (over ``dims``, default the cube's dims)."""
        if not self.block:
            raise EsdlError("BlockSplit needs block sizes, e.g. block={'time': 46, 'lat': 32, 'lon': 32}.")
        if (
            not self.fractions
            or any(f < 0 for f in self.fractions.values())
            or sum(self.fractions.values()) <= 0
        ):
            raise EsdlError(
                f"BlockSplit fractions must be non-negative with a positive sum; got {dict(self.fractions)}."
            )
        dims = _check_names(ds, list(self.block) + list(self.buffer), "BlockSplit", dims)
        for d, size in self.block.items():
            number_argument(size, f"BlockSplit block[{d!r}]", low=1, integer=True)
        edges = tuple(
            np.unique(np.r_[np.arange(0, ds.sizes[d], self.block.get(d, ds.sizes[d])), ds.sizes[d]])
            for d in dims
        )
        shape = tuple(len(e) - 1 for e in edges)
        n_blocks = int(np.prod(shape))
        names = tuple(self.fractions)
        weights = np.array([self.fractions[n] for n in names], dtype=float)
        counts = np.floor(weights / weights.sum() * n_blocks).astype(int)
        for i in np.argsort(-(weights / weights.sum() * n_blocks - counts))[: n_blocks - counts.sum()]:
            counts[i] += 1  # largest remainders get the leftover blocks
        codes = np.repeat(np.arange(len(names), dtype=np.int16), counts)
        labels = np.random.default_rng(self.seed).permutation(codes).reshape(shape)
        buffer = tuple(int(self.buffer.get(d, 0)) for d in dims)
        return SplitGrid(dims, edges, labels, names, buffer)


@dataclass(frozen=True)
class TimeSplit:
    """A plain time split: ``ranges`` maps a split name to an inclusive ``(start, end)`` pair of dates.

    ``buffer`` time steps at each boundary are left out. ``None`` for start or end means open.

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.date_range("2001-01-01", periods=12, freq="MS")
    >>> ds = xr.Dataset({"a": (("time",), np.zeros(12, "float32"))}, coords={"time": t})
    >>> g = TimeSplit({"train": (None, "2001-08"), "test": ("2001-09", None)}).grid(ds)
    >>> g.edges[0].tolist(), g.labels.tolist()
    ([0, 8, 12], [0, 1])
    """

    ranges: Mapping[str, tuple[Any, Any]]
    buffer: int = 0

    def grid(self, ds: Any, dims: Sequence[str] | None = None) -> SplitGrid:
        """The labelled block grid (blocks along time only)."""
        dims = _check_names(ds, ["time"], "TimeSplit", dims)
        if not self.ranges:
            raise EsdlError("TimeSplit needs ranges, e.g. {'train': (None, '2015'), 'test': ('2016', None)}.")
        time = ds.indexes["time"]
        n = len(time)
        cell = np.full(n, -1, dtype=np.int16)
        names = tuple(self.ranges)
        for code, name in enumerate(names):
            start, end = self.ranges[name]
            lo = 0 if start is None else time.slice_indexer(start, None).start or 0
            sl = time.slice_indexer(None, end) if end is not None else slice(0, n)
            hi = n if sl.stop is None else sl.stop
            if np.any(cell[lo:hi] >= 0):
                raise EsdlError(f"TimeSplit range {name!r} {self.ranges[name]} overlaps another range.")
            cell[lo:hi] = code
        change = np.flatnonzero(np.diff(cell)) + 1
        time_edges = np.r_[0, change, n]
        labels_t = cell[time_edges[:-1]]
        edges = tuple(time_edges if d == "time" else np.array([0, ds.sizes[d]]) for d in dims)
        shape = tuple(len(e) - 1 for e in edges)
        labels = labels_t.reshape([-1 if d == "time" else 1 for d in dims])
        labels = np.broadcast_to(labels, shape).copy()
        buffer = tuple(self.buffer if d == "time" else 0 for d in dims)
        return SplitGrid(dims, edges, labels, names, buffer)
