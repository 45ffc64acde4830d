#!/usr/bin/env python3
"""Smoke checks of the ESDL user/worker image, run inside its environment (the Dockerfile runs them at
build time; the tests run them in environments installed from ``requirements.lock``).

    python smoke_check.py --role notebook --notebooks /opt/esdl/notebooks
    python smoke_check.py --role worker

Each role imports what it needs and reports the versions that must be equal between a notebook (the
dask client) and its workers -- distributed's own list of packages it compares between client,
scheduler and workers -- as JSON on the last line of output. Exit status 1 names every failed check.
The notebook role also checks the JupyterLab extensions (dask-labextension, ipywidgets' manager,
jupyter-resource-usage) and the curated notebooks.

This file runs without the platform installed in the environment under test; it imports only the
standard library at module level.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: packages whose versions must be equal on every role (besides distributed's own list)
SAME_EVERYWHERE = [
    "dask",
    "distributed",
    "dask-gateway",
    "cloudpickle",
    "msgpack",
    "numpy",
    "pandas",
    "xarray",
    "zarr",
]
#: modules each role imports (distribution names are checked for versions below); a worker imports
#: exactly the packages that must match its notebook
IMPORTS = {
    "worker": [name.replace("-", "_") for name in SAME_EVERYWHERE],
    "notebook": [
        "dask",
        "distributed",
        "dask_gateway",
        "jupyterlab",
        "jupyter_server",
        "jupyterhub.singleuser",
        "ipykernel",
        "ipywidgets",
        "dask_labextension",
        "jupyter_resource_usage",
        "numpy",
        "pandas",
        "xarray",
        "zarr",
    ],
}
#: JupyterLab extensions the notebook role must have, as `jupyter labextension list` names them
LAB_EXTENSIONS = [
    "dask-labextension",
    "@jupyter-widgets/jupyterlab-manager",
    "@jupyter-server/resource-usage",
]
#: Jupyter Server extensions the notebook role must have enabled (the sidebar's clusters; the status bar's
#: memory and CPU)
SERVER_EXTENSIONS = ["dask_labextension", "jupyter_resource_usage"]


def role_versions() -> dict[str, str | None]:
    """Versions of the packages that must match between client, scheduler and workers."""
    names = list(SAME_EVERYWHERE)
    try:
        from distributed.versions import optional_packages, required_packages

        names += [*required_packages, *optional_packages]
    except ImportError:
        pass
    out: dict[str, str | None] = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in sorted(set(names)):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def check_imports(role: str) -> list[str]:
    problems = []
    for module in IMPORTS[role]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is a broken image
            problems.append(f"import {module}: {exc.__class__.__name__}: {exc}")
    return problems


def check_lab_extensions() -> list[str]:
    """Prebuilt JupyterLab extensions present (and not disabled) and the dask server extension enabled,
    read where JupyterLab and Jupyter Server read them (jupyter_core's data and config paths)."""
    try:
        from jupyter_core.paths import jupyter_config_path, jupyter_path
    except ImportError as exc:
        return [f"JupyterLab extensions: cannot look for them ({exc})"] + [
            f"JupyterLab extension {ext} is not installed" for ext in LAB_EXTENSIONS
        ]
    problems = []
    ext_dirs = [Path(p) for p in jupyter_path("labextensions")]
    disabled: set[str] = set()
    enabled_server: dict[str, bool] = {}
    for config_dir in map(Path, reversed(jupyter_config_path())):  # lowest precedence first
        for page_config in config_dir.glob("labconfig/page_config.json"):
            disabled |= {
                k for k, v in json.loads(page_config.read_text()).get("disabledExtensions", {}).items() if v
            }
        for fragment in sorted(config_dir.glob("jupyter_server_config.d/*.json")):
            enabled_server.update(
                json.loads(fragment.read_text()).get("ServerApp", {}).get("jpserver_extensions", {})
            )
    for ext in LAB_EXTENSIONS:
        manifest = next(
            (d / ext / "package.json" for d in ext_dirs if (d / ext / "package.json").is_file()), None
        )
        if manifest is None:
            problems.append(
                f"JupyterLab extension {ext} is not installed (looked in {', '.join(map(str, ext_dirs))})"
            )
        elif ext in disabled:
            problems.append(f"JupyterLab extension {ext} is disabled")
    for ext in SERVER_EXTENSIONS:
        if not enabled_server.get(ext):
            problems.append(f"the Jupyter Server extension {ext} is not enabled")
    return problems


def check_notebooks(folder: Path) -> list[str]:
    notebooks = sorted(folder.glob("**/*.ipynb")) if folder.is_dir() else []
    if not notebooks:
        return [f"no curated notebooks (*.ipynb) in {folder}"]
    problems = []
    for path in notebooks:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"notebook {path}: not readable JSON ({exc})")
            continue
        if doc.get("nbformat") != 4 or not isinstance(doc.get("cells"), list):
            problems.append(f"notebook {path}: not an nbformat 4 notebook")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke checks of the ESDL user/worker image.")
    parser.add_argument("--role", choices=sorted(IMPORTS), required=True)
    parser.add_argument("--notebooks", type=Path, help="folder of curated notebooks (notebook role)")
    parser.add_argument(
        "--also-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="more modules to import (repeatable)",
    )
    args = parser.parse_args(argv)
    IMPORTS[args.role] += args.also_import
    problems = check_imports(args.role)
    if args.role == "notebook":
        problems += check_lab_extensions()
        if args.notebooks is not None:
            problems += check_notebooks(args.notebooks)
    versions = role_versions()
    problems += [f"{name} is not installed" for name in SAME_EVERYWHERE if versions.get(name) is None]
    for problem in problems:
        print(f"FAILED: {problem}")
    print(f"{args.role}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    print(json.dumps({"role": args.role, "ok": not problems, "versions": versions}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
