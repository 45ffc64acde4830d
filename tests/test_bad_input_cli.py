"""Bad input on the command line (issue 15): every ``esdl`` command answers generated junk with a short
error that says what was wrong, and a non-zero exit -- never a traceback, never a file written, never a
process left running.

The property tests run ``platform_lib.cli.main`` in this process (a run takes milliseconds, a new Python
half a second) on argument lists that mix valid values with junk: text with control and other unicode
characters, numbers that are negative, huge, ``nan`` or ``inf``, paths to missing files, folders, files
where folders belong, ``/proc`` and ``/sys``. A few example tests run the real command as a subprocess.

Nothing here starts the platform: every ``esdl up`` gets a bad ``--port`` or one this test holds, and the
commands that need a Kubernetes cluster (``project deploy|diff|health|delete``) or run long
(``cubes generate``, ``rechunk``, making a regional cube) always get at least one value that is bad by
construction, so only their argument and spec checks run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from platform_helpers import let_accounts_pass

from platform_lib.catalog import dump_catalog
from platform_lib.cli import COMMAND_GROUPS, build_parser, main
from platform_lib.cli.arguments import finite_number, port, positive_number, whole_number, year_range
from platform_lib.demo import check_resolution, demo_catalog_sources
from platform_lib.errors import EsdlError
from platform_lib.local.layout import ProjectLayout
from platform_lib.local.supervisor import tagged_processes
from platform_lib.team import CUBE_NAME_PATTERN

REPO = Path(__file__).resolve().parents[1]
#: an error fits on a screen: argparse's usage (up to ~5 lines) and a message of a few lines
MAX_ERROR_LINES = 12
#: not compared before and after a run: caches Python and tools write whatever the command does, and the
#: installed environments (``make test``'s own: walking their ~100 000 files twice took 0.5 s of each run)
NOT_COMPARED = {
    ".git",
    "__pycache__",
    "node_modules",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".venv",
    ".venv-hub",
}
PROJECTS = ("demo", "extremes-lab")
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)

#: a fifth of the loaded profile's examples for each of the 19 commands: 40 with the default "ci" profile
#: (tests/conftest.py), 200 with HYPOTHESIS_PROFILE=explore
PROPERTY = settings(
    max_examples=max(settings.default.max_examples // 5, 10),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


# --- running the command ---------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_esdl(argv: list[str]) -> Outcome:
    """``esdl *argv`` in this process: its exit code, stdout and stderr. An exception that escapes
    ``main`` is what the real command would print as a traceback, so it is printed as one here."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: 2 for bad arguments, 0 for --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # noqa: BLE001 - printed as the traceback the user would see
            traceback.print_exc()
            code = 1
    return Outcome(code, out.getvalue(), err.getvalue())


