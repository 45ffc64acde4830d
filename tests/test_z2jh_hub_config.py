"""z2jh's own hub config (``files/hub/jupyterhub_config.py`` of jupyterhub-chart 4.4.0) run against what
our chart renders, with the hub image's versions (JupyterHub 5.5, ``tests/hub/requirements.txt``):
who may log in, who is admin, whether a name outside the spec can sign up or log in.

The hub pod's file system is built from the rendered release the way the kubelet would: the hub
Deployment's volume mounts of the ``hub`` ConfigMap and Secret, its environment (Secret references
resolved, Service variables as Kubernetes sets them), then mounted at ``/usr/local/etc`` in a private
mount namespace (``unshare``; root is how CI runs).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_helm_releases import SPECS

from platform_lib.deploy.chart import render_manifests
from platform_lib.deploy.values import namespace_for, release_name, render_values
from platform_lib.plan import HEALTH_SCOPES

HERE = Path(__file__).resolve().parent
HUB_PYTHON = HERE.parent / ".venv-hub" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="mounting the hub pod's files at /usr/local/etc needs root and unshare (CI runs as root)",
)


def _data(doc: dict) -> dict[str, str]:
    if doc["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    return dict(doc.get("data") or {})


def hub_pod(docs: list[dict], root: Path) -> dict[str, str]:
    """Write the hub container's mounted files under ``root`` (as if it were ``/``); return its environment."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployment = objects[("Deployment", "hub")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            files = _data(objects[("ConfigMap", volume["configMap"]["name"])])
        elif "secret" in volume:
            files = _data(objects[("Secret", volume["secret"]["secretName"])])
        else:
            continue  # the database volume: the hub's working folder
        target = root / mount["mountPath"].lstrip("/")
        if mount.get("subPath"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[mount["subPath"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            for key, text in files.items():
                (target / key).write_text(text)
    env = {"PATH": os.environ["PATH"]}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            secret = objects.get(("Secret", ref["name"]))
            # a Secret the admin creates (the OAuth client secret) is not rendered: any value stands in
            env[var["name"]] = _data(secret)[ref["key"]] if secret else f"value-of-{ref['name']}-{ref['key']}"
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = {"metadata.namespace": deployment["metadata"].get("namespace", "esdl")}.get(
                var["valueFrom"]["fieldRef"]["fieldPath"], "hub-0"
            )
    for (kind, name), service in objects.items():  # what the kubelet sets for every Service
        if kind == "Service" and service["spec"].get("ports"):
            prefix = name.upper().replace("-", "_")
            env[f"{prefix}_SERVICE_HOST"] = "10.0.0.10"
            env[f"{prefix}_SERVICE_PORT"] = str(service["spec"]["ports"][0]["port"])
            for port in service["spec"]["ports"]:
                if port.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
    return env


def run_hub(spec, tmp_path: Path, member: str, outsider: str) -> dict:
    docs = render_manifests(
        render_values(spec), release=release_name(spec), namespace=namespace_for(spec), subcharts=True
    )
    root = tmp_path / "pod"
    env = hub_pod(docs, root)
    work = tmp_path / "srv"
    work.mkdir()
    script = f'mount --bind {root / "usr/local/etc"} /usr/local/etc && exec {HUB_PYTHON} {HERE / "hub" / "probe.py"} "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "probe", member, outsider],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_only_the_specs_people_log_in_and_its_admins_are_admins(name, tmp_path):
    spec = SPECS[name]
    member = (spec.members or spec.admins)[0]
    report = run_hub(spec, tmp_path, member, "mallory")
    assert report["jupyterhub"].startswith("5.5.")
    assert report["allowed_users"] == sorted(spec.users)
    assert report["admin_users"] == sorted(spec.admins)
    assert report["allow_all"] is False
    assert report["allow_existing_users"] is False  # someone removed from the spec loses access
    assert report["member_allowed"] is True
    culler = ["jupyterhub-idle-culler"] if spec.servers.cull_idle_minutes else []
    assert report["services"] == ["dask-gateway", "esdl-health", *culler]
    # the health check's service reaches its own user only (esdl project health)
    assert report["service_scopes"]["esdl-health"] == sorted(HEALTH_SCOPES)
    assert report["modify_pod_hook"] == "admin_writable_mounts_hook"
    assert "access:services!service=dask-gateway" in report["server_token_scopes"]
    admins = {user for user, admin in report["users"].items() if admin}
    assert admins == set(spec.admins)
    if spec.login.method == "native":
        assert report["authenticator"] == "NativeAuthenticator"
        # the sign-up page is routed but closed: 404 to a visit and to a form post with a valid xsrf token
        assert report["signup_pages"] == {"login": 200, "get": 404, "post": 404}
        assert report["outsider_login"] is None  # even an account made behind its back cannot log in
    if spec.login.method != "github":  # GitHub checks organisation membership against GitHub itself
        assert report["outsider_allowed"] is False
