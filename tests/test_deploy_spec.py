"""Spec checks the Kubernetes deployment relies on: the quota holds every profile and one user's
largest Dask cluster (``quota`` in projects/<name>.yaml, checked at validation time)."""

from __future__ import annotations

import pytest

from platform_lib.projects import ProjectSpecError, parse_project

BASE = {
    "name": "tiny",
    "title": "Tiny",
    "admins": ["ada"],
    "profiles": [{"name": "small", "display_name": "Small", "cpu": 1, "memory": "2Gi"}],
    "dask": {
        "max_workers_per_user": 4,
        "worker_cores": {"choices": [1, 2], "default": 1},
        "worker_memory": {"choices": ["1Gi", "2Gi"], "default": "1Gi"},
    },
}


def test_quota_that_holds_everything_is_accepted():
    spec = parse_project({**BASE, "quota": {"cpu": 16, "memory": "32Gi", "pods": 30}})
    assert (spec.quota.cpu, spec.quota.memory, spec.quota.pods) == (16.0, "32Gi", 30)
    assert parse_project(BASE).quota.cpu is None  # unset: derived by the deployer


def test_profile_above_quota_is_refused_naming_the_field():
    data = {**BASE, "quota": {"cpu": 16, "memory": "32Gi"}}
    data["profiles"] = [{"name": "huge", "display_name": "Huge", "cpu": 32, "memory": "64Gi"}]
    with pytest.raises(ProjectSpecError) as info:
        parse_project(data, "t.yaml")
    text = str(info.value)
    assert "profiles[0].cpu: 32 CPUs is above the project's quota.cpu of 16" in text
    assert "profiles[0].memory: 64Gi is above the project's quota.memory of 32Gi" in text


def test_dask_cluster_above_quota_is_refused_with_the_arithmetic():
    data = {**BASE, "quota": {"cpu": 8, "memory": "64Gi"}}
    with pytest.raises(ProjectSpecError) as info:
        parse_project(data, "t.yaml")
    (problem,) = info.value.problems
    assert problem.startswith(
        "dask: one user's largest cluster (4 workers x 2 cores + a 1-core scheduler = 9 CPUs)"
    )
    assert "quota.cpu of 8" in problem


def test_quota_typo_is_refused():
    with pytest.raises(ProjectSpecError) as info:
        parse_project({**BASE, "quota": {"cpus": 8}}, "t.yaml")
    assert "quota.cpus: unknown field. Did you mean 'cpu'?" in str(info.value)


def test_server_culling_defaults_and_bounds():
    spec = parse_project(BASE)
    assert (spec.servers.cull_idle_minutes, spec.servers.cull_max_age_hours) == (60, 0)
    assert parse_project({**BASE, "servers": {"cull_idle_minutes": 0}}).servers.cull_idle_minutes == 0
    with pytest.raises(ProjectSpecError) as info:
        parse_project({**BASE, "servers": {"cull_idle_minutes": -5}}, "t.yaml")
    assert "servers.cull_idle_minutes" in str(info.value)
