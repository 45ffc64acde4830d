"""The embedded platform end to end, against the real processes on free ports.

One module-wide platform runs two projects side by side (``esdl up --project alpha --project beta``).
The tests log in through the real login form, spawn real JupyterLab servers, run code in the user's own
kernel (a demo cube from the catalog reduced on a Dask Gateway cluster of two workers), drive Debian's
Chromium through the login, check isolation between users and projects, kill the hub with SIGKILL and
bring it back, and check that ``esdl down`` leaves no process behind.
"""

from __future__ import annotations

import grp
import json
import os
import re
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from platform_helpers import (
    REPO,
    PlatformEnv,
    colour_share,
    ink_share,
    launch_chromium,
    log_in_to_lab,
    small_spec,
)

from platform_lib.gateway import close_gateway, gateway_cluster, open_gateway
from platform_lib.local.client import HubClient, LoginFailed
from platform_lib.local.supervisor import http_ok

pytestmark = pytest.mark.slow

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def platform(tmp_path_factory, demo_catalog):
    """alpha (alice admin, bob member) and beta (dave admin, erin member), started by ``esdl up``."""
    penv = PlatformEnv.create(tmp_path_factory.mktemp("platform"))
    penv.env.update(ESDL_CATALOG=os.environ["ESDL_CATALOG"], ESDL_DATA_DIR=os.environ["ESDL_DATA_DIR"])
    curated = penv.root / "notebooks"
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        (curated / nb.name).write_bytes(nb.read_bytes())
    alpha = small_spec("alpha", ["alice"], ["bob"])
    alpha["dask"]["max_clusters_per_user"] = 2  # and 2 workers over both
    penv.write_spec(alpha)
    penv.write_spec(small_spec("beta", ["dave"], ["erin"]))
    try:
        out = penv.esdl("up", "--project", "alpha", "--project", "beta", "--port", "0").stdout
        assert "alpha: ready at http://localhost:" in out and "beta: ready at" in out, out
        # as root everyone gets an OS account of their own (tests/test_platform_isolation.py attacks it)
        assert (
            "alpha: each of the 2 people runs under an OS account of their own (alpha_alice, ...)" in out
        ), out
        # every person's new password is printed once (and logs in: the tests below use them)
        assert {("alpha", "alice"), ("alpha", "bob"), ("beta", "dave"), ("beta", "erin")} <= set(
            penv.passwords
        )
        yield penv
    finally:
        penv.esdl("down", check=False)
    for project in ("alpha", "beta"):
        assert penv.processes(project) == [], f"orphans of {project} after esdl down"


def login(penv: PlatformEnv, project: str, user: str) -> HubClient:
    client = HubClient(penv.url(project))
    client.login(user, penv.password(project, user))
    return client


def test_status_ports_and_owner_only_state(platform: PlatformEnv):
    status = platform.esdl("status").stdout
    for project in ("alpha", "beta"):
        assert f"{project}: running" in status
        admin = "alice" if project == "alpha" else "dave"
        assert platform.password(project, admin) not in status and f"accounts {admin}, " in status
        credentials = platform.layout(project).credentials_file.read_text()
        assert platform.password(project, admin) not in credentials  # only its hash is kept
    assert status.count("  hub      running (pid") == 2
    assert platform.url("alpha") != platform.url("beta")
    for project in ("alpha", "beta"):
        layout = platform.layout(project)
        # nobody else lists the state folder; people's accounts pass through it to their homes, and only
        # the project's own people into the project folder (root: one OS account per person)
        assert stat.S_IMODE((platform.root / "state").stat().st_mode) == 0o711
        assert stat.S_IMODE(layout.root.stat().st_mode) == 0o710
        assert grp.getgrgid(layout.root.stat().st_gid).gr_name == f"esdl.{project}"
        for private in (
            layout.secrets_dir,
            layout.hub_dir,
            layout.logs_dir,
            layout.run_dir,
            layout.gateway_db.parent,
        ):
            assert stat.S_IMODE(private.stat().st_mode) == 0o700, private
        for secret in [layout.credentials_file, layout.ports_file, *layout.secrets_dir.iterdir()]:
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        assert layout.read_secret("cookie_secret") not in layout.hub_config.read_text()


