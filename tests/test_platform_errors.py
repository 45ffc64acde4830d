"""Bad input and faults of the embedded platform: clear errors, nothing left running, clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from platform_helpers import PlatformEnv, small_spec

from platform_lib.local import supervisor
from platform_lib.local.supervisor import PlatformStartError, http_ok, tagged_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def penv(tmp_path):
    return PlatformEnv.create(tmp_path)


def assert_nothing_running(penv: PlatformEnv, project: str) -> None:
    layout = penv.layout(project)
    assert penv.processes(project) == []
    assert not any(layout.run_file(c).exists() for c in supervisor.COMPONENTS)


def test_invalid_spec_starts_nothing(penv: PlatformEnv):
    spec = small_spec("broken", ["alice"], ["alice"], dask={"max_wrkers_per_user": 3})
    spec["login"] = {"method": "github", "client_id": "x", "client_secret": "hunter2-plaintext"}
    penv.write_spec(spec)
    proc = penv.esdl("up", "--project", "broken", "--port", "0", check=False)
    assert proc.returncode == 2
    err = proc.stderr
    assert "broken.yaml is not a valid project spec (3 problems)" in err
    assert "dask.max_wrkers_per_user: unknown field. Did you mean 'max_workers_per_user'?" in err
    assert "login.client_secret: looks like a plaintext secret" in err
    assert "members: 'alice' also listed under admins" in err
    assert not penv.layout("broken").exists()
    unknown = penv.esdl("up", "--project", "nosuch", check=False)
    assert unknown.returncode == 2 and "no project named 'nosuch'" in unknown.stderr


def test_port_in_use_is_refused_and_starts_nothing(penv: PlatformEnv):
    penv.write_spec(small_spec("alpha", ["alice"], ["bob"]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = penv.esdl("up", "--project", "alpha", "--port", str(port), check=False)
    assert proc.returncode == 2
    assert f"port {port} (the web address of project 'alpha') is in use by another program" in proc.stderr
    assert "--port N" in proc.stderr
    assert_nothing_running(penv, "alpha")


def test_missing_cube_store_is_refused_and_starts_nothing(penv: PlatformEnv):
    entry = {"name": "my-region", "description": "regional cube", "urlpath": "regions/missing.zarr"}
    penv.write_spec(small_spec("alpha", ["alice"], ["bob"], catalog={"entries": [entry]}))
    proc = penv.esdl("up", "--project", "alpha", "--port", "0", check=False)
    assert proc.returncode == 2
    missing = os.path.join(penv.env["ESDL_DATA_DIR"], "regions", "missing.zarr")
    assert f"catalog.entries[0] ('my-region'): the store {missing} does not exist" in proc.stderr
    assert_nothing_running(penv, "alpha")


def test_a_component_that_fails_is_reported_with_its_log_and_everything_stops(penv, monkeypatch):
    for key in ("ESDL_STATE_DIR", "ESDL_PROJECTS_DIR", "ESDL_NOTEBOOKS_DIR", "ESDL_DATA_DIR"):
        monkeypatch.setenv(key, penv.env[key])
    penv.write_spec(small_spec("alpha", ["alice"], ["bob"]))
    real_components = supervisor.components

    def hub_that_crashes(settings):
        comps = real_components(settings)
        # the real hub, with a setting it refuses: it exits while starting, after gateway and proxy are up
        comps["hub"].cmd = [*comps["hub"].cmd, "--JupyterHub.db_url=sqlite:////no-such-folder/hub.sqlite"]
        return comps

    monkeypatch.setattr(supervisor, "components", hub_that_crashes)
    with pytest.raises(PlatformStartError) as info:
        supervisor.up(["alpha"], port=0, echo=lambda line: None)
    message = str(info.value)
    assert "project 'alpha': hub exited with code" in message
    assert "last lines of" in message and "hub.log" in message
    assert "jupyterhub upgrade-db" in message  # the hub's own complaint about the database, from its log
    assert_nothing_running(penv, "alpha")
    assert not penv.layout("alpha").exists()  # a failed first start leaves no state (issue 15)
    assert supervisor.status() == []


class Foreground:
    """``esdl up --project alpha --foreground`` in a subprocess, and what it printed so far."""

    def __init__(self, penv: PlatformEnv):
        penv.write_spec(small_spec("alpha", ["alice"], ["bob"]))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "platform_lib.cli",
                "up",
                "--project",
                "alpha",
                "--port",
                "0",
                "--foreground",
            ],
            env=penv.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, text: str, timeout: float = 180) -> None:
        t0 = time.monotonic()
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() - t0 < timeout, "".join(self.lines)
            self.lines.append(self.proc.stdout.readline())


def test_foreground_restarts_a_dead_component_and_ctrl_c_stops_everything(penv: PlatformEnv):
    watch = Foreground(penv)
    proc, lines, read_until = watch.proc, watch.lines, watch.read_until
    try:
        read_until("Press Ctrl-C to stop.")
        url = penv.url("alpha")
        assert http_ok(f"{url}/hub/login")
        gateway = supervisor.component_process(penv.layout("alpha"), "gateway")
        gateway.kill()  # SIGKILL
        read_until("alpha: ready again at")
        assert any("gateway not running or not answering; restarting" in line for line in lines)
        assert http_ok(f"{url}/services/dask-gateway/api/health")
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            penv.esdl("down", check=False)
    rest = proc.stdout.read()
    assert "alpha: stopped" in rest
    assert_nothing_running(penv, "alpha")
    assert tagged_processes(str(penv.layout("alpha").root.resolve())) == []
    assert not http_ok(f"{url}/hub/login")


@pytest.fixture(scope="module")
def short_fuse(tmp_path_factory):
    """A running project whose user servers cannot start (an argument jupyterhub-singleuser refuses, set
    on the hub's command line)."""
    penv = PlatformEnv.create(tmp_path_factory.mktemp("short-fuse"))
    penv.write_spec(small_spec("alpha", ["alice"], ["bob"]))
    real_components = supervisor.components

    def with_overrides(settings):
        comps = real_components(settings)
        comps["hub"].cmd = [*comps["hub"].cmd, "--Spawner.args=--no-such-flag"]
        return comps

    with pytest.MonkeyPatch.context() as mp:
        for key in ("ESDL_STATE_DIR", "ESDL_PROJECTS_DIR", "ESDL_NOTEBOOKS_DIR", "ESDL_DATA_DIR"):
            mp.setenv(key, penv.env[key])
        mp.setattr(supervisor, "components", with_overrides)
        try:
            for p in supervisor.up(["alpha"], port=0, echo=lambda line: None):
                penv.passwords.update({("alpha", u): pw for u, pw in p.new_logins.items()})
            yield penv
        finally:
            supervisor.down(["alpha"], echo=lambda line: None)
    assert_nothing_running(penv, "alpha")


def test_an_idle_cluster_is_stopped_by_the_gateway(short_fuse: PlatformEnv):
    from platform_lib.gateway import close_gateway, open_gateway
    from platform_lib.local.client import HubClient

    client = HubClient(short_fuse.url("alpha"))
    client.login("alice", short_fuse.password("alpha", "alice"))
    ports = short_fuse.layout("alpha").saved_ports()
    gateway = open_gateway(
        f"{short_fuse.url('alpha')}/services/dask-gateway",
        proxy_address=f"gateway://127.0.0.1:{ports['gateway_tcp']}",
        token=client.api_token(),
    )
    tag = str(short_fuse.layout("alpha").root.resolve())
    try:
        name = gateway.submit(idle_timeout_minutes=0.1)  # 6 s; a cluster nobody uses: idle from the start
        deadline = time.monotonic() + 60
        while gateway.get_cluster(name).status.name != "RUNNING":  # its scheduler started
            assert time.monotonic() < deadline, f"cluster {name} never started"
            time.sleep(0.2)
        assert tagged_processes(tag, ["cluster"]), "no scheduler process for the running cluster"
        report = gateway.get_cluster(name)
        while report.status.name in ("PENDING", "RUNNING", "STOPPING"):
            assert time.monotonic() < deadline, f"idle cluster {name} still {report.status.name}"
            time.sleep(0.5)
            report = gateway.get_cluster(name)
        assert report.status.name == "STOPPED"
        assert gateway.list_clusters() == []
        while tagged_processes(tag, ["cluster"]):  # and its processes are gone
            assert time.monotonic() < deadline, "the idle cluster's processes are still running"
            time.sleep(0.2)
    finally:
        for cluster in gateway.list_clusters():
            gateway.stop_cluster(cluster.name)
        close_gateway(gateway)


def test_a_user_server_that_exits_while_starting_is_reported_with_its_exit_code(short_fuse: PlatformEnv):
    from platform_lib.local.client import HubClient

    client = HubClient(short_fuse.url("alpha"))
    client.login("bob", short_fuse.password("alpha", "bob"))
    log = short_fuse.layout("alpha").log_file("hub")
    client.session.get(f"{client.base_url}/hub/spawn", timeout=120)
    deadline = time.monotonic() + 60  # the hub alone would wait for Spawner.http_timeout (90 s) first
    while "the server of 'bob' exited with code 2 while starting" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    assert "unrecognized arguments: --no-such-flag" in log.read_text()  # its own complaint, in the hub log
    token = client.api_token()
    user = client.session.get(
        f"{client.base_url}/hub/api/users/bob", headers={"Authorization": f"token {token}"}, timeout=30
    ).json()
    assert user["servers"] == {}  # the hub gave up on it at once and is ready for another try


def test_esdl_down_from_another_terminal_ends_the_foreground_watch(penv: PlatformEnv):
    watch = Foreground(penv)
    proc, lines = watch.proc, watch.lines
    try:
        watch.read_until("Press Ctrl-C to stop.")
        url = penv.url("alpha")
        penv.esdl("down")  # the second terminal
        assert proc.wait(timeout=60) == 0, "".join(lines)  # the watcher ends instead of restarting
        time.sleep(12)  # longer than the watcher's restart check (2 s) and a restart would take
        assert not http_ok(f"{url}/hub/login")
        assert_nothing_running(penv, "alpha")
    finally:
        if proc.poll() is None:
            proc.kill()
            penv.esdl("down", check=False)
    assert "alpha: stopped by `esdl down`; no longer watched" in "".join(lines) + proc.stdout.read()


def test_two_first_esdl_up_at_once_tell_the_same_truth(penv: PlatformEnv):
    from platform_lib.cli.platform import printed_logins
    from platform_lib.local.client import HubClient

    penv.write_spec(small_spec("gamma", ["alice"], ["bob"]))
    command = [sys.executable, "-m", "platform_lib.cli", "up", "--project", "gamma", "--port", "0"]
    runs = [
        subprocess.Popen(
            command, env=penv.env, cwd=penv.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        outs = [run.communicate(timeout=240) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outs
        stdouts = [out for out, _ in outs]
        # the same address from both, and one of them waited for the other
        urls = {
            line.split(" at ")[1].split()[0]
            for out in stdouts
            for line in out.splitlines()
            if "ready at" in line
        }
        assert urls == {f"{penv.url('gamma')}/".replace("127.0.0.1", "localhost")}, stdouts
        assert sum("waiting for it" in out for out in stdouts) == 1, stdouts
        # the passwords were printed once, by one of them, and they work
        printed = [printed_logins(out) for out in stdouts]
        assert sorted(len(p) for p in printed) == [0, 2], stdouts
        for (_, user), password in (printed[0] or printed[1]).items():
            HubClient(penv.url("gamma")).login(user, password)
    finally:
        penv.esdl("down", check=False)
    assert_nothing_running(penv, "gamma")
