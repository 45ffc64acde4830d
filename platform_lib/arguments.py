"""Checks of the library's call arguments: each returns the value in its normal form or raises
:class:`~platform_lib.errors.EsdlError` naming the argument, what it got and what is allowed.

The public calls (``open_cube``, ``intrinsic_dimension``, ``TrainingSet`` ...) run them first, so a
number where a name belongs, a time-zone-aware date or a folder where a catalog file belongs is one
clear line, not a ``TypeError`` from deep inside pandas or zarr. (The ``esdl`` command's argparse
types are in :mod:`platform_lib.cli.arguments`.)

>>> names_argument("kndvi", "variables")
('kndvi',)
>>> number_argument(float("nan"), "explained_variance", low=0, high=1)
Traceback (most recent call last):
...
platform_lib.errors.EsdlError: explained_variance must be a number within 0..1; got nan.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from platform_lib.errors import DatelineWarning, EsdlError, allowed, short_repr

#: what a date in a time range may be (numbers are refused: ``2001`` is not a date but 2001 ns after 1970)
DATE_EXAMPLE = "('2003-06-01', '2003-08-31')"


def _got(value: object) -> str:
    return f"got {short_repr(value)}" + ("" if _is_plain(value) else f" ({type(value).__name__})")


def _is_plain(value: object) -> bool:
    return value is None or type(value) in (str, int, float, bool, list, tuple, dict)


def text_argument(value: object, what: str, *, choices: Iterable[str] | None = None) -> str:
    """``value`` if it is a non-empty string (one of ``choices`` when given).

    >>> text_argument("mean", "ensemble", choices=["mean", "max"])
    'mean'
    >>> text_argument(3, "name")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: name must be a non-empty string; got 3.
    """
    options = None if choices is None else list(choices)
    if not isinstance(value, str) or not value or (options is not None and value not in options):
        wanted = "a non-empty string" if options is None else f"one of {allowed(options)}"
        raise EsdlError(f"{what} must be {wanted}; {_got(value)}.")
    return value


def names_argument(value: object, what: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    """A name or a list of names as a tuple of non-empty strings (``empty_ok``: an empty list is fine).

    >>> names_argument(["a", "b"], "variables")
    ('a', 'b')
    >>> names_argument([1], "variables")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: variables must be a name or a list of names (strings); got [1].
    """
    if isinstance(value, str):
        names: tuple[Any, ...] = (value,)
    elif isinstance(value, list | tuple) or _is_array_of_strings(value):
        names = tuple(value)  # type: ignore[arg-type]
    else:
        names = (None,)  # refused below
    if not all(isinstance(n, str) and n for n in names):
        raise EsdlError(f"{what} must be a name or a list of names (strings); {_got(value)}.")
    if not names and not empty_ok:
        raise EsdlError(f"{what} is an empty list: give at least one name.")
    return tuple(str(n) for n in names)


def _is_array_of_strings(value: object) -> bool:
    import numpy as np

    return isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind == "U"


def flag_argument(value: object, what: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (a NumPy boolean too).

    >>> flag_argument(False, "quantiles")
    False
    >>> flag_argument("no", "quantiles")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: quantiles must be True or False; got 'no'.
    """
    import numpy as np

    if not isinstance(value, bool | np.bool_):
        raise EsdlError(f"{what} must be True or False; {_got(value)}.")
    return bool(value)


def number_argument(
    value: object,
    what: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """``value`` as a finite ``float`` (``int`` with ``integer``) within ``low``..``high`` (``low_open``,
    ``high_open``: the bound itself excluded). A boolean is not a number.

    >>> number_argument(0.5, "quantile", low=0, high=1, low_open=True, high_open=True)
    0.5
    >>> number_argument(0, "min_size", low=1, integer=True)
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: min_size must be a whole number of at least 1; got 0.
    """
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    ok = ok and not (hasattr(value, "dtype") and getattr(value, "ndim", 0) != 0)  # a 0-d value, not an array
    number = (int(value) if integer else float(value)) if ok else math.nan  # type: ignore[call-overload]
    ok = ok and math.isfinite(number)
    ok = ok and (low is None or (number > low if low_open else number >= low))
    ok = ok and (high is None or (number < high if high_open else number <= high))
    if not ok:
        raise EsdlError(
            f"{what} must be {_number_range(low, high, low_open, high_open, integer)}; {_got(value)}."
        )
    return number


def _number_range(
    low: float | None, high: float | None, low_open: bool, high_open: bool, integer: bool
) -> str:
    kind = "a whole number" if integer else "a number"
    if low is not None and high is not None:
        if not (low_open or high_open):
            return f"{kind} within {low:g}..{high:g}"
        return f"{kind} {'above' if low_open else 'from'} {low:g} and {'below' if high_open else 'up to'} {high:g}"
    if low is not None:
        return f"{kind} {'above' if low_open else 'of at least'} {low:g}"
    if high is not None:
        return f"{kind} {'below' if high_open else 'of at most'} {high:g}"
    return f"a finite {kind.removeprefix('a ')}"


def path_argument(value: object, what: str) -> Path:
    """``value`` as a ``Path`` if it is a non-empty string or path without NUL characters.

    >>> path_argument("cubes/a.zarr", "store")
    PosixPath('cubes/a.zarr')
    >>> path_argument(None, "store")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: store must be a path (a string or pathlib.Path); got None.
    """
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str) or not text or "\0" in text:
        raise EsdlError(f"{what} must be a path (a string or pathlib.Path); {_got(value)}.")
    return Path(text)


