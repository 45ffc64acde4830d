"""Every bad input a clear error (issue 15): project specs and catalogs are read strictly.

One example for each kind of bad input (each of them passed silently, or failed with a traceback,
before YAML, specs and catalog entries were read strictly).
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from platform_lib.catalog import (
    list_cubes,
    malformed_entries,
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
DELETED = object()


# --- helpers ------------------------------------------------------------------------------------------


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