def test_credentials_are_per_person_and_per_project(platform: PlatformEnv):
    alpha, beta = platform.url("alpha"), platform.url("beta")
    with pytest.raises(LoginFailed):  # alice's password does not log in as bob
        HubClient(alpha).login("bob", platform.password("alpha", "alice"))
    with pytest.raises(LoginFailed):  # a name not in the spec
        HubClient(alpha).login("mallory", platform.password("alpha", "alice"))
    with pytest.raises(LoginFailed):  # a member of alpha cannot log into beta
        HubClient(beta).login("alice", platform.password("alpha", "alice"))
    with pytest.raises(LoginFailed):  # nor with beta's people's passwords
        HubClient(beta).login("alice", platform.password("beta", "dave"))
    alice = login(platform, "alpha", "alice")
    token = alice.api_token()
    me = alice.session.get(f"{alpha}/hub/api/user", headers={"Authorization": f"token {token}"})
    assert me.status_code == 200 and me.json()["name"] == "alice" and me.json()["admin"] is True
    # alpha's token and cookies mean nothing to beta's hub
    assert (
        alice.session.get(f"{beta}/hub/api/user", headers={"Authorization": f"token {token}"}).status_code
        == 403
    )
    assert alice.session.get(f"{beta}/hub/api/user").status_code == 403
    bob = login(platform, "alpha", "bob")
    assert bob.session.get(f"{alpha}/hub/api/user").json()["admin"] is False
    # sign-up is closed
    assert bob.session.get(f"{alpha}/hub/signup", allow_redirects=False).status_code == 404


KERNEL_CODE = """
import json, os
import dask_gateway
import platform_lib
from platform_lib.gateway import gateway_cluster

names = platform_lib.list_cubes()
ds = platform_lib.open_cube("esdc-demo-ts", variables=["air_temperature_2m"])
gateway = dask_gateway.Gateway()  # no arguments: the session's environment says where and who
with gateway_cluster(2, gateway=gateway) as (cluster, client):
    future = client.compute(ds["air_temperature_2m"].mean())
    value = float(future.result())
    roles = client.run(lambda: os.environ.get("ESDL_PLATFORM_ROLE"))
print(json.dumps({"names": names, "value": value, "roles": sorted(roles.values()),
                  "cwd": os.getcwd(), "team_catalog": os.environ["ESDL_TEAM_CATALOG"]}))
"""


def test_session_opens_a_cube_and_reduces_it_on_a_gateway_cluster(platform: PlatformEnv):
    alice = login(platform, "alpha", "alice")
    html = alice.open_lab()
    assert "jupyter-config-data" in html
    listing = alice.list_dir()
    assert "team" in listing and "00-start-here.ipynb" in listing and "esdl-docs" in listing
    assert {p.name for p in (REPO / "notebooks").glob("*.ipynb")} <= set(listing)
    kernel = alice.start_kernel()
    result = json.loads(alice.run(kernel, KERNEL_CODE).strip().splitlines()[-1])
    assert "esdc-demo-ts" in result["names"]
    assert result["roles"] == ["cluster", "cluster"]  # two workers, started by the project's gateway
    assert Path(result["cwd"]) == platform.layout("alpha").homes_dir / "alice"
    assert result["team_catalog"] == str(platform.layout("alpha").team_catalog)

    import platform_lib.catalog as catalog

    local = float(
        catalog.open_cube("esdc-demo-ts", variables=["air_temperature_2m"])["air_temperature_2m"]
        .mean()
        .compute()
    )
    np.testing.assert_allclose(result["value"], local, rtol=1e-5)


