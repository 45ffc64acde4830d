"""The embedded platform's parts that need no running processes: homes, credentials, ports, configs."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
import yaml
from platform_helpers import small_spec

from platform_lib.local.configs import (
    PlatformSettings,
    gateway_config_text,
    hub_config_text,
    ungenerated_shared_cubes,
)
from platform_lib.local.layout import PortInUseError, ProjectLayout
from platform_lib.local.session import prepare_home
from platform_lib.projects import parse_project


def test_curated_notebooks_are_copied_once_and_never_overwrite(tmp_path: Path):
    nbs, team, home = tmp_path / "nb", tmp_path / "team", tmp_path / "home" / "ada"
    (nbs / "sub").mkdir(parents=True)
    team.mkdir()
    (nbs / "01-intro.ipynb").write_text("original")
    (nbs / "sub" / "02-deep.ipynb").write_text("original")
    (nbs / ".ipynb_checkpoints").mkdir()
    (nbs / ".ipynb_checkpoints" / "x.ipynb").write_text("skip me")
    assert prepare_home(home, notebooks_dir=nbs, team_dir=team) == ["01-intro.ipynb", "sub/02-deep.ipynb"]
    assert (home / "team").resolve() == team.resolve()
    assert not (home / ".ipynb_checkpoints").exists()
    (home / "01-intro.ipynb").write_text("my edits")  # edited
    (home / "sub" / "02-deep.ipynb").unlink()  # deleted on purpose
    (nbs / "01-intro.ipynb").write_text("new upstream version")
    (nbs / "03-new.ipynb").write_text("added later")
    assert prepare_home(home, notebooks_dir=nbs, team_dir=team) == ["03-new.ipynb"]
    assert (home / "01-intro.ipynb").read_text() == "my edits"
    assert not (home / "sub" / "02-deep.ipynb").exists()
    # a file of the user's own with a curated name is kept too
    other = tmp_path / "home" / "bo"
    other.mkdir()
    (other / "01-intro.ipynb").write_text("bo's own")
    prepare_home(other, notebooks_dir=nbs, team_dir=team)
    assert (other / "01-intro.ipynb").read_text() == "bo's own"


def test_credentials_are_kept_owner_only_and_follow_the_spec(tmp_path: Path):
    layout = ProjectLayout.for_project("alpha", base=tmp_path).ensure()
    first = layout.credentials(["ada", "bo"])
    assert set(first) == {"ada", "bo"} and first["ada"] != first["bo"] and len(first["ada"]) == 20
    assert stat.S_IMODE(layout.credentials_file.stat().st_mode) == 0o600
    import bcrypt

    text = layout.credentials_file.read_text()
    assert first["ada"] not in text and first["bo"] not in text  # only hashes are kept
    added = layout.credentials(["ada", "bo", "cy"])  # only the new person's password is made (and shown)
    assert list(added) == ["cy"] and layout.accounts() == ["ada", "bo", "cy"]
    assert layout.credentials(["bo"]) == {} and layout.accounts() == [
        "bo"
    ]  # removed people lose their account
    stored = json.loads(layout.credentials_file.read_text())
    assert stored == {"bo": {"bcrypt": stored["bo"]["bcrypt"]}}
    assert bcrypt.checkpw(first["bo"].encode(), stored["bo"]["bcrypt"].encode())
    new = layout.reset_password("bo")
    assert new != first["bo"] and new not in layout.credentials_file.read_text()
    hashed = json.loads(layout.credentials_file.read_text())["bo"]["bcrypt"].encode()
    assert bcrypt.checkpw(new.encode(), hashed) and not bcrypt.checkpw(first["bo"].encode(), hashed)
    for name in ("cookie_secret", "proxy_token", "gateway_token"):
        assert stat.S_IMODE(layout.secret_file(name).stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.secrets_dir.stat().st_mode) == 0o700


def test_ports_are_kept_and_a_taken_public_port_is_refused(tmp_path: Path):
    layout = ProjectLayout.for_project("alpha", base=tmp_path).ensure()
    ports = layout.assign_ports(0)
    assert len(set(ports.values())) == 6
    assert layout.assign_ports(None) == ports  # the same URL next time
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["public"]))
        taken.listen()
        with pytest.raises(PortInUseError, match=f"port {ports['public']} .* is in use by another program"):
            layout.assign_ports(None)
        assert layout.assign_ports(None, busy_ok=[ports["public"]])["public"] == ports["public"]  # held by us


def settings_for(tmp_path: Path, **extra) -> PlatformSettings:
    spec = parse_project(small_spec("alpha", ["ada"], ["bo", "cy"], **extra))
    layout = ProjectLayout.for_project("alpha", base=tmp_path).ensure()
    ports = layout.assign_ports(0)
    return PlatformSettings(
        spec, layout, ports, base_catalogs=["/shared/esdl.yaml"], data_dir=tmp_path / "data"
    )


def test_generated_configs_follow_the_spec_and_hold_no_secrets(tmp_path: Path):
    s = settings_for(tmp_path, servers={"cull_idle_minutes": 30, "cull_max_age_hours": 8})
    hub, gateway = hub_config_text(s), gateway_config_text(s)
    for name in ("cookie_secret", "proxy_token", "gateway_token"):
        secret = s.layout.read_secret(name)
        assert secret not in hub and secret not in gateway
    namespace: dict = {}

    class Config(dict):
        def __getattr__(self, key):
            return self.setdefault(key, Config())

        def __setattr__(self, key, value):
            self[key] = value

    c = Config()
    exec(compile(hub, "jupyterhub_config.py", "exec"), {"get_config": lambda: c, **namespace})
    login = c.NativeAuthenticator
    assert login.allowed_users == ["ada", "bo", "cy"] and login.admin_users == ["ada"]
    assert login.enable_signup is False and login.open_signup is False
    assert c.ConfigurableHTTPProxy.auth_token == s.layout.read_secret("proxy_token")
    assert c.ConfigurableHTTPProxy.should_start is False and c.JupyterHub.cleanup_servers is False
    env = c.Spawner.environment
    assert env["ESDL_CATALOG"] == os.pathsep.join(["/shared/esdl.yaml", str(s.layout.project_catalog)])
    assert env["ESDL_TEAM_CATALOG"] == str(s.layout.team_dir / "catalog.yaml")
    assert env["DASK_GATEWAY__ADDRESS"] == f"http://127.0.0.1:{s.ports['public']}/services/dask-gateway"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert "access:services!service=dask-gateway" in c.Spawner.server_token_scopes
    assert c.JupyterHub.load_roles[0]["scopes"] == ["self", "access:services!service=dask-gateway"]
    culler = [svc for svc in c.JupyterHub.services if svc["name"] == "idle-culler"][0]
    assert "--timeout=1800" in culler["command"] and "--max-age=28800" in culler["command"]

    from traitlets.config import Config as TraitletsConfig

    g = TraitletsConfig()
    exec(compile(gateway, "dask_gateway_config.py", "exec"), {"get_config": lambda: g})
    assert g.JupyterHubAuthenticator.jupyterhub_service_name == "dask-gateway"
    assert g.JupyterHubAuthenticator.jupyterhub_api_token == s.layout.read_secret("gateway_token")
    assert g.DaskPolicy.max_clusters_per_user == 1 and g.DaskPolicy.max_workers_per_user == 2
    assert g.DaskPolicy.idle_timeout_minutes == 10 and g.DaskPolicy.worker_memory == {"1Gi": 2**30}
    assert (
        g.LocalClusterConfig.scheduler_cmd[-1] == "scheduler"
        and g.LocalClusterConfig.worker_cmd[-1] == "worker"
    )
    # the policy module, loaded by path as the gateway does, with these settings
    backend = g.DaskGateway.backend_class(config=g)
    assert backend.policy.max_workers_per_user == 2
    options = backend.cluster_options
    assert [f.field for f in options.fields] == [
        "worker_cores",
        "worker_memory",
        "idle_timeout_minutes",
        "image",
    ]
    config = options.get_configuration(options.parse_options({"idle_timeout_minutes": 3}), None)
    assert config["idle_timeout"] == 180.0 and config["worker_memory"] == 2**30


def test_project_catalog_makes_paths_absolute_and_keeps_secrets_as_references(tmp_path: Path):
    entries = [
        {"name": "local-cube", "description": "a regional cube", "urlpath": "regions/eu.zarr"},
        {
            "name": "remote-cube",
            "urlpath": "s3://bucket/cube.zarr",
            "storage_options": {"key": "env:LAB_KEY", "secret": "secret:lab-s3/secret", "anon": False},
        },
    ]
    s = settings_for(tmp_path, catalog={"entries": entries})
    doc = yaml.safe_load(s.plan.catalog_text(s.placement))
    urlpath = doc["sources"]["local-cube"]["args"]["urlpath"]
    assert urlpath == "{{ env(ESDL_DATA_DIR) }}/regions/eu.zarr"  # ESDL_DATA_DIR is the sessions' data folder
    assert s.user_environment()["ESDL_DATA_DIR"] == str(tmp_path / "data")
    options = doc["sources"]["remote-cube"]["args"]["storage_options"]
    assert options == {"key": "{{ env(LAB_KEY) }}", "anon": False}  # secret: refs apply on Kubernetes only
    catalogs = ["/shared/esdl.yaml", str(s.layout.project_catalog)]
    assert os.pathsep.join(catalogs) == s.user_environment()["ESDL_CATALOG"]


def test_ungenerated_shared_cubes_are_named(tmp_path: Path):
    (tmp_path / "here.zarr").mkdir()
    catalog = tmp_path / "shared.yaml"
    sources = {
        name: {"driver": "zarr", "args": {"urlpath": "{{ CATALOG_DIR }}/" + store}}
        for name, store in (("present", "here.zarr"), ("absent", "missing.zarr"))
    }
    sources["remote"] = {"driver": "zarr", "args": {"urlpath": "s3://bucket/cube.zarr"}}
    catalog.write_text(yaml.safe_dump({"sources": sources}))
    s = settings_for(tmp_path)
    s.base_catalogs = [str(catalog), str(tmp_path / "no-such-catalog.yaml")]
    assert ungenerated_shared_cubes(s) == ["absent"]


def test_dask_dashboards_of_a_persons_own_clusters_go_through_their_server(tmp_path: Path, monkeypatch):
    from distributed.utils import format_dashboard_link

    s = settings_for(tmp_path)
    env = s.user_environment()
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    import dask

    public = s.url.rstrip("/")
    assert public.startswith("http://localhost:")
    with dask.config.set({"distributed.dashboard.link": env["DASK_DISTRIBUTED__DASHBOARD__LINK"]}):
        # absolute through the hub's public address: it works pasted anywhere, and from the server itself
        assert format_dashboard_link("127.0.0.1", 40123) == f"{public}/user/ada/proxy/40123/status"


def test_gateway_dashboards_are_absolute_and_the_dask_sidebar_starts_gateway_clusters(tmp_path: Path):
    """What dask-gateway's client and dask-labextension read from a session's environment: the gateway
    cluster's dashboard link (``ClusterReport._from_json``, the client's own code) is absolute through the
    hub's public address, and the sidebar's cluster factory is ``dask_gateway.GatewayCluster``."""
    import dask
    from dask_gateway.client import ClusterReport, ClusterStatus

    s = settings_for(tmp_path)
    env = s.user_environment()
    config = dask.config.collect(paths=[], env={k: v for k, v in env.items() if k.startswith("DASK_")})
    factory = dask.config.get("labextension.factory", config=config)
    assert factory == {"module": "platform_lib.gateway", "class": "sidebar_cluster"}
    import importlib

    assert callable(getattr(importlib.import_module(factory["module"]), factory["class"]))
    public = dask.config.get("gateway.public-address", config=config).rstrip("/")  # as the client does
    assert public == s.url.rstrip("/") + "/services/dask-gateway"
    msg = {
        "name": "alpha.abc",
        "dashboard_route": "/clusters/alpha.abc/",
        "status": "RUNNING",
        "options": {},
        "start_time": 0,
        "stop_time": None,
        "tls_cert": None,
        "tls_key": None,
    }
    report = ClusterReport._from_json(public, "gateway://127.0.0.1:1", msg)
    assert report.status is ClusterStatus.RUNNING
    assert report.dashboard_link == f"{s.url.rstrip('/')}/services/dask-gateway/clusters/alpha.abc/"
    # the sidebar's clusters link their dashboard through the person's own server: dask-labextension uses
    # such a link as it is (its own route would drop the gateway's path)
    from platform_lib.gateway import _sidebar_cluster_class

    cluster_class = _sidebar_cluster_class()
    sidebar = cluster_class.__new__(cluster_class)  # the attribute alone, no gateway to talk to
    sidebar.dashboard_link = f"{public}/clusters/alpha.abc/status"  # what GatewayCluster sets
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
        port = s.url.rstrip("/").rsplit(":", 1)[1]
        assert sidebar.dashboard_link == (
            f"{s.url.rstrip('/')}/user/ada/proxy/{port}/services/dask-gateway/clusters/alpha.abc/status"
        )


def test_every_server_reads_the_platforms_jupyterlab_settings(tmp_path: Path):
    """JupyterLab settings from ``JUPYTER_CONFIG_PATH``: the Help menu opens the start page and the docs
    (paths that a prepared home has), and JupyterLab never asks to fetch news (no pop-up)."""
    from platform_lib.local.session import START_PAGE

    env = settings_for(tmp_path).user_environment()
    overrides = json.loads(
        (Path(env["JUPYTER_CONFIG_PATH"]) / "labconfig" / "default_setting_overrides.json").read_text()
    )
    assert overrides["@jupyterlab/apputils-extension:notification"] == {
        "fetchNews": "false",
        "checkForUpdates": False,
    }
    # the file browser without its Modified column: the names get the sidebar's width
    assert overrides["@jupyterlab/filebrowser-extension:browser"] == {"showLastModifiedColumn": False}
    (help_menu,) = overrides["@jupyterlab/mainmenu-extension:plugin"]["menus"]
    assert help_menu["id"] == "jp-mainmenu-help"
    opened = {
        i["args"]["label"]: i["args"]["path"]
        for i in help_menu["items"]
        if i.get("command") == "docmanager:open"
    }
    assert opened == {"ESDL: start here": START_PAGE, "ESDL documentation": "esdl-docs/README.md"}
    home, team = tmp_path / "home", tmp_path / "team"
    team.mkdir()
    from platform_lib.local.configs import docs_dir, notebooks_dir

    prepare_home(home, notebooks_dir=notebooks_dir(), team_dir=team, docs_dir=docs_dir())
    for label, path in opened.items():
        assert (home / path).is_file(), f"Help > {label} opens {path}, which a prepared home lacks"


def test_the_start_page_opens_at_the_first_start_only(tmp_path: Path):
    """``pre_spawn_hook`` (in the hub's process, no OS accounts): the start that copies the start page in
    opens it; later starts open the configured page."""
    import asyncio
    import logging
    from types import SimpleNamespace

    from platform_lib.local.configs import docs_dir, notebooks_dir
    from platform_lib.local.session import START_PAGE, pre_spawn_hook

    (tmp_path / "team").mkdir()
    spawner = SimpleNamespace(home_dir=str(tmp_path / "ada"), default_url="/lab", log=logging.getLogger("t"))
    hook = dict(notebooks_dir=str(notebooks_dir()), team_dir=str(tmp_path / "team"), docs_dir=str(docs_dir()))
    asyncio.run(pre_spawn_hook(spawner, **hook))
    assert spawner.default_url == f"/lab/tree/{START_PAGE}"
    assert (tmp_path / "ada" / "esdl-docs" / "README.md").is_file()
    asyncio.run(pre_spawn_hook(spawner, **hook))
    assert spawner.default_url == "/lab"


def test_the_kubernetes_user_command_prepares_the_home_and_opens_the_start_page_once(tmp_path: Path):
    """``session.py start`` (the user container's command on Kubernetes, run here for real): it copies the
    notebooks in, links the docs, and its first start runs the server command with the start page as
    ``JUPYTERHUB_DEFAULT_URL``; a later start keeps what the hub set."""
    import subprocess
    import sys

    from platform_lib.local.configs import docs_dir, notebooks_dir
    from platform_lib.paths import PACKAGE_DIR

    home, team = tmp_path / "jovyan", tmp_path / "jovyan" / "team"
    team.mkdir(parents=True)  # mounted in the home, as on Kubernetes
    show = [sys.executable, "-c", "import os; print(os.environ.get('JUPYTERHUB_DEFAULT_URL'))"]
    start = [sys.executable, str(PACKAGE_DIR / "local" / "session.py"), "start"]
    start += [str(home), str(notebooks_dir()), str(team), str(docs_dir()), "--", *show]
    env = {**os.environ, "JUPYTERHUB_DEFAULT_URL": "/lab"}
    first = subprocess.run(start, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "/lab/tree/00-start-here.ipynb"
    assert (home / "00-start-here.ipynb").is_file() and (home / "esdl-docs" / "README.md").is_file()
    assert not (team / "team").exists()  # the mounted team folder is used as it is
    again = subprocess.run(start, env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "/lab"
    wrong = subprocess.run(start[:5], capture_output=True, text=True)
    assert wrong.returncode != 0 and "usage: session.py start HOME" in wrong.stderr