def run_esdl_process(argv: list[str], env: dict[str, str], cwd: Path, **kwargs) -> Outcome:
    """The real ``esdl`` command in a new Python (for what only a process shows: argv decoding, exit)."""
    proc = subprocess.run(
        [sys.executable, "-m", "platform_lib.cli", *argv],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def files_under(*roots: Path) -> set[str]:
    """Every file and folder under ``roots`` (caches left out; a Zarr store is one entry, not its chunks)."""
    found: set[str] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            found.update(os.path.join(folder, name) for name in dirs + files)
            dirs[:] = [d for d in dirs if d not in NOT_COMPARED and not d.endswith(".zarr")]
    return found


def our_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def platform_processes(state: Path) -> list:
    return [p for name in PROJECTS for p in tagged_processes(str((state / "platform" / name).resolve()))]


# --- the world the commands run in -----------------------------------------------------------------


@dataclass
class World:
    """Temporary files and folders (good and bad values), the state folder, and a port this test holds."""

    root: Path
    state: Path
    held_port: int
    env: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def catalog(self) -> Path:
        """A valid catalog of the demo cubes, which are not generated (nothing is opened over the network)."""
        return self.files["catalog"]

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def watched(self) -> list[Path]:
        return [self.state, REPO, self.root]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "cwd").mkdir()
    (root / "folder").mkdir()
    (root / "folder.ipynb").mkdir()
    (root / "team").mkdir()  # the platform gives every server an existing team folder
    # made by the first regional cube; made here because making a regional cube makes it before it checks
    # its source (test_a_failed_regional_cube_writes_nothing)
    (root / "team" / "cubes").mkdir()
    files = {
        "text": root / "notes.txt",
        "binary": root / "blob.bin",
        "yaml_list": root / "list.yaml",
        "values": root / "values.yaml",
        "notebook": root / "analysis.ipynb",
        "broken_notebook": root / "broken.ipynb",
    }
    files["text"].write_text("just: [some text\n")
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["yaml_list"].write_text("- a\n- b\n")
    files["values"].write_text("{}\n")
    files["broken_notebook"].write_text("{not json")
    files["notebook"].write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "code", "source": "1", "metadata": {}, "outputs": [], "execution_count": None}]})
    )  # fmt: skip
    files["catalog"] = root / "catalog.yaml"
    files["catalog"].write_text(
        dump_catalog(demo_catalog_sources(10.0, (2003, 2003)), title="demo, not generated")
    )
    state = Path(os.environ["ESDL_STATE_DIR"])
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("0.0.0.0", 0))  # every address of this machine: no --ip can get around it
    held.listen()
    with held, pytest.MonkeyPatch.context() as mp:
        # successful runs write here, not into the session's data or team folders
        mp.setenv("ESDL_DATA_DIR", str(root / "data"))
        mp.setenv("ESDL_TEAM_DIR", str(root / "team"))
        mp.delenv("ESDL_TEAM_CATALOG", raising=False)
        mp.delenv("ESDL_CATALOG", raising=False)
        yield World(root, state, held.getsockname()[1], dict(os.environ), files)


@pytest.fixture
def in_world(world: World) -> Iterator[World]:
    with contextlib.chdir(world.cwd):  # relative paths land in a temporary folder, not the repository
        yield world


def check(world: World, argv: list[str], *, platform: bool = False, reports: int = 1) -> Outcome:
    """Run ``esdl *argv`` and hold it to the promise of issue 15 (``reports``: how many files it checks,
    each with an error of its own, as ``esdl project validate A B`` does)."""
    before = files_under(*world.watched())
    children = our_processes()
    outcome = run_esdl(argv)
    shown = f"esdl {argv!r} exited {outcome.code}\n--- stdout\n{outcome.out[-3000:]}\n--- stderr\n{outcome.err[-3000:]}"
    assert not TRACEBACK.search(outcome.out + outcome.err), shown
    if outcome.code != 0:
        assert outcome.code in (1, 2), shown
        lines = outcome.err.strip().splitlines()
        assert lines, "a failure says why on stderr\n" + shown
        assert len(lines) <= MAX_ERROR_LINES * reports + (reports > 1), shown
        new = sorted(files_under(*world.watched()) - before)
        assert not new, f"a failed command wrote {new[:5]}\n{shown}"
    left = our_processes() - children
    assert not left, f"processes left running: {left}\n{shown}"
    if platform:
        assert platform_processes(world.state) == [], shown
    return outcome


# --- strategies ------------------------------------------------------------------------------------

#: text as a shell passes it (no NUL: a command line cannot hold one; no lone surrogates: not text)
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=24)
NUMBER_WORDS = st.sampled_from(
    [
        "nan",
        "-nan",
        "inf",
        "-inf",
        "1e3",
        "1e999",
        "0x10",
        "1_000",
        "",
        " ",
        "-0",
        "+7",
        "٣",
        "１",
        "3.5",
        "1/2",
    ]
)
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    NUMBER_WORDS,
)
SYSTEM_PATHS = st.sampled_from(
    ["/proc", "/proc/no/such", "/proc/self/status", "/sys/esdl", "/dev/null", "/", "", "x" * 300, "~nobody/x"]
)


