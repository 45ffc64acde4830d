"""The ``esdl`` command: thin argument parsing that calls the library, nothing more.

Each command group lives in its own module under ``platform_lib.cli`` and exposes
``register(subparsers)``, which adds its sub-parser and sets ``func`` (called with the parsed
arguments; it returns the process exit code). Add a group by adding its module name to
``COMMAND_GROUPS``.

>>> from platform_lib.cli import build_parser
>>> build_parser().prog
'esdl'
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from platform_lib.errors import CatalogWarning, DatelineWarning, EsdlError

_python_show_warning = warnings.showwarning

# module names under platform_lib.cli, in the order they appear in --help
COMMAND_GROUPS: list[str] = ["cubes", "catalog", "project", "platform", "share", "rechunk", "challenge"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="esdl",
        description="Earth System Data Lab platform: cubes, catalog, projects and the embedded platform.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_GROUPS:
        importlib.import_module(f"platform_lib.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``esdl`` console script; returns the exit code.

    Bad arguments are refused by the parser (``esdl CMD: error: argument --NAME: ...``, exit 2; the shared
    types are in :mod:`platform_lib.cli.arguments`). Platform errors (:class:`~platform_lib.errors.EsdlError`)
    print one clear line to stderr and exit 2, and so does a path the system refuses (an ``OSError``: too
    long, not permitted, not a folder), named with the system's reason instead of a traceback.

    >>> main(["cubes", "describe", "no-such-cube"])  # the error goes to stderr
    2
    """
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except EsdlError as exc:
        print(f"esdl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"esdl: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("esdl: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """The platform's own warnings as one line (``esdl: warning: ...``); others as Python shows them."""
    if issubclass(category, CatalogWarning | DatelineWarning):
        print(f"esdl: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def os_error_text(exc: OSError) -> str:
    """One line for an ``OSError``: the path (its end, when long) and the system's reason.

    >>> os_error_text(OSError(36, "File name too long", "x" * 300))
    "'...xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': File name too long"
    """
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    name = os.fsdecode(exc.filename)
    shown = repr(name) if len(name) <= 60 else repr("..." + name[-60:])
    return f"{shown}: {reason}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
