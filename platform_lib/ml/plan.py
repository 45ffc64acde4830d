"""Chunk-aware sample planning and the two-level seeded shuffle.

Samples are grouped into *blocks*: runs of whole stored chunks. A block is read (and each of its
chunks decoded) once per epoch and all samples that start in it are cut from memory. Block sizes grow
from one chunk per dim until no chunk is read by two blocks or the memory budget is reached
(``block_bytes``); :attr:`SamplePlan.read_amplification` reports chunk reads per stored chunk (1.0 is
ideal). Each epoch shuffles the block order with the seed, then samples within a window of blocks.

>>> import numpy as np
>>> edges = {"time": np.array([0, 4, 8]), "lat": np.array([0, 6])}
>>> plan = plan_samples(("time", "lat"), {"time": 8, "lat": 6}, edges, extent=(2, 3), stride=(2, 3))
>>> plan.n_samples, plan.n_blocks, plan.read_amplification
(8, 2, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from platform_lib.errors import EsdlError


@dataclass(frozen=True)
class SamplePlan:
    """Sample origins grouped by block, the region each block reads, and the chunk grid.

    ``starts[block_ptr[b]:block_ptr[b + 1]]`` are the origins (one index per dim) of block ``b``'s
    samples; ``regions[b]`` is the ``[lo, hi)`` box per dim that block ``b`` reads.
    """

    dims: tuple[str, ...]
    sizes: tuple[int, ...]
    extent: tuple[int, ...]
    starts: np.ndarray
    block_ptr: np.ndarray
    regions: np.ndarray
    chunk_edges: tuple[np.ndarray, ...]

    @property
    def n_samples(self) -> int:
        """Number of samples in the plan."""
        return int(self.starts.shape[0])

    @property
    def n_blocks(self) -> int:
        """Number of (non-empty) blocks."""
        return int(self.block_ptr.shape[0] - 1)

    def block_samples(self, block: int) -> slice:
        """The sample ids (a slice of ``starts``) of ``block``."""
        return slice(int(self.block_ptr[block]), int(self.block_ptr[block + 1]))

    def region(self, block: int) -> tuple[slice, ...]:
        """The region ``block`` reads: one slice per dim."""
        return tuple(slice(int(lo), int(hi)) for lo, hi in self.regions[block])

    def block_of(self, sample: int) -> int:
        """The block that holds sample id ``sample``."""
        return int(np.searchsorted(self.block_ptr, sample, side="right") - 1)

    def _chunks_touched(self) -> tuple[int, int]:
        """(chunk reads per epoch, distinct chunks touched), per variable."""
        touched = []
        for k, edges in enumerate(self.chunk_edges):
            lo = np.searchsorted(edges, self.regions[:, k, 0], side="right") - 1
            hi = np.searchsorted(edges, self.regions[:, k, 1] - 1, side="right") - 1
            touched.append((lo, hi))
        per_block = np.ones(self.n_blocks, dtype=np.int64)
        for lo, hi in touched:
            per_block *= hi - lo + 1
        seen = np.zeros(tuple(len(e) - 1 for e in self.chunk_edges), dtype=bool)
        for b in range(self.n_blocks):
            seen[tuple(slice(int(lo[b]), int(hi[b]) + 1) for lo, hi in touched)] = True
        return int(per_block.sum()), max(int(seen.sum()), 1)

    @property
    def chunk_reads(self) -> int:
        """Stored chunks decoded per epoch (per variable)."""
        return self._chunks_touched()[0]

    @property
    def read_amplification(self) -> float:
        """Chunk reads per distinct chunk the plan touches (1.0: every chunk decoded exactly once)."""
        reads, distinct = self._chunks_touched()
        return round(reads / distinct, 4)

    def subset(self, keep: np.ndarray) -> SamplePlan:
        """A plan with only the samples where ``keep`` (bool per sample id) is true.

        >>> plan = plan_samples(("t",), {"t": 8}, {"t": np.arange(0, 9, 2)}, extent=(1,), stride=(1,))
        >>> small = plan.subset(np.arange(8) >= 5)
        >>> small.n_samples, small.n_blocks, small.region(0)
        (3, 2, (slice(5, 6, None),))
        """
        keep = np.asarray(keep, dtype=bool)
        counts = (
            np.add.reduceat(keep.astype(np.int64), self.block_ptr[:-1]) if self.n_samples else np.zeros(0)
        )
        nonempty = counts > 0
        ptr = np.r_[0, np.cumsum(counts[nonempty])].astype(np.int64)
        return _with_regions(self, self.starts[keep], ptr)

    def epoch_blocks(
        self, *, seed: int, epoch: int, shuffle: bool = True, shard: int = 0, n_shards: int = 1
    ) -> np.ndarray:
        """The blocks shard ``shard`` of ``n_shards`` reads this epoch, in order.

        Every shard permutes the blocks with the same ``(seed, epoch)`` and takes every ``n_shards``-th,
        so the shards partition the plan: each sample is seen exactly once per epoch over all shards.

        >>> plan = plan_samples(("t",), {"t": 8}, {"t": np.arange(0, 9, 2)}, extent=(1,), stride=(1,))
        >>> sorted(np.r_[plan.epoch_blocks(seed=0, epoch=0, shard=0, n_shards=2),
        ...              plan.epoch_blocks(seed=0, epoch=0, shard=1, n_shards=2)].tolist())
        [0, 1, 2, 3]
        """
        if not 0 <= shard < n_shards:
            raise EsdlError(f"shard must be in [0, {n_shards}); got {shard}.")
        order = (
            np.random.default_rng([seed, epoch]).permutation(self.n_blocks)
            if shuffle
            else np.arange(self.n_blocks)
        )
        return order[shard::n_shards]

    def epoch_order(
        self,
        *,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        shard: int = 0,
        n_shards: int = 1,
        window: int = 4,
    ) -> np.ndarray:
        """All sample ids of one shard in epoch order: blocks shuffled, then samples within ``window`` blocks.

        >>> import numpy as np
        >>> edges = {"t": np.arange(0, 9, 2)}
        >>> plan = plan_samples(("t",), {"t": 8}, edges, extent=(1,), stride=(1,))
        >>> a = plan.epoch_order(seed=1, epoch=0)
        >>> sorted(a.tolist()) == list(range(8)), (a == plan.epoch_order(seed=1, epoch=0)).all()
        (True, np.True_)
        """
        blocks = self.epoch_blocks(seed=seed, epoch=epoch, shuffle=shuffle, shard=shard, n_shards=n_shards)
        rng = window_rng(seed, epoch, shard, n_shards)
        parts = []
        for w in range(0, len(blocks), max(1, window)):
            ids = np.concatenate(
                [
                    np.arange(*self.block_samples(int(b)).indices(self.n_samples))
                    for b in blocks[w : w + window]
                ]
            )
            parts.append(rng.permutation(ids) if shuffle else ids)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def window_rng(seed: int, epoch: int, shard: int, n_shards: int) -> np.random.Generator:
    """The generator of the within-window shuffle (a function of seed, epoch and shard only)."""
    return np.random.default_rng([seed, epoch, shard, n_shards, 1])


def _with_regions(
    plan_like: SamplePlan | None, starts: np.ndarray, ptr: np.ndarray, **kw: object
) -> SamplePlan:
    base = (
        dict(
            dims=plan_like.dims,
            sizes=plan_like.sizes,
            extent=plan_like.extent,
            chunk_edges=plan_like.chunk_edges,
        )
        if plan_like is not None
        else {}
    )
    base.update(kw)
    extent = np.asarray(base["extent"], dtype=np.int64)
    n_blocks = len(ptr) - 1
    regions = np.zeros((n_blocks, len(base["dims"]), 2), dtype=np.int64)
    if n_blocks:
        regions[:, :, 0] = np.minimum.reduceat(starts, ptr[:-1], axis=0)
        regions[:, :, 1] = np.maximum.reduceat(starts, ptr[:-1], axis=0) + extent
    return SamplePlan(starts=starts, block_ptr=ptr, regions=regions, **base)  # type: ignore[arg-type]


def _amplification_1d(edges: np.ndarray, pos: np.ndarray, extent: int, k: int) -> tuple[float, int]:
    """Chunk reads per touched chunk, and the longest block region, along one dim with k chunks per block."""
    block_edges = np.r_[edges[:-1:k], edges[-1]]
    blk = np.searchsorted(block_edges, pos, side="right") - 1
    change = np.r_[0, np.flatnonzero(np.diff(blk)) + 1]
    lo = pos[change]
    hi = np.r_[pos[change[1:] - 1], pos[-1]] + extent
    c_lo = np.searchsorted(edges, lo, side="right") - 1
    c_hi = np.searchsorted(edges, hi - 1, side="right") - 1
    reads = int((c_hi - c_lo + 1).sum())
    touched = np.zeros(len(edges) - 1, dtype=bool)
    for a, b in zip(c_lo, c_hi, strict=True):
        touched[a : b + 1] = True
    return reads / max(int(touched.sum()), 1), int((hi - lo).max())


def plan_samples(
    dims: Sequence[str],
    sizes: Mapping[str, int],
    chunk_edges: Mapping[str, np.ndarray],
    *,
    extent: Sequence[int],
    stride: Sequence[int],
    keep: np.ndarray | None = None,
    bytes_per_cell: int = 4,
    block_bytes: int = 512 * 2**20,
) -> SamplePlan:
    """Plan every sample origin on the stride grid and group them into chunk-aligned blocks.

    ``keep`` (optional) filters sample origins: a function of the ``(n, ndim)`` origins returning a
    bool mask (used for splits). ``bytes_per_cell`` is the bytes of all channels of one cell.
    """
    dims = tuple(dims)
    shape = tuple(int(sizes[d]) for d in dims)
    edges = tuple(np.asarray(chunk_edges[d], dtype=np.int64) for d in dims)
    positions = [
        np.arange(0, n - e + 1, s, dtype=np.int64) for n, e, s in zip(shape, extent, stride, strict=True)
    ]
    if any(len(p) == 0 for p in positions):
        raise EsdlError(f"No sample fits: extent {tuple(extent)} along {dims} vs cube sizes {shape}.")
    # grow blocks (chunks per block, per dim) while a chunk is read twice and the budget allows
    k = [1] * len(dims)
    frozen = [False] * len(dims)
    while True:
        stats = [_amplification_1d(edges[i], positions[i], extent[i], k[i]) for i in range(len(dims))]
        candidates = [i for i in range(len(dims)) if stats[i][0] > 1.0 + 1e-9 and not frozen[i]]
        if not candidates:
            break
        i = max(candidates, key=lambda j: stats[j][0])
        n_chunks = len(edges[i]) - 1
        if k[i] >= n_chunks:
            frozen[i] = True
            continue
        trial = k[i] + 1
        new = _amplification_1d(edges[i], positions[i], extent[i], trial)
        longest = [stats[j][1] if j != i else new[1] for j in range(len(dims))]
        if int(np.prod(longest)) * bytes_per_cell > block_bytes:
            frozen[i] = True
            continue
        k[i] = trial
    block_edges = [np.r_[e[:-1:kk], e[-1]] for e, kk in zip(edges, k, strict=True)]
    per_dim_block = [
        np.searchsorted(be, p, side="right") - 1 for be, p in zip(block_edges, positions, strict=True)
    ]
    grids = np.meshgrid(*positions, indexing="ij")
    starts = np.stack([g.ravel() for g in grids], axis=1)
    bgrids = np.meshgrid(*per_dim_block, indexing="ij")
    block_id = np.ravel_multi_index(
        tuple(g.ravel() for g in bgrids), tuple(len(be) - 1 for be in block_edges)
    )
    if keep is not None:
        mask = np.asarray(keep(starts), dtype=bool)
        starts, block_id = starts[mask], block_id[mask]
    order = np.argsort(block_id, kind="stable")
    starts, block_id = starts[order].astype(np.int64), block_id[order]
    if len(starts) == 0:
        raise EsdlError(
            "The sample plan is empty: no sample fits the split/selection; use smaller patches or blocks."
        )
    change = np.r_[0, np.flatnonzero(np.diff(block_id)) + 1, len(block_id)].astype(np.int64)
    return _with_regions(
        None, starts, change, dims=dims, sizes=shape, extent=tuple(int(e) for e in extent), chunk_edges=edges
    )
