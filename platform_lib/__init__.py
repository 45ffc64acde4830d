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

from platform_lib.catalog import describe_cube, list_cubes, open_cube

__all__ = ["describe_cube", "list_cubes", "open_cube"]
__version__ = "0.1.0"