def test_gateway_isolation_scopes_and_limits(platform: PlatformEnv):
    ports = platform.layout("alpha").saved_ports()
    address = f"{platform.url('alpha')}/services/dask-gateway"
    proxy = f"gateway://127.0.0.1:{ports['gateway_tcp']}"
    alice, bob = login(platform, "alpha", "alice"), login(platform, "alpha", "bob")

    def gateway(token: str):
        return open_gateway(address, proxy_address=proxy, token=token)

    as_alice, as_bob = gateway(alice.api_token()), gateway(bob.api_token())
    # worker choices come from the spec
    with pytest.raises(Exception, match="worker_memory"):
        # submit (the request new_cluster makes): a failed new_cluster leaves a half-built GatewayCluster
        # whose __del__ can deadlock dask-gateway's event loop when collected on its thread
        as_alice.submit(worker_memory="64Gi")
    cluster = as_alice.new_cluster()
    try:
        assert [c.name for c in as_alice.list_clusters()] == [cluster.name]
        assert as_bob.list_clusters() == []
        with pytest.raises(Exception, match="403|[Ff]orbidden|not found|404"):
            # what Gateway.connect asks first; connect itself would leave a half-built GatewayCluster
            # whose __del__ can deadlock dask-gateway's event loop when garbage-collected on its thread
            as_bob.get_cluster(cluster.name)
        with pytest.raises(Exception, match="403|[Ff]orbidden|not found|404"):
            as_bob.stop_cluster(cluster.name)
        assert [c.name for c in as_alice.list_clusters()] == [cluster.name]  # still running
        # a token without the access:services!service=dask-gateway scope is refused
        narrow = gateway(alice.api_token(scopes=["users:activity!user"]))
        with pytest.raises(Exception, match="401|[Uu]nauthorized"):
            narrow.list_clusters()
        # the spec's limit: two running clusters per user
        second = as_alice.submit()
        with pytest.raises(Exception, match="max_clusters_per_user"):
            as_alice.submit()
        as_alice.stop_cluster(second)
        close_gateway(narrow)
    finally:
        cluster.shutdown()
        close_gateway(cluster.gateway)
        close_gateway(as_alice)
        close_gateway(as_bob)
    # beta's gateway does not know alpha's users
    beta_ports = platform.layout("beta").saved_ports()
    other = open_gateway(
        f"{platform.url('beta')}/services/dask-gateway",
        proxy_address=f"gateway://127.0.0.1:{beta_ports['gateway_tcp']}",
        token=alice.api_token(),
    )
    with pytest.raises(Exception, match="401|403|[Uu]nauthorized|[Ff]orbidden|Permission failure"):
        other.list_clusters()
    close_gateway(other)


def test_max_workers_per_user_spans_a_users_clusters(platform: PlatformEnv):
    ports = platform.layout("alpha").saved_ports()
    alice = login(platform, "alpha", "alice")
    gateway = open_gateway(
        f"{platform.url('alpha')}/services/dask-gateway",
        proxy_address=f"gateway://127.0.0.1:{ports['gateway_tcp']}",
        token=alice.api_token(),
    )
    try:
        with gateway_cluster(2, gateway=gateway) as (first, first_client):  # the user's 2 workers
            second = gateway.new_cluster()
            try:
                with pytest.raises(
                    Exception, match=r"dask.max_workers_per_user = 2\); this cluster may have at most 0"
                ):
                    second.scale(2)
                second_client = second.get_client(set_as_default=False)
                assert len(second_client.scheduler_info()["workers"]) == 0
                assert len(first_client.scheduler_info()["workers"]) == 2
            except BaseException:
                second.shutdown()
                raise
        # with the first cluster gone, the second may have workers
        second.scale(1)
        second_client.wait_for_workers(1, timeout=120)
        second_client.close()
        second.shutdown()
        close_gateway(second.gateway)
    finally:
        close_gateway(gateway)


