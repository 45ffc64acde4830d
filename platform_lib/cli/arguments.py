"""Argument types every ``esdl`` command shares: each turns a command-line word into a value or refuses
it with one line that says what is allowed.

They are ``type=`` functions for :mod:`argparse`: a bad value raises :class:`argparse.ArgumentTypeError`,
which argparse prints as ``esdl CMD: error: argument --NAME: <message>`` and exits 2, before the
command does anything. They only read (a folder check makes and removes a probe folder); heavy modules
are imported inside the function that needs them, so ``esdl --help`` stays fast.

>>> port("8000"), positive_number("2.5"), whole_number(0, 9)("7")
(8000, 2.5, 7)
>>> port("1e3")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: '1e3' is not a port: use a whole number from 0 to 65535 (0 = any free port)
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from platform_lib.errors import short_repr

__all__ = [
    "chunk_sizes",
    "existing_file",
    "finite_number",
    "http_url",
    "listen_address",
    "port",
    "positive_number",
    "project_spec",
    "text_file",
    "whole_number",
    "writable_folder",
    "year_range",
]

_DIGITS = re.compile(r"[0-9]+")
#: a project's name: a DNS label of at most 40 characters (the rule of ``platform_lib.projects``)
_PROJECT_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
#: the longest value quoted back in a message (a pasted page of junk stays one line)
_QUOTE_CHARS = 60


def quoted(text: str) -> str:
    """``text`` as a message quotes it: ``repr`` (control characters visible), cut to 60 characters.

    >>> quoted("a\\nb"), quoted("x" * 100)[-5:]
    ("'a\\\\nb'", 'xx...')
    """
    return short_repr(text, _QUOTE_CHARS)


def _whole(text: str) -> int | None:
    """The whole number written in plain digits (an optional sign, no ``1e3``, ``0x10``, ``1_000``)."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body[1:] if body[:1] in "+-" else body
    if not _DIGITS.fullmatch(body) or len(body) > 30:
        return None
    return sign * int(body)


def port(text: str) -> int:
    """A TCP port: a whole number from 0 to 65535 (0 = any free port).

    >>> port("0"), port(" 65535 ")
    (0, 65535)
    >>> port("70000")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '70000' is not a port: use a whole number from 0 to 65535 (0 = any free port)
    """
    value = _whole(text)
    if value is None or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not a port: use a whole number from 0 to 65535 (0 = any free port)"
        )
    return value


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """A type for a whole number from ``low`` to ``high`` (both included).

    >>> whole_number(0, 10)("10")
    10
    >>> whole_number(0, 10)("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '-1' is not allowed: use a whole number from 0 to 10
    """

    def parse(text: str) -> int:
        value = _whole(text)
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{quoted(text)} is not allowed: use a whole number from {low} to {high}"
            )
        return value

    parse.__name__ = f"whole number from {low} to {high}"
    return parse


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def finite_number(text: str) -> float:
    """A number (not ``nan`` or ``inf``).

    >>> finite_number("-10.5")
    -10.5
    >>> finite_number("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'nan' is not a number: use a finite number such as -10 or 35.5
    """
    value = _number(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not a number: use a finite number such as -10 or 35.5"
        )
    return value