def paths(world: World) -> st.SearchStrategy[str]:
    """Paths to what exists but is the wrong thing, to nothing, and to places nobody may write."""
    r = world.root
    ours = [r / "missing" / "x.yaml", r / "folder", r / "folder.ipynb", r / "notes.txt" / "sub"]
    ours += [world.files[k] for k in ("text", "binary", "yaml_list", "broken_notebook")]
    return st.one_of(SYSTEM_PATHS, st.sampled_from([str(p) for p in ours]))


def junk(world: World) -> st.SearchStrategy[str]:
    return st.one_of(TEXT, NUMBERS, paths(world))


def accepts(parse: Callable[[str], object], text: str) -> bool:
    """Whether the argument type ``parse`` takes ``text`` (to draw values that are bad by construction)."""
    try:
        parse(text)
    except (argparse.ArgumentTypeError, EsdlError):
        return False
    return True


def demo_grid(text: str) -> float:
    """``--resolution`` of ``esdl cubes generate``: a grid the demo generator makes."""
    return check_resolution(positive_number(text))


@dataclass
class Option:
    """One option (or positional, ``flag=None``) of a command: values that are right, values that are
    wrong by construction (``bad``), and random values that may be either (``any``)."""

    flag: str | None
    good: st.SearchStrategy | None = None
    bad: st.SearchStrategy | None = None
    any: st.SearchStrategy | None = None
    required: bool = False
    switch: bool = False


@st.composite
def argv_of(draw, words: list[str], options: list[Option], must_fail: bool = False) -> list[str]:
    """``words`` and a random choice of ``options`` (each at most once, required ones always), each with
    a good, bad or random value; with ``must_fail`` at least one value is bad by construction."""
    chosen = [o for o in options if o.required or draw(st.booleans())]
    picks: dict[int, tuple[str, object]] = {}
    for i, option in enumerate(chosen):
        kinds = [k for k in ("good", "bad", "any") if getattr(option, k) is not None]
        if option.switch:
            picks[i] = ("switch", None)
            continue
        kind = draw(st.sampled_from(kinds))
        picks[i] = (kind, draw(getattr(option, kind)))
    if must_fail and not any(kind == "bad" for kind, _ in picks.values()):
        can = [o for o in options if o.bad is not None]
        option = draw(st.sampled_from(can))
        if option not in chosen:
            chosen.append(option)
        picks[chosen.index(option)] = ("bad", draw(option.bad))
    argv = list(words)
    for i, option in enumerate(chosen):
        kind, value = picks[i]
        values = (
            [] if kind == "switch" else (list(value) if isinstance(value, list | tuple) else [str(value)])
        )
        argv += ([option.flag] if option.flag else []) + values
    return argv


