"""A small HTTP client for a running hub: log in through the real form, spawn, run code in the kernel.

It does what a browser and a notebook do, with ``requests`` and a kernel websocket (both come with the
hub extra), so smoke checks, tests and ``bench/platform_startup.py`` exercise the real login page (with
its xsrf token), the real spawn and OAuth hand-off to the user's server, and the user's own kernel.

>>> client = HubClient("http://127.0.0.1:9/")
>>> client.base_url
'http://127.0.0.1:9'
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from platform_lib.errors import EsdlError


class LoginFailed(EsdlError):
    """The hub refused the user name and password."""


class KernelError(EsdlError):
    """Code run in a user's kernel raised; the message has the traceback."""


class HubClient:
    """One person's browser-like session with a hub (cookies, xsrf) plus an API token once logged in."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        import requests

        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        self.user: str | None = None
        self.token: str | None = None

    # --- login ----------------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> None:
        """Log in through the login form (GET for the xsrf cookie, then POST); raise :class:`LoginFailed`."""
        page = self.session.get(f"{self.base_url}/hub/login", timeout=self.timeout)
        page.raise_for_status()
        xsrf = self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get("_xsrf")
        resp = self.session.post(
            f"{self.base_url}/hub/login?next=",
            data={"username": username, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=self.timeout,
        )
        if (
            resp.status_code not in (301, 302, 303)
            or "login" in resp.headers.get("Location", "").split("?")[0]
        ):
            raise LoginFailed(f"login as {username!r} was refused (HTTP {resp.status_code})")
        self.user = username

    def xsrf_headers(self) -> dict[str, str]:
        """The header the hub wants on a form or API ``POST`` made with the login cookie (its XSRF check)."""
        xsrf = self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get("_xsrf") or ""
        return {"X-XSRFToken": xsrf}

    def api_token(self, note: str = "esdl client", scopes: list[str] | None = None) -> str:
        """A hub API token of the logged-in user (all the user's permissions unless ``scopes`` narrows them)."""
        body: dict[str, Any] = {"note": note, "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        resp = self.session.post(
            f"{self.base_url}/hub/api/users/{self.user}/tokens",
            json=body,
            headers=self.xsrf_headers(),
            timeout=self.timeout,
        )
        resp.raise_for_status()
        return resp.json()["token"]

    # --- spawn ----------------------------------------------------------------------------------------
    def open_lab(self, timeout: float = 120.0) -> str:
        """Start the user's server the way the browser does (``/hub/spawn``) and wait for JupyterLab's page.

        Returns the HTML of ``/user/<name>/lab`` (after the OAuth hand-off to the server).
        """
        self.session.get(f"{self.base_url}/hub/spawn", timeout=self.timeout)
        t0 = time.monotonic()
        while True:
            resp = self.session.get(f"{self.base_url}/user/{self.user}/lab", timeout=self.timeout)
            if (
                resp.status_code == 200
                and f"/user/{self.user}/lab" in resp.url
                and "jupyter-config-data" in resp.text
            ):
                return resp.text
            if time.monotonic() - t0 > timeout:
                raise EsdlError(
                    f"JupyterLab of {self.user!r} not ready after {timeout:.0f} s (last HTTP {resp.status_code})"
                )
            time.sleep(0.2)

    def server_api(self, method: str, path: str, **kwargs: Any):
        """Call the user's Jupyter server REST API (``/user/<name>/api/...``) with the API token."""
        if self.token is None:
            self.token = self.api_token()
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        resp = self.session.request(
            method,
            f"{self.base_url}/user/{self.user}/api/{path.lstrip('/')}",
            headers=headers,
            timeout=self.timeout,
            **kwargs,
        )
        return resp

    def list_dir(self, path: str = "") -> list[str]:
        """Names in a folder of the user's home, as JupyterLab's file browser lists them."""
        resp = self.server_api("GET", f"contents/{path}")
        resp.raise_for_status()
        return sorted(item["name"] for item in resp.json()["content"])

    # --- kernels --------------------------------------------------------------------------------------
    def start_kernel(self) -> str:
        resp = self.server_api("POST", "kernels", json={"name": "python3"})
        resp.raise_for_status()
        return resp.json()["id"]

    def run(self, kernel_id: str, code: str, timeout: float = 180.0) -> str:
        """Execute ``code`` in the kernel and return its printed output; raise :class:`KernelError` on error."""
        import websocket

        ws_url = (
            self.base_url.replace("http", "ws", 1) + f"/user/{self.user}/api/kernels/{kernel_id}/channels"
        )
        ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout
        )
        try:
            msg_id = uuid.uuid4().hex
            ws.send(
                json.dumps(
                    {
                        "header": {"msg_id": msg_id, "username": self.user, "session": uuid.uuid4().hex,
                                   "msg_type": "execute_request", "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                    "allow_stdin": False, "stop_on_error": True},
                    }
                )
            )  # fmt: skip
            out: list[str] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    out.append(content["data"].get("text/plain", "") + "\n")
                elif kind == "error":
                    raise KernelError(
                        f"{content['ename']}: {content['evalue']}\n"
                        + _strip_ansi("\n".join(content["traceback"]))
                    )
                elif kind == "status" and content["execution_state"] == "idle":
                    return "".join(out)
            raise KernelError(f"code did not finish within {timeout:.0f} s; output so far: {''.join(out)!r}")
        finally:
            ws.close()

    def run_in_terminal(self, command: str, timeout: float = 60.0) -> str:
        """Type ``command`` into a new JupyterLab terminal and return what the terminal printed until it
        finished (the terminal's own shell, as a person at the keyboard gets it)."""
        import websocket

        resp = self.server_api("POST", "terminals")
        resp.raise_for_status()
        name = resp.json()["name"]
        ws_url = self.base_url.replace("http", "ws", 1) + f"/user/{self.user}/terminals/websocket/{name}"
        ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout
        )
        done = f"esdl-done-{uuid.uuid4().hex[:8]}"
        try:
            # the marker is printed by the shell after the command; its text on the command line is split
            ws.send(json.dumps(["stdin", f"{command}; echo {done[:5]}''{done[5:]}\r"]))
            out: list[str] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                kind, *rest = json.loads(ws.recv())
                if kind == "stdout":
                    out.append(rest[0])
                    if done in "".join(out):
                        return _strip_ansi("".join(out)).split(done)[0]
            raise KernelError(
                f"the terminal did not finish {command!r} within {timeout:.0f} s: {''.join(out)!r}"
            )
        finally:
            ws.close()
            self.server_api("DELETE", f"terminals/{name}")

    def stop_server(self) -> None:
        """Stop the user's server through the hub API."""
        self.session.delete(
            f"{self.base_url}/hub/api/users/{self.user}/server",
            headers=self.xsrf_headers(),
            timeout=self.timeout,
        )


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # colours, and a terminal's modes (bracketed paste)
