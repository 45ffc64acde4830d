"""The platform's exceptions: each names what was wrong and what is allowed instead.

>>> from platform_lib.errors import EsdlError, did_you_mean
>>> issubclass(EsdlError, ValueError)
True
>>> did_you_mean("air_temprature_2m", ["air_temperature_2m", "kndvi"])
" Did you mean 'air_temperature_2m'?"
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from types import ModuleType


class EsdlError(ValueError):
    """Base class of the platform's user-facing errors (a ``ValueError``, so plain code can catch it)."""


class CubeNotFoundError(EsdlError, KeyError):
    """A cube name that is not in any catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CubeNotGeneratedError(EsdlError, FileNotFoundError):
    """A demo cube whose store has not been generated yet."""


class CubeUnreachableError(EsdlError, ConnectionError):
    """A remote cube whose endpoint cannot be reached (no network, or the server is down)."""


class CatalogError(EsdlError):
    """A catalog file or entry that is malformed."""


class CatalogWarning(UserWarning):
    """A catalog entry (or a whole team catalog) that was skipped; the others stay usable."""


class DatelineWarning(UserWarning):
    """A bbox that crosses the dateline over more than half the globe: most likely its longitudes are swapped."""


class MissingExtraError(EsdlError, ImportError):
    """An optional dependency (one of esdl-platform's extras) that is not installed."""


def import_extra(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` from an optional extra, or raise :class:`MissingExtraError` naming the extra.

    >>> import_extra("json", "viz").__name__
    'json'
    >>> import_extra("no_such_module_xyz", "viz", "the 3-D view")
    Traceback (most recent call last):
    ...
    platform_lib.errors.MissingExtraError: the 3-D view needs 'no_such_module_xyz', which is not installed: pip install 'esdl-platform[viz]'.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        if getattr(exc, "name", None) not in (None, module, root):
            raise  # the module exists but one of *its* imports failed: show the real error
        what = purpose or f"this feature of the {extra!r} extra"
        raise MissingExtraError(
            f"{what} needs {root!r}, which is not installed: pip install 'esdl-platform[{extra}]'."
        ) from None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" Did you mean 'x'?"`` suffix for the closest of ``choices``, or ``""`` when none is close.

    >>> did_you_mean("zzz", ["a", "b"])
    ''
    """
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message names a bad value, it does not dump it.

    >>> short_repr([1, 2])
    '[1, 2]'
    >>> short_repr(10**80)
    '100000000000000000000000000000000000000000000000000000000...'
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def allowed(choices: Iterable[str]) -> str:
    """``choices`` formatted for a message: ``'a', 'b', 'c'`` (sorted).

    >>> allowed(["b", "a"])
    "'a', 'b'"
    """
    return ", ".join(repr(c) for c in sorted(choices))