def commands(world: World) -> dict[str, st.SearchStrategy[list[str]]]:
    """An argument-list strategy for every ``esdl`` subcommand."""
    j, p, t = junk(world), paths(world), TEXT
    f = world.files
    catalog = Option("--catalog", good=st.just(str(world.catalog)), any=j)
    spec_good = st.sampled_from(list(PROJECTS))
    spec_bad = st.one_of(p, t.filter(lambda s: s.strip() not in PROJECTS))
    kube = Option("--kube-context", any=t)
    values = Option("-f", good=st.just(str(f["values"])), any=j)
    bbox = st.lists(st.sampled_from(["-10", "35", "30", "60", "0.5"]), min_size=4, max_size=4)
    bbox_bad = st.lists(st.one_of(NUMBERS, t), min_size=1, max_size=5).filter(
        lambda xs: len(xs) != 4 or not all(accepts(finite_number, x) for x in xs)
    )
    new_folder = st.builds(lambda n: str(world.root / "out" / f"new-{n}"), st.integers(0, 3))
    return {
        "cubes list": argv_of(["cubes", "list"], [catalog]),
        "cubes describe": argv_of(
            ["cubes", "describe"],
            [
                Option(None, good=st.just("esdc-demo-ts"), any=t, required=True),
                catalog,
                Option("--json", switch=True),
            ],
        ),  # fmt: skip
        "cubes generate": argv_of(
            ["cubes", "generate"],
            [
                Option(
                    "--resolution",
                    good=st.sampled_from(["10", "30"]),
                    bad=st.one_of(NUMBERS, t).filter(lambda s: not accepts(demo_grid, s)),
                    required=True,
                ),
                Option(
                    "--years",
                    good=st.sampled_from(["2003", "2003-2003"]),
                    bad=st.one_of(
                        NUMBERS, t, st.sampled_from(["2020-2001", "1900-2000", "2001-", "-2001"])
                    ).filter(lambda s: not accepts(year_range(1979, 2030), s)),
                    required=True,
                ),
                Option(
                    "--data-dir",
                    good=st.just(str(world.root / "data")),
                    bad=p.filter(lambda s: s not in ("/", "~nobody/x")),
                    any=t,
                    required=True,
                ),
                Option(
                    "--seed",
                    good=st.sampled_from(["0", "7"]),
                    bad=st.sampled_from(["-1", "4294967296", str(10**30), "1.5", "nan", "x"]),
                ),
                Option("--overwrite", switch=True),
            ],
            must_fail=True,
        ),  # fmt: skip
        "cubes regional": st.one_of(
            argv_of(["cubes", "regional", "--list"], []),
            argv_of(
                ["cubes", "regional"],
                [Option("--remove", any=j, required=True), Option("--keep-data", switch=True)],
            ),
            argv_of(
                ["cubes", "regional"],
                [
                    Option(None, good=st.just("esdc-demo-ts"), any=t),
                    Option("--name", good=st.just("europe-test"), any=t),
                    Option("--bbox", good=bbox, bad=bbox_bad),
                    Option(
                        "--time",
                        good=st.just(["2003-06-01", "2003-08-31"]),
                        any=st.lists(t, min_size=2, max_size=2),
                    ),
                    Option(
                        "--variables",
                        good=st.just(["air_temperature_2m"]),
                        any=st.lists(t, min_size=1, max_size=3),
                    ),
                    Option(
                        "--resolution",
                        good=st.just("10"),
                        bad=NUMBERS.filter(lambda s: not accepts(positive_number, s)),
                    ),
                    Option(
                        "--chunking",
                        good=st.sampled_from(["ts", "map"]),
                        bad=t.filter(lambda s: s not in ("ts", "map")),
                    ),
                ],
                must_fail=True,
            ),
        ),  # fmt: skip
        "catalog validate": argv_of(
            ["catalog", "validate"],
            # always a file: without one, --open would open the shipped catalog's cubes over the network
            [
                Option(None, good=st.just(str(world.catalog)), any=j, required=True),
                Option("--open", switch=True),
            ],
        ),
        "up": argv_of(
            ["up"],
            [
                Option("--project", good=spec_good, any=j),
                Option("--project", good=spec_good, any=j),
                Option("--ip", good=st.sampled_from(["127.0.0.1", "0.0.0.0"]), any=j),
                Option("--log-level", good=st.sampled_from(["DEBUG", "INFO"]), any=t),
                Option("--foreground", switch=True),
                Option("--shared-account", switch=True),
                # last, and always the held port or a bad one: nothing here starts the platform
                Option(
                    "--port",
                    good=st.just(str(world.held_port)),
                    bad=j.filter(lambda s: not accepts(port, s)),
                    required=True,
                ),
            ],
        ),  # fmt: skip
        "down": argv_of(["down"], [Option("--project", good=spec_good, any=j)]),
        "status": argv_of(["status"], [Option("--project", good=spec_good, any=j)]),
        "passwd": argv_of(
            ["passwd"],
            [
                Option(None, good=st.just("alice"), any=t, required=True),
                Option("--project", good=spec_good, any=j),
            ],
        ),
        "project validate": argv_of(
            ["project", "validate"], [Option(None, good=spec_good, any=j), Option(None, any=j)]
        ),
        "project list": argv_of(["project", "list"], [Option(None, any=j)], must_fail=False),
        "project render": argv_of(
            ["project", "render"],
            [
                Option(None, good=spec_good, bad=spec_bad, required=True),
                Option("--out", good=new_folder, bad=p.filter(lambda s: s != "/"), any=t),
                Option("--shared-catalog", good=st.just(str(REPO / "catalog" / "esdl.yaml")), any=j),
                Option("--dry-run", switch=True),
            ],
        ),  # fmt: skip
        "project deploy": argv_of(
            ["project", "deploy"],
            [Option(None, bad=spec_bad, required=True), Option("--dry-run", switch=True), values, kube],
        ),
        "project diff": argv_of(
            ["project", "diff"],
            [
                Option(None, bad=spec_bad, required=True),
                values,
                kube,
                Option("--last-render", switch=True),
                Option("--dry-run", switch=True),
            ],
        ),  # fmt: skip
        "project health": argv_of(
            ["project", "health"],
            [
                Option(None, bad=spec_bad, required=True),
                Option("--local", switch=True),
                Option("--kubernetes", switch=True),
                Option("--url", good=st.just("http://127.0.0.1:9"), any=j),
                kube,
            ],
        ),  # fmt: skip
        "project delete": argv_of(
            ["project", "delete"],
            [
                Option(None, bad=spec_bad, required=True),
                Option("--dry-run", switch=True),
                Option("--delete-namespace", switch=True),
                kube,
            ],
        ),  # fmt: skip
        "rechunk": argv_of(
            ["rechunk"],
            [
                Option(None, bad=st.one_of(p, t.filter(lambda s: not s.startswith("esdc"))), required=True),
                Option(None, good=new_folder, any=j, required=True),
                Option("--target", good=st.sampled_from(["ts", "map", "time=46,lat=8,lon=8"]), any=j),
                Option("--max-mem", good=st.sampled_from(["512MB", "1GB"]), any=j),
                Option("--shards", good=st.just("time=92"), any=j),
                Option("--variables", good=st.just("air_temperature_2m"), any=t),
                Option("--register", good=st.just("my-cube"), any=t),
                Option("--overwrite", switch=True),
                Option("--no-progress", switch=True),
            ],
        ),  # fmt: skip
        "share": st.one_of(
            argv_of(["share", "--list"], [Option(None, any=j)]),
            argv_of(
                ["share"],
                [
                    Option(None, good=st.just(str(f["notebook"])), any=j),
                    Option("--name", good=st.just("shared.ipynb"), any=t),
                    Option("--overwrite", switch=True),
                ],
            ),
        ),  # fmt: skip
        # making a challenge: at least one value wrong by construction, refused before any data is read
        "challenge make": argv_of(
            ["challenge", "make"],
            [
                Option(
                    None,
                    good=st.just("heat-test"),
                    bad=t.filter(lambda s: not CUBE_NAME_PATTERN.match(s)),
                    required=True,
                ),
                Option("--source", good=st.just("esdc-demo-ts"), any=t, required=True),
                Option(
                    "--events",
                    good=st.sampled_from(["injected", "both"]),
                    bad=t.filter(lambda s: s not in ("detected", "injected", "both")),
                ),
                Option(
                    "--target",
                    good=st.just("kndvi"),
                    bad=t.filter(lambda s: s not in ("kndvi", "gross_primary_productivity")),
                ),
                Option(
                    "--drivers", good=st.just(["air_temperature_2m"]), any=st.lists(t, min_size=1, max_size=3)
                ),
                Option(
                    "--patch", good=st.just("2"), bad=j.filter(lambda s: not accepts(whole_number(1, 256), s))
                ),
                Option(
                    "--context",
                    good=st.just("4"),
                    bad=j.filter(lambda s: not accepts(whole_number(1, 460), s)),
                ),
                Option(
                    "--horizon",
                    good=st.just("3"),
                    bad=j.filter(lambda s: not accepts(whole_number(1, 460), s)),
                ),
                Option(
                    "--controls",
                    good=st.just("1"),
                    bad=j.filter(lambda s: not accepts(whole_number(0, 10), s)),
                ),
                Option(
                    "--split",
                    good=st.just(["1", "0", "1"]),
                    bad=st.sampled_from(
                        [["0", "1", "1"], ["1", "1", "-1"], ["1", "1", "0"], ["1", "x", "1"]]
                    ),
                ),
                Option("--seed", good=st.just("3"), bad=st.sampled_from(["-1", "1.5", "x", str(2**40)])),
                Option(
                    "--quantile",
                    good=st.just("0.99"),
                    bad=st.sampled_from(["0", "1", "1.5", "-0.2", "nan", "x"]),
                ),
                Option("--detect-variable", any=t),
            ],
            must_fail=True,
        ),  # fmt: skip
        "challenge show": argv_of(["challenge", "show"], [Option(None, any=t, required=True)]),
        "challenge baselines": argv_of(
            ["challenge", "baselines"],
            [
                Option(None, any=t, required=True),
                Option("--only", any=st.lists(t, min_size=1, max_size=3)),
                Option("--submit", switch=True),
            ],
        ),
        "challenge score": argv_of(
            ["challenge", "score"],
            [
                Option(None, any=t, required=True),
                Option(None, any=j, required=True),
                Option("--label", any=t),
                Option("--no-submit", switch=True),
            ],
        ),
        "challenge leaderboard": argv_of(["challenge", "leaderboard"], [Option(None, any=t, required=True)]),
        # anything at all that names no command (a command word with defaults could start the platform)
        "no command": st.lists(st.one_of(t, NUMBERS), max_size=4).filter(
            lambda a: not a or a[0] not in SUBCOMMANDS
        ),
    }