def _inside(inner: dict | None, outer: dict | None) -> bool:
    return bool(inner and outer) and (
        outer["x"] <= inner["x"]
        and outer["y"] <= inner["y"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 1
    )


#: run in erin's own kernel while the browser watches: work for the cluster the Dask sidebar started
SIDEBAR_CLUSTER_WORK = """
import dask.array as da
from dask_gateway import Gateway

gateway = Gateway()
(report,) = gateway.list_clusters()
cluster = gateway.connect(report.name)
cluster.scale(1)
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
for _ in range(4):
    (da.random.random((2000, 2000), chunks=250) ** 2).sum().compute()
print(cluster.name, cluster.dashboard_link)
"""


@pytest.mark.browser
def test_the_first_hour_in_the_browser(platform: PlatformEnv):
    """erin's first hour, in Chromium: her login lands on the start page (her server's first start copied
    it in), with her server's CPU and memory in the status bar; a terminal runs ``esdl cubes list``; Help
    opens the platform's docs; the Dask sidebar starts a cluster on the project's gateway and shows its
    task stream while work runs on it. Each step is checked on the page (text, element bounds)
    and in its screenshot (ink where the text is, task rectangles where the task stream is)."""
    from playwright.sync_api import sync_playwright

    artifacts = REPO / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shots = {step: artifacts / f"first-hour-{step}.png" for step in ("start", "docs", "terminal", "dask")}
    # the address `esdl up` prints, which the hub knows as its own: links it makes are same-origin there
    url = platform.url("beta").replace("127.0.0.1", "localhost")
    erin = login(platform, "beta", "erin")  # the test's own session (the browser logs in by itself)
    erin.open_lab()  # erin's first start (the start page is copied in: her server opens it from now on)
    # terminals in screen-reader mode, as a person may set it: xterm then also writes its rows as text,
    # which the test reads (the canvas is what the screenshot shows)
    settings = f"{platform.url('beta')}/user/erin/lab/api/settings/@jupyterlab/terminal-extension:plugin"
    resp = erin.session.put(
        settings,
        json={"raw": '{"screenReaderMode": true}'},
        headers={"Authorization": f"token {erin.api_token()}"},
    )
    assert resp.status_code == 204, resp.text
    with sync_playwright() as pw:
        browser = launch_chromium(
            pw, platform.root / "chromium-profile-erin", viewport={"width": 1280, "height": 800}
        )
        page = browser.new_page()
        try:
            # 1. the login lands on the start page, rendered, in the main area
            log_in_to_lab(page, url, "erin", platform.password("beta", "erin"))
            heading = page.locator(".jp-NotebookPanel .jp-RenderedMarkdown h1", has_text="Start here")
            heading.wait_for(timeout=180_000)
            page.wait_for_function(
                "() => ['esdl-docs', 'team', '01-getting-started.ipynb'].every(n => [...document"
                ".querySelectorAll('.jp-DirListing-itemText')].some(e => e.textContent.trim() === n))",
                timeout=60_000,
            )
            page.screenshot(path=str(shots["start"]))
            clipped = page.evaluate(  # file names the file browser cuts off (no Modified column beside them)
                "() => [...document.querySelectorAll('.jp-DirListing-itemText')]"
                ".filter(e => e.scrollWidth > e.clientWidth).map(e => e.textContent.trim())"
            )
            start = {
                "heading": heading.bounding_box(),
                "main": page.locator("#jp-main-dock-panel").bounding_box(),
                "tab": page.locator(
                    ".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel"
                ).first.inner_text(),
                "news": page.locator(".jp-Notification-Toast-content, .Toastify__toast").count(),
            }
            page.wait_for_function(  # jupyter-resource-usage polls the server every few seconds
                "() => /CPU: .*Mem: /.test(document.querySelector('#jp-main-statusbar').textContent)",
                timeout=60_000,
            )
            page.screenshot(path=str(shots["start"]))
            usage = page.locator("#jp-main-statusbar div", has_text="Mem:").last
            start["usage"], start["usage_box"] = usage.inner_text(), usage.bounding_box()
            # 2. a terminal runs the platform's command (in screen-reader mode, set above)
            page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="New").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Terminal").first.click()
            terminal_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Terminal").last
            terminal = page.locator(".jp-Terminal").last
            for _ in range(30):  # the restored workspace may bring the start page back to the front
                terminal_tab.click()
                if terminal.is_visible():
                    break
                page.wait_for_timeout(500)
            terminal.locator(".xterm-accessibility-tree").wait_for(state="attached", timeout=60_000)
            page.wait_for_function(  # the prompt is there
                "() => [...document.querySelectorAll('.jp-Terminal .xterm-accessibility-tree')]"
                ".some(e => e.textContent.includes('$'))",
                timeout=60_000,
            )
            terminal.click()
            # and the docs are the platform's, not hers to change (her own OS account may not write there)
            page.keyboard.type(
                "esdl cubes list; touch esdl-docs/README.md && echo DOCS-''WRITTEN || echo DOCS-''KEPT\n"
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Terminal .xterm-accessibility-tree')]"
                ".some(e => /DOCS-(WRITTEN|KEPT)/.test(e.textContent))",  # (the command line says DOCS-'')
                timeout=120_000,
            )
            page.screenshot(path=str(shots["terminal"]))
            terminal_text = terminal.locator(".xterm-accessibility-tree").inner_text()
            terminal_box = terminal.locator(".xterm-screen").bounding_box()
            # 3. Help > ESDL documentation: the docs' index, rendered
            page.locator(".lm-MenuBar-itemLabel", has_text="Help").first.click()
            help_items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
            page.locator(".lm-Menu-itemLabel", has_text="ESDL documentation").click()
            docs = page.locator(".jp-RenderedMarkdown h1", has_text="ESDL platform documentation")
            docs.wait_for(timeout=60_000)
            page.screenshot(path=str(shots["docs"]))
            docs_box = docs.bounding_box()
            # 4. the Dask sidebar: NEW starts a cluster on the gateway, work runs on it, the task stream shows
            page.locator("li[data-id='dask-dashboard-launcher']").click()
            page.locator("[data-jp-item-name='dask:launch-cluster'] jp-button").click()
            page.locator(".dask-ClusterListingItem").first.wait_for(timeout=180_000)
            task_stream = page.locator(".dask-DashboardListing-item", has_text="Task Stream")
            task_stream.wait_for(timeout=120_000)
            page.wait_for_function(  # the dashboard check passed: the item is enabled
                "() => [...document.querySelectorAll('.dask-DashboardListing-item')]"
                ".some(e => e.textContent.includes('Task Stream') && !e.hasAttribute('disabled')"
                " && !e.classList.contains('jp-mod-disabled'))",
                timeout=120_000,
            )
            dashboard_url = page.locator(".dask-URLInput input").input_value()
            task_stream.click()
            frame = page.locator("iframe[src*='task-stream']").last
            frame.wait_for(timeout=60_000)
            page.frame_locator("iframe[src*='task-stream']").last.locator("canvas").first.wait_for(
                timeout=120_000
            )
            # work on the sidebar's cluster, from erin's kernel, while the task stream is open
            name, link = erin.run(erin.start_kernel(), SIDEBAR_CLUSTER_WORK, timeout=300).split()
            stream_box = frame.bounding_box()
            for _ in range(30):  # bokeh draws the rectangles as its updates arrive
                page.screenshot(path=str(shots["dask"]))
                if colour_share(shots["dask"], stream_box) > 0.005:
                    break
                page.wait_for_timeout(1000)
            listed = page.locator(".dask-ClusterListingItem").all_inner_texts()
        except Exception:
            page.screenshot(path=str(artifacts / "first-hour-failed.png"))
            raise
        finally:
            browser.close()
            erin.run(erin.start_kernel(), "from dask_gateway import Gateway\n"
                     "for c in Gateway().list_clusters():\n    Gateway().stop_cluster(c.name)")  # fmt: skip
    # 1: the start page, its heading drawn inside the main area; no news prompt
    assert start["tab"].startswith("00-start-here"), start
    assert _inside(start["heading"], start["main"]), start
    assert ink_share(shots["start"], start["heading"]) > 0.02, "the start page's heading is not drawn"
    assert start["news"] == 0, "a notification (the news prompt) covers the page"
    # file names up to 28 characters are shown whole at the default sidebar width (the two longest
    # curated names, 33 characters, lose their ending)
    assert [n for n in clipped if len(n) <= 28] == [], clipped
    # the server's CPU and memory against its profile's limit (1Gi), drawn in the status bar
    assert re.fullmatch(r"CPU: [\d.]+ % \| Mem: [\d.]+ / 1024\.00 MB", start["usage"].strip()), start["usage"]
    assert ink_share(shots["start"], start["usage_box"]) > 0.02, "the status bar's usage is not drawn"
    # 3: the Help menu's entries, and the docs' heading drawn
    assert "ESDL: start here" in help_items and "ESDL documentation" in help_items, help_items
    assert ink_share(shots["docs"], docs_box) > 0.02
    # 2: erin's terminal listed the catalog's cubes, drawn on the terminal's canvas
    assert "esdc-demo-ts" in terminal_text and "esdc-demo-map" in terminal_text, terminal_text
    assert "Permission denied" in terminal_text and "DOCS-KEPT" in terminal_text, terminal_text
    assert "DOCS-WRITTEN" not in terminal_text, terminal_text
    assert ink_share(shots["terminal"], terminal_box) > 0.003, "the terminal shows no text"
    # 4: the sidebar's cluster is erin's gateway cluster, its dashboard absolute through the hub's address
    assert len(listed) == 1, listed  # the one cluster: the kernel found it as the only one on the gateway
    assert link.startswith(f"{url}/services/dask-gateway/clusters/{name}"), link
    # the sidebar shows it through erin's own server (platform_lib.gateway.sidebar_cluster)
    assert dashboard_url.startswith(f"{url}/user/erin/proxy/") and name in dashboard_url, dashboard_url
    assert stream_box and stream_box["width"] > 200 and stream_box["height"] > 100, stream_box
    assert colour_share(shots["dask"], stream_box) > 0.005, "the task stream shows no tasks"


