"""The spawner of the embedded platform: JupyterHub's local process spawner that returns once the server answers.

:class:`ProjectLocalProcessSpawner` is ``SimpleLocalProcessSpawner`` (hub users need not be Unix users)
with one change: :meth:`~ProjectLocalProcessSpawner.start` waits for the new server's ``/api`` to answer,
checking every :attr:`~ProjectLocalProcessSpawner.ready_poll_interval` seconds (0.1 s), before it hands
the address to the hub. The hub then finds the server up at its first check, instead of discovering it
through its own exponential back-off with random waits of up to 5 s (``jupyterhub.utils.
exponential_backoff``), which adds 0-3 s, at random, to every login. A server that exits while starting
(a wrong argument, a broken environment) is reported at once, with its exit code, instead of after the
hub's ``http_timeout``. Loaded by the hub from this file (see ``configs.PROCESS_MODULES``): it may import
only the standard library and the hub's own packages, never ``platform_lib``.

>>> ProjectLocalProcessSpawner.ready_poll_interval.default_value
0.1
>>> issubclass(ProjectLocalProcessSpawner, SimpleLocalProcessSpawner)
True
"""

from __future__ import annotations

import asyncio
import time

from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Float


class ServerExited(RuntimeError):
    """The user's server exited while starting."""


class ProjectLocalProcessSpawner(SimpleLocalProcessSpawner):
    """``SimpleLocalProcessSpawner`` whose ``start()`` returns when the server's API answers."""

    ready_poll_interval = Float(
        0.1, help="Seconds between checks that a starting server answers (0 = leave it to the hub)."
    ).tag(config=True)

    async def start(self):
        ip, port = await super().start()
        if self.ready_poll_interval > 0:
            await self._wait_ready(f"http://{ip}:{port}", min(self.http_timeout, self.start_timeout))
        return ip, port

    async def _wait_ready(self, origin: str, timeout: float) -> None:
        """Poll ``<origin><base_url>api`` until it answers (any status below 500), the process exits
        (:class:`ServerExited`) or ``timeout`` passes (then the hub's own check takes over)."""
        base_url = self.server.base_url if self.server is not None else f"/user/{self.user.name}/"
        url = url_path_join(origin, base_url, "api")
        client = AsyncHTTPClient()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.proc.poll() if self.proc is not None else None
            if status is not None:
                raise ServerExited(
                    f"the server of {self.user.name!r} exited with code {status} while starting;"
                    " its output is in the hub's log just above"
                )
            try:
                resp = await client.fetch(
                    HTTPRequest(url, follow_redirects=False, request_timeout=2.0), raise_error=False
                )
            except Exception:  # noqa: BLE001 - refused, reset or closed: not listening yet
                resp = None
            if resp is not None and 0 < resp.code < 500:
                return
            await asyncio.sleep(self.ready_poll_interval)