SUBCOMMANDS = {
    "cubes",
    "catalog",
    "project",
    "up",
    "down",
    "status",
    "passwd",
    "share",
    "rechunk",
    "challenge",
}
COMMANDS = [
    "cubes list", "cubes describe", "cubes generate", "cubes regional", "catalog validate", "up", "down",
    "status", "passwd", "project validate", "project list", "project render", "project deploy", "project diff",
    "project health", "project delete", "rechunk", "share", "challenge make", "challenge show",
    "challenge baselines", "challenge score", "challenge leaderboard", "no command",
]  # fmt: skip


def test_every_subcommand_has_a_strategy():
    parser_commands = set()
    parser = build_parser()
    top = parser._subparsers._group_actions[0].choices  # argparse keeps them only here
    for name, sub in top.items():
        nested = sub._subparsers._group_actions[0].choices if sub._subparsers else {}
        parser_commands |= {f"{name} {n}" for n in nested} if nested else {name}
    assert set(top) == SUBCOMMANDS and set(COMMAND_GROUPS) <= {*top, "platform"}
    assert parser_commands <= set(COMMANDS), (
        f"subcommands without generated input: {parser_commands - set(COMMANDS)}"
    )


# --- the property ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@PROPERTY
@given(data=st.data())
def test_generated_bad_input_gets_a_short_clear_error(in_world: World, command: str, data: st.DataObject):
    argv = data.draw(commands(in_world)[command], label="argv")
    reports = max(len(argv) - 2, 1) if command == "project validate" else 1
    check(in_world, argv, platform=command == "up", reports=reports)


