"""Checks that run inside a built ESDL image as its user (``make image-test`` mounts this folder and runs
``python image_checks.py CHECK ...``; images/build.py drives them). Each prints one summary line last
and exits non-zero (an ``AssertionError`` or an import error) when the image is wrong.

    platform                    platform_lib imports and lists the catalog with no state folder
    cube EXPECTED_JSON          the demo cube in ESDL_DATA_DIR opens and reads what the host computed
    dask ADDRESS                a client computes on the scheduler and worker at ADDRESS, same versions
    notebook-imports IMAGE      every import of the curated notebooks succeeds (esdl-user: not the ML ones)
    torch-step                  a tiny torch model trains one step (esdl-user-ml)

Only the standard library is imported at module level (the host imports :func:`cube_summary` too).

>>> sorted(ML_MODULES)
['keras', 'platform_lib.ml.keras', 'platform_lib.ml.torch', 'torch']
"""

from __future__ import annotations

import ast
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

#: what only esdl-user-ml has; in esdl-user, notebooks importing these are the ML image's
ML_MODULES = {"torch", "keras", "platform_lib.ml.torch", "platform_lib.ml.keras"}
#: the demo cube's variables the cube check reads
CUBE_VARIABLES = ("air_temperature_2m", "kndvi")


def cube_summary(name: str = "esdc-demo-ts") -> dict[str, float]:
    """Per-variable NaN-aware means, the cell count and the summed intrinsic dimension map of a demo cube,
    read through the catalog (the catalog in ``ESDL_CATALOG``, the stores in ``ESDL_DATA_DIR``)."""
    import numpy as np

    from platform_lib.catalog import open_cube

    ds = open_cube(name, variables=list(CUBE_VARIABLES))
    out = {f"mean:{v}": float(np.nanmean(ds[v].values)) for v in CUBE_VARIABLES}
    out["cells"] = float(ds[CUBE_VARIABLES[0]].size)
    from platform_lib.analysis import intrinsic_dimension

    # the compiled analysis kernels (numba, llvmlite: stripped of debug symbols in the image) agree too
    out["intrinsic_dimension:sum"] = float(np.nansum(intrinsic_dimension(ds, list(CUBE_VARIABLES)).values))
    return out


def check_platform() -> str:
    import platform_lib
    from platform_lib.catalog import list_cubes
    from platform_lib.paths import repo_root

    assert "ESDL_STATE_DIR" not in os.environ, "the check runs with no state folder configured"
    names = list_cubes()
    assert {"esdc-demo-ts", "esdc-demo-map"} <= set(names), names
    state = repo_root() / ".esdl-state"
    assert not state.exists(), f"{state} was created"
    home = Path.home()  # its dot folders: caches and settings (a mounted team folder is not the image's)
    dots = [p for p in home.glob(".*") for p in [p, *(p.rglob("*") if p.is_dir() else [])]]
    not_mine = [str(p) for p in [home, *dots] if p.lstat().st_uid != os.getuid()]
    assert not not_mine, (
        f"the user's home holds what the user does not own (left by the build): {not_mine[:5]}"
    )
    assert not os.access(repo_root(), os.W_OK), f"{repo_root()} is writable by the image's user"
    help_text = subprocess.run(["esdl", "--help"], capture_output=True, text=True, check=True).stdout
    assert "cubes" in help_text and "project" in help_text, help_text
    return (
        f"platform_lib from {Path(platform_lib.__file__).parent}, {len(names)} catalog cubes, `esdl --help` ok,"
        f" uid {os.getuid()}, no {state}"
    )


def check_cube(expected: dict[str, float]) -> str:
    got = cube_summary()
    assert set(got) == set(expected), (got, expected)
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-6), (
            f"{key}: {got[key]} in the image, {value} on the host"
        )
    return f"esdc-demo-ts from {os.environ['ESDL_DATA_DIR']}: {int(got['cells'])} cells; means and intrinsic dimensions (compiled kernels) equal the host's"


def check_dask(address: str) -> str:
    import dask.array as da
    import numpy as np
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(1, timeout=120)
        versions = client.get_versions(check=True)  # raises if scheduler, worker and client differ
        x = da.arange(1_000_000, chunks=100_000)
        total = int(x.sum().compute())
        assert total == int(np.arange(1_000_000).sum()), total
        workers = list(client.scheduler_info()["workers"])
        processed = client.run(lambda: os.getuid())
    assert set(processed.values()) == {1000}, processed
    python = versions["scheduler"]["host"]["python"]
    return f"sum over {len(workers)} worker(s) = {total}; client, scheduler, worker agree (Python {python})"


def notebook_imports(folder: Path) -> dict[str, list[str]]:
    """``{notebook: [imported module names]}`` of the code cells of every notebook in ``folder``."""
    out = {}
    for path in sorted(folder.glob("*.ipynb")):
        modules: list[str] = []
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
            try:
                tree = ast.parse("\n".join(lines))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.append(node.module)
        out[path.name] = list(dict.fromkeys(modules))
    return out


def check_notebook_imports(image: str) -> str:
    from platform_lib.paths import repo_root

    folder = repo_root() / "notebooks"
    found = notebook_imports(folder)
    assert found, f"no notebooks in {folder}"
    failed: dict[str, list[str]] = {}
    for notebook, modules in found.items():
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                failed.setdefault(notebook, []).append(f"{module} ({exc.__class__.__name__})")
    ml_only = {nb for nb, mods in found.items() if set(mods) & ML_MODULES}
    if image == "esdl-user-ml":
        assert not failed, failed
        return f"{len(found)} notebooks, {sum(map(len, found.values()))} imports, all succeed"
    # esdl-user: exactly the ML modules fail, and only in the notebooks that use them
    unexpected = {nb: [m for m in mods if m.split(" ")[0] not in ML_MODULES] for nb, mods in failed.items()}
    assert not any(unexpected.values()), unexpected
    assert set(failed) == ml_only, (failed, ml_only)
    return (
        f"{len(found)} notebooks: {len(found) - len(ml_only)} import everything;"
        f" {', '.join(sorted(ml_only))} need esdl-user-ml ({'; '.join(sorted({m for v in failed.values() for m in v}))})"
    )


def check_torch_step() -> str:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(64, 4)
    y = x.sum(dim=1, keepdim=True)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        after_loss = torch.nn.functional.mse_loss(model(x), y)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed == len(before), f"{changed} of {len(before)} parameter tensors changed"
    assert math.isfinite(loss.item()) and after_loss.item() < loss.item(), (loss.item(), after_loss.item())
    import keras

    assert keras.backend.backend() == "torch", keras.backend.backend()
    return (
        f"torch {torch.__version__}: loss {loss.item():.3f} -> {after_loss.item():.3f} after one SGD step;"
        f" keras {keras.__version__} on the {keras.backend.backend()} backend"
    )


def main(argv: list[str]) -> int:
    check, *args = argv
    if check == "platform":
        print(check_platform())
    elif check == "cube":
        print(check_cube(json.loads(args[0])))
    elif check == "dask":
        print(check_dask(args[0]))
    elif check == "notebook-imports":
        print(check_notebook_imports(args[0]))
    elif check == "torch-step":
        print(check_torch_step())
    else:
        raise SystemExit(f"unknown check {check!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
