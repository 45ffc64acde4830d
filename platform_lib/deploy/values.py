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

import math
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import yaml

from platform_lib.paths import PACKAGE_DIR, repo_root
from platform_lib.plan import (
    ENV_SECRET,
    GATEWAY_POLICY_FILE,
    GATEWAY_PREFIX,
    HEALTH_SCOPES,
    HEALTH_SERVICE,
    IMAGE_SOURCE_DIR,
    TEAM_VOLUME,
    Placement,
    ProjectPlan,
    Raw,
    SecretRef,
    kubernetes_placement,
    project_plan,
    traitlets_config_text,
)
from platform_lib.projects import ProjectSpec, parse_quantity

__all__ = [
    "CHART_DIR",
    "ENV_SECRET",
    "SecretRef",
    "derived_quota",
    "namespace_for",
    "release_name",
    "render_values",
    "secret_refs",
    "shared_catalog_text",
]

CHART_DIR = repo_root() / "helm" / "esdl-project"
#: the hub-side hook inlined into ``hub.extraConfig`` (admins' servers may write read-only team storage)
HUB_HOOKS_FILE = PACKAGE_DIR / "deploy" / "hub_hooks.py"
#: share of a profile's CPU limit that is guaranteed (requested); memory is guaranteed in full
CPU_GUARANTEE_FRACTION = 0.25
#: pods besides user servers and dask clusters: hub, proxy, gateway api, controller, traefik, user-schedulers
#: (their containers: the hub's own resources, LimitRange defaults of 500m and 512Mi for the others)
SYSTEM_PODS = 8
SYSTEM_CPU = 4.5
SYSTEM_MEMORY = 5 * 2**30


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


def secret_refs(spec: ProjectSpec) -> list[SecretRef]:
    """Every secret the release reads: the OAuth client secret and the catalog's credentials.

    >>> from platform_lib.projects import load_project
    >>> [(r.env, r.secret, r.key) for r in secret_refs(load_project("extremes-lab"))][0]
    ('OAUTH_CLIENT_SECRET', 'extremes-lab-github', 'client-secret')
    """
    return project_plan(spec).secret_refs(kubernetes_placement(release_name(spec)))


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


def _dask_allowance(plan: ProjectPlan) -> tuple[float, int, int]:
    """CPU, memory and pods one user may hold in Dask: ``max_workers_per_user`` workers of the largest
    choices across their clusters (cores capped by ``max_cores_per_user``), plus one scheduler per
    cluster (``max_clusters_per_user``)."""
    dask = plan.dask
    clusters = dask.max_clusters_per_user
    cpu, memory = dask.largest_cluster
    extra = clusters - 1  # largest_cluster counts one scheduler
    return (
        cpu + extra * dask.scheduler_cores,
        memory + extra * dask.scheduler_memory,
        dask.max_workers_per_user + clusters,
    )


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
    dask_cpu, dask_mem, dask_pods = _dask_allowance(project_plan(spec))
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


