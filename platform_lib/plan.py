"""The project plan: what a :class:`~platform_lib.projects.ProjectSpec` means, derived once for both backends.

``projects/<name>.yaml -> ProjectSpec -> ProjectPlan -> {local formatter, Helm formatter}``: the plan is
backend-neutral. It holds the user environment (every ``ESDL_*`` and ``DASK_GATEWAY__*`` variable of a
user's server and the subset its dask workers get), the project catalog document (with a per-backend
policy for secret references), the dask policy (the settings of
:class:`platform_lib.gateway_policy.DaskPolicy`), the login policy and server culling.
``platform_lib/local/configs.py`` (the embedded platform) and ``platform_lib/deploy/values.py`` (the Helm
values) only format it; where a backend puts things (folders, addresses) is a :class:`Placement`.

>>> from platform_lib.projects import load_project
>>> plan = project_plan(load_project("demo"))
>>> plan.dask.policy_settings()["DaskPolicy.max_clusters_per_user"]
2
>>> plan.user_environment(kubernetes_placement("demo"))["ESDL_TEAM_CATALOG"]
'/home/jovyan/team/catalog.yaml'
"""

from __future__ import annotations

import os
import pprint
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from platform_lib.paths import PACKAGE_DIR
from platform_lib.projects import SCHEDULER_CPU, SCHEDULER_MEMORY, ProjectSpec, parse_quantity

__all__ = [
    "CullPlan",
    "DaskPlan",
    "GATEWAY_PREFIX",
    "GATEWAY_SCOPE",
    "GATEWAY_SERVICE",
    "HEALTH_SCOPES",
    "HEALTH_SERVICE",
    "HEALTH_USER",
    "IMAGE_SOURCE_DIR",
    "JUPYTER_CONFIG_DIR",
    "gateway_fullname",
    "kubernetes_placement",
    "LoginPlan",
    "Placement",
    "ProjectPlan",
    "SecretRef",
    "TEAM_VOLUME",
    "project_plan",
    "traitlets_config_text",
]

#: the gateway-side policy module: loaded by path by the local gateway, inlined into the chart's config
GATEWAY_POLICY_FILE = PACKAGE_DIR / "gateway_policy.py"
#: JupyterLab settings every user server starts with (``labconfig/default_setting_overrides.json``: the
#: Help menu's start page and docs, no news prompt); ``JUPYTER_CONFIG_PATH`` points servers at it
JUPYTER_CONFIG_DIR = PACKAGE_DIR / "jupyter_config"
#: where the user image keeps the repository (images/notebook/Dockerfile: an editable install)
IMAGE_SOURCE_DIR = "/opt/esdl/src"

GATEWAY_SERVICE = "dask-gateway"
#: where the gateway is served behind the hub, on both backends
GATEWAY_PREFIX = f"/services/{GATEWAY_SERVICE}"
#: the scope a user's token needs for the gateway (in the ``user`` role and the server token)
GATEWAY_SCOPE = f"access:services!service={GATEWAY_SERVICE}"
#: the hub service whose token ``esdl project health`` uses, and the user it runs its checks as
HEALTH_SERVICE = "esdl-health"
HEALTH_USER = "esdl-health"
#: what that service may do: the health user only (create it, start and stop its server, give it a token)
HEALTH_SCOPES = [
    f"admin:users!user={HEALTH_USER}",
    f"servers!user={HEALTH_USER}",
    f"tokens!user={HEALTH_USER}",
    f"access:servers!user={HEALTH_USER}",
]
#: the team storage volume (Kubernetes) whose mount admins may write where members may not
TEAM_VOLUME = "esdl-team-storage"
#: the Kubernetes Secret that ``esdl project deploy`` fills from the deployer's environment (``env:VAR``)
ENV_SECRET = "esdl-env"


