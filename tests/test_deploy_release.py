"""``esdl project render | deploy | diff | delete``: the files, the refusals, the plan; and against a live
cluster only when KUBECONFIG points at one (skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest
import yaml

from platform_lib.cli import main
from platform_lib.deploy.chart import validate_manifests
from platform_lib.deploy.release import delete, deploy, diff, helm_commands, write_release
from platform_lib.deploy.values import ENV_SECRET, namespace_for, render_values
from platform_lib.errors import EsdlError
from platform_lib.projects import load_project

GOOD = {
    "name": "tiny",
    "title": "Tiny project",
    "admins": ["ada"],
    "members": ["bo"],
    "profiles": [{"name": "small", "display_name": "Small", "cpu": 1, "memory": "2Gi", "default": True}],
}


@pytest.fixture()
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("ESDL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture()
def no_cluster(tmp_path, monkeypatch):
    """No kubeconfig and no helm on PATH: what this machine and CI have."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv(
        "PATH",
        os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "helm").exists()),
    )


def write_spec(folder: Path, data: dict) -> Path:
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_render_writes_private_files_that_match_the_spec(state, capsys):
    assert main(["project", "render", "extremes-lab"]) == 0
    out = capsys.readouterr().out
    folder = state / "deploy" / "extremes-lab"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("values.yaml", "namespace.yaml", "manifests.yaml"):
        assert f"{folder / name}" in out
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    spec = load_project("extremes-lab")
    assert yaml.safe_load((folder / "values.yaml").read_text()) == render_values(spec)
    namespace = yaml.safe_load((folder / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == "esdl-extremes-lab"
    manifests = list(yaml.safe_load_all((folder / "manifests.yaml").read_text()))
    assert validate_manifests([namespace, *manifests]) == []
    assert {d["kind"] for d in manifests} >= {"ResourceQuota", "PersistentVolumeClaim", "NetworkPolicy"}


def test_render_check_and_dry_run(state, capsys):
    assert main(["project", "render", "demo", "--check", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "checked 9 manifests and the values of 3 charts: 0 problem(s)" in out
    assert yaml.safe_load(out.split("problem(s)\n", 1)[1])["project"]["name"] == "demo"
    assert not (state / "deploy" / "demo").exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"login": {"method": "github", "client_id": "Iv1.abc", "client_secret": "hunter2-is-my-secret"}},
            "login.client_secret: looks like a plaintext secret; allowed: a reference 'env:VARIABLE' or"
            " 'secret:SECRET-NAME/KEY'",
        ),
        (
            {"profiles": [{"name": "small", "display_name": "Small", "cpus": 1, "memory": "2Gi"}]},
            "profiles[0].cpus: unknown field. Did you mean 'cpu'?",
        ),
        (
            {"profiles": [{"name": "gpu", "display_name": "GPU", "cpu": 1, "memory": "2Gi", "gpu": 1}]},
            "profiles[0].gpu: unknown field.",
        ),
        ({"quota": {"cpu": 4}}, "is above quota.cpu of 4; lower dask.max_workers_per_user"),
        (
            {"quota": {"cpu": 64, "memory": "1Gi"}},
            "profiles[0].memory: 2Gi is above the project's quota.memory of 1Gi",
        ),
        ({"name": "Team_A"}, "name: 'Team_A' is not DNS-safe"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message_and_nothing_written(
    state, tmp_path, capsys, change, message
):
    data = {**GOOD, **change}
    path = write_spec(tmp_path, data)
    assert main(["project", "render", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("esdl: error: ") and "is not a valid project spec" in err
    assert not (state / "deploy").exists()


def test_deploy_dry_run_without_cluster_or_helm_prints_the_plan(state, no_cluster, capsys):
    assert main(["project", "deploy", "demo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no Kubernetes cluster configured" in out and "skipping the cluster checks" in out
    values = state / "deploy" / "demo" / "values.yaml"
    chart = state / "deploy" / "demo" / "chart"
    assert f"helm upgrade --install demo {chart} --namespace esdl-demo --values {values}" in out
    assert "--dry-run=client" in out
    assert (chart / "Chart.yaml").is_file() and not (chart / "charts").exists()


def test_deploy_without_helm_or_cluster_is_a_clear_error(state, no_cluster):
    with pytest.raises(EsdlError, match="no Kubernetes cluster configured"):
        deploy(load_project("demo"), out=lambda _: None)


def test_deploy_needs_the_env_references_and_never_writes_them(state, no_cluster):
    spec = load_project("extremes-lab")
    with pytest.raises(EsdlError, match="EXTREMES_LAB_S3_KEY, EXTREMES_LAB_S3_SECRET"):
        deploy(spec, dry_run=True, environ={}, out=lambda _: None)
    secret_value = f"not-in-any-file-{uuid.uuid4().hex}"
    lines: list[str] = []
    environ = {"EXTREMES_LAB_S3_KEY": secret_value, "EXTREMES_LAB_S3_SECRET": secret_value}
    assert deploy(spec, dry_run=True, environ=environ, out=lines.append) == 0
    for path in (state / "deploy").rglob("*"):
        if path.is_file():
            assert secret_value not in path.read_text(errors="replace"), path
    assert not any(secret_value in line for line in lines)


def test_extra_values_files_are_layered_and_must_exist(state, no_cluster, tmp_path):
    spec = load_project("demo")
    extra = tmp_path / "site.yaml"
    extra.write_text("jupyterhub:\n  proxy:\n    service:\n      type: NodePort\n")
    upgrade = helm_commands(spec, "values.yaml", [extra])[-1]
    assert upgrade[upgrade.index("values.yaml") + 1 :][:2] == ["--values", str(extra)]
    with pytest.raises(EsdlError, match="--values .*missing.yaml: no such file"):
        deploy(spec, dry_run=True, extra_values=[tmp_path / "missing.yaml"], out=lambda _: None)


def test_diff_without_a_cluster_compares_nothing_and_exits_2(state, no_cluster, tmp_path, capsys):
    path = write_spec(tmp_path, GOOD)
    write_release(load_project(path))
    assert main(["project", "diff", str(path)]) == 2
    out = capsys.readouterr().out
    assert "cannot read the cluster" in out and "nothing was compared" in out and "no changes" not in out
    assert f"esdl project diff {load_project(path).name} --last-render" in out


def test_manifest_changes_name_each_object_and_ignore_generated_secret_values():
    from platform_lib.deploy.chart import render_manifests
    from platform_lib.deploy.release import manifest_changes

    spec = load_project("demo")
    docs = render_manifests(render_values(spec), release="demo", namespace="esdl-demo", subcharts=True)
    again = render_manifests(render_values(spec), release="demo", namespace="esdl-demo", subcharts=True)
    hub_secret = lambda d: d["kind"] == "Secret" and d["metadata"]["name"] == "hub"  # noqa: E731
    assert [d["data"] for d in docs if hub_secret(d)] != [d["data"] for d in again if hub_secret(d)]  # random
    deployed = yaml.safe_dump_all(docs)
    assert manifest_changes(deployed, again) == []
    bigger = {**render_values(spec), "quota": {"cpu": "99"}}
    changed = render_manifests(bigger, release="demo", namespace="esdl-demo", subcharts=True)
    assert manifest_changes(deployed, changed) == ["changed ResourceQuota/esdl-project-quota"]
    assert manifest_changes(deployed, changed[1:])[0].startswith("removed ")


def test_diff_with_the_last_render(state, no_cluster, tmp_path, capsys):
    data = {**GOOD, "quota": {"cpu": 64, "memory": "128Gi"}}
    path = write_spec(tmp_path, data)
    with pytest.raises(EsdlError, match="no earlier render"):
        diff(load_project(path), last_render=True, out=lambda _: None)
    write_release(load_project(path))
    assert main(["project", "diff", str(path), "--last-render"]) == 0
    assert "no changes" in capsys.readouterr().out
    write_spec(tmp_path, {**data, "title": "Tiny project, renamed", "quota": {"cpu": 96, "memory": "128Gi"}})
    assert main(["project", "diff", str(path), "--last-render"]) == 1
    out = capsys.readouterr().out
    assert "-  title: Tiny project\n+  title: Tiny project, renamed" in out
    assert "-  cpu: '64'\n+  cpu: '96'" in out
    # site values given to deploy (-f) are layered the same way for diff
    write_release(load_project(path))
    site = tmp_path / "site.yaml"
    site.write_text("jupyterhub:\n  proxy:\n    service:\n      type: NodePort\n")
    assert (
        main(["project", "diff", str(path), "-f", str(site), "--last-render"]) == 0
    )  # the render gets it too
    assert "no changes" in capsys.readouterr().out
    assert diff(load_project(path), extra_values=[site], against=render_values(load_project(path))) == 1
    site.write_text("- not a mapping\n")
    with pytest.raises(EsdlError, match="must be a mapping of values, not a list"):
        diff(load_project(path), extra_values=[site], last_render=True)


def test_delete_dry_run_without_helm_names_the_command_and_keeps_team_storage(no_cluster):
    lines: list[str] = []
    assert delete(load_project("demo"), dry_run=True, out=lines.append) == 0
    text = "\n".join(lines)
    assert "helm uninstall demo --namespace esdl-demo --wait --dry-run" in text
    assert "team storage claim in esdl-demo is kept" in text
    with pytest.raises(EsdlError, match="helm CLI is not on PATH"):
        delete(load_project("demo"), out=lambda _: None)


# ---------------------------------------------------------------------------------------------------------
# a live cluster


def _cluster_reason() -> str | None:
    """Why the live-cluster test cannot run here, naming exactly what it needs; None when it can."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not all(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p):
        return (
            "needs a live Kubernetes cluster: KUBECONFIG pointing at a kubeconfig file, the helm CLI on PATH,"
            " a ReadWriteMany StorageClass (ESDL_TEST_STORAGE_CLASS or the default) and nodes reachable from"
            " here on NodePorts"
        )
    if shutil.which("helm") is None:
        return "needs the helm CLI on PATH to install the releases"
    try:
        import kubernetes

        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().list_namespace(limit=1, _request_timeout=10)
        classes = kubernetes.client.StorageV1Api().list_storage_class().items
    except Exception as exc:  # noqa: BLE001 - any failure means there is no usable cluster
        return f"needs a live Kubernetes cluster: the one in KUBECONFIG does not answer ({exc.__class__.__name__})"
    from platform_lib.deploy.storage_check import team_storage_plan

    api = kubernetes.client.ApiClient()
    plan = team_storage_plan(
        [api.sanitize_for_serialization(c) for c in classes], os.environ.get("ESDL_TEST_STORAGE_CLASS")
    )
    if plan.problems:
        return f"needs a ReadWriteMany StorageClass (set ESDL_TEST_STORAGE_CLASS): {plan.problems[0]}"
    return None


def _node_url(core, namespace: str) -> str:
    """The hub through the proxy-public NodePort of the first node's internal address."""
    service = core.read_namespaced_service("proxy-public", namespace)
    port = next(p.node_port for p in service.spec.ports if p.node_port)
    node = core.list_node().items[0]
    address = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    return f"http://{address}:{port}"


@pytest.mark.cluster
@pytest.mark.skipif(_cluster_reason() is not None, reason=str(_cluster_reason()))
def test_two_projects_deploy_pass_health_and_one_is_deleted_without_touching_the_other(
    state, tmp_path, monkeypatch
):
    import kubernetes

    from platform_lib.health import check_health, kubernetes_target

    run = uuid.uuid4().hex[:6]
    monkeypatch.setenv("ESDL_PROJECTS_DIR", str(tmp_path))
    site = tmp_path / "site.yaml"
    site.write_text("jupyterhub:\n  proxy:\n    service:\n      type: NodePort\n")
    storage = {"team_size": "1Gi", "home_size": "1Gi"}
    if os.environ.get("ESDL_TEST_STORAGE_CLASS"):
        storage["storage_class"] = os.environ["ESDL_TEST_STORAGE_CLASS"]
    specs = []
    for part in ("a", "b"):
        name = f"esdl-test-{run}-{part}"
        write_spec(tmp_path, {**GOOD, "name": name, "storage": storage})
        specs.append(load_project(name))
    core = kubernetes.client.CoreV1Api()
    try:
        for spec in specs:
            assert deploy(spec, dry_run=True, extra_values=[site]) == 0
            assert deploy(spec, extra_values=[site]) == 0
            assert core.read_namespace(namespace_for(spec)).metadata.labels["esdl.io/project"] == spec.name
            assert diff(spec, extra_values=[site]) == 0  # nothing to change right after a deploy
        urls = {spec.name: _node_url(core, namespace_for(spec)) for spec in specs}
        for spec in specs:
            assert check_health(kubernetes_target(spec, url=urls[spec.name])) == 0
        assert delete(specs[0], delete_namespace=True) == 0
        assert (
            check_health(kubernetes_target(specs[1], url=urls[specs[1].name])) == 0
        )  # the other still works
    finally:
        for spec in specs:
            delete(spec, delete_namespace=True)
    assert ENV_SECRET == "esdl-env"


def test_helm_versions_and_the_crds_a_deploy_applies(tmp_path):
    import tarfile

    from platform_lib.deploy.chart import umbrella_chart
    from platform_lib.deploy.release import chart_crds, check_helm_version

    assert check_helm_version("v3.8.0") == (3, 8) and check_helm_version("v4.0.1\n") == (4, 0)
    for bad in ("v3.7.2", "v2.17.0", "", "garbage", "v5.0.0"):
        with pytest.raises(EsdlError, match="install helm 3.8 or newer"):
            check_helm_version(bad)
    unpacked = chart_crds(umbrella_chart(tmp_path / "chart"))
    groups = {c["spec"]["group"] for c in unpacked}
    assert groups == {"gateway.dask.org", "traefik.io"}
    # what `helm dependency build` leaves: the subcharts as archives
    charts = tmp_path / "built" / "charts"
    charts.mkdir(parents=True)
    with tarfile.open(charts / "dask-gateway-2026.3.0.tgz", "w:gz") as tar:
        tar.add(tmp_path / "chart" / "charts" / "dask-gateway", arcname="dask-gateway")
    archived = chart_crds(tmp_path / "built")
    assert [c["metadata"]["name"] for c in archived] == [c["metadata"]["name"] for c in unpacked]
