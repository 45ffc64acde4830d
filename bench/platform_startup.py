"""Benchmark: the embedded platform (``esdl up``) against the same steps done by hand with the bare tools.

Three steps, each timed for ours and for the reference in the same run (interleaved, fresh state each
repetition) and printed with the ratio ours / reference (target: under 1.10):

1. start-up: from launching to the login page answering. Ours: ``esdl up --project demo --port 0``
   (spec validation, state and passwords, generated configs, gateway + proxy + hub under the
   supervisor, health checks) until it returns. Reference: a hand-written ``dask_gateway_config.py``
   started with ``dask-gateway-server``, then a plain ``jupyterhub`` (same ``SimpleLocalProcessSpawner``,
   ``SharedPasswordAuthenticator``, the hub starting configurable-http-proxy itself) until
   ``/hub/login`` answers;
2. spawn: log in through the login form and wait for JupyterLab's page (``/hub/spawn`` then
   ``/user/<name>/lab``), the same client for both;
3. cluster: ``Gateway.new_cluster()`` + ``scale(2)`` until two workers are live, through the hub's
   ``/services/dask-gateway`` route with the user's token, the same client for both.

Ours also reports ``esdl down``; the reference stops by SIGTERM to the hub and the gateway.

    .venv/bin/python bench/platform_startup.py [--small] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from platform_lib.gateway import close_gateway, gateway_cluster, open_gateway
from platform_lib.local.client import HubClient
from platform_lib.local.configs import GATEWAY_PREFIX, proxy_executable, venv_bin
from platform_lib.local.layout import ProjectLayout, free_port
from platform_lib.local.supervisor import http_ok, tagged_processes

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-0123456789"


def wait_for(url: str, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not http_ok(url, timeout=1.0):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.05)


def time_cluster(base_url: str, tcp_port: int, token: str) -> float:
    gateway = open_gateway(
        f"{base_url}{GATEWAY_PREFIX}", proxy_address=f"gateway://127.0.0.1:{tcp_port}", token=token
    )
    try:
        t0 = time.perf_counter()
        with gateway_cluster(2, gateway=gateway):
            return time.perf_counter() - t0
    finally:
        close_gateway(gateway)


def time_spawn(base_url: str, user: str, password: str) -> tuple[float, HubClient]:
    client = HubClient(base_url)
    t0 = time.perf_counter()
    client.login(user, password)
    client.open_lab(timeout=240)
    return time.perf_counter() - t0, client


# --- ours ----------------------------------------------------------------------------------------------


def run_ours(root: Path) -> dict[str, float]:
    env = dict(os.environ, ESDL_STATE_DIR=str(root / "state"))
    env.pop("ESDL_PROJECTS_DIR", None)
    t0 = time.perf_counter()
    subprocess.run(
        [str(venv_bin() / "esdl"), "up", "--project", "demo", "--port", "0"],
        env=env,
        check=True,
        capture_output=True,
    )
    startup = time.perf_counter() - t0
    layout = ProjectLayout("demo", root / "state" / "platform" / "demo")
    ports = layout.saved_ports()
    base = f"http://127.0.0.1:{ports['public']}"
    try:
        spawn, client = time_spawn(base, "alice", layout.stored_credentials()["alice"])
        cluster = time_cluster(base, ports["gateway_tcp"], client.api_token())
    finally:
        t0 = time.perf_counter()
        subprocess.run([str(venv_bin() / "esdl"), "down"], env=env, check=True, capture_output=True)
        stop = time.perf_counter() - t0
    left = tagged_processes(str(layout.root.resolve()))
    if left:
        raise RuntimeError(f"esdl down left {len(left)} process(es)")
    return {"startup": startup, "spawn": spawn, "cluster": cluster, "stop": stop}


# --- the reference: the bare upstream tools, configured by hand -----------------------------------------

GATEWAY_CONFIG = """
c.DaskGateway.address = "127.0.0.1:{gateway_api}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.Proxy.address = "127.0.0.1:{gateway_http}"
c.Proxy.tcp_address = "127.0.0.1:{gateway_tcp}"
c.Proxy.prefix = "/services/dask-gateway"
c.JupyterHubAuthenticator.jupyterhub_api_url = "http://127.0.0.1:{hub}/hub/api"
c.JupyterHubAuthenticator.jupyterhub_api_token = "{token}"
c.JupyterHubAuthenticator.jupyterhub_service_name = "dask-gateway"
c.LocalClusterConfig.scheduler_cmd = ["{bin}/dask", "scheduler"]
c.LocalClusterConfig.worker_cmd = ["{bin}/dask", "worker"]
c.LocalClusterConfig.worker_cores = 1
c.LocalClusterConfig.worker_memory = "1 G"
c.LocalClusterConfig.cluster_max_workers = 4
c.LocalBackend.clusters_directory = "{root}/clusters"
"""

HUB_CONFIG = """
c.JupyterHub.bind_url = "http://127.0.0.1:{public}/"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.auth_token = "{proxy_token}"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = "{password}"
c.Authenticator.allowed_users = {{"alice", "bob", "carol"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/homes/{{username}}"
c.Spawner.cmd = ["{bin}/jupyterhub-singleuser"]
c.Spawner.args = {args}
c.Spawner.default_url = "/lab"
c.Spawner.environment = {{
    "DASK_GATEWAY__ADDRESS": "http://127.0.0.1:{public}/services/dask-gateway",
    "DASK_GATEWAY__PROXY_ADDRESS": "gateway://127.0.0.1:{gateway_tcp}",
    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
}}
c.JupyterHub.services = [{{"name": "dask-gateway", "url": "http://127.0.0.1:{gateway_http}", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "user", "scopes": ["self", "access:services!service=dask-gateway"]}}]
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "access:services!service=dask-gateway"]
"""


def run_reference(root: Path) -> dict[str, float]:
    ports = {
        name: free_port()
        for name in ("gateway_api", "gateway_http", "gateway_tcp", "proxy_api", "hub", "public")
    }
    (root / "clusters").mkdir(parents=True)
    (root / "homes").mkdir()
    cookie = root / "cookie_secret"
    cookie.write_text(secrets.token_hex(32))
    cookie.chmod(0o600)
    values = dict(
        ports, root=root, bin=venv_bin(), chp=proxy_executable(), token=secrets.token_hex(32),
        proxy_token=secrets.token_hex(32), password=PASSWORD, args=["--allow-root"] if os.geteuid() == 0 else [],
    )  # fmt: skip
    (root / "dask_gateway_config.py").write_text(GATEWAY_CONFIG.format(**values))
    (root / "jupyterhub_config.py").write_text(HUB_CONFIG.format(**values))
    logs = open(root / "reference.log", "wb")  # noqa: SIM115 - closed below
    env = dict(os.environ, PATH=f"{venv_bin()}{os.pathsep}{os.environ['PATH']}")
    procs = []
    try:
        t0 = time.perf_counter()
        procs.append(subprocess.Popen([str(venv_bin() / "dask-gateway-server"), "-f", "dask_gateway_config.py"],
                                      cwd=root, env=env, stdout=logs, stderr=subprocess.STDOUT))  # fmt: skip
        wait_for(f"http://127.0.0.1:{ports['gateway_http']}{GATEWAY_PREFIX}/api/health")
        procs.append(subprocess.Popen([str(venv_bin() / "jupyterhub"), "-f", "jupyterhub_config.py"],
                                      cwd=root, env=env, stdout=logs, stderr=subprocess.STDOUT))  # fmt: skip
        wait_for(f"http://127.0.0.1:{ports['public']}/hub/login")
        startup = time.perf_counter() - t0
        base = f"http://127.0.0.1:{ports['public']}"
        spawn, client = time_spawn(base, "alice", PASSWORD)
        cluster = time_cluster(base, ports["gateway_tcp"], client.api_token())
    finally:
        t0 = time.perf_counter()
        for proc in reversed(procs):  # hub first: it stops the user servers and its proxy
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        stop = time.perf_counter() - t0
        logs.close()
    return {"startup": startup, "spawn": spawn, "cluster": cluster, "stop": stop}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one repetition (a quick check)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, interleaved (default 3)")
    args = parser.parse_args()
    repeat = 1 if args.small else args.repeat
    ours: list[dict[str, float]] = []
    ref: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="esdl-bench-") as tmp:
        for i in range(repeat):
            ref.append(run_reference(Path(tmp) / f"ref-{i}"))
            ours.append(run_ours(Path(tmp) / f"ours-{i}"))
            print(f"repetition {i + 1}/{repeat}: ours {fmt(ours[-1])} | reference {fmt(ref[-1])}", flush=True)
    print(f"\nmedian of {repeat} (seconds)    ours   reference   ours/reference")
    labels = {
        "startup": "start-up to login page",
        "spawn": "login to JupyterLab ready",
        "cluster": "new_cluster + scale(2) live",
        "stop": "stop everything",
    }
    for step, label in labels.items():
        a = statistics.median(r[step] for r in ours)
        b = statistics.median(r[step] for r in ref)
        print(f"{label:<28} {a:7.2f}   {b:9.2f}   {a / b:14.2f}")
    print("\ntarget: ours/reference under 1.10 for start-up, spawn and cluster")
    return 0


def fmt(r: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}s" for k, v in r.items())


if __name__ == "__main__":
    sys.exit(main())