# --- examples that failed before (issue 15) --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["up", "--port", "-1"], "argument --port: '-1' is not a port: use a whole number from 0 to 65535"),
        (["up", "--port", "70000"], "argument --port: '70000' is not a port"),
        (["up", "--port", "1e3"], "argument --port: '1e3' is not a port"),
        (["up", "--ip", "not-an-address"], "argument --ip: 'not-an-address' is not an IPv4 address: use 127.0.0.1"),
        (["up", "--ip", "999.1.1.1"], "argument --ip: '999.1.1.1' is not an IPv4 address"),
        (["up", "--ip", "203.0.113.1", "--port", "0"], "argument --ip: 203.0.113.1 is not an address of this machine"),
        (["cubes", "generate", "--resolution", "nan"], "argument --resolution: 'nan' is not allowed: use a finite number above 0"),
        (["cubes", "generate", "--resolution", "inf"], "argument --resolution: 'inf' is not allowed"),
        (["cubes", "generate", "--resolution", "0"], "argument --resolution: '0' is not allowed"),
        (["cubes", "generate", "--resolution", "-1"], "argument --resolution: '-1' is not allowed"),
        (["cubes", "generate", "--resolution", "1000"], "argument --resolution: resolution 1000.0 degrees is not allowed: use a divisor of 180"),
        (["cubes", "generate", "--seed", str(10**20)], "argument --seed: '100000000000000000000' is not allowed: use a whole number from 0 to 4294967295"),
        (["cubes", "generate", "--seed", "-1"], "argument --seed: '-1' is not allowed"),
        (["cubes", "generate", "--years", "2020-2001"], "argument --years: years '2020-2001' are not allowed: use FIRST-LAST (or one year) within 1979-2030"),
        (["cubes", "generate", "--data-dir", "/proc/esdl-data"], "argument --data-dir: '/proc/esdl-data': cannot write in /proc"),
        (["cubes", "generate", "--data-dir", "/sys/esdl-data"], "argument --data-dir: '/sys/esdl-data': cannot write in /sys"),
        (["catalog", "validate", "/"], "argument path: '/' is a folder: name a file"),
        (["rechunk", "a", "b", "--target", "time=0"], "argument --target: 'time=0' is not allowed: use ts, map or dim=size"),
        (["project", "health", "demo", "--url", "hub.example.org"], "argument --url: 'hub.example.org' is not an address"),
    ],
)  # fmt: skip
def test_bad_numbers_addresses_and_folders_are_refused_by_name(in_world: World, argv: list[str], said: str):
    outcome = check(in_world, argv, platform=argv[0] == "up")
    assert outcome.code == 2 and said in outcome.err, outcome.err