def _wait(predicate, timeout: float = 60, what: str = "condition") -> None:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_files_and_servers_survive_kill9_and_down_up(platform: PlatformEnv):
    alice = login(platform, "alpha", "alice")
    alice.open_lab()
    home = {"type": "file", "format": "text", "content": "my analysis\n"}
    assert alice.server_api("PUT", "contents/mine.txt", json=home).status_code in (200, 201)
    team = {"type": "file", "format": "text", "content": "shared result\n"}
    assert alice.server_api("PUT", "contents/team/shared.txt", json=team).status_code in (200, 201)
    # the team folder is shared: bob's session sees alice's file
    bob = login(platform, "alpha", "bob")
    bob.open_lab()
    assert "shared.txt" in bob.list_dir("team")
    # edited notebooks are never overwritten: alice edits the curated one
    edited = dict(NOTEBOOK, metadata={"edited_by": "alice"})
    alice.server_api("PUT", "contents/00-welcome.ipynb", json={"type": "notebook", "content": edited})

    layout = platform.layout("alpha")
    hub_pid = json.loads(layout.run_file("hub").read_text())["pid"]
    server_pids = {
        p.pid for p in platform.processes("alpha") if "jupyterhub-singleuser" in " ".join(p.cmdline())
    }
    assert len(server_pids) == 2
    os.kill(hub_pid, signal.SIGKILL)
    _wait(
        lambda: "hub      dead" in platform.esdl("status", "--project", "alpha", check=False).stdout,
        what="hub dead",
    )
    assert platform.esdl("status", "--project", "alpha", check=False).returncode == 1
    out = platform.esdl("up", "--project", "alpha").stdout
    assert "started hub" in out
    # running servers survived the hub restart and still answer through the proxy with the old token
    assert {
        p.pid for p in platform.processes("alpha") if "jupyterhub-singleuser" in " ".join(p.cmdline())
    } == server_pids
    assert "mine.txt" in alice.list_dir()

    platform.esdl("down", "--project", "alpha")
    assert platform.processes("alpha") == []
    assert not http_ok(f"{platform.url('alpha')}/hub/login")
    assert platform.processes("beta"), "stopping alpha must leave beta running"
    again = platform.esdl("up", "--project", "alpha").stdout
    assert "new logins" not in again and platform.password("alpha", "alice") not in again
    alice = login(platform, "alpha", "alice")  # same generated password after down/up
    alice.open_lab()
    # a new password takes effect at the next login, without a restart; the old one stops working
    old = platform.password("alpha", "bob")
    platform.esdl("passwd", "bob", "--project", "alpha")
    assert platform.password("alpha", "bob") != old
    with pytest.raises(LoginFailed):
        HubClient(platform.url("alpha")).login("bob", old)
    login(platform, "alpha", "bob")
    assert {"mine.txt", "team", "00-welcome.ipynb"} <= set(alice.list_dir())
    assert "shared.txt" in alice.list_dir("team")
    content = alice.server_api("GET", "contents/00-welcome.ipynb").json()["content"]
    assert content["metadata"] == {"edited_by": "alice"}


