"""Read a cube block by block, aligned with its stored Zarr chunks, with a bounded read-ahead.

Blocks follow the chunk grid of the store itself (:func:`platform_lib.chunks.chunk_edges`: dask
chunks of a lazily opened cube, else the variable's ``encoding["shards"]``/``encoding["chunks"]``), so
a block read decodes whole stored chunks and each chunk once.

>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"a": (("t", "x"), np.arange(12, dtype="float32").reshape(4, 3))}).chunk({"t": 2})
>>> BlockReader(ds, ["a", "a"]).read((slice(2, 4), slice(0, 2))).tolist()  # two channels of a 2 x 2 block
[[[6.0, 7.0], [9.0, 10.0]], [[6.0, 7.0], [9.0, 10.0]]]
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np

from platform_lib.chunks import is_dask_backed
from platform_lib.errors import EsdlError
from platform_lib.ml.chunk_files import ChunkFileReader, chunk_file_reader

T = TypeVar("T")
DIRECT_STORE = "esdl_direct_store"  # encoding key: a store opened by open_cube_for_reading, not subset
Region = tuple[slice, ...]


def open_cube_for_reading(cube: Any) -> Any:
    """An ``xarray.Dataset`` for ``cube``: a Dataset as is, or a Zarr store path opened lazily.

    A path is opened without dask (``chunks=None``): reads go straight to zarr and decode only the
    chunks they touch.

    >>> open_cube_for_reading("/no/such/cube.zarr")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: cube /no/such/cube.zarr: no such store; pass an xarray.Dataset or the path of a Zarr store.
    """
    import xarray as xr

    if isinstance(cube, xr.Dataset):
        return cube
    if isinstance(cube, str | os.PathLike):
        from platform_lib.catalog import open_store

        ds = open_store(cube)
        ds.encoding[DIRECT_STORE] = str(cube)  # ours, unsubset: BlockReader may read it with zarr directly
        return ds
    raise EsdlError(f"A cube must be an xarray.Dataset or a Zarr store path; got {type(cube).__name__}.")


def _nan_or_none(value: Any) -> bool:
    try:
        return value is None or bool(np.isnan(value))
    except TypeError:
        return False


def _nd_buffer(array: np.ndarray) -> Any:
    """A zarr output buffer over ``array`` (zarr decodes into it, no extra copy)."""
    from zarr.core.buffer import default_buffer_prototype

    return default_buffer_prototype().nd_buffer.from_numpy_array(array)


_OPENED = re.compile(r"^(original-)?open_dataset-(?P<name>.+)-[0-9a-f]{32}$")


def _sliced_from_store(var: Any, name: str) -> bool:
    """Whether dask-backed ``var`` is store variable ``name`` as opened, then only sliced (``isel``)."""
    layers = list(var.data.dask.layers)
    opened = [m for m in map(_OPENED.match, layers) if m is not None]
    rest = [k for k in layers if _OPENED.match(k) is None]
    return (
        len(opened) >= 1
        and all(m["name"] == name for m in opened)
        and all(k.startswith("getitem-") for k in rest)
    )


def _offset(stored: np.ndarray, values: np.ndarray) -> int | None:
    """Where ``values`` sit in ``stored`` as one contiguous run, or None."""
    if len(values) == 0 or len(values) > len(stored):
        return None
    hits = np.flatnonzero(stored == values[0])
    if len(hits) != 1:
        return None
    o = int(hits[0])
    if o + len(values) > len(stored) or not np.array_equal(stored[o : o + len(values)], values):
        return None
    return o


def backing_store(ds: Any, variables: Sequence[str]) -> tuple[str | None, tuple[int, ...], set[str]]:
    """The Zarr store ``variables`` of ``ds`` can be read from directly, the offset of ``ds`` in it per
    dim, and the variables that can: ``(None, zeros, set())`` when there is none.

    A store opened by :func:`open_cube_for_reading` qualifies as a whole; a cube opened lazily with dask
    (``open_cube``, ``xr.open_zarr``) and then only sliced (a bbox, a time range: contiguous ``isel``)
    qualifies variable by variable when its dask graph is the opened store variable and slices only,
    and its coordinates are one contiguous run of the store's. Any other computation (arithmetic,
    ``where``, a renamed or reordered variable, a dateline-wrapped bbox) is read through xarray.

    >>> import xarray as xr
    >>> backing_store(xr.Dataset({"a": ("t", np.zeros(3, "float32"))}), ["a"])
    (None, (0,), set())
    """
    dims = tuple(str(d) for d in ds[variables[0]].dims)
    none: tuple[str | None, tuple[int, ...], set[str]] = (None, (0,) * len(dims), set())
    store = ds.encoding.get(DIRECT_STORE)
    if store is not None:
        return store, (0,) * len(dims), {v for v in variables if not is_dask_backed(ds[v])}
    source = ds.encoding.get("source")
    if not isinstance(source, str | os.PathLike) or not all(is_dask_backed(ds[v]) for v in variables):
        return none
    names = [v for v in dict.fromkeys(variables) if _sliced_from_store(ds[v], v)]
    if not names:
        return none
    try:
        import xarray as xr

        full = xr.open_zarr(str(source), chunks=None)
    except Exception:  # not a zarr store we can open again (in-memory, remote without access)
        return none
    offsets = []
    for d in dims:
        if d not in full.sizes:
            return none
        if d in ds.coords and d in full.coords:
            o = _offset(full[d].values, ds[d].values)
        else:
            o = 0 if full.sizes[d] == ds.sizes[d] else None
        if o is None:
            return none
        offsets.append(o)
    ok = set()
    for v in names:
        if v in full.data_vars and tuple(str(d) for d in full[v].dims) == dims:
            grid = full[v].encoding.get("chunks")
            phase_ok = grid is None or all(
                len(c) == 1 or int(c[0]) == int(g) - o % int(g)
                for c, g, o in zip(ds[v].chunks, grid, offsets, strict=True)
            )
            if phase_ok:
                ok.add(v)
    return (str(source), tuple(offsets), ok) if ok else none


class BlockReader:
    """Reads a region of several variables into one float32 array ``(channels, *region)``.

    Thread-safe: one reader serves the read-ahead threads.
    """

    def __init__(
        self, ds: Any, variables: Sequence[str], dtype: Any = np.float32, threads: int | None = None
    ) -> None:
        self.ds = ds
        self.variables = tuple(variables)
        self.dims = tuple(str(d) for d in ds[self.variables[0]].dims)
        self.dtype = np.dtype(dtype)
        # default: up to 4, no more than the cores (more threads than cores only contend)
        self.threads = max(1, int(threads if threads is not None else min(4, os.cpu_count() or 1)))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        # float variables without scale/offset, read from a Zarr store as they are stored (a store we
        # opened, or the store behind a lazily opened and sliced cube): zarr decodes straight into the block
        store, self.offsets, candidates = backing_store(ds, self.variables)
        self.direct_store = store
        self.direct = {
            name
            for name in candidates
            if ds[name].encoding.get("scale_factor") is None
            and ds[name].encoding.get("add_offset") is None
            and np.dtype(ds[name].encoding.get("dtype", ds[name].dtype)) == self.dtype
            and _nan_or_none(ds[name].encoding.get("_FillValue"))
            and "missing_value" not in ds[name].encoding
        }
        self._arrays: dict[str, Any] = {}
        self._arrays_pid = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"], state["_pool_pid"] = None, 0  # threads do not travel to other processes
        state["_arrays"], state["_arrays_pid"] = {}, 0
        return state

    def _variables_pool(self) -> ThreadPoolExecutor:
        if (
            self._pool is None or self._pool_pid != os.getpid()
        ):  # a fresh pool after fork (DataLoader workers)
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="esdl-var")
            self._pool_pid = os.getpid()
        return self._pool

    def _array(self, name: str) -> tuple[Any, ChunkFileReader | None]:
        """The zarr array of direct variable ``name`` and its chunk-file reader (None: read via zarr)."""
        import zarr

        if self._arrays_pid != os.getpid():
            self._arrays, self._arrays_pid = {}, os.getpid()
        if name not in self._arrays:
            arr = zarr.open_array(str(self.direct_store), path=name, mode="r")
            need = tuple(n + o for n, o in zip(self.ds[name].shape, self.offsets, strict=True))
            if len(arr.shape) != len(need) or any(a < b for a, b in zip(arr.shape, need, strict=True)):
                raise EsdlError(f"{self.direct_store}/{name} does not hold the opened cube's region.")
            self._arrays[name] = (arr, chunk_file_reader(arr))
        return self._arrays[name]

    def read(self, region: Region) -> np.ndarray:
        """Read ``region`` (one slice per dim) of every variable, chunks and variables concurrently.

        Direct variables are decoded chunk file by chunk file where :func:`chunk_file_reader` can
        (else with one zarr call each), the rest are read through xarray; the pieces run on a pool
        of ``threads`` threads, in as many interleaved groups.
        """
        shape = tuple(sl.stop - sl.start for sl in region)
        out = np.empty((len(self.variables), *shape), dtype=self.dtype)
        indexer = dict(zip(self.dims, region, strict=True))
        stored = tuple(slice(sl.start + o, sl.stop + o) for sl, o in zip(region, self.offsets, strict=True))
        jobs: list[Callable[[], None]] = []
        for c, name in enumerate(self.variables):
            if name not in self.direct:
                jobs.append(partial(self._read_through_xarray, name, indexer, out[c]))
                continue
            arr, files = self._array(name)
            if files is None:
                jobs.append(partial(arr.get_basic_selection, stored, out=_nd_buffer(out[c])))
            else:
                jobs += [partial(files.read_piece, piece, out[c]) for piece in files.pieces(stored)]
        groups = min(self.threads, len(jobs))
        if groups <= 1:
            for job in jobs:
                job()
        else:
            run = lambda k: [job() for job in jobs[k::groups]]  # noqa: E731
            list(self._variables_pool().map(run, range(groups)))
        return out

    def _read_through_xarray(self, name: str, indexer: dict[str, slice], out: np.ndarray) -> None:
        var = self.ds[name].variable.isel(indexer)
        out[...] = var.data.compute(scheduler="synchronous") if is_dask_backed(var) else var.values

    @property
    def decodes_in_place(self) -> bool:
        """Whether every variable is decoded from chunk files straight into the block when a region
        holds whole chunks (see :class:`platform_lib.ml.chunk_files.ChunkFileReader`)."""
        if set(self.variables) - self.direct:
            return False
        return all((files := self._array(name)[1]) is not None and files.in_place for name in self.variables)

    @property
    def itemsize(self) -> int:
        """Bytes per cell of one channel."""
        return self.dtype.itemsize


def read_ahead(
    fn: Callable[[T], Any], items: Iterable[T], *, prefetch: int = 2, threads: int = 2
) -> Iterator[tuple[T, Any]]:
    """Yield ``(item, fn(item))`` in order while up to ``prefetch`` further items are read in threads.

    Memory is bounded by ``prefetch + 1`` results. Stopping the iteration early cancels what is queued.

    >>> list(read_ahead(lambda i: i * i, range(4)))
    [(0, 0), (1, 1), (2, 4), (3, 9)]
    """
    if prefetch < 0 or threads < 1:
        raise EsdlError(f"read_ahead needs prefetch >= 0 and threads >= 1; got {prefetch}, {threads}.")
    if prefetch == 0:
        for item in items:
            yield item, fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="esdl-read")
    queue: deque[tuple[T, Future[Any]]] = deque()
    try:
        it = iter(items)
        for item in it:
            queue.append((item, pool.submit(fn, item)))
            if len(queue) > prefetch:
                head, fut = queue.popleft()
                yield head, fut.result()
        while queue:
            head, fut = queue.popleft()
            yield head, fut.result()
    finally:
        for _, fut in queue:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


class BlockCache:
    """A small thread-safe LRU cache of read blocks for random access (map-style datasets, Keras).

    >>> cache = BlockCache(lambda k: k * 2, size=2)
    >>> cache.get(3), cache.get(3), cache.misses
    (6, 6, 1)
    """

    def __init__(self, load: Callable[[int], Any], size: int = 4) -> None:
        import threading

        self.load = load
        self.size = max(1, int(size))
        self.misses = 0
        self._data: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: int) -> Any:
        """The block ``key``, loaded on a miss (the least recently used block is evicted)."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = self.load(key)
        with self._lock:
            self.misses += 1
            self._data[key] = value
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value