def file_argument(value: object, what: str) -> Path:
    """:func:`path_argument`, and not an existing folder (a file that does not exist yet is fine).

    >>> file_argument("/", "catalog")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: catalog must be a file; / is a folder.
    """
    path = path_argument(value, what)
    if path.is_dir():
        raise EsdlError(f"{what} must be a file; {path} is a folder.")
    return path


def catalog_argument(value: object, what: str = "catalog") -> list[Path] | None:
    """``None`` (the configured catalogs), one catalog file or a list of them, as paths.

    >>> catalog_argument(["a.yaml", "b.yaml"])
    [PosixPath('a.yaml'), PosixPath('b.yaml')]
    >>> catalog_argument(3)
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: catalog must be a catalog file's path or a list of them; got 3.
    """
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        return [file_argument(value, what)]
    if isinstance(value, list | tuple) and all(isinstance(v, str | os.PathLike) for v in value):
        return [file_argument(v, what) for v in value]
    raise EsdlError(f"{what} must be a catalog file's path or a list of them; {_got(value)}.")


def date_argument(value: object, what: str) -> Any:
    """``value`` as a time-zone-naive ``pandas.Timestamp`` (UTC, the cubes' time axis): a date string, a
    ``datetime``/``date``, a ``numpy.datetime64`` or a ``Timestamp``; an aware one is converted to UTC.

    >>> date_argument("2003-06-01", "time_range[0]")
    Timestamp('2003-06-01 00:00:00')
    >>> date_argument(dt.datetime(2003, 6, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))), "start")
    Timestamp('2003-06-01 00:00:00')
    >>> date_argument(2003, "time_range[0]")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: time_range[0] must be a date, e.g. '2003-06-01'; got 2003 (a number is not a date: write '2003-01-01').
    """
    import numpy as np
    import pandas as pd

    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        year = (
            f"'{int(value)}-01-01'"
            if isinstance(value, numbers.Integral) and 0 < int(value) < 10000
            else "a date string"
        )
        raise EsdlError(
            f"{what} must be a date, e.g. '2003-06-01'; got {short_repr(value)} (a number is not a date: write {year})."
        )
    stamp = None
    if isinstance(value, str | dt.date | np.datetime64 | pd.Timestamp) and value is not pd.NaT:
        try:
            stamp = pd.Timestamp(value)  # type: ignore[arg-type]
        except (ValueError, TypeError, OverflowError):
            stamp = None
    if stamp is None or stamp is pd.NaT:
        raise EsdlError(f"{what} must be a date, e.g. '2003-06-01'; {_got(value)}.")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def time_range_argument(value: object, what: str = "time_range") -> tuple[Any, Any]:
    """``(start, end)`` as two naive ``Timestamp`` s (see :func:`date_argument`), start not after end.

    >>> time_range_argument(("2003-06-01", "2003-08-31"))
    (Timestamp('2003-06-01 00:00:00'), Timestamp('2003-08-31 00:00:00'))
    >>> time_range_argument("2003")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: time_range must be (start, end), e.g. ('2003-06-01', '2003-08-31'); got '2003'.
    """
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise EsdlError(f"{what} must be (start, end), e.g. {DATE_EXAMPLE}; {_got(value)}.")
    start, end = (date_argument(v, f"{what}[{i}]") for i, v in enumerate(value))
    if start > end:
        raise EsdlError(f"{what} starts ({start.date()}) after it ends ({end.date()}); give (start, end).")
    return start, end


