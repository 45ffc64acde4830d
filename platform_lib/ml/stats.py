"""Normalisation statistics in one streaming, NaN-aware pass over stored chunks.

Per variable mean and standard deviation (Chan's parallel merge of per-block moments, float64), and
optionally the per-pixel mean seasonal cycle (8-day slots of the year) for seasonal gap filling.
Only the cells of one split (normally ``train``) are counted, so validation data never leak into
the statistics.

>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset({"a": (("t",), np.array([1, 2, np.nan, 3], "float32"))}).chunk({"t": 2})
>>> s = compute_stats(ds, ["a"], progress=False)
>>> float(s.mean[0]), round(float(s.std[0]), 4), int(s.count[0])
(2.0, 0.8165, 3)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from platform_lib.chunks import chunk_edges
from platform_lib.errors import EsdlError
from platform_lib.ml.reader import BlockReader, read_ahead

N_SLOTS = 46  # 8-day slots of the year, as in the ESDC


def season_slots(time: Any) -> np.ndarray:
    """The 8-day slot of the year (0..45) of each time stamp.

    >>> import pandas as pd
    >>> season_slots(pd.to_datetime(["2001-01-01", "2001-01-09", "2001-12-27"])).tolist()
    [0, 1, 45]
    """
    import pandas as pd

    doy = pd.DatetimeIndex(time).day_of_year.to_numpy()
    return np.minimum((doy - 1) // 8, N_SLOTS - 1).astype(np.int64)


@dataclass(frozen=True)
class NormStats:
    """Per variable ``mean``, ``std`` and ``count``; optional ``climatology`` ``(var, slot, *space)``."""

    variables: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    climatology: np.ndarray | None = None
    space_dims: tuple[str, ...] = ()

    def index(self, variables: Sequence[str]) -> np.ndarray:
        """Positions of ``variables`` in these statistics (a clear error for missing ones)."""
        missing = [v for v in variables if v not in self.variables]
        if missing:
            raise EsdlError(
                f"No normalisation statistics for {missing}; the statistics cover {list(self.variables)}."
            )
        return np.array([self.variables.index(v) for v in variables], dtype=np.int64)

    def normalise(self, x: np.ndarray, variables: Sequence[str], channel_axis: int = 1) -> np.ndarray:
        """``(x - mean) / std`` per channel, in place for float32 arrays; returns ``x``.

        >>> s = NormStats(("a",), np.array([1.0]), np.array([2.0]), np.array([3]))
        >>> s.normalise(np.array([[3.0]], dtype="float32"), ["a"]).tolist()
        [[1.0]]
        """
        idx = self.index(variables)
        shape = [1] * x.ndim
        shape[channel_axis] = len(idx)
        mean = self.mean[idx].astype(x.dtype).reshape(shape)
        std = np.where(self.std[idx] > 0, self.std[idx], 1.0).astype(x.dtype).reshape(shape)
        x -= mean
        x /= std
        return x

    def to_dataset(self) -> Any:
        """The statistics as an ``xarray.Dataset`` (stored with materialised training sets)."""
        import xarray as xr

        data = {
            "mean": (("variable",), self.mean),
            "std": (("variable",), self.std),
            "count": (("variable",), self.count),
        }
        if self.climatology is not None:
            data["climatology"] = (("variable", "slot", *self.space_dims), self.climatology)
        return xr.Dataset(data, coords={"variable": np.array(self.variables, dtype=object)})

    @classmethod
    def from_dataset(cls, ds: Any) -> NormStats:
        """Inverse of :meth:`to_dataset`.

        >>> s = NormStats(("a",), np.array([1.0]), np.array([2.0]), np.array([3]))
        >>> NormStats.from_dataset(s.to_dataset()).variables
        ('a',)
        """
        clim = ds["climatology"].values if "climatology" in ds else None
        space = tuple(str(d) for d in ds["climatology"].dims[2:]) if clim is not None else ()
        return cls(
            tuple(str(v) for v in ds["variable"].values),
            ds["mean"].values.astype(np.float64),
            ds["std"].values.astype(np.float64),
            ds["count"].values.astype(np.int64),
            clim,
            space,
        )


def _tiles(edges: Sequence[np.ndarray]) -> list[tuple[slice, ...]]:
    per_dim = [[slice(int(a), int(b)) for a, b in zip(e[:-1], e[1:], strict=True)] for e in edges]
    return [tuple(t) for t in itertools.product(*per_dim)]


def compute_stats(
    ds: Any,
    variables: Sequence[str],
    *,
    cell_mask: Callable[[tuple[slice, ...]], np.ndarray] | None = None,
    climatology: bool = False,
    threads: int = 2,
    progress: bool = True,
) -> NormStats:
    """Stream over the stored chunks of ``variables`` once and return their :class:`NormStats`.

    ``cell_mask(region)`` (optional) returns the bool mask of cells to count in a region (for example
    the training split's cells); regions without any such cell are not read. ``climatology=True`` also
    accumulates the per-pixel mean seasonal cycle (needs a ``time`` dim with dates).
    """
    variables = tuple(dict.fromkeys(variables))
    reader = BlockReader(ds, variables)
    dims = reader.dims
    edges = chunk_edges(ds, variables)
    tiles = _tiles([edges[d] for d in dims])
    masks: list[np.ndarray | None] = [None] * len(tiles)
    if cell_mask is not None:
        chosen = []
        for t in tiles:
            m = np.asarray(cell_mask(t), dtype=bool)
            if m.any():
                chosen.append(t)
                masks[len(chosen) - 1] = None if m.all() else m
        tiles = chosen
    n_var = len(variables)
    count = np.zeros(n_var, dtype=np.int64)
    mean = np.zeros(n_var)
    m2 = np.zeros(n_var)
    clim_sum = clim_n = slots = None
    space_dims: tuple[str, ...] = ()
    if climatology:
        if "time" not in dims:
            raise EsdlError(f"A seasonal climatology needs a 'time' dim; the variables have {dims}.")
        t_axis = dims.index("time")
        slots = season_slots(ds["time"].values)
        space_dims = tuple(d for d in dims if d != "time")
        shape = (n_var, N_SLOTS, *(int(ds.sizes[d]) for d in space_dims))
        clim_sum = np.zeros(shape, dtype=np.float64)
        clim_n = np.zeros(shape, dtype=np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tiles), desc="normalisation stats", unit="chunk")
    for i, block in read_ahead(
        lambda i: reader.read(tiles[i]), range(len(tiles)), prefetch=threads, threads=threads
    ):
        tile, m = tiles[i], masks[i]
        for c in range(n_var):
            values = block[c]
            if m is not None:
                values = np.where(m, values, np.nan)
            finite = np.isfinite(values)
            n_b = int(finite.sum())
            if n_b:
                v = values[finite].astype(np.float64)
                mean_b = float(v.mean())
                m2_b = float(((v - mean_b) ** 2).sum())
                n = count[c] + n_b
                delta = mean_b - mean[c]
                mean[c] += delta * n_b / n
                m2[c] += m2_b + delta**2 * count[c] * n_b / n
                count[c] = n
            if climatology and clim_sum is not None and clim_n is not None and slots is not None:
                vals = np.moveaxis(np.where(finite, values, 0.0), t_axis, 0)
                fin = np.moveaxis(finite, t_axis, 0)
                space = tuple(tile[dims.index(d)] for d in space_dims)
                tslots = slots[tile[t_axis]]
                for s in np.unique(tslots):
                    sel = tslots == s
                    clim_sum[(c, int(s), *space)] += vals[sel].sum(axis=0)
                    clim_n[(c, int(s), *space)] += fin[sel].sum(axis=0)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    std = np.sqrt(np.divide(m2, count, out=np.zeros(n_var), where=count > 0))
    mean = np.where(count > 0, mean, np.nan)
    clim = None
    if clim_sum is not None and clim_n is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            clim = (clim_sum / clim_n).astype(np.float32)
    return NormStats(variables, mean, std, count, clim, space_dims)
