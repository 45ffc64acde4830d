"""Apply functions over named dimensions of a cube, and the seasonal helpers the analyses build on.

:func:`map_cube` is the xarray counterpart of ESDL.jl's ``mapCube``/``mapslices``: it stacks the chosen
variables into a ``variable`` dimension, hands a function the *core block* (by default each pixel's
``time x variable`` matrix) for every other coordinate, and stays lazy and dask-parallel. A function
that accepts a batch (``batched=True``) receives a whole chunk of pixels at once as one array
``(n_pixels, *core)``, so it can vectorise with numpy; otherwise it is called once per pixel.

Seasonal helpers work on the ESDC's 8-daily axis, 46 steps a year restarting on 1 January: the
*step* of a time stamp is its position within its calendar year (``(day_of_year - 1) // 8``).

>>> import numpy as np, pandas as pd, xarray as xr
>>> time = pd.date_range("2001-01-05", periods=3, freq="8D")
>>> ds = xr.Dataset({v: (("time", "lat", "lon"), np.ones((3, 2, 2)) * i) for i, v in enumerate("ab")},
...                 coords={"time": time, "lat": [0.5, 1.5], "lon": [10.5, 11.5]})
>>> out = map_cube(lambda block: block.sum(axis=(1, 2)), ds, batched=True)  # sum over time and variable
>>> out.dims, out.values.tolist()
(('lat', 'lon'), [[3.0, 3.0], [3.0, 3.0]])
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.arguments import (
    callable_argument,
    cube_argument,
    flag_argument,
    names_argument,
    number_argument,
    sizes_argument,
    text_argument,
)
from platform_lib.errors import EsdlError, allowed, did_you_mean, short_repr

STEPS_PER_YEAR = 46
DEFAULT_BLOCK_BYTES = 256 * 2**20  # largest dask block map_cube hands to a function (input side)

Cube = xr.Dataset | xr.DataArray


# --- map_cube ---------------------------------------------------------------------------------------


def as_variable_array(
    cube: Cube, variables: Sequence[str] | None = None, *, dim: str = "variable"
) -> xr.DataArray:
    """``cube`` as one DataArray with the chosen ``variables`` stacked along ``dim`` (last).

    A Dataset's variables must share their dimensions; a DataArray that already has ``dim`` is
    subset to ``variables``. Unknown names raise an :class:`EsdlError` that lists what exists.

    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"a": ("t", np.zeros(2)), "b": ("t", np.ones(2))})
    >>> as_variable_array(ds, ["b", "a"]).sel(variable="b").values.tolist()
    [1.0, 1.0]
    >>> as_variable_array(ds, ["c"])
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: no variable 'c' in the cube; it has: 'a', 'b'.
    """
    cube = cube_argument(cube, "cube")
    if variables is not None:
        variables = names_argument(variables, "variables")
    if isinstance(cube, xr.Dataset):
        names = list(cube.data_vars) if variables is None else list(variables)
        if not names:
            raise EsdlError("no variables to stack: the cube has no data variables and none were chosen.")
        for name in names:
            if name not in cube.data_vars:
                raise EsdlError(
                    f"no variable {name!r} in the cube; it has: {allowed(cube.data_vars)}."
                    + did_you_mean(name, cube.data_vars)
                )
        dims = {cube[n].dims for n in names}
        if len(dims) > 1:
            shapes = ", ".join(f"{n}{cube[n].dims}" for n in names)
            raise EsdlError(f"variables to stack must share their dimensions; got {shapes}.")
        first = cube[names[0]]
        arrays = [cube[n].transpose(*first.dims).data for n in names]
        stack = np.stack if all(isinstance(a, np.ndarray) for a in arrays) else _dask_stack
        # variable innermost in memory: each pixel's (time, variable) block is then one strided slab
        return xr.DataArray(
            stack(arrays, axis=-1),
            coords={**dict(first.coords.items()), dim: names},
            dims=(*first.dims, dim),
            name=None,
            attrs=dict(cube.attrs),
        )
    if dim in cube.dims:
        if variables is not None:
            have = [str(v) for v in cube[dim].values]
            for name in variables:
                if name not in have:
                    raise EsdlError(
                        f"no variable {name!r} along {dim!r}; it has: {allowed(have)}."
                        + did_you_mean(name, have)
                    )
            cube = cube.sel({dim: list(variables)})
        return cube.transpose(*[d for d in cube.dims if d != dim], dim)
    name = str(cube.name) if cube.name is not None else "data"
    if variables is not None and list(variables) != [name]:
        raise EsdlError(
            f"a DataArray named {name!r} has no {dim!r} dimension to pick {list(variables)} from."
        )
    return cube.expand_dims({dim: [name]}, axis=-1)


def _dask_stack(arrays: Sequence[Any], axis: int) -> Any:
    import dask.array as dsa

    return dsa.stack([dsa.asarray(a) for a in arrays], axis=axis)  # a numpy member stays lazy-compatible


def pixel_major(flat: np.ndarray, pixels_per_copy: int = 64) -> np.ndarray:
    """``flat`` (pixels, *core) as a C-contiguous array, copied slab by slab when it is strided.

    A time-major cube seen pixel by pixel reads each pixel's series from a different memory page per
    time step; one big copy thrashes the TLB (tens of ns per value under load). Copying
    ``pixels_per_copy`` neighbouring pixels at a time reuses each page for all of them.

    >>> a = np.arange(24.0).reshape(4, 3, 2).transpose(1, 0, 2)   # (pixels=3, time=4, var=2), strided
    >>> b = pixel_major(a, pixels_per_copy=2)
    >>> b.flags.c_contiguous, bool((b == a).all())
    (True, True)
    """
    if flat.flags.c_contiguous:
        return flat
    if flat.ndim < 2:
        return np.ascontiguousarray(flat)
    out = np.empty(flat.shape, dtype=flat.dtype)
    for start in range(0, flat.shape[0], pixels_per_copy):
        slab = flat[start : start + pixels_per_copy]
        # (time, pixels, ...) first: neighbouring pixels are long contiguous runs in a time-major cube;
        # then the small slab is transposed in cache
        out[start : start + pixels_per_copy] = np.ascontiguousarray(slab.swapaxes(0, 1)).swapaxes(0, 1)
    return out


def kernel_threads(n_items: int, min_per_thread: int = 256) -> int:
    """How many threads a block kernel may split ``n_items`` over.

    All the cores this process may use (or the dask config value ``esdl.threads``, if set) when
    called from the main thread -- an eager computation, or dask's synchronous scheduler; one inside
    any other thread, such as dask's or a distributed worker's, which already keep the cores busy.
    Never more than one thread per ``min_per_thread`` items.

    >>> kernel_threads(10)
    1
    >>> import dask
    >>> with dask.config.set({"esdl.threads": 1}):
    ...     kernel_threads(10**6)
    1
    """
    import dask.config

    if threading.current_thread() is not threading.main_thread():
        return 1
    cores = dask.config.get("esdl.threads", None) or len(os.sched_getaffinity(0))
    return max(1, min(int(cores), n_items // max(1, min_per_thread)))


def split_over_threads(func: Callable[[int, int], Any], n_items: int, min_per_thread: int = 256) -> None:
    """Call ``func(start, stop)`` on consecutive ranges covering ``range(n_items)``, one range per
    thread (:func:`kernel_threads`); ``func`` must write its results itself (to disjoint places) and
    should spend its time in code that releases the GIL (NumPy, numba ``nogil``).

    >>> out = np.zeros(1000)
    >>> def fill(start, stop):
    ...     out[start:stop] = np.arange(start, stop)
    >>> split_over_threads(fill, 1000, min_per_thread=100)
    >>> bool((out == np.arange(1000)).all())
    True
    """
    n = kernel_threads(n_items, min_per_thread)
    if n == 1:
        func(0, n_items)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n_items, n + 1).astype(int)
    with ThreadPoolExecutor(n) as pool:
        for future in [
            pool.submit(func, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]:
            future.result()


def _check_dims(da: xr.DataArray, dims: Sequence[Hashable], what: str) -> None:
    for d in dims:
        if d not in da.dims:
            raise EsdlError(
                f"{what} {d!r} is not a dimension of the cube; it has: {allowed(map(str, da.dims))}."
                + did_you_mean(str(d), map(str, da.dims))
            )


def _dtype_argument(value: Any) -> np.dtype:
    """``value`` as a NumPy dtype (``np.float32``, ``'float32'`` ...), or a clear error."""
    try:
        return np.dtype(value)
    except (TypeError, ValueError):
        raise EsdlError(
            f"output_dtype must be a NumPy data type, e.g. np.float32 or 'float32'; got {short_repr(value)}."
        ) from None


def _fit_blocks(da: xr.DataArray, core: Sequence[Hashable], max_block_bytes: int) -> xr.DataArray:
    """Put the core dims in one chunk (only if they are split) and keep blocks under a byte budget."""
    if da.chunks is None:
        return da
    chunks = dict(zip(da.dims, da.chunks, strict=True))
    change: dict[Hashable, Any] = {d: -1 for d in core if len(chunks[d]) > 1}
    sizes = {d: (da.sizes[d] if d in core else max(chunks[d])) for d in da.dims}
    loop = [d for d in da.dims if d not in core]
    while math.prod(sizes.values()) * da.dtype.itemsize > max_block_bytes and loop:
        biggest = max(loop, key=lambda d: sizes[d])
        if sizes[biggest] <= 1:
            break
        sizes[biggest] = math.ceil(sizes[biggest] / 2)
        change[biggest] = sizes[biggest]
    return da.chunk(change) if change else da


def map_cube(
    func: Callable[..., np.ndarray],
    cube: Cube,
    input_dims: Sequence[str] = ("time", "variable"),
    output_dims: Sequence[str] = (),
    *,
    variables: Sequence[str] | None = None,
    batched: bool = False,
    output_sizes: Mapping[str, int] | None = None,
    output_coords: Mapping[str, Any] | None = None,
    output_dtype: Any = np.float64,
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
    contiguous: bool = True,
) -> xr.DataArray:
    """Apply ``func`` to the ``input_dims`` block of every other coordinate of ``cube``; lazy on dask.

    - ``cube``: a Dataset (its ``variables``, default all, are stacked into a ``variable`` dimension
      when ``"variable"`` is in ``input_dims``) or a DataArray.
    - ``func(block, **kwargs)``: with ``batched=False`` it gets one pixel's core block of shape
      ``[len(d) for d in input_dims]`` and returns ``[len(d) for d in output_dims]`` (a scalar for no
      output dims). With ``batched=True`` it gets ``(n_pixels, *core)`` and returns
      ``(n_pixels, *out_core)`` -- one call per dask block, so it can vectorise over pixels.
    - ``output_dims`` that are not input dims need ``output_sizes`` (and optionally ``output_coords``).
    - Only the core dims are rechunked (into one chunk, if they are split); blocks whose merged core
      would exceed ``max_block_bytes`` are split along the other dims to keep memory bounded.
    - ``contiguous=False`` (batched only) hands ``func`` the block as it lies in memory (a strided
      view when the cube is time-major) instead of a pixel-major copy, for functions that skip most
      pixels (the ocean) and gather only the ones they need.

    Coordinates of the loop dims and attributes are kept; the result has the loop dims first, then
    ``output_dims``.

    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(24.0).reshape(2, 3, 4), dims=("lat", "lon", "time"), name="x")
    >>> map_cube(lambda ts: ts.max(), da, input_dims=("time",)).values.tolist()
    [[3.0, 7.0, 11.0], [15.0, 19.0, 23.0]]
    >>> map_cube(np.sum, da, input_dims=("depth",))
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: input dimension 'depth' is not a dimension of the cube; it has: 'lat', 'lon', 'time'.
    """
    callable_argument(func, "func")
    cube = cube_argument(cube, "cube")
    input_dims = list(names_argument(input_dims, "input_dims", empty_ok=True))
    output_dims = list(names_argument(output_dims, "output_dims", empty_ok=True))
    batched = flag_argument(batched, "batched")
    contiguous = flag_argument(contiguous, "contiguous")
    max_block_bytes = number_argument(max_block_bytes, "max_block_bytes", low=1, integer=True)
    if variables is not None:
        variables = names_argument(variables, "variables")
    if name is not None:
        name = text_argument(name, "name")
    output_dtype = _dtype_argument(output_dtype)
    for mapping, what in ((output_coords, "output_coords"), (kwargs, "kwargs"), (attrs, "attrs")):
        if mapping is not None and not isinstance(mapping, Mapping):
            raise EsdlError(f"{what} must be a mapping (a dict); got {short_repr(mapping)}.")
    if len(set(input_dims)) != len(input_dims) or len(set(output_dims)) != len(output_dims):
        raise EsdlError(
            f"dimension names must be unique: input_dims={input_dims}, output_dims={output_dims}."
        )
    if isinstance(cube, xr.Dataset) and "variable" not in input_dims:
        names = list(cube.data_vars) if variables is None else list(variables)
        if len(names) != 1:
            raise EsdlError(
                f"a Dataset with {len(names)} variables needs 'variable' in input_dims "
                f"(or pick one variable with variables=[...]); it has: {allowed(cube.data_vars)}."
            )
        da = as_variable_array(cube, names).squeeze("variable", drop=True)
    elif "variable" in input_dims:
        da = as_variable_array(cube, variables)
    else:
        da = as_variable_array(cube, variables) if variables is not None else cube
        if variables is not None:
            da = da.squeeze("variable", drop=True) if da.sizes["variable"] == 1 else da
    _check_dims(da, input_dims, "input dimension")
    output_sizes = sizes_argument({} if output_sizes is None else output_sizes, "output_sizes")
    new_dims = [d for d in output_dims if d not in input_dims]
    for d in new_dims:
        if d not in output_sizes:
            if output_coords and d in output_coords:
                output_sizes[d] = len(output_coords[d])
            else:
                raise EsdlError(
                    f"output dimension {d!r} is new: give its length in output_sizes={{{d!r}: n}}."
                )
        if d in da.dims:
            raise EsdlError(
                f"output dimension {d!r} is already a loop dimension of the cube; pick another name."
            )
    expected_core = [da.sizes[d] if d in input_dims else output_sizes[d] for d in output_dims]
    da = _fit_blocks(da, input_dims, max_block_bytes)
    kw = dict(kwargs or {})
    func_name = getattr(func, "__name__", repr(func))
    n_core = len(input_dims)

    def _apply(block: np.ndarray) -> np.ndarray:
        loop_shape = block.shape[: block.ndim - n_core]
        flat = block.reshape((-1, *block.shape[block.ndim - n_core :]))
        if contiguous or not batched:
            flat = pixel_major(flat)
        if batched:
            out = np.asarray(func(flat, **kw))
        elif flat.shape[0]:
            out = np.stack([np.asarray(func(pixel, **kw)) for pixel in flat])
        else:
            out = np.empty((0, *expected_core))
        if out.shape != (flat.shape[0], *expected_core):
            raise EsdlError(
                f"{func_name} returned shape {out.shape[1:] if batched else out.shape[1:]} per pixel; "
                f"expected {tuple(expected_core)} for output_dims={output_dims}."
            )
        return out.reshape((*loop_shape, *expected_core)).astype(output_dtype, copy=False)

    result = xr.apply_ufunc(
        _apply,
        da,
        input_core_dims=[input_dims],
        output_core_dims=[output_dims],
        exclude_dims=set(),
        dask="parallelized",
        output_dtypes=[output_dtype],
        dask_gufunc_kwargs={"output_sizes": {d: output_sizes[d] for d in new_dims}} if new_dims else {},
        keep_attrs=True,
    )
    if output_coords:
        result = result.assign_coords({d: output_coords[d] for d in output_coords if d in result.dims})
    if name is not None:
        result.name = name
    if attrs is not None:
        result.attrs = dict(attrs)
    return result


# --- seasonal helpers -------------------------------------------------------------------------------


def seasonal_step(time: Any, steps_per_year: int = STEPS_PER_YEAR) -> np.ndarray:
    """Position of each time stamp within its calendar year (0 .. steps_per_year-1) on the ESDC grid.

    The ESDC restarts its 8-daily windows on every 1 January, so the step is ``(day_of_year - 1) // 8``
    (``// 16`` for 23 steps a year). Time stamps that fall on the same step of the same year mean the
    axis is not on that grid: a clear error, not a silent mix-up.

    >>> import pandas as pd
    >>> seasonal_step(pd.to_datetime(["2001-01-05", "2001-01-13", "2001-12-31", "2004-12-30", "2005-01-05"])).tolist()
    [0, 1, 45, 45, 0]
    """
    times = pd.DatetimeIndex(time.values if isinstance(time, xr.DataArray) else time)
    steps_per_year = number_argument(steps_per_year, "steps_per_year", low=1, high=366, integer=True)
    days = math.ceil(365 / steps_per_year)
    steps = np.minimum((times.day_of_year.to_numpy() - 1) // days, steps_per_year - 1)
    key = times.year.to_numpy().astype(np.int64) * steps_per_year + steps
    if len(np.unique(key)) != len(key):
        raise EsdlError(
            f"the time axis is not on a {steps_per_year}-steps-a-year grid (two stamps share a step of the "
            "same year); resample it to the ESDC's 8-daily axis first, or pass steps_per_year."
        )
    return steps.astype(np.int64)


def _year_index(time: Any) -> np.ndarray:
    years = pd.DatetimeIndex(time.values if isinstance(time, xr.DataArray) else time).year.to_numpy()
    return years - years.min()


def seasonal_cycle_numpy(
    x: np.ndarray, steps: np.ndarray, years: np.ndarray, n_steps: int = STEPS_PER_YEAR, how: str = "mean"
) -> np.ndarray:
    """Mean or median seasonal cycle of ``x`` (..., time) -> (..., n_steps), ignoring NaN, vectorised.

    ``steps`` and ``years`` (time,) give each stamp's step within its year and its year index (0 for
    the first year). A step without data is NaN. The mean is a matrix product with a one-hot step
    matrix; the median sorts a (..., years, steps) grid once.

    >>> seasonal_cycle_numpy(np.array([1.0, 5.0, 3.0, np.nan]), np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), 2, "median")
    array([2., 5.])
    """
    x64 = np.asarray(x, dtype=np.float64)
    valid = ~np.isnan(x64)
    if how == "mean":
        onehot = np.zeros((x.shape[-1], n_steps))
        onehot[np.arange(x.shape[-1]), steps] = 1.0
        sums = np.where(valid, x64, 0.0) @ onehot
        counts = valid.astype(np.float64) @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return out.astype(x.dtype, copy=False)
    n_years = int(years.max()) + 1 if years.size else 0
    grid = np.full((*x.shape[:-1], n_years, n_steps), np.nan)
    grid[..., years, steps] = x64
    grid.sort(axis=-2)  # NaN sort last
    n = (~np.isnan(grid)).sum(axis=-2)
    lo = np.take_along_axis(grid, np.maximum((n - 1) // 2, 0)[..., None, :], axis=-2)[..., 0, :]
    hi = np.take_along_axis(grid, np.minimum(n // 2, n_years - 1)[..., None, :], axis=-2)[..., 0, :]
    out = np.where(n > 0, 0.5 * (lo + hi), np.nan)
    return out.astype(x.dtype, copy=False)


def interpolate_gaps(x: np.ndarray) -> np.ndarray:
    """Fill NaN in ``x`` (..., time) by linear interpolation along the last axis, vectorised.

    Leading and trailing gaps take the nearest value (as :func:`numpy.interp` does); an all-NaN series
    stays NaN.

    >>> interpolate_gaps(np.array([[np.nan, 1.0, np.nan, 3.0, np.nan], [np.nan] * 5])).tolist()[0]
    [1.0, 1.0, 2.0, 3.0, 3.0]
    """
    x = np.asarray(x)
    n = x.shape[-1]
    valid = ~np.isnan(x)
    if valid.all() or n == 0:
        return x.copy()
    idx = np.arange(n)
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=-1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(valid, idx, n), axis=-1), axis=-1), axis=-1)
    lo = np.where(prev >= 0, prev, nxt).clip(0, n - 1)
    hi = np.where(nxt < n, nxt, prev).clip(0, n - 1)
    x_lo = np.take_along_axis(x, lo, axis=-1)
    x_hi = np.take_along_axis(x, hi, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(hi != lo, (idx - lo) / np.where(hi != lo, hi - lo, 1), 0.0)
    return np.where(valid, x, x_lo + w * (x_hi - x_lo)).astype(x.dtype, copy=False)


def _apply_over_time(
    func: Callable[[np.ndarray], np.ndarray],
    cube: Cube,
    dim: str,
    out_dim: str | None = None,
    out_size: int | None = None,
    out_coord: Any = None,
) -> Cube:
    """Run a numpy ``func`` (..., time) -> (..., time or out) over every variable that has ``dim``."""
    if isinstance(cube, xr.Dataset):
        out = {}
        for name, var in cube.data_vars.items():
            out[name] = (
                _apply_over_time(func, var, dim, out_dim, out_size, out_coord) if dim in var.dims else var
            )
        result = xr.Dataset(out, attrs=cube.attrs)
        return (
            result.drop_vars(dim) if out_dim and dim in result.coords and dim not in result.dims else result
        )
    if dim not in cube.dims:
        raise EsdlError(f"no {dim!r} dimension in the cube; it has: {allowed(map(str, cube.dims))}.")
    if not np.issubdtype(cube.dtype, np.floating):
        cube = cube.astype(np.float64)
    if cube.chunks is not None and len(cube.chunks[cube.get_axis_num(dim)]) > 1:
        cube = cube.chunk({dim: -1})
    target = out_dim or dim
    result = xr.apply_ufunc(
        func,
        cube,
        input_core_dims=[[dim]],
        output_core_dims=[[target]],
        exclude_dims={dim} if out_dim else set(),
        dask="parallelized",
        output_dtypes=[cube.dtype],
        dask_gufunc_kwargs={"output_sizes": {out_dim: out_size}} if out_dim else {},
        keep_attrs=True,
    )
    if out_dim:
        result = result.assign_coords({out_dim: out_coord})
    return result.transpose(*[target if d == dim else d for d in cube.dims])


def _seasonal_cycle(cube: Cube, how: str, dim: str, steps_per_year: int) -> Cube:
    steps = seasonal_step(cube[dim], steps_per_year)
    years = _year_index(cube[dim])
    return _apply_over_time(
        lambda x: seasonal_cycle_numpy(x, steps, years, steps_per_year, how),
        cube,
        dim,
        out_dim="step",
        out_size=steps_per_year,
        out_coord=np.arange(steps_per_year),
    )


def mean_seasonal_cycle(cube: Cube, dim: str = "time", steps_per_year: int = STEPS_PER_YEAR) -> Cube:
    """Mean over years of each of the ``steps_per_year`` steps (NaN ignored); ``dim`` becomes ``step``.

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.date_range("2001-01-05", periods=46, freq="8D").append(pd.date_range("2002-01-05", periods=46, freq="8D"))
    >>> x = xr.DataArray(np.r_[np.zeros(46), np.full(46, 2.0)], coords={"time": t}, dims="time")
    >>> mean_seasonal_cycle(x).sizes["step"], float(mean_seasonal_cycle(x)[0])
    (46, 1.0)
    """
    return _seasonal_cycle(cube, "mean", dim, steps_per_year)


def median_seasonal_cycle(cube: Cube, dim: str = "time", steps_per_year: int = STEPS_PER_YEAR) -> Cube:
    """Median over years of each step (NaN ignored; the mean of the two middle values for even counts).

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.DatetimeIndex([f"{y}-01-05" for y in (2001, 2002, 2003)])
    >>> x = xr.DataArray([1.0, 10.0, 2.0], coords={"time": t}, dims="time")
    >>> float(median_seasonal_cycle(x)[0])
    2.0
    """
    return _seasonal_cycle(cube, "median", dim, steps_per_year)


def anomalies(
    cube: Cube,
    cycle: Literal["mean", "median"] = "mean",
    dim: str = "time",
    steps_per_year: int = STEPS_PER_YEAR,
) -> Cube:
    """``cube`` minus its mean (or median) seasonal cycle, step by step; same shape as ``cube``.

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.DatetimeIndex([f"{y}-01-05" for y in (2001, 2002, 2003)])
    >>> x = xr.DataArray([1.0, 10.0, 2.0], coords={"time": t}, dims="time")
    >>> anomalies(x, "median").values.tolist()
    [-1.0, 8.0, 0.0]
    """
    if cycle not in ("mean", "median"):
        raise EsdlError(f"cycle={cycle!r} is not allowed; use 'mean' or 'median'.")
    steps = seasonal_step(cube[dim], steps_per_year)
    years = _year_index(cube[dim])

    def _anom(x: np.ndarray) -> np.ndarray:
        msc = seasonal_cycle_numpy(x, steps, years, steps_per_year, cycle)
        return (x - msc[..., steps]).astype(x.dtype, copy=False)

    return _apply_over_time(_anom, cube, dim)


def gap_fill(
    cube: Cube, dim: str = "time", steps_per_year: int = STEPS_PER_YEAR, *, trend: bool = False
) -> Cube:
    """Fill gaps with the mean seasonal cycle, then what is left by linear interpolation in time.

    This is ESDL.jl's ``gapFillMSC``: a gap takes the mean of its step over all years. A series with
    a trend (CO2 rises ~1.3 ppm a year) is then filled with the level of the record's middle years,
    far off at its ends. ``trend=True`` fits each series' least-squares line and the mean seasonal
    cycle around it, and fills a gap with the line plus that cycle plus the anomaly interpolated
    linearly from the observations on either side, so a curved trend is followed too (on the Mauna
    Loa CO2 record: 0.3 ppm mean error on withheld windows instead of 15, tests/test_real_data.py).
    A series with no data at all stays NaN (the ocean in a land variable).

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.DatetimeIndex([f"{y}-01-05" for y in (2001, 2002, 2003)] + ["2003-01-13"])
    >>> x = xr.DataArray([1.0, np.nan, 3.0, np.nan], coords={"time": t}, dims="time")
    >>> gap_fill(x).values.tolist()  # step 0 gets its mean 2.0; step 1 was never seen: interpolated
    [1.0, 2.0, 3.0, 3.0]
    >>> t = pd.DatetimeIndex([f"{y}-01-05" for y in range(2001, 2006)])
    >>> rising = xr.DataArray([1.0, 2.0, 3.0, 4.0, np.nan], coords={"time": t}, dims="time")
    >>> [round(float(gap_fill(rising, trend=k).values[-1]), 2) for k in (False, True)]  # mean, or line
    [2.5, 5.0]
    """
    trend = flag_argument(trend, "trend")
    steps = seasonal_step(cube[dim], steps_per_year)
    years = _year_index(cube[dim])
    when = _decimal_years(cube[dim]) if trend else None
    return _apply_over_time(lambda x: gap_fill_numpy(x, steps, years, steps_per_year, when), cube, dim)


def _decimal_years(time: Any) -> np.ndarray:
    times = pd.DatetimeIndex(time.values if isinstance(time, xr.DataArray) else time)
    return np.asarray((times - times[0]) / pd.Timedelta(days=365.2425), dtype=np.float64)


def _linear_trend(x: np.ndarray, when: np.ndarray) -> np.ndarray:
    """Each series' least-squares line through its valid values, evaluated at ``when`` (..., time)."""
    valid = ~np.isnan(x)
    n = valid.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.where(valid, when, 0.0).sum(axis=-1, keepdims=True) / n
        x_mean = np.where(valid, x, 0.0).sum(axis=-1, keepdims=True) / n
        dt = np.where(valid, when - t_mean, 0.0)
        var = (dt**2).sum(axis=-1, keepdims=True)
        slope = np.where(
            var > 0, (dt * np.where(valid, x - x_mean, 0.0)).sum(axis=-1, keepdims=True) / var, 0.0
        )
    return x_mean + slope * (when - t_mean)


