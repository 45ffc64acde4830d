"""Strict YAML: the one reader of project specs and catalog files.

:func:`load_yaml` reads YAML as PyYAML's safe loader does (libyaml's ``CSafeLoader`` when it is there:
about ten times faster), and refuses what the safe loader lets through silently:

- a key given twice in one mapping (YAML keeps only the last one): the message names the key and both lines;
- a file that is not UTF-8: the message names the byte offset (and its line);
- an alias that contains itself (``&a [*a]``), which would build an endless structure.

Every problem is a :class:`YamlError` (an :class:`~platform_lib.errors.EsdlError`) naming the source and
the place; callers turn it into their own error (a spec's or a catalog's). Deploy code keeps its own
loading of chart files (upstream charts are not ours to be strict about).

>>> load_yaml("a: 1\\nb: [x, y]\\n")
{'a': 1, 'b': ['x', 'y']}
>>> load_yaml("a: 1\\nb: 2\\na: 3\\n", "t.yaml")
Traceback (most recent call last):
...
platform_lib.strict_yaml.YamlError: t.yaml: line 3: key 'a' is given twice (lines 1 and 3); YAML would keep only the last one: write each key once
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from platform_lib.errors import EsdlError

__all__ = ["StrictLoader", "YamlError", "load_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


class YamlError(EsdlError):
    """YAML that cannot be read strictly; ``source`` names the file, ``problem`` says where and what.

    >>> err = YamlError("c.yaml", "line 2, column 1: not valid YAML (...)")
    >>> str(err), err.problem
    ('c.yaml: line 2, column 1: not valid YAML (...)', 'line 2, column 1: not valid YAML (...)')
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class _DuplicateKeyError(yaml.MarkedYAMLError):
    """A key given twice in one mapping (raised while constructing; reported as a :class:`YamlError`)."""


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when installed) that refuses repeated keys and self-containing aliases.

    >>> yaml.load("{a: 1, b: 2}", Loader=StrictLoader)
    {'a': 1, 'b': 2}
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        # build every node completely before its parent: an alias inside its own anchor is then an error
        # ("found unconstructable recursive node") instead of an endless list
        self.deep_construct = True

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """As the safe loader, after refusing a key given twice (merged ``<<`` keys may be overridden)."""
        texts = {k.value for k, _ in node.value if k.tag == _STR_TAG}
        if len(texts) == len(node.value):  # only string keys, all different: the common case, kept fast
            return super().construct_mapping(node, deep=deep)
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # a complex key: PyYAML refuses unhashable ones itself
            key = self.construct_object(key_node)  # as YAML reads it: 1 and 1.0 are one key
            try:
                seen = first.setdefault(key, key_node)
            except TypeError:
                continue
            if seen is not key_node:
                line, again = seen.start_mark.line + 1, key_node.start_mark.line + 1
                name = repr(seen.value) + (
                    "" if seen.value == key_node.value else f" (as {key_node.value!r})"
                )
                raise _DuplicateKeyError(
                    problem=f"key {name} is given twice (lines {line} and {again}); YAML would keep only the"
                    " last one: write each key once",
                    problem_mark=key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _problem(exc: yaml.YAMLError) -> str:
    """Where and what, on one line (PyYAML's own text spans several, with a copy of the line)."""
    if isinstance(exc, _DuplicateKeyError):
        return f"line {exc.problem_mark.line + 1}: {exc.problem}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        return f"{where}not valid YAML ({what})"
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return f"position {exc.position}: not valid YAML ({exc.reason}: {char!r})"
    return f"not valid YAML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as text, or a :class:`YamlError` naming the first byte that is not UTF-8.

    >>> decode_utf8("é".encode(), "x.yaml")
    'é'
    >>> decode_utf8(b"a: 1\\nb: caf\\xe9\\n", "x.yaml")
    Traceback (most recent call last):
    ...
    platform_lib.strict_yaml.YamlError: x.yaml: byte 11 (line 2) is not UTF-8 (0xe9); save the file as UTF-8
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlError(
            source,
            f"byte {exc.start} (line {line}) is not UTF-8 (0x{data[exc.start]:02x}); save the file as UTF-8",
        ) from None


def load_yaml(source: str | bytes | os.PathLike[str], what: str | None = None) -> Any:
    """Parse one YAML document strictly: a path (``Path``) is read, ``str``/``bytes`` are the text.

    ``what`` names the source in messages (default: the path, or ``<text>``). A missing file raises
    ``FileNotFoundError`` (each caller says where files are looked for); every other problem is a
    :class:`YamlError`.

    >>> load_yaml(b"x: .inf\\n")
    {'x': inf}
    >>> load_yaml("a: &x [*x]\\n", "t.yaml")
    Traceback (most recent call last):
    ...
    platform_lib.strict_yaml.YamlError: t.yaml: line 1, column 4: not valid YAML (found unconstructable recursive node)
    """
    if isinstance(source, os.PathLike):
        path = Path(source)
        what = what or str(path)
        try:
            data: str | bytes = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise YamlError(what, f"cannot be read ({exc.strerror or exc})") from None
    else:
        data, what = source, what or "<text>"
    text = decode_utf8(data, what) if isinstance(data, bytes) else data
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 -- StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise YamlError(what, _problem(exc)) from None