def _limit_range(spec: ProjectSpec, plan: ProjectPlan) -> dict[str, Any]:
    """Per-container defaults (the small system pods) and the maximum: the largest profile or worker."""
    dask = plan.dask
    max_cpu = max([p.cpu for p in spec.profiles] + [max(dask.worker_cores), dask.scheduler_cores])
    max_mem = max(
        [p.memory_bytes for p in spec.profiles] + [max(dask.worker_memory.values()), dask.scheduler_memory]
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
        override: dict[str, Any] = {
            "cpu_limit": float(p.cpu),
            "cpu_guarantee": round(p.cpu * CPU_GUARANTEE_FRACTION, 3),
            "mem_limit": mem,
            "mem_guarantee": mem,
        }
        if p.image is not None:
            # the server's image, so also its dask workers' (JUPYTER_IMAGE_SPEC -> the cluster's image option)
            override["image"] = p.image.ref
        profiles.append(
            {
                "display_name": p.display_name,
                "slug": p.name,
                "description": p.description or f"{p.cpu:g} CPU, {p.memory} memory",
                "default": p.name == default.name,
                "kubespawner_override": override,
            }
        )
    return profiles


def _gateway_config(plan: ProjectPlan) -> str:
    """``gateway.extraConfig``: the policy module's own text (``platform_lib/gateway_policy.py``), then the
    plan's ``DaskPolicy`` settings and what only Kubernetes needs (scheduler size, the dask commands)."""
    dask = plan.dask
    settings = {
        **dask.policy_settings(),
        # distributed >= 2026.6 no longer ships the dask-scheduler/dask-worker scripts
        "KubeClusterConfig.scheduler_cmd": ["dask", "scheduler"],
        "KubeClusterConfig.worker_cmd": ["dask", "worker"],
        "KubeClusterConfig.scheduler_cores": dask.scheduler_cores,
        "KubeClusterConfig.scheduler_cores_limit": dask.scheduler_cores,
        "KubeClusterConfig.scheduler_memory": dask.scheduler_memory,
        "KubeClusterConfig.scheduler_memory_limit": dask.scheduler_memory,
        "DaskGateway.backend_class": Raw("kube_backend_class()"),
    }
    header = f"# ESDL: the dask policy of project {plan.name!r} (platform_lib/gateway_policy.py, then its settings)\n"
    return header + GATEWAY_POLICY_FILE.read_text() + "\n\n" + traitlets_config_text(settings)


def _hub_config(plan: ProjectPlan) -> str:
    """``hub.extraConfig``: the hub hooks module's text (``platform_lib/deploy/hub_hooks.py``) and its settings."""
    mounts = list(plan.dask.admin_writable_mounts)
    return (
        HUB_HOOKS_FILE.read_text()
        + f"\n\nADMIN_WRITABLE_MOUNTS = {mounts!r}\n"
        + "c.KubeSpawner.modify_pod_hook = admin_writable_mounts_hook\n"
    )


def user_server_command(where: Placement) -> list[str]:
    """The user container's command: ``session.py start`` (as the person, in the image's copy of the
    repository) copies the curated notebooks in, links the docs and opens the start page at the first
    start, then runs ``jupyterhub-singleuser`` in its place (KubeSpawner appends the server's options).

    >>> user_server_command(kubernetes_placement("demo"))[:3]
    ['python', '/opt/esdl/src/platform_lib/local/session.py', 'start']
    """
    home = str(PurePosixPath(where.team_dir).parent)  # the team folder is mounted in the home
    return [
        "python", f"{IMAGE_SOURCE_DIR}/platform_lib/local/session.py", "start",
        home, f"{IMAGE_SOURCE_DIR}/notebooks", where.team_dir, f"{IMAGE_SOURCE_DIR}/docs",
        "--", "jupyterhub-singleuser",
    ]  # fmt: skip


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
    plan = project_plan(spec)
    where = kubernetes_placement(release_name(spec))
    image = {"name": spec.image.name, "tag": spec.image.tag}
    team_read_only = spec.storage.team_access == "admins-write"
    refs = plan.secret_refs(where)
    user_secrets = [r.env_var() for r in refs if r.used_by == "users"]
    default = spec.default_profile
    default_mem = _hub_bytes(default.memory_bytes)

    hub: dict[str, Any] = {
        "config": {**plan.login.hub_config(), "KubeSpawner": {"args": plan.server_args}},
        "extraConfig": {"esdl-hooks.py": _hub_config(plan)},
        # the release's own gateway (its traefik Service is named after the release), and the health check's
        # service (z2jh generates its token into the Secret `hub`, key hub.services.esdl-health.apiToken)
        "services": {
            "dask-gateway": {"url": where.gateway_address.removesuffix(GATEWAY_PREFIX)},
            HEALTH_SERVICE: {"display": False},
        },
        "loadRoles": {HEALTH_SERVICE: {"services": [HEALTH_SERVICE], "scopes": HEALTH_SCOPES}},
    }
    hub_env = {r.env: {"valueFrom": r.env_var()["valueFrom"]} for r in refs if r.used_by == "hub"}
    if hub_env:
        hub["extraEnv"] = hub_env

    user_env: dict[str, Any] = dict(plan.user_environment(where))
    user_env.update({e["name"]: {"valueFrom": e["valueFrom"]} for e in user_secrets})
    team_mount = {"name": TEAM_VOLUME, "mountPath": where.team_dir, "readOnly": team_read_only}
    singleuser: dict[str, Any] = {
        "image": image,
        "extraEnv": user_env,
        "profileList": _profile_list(spec),
        "cpu": {"limit": float(default.cpu), "guarantee": round(default.cpu * CPU_GUARANTEE_FRACTION, 3)},
        "memory": {"limit": default_mem, "guarantee": default_mem},
        "storage": {"capacity": spec.storage.home_size, "extraVolumeMounts": {TEAM_VOLUME: team_mount}},
        "cmd": user_server_command(where),
    }

    worker_container: dict[str, Any] = {
        "volumeMounts": [
            dict(team_mount),  # a copy: the dumped values have no YAML anchors
            {"name": "esdl-catalog", "mountPath": "/etc/esdl/catalog", "readOnly": True},
        ]
    }
    if user_secrets:
        worker_container["env"] = user_secrets

    cull = plan.cull
    cull_values: dict[str, Any] = {"enabled": cull.timeout_seconds > 0}
    if cull.timeout_seconds:
        cull_values.update(
            timeout=cull.timeout_seconds, every=cull.every_seconds, maxAge=cull.max_age_seconds
        )

    return {
        "project": {"name": spec.name, "title": spec.title},
        "teamStorage": {"size": spec.storage.team_size, "storageClass": spec.storage.storage_class or ""},
        "catalog": {"shared": shared_catalog_text(shared_catalog), "project": plan.catalog_text(where)},
        "quota": {"enabled": True, **derived_quota(spec)},
        "limitRange": _limit_range(spec, plan),
        "networkPolicy": {"objectStorage": {"ports": _object_storage_ports(spec)}},
        "jupyterhub": {"hub": hub, "singleuser": singleuser, "cull": cull_values},
        "dask-gateway": {
            # traefik reads the routes (and their services and secrets) of this namespace only
            "traefik": {
                "additionalArguments": [f"--providers.kubernetescrd.namespaces={namespace_for(spec)}"]
            },
            "gateway": {
                "extraConfig": {"esdl-policy": _gateway_config(plan)},
                "backend": {
                    "image": image,
                    "environment": plan.worker_environment(where),
                    "worker": {"extraContainerConfig": worker_container},
                },
            },
        },
    }
