"""The Earth System Data Lab platform library.

Find and open the platform's data cubes by name:

>>> import platform_lib
>>> "esdc-demo-ts" in platform_lib.list_cubes()
True
>>> platform_lib.describe_cube("esdc-demo-ts")["chunking"]
'ts'

``open_cube(name, variables=, bbox=, time_range=)`` returns a lazy, dask-backed ``xarray.Dataset``.
The heavier parts live in sub-modules (``platform_lib.compute``, ``.analysis``, ``.ml``, ``.viz``,
``.local``, ``.deploy``) and import their optional dependencies only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["describe_cube", "list_cubes", "open_cube"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from platform_lib.catalog import describe_cube, list_cubes, open_cube


def __getattr__(name: str) -> Any:
    # lazy: `import platform_lib` (and so the esdl command, the hub and the gateway) need not pay for
    # importing xarray and pandas until a cube function is used
    if name in __all__:
        from platform_lib import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'platform_lib' has no attribute {name!r}")
