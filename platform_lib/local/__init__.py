"""The embedded platform: per-project JupyterHub + configurable-http-proxy + Dask Gateway on one machine.

``esdl up --project demo`` calls :func:`up`, ``esdl down`` :func:`down`, ``esdl status`` :func:`status`.
The modules: ``layout`` (state folder, ports, credentials), ``configs`` (generated traitlets configs),
``supervisor`` (processes), ``session`` (what a user's server finds), ``auth`` and ``gateway_backend``
(imported by the hub and gateway processes only). User guide: ``docs/platform.md``.

>>> from platform_lib.local import up, down, status
>>> callable(up) and callable(down) and callable(status)
True
"""

from platform_lib.local.supervisor import (
    PlatformStartError,
    ProjectStatus,
    down,
    run_foreground,
    status,
    up,
)

__all__ = ["PlatformStartError", "ProjectStatus", "down", "run_foreground", "status", "up"]
