"""The chart, rendered by Helm's own engine for every spec in projects/, checked against the real
Kubernetes schemas (kubernetes-validate, strict) and the upstream charts' values schemas
(``<repo>/../shared/upstream``), linted by Helm; its own schema rejects typos."""

from __future__ import annotations

import copy

import pytest
import yaml

from platform_lib.deploy.chart import (
    SUBCHARTS,
    check_values,
    kubernetes_versions,
    lint_chart,
    render_manifests,
    subchart_values,
    upstream_dir,
    validate_manifests,
)
from platform_lib.deploy.release import layer_values
from platform_lib.deploy.values import namespace_for, release_name, render_values
from platform_lib.errors import EsdlError
from platform_lib.paths import repo_root
from platform_lib.projects import list_projects, load_project, parse_project

SPECS = list_projects()


@pytest.fixture(scope="module", params=SPECS)
def rendered(request):
    spec = load_project(request.param)
    values = render_values(spec)
    docs = render_manifests(values, release=release_name(spec), namespace=namespace_for(spec))
    return spec, values, docs


def test_there_are_specs_and_upstream_data():
    assert {"demo", "extremes-lab"} <= set(SPECS)
    up = upstream_dir()
    assert up == repo_root().parent / "shared" / "upstream"
    for folder, _ in SUBCHARTS.values():
        assert (up / folder / "values.schema.yaml").is_file(), f"upstream data missing: {up / folder}"


def test_versions_checked_are_132_and_the_newest():
    versions = kubernetes_versions()
    assert versions[0] == "1.32"
    assert len(versions) == 2 and tuple(map(int, versions[1].split("."))) >= (1, 33)


def test_every_manifest_is_valid_kubernetes(rendered):
    spec, _, docs = rendered
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "LimitRange",
        "NetworkPolicy",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "ResourceQuota",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    assert validate_manifests(docs) == []
    for doc in docs:
        assert doc["metadata"]["labels"]["esdl.io/project"] == spec.name


def test_validation_is_strict_enough_to_fail():
    spec = load_project("demo")
    docs = render_manifests(render_values(spec), release="demo", namespace="esdl-demo")
    quota = copy.deepcopy(next(d for d in docs if d["kind"] == "ResourceQuota"))
    quota["spec"]["hardd"] = quota["spec"].pop("hard")
    problems = validate_manifests([quota])
    assert len(problems) == 2 and all("'hardd' was unexpected" in p for p in problems)


def test_subchart_values_meet_the_upstream_schemas(rendered):
    _, values, _ = rendered
    assert check_values(values) == {"esdl-project": [], "jupyterhub": [], "dask-gateway": []}


def test_subchart_values_are_coalesced_with_upstream_defaults(rendered):
    spec, values, _ = rendered
    hub = subchart_values(values, "jupyterhub")
    # Helm's merge: ours win, upstream defaults fill the rest, nulls drop out
    assert hub["singleuser"]["image"] == {"name": spec.image.name, "tag": spec.image.tag, "pullSecrets": []}
    assert hub["hub"]["db"]["type"] == "sqlite-pvc"  # an upstream default kept
    gateway = subchart_values(values, "dask-gateway")
    assert gateway["gateway"]["auth"]["type"] == "jupyterhub"
    assert gateway["controller"]["enabled"] is True  # an upstream default kept


def test_helm_lint_is_clean(rendered):
    _, values, _ = rendered
    report = lint_chart(values)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("typo", "where"),
    [
        ({"quota": {"enabled": True, "cpuu": "4"}}, "additional properties 'cpuu' not allowed"),
        ({"teamStorage": {"sise": "1Ti"}}, "additional properties 'sise' not allowed"),
        ({"networkPolicy": {"objectStorage": {"ports": [443], "cidr": []}}}, "'cidr' not allowed"),
        ({"catalogue": {}}, "additional properties 'catalogue' not allowed"),
        ({"teamStorage": {"size": "lots"}}, "'lots' does not match pattern"),
        ({"project": {"name": "Team_A"}}, "'Team_A' does not match pattern"),
    ],
)
def test_chart_schema_rejects_typos(typo, where):
    with pytest.raises(EsdlError) as info:
        render_manifests(typo, release="x", namespace="esdl-x")
    assert where in str(info.value)


