"""The post-renderer of a deploy: the dask-gateway chart's own pods meet Pod Security ``restricted``.

The upstream dask-gateway chart (2026.3.0) sets no security context on its api and controller pods and
only a user on traefik's, and offers no value to add one; every other pod of a release is configured
``restricted`` through values. :func:`harden_gateway_pods` adds what ``restricted`` needs to those three
workloads, filling in only what the chart left unset: ``runAsNonRoot`` with the images' own user 1000
(the dask-gateway-server image's ``USER dask:dask`` is a name, which the kubelet cannot check against
``runAsNonRoot``), the ``RuntimeDefault`` seccomp profile, no privilege escalation, every capability
dropped. So the namespace can enforce ``restricted``.

``esdl project deploy`` runs it as Helm's post-renderer: with Helm 3 the ``esdl-post-render`` command
(``--post-renderer PATH``), with Helm 4 the plugin in ``helm/post-renderer/`` (``--post-renderer
esdl-pod-security``). ``render_manifests(..., subcharts=True)`` applies the same function, so what the
tests check is what a deploy sends.

>>> deployment = {"kind": "Deployment", "metadata": {"name": "api-demo-dask-gateway"}, "spec": {"template": {
...     "metadata": {"labels": {"app.kubernetes.io/name": "dask-gateway"}},
...     "spec": {"containers": [{"name": "gateway", "image": "ghcr.io/dask/dask-gateway-server"}]}}}}
>>> pod = harden_gateway_pods([deployment])[0]["spec"]["template"]["spec"]
>>> pod["securityContext"]["runAsNonRoot"], pod["containers"][0]["securityContext"]["capabilities"]
(True, {'drop': ['ALL']})
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

import yaml

#: the user and group of the upstream images (dask-gateway-server's ``dask``, traefik's as the chart sets)
IMAGE_USER = 1000
#: what selects the workloads this applies to: the upstream dask-gateway subchart's own
GATEWAY_LABEL = ("app.kubernetes.io/name", "dask-gateway")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
#: the Helm 4 plugin (``helm/post-renderer/plugin.yaml``) and the Helm 3 command
PLUGIN_NAME = "esdl-pod-security"
COMMAND = "esdl-post-render"


def _is_gateway_workload(doc: dict[str, Any]) -> bool:
    if doc.get("kind") not in WORKLOADS:
        return False
    labels = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    return labels.get(GATEWAY_LABEL[0]) == GATEWAY_LABEL[1]


def _harden_pod(pod: dict[str, Any]) -> None:
    context = pod.setdefault("securityContext", {}) or {}
    pod["securityContext"] = context
    context.setdefault("runAsNonRoot", True)
    context.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    explicit_user = "runAsUser" in context
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        sc = container.setdefault("securityContext", {}) or {}
        container["securityContext"] = sc
        if not explicit_user:
            sc.setdefault("runAsUser", IMAGE_USER)
            sc.setdefault("runAsGroup", IMAGE_USER)
        sc.setdefault("allowPrivilegeEscalation", False)
        drop = sc.setdefault("capabilities", {}).setdefault("drop", [])
        if "ALL" not in drop:
            drop.append("ALL")


def harden_gateway_pods(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``docs`` with the dask-gateway chart's workloads made ``restricted`` (copies; others unchanged).

    >>> harden_gateway_pods([{"kind": "ConfigMap", "metadata": {"name": "x"}}])
    [{'kind': 'ConfigMap', 'metadata': {'name': 'x'}}]
    """
    out = []
    for doc in docs:
        if doc and _is_gateway_workload(doc):
            doc = copy.deepcopy(doc)
            _harden_pod(doc["spec"]["template"]["spec"])
        out.append(doc)
    return out


def post_render(text: str) -> str:
    """Helm's post-renderer contract: all rendered manifests in (one YAML stream), the same out, changed.

    >>> print(post_render("kind: ConfigMap\\nmetadata: {name: x}\\n"), end="")
    kind: ConfigMap
    metadata:
      name: x
    """
    docs = [d for d in yaml.safe_load_all(text) if d]
    return yaml.safe_dump_all(harden_gateway_pods(docs), sort_keys=False, default_flow_style=False)


def main() -> int:
    """``esdl-post-render``: :func:`post_render` from standard input to standard output."""
    sys.stdout.write(post_render(sys.stdin.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