def test_the_health_check_runs_end_to_end_and_reaches_only_its_own_user(platform: PlatformEnv):
    result = platform.esdl("project", "health", "alpha", timeout=600)
    lines = result.stdout.splitlines()
    steps = [line.split()[1:-3] for line in lines if line.startswith("  ok ")]
    assert len(steps) == 7 and lines[-1] == "healthy", result.stdout
    assert any("2 workers" in line for line in lines), result.stdout
    assert platform.esdl("project", "health", "alpha").returncode == 0  # again: the user and token exist
    # the service's token reaches the health user only: not alice's server, not the user list
    import requests

    token = platform.layout("alpha").read_secret("health_token")
    headers = {"Authorization": f"token {token}"}
    url = platform.url("alpha")
    assert requests.post(f"{url}/hub/api/users/alice/server", headers=headers, timeout=30).status_code in (
        403,
        404,
    )
    assert requests.post(
        f"{url}/hub/api/users/alice/tokens", headers=headers, json={}, timeout=30
    ).status_code in (403, 404)
    listed = requests.get(f"{url}/hub/api/users", headers=headers, timeout=30)
    assert listed.status_code == 200 and [u["name"] for u in listed.json()] == ["esdl-health"]
    # a wrong token fails at the first step, with exit code 1
    platform.layout("alpha").secret_file("health_token").write_text("not-the-token")
    try:
        bad = platform.esdl("project", "health", "alpha", check=False)
    finally:
        platform.layout("alpha").secret_file("health_token").write_text(token)
    assert bad.returncode == 1 and "FAIL hub API" in bad.stdout and "unhealthy" in bad.stdout