@dataclass(frozen=True)
class Placement:
    """Where one backend puts what a user's session needs: folders and catalogs as the session sees
    them, the gateway's addresses, and the value of the cluster option ``image`` the client sends."""

    backend: Literal["local", "kubernetes"]
    team_dir: str
    data_dir: str
    shared_catalogs: tuple[str, ...]
    project_catalog: str
    gateway_address: str
    gateway_proxy_address: str
    image_option: str
    #: distributed's dashboard link for clusters a person starts in their own server: through the server's
    #: jupyter-server-proxy (as the backend's spawner passes environment templates through)
    dashboard_link: str = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"
    #: the hub's public address (``http://host:port``, no trailing slash) when the backend knows it: dashboard
    #: links are then absolute, so they work pasted anywhere and from the server's dask sidebar; else
    #: relative to the page (a project spec names no host for Kubernetes; the ingress decides it)
    public_url: str = ""
    #: :data:`JUPYTER_CONFIG_DIR` as the user's server sees it
    jupyter_config_dir: str = str(JUPYTER_CONFIG_DIR)

    @property
    def team_catalog(self) -> str:
        """The team's writable catalog: ``catalog.yaml`` in the team folder."""
        return f"{self.team_dir}/catalog.yaml"


def gateway_fullname(release: str) -> str:
    """The dask-gateway chart's ``fullname`` in a release (its default, which the chart's names and its
    ``gateway.dask.org/instance`` label use): one per release, so no two projects share a cluster-wide
    name or an instance label.

    >>> gateway_fullname("demo")
    'demo-dask-gateway'
    """
    name = release if "dask-gateway" in release else f"{release}-dask-gateway"
    return name[:63].rstrip("-")


def kubernetes_placement(release: str) -> Placement:
    """Kubernetes: team storage at ~/team, both catalogs from the catalog ConfigMap, the release's gateway
    traefik in the namespace; the image option is the server's own (KubeSpawner turns ``{{`` into ``{``,
    then the gateway client fills ``{JUPYTER_IMAGE_SPEC}`` from the pod's environment).

    >>> kubernetes_placement("demo").gateway_address
    'http://traefik-demo-dask-gateway/services/dask-gateway'
    """
    traefik = f"traefik-{gateway_fullname(release)}"[:63].rstrip("-")
    return Placement(
        backend="kubernetes",
        team_dir="/home/jovyan/team",
        data_dir="/home/jovyan/team/data",
        shared_catalogs=("/etc/esdl/catalog/esdl.yaml",),
        project_catalog="/etc/esdl/catalog/project.yaml",
        gateway_address=f"http://{traefik}{GATEWAY_PREFIX}",
        gateway_proxy_address=f"gateway://{traefik}:80",
        image_option="{{JUPYTER_IMAGE_SPEC}}",
        dashboard_link="{{JUPYTERHUB_SERVICE_PREFIX}}proxy/{{port}}/status",  # KubeSpawner formats {{ -> {
        jupyter_config_dir=f"{IMAGE_SOURCE_DIR}/{JUPYTER_CONFIG_DIR.relative_to(PACKAGE_DIR.parent)}",
    )