def add_bbox_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--bbox LON_MIN LAT_MIN LON_MAX LAT_MAX``: four finite numbers, as every command that takes a box
    spells it; ``help_text`` says what the box does in this command.

    >>> p = argparse.ArgumentParser(); add_bbox_option(p, "the region")
    >>> p.parse_args(["--bbox", "-10", "35", "30", "60"]).bbox
    [-10.0, 35.0, 30.0, 60.0]
    """
    parser.add_argument(
        "--bbox",
        nargs=4,
        type=finite_number,
        metavar=("LON_MIN", "LAT_MIN", "LON_MAX", "LAT_MAX"),
        help=f"{help_text} (degrees; LON_MIN > LON_MAX crosses the dateline)",
    )


def positive_number(text: str) -> float:
    """A finite number above 0.

    >>> positive_number("0.25")
    0.25
    >>> positive_number("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '0' is not allowed: use a finite number above 0, such as 0.5, 1 or 5
    """
    value = _number(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not allowed: use a finite number above 0, such as 0.5, 1 or 5"
        )
    return value


def year_range(low: int, high: int) -> Callable[[str], tuple[int, int]]:
    """A type for ``FIRST-LAST`` (or one year ``YEAR``) with ``low <= FIRST <= LAST <= high``.

    >>> years = year_range(1979, 2030)
    >>> years("2001-2021"), years("2003")
    ((2001, 2021), (2003, 2003))
    >>> years("2020-2001")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: years '2020-2001' are not allowed: use FIRST-LAST (or one year) within 1979-2030, FIRST <= LAST, e.g. 2001-2021 or 2003
    """

    def parse(text: str) -> tuple[int, int]:
        first_text, sep, last_text = text.strip().partition("-")
        first = _whole(first_text) if first_text.strip() else None
        last = _whole(last_text) if sep else first
        if first is None or last is None or not low <= first <= last <= high:
            raise argparse.ArgumentTypeError(
                f"years {quoted(text)} are not allowed: use FIRST-LAST (or one year) within {low}-{high},"
                " FIRST <= LAST, e.g. 2001-2021 or 2003"
            )
        return first, last

    parse.__name__ = "years"
    return parse


def _path(text: str, what: str) -> Path:
    """``text`` as a path (as given: ``~`` is the shell's to expand), or an error for an empty one."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty {what} is not allowed: name a {what}")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"{quoted(text)}: a {what} cannot contain a NUL character")
    return Path(text)


def _unreadable(text: str, exc: OSError) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{_shown(text)} cannot be read ({exc.strerror}): name a readable file")


def existing_file(text: str) -> Path:
    """A file that exists and can be read (not a folder).

    >>> existing_file(__file__).name
    'arguments.py'
    >>> existing_file("/")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '/' is a folder: name a file
    """
    path = _path(text, "file")
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{_shown(text)} is a folder: name a file")
        if not path.is_file():
            raise argparse.ArgumentTypeError(
                f"{_shown(text)} does not exist or is not a regular file: name a file"
            )
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _unreadable(text, exc) from None
    return path


def text_file(text: str) -> Path:
    """A readable file of UTF-8 text (a catalog, a values file, a spec): not a folder, not binary.

    >>> text_file(__file__).suffix
    '.py'
    >>> import tempfile
    >>> blob = Path(tempfile.mkdtemp(), "blob.yaml")
    >>> _ = blob.write_bytes(bytes(range(256)))
    >>> text_file(str(blob))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '.../blob.yaml' is not a text file (UTF-8 expected, byte 0x80 at 128 is not): name a text file
    """
    import codecs

    path = existing_file(text)
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
                done += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{_shown(text)} is not a text file (UTF-8 expected, byte 0x{exc.object[exc.start]:02x} at"
            f" {done + exc.start} is not): name a text file"
        ) from None
    except OSError as exc:
        raise _unreadable(text, exc) from None
    return path


def project_spec(text: str) -> str:
    """A project: its name (``projects/<name>.yaml``) or the path of a spec file, which must be a readable
    text file. The spec itself is checked when the command loads it.

    >>> project_spec("demo"), project_spec("projects/demo.yaml")
    ('demo', 'projects/demo.yaml')
    >>> project_spec("Demo!")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'Demo!' is not a project name (lower-case letters, digits and '-', starting with a letter, at most 40 characters) nor a spec file (.yaml)
    """
    try:
        is_file = "\x00" not in text and Path(text).is_file()
    except OSError:  # a name too long for the file system: not a file
        is_file = False
    if os.sep in text or text.endswith((".yaml", ".yml")) or is_file:
        text_file(text)
        return text
    if not _PROJECT_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not a project name (lower-case letters, digits and '-', starting with a letter,"
            " at most 40 characters) nor a spec file (.yaml)"
        )
    return text


def writable_folder(text: str) -> Path:
    """A folder this command may write into: it exists and is writable, or it can be made (the nearest
    existing folder above it is writable). Nothing is left behind: the check makes a probe folder in the
    nearest existing folder and removes it again, so read-only places, virtual file systems (``/proc``,
    ``/sys``) and paths through a file are refused whoever runs the command.

    >>> import tempfile
    >>> here = tempfile.mkdtemp()
    >>> writable_folder(here + "/new/deeper") == Path(here, "new", "deeper"), os.listdir(here)
    (True, [])
    >>> writable_folder(__file__)
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '.../arguments.py' is a file: name a folder
    """
    import tempfile

    path = _path(text, "folder")
    try:
        absolute = Path(os.path.abspath(path))
        existing = absolute
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing == absolute and not absolute.is_dir():
            raise argparse.ArgumentTypeError(f"{_shown(text)} is a file: name a folder")
        if not existing.is_dir():
            raise argparse.ArgumentTypeError(
                f"{_shown(text)}: {existing} is a file, so no folder can be made there: name a folder"
            )
        os.rmdir(tempfile.mkdtemp(prefix=".esdl-probe-", dir=existing))
    except OSError as exc:
        where = "in it" if existing == absolute else f"in {existing}"
        raise argparse.ArgumentTypeError(
            f"{_shown(text)}: cannot write {where} ({exc.strerror}): name a folder you can write to"
        ) from None
    return path


def _shown(text: str) -> str:
    """A path in a message: quoted, and a long one shortened in the middle so its end stays visible."""
    return quoted(text) if len(text) <= _QUOTE_CHARS else f"'...{text[-_QUOTE_CHARS:]!s}'"


def listen_address(text: str) -> str:
    """An IPv4 address of this machine to listen on (``127.0.0.1``: this machine only; ``0.0.0.0``: every
    interface).

    >>> listen_address("127.0.0.1"), listen_address("0.0.0.0")
    ('127.0.0.1', '0.0.0.0')
    >>> listen_address("999.1.1.1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '999.1.1.1' is not an IPv4 address: use 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or an address of this machine
    """
    from platform_lib.local.layout import listen_address_problem

    problem = listen_address_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text.strip()


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` address with a host.

    >>> http_url("https://hub.example.org/")
    'https://hub.example.org/'
    >>> http_url("hub.example.org")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'hub.example.org' is not an address: use http://HOST[:PORT] or https://HOST[:PORT]
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and text.isprintable()
        _ = parts.port  # a port out of range raises ValueError
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not an address: use http://HOST[:PORT] or https://HOST[:PORT]"
        )
    return text.strip()


def chunk_sizes(text: str) -> dict[str, int]:
    """``dim=size`` pairs separated by commas, each size a whole number above 0.

    >>> chunk_sizes("time=46,lat=64")
    {'time': 46, 'lat': 64}
    >>> chunk_sizes("time=0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'time=0' is not allowed: use dim=size pairs separated by commas, each size a whole number above 0, e.g. time=46,lat=64
    """
    out: dict[str, int] = {}
    for part in text.split(","):
        dim, sep, size = part.partition("=")
        value = _whole(size) if sep else None
        if (
            not dim.strip()
            or not dim.strip().isprintable()
            or value is None
            or value < 1
            or dim.strip() in out
        ):
            raise argparse.ArgumentTypeError(
                f"{quoted(text)} is not allowed: use dim=size pairs separated by commas, each size a whole number"
                " above 0, e.g. time=46,lat=64"
            )
        out[dim.strip()] = value
    return out
