"""Many projects on one Kubernetes cluster: three projects rendered with the real upstream subcharts
(``../shared/upstream``, Helm's own engine) must not collide or reach into each other.

- No two releases share the name of a cluster-scoped object (Helm refuses to install an object another
  release owns).
- Each release's dask-gateway has its own ``gateway.dask.org/instance``, and every component that selects
  by it (the gateway's KubeBackend, the controller, traefik) selects only its own release's objects.
- Every object of all three releases is valid Kubernetes (1.30 and the newest schemas, strict) or valid
  against the upstream CRDs.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from platform_lib.deploy.chart import render_manifests, validate_manifests
from platform_lib.deploy.values import namespace_for, release_name, render_values
from platform_lib.plan import gateway_fullname
from platform_lib.projects import load_project, parse_project

#: kinds that are not namespaced (what Kubernetes and the two charts can create)
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "Namespace",
    "PersistentVolume",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
INSTANCE = "gateway.dask.org/instance"


def _third_project():
    return parse_project(
        {
            "name": "vegetation",
            "title": "A third team",
            "admins": ["ada"],
            "members": ["bo"],
            "login": {
                "method": "generic-oauth",
                "client_id": "esdl-hub",
                "client_secret": "secret:vegetation-oidc/client-secret",
                "authorize_url": "https://login.example.org/auth",
                "token_url": "https://login.example.org/token",
                "userdata_url": "https://login.example.org/userinfo",
            },
        }
    )


SPECS = {spec.name: spec for spec in (load_project("demo"), load_project("extremes-lab"), _third_project())}


def render_release(spec, **override) -> list[dict]:
    values = {**render_values(spec), **override}
    return render_manifests(values, release=release_name(spec), namespace=namespace_for(spec), subcharts=True)


@pytest.fixture(scope="module")
def releases() -> dict[str, list[dict]]:
    return {release_name(spec): render_release(spec) for spec in SPECS.values()}


def _labels(doc: dict) -> list[dict]:
    """The labels of an object and of the pods it makes."""
    found = [doc.get("metadata", {}).get("labels") or {}]
    template = doc.get("spec", {}).get("template", {}) if isinstance(doc.get("spec"), dict) else {}
    if isinstance(template, dict) and template.get("metadata"):
        found.append(template["metadata"].get("labels") or {})
    return found


def test_the_release_holds_both_subcharts(releases):
    for docs in releases.values():
        names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert ("Deployment", "hub") in names and ("Service", "proxy-public") in names  # jupyterhub
        assert any(
            kind == "Deployment" and name.startswith("controller-") for kind, name in names
        )  # dask-gateway


def test_no_two_releases_share_a_cluster_scoped_name(releases):
    owners = defaultdict(set)
    for release, docs in releases.items():
        for doc in docs:
            if doc["kind"] in CLUSTER_SCOPED:
                owners[(doc["kind"], doc["metadata"]["name"])].add(release)
    assert owners, "no cluster-scoped objects rendered: the subcharts are missing"
    shared = {key: sorted(rel) for key, rel in owners.items() if len(rel) > 1}
    assert not shared, f"cluster-scoped objects in more than one release: {shared}"
    # each binding grants its role to service accounts of its own release's namespace only
    for release, docs in releases.items():
        namespace = namespace_for(SPECS[release])
        for doc in docs:
            if doc["kind"] == "ClusterRoleBinding":
                assert {s.get("namespace") for s in doc["subjects"]} == {namespace}, doc["metadata"]["name"]


def test_each_release_has_its_own_gateway_instance(releases):
    instances = {}
    for release, docs in releases.items():
        values = {labels[INSTANCE] for doc in docs for labels in _labels(doc) if INSTANCE in labels}
        assert values == {gateway_fullname(release)}, (release, values)
        instances[release] = values.pop()
        configs = "\n".join(
            v for d in docs if d["kind"] == "ConfigMap" for v in (d.get("data") or {}).values()
        )
        # the gateway's KubeBackend and the controller watch DaskClusters of this instance only
        assert f'c.KubeBackend.gateway_instance = "{instances[release]}"' in configs
        assert f"c.KubeController.gateway_instance = '{instances[release]}'" in configs
        # traefik reads the IngressRoutes of this instance only
        args = [a for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
                for a in c.get("args", [])]  # fmt: skip
        selectors = [
            a.split("=", 1)[1] for a in args if a.startswith("--providers.kubernetescrd.labelselector=")
        ]
        assert selectors == [f"{INSTANCE}={instances[release]}"]
        # ... in its own namespace
        watched = [a.split("=", 1)[1] for a in args if a.startswith("--providers.kubernetescrd.namespaces=")]
        assert watched == [namespace_for(SPECS[release])]
    assert len(set(instances.values())) == len(instances)


def test_no_component_of_one_release_selects_another_releases_objects(releases):
    """Every instance selector of one release against every label set of the others (including the
    DaskCluster, scheduler and worker objects their controllers would create)."""
    from dask_gateway_server.backends.kubernetes.controller import KubeController

    labelled = {}
    for release, docs in releases.items():
        controller = KubeController(gateway_instance=gateway_fullname(release), api_url="http://api:8000/api")
        made = [controller.get_labels("c1", c) for c in ("dask-scheduler", "dask-worker")]
        labelled[release] = [labels for doc in docs for labels in _labels(doc)] + made
    for release in releases:
        for other, label_sets in labelled.items():
            matched = [lab for lab in label_sets if lab.get(INSTANCE) == gateway_fullname(release)]
            if other == release:
                assert matched, f"{release}'s selector matches none of its own objects"
            else:
                assert not matched, f"{release}'s gateway would select objects of {other}: {matched[:2]}"


def test_all_three_releases_are_valid_kubernetes(releases):
    docs = [doc for docs in releases.values() for doc in docs]
    assert validate_manifests(docs, versions=["1.30", "1.37"]) == []


def test_a_fixed_gateway_name_would_collide():
    """What the check above guards against: the chart's old fixed name gives every release the same
    ClusterRoles and instance label."""
    fixed = [
        render_release(
            spec,
            **{"dask-gateway": {**render_values(spec)["dask-gateway"], "fullnameOverride": "dask-gateway"}},
        )
        for spec in list(SPECS.values())[:2]
    ]
    roles = [{d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"} for docs in fixed]
    assert "controller-dask-gateway" in roles[0] & roles[1]