def test_status_names_a_persons_dead_server_and_exits_1(platform: PlatformEnv):
    import psutil

    erin = login(platform, "beta", "erin")
    for _attempt in range(3):
        erin.open_lab()
        assert platform.esdl("status", "--project", "beta").returncode == 0
        server = next(
            p
            for p in platform.processes("beta")
            if "jupyterhub-singleuser" in " ".join(p.cmdline())
            and p.environ().get("JUPYTERHUB_USER") == "erin"
        )
        server.kill()  # SIGKILL: the hub still lists it until its next poll (every 30 s)
        psutil.wait_procs([server], timeout=10)
        result = platform.esdl("status", "--project", "beta", check=False)
        if result.returncode == 0:  # the hub's poll came first and forgot the server: right too; again
            assert "servers  none" in result.stdout, result.stdout
            continue
        assert result.returncode == 1, result.stdout
        assert "dead     servers of erin" in result.stdout and "beta: degraded" in result.stdout
        erin.stop_server()  # the hub forgets it; status is clean again
        assert platform.esdl("status", "--project", "beta").returncode == 0
        break
    else:
        pytest.fail("the hub's 30-second poll noticed the killed server before `esdl status` three times")


def test_clusters_survive_a_gateway_restart_and_status_names_a_dead_scheduler(platform: PlatformEnv):
    import psutil

    erin = login(platform, "beta", "erin")
    erin.open_lab()
    kernel = erin.start_kernel()
    name = erin.run(
        kernel,
        "from dask_gateway import Gateway\ngateway = Gateway()\ncluster = gateway.new_cluster()\n"
        "cluster.scale(1)\nclient = cluster.get_client()\nclient.wait_for_workers(1, timeout=120)\n"
        "print(cluster.name)",
    ).strip()
    layout = platform.layout("beta")
    for sig in (signal.SIGTERM, signal.SIGKILL):  # a restart, then a crash of the gateway
        gateway = psutil.Process(json.loads(layout.run_file("gateway").read_text())["pid"])
        gateway.send_signal(sig)
        psutil.wait_procs([gateway], timeout=30)
        assert "started gateway" in platform.esdl("up", "--project", "beta").stdout
        # the new gateway found the cluster in its database; it computes (the client reconnects through
        # the gateway's new proxy), and erin still owns it
        out = erin.run(
            kernel,
            "import time\nfor attempt in range(120):\n    try:\n"
            "        result = client.submit(sum, [1, 2], pure=False).result(timeout=10)\n        break\n"
            "    except Exception:\n        time.sleep(0.5)\n"
            "print(result, [c.name for c in gateway.list_clusters()])",
        )
        assert out.strip().split(maxsplit=1) == ["3", str([name])], out
    assert platform.esdl("status", "--project", "beta").returncode == 0
    scheduler = next(
        p
        for p in platform.processes("beta")
        if "scheduler" in " ".join(p.cmdline()) and p.environ().get("ESDL_PLATFORM_ROLE") == "cluster"
    )
    scheduler.kill()
    psutil.wait_procs([scheduler], timeout=10)
    result = platform.esdl("status", "--project", "beta", check=False)
    assert result.returncode == 1, result.stdout
    assert f"dead     clusters erin/{name}" in result.stdout and "beta: degraded" in result.stdout
    erin.run(kernel, f"gateway.stop_cluster({name!r})")
    assert platform.esdl("status", "--project", "beta").returncode == 0