def test_a_data_dir_that_is_a_file_or_under_one_is_refused(in_world: World):
    text = str(in_world.files["text"])
    assert (
        f"'{text}' is a file: name a folder" in check(in_world, ["cubes", "generate", "--data-dir", text]).err
    )
    under = check(in_world, ["cubes", "generate", "--data-dir", f"{text}/cubes"]).err
    assert f"{text} is a file, so no folder can be made there" in under


def test_a_read_only_data_dir_is_refused_before_anything_is_generated(in_world: World):
    """As the owner of a read-only folder (as root: as the account ``nobody``, for whom root's temporary
    folder is read-only): refused at once, before the cube is computed."""
    folder = in_world.root / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    argv = ["cubes", "generate", "--data-dir", str(folder / "cubes")]
    if os.geteuid() != 0:
        outcome = check(in_world, argv)
    else:
        let_accounts_pass(folder)  # nobody may pass through pytest's folders to be refused in this one
        outcome = run_esdl_process(argv, {**in_world.env, "HOME": "/"}, Path("/"), user="nobody")
        assert not TRACEBACK.search(outcome.err) and not (folder / "cubes").exists()
    assert outcome.code == 2, outcome.err
    assert (
        f"argument --data-dir: '{folder / 'cubes'}': cannot write in {folder} (Permission denied)"
        in outcome.err
    )


def test_the_real_command_prints_no_traceback_for_junk(world: World):
    """As a process: bytes that are not UTF-8 in argv, a control character, and the classes above."""
    for argv in (["up", "--port", "1e3"], ["cubes", "generate", "--resolution", "nan", "--data-dir", "/proc/x"],
                 ["cubes", "describe", "\x1b[31m\udcff"], ["status", "--project", "x" * 300]):  # fmt: skip
        outcome = run_esdl_process(argv, world.env, world.cwd)
        assert outcome.code == 2 and not TRACEBACK.search(outcome.err), outcome.err
        assert 0 < len(outcome.err.strip().splitlines()) <= MAX_ERROR_LINES, outcome.err


