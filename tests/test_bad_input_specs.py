"""Every bad input a clear error (issue 15): project specs and catalogs are read strictly.

Two kinds of test: one example for each kind of bad input (each of them passed silently, or failed
with a traceback, before YAML was read strictly), and properties over generated inputs: mutations of
the shipped ``projects/demo.yaml`` and ``catalog/esdl.yaml`` (a field's value replaced by any YAML
value, a field deleted, a key written twice, bytes that are not UTF-8). The property: the file is read,
or an :class:`~platform_lib.errors.EsdlError` of a few lines names the field or key; never another
exception, never a value converted behind the reader's back, never a file written by reading.
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from platform_lib.catalog import (
    list_cubes,
    malformed_entries,
    read_catalog,
    read_catalog_document,
    validate_catalog,
)
from platform_lib.errors import CatalogError, CatalogWarning
from platform_lib.paths import repo_root
from platform_lib.projects import ProjectSpecError, load_project
from platform_lib.team import list_team_cubes

DEMO_TEXT = (repo_root() / "projects" / "demo.yaml").read_text()
DEMO = yaml.safe_load(DEMO_TEXT)
SHIPPED_CATALOG = repo_root() / "catalog" / "esdl.yaml"
CATALOG_TEXT = SHIPPED_CATALOG.read_text()
CATALOG = yaml.safe_load(CATALOG_TEXT)
#: an error says what was wrong and what is allowed in a few lines, not in a page
MAX_LINES = 12
DELETED = object()


# --- helpers ------------------------------------------------------------------------------------------


def files_under(*folders: Path) -> dict[Path, tuple[int, int]]:
    """Every file under ``folders`` with its modification time and size: what reading must not change."""
    return {
        p: (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in folders
        for p in folder.rglob("*")
        if p.is_file()
    }


def mutate(data: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of ``data`` with the node at ``path`` replaced by ``value`` (or deleted: ``DELETED``);
    missing mappings on the way are added."""
    out = copy.deepcopy(data)
    parent = out
    for part in path[:-1]:
        parent = parent.setdefault(part, {}) if isinstance(parent, dict) else parent[part]
    if value is DELETED:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def node_paths(node: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """The path of every node below ``node`` (mapping keys and list indices)."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [p for k, v in children for p in [(*loc, k), *node_paths(v, (*loc, k))]]


def dotted(path: tuple[str | int, ...]) -> str:
    """``("profiles", 0, "cpu")`` -> ``profiles[0].cpu``, as the spec's messages name fields."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@pytest.fixture()
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def spec_error(folder: Path, content: str | bytes) -> str:
    """The message of the error that loading ``content`` as ``demo.yaml`` raises."""
    path = folder / "demo.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ProjectSpecError) as info:
        load_project(path)
    return str(info.value)


def demo_with(path: tuple[str | int, ...], value: Any) -> str:
    return yaml.safe_dump(mutate(DEMO, path, value), sort_keys=False)


def line_of(text: str, needle: str, start: int = 0) -> int:
    """The 1-based line of the first ``needle`` at or after character ``start``."""
    return text.count("\n", 0, text.index(needle, start)) + 1


# --- examples: YAML itself ----------------------------------------------------------------------------


def test_a_key_given_twice_in_a_spec_is_refused_naming_the_key_and_both_lines(folder):
    text = DEMO_TEXT + "title: Another title\n"
    first, again = line_of(text, "title:"), line_of(text, "title: Another")
    message = spec_error(folder, text)
    assert f"line {again}: key 'title' is given twice (lines {first} and {again})" in message
    assert "write each key once" in message
    # nested: a profile with two cpu: lines
    text = DEMO_TEXT.replace("    cpu: 2\n", "    cpu: 2\n    cpu: 16\n")
    cpu, again = line_of(text, "cpu: 2"), line_of(text, "cpu: 16")
    assert f"key 'cpu' is given twice (lines {cpu} and {again})" in spec_error(folder, text)


def test_a_spec_that_is_not_utf8_names_the_byte(folder):
    data = DEMO_TEXT.replace("title: ESDL demo project", "title: ESDL d\xe9mo project").encode("latin-1")
    offset = data.index(b"\xe9")
    message = spec_error(folder, data)
    assert f"demo.yaml: byte {offset} (line 4) is not UTF-8 (0xe9); save the file as UTF-8" in message
    assert "Traceback" not in message and len(message.splitlines()) == 2


def test_an_alias_inside_itself_is_refused(folder):
    message = spec_error(folder, DEMO_TEXT.replace("members:\n  - bob\n  - carol\n", "members: &m [*m]\n"))
    assert "found unconstructable recursive node" in message and "line " in message


def test_a_catalog_with_a_key_given_twice_or_not_utf8_is_a_clear_catalog_error(folder):
    entry = CATALOG_TEXT.index("  esdc-demo-ts:\n")
    text = CATALOG_TEXT + CATALOG_TEXT[entry : CATALOG_TEXT.index("  esdc-demo-map:\n")]
    first, again = line_of(text, "  esdc-demo-ts:"), line_of(text, "  esdc-demo-ts:", entry + 5)
    path = folder / "c.yaml"
    path.write_text(text)
    with pytest.raises(
        CatalogError, match=rf"key 'esdc-demo-ts' is given twice \(lines {first} and {again}\)"
    ):
        read_catalog_document(path)
    assert len(validate_catalog(path)) == 1 and "given twice" in validate_catalog(path)[0]
    data = CATALOG_TEXT.encode().replace(b"title: ESDL shared catalog", b"title: ESDL \xff catalog")
    path.write_bytes(data)
    offset = data.index(b"\xff")
    with pytest.raises(CatalogError, match=rf"c.yaml: byte {offset} \(line \d+\) is not UTF-8"):
        list_cubes(path)


@pytest.mark.parametrize(
    "content",
    [
        CATALOG_TEXT.replace(
            "sources:\n", "sources:\n  x:\n    driver: zarr\n    args: {}\n  x:\n    driver: zarr\n"
        ),
        CATALOG_TEXT.encode() + b"# caf\xe9\n",
    ],
    ids=["key-twice", "not-utf8"],
)
def test_a_broken_team_catalog_is_skipped_with_a_warning_and_the_shared_cubes_stay(folder, content):
    team = folder / "team.yaml"
    team.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {"ESDL_CATALOG": str(SHIPPED_CATALOG), "ESDL_TEAM_CATALOG": str(team)}
    with mock.patch.dict(os.environ, env):
        with pytest.warns(CatalogWarning, match=r"the team catalog was skipped: .*(given twice|not UTF-8)"):
            assert list_cubes() == list_cubes(SHIPPED_CATALOG)
        with pytest.raises(CatalogError, match="team.yaml: .*(given twice|not UTF-8)"):
            list_team_cubes()


# --- examples: no implicit conversion in specs ----------------------------------------------------------


@pytest.mark.parametrize(
    "path, value, expected",
    [
        # a boolean is not a number: "never cull" is 0
        (
            ("servers", "cull_idle_minutes"),
            False,
            "servers.cull_idle_minutes: Input should be a valid integer, got False; true/false is not a number;"
            " allowed: a whole number from 0 to 43200 (0: never cull idle servers)",
        ),
        (("profiles", 0, "cpu"), True, "profiles[0].cpu: Input should be a valid number, got True"),
        (("dask", "worker_cores", "default"), True, "dask.worker_cores.default: Input should be a valid integer"),
        # a number is not a name, a name is not a number
        (("image", "tag"), 1.10, "image.tag: Input should be a valid string, got 1.1; YAML reads this unquoted"),
        (("title",), 2020, "title: Input should be a valid string, got 2020"),
        (("admins", 0), 123, "admins[0]: Input should be a valid string, got 123"),
        (("profiles", 0, "cpu"), "2", "profiles[0].cpu: Input should be a valid number, got '2'; write the number"),
        (("dask", "max_workers_per_user"), 4.0, "dask.max_workers_per_user: Input should be a valid integer, got 4.0"),
        (("profiles", 0, "memory"), 1.5, "profiles[0].memory: Input should be a valid string, got 1.5"),
        # NaN and infinities
        (("profiles", 0, "cpu"), math.nan, "profiles[0].cpu: Input should be a finite number, got nan; .nan and .inf"),
        (("dask", "max_cores_per_user"), math.inf, "dask.max_cores_per_user: Input should be a finite number, got inf"),
        # what one node of a cluster can provide
        (("profiles", 0, "cpu"), 0.01, "profiles[0].cpu: 0.01 CPUs is not what one node can provide; allowed: 0.1 to 256 CPUs"),
        (("profiles", 1, "cpu"), 512, "profiles[1].cpu: 512 CPUs is not what one node can provide; allowed: 0.1 to 256"),
        (("profiles", 0, "memory"), "64Mi", "profiles[0].memory: '64Mi' is not what one node can provide; allowed: 128Mi to 4Ti"),
        (("profiles", 0, "memory"), "8Ti", "profiles[0].memory: '8Ti' is not what one node can provide; allowed: 128Mi to 4Ti"),
        (("dask", "worker_cores", "choices", 1), 512, "dask.worker_cores.choices[1]: 512 cores is not what one node can provide; allowed: 1 to 256 cores"),
        (("dask", "worker_memory", "choices", 1), "64Mi", "dask.worker_memory.choices[1]: '64Mi' is not what one node can provide"),
        (("dask", "max_workers_per_user"), 10**30, "dask.max_workers_per_user: 1000000000000000000000000000000 is out of range; allowed: a whole number from 1 to 1000"),
    ],
)  # fmt: skip
def test_specs_convert_nothing_and_name_the_field_and_what_is_allowed(folder, path, value, expected):
    assert expected in spec_error(folder, demo_with(path, value))


def test_a_spec_with_many_problems_shows_the_first_ten(folder):
    message = spec_error(folder, demo_with(("members",), [f"Person{i}" for i in range(30)]))
    lines = message.splitlines()
    assert len(lines) == 12 and lines[0].endswith("(30 problems):")
    assert lines[-1] == "  - ... and 20 more problems"


# --- examples: catalog fields of the wrong type ---------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, expected",
    [
        (("args",), 5, "has args 5 (int); allowed: a mapping"),
        (("args", "urlpath"), [1], "has args.urlpath [1] (list); allowed: a string: the store's path or URL"),
        (("description",), {}, "has description {} (dict); allowed: a string"),
        (("metadata",), [1, 2], "has metadata [1, 2] (list); allowed: a mapping"),
        (("driver",), 5, "has driver 5 (int); allowed: a string ('zarr')"),
        (("args", "consolidated"), "yes", "has args.consolidated 'yes' (str); allowed: true or false"),
        (
            ("args", "chunks"),
            True,
            "has args.chunks True (bool); allowed: 'auto', a whole number or a mapping",
        ),
    ],
)
def test_catalog_entries_with_a_field_of_the_wrong_type_are_malformed(folder, field, value, expected):
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(mutate(CATALOG, ("sources", "esdc-demo-ts", *field), value)))
    bad = malformed_entries(read_catalog_document(path)["sources"])
    assert list(bad) == ["esdc-demo-ts"] and bad["esdc-demo-ts"].startswith(expected)
    with pytest.warns(
        CatalogWarning, match=re.escape(f"{path.resolve()}: entry 'esdc-demo-ts' skipped: it {expected}")
    ):
        names = list_cubes(path)
    assert "esdc-demo-ts" not in names and "esdc-demo-map" in names
    assert validate_catalog(path) == [f"{path.resolve()}: entry 'esdc-demo-ts' {bad['esdc-demo-ts']}."]


