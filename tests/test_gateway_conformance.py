"""One dask policy, two backends: the same requests from the real ``dask_gateway`` client get the same
answers from the embedded platform's gateway (real processes: ``esdl up``, hub login, local clusters)
and from the Kubernetes gateway (a real ``DaskGateway`` server running the chart's rendered gateway
config with dask-gateway-server's ``KubeBackend``; only the API server and the scheduler pods are in
memory, ``tests/kube_gateway.py``; the config is the dask-gateway chart's own ``dask_gateway_config.py``
as rendered with the real subchart).

The project: two clusters and four workers per user, at most six worker cores per user.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kube_gateway
import pytest
from platform_helpers import PlatformEnv, small_spec

from platform_lib.deploy.chart import render_manifests
from platform_lib.deploy.values import namespace_for, release_name, render_values
from platform_lib.gateway import close_gateway, open_gateway
from platform_lib.local.client import HubClient
from platform_lib.local.layout import free_port
from platform_lib.plan import gateway_fullname
from platform_lib.projects import parse_project

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SPEC = small_spec(
    "conform",
    ["ada"],
    ["bo"],
    dask={
        "max_clusters_per_user": 2,
        "max_workers_per_user": 4,
        "max_cores_per_user": 6,
        "worker_cores": {"choices": [1, 2], "default": 1},
        "worker_memory": {"choices": ["1Gi", "2Gi"], "default": "1Gi"},
        "idle_timeout_minutes": 10,
    },
)

GatewayFor = Callable[[str], object]


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run_policy_cases(gateway_for: GatewayFor) -> list[tuple[str, str]]:
    """The same requests against one backend; returns (step, outcome) pairs, outcome ``ok`` or the
    refusal the client raised."""
    from dask_gateway.client import ClusterStatus

    ada, bo = gateway_for("ada"), gateway_for("bo")
    results: list[tuple[str, str]] = []

    def step(name: str, call: Callable[[], object]) -> object:
        try:
            value = call()
        except Exception as exc:  # the refusal is the outcome
            results.append((name, f"refused: {exc}"))
            return None
        results.append((name, "ok"))
        return value

    def new_cluster(gw, **options) -> str | None:
        name = step(f"new cluster {options}", lambda: gw.submit(**options))
        if name:
            _wait(lambda: gw.get_cluster(name).status == ClusterStatus.RUNNING, f"cluster {name} running")
        return name

    options = ada.sync(ada._request, "GET", f"{ada.address}/api/v1/options")
    spec = ada.sync(options.json)["cluster_options"]
    results.append(("options", json.dumps(spec, sort_keys=True)))

    first = new_cluster(ada)
    step("ada scales her first cluster to 2", lambda: ada.scale_cluster(first, 2))
    second = new_cluster(ada)
    step("ada scales her second cluster to 2", lambda: ada.scale_cluster(second, 2))
    new_cluster(ada)  # a third: refused
    step("ada scales her second cluster to 3", lambda: ada.scale_cluster(second, 3))
    # options: refused before anything starts (bo has no cluster yet)
    new_cluster(bo, worker_cores=8)
    new_cluster(bo, worker_cores="2")
    new_cluster(bo, worker_memory="64Gi")
    new_cluster(bo, idle_timeout_minutes=11)
    new_cluster(bo, image="docker.io/someone/miner:latest")
    new_cluster(bo, gpus=1)
    # ada's clusters do not count against bo; cores are counted across bo's clusters
    big = new_cluster(bo, worker_cores=2)
    step("bo scales a 2-core cluster to 3", lambda: bo.scale_cluster(big, 3))
    other = new_cluster(bo, worker_cores=2, idle_timeout_minutes=5)
    step("bo scales another 2-core cluster to 1", lambda: bo.scale_cluster(other, 1))
    # a stopped cluster frees its workers
    step("ada stops her first cluster", lambda: ada.stop_cluster(first))
    _wait(lambda: len(ada.list_clusters()) == 1, "ada's first cluster stopped")
    step("ada scales her second cluster to 4", lambda: ada.scale_cluster(second, 4))
    third = new_cluster(ada)
    step("ada scales her new cluster to 1", lambda: ada.scale_cluster(third, 1))
    for gw in (ada, bo):
        for cluster in gw.list_clusters():
            gw.stop_cluster(cluster.name)
    return results


@pytest.fixture(scope="module")
def local_gateways(tmp_path_factory) -> Iterator[GatewayFor]:
    """The embedded platform of SPEC (``esdl up``), and a gateway client per person (hub login)."""
    penv = PlatformEnv.create(tmp_path_factory.mktemp("conform-local"))
    penv.write_spec(SPEC)
    penv.esdl("up", "--project", "conform", "--port", "0")
    try:
        opened = contextlib.ExitStack()
        ports = penv.layout("conform").saved_ports()

        def gateway_for(user: str):
            hub = HubClient(penv.url("conform"))
            hub.login(user, penv.password("conform", user))
            gw = open_gateway(
                f"{penv.url('conform')}/services/dask-gateway",
                proxy_address=f"gateway://127.0.0.1:{ports['gateway_tcp']}",
                token=hub.api_token(),
            )
            opened.callback(close_gateway, gw)
            return gw

        with opened:
            yield gateway_for
    finally:
        penv.esdl("down", check=False)


@pytest.fixture(scope="module")
def kube_gateways(tmp_path_factory) -> Iterator[GatewayFor]:
    """The chart's rendered gateway config of SPEC in a real DaskGateway over KubeBackend (basic auth)."""
    from dask_gateway import BasicAuth

    tmp = tmp_path_factory.mktemp("conform-kube")
    spec = parse_project(SPEC)
    docs = render_manifests(
        render_values(spec), release=release_name(spec), namespace=namespace_for(spec), subcharts=True
    )
    config_py = tmp / "dask_gateway_config.py"
    config_py.write_text(kube_gateway.chart_gateway_config(docs, gateway_fullname(release_name(spec))))
    address = f"127.0.0.1:{free_port()}"
    log = (tmp / "gateway.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "kube_gateway.py"), str(config_py), address],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        import requests

        def healthy() -> bool:
            assert proc.poll() is None, (tmp / "gateway.log").read_text()
            try:
                return requests.get(f"http://{address}/api/health", timeout=1).ok
            except requests.ConnectionError:
                return False

        _wait(healthy, "the Kubernetes gateway")

        def gateway_for(user: str):
            from dask_gateway import Gateway

            gw = Gateway(f"http://{address}", auth=BasicAuth(user, "any"))
            opened.callback(close_gateway, gw)
            return gw

        with contextlib.ExitStack() as opened:
            yield gateway_for
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_both_backends_answer_every_request_alike(local_gateways, kube_gateways):
    local = run_policy_cases(local_gateways)
    kube = run_policy_cases(kube_gateways)
    assert [s for s, _ in local] == [s for s, _ in kube]
    for (step, on_local), (_, on_kube) in zip(local, kube, strict=True):
        assert on_local == on_kube, f"{step}: local {on_local!r}, Kubernetes {on_kube!r}"

    outcomes = dict(kube)
    options = {f["field"]: f for f in json.loads(outcomes.pop("options"))}
    assert options["worker_cores"]["spec"] == {"type": "int", "min": 1, "max": 2}
    assert options["worker_memory"]["spec"]["options"] == ["1Gi", "2Gi"]
    assert options["idle_timeout_minutes"]["spec"]["max"] == 10
    assert options["image"]["default"] == ""
    refused = [(s, o) for s, o in kube if o.startswith("refused")]
    expected = [
        ("new cluster {}", "ada already runs 2 dask clusters, this project's limit per user (dask.max_clusters_per_user = 2)"),
        ("ada scales her second cluster to 3", "3 workers would give ada 5 dask workers over all their clusters, above this project's limit per user (dask.max_workers_per_user = 4); this cluster may have at most 2"),
        ("new cluster {'worker_cores': 8}", "worker_cores must be <= 2"),
        ("new cluster {'worker_cores': '2'}", "worker_cores must be an integer, got '2'"),
        ("new cluster {'worker_memory': '64Gi'}", "'64Gi' is not a valid option for worker_memory"),
        ("new cluster {'idle_timeout_minutes': 11}", "idle_timeout_minutes must be <="),
        ("new cluster {'image': 'docker.io/someone/miner:latest'}", "is not one of this project's images"),
        ("new cluster {'gpus': 1}", "Unknown fields ['gpus']"),
        ("bo scales another 2-core cluster to 1", "would give bo 8 worker cores over all their clusters, above this project's limit per user (dask.max_cores_per_user = 6); this cluster may have at most 0"),
        ("ada scales her new cluster to 1", "1 workers would give ada 5 dask workers"),
    ]  # fmt: skip
    assert [s for s, _ in refused] == [s for s, _ in expected]
    for (step, outcome), (_, text) in zip(refused, expected, strict=True):
        assert text in outcome, f"{step}: {outcome!r} does not say {text!r}"
