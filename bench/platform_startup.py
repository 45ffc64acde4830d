"""Benchmark: the embedded platform (``esdl up``) against the same steps done by hand with the bare tools.

Three steps, each timed for ours and for the reference in the same run (interleaved, fresh state each
repetition) and printed with the ratio ours / reference (target: under 1.10):

1. start-up: from launching to the login page answering. Ours: ``esdl up --project demo --port 0``
   (spec validation, state and passwords, generated configs, gateway + proxy + hub under the
   supervisor, health checks) until it returns. Reference: a hand-written ``dask_gateway_config.py``
   started with ``dask-gateway-server``, and right after it (launched in the same order as ours, neither
   waiting for the other) a plain ``jupyterhub`` (``SharedPasswordAuthenticator``, the hub starting
   configurable-http-proxy itself) until the gateway's health check and ``/hub/login`` answer. As root,
   ours runs each person's server under their own OS account, so the reference does too: JupyterHub's
   own ``LocalProcessSpawner`` with an OS account of the user's name (``esdlbench-alice``, made once
   before the first repetition); not root, both run ``SimpleLocalProcessSpawner``-style servers as the
   one account. The reference's clusters run as the gateway's user (``UnsafeLocalBackend``: upstream's
   ``LocalBackend`` 2026.3.0 chowns "/" to the user when run as root, see ``gateway_policy.py``);
2. spawn: log in through the login form and wait for JupyterLab's page (``/hub/spawn`` then
   ``/user/<name>/lab``), the same client for both. Our spawner hands the new server to the hub as soon
   as it answers (checks every 0.1 s); the bare hub finds it through its own exponential back-off with
   random waits of up to 5 s, which is most of the difference on this step;
3. cluster: ``Gateway.new_cluster()`` + ``scale(2)`` until two workers are live, through the hub's
   ``/services/dask-gateway`` route with the user's token, the same client for both.

Ours also reports ``esdl down``; the reference stops by SIGTERM to the hub and the gateway. Every
process a repetition started is stopped whatever happens: each side runs in its own temporary folder,
and after it a sweep kills any process still working in that folder or tagged with it (user servers,
kernels, configurable-http-proxy and Dask processes run in their own sessions, so killing the hub's
process group alone would not reach them); a sweep that finds something is reported. A repetition in
which either side fails is reported with the end of that side's log and left out of the statistics.
The order alternates (reference first in odd repetitions, ours first in even ones) so a slow drift of
the machine's load does not favour either side. The table shows the median over the repetitions in
which both sides succeeded (and the best, i.e. the minimum, of each side).

    .venv/bin/python bench/platform_startup.py [--small] [--repeat N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psutil

from platform_lib.cli.platform import printed_logins
from platform_lib.gateway import close_gateway, gateway_cluster, open_gateway
from platform_lib.local.client import HubClient
from platform_lib.local.configs import TAG_VARIABLE, proxy_executable, venv_bin
from platform_lib.local.layout import ProjectLayout, free_port
from platform_lib.local.supervisor import http_ok, terminate
from platform_lib.plan import GATEWAY_PREFIX

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-0123456789"
#: as root the reference's user is an OS account of that name (LocalProcessSpawner needs one)
REFERENCE_ACCOUNT = os.geteuid() == 0
REFERENCE_USER = "esdlbench-alice" if REFERENCE_ACCOUNT else "alice"


def ensure_reference_account(work: Path) -> None:
    """As root: the reference user's OS account (home under ``work``), made once, as ``esdl up`` makes
    ours (no password, nologin)."""
    home = work / "reference-homes" / REFERENCE_USER
    try:
        pwd.getpwnam(REFERENCE_USER)
        subprocess.run(["usermod", "--home", str(home), REFERENCE_USER], check=True, capture_output=True)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--user-group", "--home-dir", str(home), "--shell",
                        "/usr/sbin/nologin", "--comment", "ESDL benchmark reference", REFERENCE_USER],
                       check=True, capture_output=True)  # fmt: skip


class RepetitionFailed(RuntimeError):
    """One side of a repetition failed; the message ends with the tail of its log."""


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``url`` every 0.05 s (as ``esdl up`` does) until it answers; fail early if ``proc`` exits."""
    t0 = time.monotonic()
    while not http_ok(url, timeout=1.0):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with code {proc.returncode} before {url} answered")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.05)


