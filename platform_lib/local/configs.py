"""Traitlets configuration files for the hub and the gateway, and the proxy command, from a project spec.

Each generated file is plain, readable traitlets configuration (``c.Class.trait = value``) written into
the project's state folder; secrets are not in the files but read from ``secrets/`` (0600) when the
component starts. The values follow the checks in ``FIELD-NOTES.md``. With per-person OS accounts
(``PlatformSettings.accounts``, made when ``esdl up`` runs as root) the hub runs
``ProjectAccountSpawner`` and the gateway's ``LocalBackend`` runs clusters under the same accounts;
without them (not root: one trust domain) ``SimpleLocalProcessSpawner`` and clusters as the gateway's
user. The gateway runs the ``dask scheduler``/``dask worker`` commands, the gateway authenticated through the hub with the service name
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

import dataclasses
import hashlib
import os
import pprint
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platform_lib.errors import EsdlError
from platform_lib.local.layout import ProjectLayout
from platform_lib.paths import PACKAGE_DIR, data_dir, repo_root
from platform_lib.plan import (
    GATEWAY_PREFIX,
    GATEWAY_SCOPE,
    GATEWAY_SERVICE,
    HEALTH_SCOPES,
    HEALTH_SERVICE,
    Placement,
    ProjectPlan,
    Raw,
    project_plan,
    traitlets_config_text,
)
from platform_lib.projects import ProjectSpec
from platform_lib.storage import write_text_atomic

#: the environment variable that marks every process of one project's platform (for ``down`` and status)
TAG_VARIABLE = "ESDL_PLATFORM"
#: which part of the platform a tagged process belongs to: gateway, proxy, hub, cluster or user
ROLE_VARIABLE = "ESDL_PLATFORM_ROLE"


def notebooks_dir() -> Path:
    """The curated notebooks copied into each new home: ``ESDL_NOTEBOOKS_DIR`` or ``<repo>/notebooks``.

    >>> notebooks_dir().name
    'notebooks'
    """
    env = os.environ.get("ESDL_NOTEBOOKS_DIR")
    return Path(env) if env else repo_root() / "notebooks"


def docs_dir() -> Path:
    """The platform's documentation, linked into each home as ``esdl-docs``: ``<repo>/docs``.

    >>> (docs_dir() / "notebooks.md").is_file()
    True
    """
    return repo_root() / "docs"


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
    #: hub user -> OS account (``platform_lib.local.accounts``); empty: everything runs as this process's user
    accounts: dict[str, str] = field(default_factory=dict)

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

    @property
    def plan(self) -> ProjectPlan:
        """The project plan of the spec (derived once per settings object)."""
        if "_plan" not in self.__dict__:
            self.__dict__["_plan"] = project_plan(self.spec)
        return self.__dict__["_plan"]

    @property
    def placement(self) -> Placement:
        """Where this machine puts the team folder, the data, the catalogs and the gateway."""
        spec = self.spec
        return Placement(
            backend="local",
            team_dir=str(self.layout.team_dir),
            data_dir=str(self.data_dir),
            shared_catalogs=tuple(self.base_catalogs),
            project_catalog=str(self.layout.project_catalog),
            gateway_address=f"http://127.0.0.1:{self.ports['public']}{GATEWAY_PREFIX}",
            gateway_proxy_address=f"gateway://127.0.0.1:{self.ports['gateway_tcp']}",
            image_option=f"{spec.image.name}:{spec.image.tag}",
            public_url=self.url.rstrip("/"),
        )

    def user_environment(self) -> dict[str, str]:
        """Environment of every user server (and its kernels): the plan's, plus this platform's tag."""
        return {**self.plan.user_environment(self.placement), TAG_VARIABLE: self.tag}


def _render(header: str, preamble: str, settings: dict[str, Any]) -> str:
    return "\n".join([header.rstrip(), "", preamble.rstrip(), "", "c = get_config()  # noqa: F821", ""]) + (
        traitlets_config_text(settings)
    )


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


#: the process-side modules the hub and the gateway load by path (standard library and the component's own
#: packages only), so that they do not import the whole ``platform_lib`` package (xarray, pandas) at start-up
PROCESS_MODULES = {
    "auth": PACKAGE_DIR / "local" / "auth.py",
    "session": PACKAGE_DIR / "local" / "session.py",
    "spawner": PACKAGE_DIR / "local" / "spawner.py",
    "gateway_policy": PACKAGE_DIR / "gateway_policy.py",
}


def _module_loader() -> str:
    """Config code that loads one of :data:`PROCESS_MODULES` from its file."""
    return (
        "import importlib.util\n"
        "import sys\n\n"
        f"_ESDL_MODULES = {pprint.pformat({k: str(v) for k, v in PROCESS_MODULES.items()}, width=100)}\n\n\n"
        "def _esdl_module(name):\n"
        "    spec = importlib.util.spec_from_file_location('esdl_local_' + name, _ESDL_MODULES[name])\n"
        "    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    return module"
    )


def _idle_culler(s: PlatformSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hub-managed jupyterhub-idle-culler for the plan's culling (as z2jh's ``cull``)."""
    cull = s.plan.cull
    if not cull.timeout_seconds:
        return [], []
    cmd = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull.timeout_seconds}"]
    cmd.append(f"--cull-every={cull.every_seconds}")
    if cull.max_age_seconds:
        cmd.append(f"--max-age={cull.max_age_seconds}")
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
    args = list(s.plan.server_args)
    if os.geteuid() == 0 and not s.accounts:
        args.insert(0, "--allow-root")  # jupyter-server refuses to run as root without it
    profile = spec.default_profile
    culler_services, culler_roles = _idle_culler(s)
    # the plan's login, always native here (kubernetes_only_settings says so for OAuth): the project's
    # NativeAuthenticator whose accounts come from credentials.json
    native = dataclasses.replace(s.plan.login, method="native", oauth={}, client_secret=None)
    login = {
        f"{section}.{trait}": value
        for section, traits in native.hub_config().items()
        for trait, value in traits.items()
        if section != "JupyterHub"
    }
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
        **login,
        "JupyterHub.load_groups": {spec.name: {"users": list(spec.users)}},
        "JupyterHub.load_roles": [
            {"name": "user", "scopes": ["self", GATEWAY_SCOPE]},
            {"name": HEALTH_SERVICE, "services": [HEALTH_SERVICE], "scopes": HEALTH_SCOPES},
            *culler_roles,
        ],
        "JupyterHub.services": [
            {
                "name": GATEWAY_SERVICE,
                "url": f"http://127.0.0.1:{ports['gateway_http']}",
                "api_token": Raw("_secret('gateway_token')"),
                "display": False,
            },
            {"name": HEALTH_SERVICE, "api_token": Raw("_secret('health_token')"), "display": False},
            *culler_services,
        ],
        # a local process spawner that hands the server to the hub once it answers (see spawner.py): under
        # each person's OS account when there are accounts, else as this process's user
        **(
            {
                "JupyterHub.spawner_class": Raw("_esdl_module('spawner').ProjectAccountSpawner"),
                "ProjectAccountSpawner.os_accounts": s.accounts,
            }
            if s.accounts
            else {
                "JupyterHub.spawner_class": Raw("_esdl_module('spawner').ProjectLocalProcessSpawner"),
                "SimpleLocalProcessSpawner.home_dir_template": str(layout.homes_dir / "{username}"),
            }
        ),
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
            f" team_dir={str(layout.team_dir)!r}, docs_dir={str(docs_dir())!r})"
        ),
        "JupyterHub.template_vars": {"announcement_login": f"{spec.title}: sign in with your ESDL password."},
    }
    preamble = (
        "import functools\n" + _secret_reader(s) + "\n\n\n" + _module_loader() + "\n\n\n"
        "def _user_state_dir(spawner):\n"
        "    # each person's own state folder under their home, never the platform's\n"
        "    return spawner.home_dir + '/.esdl/state'\n\n\n"
        "def _user_dask_scratch(spawner):\n"
        "    # dask's spill files of a person's own LocalCluster: in their home, not a /tmp folder the first\n"
        "    # person to use dask would own\n"
        "    return spawner.home_dir + '/.cache/dask-scratch'\n"
    )
    text = _render(_header(s, "JupyterHub configuration"), preamble, settings)
    return text + (
        "c.Spawner.environment['ESDL_STATE_DIR'] = _user_state_dir\n"
        "c.Spawner.environment['DASK_TEMPORARY_DIRECTORY'] = _user_dask_scratch\n"
    )


