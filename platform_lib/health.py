"""``esdl project health NAME``: does a project's hub work end to end, on one machine or on Kubernetes?

With the hub service ``esdl-health``'s token (its role reaches only the user ``esdl-health``; 2i2c's hub
health check is the model) the check creates that user, starts its server, runs cells in its kernel
that open a catalog cube, start a 2-worker Dask Gateway cluster and compute on it, then shuts the cluster
and the server down. Each step's time is printed; the first failure stops the check (what was started
is still stopped) and the command exits 1.

Where the hub and the token come from: the embedded platform's state folder (``esdl up``), or the
project's release on Kubernetes (the hub's Secret, and the public Service's address unless ``--url``).

>>> [name for name, _ in STEPS]
['hub API', 'start server', 'open a catalog cube', 'gateway cluster of 2 workers', 'compute on the cluster', 'stop cluster', 'stop server']
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from platform_lib.deploy.release import Printer
from platform_lib.errors import EsdlError
from platform_lib.plan import HEALTH_SERVICE, HEALTH_USER

__all__ = ["HealthTarget", "STEPS", "check_health", "kubernetes_target", "local_target"]

OPEN_CUBE = """
import platform_lib
for _name in platform_lib.list_cubes():
    try:
        _cube = platform_lib.open_cube(_name)
        break
    except Exception:
        continue
else:
    raise RuntimeError("no cube of the catalog opens: " + ", ".join(platform_lib.list_cubes()))
_var = next(iter(_cube.data_vars))
print(_name, _var)
"""
START_CLUSTER = """
from dask_gateway import Gateway
_gateway = Gateway()
_cluster = _gateway.new_cluster()
_cluster.scale(2)
_client = _cluster.get_client()
_client.wait_for_workers(2, timeout=240)
print(len(_client.scheduler_info()["workers"]), "workers")
"""
COMPUTE = """
_value = _cube[_var].isel(time=slice(0, 4)).mean().compute()
print(float(_value))
"""
STOP_CLUSTER = """
for _thing in ("_client", "_cluster"):
    if _thing in globals():
        globals()[_thing].close() if _thing == "_client" else globals()[_thing].shutdown()
print("stopped")
"""
#: the steps in order (name, kernel code or None for a hub step)
STEPS = [
    ("hub API", None),
    ("start server", None),
    ("open a catalog cube", OPEN_CUBE),
    ("gateway cluster of 2 workers", START_CLUSTER),
    ("compute on the cluster", COMPUTE),
    ("stop cluster", STOP_CLUSTER),
    ("stop server", None),
]


@dataclass(frozen=True)
class HealthTarget:
    """A hub to check: its public address and the health service's token."""

    url: str
    token: str
    where: str


def local_target(project: str) -> HealthTarget:
    """The embedded platform of ``project`` (``esdl up``): its address and the service token in its state."""
    from platform_lib.local.layout import ProjectLayout

    layout = ProjectLayout.for_project(project)
    ports = layout.saved_ports()
    if ports is None or not layout.secret_file("health_token").exists():
        raise EsdlError(
            f"project {project!r} has no embedded platform here; start it with `esdl up --project {project}`"
        )
    return HealthTarget(
        f"http://127.0.0.1:{ports['public']}", layout.read_secret("health_token"), "this machine"
    )