def test_an_admin_sets_a_members_password_on_the_hubs_admin_page(platform: PlatformEnv):
    import bcrypt

    url = platform.url("alpha")
    alice = login(platform, "alpha", "alice")
    page = alice.session.get(f"{url}/hub/change-password/bob", timeout=30)
    assert page.status_code == 200 and "bob" in page.text
    new = "set-by-alice-on-the-admin-page"
    done = alice.session.post(
        f"{url}/hub/change-password/bob", data={"new_password": new, "new_password_confirmation": new},
        headers=alice.xsrf_headers(), timeout=30,
    )  # fmt: skip
    assert "has been changed successfully" in done.text, done.text[-500:]
    old = platform.password("alpha", "bob")
    platform.passwords[("alpha", "bob")] = new
    login(platform, "alpha", "bob")
    with pytest.raises(LoginFailed):
        HubClient(url).login("bob", old)
    # the file stays the one source of truth: only the new hash, which survives esdl up
    stored = json.loads(platform.layout("alpha").credentials_file.read_text())["bob"]["bcrypt"]
    assert new not in platform.layout("alpha").credentials_file.read_text()
    assert bcrypt.checkpw(new.encode(), stored.encode())
    # a member has no such page for anyone else
    bob = login(platform, "alpha", "bob")
    refused = bob.session.post(
        f"{url}/hub/change-password/alice", data={"new_password": new, "new_password_confirmation": new},
        headers=bob.xsrf_headers(), timeout=30,
    )  # fmt: skip
    assert refused.status_code == 403
    login(platform, "alpha", "alice")


def test_a_terminal_runs_the_platforms_commands_as_its_person(platform: PlatformEnv):
    bob = login(platform, "alpha", "bob")
    bob.open_lab()
    out = bob.run_in_terminal("command -v esdl python jupyter; id -un; esdl cubes list")
    found = out.split()
    for command in ("esdl", "python", "jupyter"):  # the user environment, not /etc/profile's PATH
        assert any(word.endswith(f"/bin/{command}") for word in found), out
    assert "alpha_bob" in found, out  # bob's own OS account, not root
    assert "esdc-demo-ts" in out, out  # and the command works there
