"""Re-partition a cube: map-chunked to time-series-chunked and back, in bounded memory, to Zarr v3.

:func:`rechunk_cube` copies every variable block by block. A block is a run of whole target chunks
(or shards) as large as ``max_mem`` allows, so each source chunk is decoded as few times as possible;
when no block that fits reads each source chunk once (map -> ts on a big cube), the copy goes through
an intermediate store whose chunks are the per-dim minimum of source and target (the classic two-stage
plan), which needs only about one source chunk or one target chunk in memory. The output is written to
a temporary sibling and renamed into place (``platform_lib.storage.atomic_path``), with consolidated
metadata, optional sharding, a progress bar, and optionally registered in the team catalog.

rechunker is not used: it pins ``zarr<3``.

>>> import tempfile, numpy as np, xarray as xr
>>> from pathlib import Path
>>> ds = xr.Dataset({"v": (("time", "lat", "lon"), np.arange(96, dtype="float32").reshape(4, 4, 6))})
>>> out = rechunk_cube(ds, {"time": 4, "lat": 2, "lon": 3}, Path(tempfile.mkdtemp()) / "ts.zarr", progress=False)
>>> xr.open_zarr(out)["v"].encoding["chunks"], bool((xr.open_zarr(out)["v"] == ds["v"]).all())
((4, 2, 3), True)
"""

from __future__ import annotations

import numbers
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from platform_lib.arguments import (
    file_argument,
    flag_argument,
    names_argument,
    number_argument,
    path_argument,
)
from platform_lib.chunks import chunk_edges
from platform_lib.errors import EsdlError, short_repr
from platform_lib.storage import atomic_path, remove_path

DEFAULT_MAX_MEM = "1GB"
ENCODING_KEYS = ("compressors", "filters", "serializer", "dtype", "_FillValue", "scale_factor", "add_offset")
ENCODING_KEYS += ("units", "calendar")


def parse_mem(value: int | str) -> int:
    """Bytes from an int or a string such as ``"512MB"`` or ``"2GiB"``.

    >>> parse_mem("512MB"), parse_mem(1024)
    (512000000, 1024)
    """
    from dask.utils import parse_bytes

    try:
        out = parse_bytes(value) if isinstance(value, str) else value
    except (ValueError, TypeError):
        out = None
    if isinstance(out, bool) or not isinstance(out, numbers.Integral) or out <= 0:
        raise EsdlError(
            f"max_mem={short_repr(value)} is not a size; use a positive number of bytes or a string like"
            " '512MB' or '2GiB'."
        )
    return int(out)


@dataclass(frozen=True)
class Stage:
    """One copy pass: ``blocks`` (tuples of slices) read from the source, written to the target."""

    blocks: tuple[tuple[slice, ...], ...]
    block_shape: tuple[int, ...]
    reads_per_chunk: float


def _amplification(edges: np.ndarray, block: int, size: int) -> float:
    """Source chunk decodes per source chunk along one dim for blocks of ``block`` cells."""
    starts = np.arange(0, size, block)
    ends = np.minimum(starts + block, size)
    lo = np.searchsorted(edges, starts, side="right") - 1
    hi = np.searchsorted(edges, ends - 1, side="right") - 1
    return float((hi - lo + 1).sum()) / (len(edges) - 1)


