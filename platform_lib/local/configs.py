"""Traitlets configuration files for the hub and the gateway, and the proxy command, from a project spec.

Each generated file is plain, readable traitlets configuration (``c.Class.trait = value``) written into
the project's state folder; secrets are not in the files but read from ``secrets/`` (0600) when the
component starts. The values follow the checks in ``FIELD-NOTES.md``: ``SimpleLocalProcessSpawner``
with ``--allow-root`` when run as root, the gateway's ``UnsafeLocalBackend`` with the ``dask
scheduler``/``dask worker`` commands, the gateway authenticated through the hub with the service name
set (so the ``access:services!service=dask-gateway`` scope is checked), and that scope in both the
``user`` role and the server token.

>>> from platform_lib.projects import load_project
>>> from platform_lib.local.layout import ProjectLayout
>>> import tempfile
>>> s = PlatformSettings(load_project("demo"), ProjectLayout("demo", Path(tempfile.mkdtemp())),
...                      dict(gateway_api=1, gateway_http=2, gateway_tcp=3, proxy_api=4, hub=5, public=8000))
>>> "c.JupyterHub.bind_url = 'http://127.0.0.1:8000/'" in hub_config_text(s)
True
>>> "c.JupyterHubAuthenticator.jupyterhub_service_name = 'dask-gateway'" in gateway_config_text(s)
True
"""

from __future__ import annotations

import hashlib
import os
import pprint
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platform_lib.errors import EsdlError
from platform_lib.local.layout import ProjectLayout
from platform_lib.paths import data_dir, repo_root
from platform_lib.projects import ProjectSpec, parse_quantity
from platform_lib.storage import write_text_atomic

GATEWAY_SERVICE = "dask-gateway"
GATEWAY_PREFIX = f"/services/{GATEWAY_SERVICE}"
GATEWAY_SCOPE = f"access:services!service={GATEWAY_SERVICE}"
#: the environment variable that marks every process of one project's platform (for ``down`` and status)
TAG_VARIABLE = "ESDL_PLATFORM"
#: which part of the platform a tagged process belongs to: gateway, proxy, hub, cluster or user
ROLE_VARIABLE = "ESDL_PLATFORM_ROLE"


class Raw(str):
    """A Python expression written as-is into a generated config (not quoted)."""

    def __repr__(self) -> str:
        return str(self)


def notebooks_dir() -> Path:
    """The curated notebooks copied into each new home: ``ESDL_NOTEBOOKS_DIR`` or ``<repo>/notebooks``.

    >>> notebooks_dir().name
    'notebooks'
    """
    env = os.environ.get("ESDL_NOTEBOOKS_DIR")
    return Path(env) if env else repo_root() / "notebooks"


def venv_bin() -> Path:
    """The folder of the running Python's scripts (``jupyterhub``, ``dask``, ...)."""
    return Path(sys.executable).parent


def proxy_executable() -> str:
    """configurable-http-proxy: ``<repo>/node_modules/.bin`` (``npm ci``) first, then ``PATH``."""
    local = repo_root() / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    raise EsdlError(
        "configurable-http-proxy is not installed: run `npm ci` in the repository root (it installs the"
        " version pinned in package-lock.json into node_modules/), or `make setup`"
    )


