"""The spawner of the embedded platform: JupyterHub's local process spawner that returns once the server answers.

:class:`ProjectLocalProcessSpawner` is ``SimpleLocalProcessSpawner`` (hub users need not be Unix users)
with one change: :meth:`~ProjectLocalProcessSpawner.start` waits for the new server's ``/api`` to answer,
checking every :attr:`~ProjectLocalProcessSpawner.ready_poll_interval` seconds (0.1 s), before it hands
the address to the hub. The hub then finds the server up at its first check, instead of discovering it
through its own exponential back-off with random waits of up to 5 s (``jupyterhub.utils.
exponential_backoff``), which adds 0-3 s, at random, to every login. A server that exits while starting
(a wrong argument, a broken environment) is reported at once, with its exit code, instead of after the
hub's ``http_timeout``.

:class:`ProjectAccountSpawner` is the same on top of ``LocalProcessSpawner``, for a platform run as root:
each person's server (and so their kernels and terminals) runs under their own OS account
(:attr:`~ProjectAccountSpawner.os_accounts`, made by ``platform_lib.local.accounts``), in their own home,
with umask 002 (what they write to the set-gid team folder stays readable by the team). Loaded by the hub
from this file (see ``configs.PROCESS_MODULES``): it may import
only the standard library and the hub's own packages, never ``platform_lib``.

>>> ProjectLocalProcessSpawner.ready_poll_interval.default_value
0.1
>>> issubclass(ProjectLocalProcessSpawner, SimpleLocalProcessSpawner)
True
>>> issubclass(ProjectAccountSpawner, LocalProcessSpawner)
True
"""

from __future__ import annotations

import asyncio
import os
import pwd
import time

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, set_user_setuid
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Dict, Float


class ServerExited(RuntimeError):
    """The user's server exited while starting."""


class _ReadyWhenAnswering(LocalProcessSpawner):
    """``start()`` returns when the server's API answers (mixed into a local process spawner)."""

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


class ProjectLocalProcessSpawner(_ReadyWhenAnswering, SimpleLocalProcessSpawner):
    """``SimpleLocalProcessSpawner`` (every server runs as the hub's user) whose ``start()`` returns when the
    server's API answers."""


class ProjectAccountSpawner(_ReadyWhenAnswering, LocalProcessSpawner):
    """``LocalProcessSpawner`` that runs each person's server under their OS account (see the module)."""

    os_accounts = Dict(
        help="Hub user -> OS account. A user without one gets no server (the spec decides who has one)."
    ).tag(config=True)

    def os_account(self) -> pwd.struct_passwd:
        """The OS account of this spawner's user (``PermissionError`` if they have none)."""
        account = self.os_accounts.get(self.user.name)
        if account is None:
            raise PermissionError(f"{self.user.name!r} has no OS account on this platform, so no server")
        return pwd.getpwnam(account)

    @property
    def home_dir(self) -> str:
        return self.os_account().pw_dir

    def make_preexec_fn(self, name):
        switch = set_user_setuid(self.os_account().pw_name)

        def preexec():  # runs in the child, before exec
            os.umask(0o002)
            switch()

        return preexec

    def user_env(self, env):
        entry = self.os_account()
        env["USER"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = "/bin/bash"  # the account's own shell is nologin; JupyterLab's terminals need one
        return env