def test_subchart_typos_are_caught_by_upstream_schemas_and_by_helm_lint():
    bad = {
        "jupyterhub": {"singleuser": {"storage": {"capacityy": "1Gi"}}},
        "dask-gateway": {"gateway": {"auth": {"type": "jupyterhubb"}}},
    }
    problems = check_values(bad)
    assert problems["jupyterhub"] == [
        "jupyterhub.singleuser.storage: Additional properties are not allowed ('capacityy' was unexpected)"
    ]
    assert len(problems["dask-gateway"]) == 1 and "'jupyterhubb' is not one of" in problems["dask-gateway"][0]
    report = lint_chart(bad)
    assert any("capacityy" in e for e in report["errors"])
    assert any("/gateway/auth/type" in e for e in report["errors"])


def test_catalog_configmap_refuses_credentials():
    leaked = {
        "catalog": {
            "project": "sources:\n  x:\n    args:\n      storage_options:\n        secret: AbCdEf123456789\n"
        }
    }
    with pytest.raises(EsdlError, match="catalog.project looks like it holds a credential"):
        render_manifests(leaked, release="x", namespace="esdl-x")


def test_a_gcs_token_mode_is_not_taken_for_a_credential():
    """``token: google_default`` (gcsfs: use the pod's workload identity) passes the spec's secret check
    and the chart's catalog guard, and reaches the catalog as written; a real token does not."""
    spec = parse_project(
        {
            "name": "gcs-team",
            "title": "GCS",
            "admins": ["ada"],
            "catalog": {
                "entries": [
                    {
                        "name": "cube",
                        "urlpath": "gs://bucket/cube.zarr",
                        "storage_options": {"token": "google_default"},
                    }
                ]
            },
        }
    )
    docs = render_manifests(render_values(spec), release="gcs-team", namespace="esdl-gcs-team")
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    assert "token: google_default" in configmap["data"]["project.yaml"]
    leaked = {
        "catalog": {
            "project": "sources:\n  x:\n    args:\n      storage_options:\n        token: ya29.a0AfB_byC1\n"
        }
    }
    with pytest.raises(EsdlError, match="catalog.project looks like it holds a credential"):
        render_manifests(leaked, release="x", namespace="esdl-x")


def test_the_site_values_example_in_the_docs_is_valid(tmp_path):
    """docs/deploy.md's site.yaml, layered over a project's values, passes every schema."""
    import re

    text = (repo_root() / "docs" / "deploy.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("# site.yaml"))
    site = tmp_path / "site.yaml"
    site.write_text(block)
    layered = layer_values(render_values(load_project("extremes-lab")), site)
    assert check_values(layered) == {"esdl-project": [], "jupyterhub": [], "dask-gateway": []}
    hub = subchart_values(layered, "jupyterhub")
    assert hub["proxy"]["https"]["hosts"] == ["extremes-lab.esdl.example.org"]
    assert hub["hub"]["config"]["GitHubOAuthenticator"]["client_id"] == "Iv1.8a61f9b3a7aba766"  # kept


def test_the_chart_lock_pins_the_subcharts_and_helm_accepts_it(tmp_path):
    """Helm's own check (dependency build) finds Chart.lock in sync with Chart.yaml; it then fails only
    where it would download the subcharts (no network here), and a wrong digest is refused."""
    import shutil

    import helm_python

    from platform_lib.deploy.chart import CHART_DIR, SUBCHARTS, chart_lock

    committed = (CHART_DIR / "Chart.lock").read_text()
    assert committed == chart_lock(), "Chart.lock is stale: run `make chart-lock`"
    locked = {d["name"]: d["version"] for d in yaml.safe_load(committed)["dependencies"]}
    assert locked == {name: version for name, (_, version) in SUBCHARTS.items()}
    for digest, out_of_sync in ((None, False), ("sha256:" + "0" * 64, True)):
        chart = tmp_path / f"chart-{out_of_sync}"
        shutil.copytree(CHART_DIR, chart)
        if digest:
            lock = yaml.safe_load(committed)
            (chart / "Chart.lock").write_text(yaml.safe_dump({**lock, "digest": digest}, sort_keys=False))
        with pytest.raises(helm_python.HelmError) as caught:
            helm_python.dependency_build(str(chart), skip_refresh=True)
        assert ("out of sync" in str(caught.value)) is out_of_sync, caught.value
