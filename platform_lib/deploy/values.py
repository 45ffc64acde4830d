"""Project spec -> Helm values of ``helm/esdl-project`` (one release and one namespace per project).

:func:`render_values` returns only what the spec decides; the chart's ``values.yaml`` carries the wiring
that is the same for every project (hub service, scopes, gateway auth, options handler), and Helm
merges the two. Secrets appear only as references: a ``secret:NAME/KEY`` in the spec becomes a
``secretKeyRef`` to that Kubernetes Secret, an ``env:VAR`` becomes a key of the Secret
:data:`ENV_SECRET`, which ``esdl project deploy`` creates from the deployer's own environment (never
written to a file).

>>> from platform_lib.projects import load_project
>>> values = render_values(load_project("demo"))
>>> values["jupyterhub"]["singleuser"]["image"]
{'name': 'ghcr.io/esdl-platform/esdl-user', 'tag': '0.1.0'}
>>> namespace_for(load_project("demo"))
'esdl-demo'
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from platform_lib.errors import EsdlError
from platform_lib.paths import repo_root
from platform_lib.projects import SCHEDULER_CPU, SCHEDULER_MEMORY, ProjectSpec, parse_quantity

__all__ = [
    "CHART_DIR",
    "ENV_SECRET",
    "SecretRef",
    "derived_quota",
    "namespace_for",
    "project_catalog_text",
    "release_name",
    "render_values",
    "secret_refs",
    "shared_catalog_text",
]

CHART_DIR = repo_root() / "helm" / "esdl-project"
#: the Secret that ``esdl project deploy`` fills from the deployer's environment for ``env:VAR`` references
ENV_SECRET = "esdl-env"
#: where the team folder is mounted in user servers and dask workers (as in the chart's values.yaml)
TEAM_MOUNT = "/home/jovyan/team"
TEAM_VOLUME = "esdl-team-storage"
#: share of a profile's CPU limit that is guaranteed (requested); memory is guaranteed in full
CPU_GUARANTEE_FRACTION = 0.25
#: pods besides user servers and dask clusters: hub, proxy, gateway api, controller, traefik, user-schedulers
#: (their containers: the hub's own resources, LimitRange defaults of 500m and 512Mi for the others)
SYSTEM_PODS = 8
SYSTEM_CPU = 4.5
SYSTEM_MEMORY = 5 * 2**30


@dataclass(frozen=True)
class SecretRef:
    """One secret a release needs, by reference: pods get ``env`` from ``secret``/``key``.

    ``from_env`` names the deployer's environment variable that fills the key (``env:VAR`` references);
    it is ``None`` for ``secret:NAME/KEY`` references to a Secret that must already exist.
    ``used_by`` is ``"hub"`` (the OAuth client secret) or ``"users"`` (user servers and dask workers).
    """

    env: str
    secret: str
    key: str
    from_env: str | None
    used_by: str

    def env_var(self) -> dict[str, Any]:
        """The Kubernetes ``EnvVar`` that reads it.

        >>> SecretRef("X", "s", "k", None, "users").env_var()
        {'name': 'X', 'valueFrom': {'secretKeyRef': {'name': 's', 'key': 'k'}}}
        """
        return {"name": self.env, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": self.key}}}


def release_name(spec: ProjectSpec) -> str:
    """The Helm release of a project: its name.

    >>> from platform_lib.projects import load_project
    >>> release_name(load_project("demo"))
    'demo'
    """
    return spec.name


def namespace_for(spec: ProjectSpec) -> str:
    """The namespace of a project: ``esdl-<name>`` (one project per namespace)."""
    return f"esdl-{spec.name}"


def _ref(reference: str, env: str, used_by: str) -> SecretRef:
    kind, _, rest = reference.partition(":")
    if kind == "env":
        return SecretRef(env=env, secret=ENV_SECRET, key=rest, from_env=rest, used_by=used_by)
    name, _, key = rest.partition("/")
    return SecretRef(env=env, secret=name, key=key, from_env=None, used_by=used_by)


def _env_name_for(reference: str) -> str:
    """The pod environment variable that carries a catalog credential reference."""
    kind, _, rest = reference.partition(":")
    if kind == "env":
        return rest
    return "ESDL_SECRET_" + re.sub(r"[^A-Za-z0-9]+", "_", rest).strip("_").upper()


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("env:") or value.startswith("secret:"))


def _catalog_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for v in node.values() for r in _catalog_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _catalog_refs(v)]
    return [node] if _is_ref(node) else []


def secret_refs(spec: ProjectSpec) -> list[SecretRef]:
    """Every secret the release reads: the OAuth client secret and the catalog's credentials.

    >>> from platform_lib.projects import load_project
    >>> [(r.env, r.secret, r.key) for r in secret_refs(load_project("extremes-lab"))][0]
    ('OAUTH_CLIENT_SECRET', 'extremes-lab-github', 'client-secret')
    """
    refs: dict[str, SecretRef] = {}
    if spec.login.client_secret:
        refs["OAUTH_CLIENT_SECRET"] = _ref(spec.login.client_secret, "OAUTH_CLIENT_SECRET", "hub")
    for entry in spec.catalog.entries:
        for reference in _catalog_refs(entry.storage_options):
            env = _env_name_for(reference)
            refs.setdefault(env, _ref(reference, env, "users"))
    return list(refs.values())


def _templated(node: Any) -> Any:
    """Catalog values with ``env:``/``secret:`` references replaced by ``{{ env(VAR) }}`` templates."""
    if isinstance(node, dict):
        return {k: _templated(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_templated(v) for v in node]
    if _is_ref(node):
        return "{{ env(" + _env_name_for(node) + ") }}"
    return node


def project_catalog_text(spec: ProjectSpec) -> str:
    """The spec's ``catalog.entries`` as an Intake catalog (YAML text) for the catalog ConfigMap.

    Relative paths are taken from the data folder (``{{ env(ESDL_DATA_DIR) }}``, on team storage);
    credentials are ``{{ env(VAR) }}`` templates, never values.

    >>> from platform_lib.projects import load_project
    >>> text = project_catalog_text(load_project("extremes-lab"))
    >>> "{{ env(EXTREMES_LAB_S3_SECRET) }}" in text and "esdc-16d-2.5deg" in text
    True
    """
    sources = {}
    for entry in spec.catalog.entries:
        urlpath = entry.urlpath
        if entry.is_local and not urlpath.startswith("file://") and not Path(urlpath).is_absolute():
            urlpath = "{{ env(ESDL_DATA_DIR) }}/" + urlpath
        args: dict[str, Any] = {"urlpath": urlpath, "consolidated": True}
        if entry.storage_options:
            args["storage_options"] = _templated(entry.storage_options)
        source: dict[str, Any] = {"description": entry.description or entry.name, "driver": entry.driver}
        source["args"] = args
        source["metadata"] = {**entry.metadata, "project": spec.name}
        sources[entry.name] = source
    doc = {"metadata": {"version": 1, "description": f"Cubes of project {spec.name}"}, "sources": sources}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def shared_catalog_text(path: str | Path | None = None) -> str:
    """Text of the shared catalog that goes into every project (``<repo>/catalog/esdl.yaml``)."""
    path = Path(path) if path else repo_root() / "catalog" / "esdl.yaml"
    if not path.is_file():
        return yaml.safe_dump({"metadata": {"version": 1}, "sources": {}}, sort_keys=False)
    return path.read_text()


def _memory(n_bytes: int) -> str:
    """Bytes as a Kubernetes quantity, exact: ``4Gi``, ``1536Mi`` or plain bytes."""
    for suffix, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n_bytes % factor == 0:
            return f"{n_bytes // factor}{suffix}"
    return str(n_bytes)


def _hub_bytes(n_bytes: int) -> str | int:
    """Bytes for KubeSpawner's ``mem_limit`` (suffixes K/M/G/T are powers of 1024 there)."""
    for suffix, factor in (("G", 2**30), ("M", 2**20)):
        if n_bytes % factor == 0:
            return f"{n_bytes // factor}{suffix}"
    return n_bytes