def test_a_failed_regional_cube_writes_nothing(
    in_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ESDL_TEAM_DIR", str(tmp_path / "team"))
    (tmp_path / "team").mkdir()
    argv = ["cubes", "regional", "esdc-demo-ts", "--name", "europe-test", "--bbox", "-10", "35", "30", "60"]
    outcome = check(in_world, argv)
    assert outcome.code == 2 and "has not been generated" in outcome.err
    assert os.listdir(tmp_path / "team") == []


# --- a failed first start leaves nothing ------------------------------------------------------------


def spec_with_missing_store(world: World) -> Path:
    import yaml

    spec = {"name": "lost-store", "title": "Lost store", "admins": ["ada"],
            "catalog": {"entries": [{"name": "gone", "description": "no such store", "urlpath": "nowhere/gone.zarr"}]}}  # fmt: skip
    path = world.root / "specs" / "lost-store.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("case", ["port in use", "missing store"])
def test_a_failed_first_start_leaves_no_state_and_status_lists_nothing(in_world: World, case: str):
    if case == "port in use":
        argv, name, said = ["up", "--project", "demo", "--port", str(in_world.held_port)], "demo", "is in use"
    else:
        argv, name, said = (
            ["up", "--project", str(spec_with_missing_store(in_world)), "--port", "0"],
            "lost-store",
            "does not exist",
        )
    assert not ProjectLayout.for_project(name).exists()
    outcome = check(in_world, argv, platform=True)
    assert outcome.code == 2 and said in outcome.err, outcome.err
    assert not ProjectLayout.for_project(name).root.exists()
    assert not (in_world.state / "platform").exists() or os.listdir(in_world.state / "platform") == []
    status = check(in_world, ["status"])
    assert status.code == 0 and "no project has been started yet" in status.out, status.out
    assert check(in_world, ["status", "--project", "demo"]).out.startswith("demo: never started here")
    assert "has never been started here" in check(in_world, ["passwd", "alice", "--project", "demo"]).err


def test_a_failed_start_of_an_existing_project_keeps_its_state(in_world: World):
    from platform_lib.local.supervisor import LOCK_FILE

    layout = ProjectLayout.for_project("demo").ensure()
    try:
        (layout.root / LOCK_FILE).touch()  # every start leaves its lock file
        layout.assign_ports(0)
        made = layout.credentials(["alice"])
        before = {p: p.read_bytes() for p in layout.root.rglob("*") if p.is_file()}
        outcome = check(
            in_world, ["up", "--project", "demo", "--port", str(in_world.held_port)], platform=True
        )
        assert outcome.code == 2 and "is in use by another program" in outcome.err
        assert {p: p.read_bytes() for p in layout.root.rglob("*") if p.is_file()} == before
        assert check(in_world, ["status"]).out.startswith("demo: stopped")
        assert made and check(in_world, ["passwd", "alice", "--project", "demo"]).code == 0
    finally:
        import shutil

        shutil.rmtree(layout.root)


def test_a_state_folder_an_older_failed_start_left_is_not_a_started_project(in_world: World):
    layout = ProjectLayout.for_project("demo").ensure()  # secrets and folders, but never got to its ports
    try:
        assert check(in_world, ["status"]).out.startswith("no project has been started yet")
        assert "has never been started" in check(in_world, ["down", "--project", "demo"]).err
    finally:
        import shutil

        shutil.rmtree(layout.root)


def test_a_waiting_start_makes_the_folder_again_when_a_failed_first_start_removed_it(tmp_path: Path):
    """Two first ``esdl up`` of one project: the first fails and removes the folder (lock file and all)
    while the second waits for the lock; the second then locks a new file in a new folder."""
    import threading

    from platform_lib.local import supervisor

    layout = ProjectLayout.for_project("demo", base=tmp_path)
    said: list[str] = []
    got = threading.Event()
    with supervisor._project_lock(layout, said.append):
        second = threading.Thread(target=lambda: _lock_and_note(supervisor, layout, said, got))
        second.start()
        while not said:  # the second waits, and says so
            second.join(0.05)
        supervisor._remove_first_start(layout)
    second.join(10)
    assert got.is_set() and "waiting for it" in said[0]
    assert not layout.root.exists()  # the second removed its own first start too


def _lock_and_note(supervisor, layout: ProjectLayout, said: list[str], got) -> None:
    with supervisor._project_lock(layout, said.append):
        assert (layout.root / supervisor.LOCK_FILE).exists()
        got.set()
        supervisor._remove_first_start(layout)  # failed too