def plan_stage(
    src_edges: Sequence[np.ndarray], unit: Sequence[int], sizes: Sequence[int], itemsize: int, max_mem: int
) -> Stage:
    """Blocks of whole write units (``unit`` per dim) grown greedily while they fit in ``max_mem``.

    >>> s = plan_stage([np.array([0, 1, 2, 3, 4]), np.array([0, 8])], (4, 2), (4, 8), 4, 10_000)
    >>> s.block_shape, s.reads_per_chunk
    ((4, 8), 1.0)
    """
    sizes = [int(n) for n in sizes]
    unit = [min(int(u), n) for u, n in zip(unit, sizes, strict=True)]
    src_max = [int(np.diff(e).max()) for e in src_edges]
    base = int(np.prod(src_max)) * itemsize  # one decoded source chunk in flight

    def mem(shape: Sequence[int]) -> int:
        return 2 * int(np.prod(shape)) * itemsize + base

    block = list(unit)
    if mem(block) > max_mem:
        raise EsdlError(
            f"max_mem={max_mem} bytes is below the {mem(block)} bytes one write unit {tuple(unit)} needs "
            f"(plus one source chunk {tuple(src_max)}); raise max_mem or use smaller target chunks/shards."
        )
    frozen = [False] * len(block)
    while True:
        amp = [_amplification(e, b, n) for e, b, n in zip(src_edges, block, sizes, strict=True)]
        todo = [k for k in range(len(block)) if amp[k] > 1.0 + 1e-9 and not frozen[k] and block[k] < sizes[k]]
        if not todo:
            break
        k = max(todo, key=lambda j: amp[j])
        trial = list(block)
        while trial[k] < sizes[k]:
            trial[k] = min(trial[k] + unit[k], sizes[k])
            if _amplification(src_edges[k], trial[k], sizes[k]) < amp[k] - 1e-9:
                break
        if mem(trial) > max_mem:
            frozen[k] = True
            continue
        block = trial
    # then fewer, bigger blocks (doubling keeps every block boundary, so decodes never go up): each
    # zarr call has a fixed cost, and big calls let zarr decode and encode chunks concurrently
    grown = True
    while grown:
        grown = False
        for k in range(len(block)):
            trial = list(block)
            trial[k] = min(2 * block[k], sizes[k])
            if (
                trial[k] > block[k]
                and int(np.prod(trial)) * itemsize <= max_mem // 4
                and mem(trial) <= max_mem
            ):
                block, grown = trial, True
    amp = [_amplification(e, b, n) for e, b, n in zip(src_edges, block, sizes, strict=True)]
    per_dim = [[slice(a, min(a + b, n)) for a in range(0, n, b)] for b, n in zip(block, sizes, strict=True)]
    import itertools

    blocks = tuple(tuple(t) for t in itertools.product(*per_dim))
    return Stage(blocks, tuple(block), float(np.prod(amp)))


@dataclass(frozen=True)
class VariablePlan:
    """How one variable is copied: one direct stage, or two through ``intermediate_chunks``."""

    stages: tuple[Stage, ...]
    intermediate_chunks: tuple[int, ...] | None
    peak_bytes: int
    intermediate_shards: tuple[int, ...] | None = None