def gateway_config_text(s: PlatformSettings) -> str:
    """``dask_gateway_config.py``: local-process clusters, hub authentication, the plan's dask policy
    (``platform_lib/gateway_policy.py``, loaded from its file)."""
    layout, ports = s.layout, s.ports
    cluster_env = {**s.plan.worker_environment(s.placement), TAG_VARIABLE: s.tag, ROLE_VARIABLE: "cluster"}
    settings: dict[str, Any] = {
        "DaskGateway.address": f"127.0.0.1:{ports['gateway_api']}",
        "DaskGateway.log_level": s.log_level,
        "DaskGateway.backend_class": Raw("_esdl_module('gateway_policy').local_backend_class()"),
        "DaskGateway.authenticator_class": "dask_gateway_server.auth.JupyterHubAuthenticator",
        "Proxy.address": f"127.0.0.1:{ports['gateway_http']}",
        "Proxy.tcp_address": f"127.0.0.1:{ports['gateway_tcp']}",
        "Proxy.prefix": GATEWAY_PREFIX,
        "JupyterHubAuthenticator.jupyterhub_api_url": s.hub_api_url,
        "JupyterHubAuthenticator.jupyterhub_api_token": Raw("_secret('gateway_token')"),
        "JupyterHubAuthenticator.jupyterhub_service_name": GATEWAY_SERVICE,
        "JupyterHubAuthenticator.use_service_access_scopes": True,
        "LocalBackend.clusters_directory": str(layout.clusters_dir),
        "ProjectLocalBackend.os_accounts": s.accounts,
        # clusters outlive a gateway restart: it finds them again in its database (esdl down stops them)
        "DBBackendBase.db_url": f"sqlite:///{layout.gateway_db}",
        "DBBackendBase.db_encrypt_keys": Raw("[_secret('gateway_db_key')]"),
        "DBBackendBase.stop_clusters_on_shutdown": False,
        **s.plan.dask.policy_settings(),
        "LocalClusterConfig.scheduler_cmd": [str(venv_bin() / "dask"), "scheduler"],
        "LocalClusterConfig.worker_cmd": [str(venv_bin() / "dask"), "worker"],
        "LocalClusterConfig.environment": cluster_env,
    }
    preamble = _secret_reader(s) + "\n\n\n" + _module_loader()
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