@pytest.mark.parametrize(
    "field, value, expected",
    [
        (("title",), {}, "entry 'esdc-demo-ts': has metadata.title {} (dict); allowed: a string"),
        (("variables", "kndvi", "units"), 1, "entry 'esdc-demo-ts': variable 'kndvi' has units 1; allowed: a string"),
        (("temporal_extent",), [None, None], "entry 'esdc-demo-ts': temporal_extent [None, None] must be [start, end] dates"),
        (("temporal_extent",), [2001, 2021], "entry 'esdc-demo-ts': temporal_extent [2001, 2021] must be [start, end] dates"),
        (("spatial_extent",), [-180, -90, True, 90], "entry 'esdc-demo-ts': spatial_extent [-180, -90, True, 90] must be"),
    ],
)  # fmt: skip
def test_catalog_metadata_of_the_wrong_type_is_a_validation_problem(folder, field, value, expected):
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(mutate(CATALOG, ("sources", "esdc-demo-ts", "metadata", *field), value)))
    problems = validate_catalog(path)
    assert len(problems) == 1 and expected in problems[0], problems


# --- properties over generated inputs ------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.integers(min_value=2**63, max_value=10**40),
    st.floats(),  # NaN, infinities, subnormals
    st.text(max_size=12),
    st.sampled_from(
        ["4Gi", "64Mi", "2", "1.10", "true", "", "small", "zarr", "2001-01-05", "env:X", "s3://b/c.zarr"]
    ),
    st.dates(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["name", "cpu", "units", "x", "urlpath"]) | st.text(max_size=6), scalars, max_size=3),
)  # fmt: skip