@dataclass
class PlatformSettings:
    """Everything the generated configs depend on: the spec, the state layout and the ports."""

    spec: ProjectSpec
    layout: ProjectLayout
    ports: dict[str, int]
    host: str = "127.0.0.1"
    base_catalogs: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not self.base_catalogs:
            env = os.environ.get("ESDL_CATALOG")
            self.base_catalogs = (
                [p for p in env.split(os.pathsep) if p]
                if env
                else [str(repo_root() / "catalog" / "esdl.yaml")]
            )
        if self.data_dir is None:
            self.data_dir = data_dir()

    @property
    def url(self) -> str:
        """The address people open in the browser."""
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "") else self.host
        return f"http://{host}:{self.ports['public']}/"

    @property
    def hub_api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['hub']}/hub/api"

    @property
    def tag(self) -> str:
        """The value of ``ESDL_PLATFORM`` in every process of this project's platform."""
        return str(self.layout.root.resolve())

    def catalogs(self) -> list[str]:
        """``ESDL_CATALOG`` of the user sessions: the shared catalog(s) then the project's entries."""
        extra = [str(self.layout.project_catalog)] if self.spec.catalog.entries else []
        return [*self.base_catalogs, *extra]

    def user_environment(self) -> dict[str, str]:
        """Environment of every user server (and its kernels): catalog, data, team, Dask Gateway."""
        public = f"http://127.0.0.1:{self.ports['public']}"
        return {
            "ESDL_PROJECT": self.spec.name,
            "ESDL_CATALOG": os.pathsep.join(self.catalogs()),
            "ESDL_DATA_DIR": str(self.data_dir),
            "ESDL_TEAM_DIR": str(self.layout.team_dir),
            "ESDL_TEAM_CATALOG": str(self.layout.team_catalog),
            "DASK_GATEWAY__ADDRESS": f"{public}{GATEWAY_PREFIX}",
            "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{self.ports['gateway_tcp']}",
            "DASK_GATEWAY__PUBLIC_ADDRESS": f"{GATEWAY_PREFIX}/",
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
            TAG_VARIABLE: self.tag,
        }


def _render(header: str, preamble: str, settings: dict[str, Any]) -> str:
    lines = [header.rstrip(), "", preamble.rstrip(), "", "c = get_config()  # noqa: F821", ""]
    for key, value in settings.items():
        text = pprint.pformat(value, width=100, sort_dicts=True)
        lines.append(f"c.{key} = {text}")
    return "\n".join(lines) + "\n"


def _header(s: PlatformSettings, what: str) -> str:
    source = s.spec.source or f"project {s.spec.name!r}"
    return (
        f"# {what} for project {s.spec.name!r}, generated by `esdl up` from {source}.\n"
        "# Do not edit: change the project spec and run `esdl up` again (it restarts what changed)."
    )


def _secret_reader(s: PlatformSettings) -> str:
    return (
        "from pathlib import Path\n\n\n"
        "def _secret(name):\n"
        f"    return Path({str(s.layout.secrets_dir)!r}, name).read_text().strip()"
    )


LOCAL_DIR = Path(__file__).resolve().parent


def _module_loader() -> str:
    """Config code that loads one of this folder's process-side modules (``auth``, ``session``,
    ``gateway_backend``: standard library and the component's own packages only) from its file, so the
    hub and the gateway do not import the whole ``platform_lib`` package (xarray, pandas) at start-up."""
    return (
        "import importlib.util\n"
        "import sys\n\n\n"
        "def _esdl_module(name):\n"
        f"    path = Path({str(LOCAL_DIR)!r}, name + '.py')\n"
        "    spec = importlib.util.spec_from_file_location('esdl_local_' + name, path)\n"
        "    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    return module"
    )


