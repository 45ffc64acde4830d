"""The embedded platform: per-project JupyterHub + configurable-http-proxy + Dask Gateway on one machine.

``esdl up --project demo`` calls :func:`up`, ``esdl down`` :func:`down`, ``esdl status`` :func:`status`.
The modules: ``layout`` (state folder, ports, credentials), ``configs`` (generated traitlets configs),
``supervisor`` (processes), ``session`` (what a user's server finds), ``auth`` and ``spawner`` (loaded
by the hub process only, as ``platform_lib/gateway_policy.py`` by the gateway). User guide:
``docs/platform.md``.

>>> import tempfile
>>> from unittest import mock
>>> from platform_lib.local import status
>>> with mock.patch.dict("os.environ", {"ESDL_STATE_DIR": tempfile.mkdtemp()}):
...     status(["demo"])  # never started here: nothing to report
[]
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