def _cpu(value: float) -> str:
    """A CPU quantity: whole cores as ``"4"``, fractions in millicores (``"250m"``)."""
    milli = math.ceil(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _dask_allowance(spec: ProjectSpec) -> tuple[float, int, int]:
    """CPU, memory and pods one user may hold in Dask: ``max_workers_per_user`` workers of the largest
    choice across their clusters, plus one scheduler per cluster (``max_clusters_per_user``)."""
    dask = spec.dask
    workers, clusters = dask.max_workers_per_user, dask.max_clusters_per_user
    cpu = workers * max(dask.worker_cores.choices) + clusters * SCHEDULER_CPU
    memory = workers * max(dask.worker_memory.choices_bytes) + clusters * parse_quantity(SCHEDULER_MEMORY)
    return cpu, memory, workers + clusters


def derived_quota(spec: ProjectSpec) -> dict[str, Any]:
    """The ResourceQuota of the namespace: the spec's ``quota`` where set, else derived.

    Derived: every user running the default profile, plus one user's full Dask allowance for every four
    users (at least one), plus the system pods (hub, proxy, gateway).

    >>> from platform_lib.projects import load_project
    >>> derived_quota(load_project("demo"))["pods"]
    17
    """
    users = len(spec.users)
    profile = spec.default_profile
    dask_cpu, dask_mem, dask_pods = _dask_allowance(spec)
    shares = max(1, math.ceil(users / 4))
    cpu = spec.quota.cpu or users * profile.cpu + shares * dask_cpu + SYSTEM_CPU
    memory = (
        parse_quantity(spec.quota.memory)
        if spec.quota.memory
        else users * profile.memory_bytes + shares * dask_mem + SYSTEM_MEMORY
    )
    pods = spec.quota.pods or users + shares * dask_pods + SYSTEM_PODS
    storage = users * parse_quantity(spec.storage.home_size) + parse_quantity(spec.storage.team_size) + 2**30
    return {
        "cpu": _cpu(cpu),
        "memory": _memory(memory),
        "pods": int(pods),
        "storage": _memory(storage),
        "persistentVolumeClaims": users + 4,
    }


def _limit_range(spec: ProjectSpec) -> dict[str, Any]:
    """Per-container defaults (the small system pods) and the maximum: the largest profile or worker."""
    dask = spec.dask
    max_cpu = max([p.cpu for p in spec.profiles] + [max(dask.worker_cores.choices), SCHEDULER_CPU])
    max_mem = max(
        [p.memory_bytes for p in spec.profiles]
        + [max(dask.worker_memory.choices_bytes), parse_quantity(SCHEDULER_MEMORY)]
    )
    return {
        "enabled": True,
        "default": {"cpu": "500m", "memory": "512Mi"},
        "defaultRequest": {"cpu": "50m", "memory": "128Mi"},
        "max": {"cpu": _cpu(max_cpu), "memory": _memory(max_mem)},
    }


def _object_storage_ports(spec: ProjectSpec) -> list[int]:
    """Ports of the catalog's object-storage endpoints (443 always; e.g. 9000 for a MinIO endpoint)."""
    ports = {443}
    for entry in spec.catalog.entries:
        for url in _strings(entry.storage_options):
            parsed = urlparse(url)
            if parsed.scheme in ("http", "https") and parsed.hostname:
                ports.add(parsed.port or (443 if parsed.scheme == "https" else 80))
    return sorted(ports)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def _profile_list(spec: ProjectSpec) -> list[dict[str, Any]]:
    default = spec.default_profile
    profiles = []
    for p in spec.profiles:
        mem = _hub_bytes(p.memory_bytes)
        profiles.append(
            {
                "display_name": p.display_name,
                "slug": p.name,
                "description": p.description or f"{p.cpu:g} CPU, {p.memory} memory",
                "default": p.name == default.name,
                "kubespawner_override": {
                    "cpu_limit": float(p.cpu),
                    "cpu_guarantee": round(p.cpu * CPU_GUARANTEE_FRACTION, 3),
                    "mem_limit": mem,
                    "mem_guarantee": mem,
                },
            }
        )
    return profiles


def _authenticator(spec: ProjectSpec) -> dict[str, Any]:
    """``hub.config`` for the spec's login method, admins and allowed users."""
    login = spec.login
    people = {"admin_users": list(spec.admins), "allowed_users": list(spec.users)}
    if login.method == "native":
        return {
            "JupyterHub": {"authenticator_class": "native"},
            "NativeAuthenticator": {**people, "open_signup": False, "minimum_password_length": 10},
        }
    if login.method == "github":
        cls = "GitHubOAuthenticator"
        config: dict[str, Any] = {"client_id": login.client_id, **people}
        if login.allowed_organizations:
            config["allowed_organizations"] = list(login.allowed_organizations)
        if login.scopes:
            config["scope"] = list(login.scopes)
        return {"JupyterHub": {"authenticator_class": "github"}, cls: config}
    if login.method == "generic-oauth":
        config = {
            "client_id": login.client_id,
            "authorize_url": login.authorize_url,
            "token_url": login.token_url,
            "userdata_url": login.userdata_url,
            "username_claim": login.username_claim,
            "login_service": spec.title,
            **people,
        }
        if login.scopes:
            config["scope"] = list(login.scopes)
        return {"JupyterHub": {"authenticator_class": "generic-oauth"}, "GenericOAuthenticator": config}
    raise EsdlError(f"login.method {login.method!r} cannot be deployed on Kubernetes")  # pragma: no cover


def dask_limits(spec: ProjectSpec) -> dict[str, Any]:
    """The JSON the gateway's options snippet reads from ``ESDL_DASK_LIMITS`` (memory in bytes).

    >>> from platform_lib.projects import load_project
    >>> dask_limits(load_project("demo"))["worker_cores"]
    {'choices': [1, 2], 'default': 1}
    """
    dask = spec.dask
    return {
        "max_workers": dask.max_workers_per_user,
        "max_clusters": dask.max_clusters_per_user,
        "worker_cores": {"choices": list(dask.worker_cores.choices), "default": dask.worker_cores.default},
        "worker_memory": {
            "choices": dict(zip(dask.worker_memory.choices, dask.worker_memory.choices_bytes, strict=True)),
            "default": dask.worker_memory.default,
        },
        "idle_timeout_minutes": dask.idle_timeout_minutes,
        "scheduler_cores": SCHEDULER_CPU,
        "scheduler_memory": parse_quantity(SCHEDULER_MEMORY),
        "allowed_images": [f"{spec.image.name}:{spec.image.tag}"],
    }


def render_values(spec: ProjectSpec, *, shared_catalog: str | Path | None = None) -> dict[str, Any]:
    """The Helm values for one project: what the spec decides, layered over the chart's values.yaml.

    >>> from platform_lib.projects import load_project
    >>> v = render_values(load_project("extremes-lab"))
    >>> v["jupyterhub"]["hub"]["config"]["JupyterHub"]["authenticator_class"]
    'github'
    >>> v["jupyterhub"]["hub"]["extraEnv"]["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    {'name': 'extremes-lab-github', 'key': 'client-secret'}
    >>> [p["slug"] for p in v["jupyterhub"]["singleuser"]["profileList"]]
    ['small', 'analysis', 'training']
    """
    image = {"name": spec.image.name, "tag": spec.image.tag}
    team_read_only = spec.storage.team_access == "admins-write"
    refs = secret_refs(spec)
    user_env = [r.env_var() for r in refs if r.used_by == "users"]
    default = spec.default_profile
    default_mem = _hub_bytes(default.memory_bytes)

    hub_config = _authenticator(spec)
    hub: dict[str, Any] = {"config": hub_config}
    hub_env = {r.env: {"valueFrom": r.env_var()["valueFrom"]} for r in refs if r.used_by == "hub"}
    if hub_env:
        hub["extraEnv"] = hub_env

    singleuser: dict[str, Any] = {
        "image": image,
        "profileList": _profile_list(spec),
        "cpu": {"limit": float(default.cpu), "guarantee": round(default.cpu * CPU_GUARANTEE_FRACTION, 3)},
        "memory": {"limit": default_mem, "guarantee": default_mem},
        "storage": {
            "capacity": spec.storage.home_size,
            "extraVolumeMounts": {
                TEAM_VOLUME: {"name": TEAM_VOLUME, "mountPath": TEAM_MOUNT, "readOnly": team_read_only}
            },
        },
    }
    if user_env:
        singleuser["extraEnv"] = {e["name"]: {"valueFrom": e["valueFrom"]} for e in user_env}

    worker_container: dict[str, Any] = {
        "volumeMounts": [
            {"name": TEAM_VOLUME, "mountPath": TEAM_MOUNT, "readOnly": team_read_only},
            {"name": "esdl-catalog", "mountPath": "/etc/esdl/catalog", "readOnly": True},
        ]
    }
    if user_env:
        worker_container["env"] = user_env

    servers = spec.servers
    cull: dict[str, Any] = {"enabled": servers.cull_idle_minutes > 0}
    if servers.cull_idle_minutes:
        cull["timeout"] = servers.cull_idle_minutes * 60
        cull["every"] = max(60, min(600, servers.cull_idle_minutes * 60 // 4))
        cull["maxAge"] = servers.cull_max_age_hours * 3600

    return {
        "project": {"name": spec.name, "title": spec.title},
        "teamStorage": {"size": spec.storage.team_size, "storageClass": spec.storage.storage_class or ""},
        "catalog": {"shared": shared_catalog_text(shared_catalog), "project": project_catalog_text(spec)},
        "quota": {"enabled": True, **derived_quota(spec)},
        "limitRange": _limit_range(spec),
        "networkPolicy": {"objectStorage": {"ports": _object_storage_ports(spec)}},
        "jupyterhub": {"hub": hub, "singleuser": singleuser, "cull": cull},
        "dask-gateway": {
            "gateway": {
                "env": [{"name": "ESDL_DASK_LIMITS", "value": json.dumps(dask_limits(spec))}],
                "backend": {"image": image, "worker": {"extraContainerConfig": worker_container}},
            }
        },
    }
