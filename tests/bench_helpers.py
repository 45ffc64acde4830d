"""A ``bench/`` script loaded as a module, so the suite smoke-runs every benchmark and none of them rots.

>>> with loaded_bench("cycle_dominance") as bench:
...     bench.VARIABLES[0]
'air_temperature_2m'
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from platform_lib.paths import repo_root


@contextmanager
def loaded_bench(name: str) -> Iterator[ModuleType]:
    """``bench/<name>.py`` as a module, registered in ``sys.modules`` as ``bench_<name>`` while in use
    (dataclasses and pickling look their module up there) and removed after; ``bench/`` is on
    ``sys.path`` meanwhile, as it is for a script run from there."""
    module_name = f"bench_{name}"
    folder = repo_root() / "bench"
    spec = importlib.util.spec_from_file_location(module_name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(folder))  # as when run as a script: its sibling helpers (fresh_process) import
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(module_name, None)
        sys.path.remove(str(folder))