def processes_under(root: Path) -> list:
    """Live processes that belong to a repetition run in ``root``: working in it (hub, proxy, user
    servers, kernels, Dask schedulers and workers all run in a folder of it), naming it on their command
    line, or tagged with it (``ESDL_PLATFORM``)."""
    root_text = str(root.resolve())
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            mine = (
                (proc.cwd() + os.sep).startswith(root_text + os.sep)
                or any(root_text in arg for arg in proc.cmdline())
                or proc.environ().get(TAG_VARIABLE, "").startswith(root_text)
            )
            if mine:
                found.append(proc)
    return found


def sweep(root: Path, side: str) -> int:
    """Kill whatever is left of a repetition in ``root`` and say so; return how many processes."""
    left = processes_under(root)
    if left:
        names = ", ".join(sorted({_describe(p) for p in left}))
        print(f"  warning: {side} left {len(left)} process(es) behind, killed now: {names}", flush=True)
        terminate(left, timeout=5)
    return len(left)


def _describe(proc) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline()[:2]) or f"pid {proc.pid}"
    return f"pid {proc.pid} (gone)"


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text[-lines:])


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
    layout = ProjectLayout("demo", root / "state" / "platform" / "demo")
    esdl = str(venv_bin() / "esdl")
    try:
        t0 = time.perf_counter()
        up = subprocess.run([esdl, "up", "--project", "demo", "--port", "0"], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
        startup = time.perf_counter() - t0
        if up.returncode != 0:
            raise RepetitionFailed(f"esdl up exited with code {up.returncode}:\n{up.stderr.strip()[-2000:]}")
        ports = layout.saved_ports()
        base = f"http://127.0.0.1:{ports['public']}"
        try:
            password = printed_logins(up.stdout)[("demo", "alice")]  # printed once; only its hash is kept
            spawn, client = time_spawn(base, "alice", password)
            cluster = time_cluster(base, ports["gateway_tcp"], client.api_token())
        except Exception as exc:
            raise RepetitionFailed(f"{exc}\n  end of hub.log:\n{log_tail(layout.log_file('hub'))}") from exc
    finally:
        t0 = time.perf_counter()
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([esdl, "down"], env=env, capture_output=True, timeout=120)
        stop = time.perf_counter() - t0
        left = sweep(root, "ours (after esdl down)")
    if left:
        raise RepetitionFailed(f"esdl down left {left} process(es) running")
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
c.Authenticator.allowed_users = {{"{user}"}}
{spawner}
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
    if REFERENCE_ACCOUNT:  # the OS account's home, which LocalProcessSpawner starts the server in
        entry = pwd.getpwnam(REFERENCE_USER)
        home = Path(entry.pw_dir)
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        spawner = 'c.JupyterHub.spawner_class = "localprocess"'
    else:
        spawner = f'c.JupyterHub.spawner_class = "simple"\nc.SimpleLocalProcessSpawner.home_dir_template = "{root}/homes/{{username}}"'

    cookie = root / "cookie_secret"
    cookie.write_text(secrets.token_hex(32))
    cookie.chmod(0o600)
    values = dict(
        ports, root=root, bin=venv_bin(), chp=proxy_executable(), token=secrets.token_hex(32),
        proxy_token=secrets.token_hex(32), password=PASSWORD, user=REFERENCE_USER, spawner=spawner,
        args=["--allow-root"] if os.geteuid() == 0 and not REFERENCE_ACCOUNT else [],
    )  # fmt: skip
    (root / "dask_gateway_config.py").write_text(GATEWAY_CONFIG.format(**values))
    (root / "jupyterhub_config.py").write_text(HUB_CONFIG.format(**values))
    log_path = root / "reference.log"
    logs = open(log_path, "wb")  # noqa: SIM115 - closed below
    env = dict(os.environ, PATH=f"{venv_bin()}{os.pathsep}{os.environ['PATH']}")
    procs: list[subprocess.Popen] = []

    def launch(cmd: list[str]) -> subprocess.Popen:
        # its own session (process group), so a stuck one is killed with everything it forked itself
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=logs,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        procs.append(proc)
        return proc

    try:
        t0 = time.perf_counter()
        # as ``esdl up`` does: the gateway launched first, the hub right after it (not waiting for the
        # gateway: the hub imports for ~2.5 s before it looks for it), then both must answer
        gateway = launch([str(venv_bin() / "dask-gateway-server"), "-f", "dask_gateway_config.py"])
        hub = launch([str(venv_bin() / "jupyterhub"), "-f", "jupyterhub_config.py"])
        wait_for(f"http://127.0.0.1:{ports['gateway_http']}{GATEWAY_PREFIX}/api/health", gateway)
        wait_for(f"http://127.0.0.1:{ports['public']}/hub/login", hub)
        startup = time.perf_counter() - t0
        base = f"http://127.0.0.1:{ports['public']}"
        spawn, client = time_spawn(base, REFERENCE_USER, PASSWORD)
        cluster = time_cluster(base, ports["gateway_tcp"], client.api_token())
    except Exception as exc:
        logs.flush()
        raise RepetitionFailed(f"{exc}\n  end of {log_path.name}:\n{log_tail(log_path)}") from exc
    finally:
        t0 = time.perf_counter()
        for proc in reversed(procs):  # hub first: it stops the user servers and its proxy
            stop_group(proc, timeout=60)
        stop = time.perf_counter() - t0
        logs.close()
        sweep(root, "the reference (after SIGTERM to hub and gateway)")
    return {"startup": startup, "spawn": spawn, "cluster": cluster, "stop": stop}


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``proc``; if it has not exited after ``timeout`` s, SIGKILL its whole process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            print(
                f"  warning: {proc.args[0]} ignored SIGTERM for {timeout:.0f} s; killing its group",
                flush=True,
            )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


STEPS = {
    "startup": "start-up to login page",
    "spawn": "login to JupyterLab ready",
    "cluster": "new_cluster + scale(2) live",
    "stop": "stop everything",
}


def attempt(side: str, run: Callable[[Path], dict[str, float]], root: Path) -> dict[str, float] | None:
    """Run one side of a repetition; on failure print what failed (and where) and return ``None``."""
    try:
        return run(root)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next repetition
        detail = str(exc) if isinstance(exc, RepetitionFailed) else traceback.format_exc(limit=3)
        print(f"  {side} FAILED: {detail}", flush=True)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one repetition (a quick check)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, interleaved (default 3)")
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep the logs (default: a temp folder)"
    )
    args = parser.parse_args()
    repeat = 1 if args.small else args.repeat
    pairs: list[tuple[dict[str, float], dict[str, float]]] = []
    failed = 0
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esdl-bench-")))
        if os.geteuid() == 0:  # people's own OS accounts (both sides) pass through to their homes
            os.chmod(work, 0o711)
            ensure_reference_account(work)
        for i in range(repeat):
            sides = [("reference", run_reference), ("ours", run_ours)]
            if i % 2:
                sides.reverse()
            got = {name: attempt(name, run, work / f"{name}-{i}") for name, run in sides}
            ours, ref = got["ours"], got["reference"]
            if ours is None or ref is None:
                failed += 1
                print(f"repetition {i + 1}/{repeat}: FAILED (left out)", flush=True)
                continue
            pairs.append((ours, ref))
            print(f"repetition {i + 1}/{repeat}: ours {fmt(ours)} | reference {fmt(ref)}", flush=True)
    if not pairs:
        print(f"\nall {repeat} repetition(s) failed")
        return 1
    n = len(pairs)
    print(
        f"\n{n} repetition(s) ({failed} failed, left out); seconds   median ours  reference  ratio"
        "    best ours  reference  ratio"
    )
    for step, label in STEPS.items():
        a = [o[step] for o, _ in pairs]
        b = [r[step] for _, r in pairs]
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"{label:<40} {ma:11.2f} {mb:10.2f} {ma / mb:6.2f}   {min(a):10.2f} {min(b):10.2f}"
            f" {min(a) / min(b):6.2f}"
        )
    print("\ntarget: median ours/reference under 1.10 for start-up, spawn and cluster")
    return 1 if failed else 0


def fmt(r: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}s" for k, v in r.items())


if __name__ == "__main__":
    sys.exit(main())