def sizes_argument(value: object, what: str, *, empty_ok: bool = True) -> dict[str, int]:
    """A mapping of dimension name to a positive whole number, e.g. ``{'time': 8}``.

    >>> sizes_argument({"time": 8}, "patch")
    {'time': 8}
    >>> sizes_argument({"time": 0}, "patch")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: patch['time'] must be a whole number of at least 1; got 0.
    """
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise EsdlError(
            f"{what} must be a mapping of dimension name to size, e.g. {{'time': 8}}; {_got(value)}."
        )
    if not value and not empty_ok:
        raise EsdlError(f"{what} is empty: give at least one dimension's size, e.g. {{'time': 8}}.")
    return {k: number_argument(v, f"{what}[{k!r}]", low=1, integer=True) for k, v in value.items()}


def callable_argument(value: object, what: str) -> Callable[..., Any]:
    """``value`` if it can be called.

    >>> callable_argument(len, "func") is len
    True
    >>> callable_argument("mean", "func")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: func must be a function; got 'mean'.
    """
    if not callable(value):
        raise EsdlError(f"{what} must be a function; {_got(value)}.")
    return value


def cube_argument(value: object, what: str, *, arrays: bool = True) -> Any:
    """``value`` if it is an ``xarray.Dataset`` (or, with ``arrays``, a ``DataArray``).

    >>> import xarray as xr
    >>> cube_argument(xr.Dataset(), "cube")
    <xarray.Dataset> Size: 0B
    Dimensions:  ()
    Data variables:
        *empty*
    >>> cube_argument("esdc-demo-ts", "scores")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: scores must be an xarray Dataset or DataArray; got 'esdc-demo-ts'.
    """
    import xarray as xr

    kinds = (xr.Dataset, xr.DataArray) if arrays else (xr.Dataset,)
    if not isinstance(value, kinds):
        wanted = "an xarray Dataset or DataArray" if arrays else "an xarray Dataset"
        raise EsdlError(f"{what} must be {wanted}; {_got(value)}.")
    return value


def bbox_argument(value: object, what: str = "bbox") -> tuple[float, float, float, float]:
    """``(lon_min, lat_min, lon_max, lat_max)`` in degrees: lat within -90..90 (``lat_min <= lat_max``),
    lon within -180..360 (``lon_min > lon_max`` crosses the dateline).

    >>> bbox_argument([-10, 35, 30, 60])
    (-10.0, 35.0, 30.0, 60.0)
    >>> bbox_argument((0, 60, 10, 50))
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: bbox (0, 60, 10, 50) has lat_min 60 > lat_max 50; the order is (lon_min, lat_min, lon_max, lat_max).

    ``lon_min > lon_max`` over more than 180 degrees of longitude warns (:class:`DatelineWarning`): most
    likely the longitudes are swapped.
    """
    import numpy as np

    four = isinstance(value, list | tuple | np.ndarray) and len(value) == 4
    if not four or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        for v in value  # type: ignore[union-attr]
    ):
        raise EsdlError(
            f"{what} must be four numbers (lon_min, lat_min, lon_max, lat_max) in degrees; {_got(value)}."
        )
    lon_min, lat_min, lon_max, lat_max = (float(v) for v in value)  # type: ignore[union-attr]
    shown = tuple(value)  # type: ignore[arg-type]
    if not (
        -90 <= lat_min <= 90 and -90 <= lat_max <= 90 and -180 <= lon_min <= 360 and -180 <= lon_max <= 360
    ):
        raise EsdlError(
            f"{what} {shown} is not (lon_min, lat_min, lon_max, lat_max) in degrees:"
            " lat within -90..90, lon within -180..360."
        )
    if lat_min > lat_max:
        raise EsdlError(
            f"{what} {shown} has lat_min {lat_min:g} > lat_max {lat_max:g};"
            " the order is (lon_min, lat_min, lon_max, lat_max)."
        )
    span = lon_max + 360.0 - lon_min
    if lon_min > lon_max and span > 180.0:
        warnings.warn(
            DatelineWarning(
                f"{what} {shown} has lon_min {lon_min:g} > lon_max {lon_max:g}, so it crosses the dateline and"
                f" spans {span:g} degrees of longitude; if you meant lon {lon_max:g}..{lon_min:g}, write"
                f" ({lon_max:g}, {lat_min:g}, {lon_min:g}, {lat_max:g})."
            ),
            stacklevel=3,
        )
    return lon_min, lat_min, lon_max, lat_max