def kubernetes_only_settings(spec: ProjectSpec, *, accounts: bool = False) -> list[str]:
    """One note per setting of ``spec`` that the embedded platform does not apply (it does on Kubernetes).

    Without per-person OS ``accounts`` (not root) all user servers run as the one system user who ran
    ``esdl up``, so file permissions cannot tell members apart: ``storage.team_access: admins-write`` is
    not enforced then.

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
    kubernetes_secrets = [r.reference for r in project_plan(spec).catalog_secrets if not r.from_env]
    if kubernetes_secrets:
        notes.append(
            f"catalog credentials {', '.join(kubernetes_secrets)} are Kubernetes Secrets; here they are left out"
            " (use env:VARIABLE references to pass credentials from the environment of `esdl up`)"
        )
    if spec.storage.team_access != "rw" and not accounts:
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
    write_text_atomic(s.layout.project_catalog, s.plan.catalog_text(s.placement), mode=0o644)
    proxy = " ".join(proxy_command(s))
    digest = {name: hashlib.sha256(text.encode()).hexdigest()[:16] for name, text in
              (("gateway", gateway), ("proxy", proxy), ("hub", hub))}  # fmt: skip
    # the hub reads the credentials at start-up: a changed list of people restarts it
    creds = s.layout.credentials_file.read_bytes() if s.layout.credentials_file.exists() else b""
    digest["hub"] = hashlib.sha256(digest["hub"].encode() + creds).hexdigest()[:16]
    return digest
