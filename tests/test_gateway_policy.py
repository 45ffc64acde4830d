"""The dask policy's decisions on generated requests (``platform_lib/gateway_policy.py``); the same
policy on both real backends is ``test_gateway_conformance.py``."""

from __future__ import annotations

import re

import pytest
from dask_gateway_server.backends.base import PublicException
from hypothesis import given
from hypothesis import strategies as st

from platform_lib.gateway_policy import DaskPolicy

CORES = [1, 2, 4]


@given(
    max_workers=st.integers(1, 12),
    max_cores=st.one_of(st.just(0.0), st.integers(1, 40).map(float)),
    others=st.lists(st.tuples(st.integers(0, 6), st.sampled_from(CORES)), max_size=3),
    count=st.integers(1, 20),
    cores=st.sampled_from(CORES),
)
def test_workers_are_refused_exactly_past_a_per_user_limit(max_workers, max_cores, others, count, cores):
    policy = DaskPolicy(max_workers_per_user=max_workers, max_cores_per_user=max_cores, worker_cores=CORES)
    held, held_cores = sum(n for n, _ in others), sum(n * c for n, c in others)
    within = held + count <= max_workers and held_cores + count * cores <= policy.cores_per_user
    try:
        policy.check_workers("ada", count, cores, others)
    except PublicException as refusal:
        assert not within
        message = str(refusal)
        assert message.startswith(f"{count} workers") and "ada" in message
        limit = re.search(r"\(dask\.(max_\w+_per_user) = ([\d.]+)\)", message)
        assert limit and limit.group(1) in ("max_workers_per_user", "max_cores_per_user")
        # what the message offers is accepted, one more is not
        room = int(re.search(r"may have at most (\d+)", message).group(1))
        if room:
            policy.check_workers("ada", room, cores, others)
        with pytest.raises(PublicException):
            policy.check_workers("ada", room + 1, cores, others)
    else:
        assert within


def test_worker_cores_must_be_one_of_the_choices():
    options = DaskPolicy(worker_cores=[1, 4], default_worker_cores=1).cluster_options()
    assert options.get_configuration(options.parse_options({"worker_cores": 4}), None)["worker_cores"] == 4
    with pytest.raises(ValueError, match="worker_cores=2 is not one of this project's choices: 1, 4"):
        options.get_configuration(options.parse_options({"worker_cores": 2}), None)


def test_a_new_cluster_is_refused_at_the_limit_only():
    policy = DaskPolicy(max_clusters_per_user=2)
    policy.check_new_cluster("ada", running=1)
    with pytest.raises(PublicException, match=r"ada already runs 2 dask clusters.*max_clusters_per_user = 2"):
        policy.check_new_cluster("ada", running=2)