def kubernetes_target(spec: Any, kube_context: str | None = None, url: str | None = None) -> HealthTarget:
    """The project's release: the token z2jh generated into the Secret ``hub``; the address of the
    ``proxy-public`` Service's load balancer unless ``url`` is given."""
    from platform_lib.deploy.release import kube_core
    from platform_lib.deploy.values import namespace_for, release_name

    core = kube_core(kube_context)
    namespace = namespace_for(spec)
    secret = core.read_namespaced_secret("hub", namespace)
    key = f"hub.services.{HEALTH_SERVICE}.apiToken"
    if key not in (secret.data or {}):
        raise EsdlError(
            f"the Secret {namespace}/hub has no {key!r}: deploy the project again (esdl project deploy)"
        )
    if url is None:
        service = core.read_namespaced_service("proxy-public", namespace)
        ingress = (service.status.load_balancer.ingress or []) if service.status.load_balancer else []
        if not ingress:
            raise EsdlError(
                f"the Service {namespace}/proxy-public has no external address (a LoadBalancer still pending, or"
                " NodePort/ClusterIP behind an ingress); pass the hub's address: --url https://hub.example.org"
            )
        url = f"http://{ingress[0].hostname or ingress[0].ip}"
    return HealthTarget(
        url.rstrip("/"), _secret_value(secret.data, key), f"release {release_name(spec)} in {namespace}"
    )


def _hub(target: HealthTarget, method: str, path: str, **kwargs: Any) -> Any:
    import requests

    resp = requests.request(
        method,
        f"{target.url}/hub/api/{path}",
        headers={"Authorization": f"token {target.token}"},
        timeout=30,
        **kwargs,
    )
    if resp.status_code >= 400:
        raise EsdlError(f"{method} /hub/api/{path}: HTTP {resp.status_code} {resp.text[:200]}")
    return resp.json() if resp.content else None


def check_health(target: HealthTarget, *, out: Printer = print, timeout: float = 300.0) -> int:
    """Run :data:`STEPS` against ``target``; return 0 when all pass, 1 at the first failure."""
    from platform_lib.local.client import HubClient

    out(
        f"health of the hub at {target.url} ({target.where}), as {HEALTH_USER!r} with the {HEALTH_SERVICE!r} token"
    )
    user = HubClient(target.url)
    user.user = HEALTH_USER
    kernel = None
    server_started = False
    failed = None
    for name, code in STEPS:
        if failed and name not in ("stop cluster", "stop server"):
            continue
        t0 = time.monotonic()
        try:
            if name == "hub API":
                _hub(target, "GET", "")
                if _user(target) is None:
                    _hub(target, "POST", f"users/{HEALTH_USER}")
                detail = "answers"
            elif name == "start server":
                _hub(target, "POST", f"users/{HEALTH_USER}/server")
                server_started = True
                _wait_ready(target, timeout)
                user.token = _hub(target, "POST", f"users/{HEALTH_USER}/tokens", json={"expires_in": 3600})[
                    "token"
                ]
                kernel = user.start_kernel()
                detail = "ready"
            elif name == "stop server":
                if not server_started:
                    continue
                _hub(target, "DELETE", f"users/{HEALTH_USER}/server")
                detail = "stopped"
            else:
                if kernel is None:
                    continue
                detail = user.run(kernel, code, timeout=timeout).strip().splitlines()[-1:]
                detail = detail[0] if detail else ""
        except Exception as exc:  # noqa: BLE001 - any failure is the finding, reported with its step
            out(f"  FAIL {name:<30} {time.monotonic() - t0:6.1f} s  {str(exc).splitlines()[0][:200]}")
            failed = failed or name
            continue
        out(f"  ok   {name:<30} {time.monotonic() - t0:6.1f} s  {detail}")
    if failed:
        out(f"unhealthy: {failed!r} failed")
        return 1
    out("healthy")
    return 0


def _user(target: HealthTarget) -> dict[str, Any] | None:
    try:
        return _hub(target, "GET", f"users/{HEALTH_USER}")
    except EsdlError as exc:
        if "HTTP 404" in str(exc):
            return None
        raise


def _wait_ready(target: HealthTarget, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = (_user(target) or {}).get("servers", {}).get("", {})
        if server.get("ready"):
            return
        time.sleep(0.5)
    raise EsdlError(f"the server of {HEALTH_USER!r} was not ready after {timeout:.0f} s")


def _secret_value(data: dict[str, str], key: str) -> str:
    return base64.b64decode(data[key]).decode()