@st.composite
def data_mutations(draw: st.DrawFn, base: Any) -> tuple[Any, tuple[str | int, ...], Any]:
    """``(data, path, value)``: ``base`` with one node replaced by any YAML value, or a mapping key deleted."""
    path = draw(st.sampled_from(node_paths(base)))
    deletable = isinstance(path[-1], str)
    value = DELETED if deletable and draw(st.integers(0, 4)) == 0 else draw(values)
    return mutate(base, path, value), path, value


_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(\s|$)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


@st.composite
def text_mutations(draw: st.DrawFn, text: str) -> tuple[bytes, str]:
    """``(content, expected)``: ``text`` with a key line written twice (``expected``: the message naming the
    key and both lines) or bytes that are not UTF-8 put in (``expected``: the byte offset and line)."""
    lines = text.splitlines(keepends=True)
    if draw(st.booleans()):
        # a line that holds its whole value, or a block key whose block follows: copying it repeats that key
        candidates = [
            i
            for i, line in enumerate(lines[:-1])
            if _KEY_LINE.match(line)
            and (
                line.rstrip().endswith(":")
                or _indent(lines[i + 1]) <= _indent(line)
                or not lines[i + 1].strip()
            )
        ]
        i = draw(st.sampled_from(candidates))
        key = _KEY_LINE.match(lines[i]).group(2)  # type: ignore[union-attr]
        mutated = [*lines[: i + 1], lines[i], *lines[i + 1 :]]
        return "".join(mutated).encode(), f"key {key!r} is given twice (lines {i + 1} and {i + 2})"
    at = draw(st.integers(0, len(text)))
    offset = len(text[:at].encode())
    bad = draw(
        st.sampled_from(
            [b"\xff", b"\xfe", b"\xc3\x28", b"\xe9", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]
        )
    )
    content = text[:at].encode() + bad + text[at:].encode()
    return content, f"byte {offset} (line {text.count(chr(10), 0, at) + 1}) is not UTF-8"


