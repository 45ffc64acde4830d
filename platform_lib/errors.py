"""The platform's exceptions: each names what was wrong and what is allowed instead.

>>> from platform_lib.errors import EsdlError, did_you_mean
>>> issubclass(EsdlError, ValueError)
True
>>> did_you_mean("air_temprature_2m", ["air_temperature_2m", "kndvi"])
" Did you mean 'air_temperature_2m'?"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EsdlError(ValueError):
    """Base class of the platform's user-facing errors (a ``ValueError``, so plain code can catch it)."""


class CubeNotFoundError(EsdlError, KeyError):
    """A cube name that is not in any catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CubeNotGeneratedError(EsdlError, FileNotFoundError):
    """A demo cube whose store has not been generated yet."""


class CatalogError(EsdlError):
    """A catalog file or entry that is malformed."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" Did you mean 'x'?"`` suffix for the closest of ``choices``, or ``""`` when none is close.

    >>> did_you_mean("zzz", ["a", "b"])
    ''
    """
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def allowed(choices: Iterable[str]) -> str:
    """``choices`` formatted for a message: ``'a', 'b', 'c'`` (sorted).

    >>> allowed(["b", "a"])
    "'a', 'b'"
    """
    return ", ".join(repr(c) for c in sorted(choices))
