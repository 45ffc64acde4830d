"""The stored chunk grid of a cube: where its chunks (or shards) start along each dim.

Readers and writers that go block by block (:mod:`platform_lib.rechunk`, :mod:`platform_lib.ml`) align
their blocks with it, so each stored chunk is decoded as few times as possible.

>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"a": (("t", "x"), np.arange(12, dtype="float32").reshape(4, 3))}).chunk({"t": 2})
>>> chunk_edges(ds, ["a"])
{'t': array([0, 2, 4]), 'x': array([0, 3])}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def is_dask_backed(var: Any) -> bool:
    """Whether ``var`` is dask-backed, without touching ``var.data`` (which loads a lazy variable).

    >>> import numpy as np, xarray as xr
    >>> var = xr.DataArray(np.zeros(4), dims="t")
    >>> is_dask_backed(var), is_dask_backed(var.chunk(t=2))
    (False, True)
    """
    return var.chunks is not None


def chunk_edges(ds: Any, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """The stored chunk boundaries along each dim (start indices plus the end), union over ``variables``.

    The stored grid comes from the encoding (``shards``, else ``chunks``: sharded stores are read a shard
    at a time); a dask-backed cube adds its dask chunk boundaries, and its first dask chunk gives the
    phase of the stored grid after a subset (``isel``) of a cube opened with ``chunks="auto"``.

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"a": (("t",), np.zeros(20, "float32"))})
    >>> ds["a"].encoding["chunks"] = (4,)
    >>> chunk_edges(ds.isel(t=slice(2, None)).chunk({"t": 10}), ["a"])["t"].tolist()
    [0, 2, 6, 10, 14, 18]
    """
    dims = tuple(str(d) for d in ds[variables[0]].dims)
    edges: dict[str, set[int]] = {d: {0, int(ds.sizes[d])} for d in dims}
    for name in dict.fromkeys(variables):
        var = ds[name]
        grid = (
            var.encoding.get("shards") or var.encoding.get("chunks") or var.encoding.get("preferred_chunks")
        )
        if isinstance(grid, dict):
            grid = tuple(grid.get(d, ds.sizes[d]) for d in var.dims)
        dask_chunks = var.chunks if is_dask_backed(var) else None
        for k, d in enumerate(var.dims):
            n = int(ds.sizes[d])
            phase = 0
            if dask_chunks is not None:
                sizes = dask_chunks[k]
                edges[str(d)].update(np.cumsum((0, *sizes)).tolist())
                if grid is not None and len(sizes) > 1:
                    phase = int(sizes[0]) % int(grid[k])
            if grid is not None:
                edges[str(d)].update(range(phase, n, int(grid[k])))
    return {d: np.array(sorted(e)) for d, e in edges.items()}


__all__ = ["chunk_edges", "is_dask_backed"]
