"""The supervisor of the embedded platform: start, check, restart and stop each project's processes.

Per project three components run as detached processes (their own session, logs in ``logs/``): the
Dask Gateway (with its own proxy and, later, the users' clusters), configurable-http-proxy, and the
JupyterHub (which spawns the users' servers). They are launched together, in that order (the hub
imports for ~2.5 s before it looks for the gateway, which answers after ~1 s); :func:`up` returns when
each answers its health check and the login page and the gateway route answer through the proxy.

Every process of a project carries ``ESDL_PLATFORM=<its state folder>`` in its environment (the user
servers, kernels and Dask processes inherit or are given it), so :func:`down` can stop every process the
platform started, however it got there, and leave no orphans. A component that died (even ``kill -9``)
is reported by :func:`status` and restarted by the next :func:`up`; user servers survive a hub restart
(``cleanup_servers = False``) because the hub finds them again from its database.

>>> [c for c in COMPONENTS]
['gateway', 'proxy', 'hub']
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platform_lib.errors import EsdlError
from platform_lib.local.accounts import ensure_accounts, secure_layout, stop_processes_of
from platform_lib.local.configs import (
    ROLE_VARIABLE,
    TAG_VARIABLE,
    PlatformSettings,
    missing_stores,
    proxy_command,
    venv_bin,
    write_configs,
)
from platform_lib.local.layout import (
    ProjectLayout,
    check_port_number,
    known_layouts,
    listen_address_problem,
    write_private_json,
)
from platform_lib.paths import PACKAGE_DIR, private_dir
from platform_lib.plan import GATEWAY_PREFIX, HEALTH_USER
from platform_lib.projects import ProjectSpec, ProjectSpecError, load_project

COMPONENTS = ("gateway", "proxy", "hub")
START_TIMEOUT = {"gateway": 60.0, "proxy": 30.0, "hub": 120.0}
LOG_TAIL_LINES = 25
#: the lock of a project's set-up, start and stop, in its folder (see :func:`_project_lock`)
LOCK_FILE = ".supervisor.lock"


class PlatformStartError(EsdlError):
    """A component did not start; the message holds the last lines of its log."""


def _psutil():
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the hub extra (ipykernel, distributed)
        raise EsdlError(
            "the embedded platform needs the hub extra: pip install 'esdl-platform[hub]'"
        ) from None
    return psutil


def check_requirements() -> None:
    """Raise a clear error when the hub extra (JupyterHub, dask-gateway, NativeAuthenticator) is missing.

    >>> from unittest import mock
    >>> check_requirements()  # the hub extra is installed here: no error
    >>> with mock.patch("importlib.util.find_spec", lambda name: None if name == "psutil" else True):
    ...     check_requirements()
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: the embedded platform needs psutil: pip install 'esdl-platform[hub]'
    """
    missing = [m for m in ("jupyterhub", "dask_gateway_server", "nativeauthenticator", "dask_gateway", "psutil")
               if importlib.util.find_spec(m) is None]  # fmt: skip
    if missing:
        raise EsdlError(f"the embedded platform needs {', '.join(missing)}: pip install 'esdl-platform[hub]'")
    for script in ("jupyterhub", "jupyterhub-singleuser", "dask-gateway-server", "dask"):
        if not (venv_bin() / script).exists():
            raise EsdlError(
                f"{venv_bin() / script} is missing: pip install 'esdl-platform[hub]' into this Python"
            )


# ---------------------------------------------------------------------------------------------------------
# processes


@dataclass
class Component:
    """One supervised process: how to start it and how to tell that it answers."""

    name: str
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    health_url: str
    health_headers: dict[str, str] = field(default_factory=dict)


def _base_env(s: PlatformSettings, role: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTERHUB_", "DASK_GATEWAY", "CONFIGPROXY_"))
    }
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env[TAG_VARIABLE] = s.tag
    env[ROLE_VARIABLE] = role
    return env


def components(s: PlatformSettings) -> dict[str, Component]:
    """The three components of one project, in start order.

    >>> import tempfile
    >>> from platform_lib.projects import load_project
    >>> layout = ProjectLayout("demo", Path(tempfile.mkdtemp())).ensure()
    >>> ports = dict(gateway_api=1, gateway_http=2, gateway_tcp=3, proxy_api=4, hub=5, public=6)
    >>> list(components(PlatformSettings(load_project("demo"), layout, ports)))
    ['gateway', 'proxy', 'hub']
    """
    layout, ports = s.layout, s.ports
    proxy_env = _base_env(s, "proxy")
    proxy_env["CONFIGPROXY_AUTH_TOKEN"] = layout.read_secret("proxy_token")
    return {
        "gateway": Component(
            "gateway",
            [str(venv_bin() / "dask-gateway-server"), "-f", str(layout.gateway_config)],
            layout.gateway_dir,
            _base_env(s, "gateway"),
            # through the gateway's own HTTP proxy: both the API and the proxy must answer
            f"http://127.0.0.1:{ports['gateway_http']}{GATEWAY_PREFIX}/api/health",
        ),
        "proxy": Component(
            "proxy",
            proxy_command(s),
            layout.root,
            proxy_env,
            f"http://127.0.0.1:{ports['proxy_api']}/api/routes",
            {"Authorization": f"token {layout.read_secret('proxy_token')}"},
        ),
        "hub": Component(
            "hub",
            [str(venv_bin() / "jupyterhub"), "-f", str(layout.hub_config)],
            layout.hub_dir,
            _base_env(s, "hub"),
            f"http://127.0.0.1:{ports['hub']}/hub/health",
        ),
    }


def http_ok(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers with a 2xx status.

    >>> http_ok("http://127.0.0.1:9/nothing-listens-here")
    False
    """
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _record(layout: ProjectLayout, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(layout.run_file(name).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _process(record: dict[str, Any] | None):
    """The live process of a run record, or ``None`` (gone, reused pid, or a zombie)."""
    if not record:
        return None
    psutil = _psutil()
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
        return None


def component_process(layout: ProjectLayout, name: str):
    """The live process of one component (``gateway``, ``proxy``, ``hub``) of a project, or ``None``.

    >>> import tempfile
    >>> component_process(ProjectLayout.for_project("demo", base=Path(tempfile.mkdtemp())), "hub") is None
    True
    """
    return _process(_record(layout, name))


def tagged_processes(tag: str, roles: Iterable[str] | None = None) -> list:
    """Every live process whose environment has ``ESDL_PLATFORM=tag`` (and a role in ``roles``).

    >>> tagged_processes("/no/such/platform")
    []
    """
    psutil = _psutil()
    wanted = set(roles) if roles is not None else None
    out = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            env = proc.environ()
            mine = env.get(TAG_VARIABLE) == tag and (wanted is None or env.get(ROLE_VARIABLE) in wanted)
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return out


def terminate(processes: Sequence, timeout: float = 10.0) -> None:
    """SIGTERM ``processes``, wait up to ``timeout`` s, then SIGKILL what is left, and reap.

    >>> proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    >>> terminate([_psutil().Process(proc.pid)], timeout=5)
    >>> _psutil().pid_exists(proc.pid)
    False
    """
    psutil = _psutil()
    alive = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.terminate()
            p.resume()  # a stopped (SIGSTOP) process acts on SIGTERM only once continued
            alive.append(p)
    alive = _wait_gone(alive, timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.kill()
    _wait_gone(alive, 5)


def _wait_gone(processes: Sequence, timeout: float) -> list:
    """Check every 0.05 s until each process has exited (reaping those that are our children); return the
    ones still running after ``timeout`` s. (``psutil.wait_procs`` checks one process at a time for up to
    1 s each, so it notices an exit up to a second late.)

    >>> _wait_gone([_psutil().Process()], timeout=0.1) == [_psutil().Process()]
    True
    """
    psutil = _psutil()
    alive = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        still = []
        for p in alive:
            try:
                p.wait(timeout=0)  # returns (and reaps) once a child of ours has exited
            except psutil.TimeoutExpired:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if p.status() != psutil.STATUS_ZOMBIE:
                        still.append(p)
                    else:  # it exited after the wait above: reap it if it is ours (another parent's is gone too)
                        with contextlib.suppress(psutil.TimeoutExpired, psutil.NoSuchProcess):
                            p.wait(timeout=0)
            except psutil.NoSuchProcess:
                pass
        alive = still
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _log_tail(path: Path, offset: int, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) or "    (the log is empty)"


@dataclass
class _Started:
    component: Component
    popen: subprocess.Popen
    log_offset: int


def _start(s: PlatformSettings, comp: Component, config_hash: str) -> _Started:
    layout = s.layout
    # a leftover of an earlier run of this component (its record lost, a dead gateway's proxy); a gateway's
    # clusters are kept: the new gateway finds them in its database
    terminate(tagged_processes(s.tag, (comp.name,)), timeout=5)
    log_path = layout.log_file(comp.name)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    offset = os.lseek(fd, 0, os.SEEK_END)
    os.write(
        fd, f"\n=== esdl up: starting {comp.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode()
    )
    try:
        popen = subprocess.Popen(
            comp.cmd, cwd=comp.cwd, env=comp.env, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(fd)
    proc = _psutil().Process(popen.pid)
    write_private_json(
        layout.run_file(comp.name),
        {"pid": popen.pid, "create_time": proc.create_time(), "cmd": comp.cmd, "config_hash": config_hash,
         "started": time.time(), "log": str(log_path)},
    )  # fmt: skip
    return _Started(comp, popen, offset)


def _wait_healthy(s: PlatformSettings, started: Sequence[_Started], timeout_scale: float = 1.0) -> None:
    pending = list(started)
    t0 = time.monotonic()
    while pending:
        for st in list(pending):
            comp = st.component
            if st.popen.poll() is not None:
                raise PlatformStartError(
                    f"project {s.spec.name!r}: {comp.name} exited with code {st.popen.returncode} while starting;"
                    f" last lines of {s.layout.log_file(comp.name)}:\n{_log_tail(s.layout.log_file(comp.name), st.log_offset)}"
                )
            if http_ok(comp.health_url, comp.health_headers, timeout=1.0):
                pending.remove(st)
            elif time.monotonic() - t0 > START_TIMEOUT[comp.name] * timeout_scale:
                raise PlatformStartError(
                    f"project {s.spec.name!r}: {comp.name} did not answer at {comp.health_url} within"
                    f" {START_TIMEOUT[comp.name] * timeout_scale:.0f} s; last lines of"
                    f" {s.layout.log_file(comp.name)}:\n{_log_tail(s.layout.log_file(comp.name), st.log_offset)}"
                )
        if pending:
            time.sleep(0.05)


def _public_ready(s: PlatformSettings) -> bool:
    """The login page and the gateway answer through the public proxy (the hub has added its routes)."""
    public = f"http://127.0.0.1:{s.ports['public']}"
    return http_ok(f"{public}/hub/login", timeout=2.0) and http_ok(
        f"{public}{GATEWAY_PREFIX}/api/health", timeout=2.0
    )


# ---------------------------------------------------------------------------------------------------------
# up


@dataclass
class ProjectPlatform:
    """A prepared project: settings, components and config hashes (see :func:`prepare`)."""

    settings: PlatformSettings
    components: dict[str, Component]
    hashes: dict[str, str]
    new_logins: dict[str, str] = field(default_factory=dict)  # passwords generated by this call

    @property
    def name(self) -> str:
        return self.settings.spec.name

    @property
    def url(self) -> str:
        return self.settings.url


def _running_ports(layout: ProjectLayout) -> list[int]:
    """Ports held by this project's own running components (they may be kept)."""
    ports = layout.saved_ports() or {}
    live = {name for name in COMPONENTS if _process(_record(layout, name))}
    owners = {
        "gateway": ("gateway_api", "gateway_http", "gateway_tcp"),
        "proxy": ("proxy_api", "public"),
        "hub": ("hub",),
    }
    return [ports[p] for name in live for p in owners[name] if p in ports]


def prepare(
    spec: ProjectSpec,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    log_level: str = "INFO",
    accounts: bool | None = None,
) -> ProjectPlatform:
    """Check everything that can be checked before starting, then write state, credentials and configs.

    Nothing is started; :func:`start_project` starts what :func:`prepare` wrote. With ``accounts``
    (default: when run as root) everyone in the spec gets an OS account of their own
    (:mod:`platform_lib.local.accounts`) and the state folder's permissions keep them out of it and out
    of each other's homes.

    >>> import tempfile, unittest.mock
    >>> with unittest.mock.patch.dict(os.environ, {"ESDL_STATE_DIR": tempfile.mkdtemp()}):
    ...     p = prepare(load_project("demo"), port=0, accounts=False)
    >>> sorted(p.new_logins) == sorted(p.settings.spec.users), p.settings.layout.hub_config.exists()
    (True, True)
    """
    layout = ProjectLayout.for_project(spec.name)
    settings = PlatformSettings(spec, layout, ports={}, host=host, log_level=log_level)
    problems = missing_stores(settings)
    if problems:
        raise ProjectSpecError(str(spec.source or spec.name), problems)
    # every check (the port and the address included) before anything is written or an account is made
    ports = layout.choose_ports(port, busy_ok=_running_ports(layout), host=host)
    layout.ensure()
    if os.geteuid() == 0 if accounts is None else accounts:
        settings.accounts = _person_accounts(settings)
    _down_marker(layout).unlink(missing_ok=True)
    layout.save_ports(ports)
    settings.ports = ports
    new_logins = layout.credentials(spec.users)
    hashes = write_configs(settings)
    if settings.accounts:  # configs, credentials and ports were just written: owner-only again
        secure_layout(layout, spec.storage.team_access)
    return ProjectPlatform(settings, components(settings), hashes, new_logins)


def _person_accounts(s: PlatformSettings) -> dict[str, str]:
    """Make (or reuse) everyone's OS account and set the state's permissions; ``{hub user: account}``.

    First checks that those accounts can run this installation: a Python, a repository or data under an
    owner-only folder would make every server fail to start, with a bare error in the hub's log."""
    from platform_lib.local.configs import docs_dir, notebooks_dir
    from platform_lib.local.interpreter import unreachable_by_others

    needed = [
        sys.executable,
        os.__file__,
        venv_bin() / "jupyterhub-singleuser",
        PACKAGE_DIR / "local" / "session.py",
    ]
    needed += [notebooks_dir(), docs_dir(), s.data_dir, *s.base_catalogs]
    blocked = {str(p): unreachable_by_others(p) for p in needed if Path(p).exists()}
    blocked = {p: b for p, b in blocked.items() if b}
    if blocked:
        lines = [f"{p} (blocked at {', '.join(map(str, b))})" for p, b in blocked.items()]
        raise EsdlError(
            f"as root, {s.spec.name}'s people each get an OS account, but those accounts cannot reach "
            + "; ".join(lines)
            + ". Put the repository, its .venv and the data where every account can read them (no owner-only"
            " folder on the way), and make .venv from a Python outside such folders: `rm -rf .venv && make"
            " setup` picks one (platform_lib/local/interpreter.py)"
        )
    spec, layout = s.spec, s.layout
    made = ensure_accounts(spec.name, [*spec.users, HEALTH_USER], spec.admins, layout)
    return {user: account.name for user, account in made.items()}


def _plan(p: ProjectPlatform, check_health: bool = True) -> list[str]:
    """The components to (re)start: dead, hung (alive but not answering for 10 s) or with a changed
    config; a new proxy needs a new hub."""
    layout = p.settings.layout
    todo = []
    for name in COMPONENTS:
        record = _record(layout, name)
        proc = _process(record)
        outdated = proc is None or record.get("config_hash") != p.hashes[name]
        if outdated or (check_health and not _answers(p.components[name], within=10.0)):
            todo.append(name)
    if "proxy" in todo and "hub" not in todo:
        todo.append("hub")  # the hub adds its routes to the proxy when it starts
    return todo


def _answers(comp: Component, within: float) -> bool:
    t0 = time.monotonic()
    while not http_ok(comp.health_url, comp.health_headers, timeout=2.0):
        if time.monotonic() - t0 > within:
            return False
        time.sleep(0.25)
    return True


def _lock(layout: ProjectLayout):
    """A lock on the project's state: one ``esdl up``/``down`` (or foreground repair) at a time."""
    from filelock import FileLock

    return FileLock(str(layout.root / LOCK_FILE))


def start_project(p: ProjectPlatform, echo: Callable[[str], None] = print) -> list[str]:
    """Start what is not running (stopping outdated components first); return what was started.

    Used by :func:`up` (see there) and by the foreground watch to repair a project.
    """
    with _lock(p.settings.layout):
        return _start_project(p, echo)


def _start_project(p: ProjectPlatform, echo: Callable[[str], None]) -> list[str]:
    s, layout = p.settings, p.settings.layout
    todo = _plan(p)
    for name in todo:  # outdated but alive: stop before starting the new one
        proc = _process(_record(layout, name))
        if proc is not None:
            echo(f"  {p.name}: restarting {name} (configuration changed or not answering)")
            terminate([proc])
    # launched together, gateway first: the hub needs ~2.5 s to import before it looks for the gateway
    # service (which answers after ~1 s), so nobody waits for the gateway; the hub copes with a slower one
    # (it retries the service and serves its login page meanwhile) and the checks below cover both
    _wait_healthy(s, [_start(s, p.components[n], p.hashes[n]) for n in COMPONENTS if n in todo])
    t0 = time.monotonic()
    while not _public_ready(s):
        if time.monotonic() - t0 > 30:
            raise PlatformStartError(
                f"project {p.name!r}: the login page at {s.url}hub/login or the gateway route"
                f" {s.url.rstrip('/')}{GATEWAY_PREFIX}/ does not answer through the proxy"
            )
        time.sleep(0.05)
    return todo


def trust_domain_notes(specs: Sequence[ProjectSpec], *, euid: int, shared_account: bool = False) -> list[str]:
    """What ``esdl up`` must say about who can reach whom, or an error when it must not start.

    As root (a shared server), everyone gets an OS account of their own: their server, kernels and dask
    workers run under it, so people cannot reach each other's files, processes or tokens. Not root (a
    laptop): every server runs as this one OS account, one trust domain; a project of several people
    starts only with ``shared_account``, and then with a warning that says why it is unsafe.

    >>> from platform_lib.projects import parse_project
    >>> solo = parse_project({"name": "solo", "title": "Solo", "admins": ["ada"]})
    >>> team = parse_project({"name": "team", "title": "Team", "admins": ["ada"], "members": ["bo"]})
    >>> trust_domain_notes([solo], euid=1000)[0][:58]
    'solo: runs as this OS account, one trust domain: fine for '
    >>> trust_domain_notes([team], euid=0)
    ['team: each of the 2 people runs under an OS account of their own (team_ada, ...): they cannot reach each other']
    >>> trust_domain_notes([team], euid=1000)
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: team has 2 people, but esdl up runs as one OS account (not root): every member's server, kernels and dask workers would run as that account, so each member could read the others' files, notebooks and server tokens and act as them. Run esdl up as root on a shared server (each person then gets an OS account of their own), give each person a machine of their own, or pass --shared-account if all of them trust each other with everything they do here.
    """
    from platform_lib.local.accounts import account_name

    if euid == 0 and shared_account:
        raise EsdlError(
            "--shared-account is for esdl up without root; as root everyone gets an OS account of their own"
        )
    notes = []
    for spec in specs:
        people = len(spec.users)
        if euid == 0:
            notes.append(
                f"{spec.name}: each of the {people} people runs under an OS account of their own"
                f" ({account_name(spec.name, spec.users[0])}, ...): they cannot reach each other"
            )
            continue
        if people == 1:
            notes.append(f"{spec.name}: runs as this OS account, one trust domain: fine for one person")
            continue
        unsafe = (
            f"{spec.name} has {people} people, but esdl up runs as one OS account (not root): every member's"
            " server, kernels and dask workers would run as that account, so each member could read the others'"
            " files, notebooks and server tokens and act as them."
        )
        if not shared_account:
            raise EsdlError(
                unsafe + " Run esdl up as root on a shared server (each person then gets an OS account of"
                " their own), give each person a machine of their own, or pass --shared-account if all of"
                " them trust each other with everything they do here."
            )
        notes.append("warning: " + unsafe.replace(" would run", " run").replace(" could ", " can "))
    return notes


@contextlib.contextmanager
def _project_lock(layout: ProjectLayout, echo: Callable[[str], None], timeout: float = 600.0):
    """Hold :func:`_lock`, saying so if another ``esdl up``/``down`` of the project holds it first.

    The project's folder is made if needed (owner-only). A first ``esdl up`` that fails removes the
    folder, lock file and all, while it holds the lock: whoever waited makes the folder again and locks
    the new file.
    """
    from filelock import Timeout

    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        private_dir(layout.root.parent)
        private_dir(layout.root)
        lock = _lock(layout)
        try:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if not waiting:
                    echo(
                        f"  {layout.project}: another `esdl up` or `esdl down` of this project is running;"
                        " waiting for it"
                    )
                    waiting = True
                lock.acquire(timeout=max(deadline - time.monotonic(), 0.0))
        except FileNotFoundError:  # the folder was removed meanwhile (a failed first start): make it again
            continue
        except Timeout:
            raise EsdlError(
                f"project {layout.project!r}: another `esdl up` or `esdl down` held its lock for {timeout:.0f} s;"
                f" if none is running, delete {lock.lock_file}"
            ) from None
        if Path(lock.lock_file).exists():
            break
        lock.release()  # we hold the lock of a file that was removed while we waited: lock the new one
    try:
        yield
    finally:
        lock.release()


def _holds_nothing(layout: ProjectLayout) -> bool:
    """Whether the project's folder holds nothing but its lock file (a first start, before prepare)."""
    return all(entry.name == LOCK_FILE for entry in layout.root.iterdir())


def _remove_first_start(layout: ProjectLayout) -> None:
    """Remove what a failed first start of the project wrote: its whole folder (called with the lock held,
    its processes stopped), and ``<state>/platform`` when that is empty now."""
    import shutil

    shutil.rmtree(layout.root, ignore_errors=True)
    with contextlib.suppress(OSError):
        layout.root.parent.rmdir()  # only when empty: another project's state stays


def up(
    projects: Sequence[str] = ("demo",),
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    log_level: str = "INFO",
    echo: Callable[[str], None] = print,
    shared_account: bool = False,
) -> list[ProjectPlatform]:
    """Start (or repair) the platform of each project; return when every login page answers.

    >>> up(["demo", "extremes-lab"], port=8000)
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: --port N applies to one project; ...

    Specs, cube stores, the port and address, and the installation are all checked before anything is
    written or started. If any component fails to start, every project of this call is stopped again and
    the error names the component and shows the end of its log; a project started for the first time
    is then removed again with everything this call wrote for it (``esdl status`` does not list it). Set-up and start-up of a project hold its lock: a second
    ``esdl up`` of the same project waits (and says so), then finds it running, so both print the same
    address and neither prints a password the other made.
    """
    if port and len(projects) != 1:
        raise EsdlError(
            "--port N applies to one project; start projects one at a time to choose their ports"
            " (--port 0 gives each project any free port)"
        )
    if len(set(projects)) != len(projects):
        raise EsdlError(f"a project is named twice: {list(projects)}")
    check_port_number(port)
    problem = listen_address_problem(host)
    if problem:
        raise EsdlError(problem)
    check_requirements()
    specs = [load_project(name) for name in projects]  # every spec is valid before anything starts
    for note in trust_domain_notes(specs, euid=os.geteuid(), shared_account=shared_account):
        echo(f"  {note}")
    with contextlib.ExitStack() as locks:
        layouts = {spec.name: ProjectLayout.for_project(spec.name) for spec in specs}
        first_start = []  # projects with no state before this call: a failure removes all they wrote
        for name in sorted(layouts):  # one order: two calls never deadlock
            locks.enter_context(_project_lock(layouts[name], echo))
            if _holds_nothing(layouts[name]):
                first_start.append(layouts[name])
        prepared: list[ProjectPlatform] = []
        try:
            for spec in specs:
                prepared.append(prepare(spec, port=port, host=host, log_level=log_level))
            publics = [p.settings.ports["public"] for p in prepared]
            if len(set(publics)) != len(publics):
                raise EsdlError(f"two projects would share the web port {publics}; give them different ports")
            for p in prepared:
                started = _start_project(p, echo)
                what = f"started {', '.join(started)}" if started else "already running"
                echo(f"{p.name}: ready at {p.url} ({what})")
        except BaseException:
            for p in prepared:
                _stop_project(p.settings.layout, timeout=10.0)
            for layout in first_start:
                _remove_first_start(layout)
            raise
    return prepared


# ---------------------------------------------------------------------------------------------------------
# down and status


def stop_project(layout: ProjectLayout, timeout: float = 10.0) -> int:
    """Stop every process of one project (components, user servers, kernels, clusters); return the count.

    All get SIGTERM at once (the gateway stops its clusters, servers their kernels), whatever is left
    after ``timeout`` seconds gets SIGKILL, and a last sweep catches anything started meanwhile.
    """
    try:
        with _lock(layout):
            return _stop_project(layout, timeout)
    except FileNotFoundError:  # a failed first start removed the project's folder meanwhile: nothing runs
        return 0


def _stop_project(layout: ProjectLayout, timeout: float) -> int:
    tag = str(layout.root.resolve())
    procs = {proc.pid: proc for name in COMPONENTS if (proc := _process(_record(layout, name)))}
    procs.update({proc.pid: proc for proc in tagged_processes(tag)})
    terminate(list(procs.values()), timeout=timeout)
    late = tagged_processes(tag)
    terminate(late, timeout=2)
    stop_processes_of(layout)  # as root: whatever people started outside the platform's tag
    for name in COMPONENTS:
        layout.run_file(name).unlink(missing_ok=True)
    return len(procs) + len(late)


def down(projects: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """Stop the named projects (all with state when ``None``); return how many processes were stopped.

    >>> down(["never-started-project"])
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: project 'never-started-project' has never been started (no state in ...)

    The projects are stopped in parallel (one thread each: SIGTERM, wait, SIGKILL).
    """
    from concurrent.futures import ThreadPoolExecutor

    layouts = known_layouts() if not projects else [ProjectLayout.for_project(n) for n in projects]
    if not layouts:
        echo("no project has been started yet: nothing to stop")
    for layout in layouts:
        if not layout.has_started():
            raise EsdlError(f"project {layout.project!r} has never been started (no state in {layout.root})")
    for layout in layouts:
        _down_marker(layout).touch()
    with ThreadPoolExecutor(max_workers=max(len(layouts), 1)) as pool:
        counts = list(pool.map(stop_project, layouts))
    for layout, n in zip(layouts, counts, strict=True):
        echo(f"{layout.project}: stopped ({n} process(es))" if n else f"{layout.project}: not running")
    return sum(counts)


@dataclass
class ProjectStatus:
    """What :func:`status` reports for one project."""

    name: str
    url: str | None
    components: dict[str, str]  # running | dead | stopped | not answering
    pids: dict[str, int]
    user_servers: list[str]
    clusters: int
    #: people whose server the hub lists as running but whose process is gone
    dead_servers: list[str]
    #: ``user/cluster`` of every cluster the gateway lists as running whose scheduler is gone
    dead_clusters: list[str]
    accounts: list[str]
    state_dir: Path

    @property
    def state(self) -> str:
        values = set(self.components.values())
        if values == {"running"}:
            return "degraded" if self.dead_servers or self.dead_clusters else "running"
        return "stopped" if values == {"stopped"} else "degraded"


def project_status(layout: ProjectLayout) -> ProjectStatus:
    """The state of each component of one project, its user servers and clusters.

    >>> import tempfile
    >>> project_status(ProjectLayout("demo", Path(tempfile.mkdtemp()))).state
    'stopped'
    """
    ports = layout.saved_ports()
    url = f"http://localhost:{ports['public']}/" if ports else None
    comps: dict[str, str] = {}
    pids: dict[str, int] = {}
    health = {}
    if ports:
        token = layout.read_secret("proxy_token") if layout.secret_file("proxy_token").exists() else ""
        health = {
            "gateway": (f"http://127.0.0.1:{ports['gateway_http']}{GATEWAY_PREFIX}/api/health", {}),
            "proxy": (
                f"http://127.0.0.1:{ports['proxy_api']}/api/routes",
                {"Authorization": f"token {token}"},
            ),
            "hub": (f"http://127.0.0.1:{ports['hub']}/hub/health", {}),
        }
    for name in COMPONENTS:
        record = _record(layout, name)
        proc = _process(record)
        if record is None:
            comps[name] = "stopped"
        elif proc is None:
            comps[name] = "dead"
        else:
            pids[name] = proc.pid
            url_, headers = health.get(name, ("", {}))
            comps[name] = "running" if http_ok(url_, headers) else "not answering"
    tag = str(layout.root.resolve())
    servers, clusters = [], 0
    for proc in tagged_processes(tag, ("user", "cluster")):
        try:
            cmd = " ".join(proc.cmdline())
            env = proc.environ()
        except Exception:  # noqa: BLE001 - a process that ended meanwhile
            continue
        if "jupyterhub-singleuser" in cmd:
            servers.append(env.get("JUPYTERHUB_USER", "?"))
        elif env.get(ROLE_VARIABLE) == "cluster" and "scheduler" in cmd:
            clusters += 1
    listed = hub_servers(layout) if comps.get("hub") == "running" else {}
    dead = sorted(user for user, pid in listed.items() if not _is_alive(pid, "jupyterhub-singleuser"))
    running = gateway_clusters(layout) if comps.get("gateway") == "running" else {}
    lost = sorted(
        f"{user}/{name}" for name, (user, pid) in running.items() if not _is_alive(pid, "scheduler")
    )
    return ProjectStatus(
        layout.project,
        url,
        comps,
        pids,
        sorted(servers),
        clusters,
        dead,
        lost,
        layout.accounts(),
        layout.root,
    )


def hub_servers(layout: ProjectLayout) -> dict[str, int | None]:
    """``user -> pid`` of every server the hub's database lists as running (read-only; empty before the
    hub first ran). ``SimpleLocalProcessSpawner`` keeps the pid in the spawner's state.

    >>> import tempfile
    >>> hub_servers(ProjectLayout("demo", Path(tempfile.mkdtemp())))
    {}
    """
    import sqlite3

    path = layout.hub_dir / "jupyterhub.sqlite"
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute(
            "SELECT users.name, spawners.state FROM spawners JOIN users ON users.id = spawners.user_id"
            " WHERE spawners.server_id IS NOT NULL"
        ).fetchall()
    return {name: (json.loads(state or "{}") or {}).get("pid") for name, state in rows}


def gateway_clusters(layout: ProjectLayout) -> dict[str, tuple[str, int | None]]:
    """``cluster name -> (user, scheduler pid)`` of every cluster the gateway's database lists as running
    (read-only; empty before the gateway first ran).

    >>> import tempfile
    >>> gateway_clusters(ProjectLayout("demo", Path(tempfile.mkdtemp())))
    {}
    """
    import sqlite3

    path = layout.gateway_db
    if not path.exists():
        return {}
    running = 3  # dask_gateway_server.backends.db_base.JobStatus.RUNNING
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        try:
            rows = db.execute(
                "SELECT name, username, state FROM clusters WHERE status = ?", (running,)
            ).fetchall()
        except sqlite3.OperationalError:  # created, tables not yet
            return {}
    return {name: (user, (json.loads(state or b"{}") or {}).get("pid")) for name, user, state in rows}


def _is_alive(pid: int | None, command: str) -> bool:
    """Whether ``pid`` is a live process whose command line holds ``command``."""
    if not pid:
        return False
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and command in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def status(projects: Sequence[str] | None = None) -> list[ProjectStatus]:
    """Status of the named projects (every started project when ``None``); a project that has never been
    started (:meth:`ProjectLayout.has_started`) has none.

    >>> import tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"ESDL_STATE_DIR": tempfile.mkdtemp()}):
    ...     status(), status(["demo"])
    ([], [])
    """
    layouts = known_layouts() if not projects else [ProjectLayout.for_project(n) for n in projects]
    return [project_status(layout) for layout in layouts if layout.has_started()]


# ---------------------------------------------------------------------------------------------------------
# foreground


class _Stop(Exception):
    pass


def run_foreground(
    prepared: Sequence[ProjectPlatform], echo: Callable[[str], None] = print, interval: float = 2.0
) -> None:
    """Watch the running projects, restart dead components, and stop everything on Ctrl-C or SIGTERM.

    ``esdl up --foreground`` calls it after :func:`up`; ``tests/test_platform_errors.py`` runs it.
    """

    def on_term(signum, frame):
        raise _Stop()

    old = signal.signal(signal.SIGTERM, on_term)
    watched = list(prepared)
    try:
        echo("Press Ctrl-C to stop.")
        while watched:
            time.sleep(interval)
            for p in list(watched):
                if _down_requested(p.settings.layout):  # `esdl down` from another terminal: leave it down
                    watched.remove(p)
                    echo(f"{p.name}: stopped by `esdl down`; no longer watched")
                    continue
                todo = _plan(p)
                if todo:
                    echo(f"{p.name}: {', '.join(todo)} not running or not answering; restarting")
                    start_project(p, echo)
                    echo(f"{p.name}: ready again at {p.url}")
    except (KeyboardInterrupt, _Stop):
        echo("\nStopping ...")
    finally:
        signal.signal(signal.SIGTERM, old)
        for p in watched:
            n = stop_project(p.settings.layout)
            echo(f"{p.name}: stopped ({n} process(es))")
        sys.stdout.flush()


def _down_marker(layout: ProjectLayout) -> Path:
    """Written by :func:`down`, removed by :func:`prepare`: a watcher (``esdl up --foreground``) of the
    project stops watching it instead of restarting what ``down`` stopped."""
    return layout.run_dir / "down-requested"


def _down_requested(layout: ProjectLayout) -> bool:
    return _down_marker(layout).exists()