def assert_short(message: str) -> None:
    assert len(message.splitlines()) <= MAX_LINES, message
    assert "Traceback" not in message


def assert_taken_as_given(spec: Any, path: tuple[str | int, ...], value: Any) -> None:
    """A spec that loads holds the value exactly as YAML gave it: nothing converted on the way."""
    node = spec.model_dump()
    for part in path:
        node = node[part]
    if isinstance(value, bool) or value is None:
        assert node is value, (path, value, node)
    elif isinstance(value, int):  # a number of bytes is kept as the quantity's text
        assert node == value or node == str(value), (path, value, node)
        assert not isinstance(node, bool)
    elif isinstance(value, float | str | datetime.date):
        assert node == value and type(node) is type(value), (path, value, node)


def load_spec_checked(folder: Path, content: bytes) -> Any:
    """``load_project`` on ``content``: the spec, or the ProjectSpecError; reading writes nothing."""
    path = folder / "demo.yaml"
    path.write_bytes(content)
    watched = (folder, Path(os.environ["ESDL_STATE_DIR"]))
    before = files_under(*watched)
    try:
        result: Any = load_project(path)
    except ProjectSpecError as exc:
        result = exc
        assert_short(str(exc))
    assert files_under(*watched) == before, "reading a spec wrote a file"
    return result


@given(mutation=data_mutations(DEMO))
def test_mutated_specs_load_as_given_or_name_the_field(mutation):
    data, path, value = mutation
    with tempfile.TemporaryDirectory() as tmp:
        result = load_spec_checked(
            Path(tmp), yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
        )
    if isinstance(result, ProjectSpecError):
        named = [dotted(path[:k]) for k in range(len(path), 0, -1)]  # the field, or the field that holds it
        assert any(f": {n}" in str(result) for n in named), (path, value, str(result))
    elif value is not DELETED:
        assert_taken_as_given(result, path, value)


