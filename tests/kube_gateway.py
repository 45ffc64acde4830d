"""A real dask-gateway server with the chart's gateway config and dask-gateway-server's ``KubeBackend``,
where only the Kubernetes API server and the scheduler pods are in memory (no cluster exists here).

``gateway_config(text)`` executes the dask-gateway chart's own ``dask_gateway_config.py`` as rendered in a
release (:func:`chart_gateway_config`): the chart's forwarding of its values to traitlets, then our
``gateway.extraConfig`` (the policy module ``platform_lib/gateway_policy.py`` inlined, and its settings).

Run as a script (``python tests/kube_gateway.py dask_gateway_config.py HOST:PORT``) it starts
``DaskGateway`` with that config, users authenticated by dask-gateway's ``SimpleAuthenticator`` (basic auth, any password),
and the backend the rendered config chose, built on :class:`InMemoryKubeBackend`: the real
``KubeBackend`` code (its ``start_cluster``, ``stop_cluster``, ``on_cluster_heartbeat``, informer
cache and ``sync_cluster``), with DaskCluster objects and their credentials Secrets kept in memory, and a
scheduler that answers a scale request with the heartbeat a real scheduler sends.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from traitlets.config import Config


def chart_gateway_config(docs: list[dict[str, Any]], fullname: str) -> str:
    """The dask-gateway chart's own ``dask_gateway_config.py`` from a rendered release (its ConfigMap
    ``api-<fullname>``): the values it received, its forwarding of them to traitlets, our extraConfig."""
    configmap = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"api-{fullname}"
    )
    return configmap["data"]["dask_gateway_config.py"]


def gateway_config(config_py: str) -> tuple[Config, dict[str, Any]]:
    """Execute the chart's gateway config as the gateway does; return the config and the namespace the
    file ran in (the inlined policy module's functions are there)."""
    c = Config()
    namespace: dict[str, Any] = {
        "c": c,
        "get_config": lambda: c,
        "__file__": "/etc/dask-gateway/dask_gateway_config.py",
    }
    path = list(sys.path)
    try:
        exec(compile(config_py, "dask_gateway_config.py", "exec"), namespace)
    finally:
        sys.path[:] = path  # the file puts its own folder first on sys.path
    return c, namespace


def _in_memory_backend_class() -> type:
    from dask_gateway_server.backends.base import Backend, PublicException
    from dask_gateway_server.backends.kubernetes import KubeBackend
    from dask_gateway_server.backends.kubernetes.utils import Informer
    from dask_gateway_server.models import ClusterStatus
    from dask_gateway_server.utils import Flag
    from dask_gateway_server.workqueue import WorkQueue

    class InMemoryKubernetes:
        """The calls KubeBackend makes to the API server, on DaskCluster objects and Secrets in memory.
        A created cluster is Running at once, as the controller reports it once its scheduler pod runs."""

        def __init__(self, informer: Any) -> None:
            self.informer = informer
            self.objects: dict[tuple[str, str], dict[str, Any]] = {}
            self.secrets: dict[tuple[str, str], dict[str, str]] = {}

        async def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            obj = copy.deepcopy(body)
            name = obj["metadata"]["name"]
            obj["metadata"].update(namespace=namespace, creationTimestamp="2026-12-04T00:00:00Z")
            obj["spec"].setdefault("replicas", 0)
            obj["status"] = {"phase": "Running", "service": f"dask-{name}", "credentials": f"dask-{name}"}
            b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
            self.secrets[(namespace, f"dask-{name}")] = {
                "dask.crt": b64("cert"),
                "dask.pem": b64("key"),
                "api-token": b64(f"token-{name}"),
            }
            self.objects[(namespace, name)] = obj
            self.informer.handle(copy.deepcopy(obj), "ADDED")
            return obj

        async def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
            obj = self.objects[(namespace, name)]
            for op in body:
                assert op["op"] == "add" and op["path"].startswith("/spec/"), op
                obj["spec"][op["path"].removeprefix("/spec/")] = op["value"]
            if obj["spec"].get("active") is False:
                obj["status"].update(phase="Stopped", completionTime="2026-12-04T00:01:00Z")
            self.informer.handle(copy.deepcopy(obj), "MODIFIED")
            return obj

        async def read_namespaced_secret(self, name, namespace):
            return SimpleNamespace(data=self.secrets[(namespace, name)])

    class InMemoryKubeBackend(KubeBackend):
        """KubeBackend whose API server is :class:`InMemoryKubernetes` (``setup`` as upstream's, but for
        loading a kubeconfig) and whose schedulers answer a scale request with a heartbeat."""

        async def setup(self, app):
            await Backend.setup(self, app)
            self.cluster_waiters = defaultdict(Flag)
            self.clusters = {}
            self.username_to_clusters = defaultdict(dict)
            self.queue = WorkQueue()
            self.informer = Informer(
                parent=self, name="cluster", on_update=self.on_cluster_event, on_delete=self.on_cluster_event
            )
            self.informer.cache = {}
            self.custom_client = self.core_client = self.kubernetes = InMemoryKubernetes(self.informer)
            self.sync_task = asyncio.ensure_future(self.sync_clusters_loop())

        async def cleanup(self):
            self.queue.close()
            await self.sync_task
            await Backend.cleanup(self)

        async def forward_message_to_scheduler(self, cluster, msg):
            if cluster.status != ClusterStatus.RUNNING:  # as Backend.forward_message_to_scheduler
                raise PublicException(f"cluster {cluster.name} is not running")
            if msg.get("op") == "scale":
                # the scheduler's next heartbeat reports the new target
                heartbeat = {
                    "count": msg["count"],
                    "active_workers": [],
                    "closing_workers": [],
                    "closed_workers": [],
                }
                await self.on_cluster_heartbeat(cluster.name, heartbeat)

    return InMemoryKubeBackend


def main(config_file: str, address: str) -> None:
    from dask_gateway_server.app import DaskGateway

    c, namespace = gateway_config(Path(config_file).read_text())
    c.DaskGateway.backend_class = namespace["kube_backend_class"](_in_memory_backend_class())
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
    c.DaskGateway.address = address
    c.KubeBackend.gateway_instance = "conformance"
    # the in-memory API server stands in for KubeBackend.setup's connection, watched namespace included
    # (tests/test_gateway_namespace.py checks the real setup's namespaced watch)
    c.ProjectKubeBackend.own_namespace_only = False
    c.KubeClusterConfig.namespace = "esdl-conformance"
    app = DaskGateway(config=c)
    app.initialize([])
    app.start()


if __name__ == "__main__":
    main(*sys.argv[1:])