def _idle_culler(s: PlatformSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hub-managed jupyterhub-idle-culler for ``servers.cull_idle_minutes`` (as z2jh's ``cull``)."""
    servers = s.spec.servers
    if not servers.cull_idle_minutes:
        return [], []
    cmd = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={servers.cull_idle_minutes * 60}"]
    if servers.cull_max_age_hours:
        cmd.append(f"--max-age={servers.cull_max_age_hours * 3600}")
    service = {
        "name": "idle-culler",
        "command": cmd,
        "environment": {TAG_VARIABLE: s.tag, ROLE_VARIABLE: "hub"},
    }
    role = {
        "name": "idle-culler",
        "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    }
    return [service], [role]


def hub_config_text(s: PlatformSettings) -> str:
    """``jupyterhub_config.py``: the hub behind an external configurable-http-proxy."""
    spec, layout, ports = s.spec, s.layout, s.ports
    env = s.user_environment()
    # no internet on a platform laptop: JupyterLab neither fetches news nor checks for updates
    args = ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        args.insert(0, "--allow-root")  # jupyter-server refuses to run as root without it
    profile = spec.default_profile
    culler_services, culler_roles = _idle_culler(s)
    settings: dict[str, Any] = {
        "JupyterHub.bind_url": f"http://{s.host}:{ports['public']}/",
        "JupyterHub.hub_bind_url": f"http://127.0.0.1:{ports['hub']}",
        "JupyterHub.db_url": f"sqlite:///{layout.hub_dir / 'jupyterhub.sqlite'}",
        "JupyterHub.cookie_secret_file": str(layout.secret_file("cookie_secret")),
        "JupyterHub.cleanup_servers": False,  # user servers survive a hub restart
        "JupyterHub.log_level": s.log_level,
        "ConfigurableHTTPProxy.should_start": False,  # the supervisor runs the proxy
        "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{ports['proxy_api']}",
        "ConfigurableHTTPProxy.auth_token": Raw("_secret('proxy_token')"),
        "JupyterHub.authenticator_class": Raw("_esdl_module('auth').ProjectNativeAuthenticator"),
        "ProjectNativeAuthenticator.credentials_file": str(layout.credentials_file),
        "Authenticator.allowed_users": Raw(f"set({sorted(spec.users)!r})"),
        "Authenticator.admin_users": Raw(f"set({sorted(spec.admins)!r})"),
        "NativeAuthenticator.enable_signup": False,
        "NativeAuthenticator.open_signup": False,
        "NativeAuthenticator.allowed_failed_logins": 10,
        "NativeAuthenticator.seconds_before_next_try": 60,
        "JupyterHub.load_groups": {spec.name: {"users": list(spec.users)}},
        "JupyterHub.load_roles": [{"name": "user", "scopes": ["self", GATEWAY_SCOPE]}, *culler_roles],
        "JupyterHub.services": [
            {
                "name": GATEWAY_SERVICE,
                "url": f"http://127.0.0.1:{ports['gateway_http']}",
                "api_token": Raw("_secret('gateway_token')"),
                "display": False,
            },
            *culler_services,
        ],
        # SimpleLocalProcessSpawner that hands the server to the hub once it answers (see spawner.py)
        "JupyterHub.spawner_class": Raw("_esdl_module('spawner').ProjectLocalProcessSpawner"),
        "SimpleLocalProcessSpawner.home_dir_template": str(layout.homes_dir / "{username}"),
        "Spawner.cmd": [str(venv_bin() / "jupyterhub-singleuser")],
        "Spawner.args": args,
        "Spawner.default_url": "/lab",
        "Spawner.environment": {**env, ROLE_VARIABLE: "user"},
        "Spawner.server_token_scopes": ["users:activity!user", "access:servers!server", GATEWAY_SCOPE],
        "Spawner.start_timeout": 120,
        "Spawner.http_timeout": 90,
        "Spawner.mem_limit": profile.memory_bytes,
        "Spawner.cpu_limit": profile.cpu,
        "Spawner.pre_spawn_hook": Raw(
            f"functools.partial(_esdl_module('session').pre_spawn_hook, notebooks_dir={str(notebooks_dir())!r},"
            f" team_dir={str(layout.team_dir)!r})"
        ),
        "JupyterHub.template_vars": {"announcement_login": f"{spec.title}: sign in with your ESDL password."},
    }
    preamble = (
        "import functools\n" + _secret_reader(s) + "\n\n\n" + _module_loader() + "\n\n\n"
        "def _user_state_dir(spawner):\n"
        "    # each person's own state folder under their home, never the platform's\n"
        "    return spawner.home_dir + '/.esdl/state'\n"
    )
    text = _render(_header(s, "JupyterHub configuration"), preamble, settings)
    return text + "c.Spawner.environment['ESDL_STATE_DIR'] = _user_state_dir\n"


def gateway_config_text(s: PlatformSettings) -> str:
    """``dask_gateway_config.py``: local-process clusters, hub authentication, the spec's limits."""
    spec, layout, ports = s.spec, s.layout, s.ports
    dask = spec.dask
    env = s.user_environment()
    cluster_env = {**{k: v for k, v in env.items() if k.startswith("ESDL_")}, ROLE_VARIABLE: "cluster"}
    memory = dict(zip(dask.worker_memory.choices, dask.worker_memory.choices_bytes, strict=True))
    settings: dict[str, Any] = {
        "DaskGateway.address": f"127.0.0.1:{ports['gateway_api']}",
        "DaskGateway.log_level": s.log_level,
        "DaskGateway.backend_class": Raw("_backend.ProjectLocalBackend"),
        "DaskGateway.authenticator_class": "dask_gateway_server.auth.JupyterHubAuthenticator",
        "Proxy.address": f"127.0.0.1:{ports['gateway_http']}",
        "Proxy.tcp_address": f"127.0.0.1:{ports['gateway_tcp']}",
        "Proxy.prefix": GATEWAY_PREFIX,
        "JupyterHubAuthenticator.jupyterhub_api_url": s.hub_api_url,
        "JupyterHubAuthenticator.jupyterhub_api_token": Raw("_secret('gateway_token')"),
        "JupyterHubAuthenticator.jupyterhub_service_name": GATEWAY_SERVICE,
        "JupyterHubAuthenticator.use_service_access_scopes": True,
        "ProjectLocalBackend.clusters_directory": str(layout.clusters_dir),
        "ProjectLocalBackend.max_clusters_per_user": dask.max_clusters_per_user,
        "ProjectLocalBackend.max_workers_per_user": dask.max_workers_per_user,
        "ProjectLocalBackend.stop_clusters_on_shutdown": True,
        "ProjectLocalBackend.cluster_options": Raw(
            f"_backend.cluster_options({dask.worker_cores.choices!r}, {dask.worker_cores.default!r},"
            f" {memory!r}, {dask.worker_memory.default!r})"
        ),
        "LocalClusterConfig.scheduler_cmd": [str(venv_bin() / "dask"), "scheduler"],
        "LocalClusterConfig.worker_cmd": [str(venv_bin() / "dask"), "worker"],
        "LocalClusterConfig.worker_cores": dask.worker_cores.default,
        "LocalClusterConfig.worker_memory": parse_quantity(dask.worker_memory.default),
        "LocalClusterConfig.cluster_max_workers": dask.max_workers_per_user,
        "LocalClusterConfig.idle_timeout": float(dask.idle_timeout_minutes * 60),
        "LocalClusterConfig.environment": cluster_env,
    }
    preamble = (
        _secret_reader(s) + "\n\n\n" + _module_loader() + "\n\n\n_backend = _esdl_module('gateway_backend')"
    )
    return _render(_header(s, "Dask Gateway configuration"), preamble, settings)


def proxy_command(s: PlatformSettings) -> list[str]:
    """configurable-http-proxy in front of the hub (the auth token comes from the environment)."""
    hub = f"http://127.0.0.1:{s.ports['hub']}"
    return [
        proxy_executable(),
        "--ip", s.host,
        "--port", str(s.ports["public"]),
        "--api-ip", "127.0.0.1",
        "--api-port", str(s.ports["proxy_api"]),
        "--default-target", hub,
        "--error-target", f"{hub}/hub/error",
        "--log-level", "warn",
    ]  # fmt: skip


def project_catalog_text(s: PlatformSettings) -> str:
    """The spec's ``catalog.entries`` as an Intake catalog (local paths made absolute, ``env:`` refs templated)."""
    sources = {}
    for entry in s.spec.catalog.entries:
        urlpath = str(entry.local_path(s.data_dir)) if entry.is_local else entry.urlpath
        args: dict[str, Any] = {"urlpath": urlpath}
        if entry.storage_options:
            args["storage_options"] = _template_refs(entry.storage_options)
        metadata = {"title": entry.description or entry.name, "project": s.spec.name, **entry.metadata}
        sources[entry.name] = {
            "description": entry.description,
            "driver": entry.driver,
            "args": args,
            "metadata": metadata,
        }
    header = (
        f"# Catalog entries of project {s.spec.name!r}, generated by `esdl up` from its spec. Do not edit.\n"
    )
    return header + yaml.safe_dump({"sources": sources}, sort_keys=False)


def _template_refs(value: Any) -> Any:
    """``env:NAME`` references become Intake's ``{{ env(NAME) }}``; ``secret:`` ones apply on Kubernetes only."""
    if isinstance(value, dict):
        return {
            k: _template_refs(v)
            for k, v in value.items()
            if not (isinstance(v, str) and v.startswith("secret:"))
        }
    if isinstance(value, list):
        return [_template_refs(v) for v in value]
    if isinstance(value, str) and value.startswith("env:"):
        return "{{ env(" + value[4:] + ") }}"
    return value


def missing_stores(s: PlatformSettings) -> list[str]:
    """One message per local catalog entry of the spec whose store does not exist."""
    out = []
    for i, entry in enumerate(s.spec.catalog.entries):
        if entry.is_local and not entry.local_path(s.data_dir).exists():
            out.append(
                f"catalog.entries[{i}] ({entry.name!r}): the store {entry.local_path(s.data_dir)} does not exist;"
                " write it first (or fix urlpath: a URL, an absolute path, or a path relative to"
                f" ESDL_DATA_DIR={s.data_dir})"
            )
    return out


def kubernetes_only_settings(spec: ProjectSpec) -> list[str]:
    """One note per setting of ``spec`` that the embedded platform does not apply (it does on Kubernetes).

    All user servers run as the one system user who ran ``esdl up``, so file permissions cannot tell
    members apart: ``storage.team_access: admins-write`` is not enforced here.

    >>> from platform_lib.projects import load_project
    >>> kubernetes_only_settings(load_project("demo"))
    []
    >>> kubernetes_only_settings(load_project("extremes-lab"))[-1]
    "storage.team_access 'admins-write' applies on Kubernetes; here every member can write the team folder (all user servers run as one system user)"
    """
    notes = []
    if spec.login.method != "native":
        notes.append(
            f"login.method {spec.login.method!r} applies on Kubernetes; here everyone logs in with a generated password"
        )
    if spec.storage.team_access != "rw":
        notes.append(
            f"storage.team_access {spec.storage.team_access!r} applies on Kubernetes; here every member can write"
            " the team folder (all user servers run as one system user)"
        )
    return notes


def ungenerated_shared_cubes(s: PlatformSettings) -> list[str]:
    """Names of the shared catalogs' local cubes whose stores do not exist yet (e.g. the demo cubes
    before ``esdl cubes generate``); the platform still starts, ``esdl up`` prints a note."""
    from platform_lib.catalog import read_catalog

    names = []
    for path in s.base_catalogs:
        try:
            entries = read_catalog(path)
        except EsdlError:
            continue  # a missing or broken shared catalog is reported when a session opens it
        names += [
            name for name, entry in entries.items() if entry.is_local and not Path(entry.urlpath).exists()
        ]
    return names


def write_configs(s: PlatformSettings) -> dict[str, str]:
    """Write the hub and gateway configs and the project catalog; return each component's config hash."""
    hub, gateway = hub_config_text(s), gateway_config_text(s)
    write_text_atomic(s.layout.hub_config, hub, mode=0o600)
    write_text_atomic(s.layout.gateway_config, gateway, mode=0o600)
    if s.spec.catalog.entries:
        write_text_atomic(s.layout.project_catalog, project_catalog_text(s), mode=0o644)
    else:
        s.layout.project_catalog.unlink(missing_ok=True)
    proxy = " ".join(proxy_command(s))
    digest = {name: hashlib.sha256(text.encode()).hexdigest()[:16] for name, text in
              (("gateway", gateway), ("proxy", proxy), ("hub", hub))}  # fmt: skip
    # the hub reads the credentials at start-up: a changed list of people restarts it
    creds = s.layout.credentials_file.read_bytes() if s.layout.credentials_file.exists() else b""
    digest["hub"] = hashlib.sha256(digest["hub"].encode() + creds).hexdigest()[:16]
    return digest
