"""Versions that agree: the hub of a Kubernetes deployment runs JupyterHub 5.5 (z2jh 4.4.0's hub image,
``.venv-hub``), the user image runs this environment's ``jupyterhub-singleuser`` (the image lock's
JupyterHub 6). A real 5.5 hub spawns a real server of this environment; a person logs in through the
hub's form, reaches JupyterLab and runs code in a kernel, and the hub stops the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from platform_lib.local.client import HubClient
from platform_lib.local.configs import proxy_executable
from platform_lib.local.layout import free_port
from platform_lib.local.supervisor import http_ok

pytestmark = pytest.mark.slow

HUB_VENV = Path(__file__).resolve().parents[1] / ".venv-hub"
PASSWORD = "a-long-shared-password"


def _version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import jupyterhub; print(jupyterhub.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def hub_55(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub-5.5")
    public, hub, proxy_api = free_port(), free_port(), free_port()
    singleuser = Path(sys.executable).parent / "jupyterhub-singleuser"
    args = ["--allow-root"] if os.geteuid() == 0 else []
    (tmp / "jupyterhub_config.py").write_text(
        f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{proxy_executable()!r}]
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {PASSWORD!r}
c.Authenticator.allowed_users = {{"ada"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [{str(singleuser)!r}]
c.Spawner.args = {args!r} + ["--LabApp.news_url=None"]
c.Spawner.default_url = "/lab"
"""
    )
    log = (tmp / "hub.log").open("w")
    proc = subprocess.Popen(
        [str(HUB_VENV / "bin" / "jupyterhub"), "-f", str(tmp / "jupyterhub_config.py")],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{public}"
    try:
        deadline = time.monotonic() + 120
        while not http_ok(f"{url}/hub/login"):
            assert proc.poll() is None, (tmp / "hub.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp / "hub.log").read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        log.close()


def test_a_55_hub_runs_a_server_of_the_user_environment(hub_55):
    assert _version(HUB_VENV / "bin" / "python").startswith("5.5.")
    user_side = _version(Path(sys.executable))
    lock = (Path(__file__).resolve().parents[1] / "images" / "notebook" / "requirements.lock").read_text()
    assert f"\njupyterhub=={user_side} " in lock or f"\njupyterhub=={user_side}\n" in lock  # the image's
    client = HubClient(hub_55)
    client.login("ada", PASSWORD)
    client.open_lab()
    kernel = client.start_kernel()
    assert client.run(kernel, "import jupyterhub; print(jupyterhub.__version__)").strip() == user_side
    client.stop_server()
    # a name outside the allowed users cannot log in
    with pytest.raises(Exception, match="refused"):
        HubClient(hub_55).login("mallory", PASSWORD)
