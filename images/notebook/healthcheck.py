#!/usr/bin/env python3
"""The ESDL images' health check (their ``HEALTHCHECK``): probe the role the container runs.

    esdl-healthcheck                 # the processes under PID 1 (tini) decide what is probed
    esdl-healthcheck --root-pid N    # the processes under N instead (tests, or a shell started by hand)

The container's process tree (PID 1 is ``tini``) is read from ``/proc``:

* a Jupyter server (``jupyterhub-singleuser``, ``jupyter lab``, ``jupyter server``): ``GET <its URL>api``
  must answer 200 (the port and base URL from its arguments or the hub's ``JUPYTERHUB_SERVICE_URL``);
* ``dask scheduler``: ``GET /health`` on its dashboard (``--dashboard-address``, default 8787) must say ok;
* ``dask worker``: ``/health`` on its dashboard if its arguments name one, else the process is alive;
* anything else (a shell, a script): healthy, with the command it found (the image runs many things).

Exit 0 when healthy, 1 when not; one line says what was probed. Only the standard library is imported.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

TIMEOUT = 5.0


def cmdline(pid: int, proc: Path = Path("/proc")) -> list[str]:
    """The arguments of process ``pid`` (``[]`` if it is gone)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def environ(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    """The environment of process ``pid`` (empty if unreadable)."""
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {key: value for key, _, value in pairs}


def children(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The child processes of ``pid``."""
    out: list[int] = []
    for task in (proc / str(pid) / "task").glob("*/children"):
        try:
            out += [int(word) for word in task.read_text().split()]
        except OSError:
            continue
    return out


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """``pid`` and every process below it, parents first."""
    seen, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        if current not in seen:
            seen.append(current)
            queue += children(current, proc)
    return seen


def _option(args: list[str], *names: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` for the first of ``names`` given."""
    for i, arg in enumerate(args):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(args):
                return args[i + 1]
    return None


def role(args: list[str]) -> str | None:
    """What a command line runs: ``jupyter``, ``scheduler``, ``worker`` or ``None``.

    >>> role(["/opt/esdl/venv/bin/python", "/opt/esdl/venv/bin/jupyterhub-singleuser", "--ip=0.0.0.0"])
    'jupyter'
    >>> role(["python", "/opt/esdl/venv/bin/dask", "scheduler", "--port", "8786"])
    'scheduler'
    >>> role(["tini", "-g", "--", "bash"]) is None
    True
    """
    names = [Path(a).name for a in args[:4]]
    if "jupyterhub-singleuser" in names or any(
        n in ("jupyter-lab", "jupyter-server", "jupyter-labhub") for n in names
    ):
        return "jupyter"
    if "jupyter" in names:
        after = args[names.index("jupyter") + 1 : names.index("jupyter") + 2]
        if after and after[0] in ("lab", "server", "labhub"):
            return "jupyter"
    if "dask" in names:
        after = args[names.index("dask") + 1 : names.index("dask") + 2]
        if after and after[0] in ("scheduler", "worker"):
            return after[0]
    if "dask-scheduler" in names:
        return "scheduler"
    if "dask-worker" in names:
        return "worker"
    return None


def jupyter_url(args: list[str], env: dict[str, str]) -> str:
    """The URL of a Jupyter server's REST API, from its arguments and environment.

    >>> jupyter_url(["jupyter", "lab", "--port=9999"], {})
    'http://127.0.0.1:9999/api'
    >>> jupyter_url(["jupyterhub-singleuser"], {"JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/ada/"})
    'http://127.0.0.1:8888/user/ada/api'
    """
    service = urlsplit(env.get("JUPYTERHUB_SERVICE_URL", ""))
    port = _option(args, "--port", "--ServerApp.port") or (str(service.port) if service.port else "8888")
    base = _option(args, "--ServerApp.base_url", "--base-url") or service.path or "/"
    if not base.endswith("/"):
        base += "/"
    return f"http://127.0.0.1:{port}{base}api"


def dashboard_url(args: list[str], default: str | None) -> str | None:
    """The ``/health`` URL of a dask process's dashboard (``None``: it has none we can know).

    >>> dashboard_url(["dask", "scheduler", "--dashboard-address", ":8790"], ":8787")
    'http://127.0.0.1:8790/health'
    >>> dashboard_url(["dask", "worker", "tcp://s:8786"], None) is None
    True
    """
    address = _option(args, "--dashboard-address") or default
    if not address or "--no-dashboard" in args:
        return None
    port = address.rsplit(":", 1)[-1]
    return f"http://127.0.0.1:{port}/health" if port.isdigit() and port != "0" else None


def get(url: str) -> tuple[bool, str]:
    """Whether ``url`` answers 200, and what it answered."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - a local URL
            return response.status == 200, f"{response.status} {response.read(200).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def check(root_pid: int = 1, proc: Path = Path("/proc")) -> tuple[bool, str]:
    """Probe the first ESDL role found under ``root_pid``; ``(healthy, what was probed)``."""
    found = [(pid, cmdline(pid, proc)) for pid in descendants(root_pid, proc)]
    found = [(pid, args) for pid, args in found if args]
    if not found:
        return False, f"no process {root_pid}"
    for pid, args in found:
        kind = role(args)
        if kind == "jupyter":
            url = jupyter_url(args, environ(pid, proc))
            ok, answer = get(url)
            return ok, f"jupyter server (pid {pid}): GET {url} -> {answer}"
        if kind in ("scheduler", "worker"):
            url = dashboard_url(args, ":8787" if kind == "scheduler" else None)
            if url is None:
                state = _state(pid, proc)
                alive = state not in ("Z", "X", "")
                return alive, f"dask {kind} (pid {pid}) without a dashboard: state {state}"
            ok, answer = get(url)
            return ok and "ok" in answer, f"dask {kind} (pid {pid}): GET {url} -> {answer}"
    return True, f"no ESDL role to probe under pid {root_pid} ({' '.join(found[-1][1])[:120]})"


def _state(pid: int, proc: Path) -> str:
    try:
        return (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Health check of an ESDL image's running role.")
    parser.add_argument("--root-pid", type=int, default=1, help="probe the processes under this one")
    args = parser.parse_args(argv)
    ok, what = check(args.root_pid)
    print(("healthy: " if ok else "UNHEALTHY: ") + what)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