def plan_variable(
    ds: Any, name: str, chunks: Mapping[str, int], unit: Mapping[str, int], max_mem: int
) -> VariablePlan:
    """The copy plan of variable ``name`` to ``chunks`` (written in ``unit``s: chunks or shards).

    Direct when blocks that fit ``max_mem`` decode each source chunk once; otherwise two stages through
    intermediate chunks ``min(source, target)`` per dim when that decodes less. ``peak_bytes`` is the
    planned peak (two blocks plus one source chunk).

    >>> import xarray as xr
    >>> ds = xr.Dataset({"v": (("time", "x"), np.zeros((64, 64), "float32"))}).chunk({"time": 1})
    >>> plan_variable(ds, "v", {"time": 64, "x": 8}, {"time": 64, "x": 8}, 10_000).intermediate_chunks
    (1, 8)
    >>> len(plan_variable(ds, "v", {"time": 64, "x": 8}, {"time": 64, "x": 8}, 100_000).stages)
    1
    """
    var = ds[name]
    dims = tuple(str(d) for d in var.dims)
    sizes = [int(ds.sizes[d]) for d in dims]
    itemsize = int(np.dtype(var.dtype).itemsize)
    edges = chunk_edges(ds, [name])
    src = [edges[d] for d in dims]
    target_unit = [unit[d] for d in dims]
    src_chunk = int(np.prod([int(np.diff(e).max()) for e in src])) * itemsize

    def peak(*stages: Stage) -> int:
        return max(2 * int(np.prod(st.block_shape)) * itemsize + src_chunk for st in stages)

    direct = plan_stage(src, target_unit, sizes, itemsize, max_mem)
    if direct.reads_per_chunk > 1.0 + 1e-9:
        src_max = [int(np.diff(e).max()) for e in src]
        inter = tuple(min(m, chunks[d]) for m, d in zip(src_max, dims, strict=True))
        # shards of about one source chunk: stage 1 writes whole shards (few objects, no re-writes)
        shard = tuple(
            min(-(-m // i) * i, -(-n // i) * i) for m, i, n in zip(src_max, inter, sizes, strict=True)
        )
        first = plan_stage(src, shard, sizes, itemsize, max_mem)
        second = plan_stage(_regular_edges(inter, sizes), target_unit, sizes, itemsize, max_mem)
        if first.reads_per_chunk + second.reads_per_chunk + 1 < direct.reads_per_chunk:
            return VariablePlan((first, second), inter, peak(first, second), shard)
    return VariablePlan((direct,), None, peak(direct))


def _regular_edges(chunks: Sequence[int], sizes: Sequence[int]) -> list[np.ndarray]:
    return [np.unique(np.r_[np.arange(0, n, c), n]) for c, n in zip(chunks, sizes, strict=True)]


def _open(cube: Any) -> tuple[Any, str]:
    import xarray as xr

    if isinstance(cube, xr.Dataset):
        return cube, str(cube.attrs.get("id") or cube.attrs.get("title") or "an in-memory dataset")
    if isinstance(cube, str | os.PathLike) and Path(cube).exists():
        from platform_lib.catalog import open_store

        return open_store(cube), str(cube)
    if isinstance(cube, str) and cube:
        from platform_lib.catalog import open_cube

        return open_cube(cube), cube  # a catalog name (a clear error names the cubes that exist)
    raise EsdlError(
        f"cube must be an xarray.Dataset, a Zarr store path or a catalog name; got {short_repr(cube)}."
    )


def _resolve_shards(
    shards: Mapping[str, int] | None, chunks: Mapping[str, int], sizes: Mapping[str, int]
) -> dict[str, int] | None:
    if shards is None:
        return None
    if not isinstance(shards, Mapping):
        raise EsdlError(
            f"shards must be a mapping dim -> shard size (a multiple of the chunk); got {shards!r}."
        )
    unknown = [d for d in shards if d not in sizes]
    if unknown:
        raise EsdlError(
            f"shards names unknown dims {sorted(map(short_repr, unknown))}; the cube has {sorted(sizes)}."
        )
    out = {}
    for d, c in chunks.items():
        s = number_argument(shards.get(d, c), f"shards[{d!r}]", low=1, integer=True)
        if s < c or s % c:
            raise EsdlError(f"shard size {s} along {d!r} must be a multiple of the chunk size {c}.")
        out[d] = s
    return out


def _read(var: Any, region: tuple[slice, ...]) -> np.ndarray:
    sub = var.isel(dict(zip(var.dims, region, strict=True)))
    if sub.chunks is not None:  # dask-backed (``.data`` of a lazy variable would load it all)
        return np.asarray(sub.data.compute(scheduler="synchronous"))
    return np.asarray(sub.values)


def _copy_block(
    read: Callable[[tuple[slice, ...]], np.ndarray], write: Callable[..., None], region: tuple[slice, ...]
) -> int:
    data = read(region)
    write(region, data)
    return int(data.nbytes)


def rechunk_cube(
    cube: Any,
    target: str | Mapping[str, int],
    store: str | os.PathLike[str],
    *,
    max_mem: int | str = DEFAULT_MAX_MEM,
    shards: Mapping[str, int] | None = None,
    variables: Sequence[str] | None = None,
    overwrite: bool = False,
    register: str | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    client: Any = None,
    progress: bool = True,
) -> Path:
    """Copy ``cube`` to the Zarr v3 store ``store`` with chunks ``target`` in bounded memory.

    ``cube`` is a Dataset, a Zarr path or a catalog cube name; ``target`` is ``"ts"``, ``"map"``
    (the platform's chunkings, :data:`platform_lib.regional.CHUNKINGS`) or ``{dim: size}``;
    ``shards`` (``{dim: size}``, multiples of the chunks) stores many chunks per object. ``max_mem``
    bounds the data one block holds (about ``2 x block + one source chunk``). ``register`` names the
    result in the team catalog (``platform_lib.team.register_cube``). ``client`` (a dask
    ``distributed.Client``, for example from a gateway cluster) runs the blocks of each stage on its
    workers; the store must then be reachable from them.
    """
    import xarray as xr

    from platform_lib.regional import output_chunks

    store = path_argument(store, "store")
    overwrite = flag_argument(overwrite, "overwrite")
    progress = flag_argument(progress, "progress")
    if catalog_path is not None:
        catalog_path = file_argument(catalog_path, "catalog_path")
    if variables is not None:
        variables = names_argument(variables, "variables")
    if register is not None:
        from platform_lib.team import check_cube_name

        check_cube_name(register)
    budget = parse_mem(max_mem)
    ds, label = _open(cube)
    if variables is not None:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise EsdlError(
                f"{label} has no variable {missing}; variables: {sorted(map(str, ds.data_vars))}."
            )
        ds = ds[list(variables)]
    if not ds.data_vars:
        raise EsdlError(f"{label} has no data variables to rechunk.")
    sizes = {str(d): int(n) for d, n in ds.sizes.items()}
    chunks = output_chunks(sizes, target, "target")
    shard_sizes = _resolve_shards(shards, chunks, sizes)
    unit = shard_sizes or chunks

    template = ds.copy()
    for name, var in template.data_vars.items():
        enc = {k: v for k, v in ds[name].encoding.items() if k in ENCODING_KEYS}
        enc["chunks"] = tuple(chunks[str(d)] for d in var.dims)
        if shard_sizes is not None:
            enc["shards"] = tuple(shard_sizes[str(d)] for d in var.dims)
        template[name] = var.chunk({d: unit[str(d)] for d in var.dims})
        template[name].encoding = enc
    for name in template.coords:
        template[name].encoding = {k: v for k, v in ds[name].encoding.items() if k in ENCODING_KEYS}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            desc=f"rechunk to {target if isinstance(target, str) else 'custom'}", unit="B", unit_scale=True
        )
    with atomic_path(store, overwrite=overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            template.to_zarr(tmp, mode="w", zarr_format=3, compute=False, consolidated=False)
        for name in ds.data_vars:
            _rechunk_variable(ds, str(name), tmp, chunks, unit, budget, client, bar)
        import zarr

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            zarr.consolidate_metadata(str(tmp))
    if bar is not None:
        bar.close()
    if register is not None:
        from platform_lib.catalog import cube_metadata
        from platform_lib.team import register_cube

        out = xr.open_zarr(store)
        meta = cube_metadata(
            out,
            chunking=target if isinstance(target, str) else "custom",
            license=str(ds.attrs.get("license", "see source cube")),
            source=f"rechunked from {label}",
            chunks=chunks,
        )
        register_cube(register, store, meta, catalog_path=catalog_path, overwrite=overwrite)
    return store


def _rechunk_variable(
    ds: Any,
    name: str,
    out: Path,
    chunks: Mapping[str, int],
    unit: Mapping[str, int],
    budget: int,
    client: Any,
    bar: Any,
) -> None:
    import zarr

    var = ds[name]
    dims = tuple(str(d) for d in var.dims)
    sizes = [int(ds.sizes[d]) for d in dims]
    plan = plan_variable(ds, name, chunks, unit, budget)

    opened: dict[str, Any] = {}  # arrays opened once per process (empty when shipped to dask workers)

    def array(path: Path, inner: str, mode: str) -> Any:
        key = f"{path}/{inner}"
        if key not in opened:
            opened[key] = zarr.open_array(str(path), path=inner, mode=mode)
        return opened[key]

    def write_inter(region: tuple[slice, ...], data: np.ndarray) -> None:
        array(inter_path, "", "r+")[region] = data

    target_arr = zarr.open_array(str(out), path=name, mode="r+")
    raw_safe = var.encoding.get("scale_factor") is None and var.encoding.get("add_offset") is None
    raw_safe &= np.dtype(target_arr.dtype) == np.dtype(var.dtype)

    def write_final(region: tuple[slice, ...], data: np.ndarray) -> None:
        if raw_safe:
            array(out, name, "r+")[region] = data
        else:  # let xarray encode (scale, offset, fill value) with the store's own encoding
            import xarray as xr

            piece = xr.Dataset({name: (dims, data)})
            piece.to_zarr(
                out, region=dict(zip(dims, region, strict=True)), mode="r+", zarr_format=3, consolidated=False
            )

    def read_src(region: tuple[slice, ...]) -> np.ndarray:
        return _read(var, region)

    inter_path = out.parent / f".{out.name}.{name}.intermediate-{uuid.uuid4().hex[:8]}.zarr"
    if plan.intermediate_chunks is None:
        _run(plan.stages[0], read_src, write_final, client, bar)
        return
    try:
        zarr.create_array(
            str(inter_path),
            shape=tuple(sizes),
            chunks=plan.intermediate_chunks,
            shards=plan.intermediate_shards,
            compressors=None,  # written once, read once, removed: speed over size
            dtype=var.dtype,
            fill_value=np.nan if np.issubdtype(var.dtype, np.floating) else 0,
            zarr_format=3,
            chunk_key_encoding={"name": "v2", "separator": "."},  # flat: one folder, quick to remove
        )

        def read_inter(region: tuple[slice, ...]) -> np.ndarray:
            return array(inter_path, "", "r")[region]

        _run(plan.stages[0], read_src, write_inter, client, bar)
        _run(plan.stages[1], read_inter, write_final, client, bar)
    finally:
        remove_path(inter_path)


def _run(
    stage: Stage, read: Callable[..., np.ndarray], write: Callable[..., None], client: Any, bar: Any
) -> None:
    if client is None:
        for region in stage.blocks:
            n = _copy_block(read, write, region)
            if bar is not None:
                bar.update(n)
        return
    from distributed import as_completed

    futures = client.map(
        _copy_block, [read] * len(stage.blocks), [write] * len(stage.blocks), stage.blocks, pure=False
    )
    for fut in as_completed(futures):
        n = fut.result()
        if bar is not None:
            bar.update(n)
