"""The package: importable without the heavy extras, the command's help is complete, its packaging
metadata names only files that exist."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import platform_lib

HEAVY = [
    "torch",
    "keras",
    "lexcube",
    "helm_python",
    "kubernetes",
    "kubernetes_validate",
    "jupyterhub",
    "dask_gateway",
    "dask_gateway_server",
    "kubespawner",
    "nativeauthenticator",
    "matplotlib",
    "ipywidgets",
]

BLOCK_AND_IMPORT = """
import importlib, importlib.abc, pkgutil, sys
heavy = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in heavy:
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, Block())
import platform_lib
names = [m.name for m in pkgutil.walk_packages(platform_lib.__path__, "platform_lib.") if not m.name.endswith("__main__")]
plugins = set(sys.argv[2].split(","))
failed = []
for name in names:
    if name in plugins:
        continue
    try:
        importlib.import_module(name)
    except ImportError as exc:
        # an adapter module may refuse to import, but only with a message that names the extra
        if "pip install 'esdl-platform[" not in str(exc):
            failed.append(f"{name}: {exc}")
assert not failed, failed
leaked = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
assert not leaked, leaked
print(len(names) - len(plugins))
"""


# Plugin classes that subclass a hub or gateway class; only the hub / gateway processes load them.
PLUGINS = ["platform_lib.gateway_policy", "platform_lib.local.auth", "platform_lib.local.spawner"]


def test_every_module_imports_without_the_heavy_extras():
    res = subprocess.run(
        [sys.executable, "-c", BLOCK_AND_IMPORT, ",".join(HEAVY), ",".join(PLUGINS)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    modules = [m.name for m in pkgutil.walk_packages(platform_lib.__path__, "platform_lib.")]
    assert set(PLUGINS) <= set(modules)
    expected = len([m for m in modules if not m.endswith("__main__")]) - len(PLUGINS)
    assert int(res.stdout.strip()) == expected >= 20


def test_esdl_help_lists_every_command_group():
    from platform_lib.cli import COMMAND_GROUPS

    res = subprocess.run(
        [sys.executable, "-m", "platform_lib.cli", "--help"], capture_output=True, text=True, check=True
    )
    for group in ("cubes", "catalog", "project", "up", "down", "status", "share"):
        assert group in res.stdout, group
    assert len(COMMAND_GROUPS) == len(set(COMMAND_GROUPS))


def test_public_api():
    from platform_lib import catalog

    assert set(platform_lib.__all__) == {"list_cubes", "describe_cube", "open_cube"}
    for name in platform_lib.__all__:  # lazy attributes: the catalog module's functions themselves
        assert getattr(platform_lib, name) is getattr(catalog, name), name
    with pytest.raises(AttributeError, match="has no attribute 'open_cubes'"):
        platform_lib.open_cubes  # noqa: B018 - the attribute access is what is tested


def test_every_package_data_pattern_matches_a_file():
    """A pattern in ``[tool.setuptools.package-data]`` that matches nothing ships nothing: drop it."""
    root = Path(platform_lib.__file__).resolve().parent.parent
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert package_data, "no package-data table"
    unmatched = []
    for package, patterns in package_data.items():
        folder = root / package.replace(".", "/")
        assert folder.is_dir(), f"package-data names {package!r}, which is not a package folder"
        unmatched += [f"{package}: {p}" for p in patterns if not any(f.is_file() for f in folder.glob(p))]
    assert not unmatched, f"package-data patterns that match no file: {unmatched}"


# ---------------------------------------------------------------------------------------------------------
# the layers of docs/development.md: a module imports only from its own layer or the layers below

LAYERS = {
    "errors": 0, "arguments": 0, "paths": 0, "storage": 0, "chunks": 0, "strict_yaml": 0,
    "projects": 1, "catalog": 1, "team": 1, "plan": 1, "demo": 1, "regional": 1, "rechunk": 1, "gateway": 1,
    "compute": 2,
    "analysis": 3, "ml": 3, "viz": 3, "challenge": 3,
    "local": 4, "deploy": 4, "health": 4,
    "cli": 5,
}  # fmt: skip
#: modules that run inside the hub or the gateway (loaded by path or inlined): no platform_lib at all
PROCESS_SIDE = {
    "platform_lib.gateway_policy",
    "platform_lib.local.auth",
    "platform_lib.local.spawner",
    "platform_lib.local.session",
    "platform_lib.deploy.hub_hooks",
}


def _imports() -> dict[str, list[tuple[str, list[str], int]]]:
    """Each module of platform_lib -> the platform_lib modules it imports (eagerly or inside functions),
    with the names it takes from them and the line."""
    import ast

    root = Path(platform_lib.__file__).resolve().parent
    modules = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    found: dict[str, list[tuple[str, list[str], int]]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found[name] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:  # relative import
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, target] if target else base)
                if not target.startswith("platform_lib"):
                    continue
                for alias in node.names:  # `from platform_lib.x import y` where y is a module
                    sub = f"{target}.{alias.name}"
                    found[name].append(
                        (sub, [], node.lineno) if sub in modules else (target, [alias.name], node.lineno)
                    )
            elif isinstance(node, ast.Import):
                found[name] += [
                    (a.name, [], node.lineno) for a in node.names if a.name.startswith("platform_lib")
                ]
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_modules_import_only_their_own_or_lower_layers():
    unknown, upward, process_side = [], [], []
    for module, imports in _imports().items():
        if module in ("platform_lib", "platform_lib.__main__"):
            continue
        if _layer(module) is None and module not in PROCESS_SIDE:
            unknown.append(module)
        for target, _, line in imports:
            if module in PROCESS_SIDE:
                process_side.append(f"{module}:{line} imports {target}")
            elif target != "platform_lib" and (_layer(target) or 0) > (_layer(module) or 0):
                upward.append(
                    f"{module} (layer {_layer(module)}):{line} imports {target} (layer {_layer(target)})"
                )
    assert not unknown, f"modules in no layer of docs/development.md (add them to LAYERS): {unknown}"
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
    assert not process_side, "process-side modules import platform_lib:\n" + "\n".join(process_side)


def test_no_import_circles():
    graph = {m: {t for t, _, _ in imports} for m, imports in _imports().items()}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in graph.get(module, ()):
            if target == path[0]:
                circles.append(" -> ".join([*path, target]))
            elif target not in path and target in graph and target > path[0]:
                visit(target, [*path, target])

    for module in graph:
        if module != "platform_lib":  # the package's lazy attributes point down into catalog
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{module}:{line} takes {', '.join(n for n in names if n.startswith('_'))} from {target}"
        for module, imports in _imports().items()
        for target, names, line in imports
        if target != module and any(n.startswith("_") for n in names)
    ]
    assert not private, "\n".join(private)


def test_without_chromium_every_browser_test_skips_with_one_reason_before_starting_anything(tmp_path: Path):
    """``make test`` on a machine where Chromium could not be installed: the browser tests skip, all with
    the same reason, and their platform fixtures never start (pytest run on them, Chromium hidden)."""
    import os

    from platform_helpers import NO_CHROMIUM

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ESDL_TEST_CHROMIUM": str(tmp_path / "no-chromium")}
    files = ["tests/test_platform_e2e.py", "tests/test_notebooks.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "browser", "-q", "-rs", "-p", "no:cacheprovider"]
        + ["--basetemp", str(tmp_path / "run"), *files],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    one_reason = f"SKIPPED [2] tests/conftest.py:{skips[0].split(':')[1]}: {NO_CHROMIUM}"
    assert skips == [one_reason], run.stdout
    assert "2 skipped, " in run.stdout and "passed" not in run.stdout and "error" not in run.stdout
    made = [p.name for p in (tmp_path / "run").glob("*")]
    assert not [name for name in made if name.startswith("platform")], made  # no platform was started
