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