@dataclass(frozen=True)
class SecretRef:
    """One secret a platform reads, by reference: ``env:VAR`` (the deployer's environment) or
    ``secret:NAME/KEY`` (a Kubernetes Secret). ``env`` is the variable that carries it in pods;
    ``used_by`` is ``"hub"`` (the OAuth client secret) or ``"users"`` (servers and dask workers).

    >>> SecretRef.parse("secret:s3-creds/key", "users").env
    'ESDL_SECRET_S3_CREDS_KEY'
    >>> SecretRef.parse("env:TOKEN", "users").env_var()
    {'name': 'TOKEN', 'valueFrom': {'secretKeyRef': {'name': 'esdl-env', 'key': 'TOKEN'}}}
    """

    reference: str
    env: str
    secret: str
    key: str
    from_env: str | None
    used_by: str

    @classmethod
    def parse(cls, reference: str, used_by: str, env: str | None = None) -> SecretRef:
        kind, _, rest = reference.partition(":")
        if kind == "env":
            return cls(reference, env or rest, ENV_SECRET, rest, rest, used_by)
        name, _, key = rest.partition("/")
        env = env or "ESDL_SECRET_" + re.sub(r"[^A-Za-z0-9]+", "_", rest).strip("_").upper()
        return cls(reference, env, name, key, None, used_by)

    @staticmethod
    def is_reference(value: Any) -> bool:
        return isinstance(value, str) and value.startswith(("env:", "secret:"))

    def env_var(self) -> dict[str, Any]:
        """The Kubernetes ``EnvVar`` that reads it from its Secret."""
        return {"name": self.env, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": self.key}}}


@dataclass(frozen=True)
class DaskPlan:
    """The dask policy: the cluster options members may choose and the per-user limits."""

    max_clusters_per_user: int
    max_workers_per_user: int
    max_cores_per_user: float
    worker_cores: tuple[int, ...]
    default_worker_cores: int
    worker_memory: dict[str, int]
    default_worker_memory: str
    idle_timeout_minutes: int
    images: tuple[str, ...]
    admin_writable_mounts: tuple[str, ...]
    scheduler_cores: float = SCHEDULER_CPU
    scheduler_memory: int = field(default_factory=lambda: parse_quantity(SCHEDULER_MEMORY))

    def policy_settings(self) -> dict[str, Any]:
        """``DaskPolicy.<trait>`` -> value, as both backends write them into the gateway's config.

        >>> from platform_lib.projects import load_project
        >>> project_plan(load_project("demo")).dask.policy_settings()["DaskPolicy.worker_cores"]
        [1, 2]
        """
        return {
            "DaskPolicy.max_clusters_per_user": self.max_clusters_per_user,
            "DaskPolicy.max_workers_per_user": self.max_workers_per_user,
            "DaskPolicy.max_cores_per_user": self.max_cores_per_user,
            "DaskPolicy.worker_cores": list(self.worker_cores),
            "DaskPolicy.default_worker_cores": self.default_worker_cores,
            "DaskPolicy.worker_memory": dict(self.worker_memory),
            "DaskPolicy.default_worker_memory": self.default_worker_memory,
            "DaskPolicy.idle_timeout_minutes": self.idle_timeout_minutes,
            "DaskPolicy.images": list(self.images),
            "DaskPolicy.admin_writable_mounts": list(self.admin_writable_mounts),
        }

    @property
    def largest_cluster(self) -> tuple[float, int]:
        """CPU and memory bytes of one user's Dask allowance in one cluster: all workers of the
        largest choices plus a scheduler (what a quota must hold)."""
        cpu = min(self.max_workers_per_user * max(self.worker_cores), self.max_cores_per_user or float("inf"))
        memory = self.max_workers_per_user * max(self.worker_memory.values())
        return cpu + self.scheduler_cores, memory + self.scheduler_memory


@dataclass(frozen=True)
class LoginPlan:
    """Who may log in and how: the spec's people only, its admins as admins, sign-up closed."""

    method: str
    allowed_users: tuple[str, ...]
    admin_users: tuple[str, ...]
    oauth: dict[str, Any]
    client_secret: SecretRef | None

    #: the JupyterHub authenticator (entry-point name) of each method, and its config section
    AUTHENTICATORS = {
        "native": ("native", "NativeAuthenticator"),
        "github": ("github", "GitHubOAuthenticator"),
        "generic-oauth": ("generic-oauth", "GenericOAuthenticator"),
    }

    def hub_config(self) -> dict[str, dict[str, Any]]:
        """``{section: {trait: value}}`` for the hub: the authenticator and its settings.

        >>> from platform_lib.projects import load_project
        >>> project_plan(load_project("demo")).login.hub_config()["NativeAuthenticator"]["enable_signup"]
        False
        """
        entry_point, section = self.AUTHENTICATORS[self.method]
        settings: dict[str, Any] = {
            "admin_users": list(self.admin_users),
            "allowed_users": list(self.allowed_users),
            # JupyterHub >= 5 would otherwise let in everyone the hub's database already knows: a person
            # removed from the spec loses access at the next start
            "allow_existing_users": False,
            **self.oauth,
        }
        if self.method == "native":
            settings.update(
                enable_signup=False,  # no sign-up page: an account in allowed_users cannot be claimed
                open_signup=False,
                minimum_password_length=10,
                # no lock-out after failed logins: anyone who knows a name could lock its owner out
                allowed_failed_logins=0,
            )
        return {"JupyterHub": {"authenticator_class": entry_point}, section: settings}


@dataclass(frozen=True)
class CullPlan:
    """Idle culling of user servers (JupyterHub's idle culler); ``timeout == 0``: never."""

    timeout_seconds: int
    every_seconds: int
    max_age_seconds: int


@dataclass(frozen=True)
class ProjectPlan:
    """Everything both backends derive from one spec; see the module docstring."""

    spec: ProjectSpec
    dask: DaskPlan
    login: LoginPlan
    cull: CullPlan
    catalog_secrets: tuple[SecretRef, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    def catalogs(self, where: Placement) -> list[str]:
        """The catalogs a session reads (``ESDL_CATALOG``): the shared one(s), then the project's (which
        both backends always write, empty when the spec adds no cubes)."""
        return [*where.shared_catalogs, where.project_catalog]

    @property
    def server_args(self) -> list[str]:
        """jupyter-server options of every user server, on both backends: no news pop-up and no update
        checks (many platforms have no internet), terminals that keep the server's environment (a
        login shell, jupyter-server's default under a spawner, resets ``PATH`` from ``/etc/profile``, so
        ``esdl``, ``python`` and ``jupyter`` would be "command not found"), and the server's CPU beside
        its memory in the status bar (jupyter-resource-usage; the limits come from the spawner's
        ``MEM_LIMIT`` and ``CPU_LIMIT``).

        >>> from platform_lib.projects import load_project
        >>> project_plan(load_project("demo")).server_args[-1]
        "--ServerApp.terminado_settings={'shell_command': ['/bin/bash']}"
        """
        return [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ResourceUseDisplay.track_cpu_percent=True",
            # no CPU warning: jupyter-resource-usage 1.3 compares percent with cores (CPU_LIMIT), so it
            # would flash at 1 % of one core; the memory warning (within 10 % of the limit) stays
            "--ResourceUseDisplay.cpu_warning_threshold=0",
            f"--ServerApp.terminado_settings={ {'shell_command': ['/bin/bash']} }",
        ]

    def worker_environment(self, where: Placement) -> dict[str, str]:
        """What dask workers need to find cubes: the ``ESDL_*`` variables of a user's server.

        >>> from platform_lib.projects import load_project
        >>> sorted(project_plan(load_project("demo")).worker_environment(kubernetes_placement("demo")))
        ['ESDL_CATALOG', 'ESDL_DATA_DIR', 'ESDL_PROJECT', 'ESDL_TEAM_CATALOG', 'ESDL_TEAM_DIR']
        """
        return {
            "ESDL_PROJECT": self.spec.name,
            "ESDL_CATALOG": os.pathsep.join(self.catalogs(where)),
            "ESDL_DATA_DIR": where.data_dir,
            "ESDL_TEAM_DIR": where.team_dir,
            "ESDL_TEAM_CATALOG": where.team_catalog,
        }

    def user_environment(self, where: Placement) -> dict[str, str]:
        """Every variable of a user's server and kernels: the workers' ones plus the gateway client's,
        so that a bare ``dask_gateway.Gateway()`` finds the gateway and the workers run the server's image.
        """
        return {
            **self.worker_environment(where),
            "DASK_GATEWAY__ADDRESS": where.gateway_address,
            "DASK_GATEWAY__PROXY_ADDRESS": where.gateway_proxy_address,
            "DASK_GATEWAY__PUBLIC_ADDRESS": f"{where.public_url}{GATEWAY_PREFIX}/",
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
            "DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE": where.image_option,
            "DASK_DISTRIBUTED__DASHBOARD__LINK": f"{where.public_url}{where.dashboard_link}",
            "JUPYTER_CONFIG_PATH": where.jupyter_config_dir,
            # JupyterLab's Dask sidebar (dask-labextension) starts gateway clusters, not local ones
            "DASK_LABEXTENSION__FACTORY__MODULE": "platform_lib.gateway",
            "DASK_LABEXTENSION__FACTORY__CLASS": "sidebar_cluster",
        }

    def secret_refs(self, where: Placement) -> list[SecretRef]:
        """Every secret a backend's platform reads: the OAuth client secret, then the catalog's it serves.

        >>> from platform_lib.projects import load_project
        >>> [r.env for r in project_plan(load_project("extremes-lab")).secret_refs(kubernetes_placement("x"))]
        ['OAUTH_CLIENT_SECRET', 'EXTREMES_LAB_S3_KEY', 'EXTREMES_LAB_S3_SECRET']
        """
        hub = [self.login.client_secret] if self.login.client_secret else []
        return [*hub, *self.secrets_for(where)]

    def secrets_for(self, where: Placement) -> list[SecretRef]:
        """The catalog's secret references a backend can serve: both kinds on Kubernetes; on one
        machine only ``env:`` ones (there is no Kubernetes Secret to read)."""
        return [r for r in self.catalog_secrets if where.backend == "kubernetes" or r.from_env]

    def catalog_sources(self, where: Placement) -> dict[str, dict[str, Any]]:
        """The spec's ``catalog.entries`` as Intake sources for ``where``: relative paths under the data
        folder (``{{ env(ESDL_DATA_DIR) }}``), credentials as ``{{ env(VAR) }}`` templates, never values;
        a reference the backend cannot serve is left out (its key is dropped).

        >>> from platform_lib.projects import load_project
        >>> src = project_plan(load_project("extremes-lab")).catalog_sources(kubernetes_placement("extremes-lab"))
        >>> src["esdc-europe-heat-ts"]["args"]["storage_options"]["secret"]
        '{{ env(EXTREMES_LAB_S3_SECRET) }}'
        """
        from platform_lib.catalog import catalog_source

        served = {r.reference: r.env for r in self.secrets_for(where)}

        def templated(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: templated(v) for k, v in node.items() if not SecretRef.is_reference(v) or v in served
                }
            if isinstance(node, list):
                return [templated(v) for v in node]
            return "{{ env(" + served[node] + ") }}" if SecretRef.is_reference(node) else node

        sources = {}
        for entry in self.spec.catalog.entries:
            urlpath = entry.urlpath.removeprefix("file://")
            if entry.is_local and not urlpath.startswith("/"):
                urlpath = "{{ env(ESDL_DATA_DIR) }}/" + urlpath
            args = {"storage_options": templated(entry.storage_options)} if entry.storage_options else {}
            metadata = {"title": entry.description or entry.name, **entry.metadata, "project": self.spec.name}
            sources[entry.name] = catalog_source(urlpath, entry.description or entry.name, metadata, **args)
        return sources

    def catalog_text(self, where: Placement) -> str:
        """The project catalog for ``where`` as YAML text (:meth:`catalog_sources` in a catalog).

        >>> from platform_lib.projects import load_project
        >>> "sources: {}" in project_plan(load_project("demo")).catalog_text(kubernetes_placement("demo"))
        True
        """
        from platform_lib.catalog import dump_catalog

        return dump_catalog(self.catalog_sources(where), title=f"Cubes of project {self.spec.name}")


def traitlets_config_text(settings: dict[str, Any]) -> str:
    """``c.Section.trait = value`` lines, one per ``"Section.trait": value`` (values as Python literals;
    :class:`Raw` ones as written): how both backends write traitlets config.

    >>> print(traitlets_config_text({"DaskPolicy.worker_cores": [1, 2], "X.y": Raw("f()")}), end="")
    c.DaskPolicy.worker_cores = [1, 2]
    c.X.y = f()
    """
    return "".join(
        f"c.{key} = {pprint.pformat(value, width=100, sort_dicts=False)}\n" for key, value in settings.items()
    )


class Raw(str):
    """A Python expression written as-is into generated config (not quoted)."""

    def __repr__(self) -> str:
        return str(self)


def _dask_plan(spec: ProjectSpec) -> DaskPlan:
    dask = spec.dask
    return DaskPlan(
        max_clusters_per_user=dask.max_clusters_per_user,
        max_workers_per_user=dask.max_workers_per_user,
        max_cores_per_user=float(dask.max_cores_per_user or 0),
        worker_cores=tuple(dask.worker_cores.choices),
        default_worker_cores=dask.worker_cores.default,
        worker_memory=dict(zip(dask.worker_memory.choices, dask.worker_memory.choices_bytes, strict=True)),
        default_worker_memory=dask.worker_memory.default,
        idle_timeout_minutes=dask.idle_timeout_minutes,
        images=tuple(spec.images),  # the project's image and the profiles' own
        admin_writable_mounts=(TEAM_VOLUME,) if spec.storage.team_access == "admins-write" else (),
    )


def _login_plan(spec: ProjectSpec) -> LoginPlan:
    login = spec.login
    oauth: dict[str, Any] = {}
    if login.method != "native":
        oauth["client_id"] = login.client_id
        if login.scopes:
            oauth["scope"] = list(login.scopes)
    if login.method == "github" and login.allowed_organizations:
        oauth["allowed_organizations"] = list(login.allowed_organizations)
    if login.method == "generic-oauth":
        oauth.update(
            authorize_url=login.authorize_url,
            token_url=login.token_url,
            userdata_url=login.userdata_url,
            username_claim=login.username_claim,
            login_service=spec.title,
        )
    secret = (
        SecretRef.parse(login.client_secret, "hub", "OAUTH_CLIENT_SECRET") if login.client_secret else None
    )
    return LoginPlan(login.method, tuple(spec.users), tuple(spec.admins), oauth, secret)


def _catalog_secrets(spec: ProjectSpec) -> tuple[SecretRef, ...]:
    def references(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [r for v in node.values() for r in references(v)]
        if isinstance(node, list):
            return [r for v in node for r in references(v)]
        return [node] if SecretRef.is_reference(node) else []

    refs: dict[str, SecretRef] = {}
    for entry in spec.catalog.entries:
        for reference in references(entry.storage_options):
            refs.setdefault(reference, SecretRef.parse(reference, "users"))
    return tuple(refs.values())


def project_plan(spec: ProjectSpec) -> ProjectPlan:
    """Derive the plan of ``spec`` (pure: no files, no environment).

    >>> from platform_lib.projects import load_project
    >>> plan = project_plan(load_project("extremes-lab"))
    >>> plan.login.method, plan.login.client_secret.secret, plan.cull.timeout_seconds
    ('github', 'extremes-lab-github', 3600)
    """
    servers = spec.servers
    timeout = servers.cull_idle_minutes * 60
    cull = CullPlan(
        timeout_seconds=timeout,
        every_seconds=max(60, min(600, timeout // 4)) if timeout else 0,
        max_age_seconds=servers.cull_max_age_hours * 3600,
    )
    return ProjectPlan(spec, _dask_plan(spec), _login_plan(spec), cull, _catalog_secrets(spec))
