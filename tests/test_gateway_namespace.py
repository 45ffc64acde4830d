"""The Kubernetes gateway watches its own namespace only, so a Role there is all its account needs.

The real ``setup`` of the policy's KubeBackend runs against an HTTP endpoint that answers as the
Kubernetes API server does for the one namespaced list it should make (an empty DaskCluster list) and
refuses everything else with 403, as a namespaced Role would; the test records what was asked. (No API
server can run on this machine; only the answers are stood in, the client code is the real one.)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import kube_gateway
from aiohttp import web
from test_helm_releases import SPECS

from platform_lib.deploy.chart import render_manifests
from platform_lib.deploy.values import namespace_for, release_name, render_values
from platform_lib.plan import gateway_fullname
from platform_lib.projects import load_project


async def _watch_requests(backend_class, config, namespace: str, kubeconfig: Path) -> list[str]:
    asked: list[str] = []
    own = f"/apis/gateway.dask.org/v1alpha1/namespaces/{namespace}/daskclusters"

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path_qs)
        if request.path != own:
            return web.json_response({"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403)
        if request.query.get("watch") in ("true", "1", "True"):
            await asyncio.sleep(0.5)  # a watch with no events, then the server closes it
            return web.Response(text="")
        return web.json_response(
            {"kind": "DaskClusterList", "metadata": {"resourceVersion": "1"}, "items": []}
        )

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }))  # fmt: skip
    config.KubeClusterConfig.namespace = namespace
    backend = backend_class(config=config)
    try:
        await asyncio.wait_for(backend.setup(web.Application()), 30)
        await asyncio.sleep(1.0)  # the informer's watch after its list
    finally:
        await backend.cleanup()
        await runner.cleanup()
    return asked


def test_the_gateway_lists_and_watches_only_its_own_namespace(tmp_path, monkeypatch):
    from kubernetes_asyncio.config import kube_config

    spec = load_project("demo")
    docs = render_manifests(
        render_values(spec), release=release_name(spec), namespace=namespace_for(spec), subcharts=True
    )
    config, _ = kube_gateway.gateway_config(
        kube_gateway.chart_gateway_config(docs, gateway_fullname(release_name(spec)))
    )
    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))  # read at import time
    asked = asyncio.run(
        _watch_requests(config.DaskGateway.backend_class, config, namespace_for(spec), kubeconfig)
    )
    own = f"/apis/gateway.dask.org/v1alpha1/namespaces/{namespace_for(spec)}/daskclusters"
    assert asked, "the gateway asked nothing"
    assert all(path.startswith(own) for path in asked), asked
    assert any("watch=" in path for path in asked)  # listed, then watched, in its namespace
    selectors = {tuple(parse_qs(urlsplit(path).query)["labelSelector"]) for path in asked}
    assert selectors == {(f"gateway.dask.org/instance={gateway_fullname('demo')}",)}  # its own instance only


def test_the_gateway_account_has_a_role_in_its_namespace_and_no_cluster_role():
    for name, spec in SPECS.items():
        docs = render_manifests(
            render_values(spec), release=name, namespace=namespace_for(spec), subcharts=True
        )
        api = next(
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"] == f"api-{gateway_fullname(name)}"
        )
        account = api["spec"]["template"]["spec"]["serviceAccountName"]
        binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["subjects"][0]["name"] == account)
        assert (
            binding["subjects"][0]["namespace"] == namespace_for(spec)
            and binding["roleRef"]["kind"] == "Role"
        )
        role = next(
            d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == binding["roleRef"]["name"]
        )
        granted = {
            (g, r, v)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }
        # what KubeBackend calls: its informer (list, watch), start/stop (create, patch), credentials (get)
        assert {("gateway.dask.org", "daskclusters", "*"), ("", "secrets", "get")} == granted
        cluster_wide = [
            d["metadata"]["name"] for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
        ]
        assert not any(n.startswith("api-") for n in cluster_wide), cluster_wide
        assert all(
            not any(s.get("name") == account for s in d.get("subjects", []))
            for d in docs
            if d["kind"] == "ClusterRoleBinding"
        )