@given(mutation=text_mutations(DEMO_TEXT))
def test_specs_with_a_key_twice_or_bytes_not_utf8_are_refused_naming_key_or_byte(mutation):
    content, expected = mutation
    with tempfile.TemporaryDirectory() as tmp:
        result = load_spec_checked(Path(tmp), content)
    assert isinstance(result, ProjectSpecError) and expected in str(result), (expected, str(result))


def assert_well_typed(path: Path) -> None:
    """Every entry of a catalog that validates holds fields of the types the readers rely on."""
    for entry in read_catalog(path).values():
        assert isinstance(entry.description, str) and isinstance(entry.driver, str)
        assert isinstance(entry.args["urlpath"], str)
        assert isinstance(entry.args.get("consolidated", True), bool)
        assert isinstance(entry.args.get("storage_options", {}), dict)
        assert not isinstance(entry.args.get("chunks"), bool | float | list)
        meta = entry.metadata
        assert all(isinstance(meta[k], str) for k in ("title", "chunking", "license", "source"))
        assert all(isinstance(v["units"], str) for v in meta["variables"].values())
        assert all(type(x) in (int, float) and math.isfinite(x) for x in meta["spatial_extent"])
        assert all(isinstance(t, str | datetime.date) for t in meta["temporal_extent"])


def read_catalog_checked(folder: Path, content: bytes) -> tuple[list[str], list[str] | CatalogError, str]:
    """``validate_catalog``, ``list_cubes`` (or its CatalogError) and the warnings said, for ``content``;
    reading writes nothing."""
    path = folder / "catalog.yaml"
    path.write_bytes(content)
    watched = (folder, Path(os.environ["ESDL_STATE_DIR"]))
    before = files_under(*watched)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            names: list[str] | CatalogError = list_cubes(path)
        except CatalogError as exc:
            names = exc
            assert_short(str(exc))
    said = "\n".join(str(w.message) for w in caught)
    assert all(issubclass(w.category, CatalogWarning) for w in caught), said
    problems = validate_catalog(path)  # after list_cubes: the reader warns once per version of a file
    for problem in problems:
        assert_short(problem)
        assert problem.startswith((str(path), str(path.resolve()))), problem
    assert files_under(*watched) == before, "reading a catalog wrote a file"
    return problems, names, said


@given(mutation=data_mutations(CATALOG))
def test_mutated_catalogs_validate_or_name_the_entry_and_field(mutation):
    data, path, value = mutation
    with tempfile.TemporaryDirectory() as tmp:
        problems, names, said = read_catalog_checked(
            Path(tmp), yaml.safe_dump(data, allow_unicode=True).encode()
        )
        if not problems:
            assert_well_typed(Path(tmp) / "catalog.yaml")
            return
    if isinstance(names, CatalogError):  # the file as a whole: its sources
        assert "'sources:' mapping" in str(names) and problems == [str(names)]
        return
    if path[0] == "sources" and len(path) > 1:
        entry = repr(path[1])
        about = [p for p in problems if f"entry {entry}" in p]
        assert about, (path, value, problems)  # a problem of another entry is not this one's
        fields = {str(p) for p in path[2:]} | {str(p).removesuffix("s") for p in path[2:]}
        assert not fields or any(f in p for p in about for f in fields), (path, value, about)
        if path[1] not in names:  # skipped by the reader: said, naming the file and the entry
            assert f"entry {entry} skipped" in said


@given(mutation=text_mutations(CATALOG_TEXT), team=st.booleans())
def test_catalogs_with_a_key_twice_or_bytes_not_utf8_are_refused_and_a_team_catalog_skipped(mutation, team):
    content, expected = mutation
    with tempfile.TemporaryDirectory() as tmp:
        if not team:
            problems, names, _ = read_catalog_checked(Path(tmp), content)
            assert isinstance(names, CatalogError) and expected in str(names), (expected, str(names))
            assert problems == [str(names)]
            return
        team_catalog = Path(tmp) / "team.yaml"
        team_catalog.write_bytes(content)
        env = {"ESDL_CATALOG": str(SHIPPED_CATALOG), "ESDL_TEAM_CATALOG": str(team_catalog)}
        with mock.patch.dict(os.environ, env), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert list_cubes() == list_cubes(SHIPPED_CATALOG)  # the shared cubes stay
        said = [str(w.message) for w in caught]
        assert any("the team catalog was skipped" in m and expected in m for m in said), said