def gap_fill_numpy(
    x: np.ndarray,
    steps: np.ndarray,
    years: np.ndarray | None = None,
    steps_per_year: int = STEPS_PER_YEAR,
    when: np.ndarray | None = None,
) -> np.ndarray:
    """The numpy core of :func:`gap_fill` for ``x`` (..., time) and its ``steps`` (time,); ``when``
    (time,), any unit, fills along each series' linear trend in that time (``gap_fill(trend=True)``).

    >>> gap_fill_numpy(np.array([1.0, np.nan, 3.0, np.nan]), np.array([0, 0, 0, 1]))
    array([1., 2., 3., 3.])
    >>> gap_fill_numpy(np.array([1.0, 2.0, np.nan, 4.0]), np.zeros(4, int), when=np.arange(4.0))
    array([1., 2., 3., 4.])
    """
    if not np.isnan(x).any():
        return np.array(x, copy=True)
    years = np.zeros_like(steps) if years is None else years
    if when is None:
        msc = seasonal_cycle_numpy(x, steps, years, steps_per_year, "mean")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            filled = np.where(np.isnan(x), msc[..., steps], x)
        return interpolate_gaps(filled)
    x64 = np.asarray(x, dtype=np.float64)
    line = _linear_trend(x64, np.asarray(when, dtype=np.float64))
    cycle = seasonal_cycle_numpy(x64 - line, steps, years, steps_per_year, "mean")[..., steps]
    anomaly = interpolate_gaps(x64 - line - cycle)  # a step never observed has no cycle: left to the end
    filled = np.where(np.isnan(x64), line + cycle + anomaly, x64)
    return interpolate_gaps(filled).astype(x.dtype, copy=False)


__all__ = [
    "STEPS_PER_YEAR",
    "anomalies",
    "as_variable_array",
    "gap_fill",
    "gap_fill_numpy",
    "interpolate_gaps",
    "kernel_threads",
    "map_cube",
    "mean_seasonal_cycle",
    "median_seasonal_cycle",
    "pixel_major",
    "seasonal_cycle_numpy",
    "seasonal_step",
    "split_over_threads",
]
