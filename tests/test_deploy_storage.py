"""The team folder's StorageClass, checked before Helm runs (platform_lib/deploy/storage_check.py), on
the StorageClasses of common clusters and on generated ones."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from platform_lib.deploy.storage_check import READ_WRITE_MANY, READ_WRITE_ONCE, team_storage_plan

DEFAULT = {"storageclass.kubernetes.io/is-default-class": "true"}


def storage_class(name, provisioner, mode="Immediate", default=False):
    return {
        "metadata": {"name": name, "annotations": DEFAULT if default else {}},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
    }


def test_k3s_out_of_the_box_is_refused_before_helm_runs():
    plan = team_storage_plan(
        [storage_class("local-path", "rancher.io/local-path", "WaitForFirstConsumer", True)], None
    )
    assert plan.storage_class == "local-path" and "ReadWriteOnce volumes only" in plan.problems[0]
    assert plan.wait is False  # it would also hang helm --wait


def test_a_named_shared_class_binding_on_first_use_deploys_without_waiting():
    classes = [
        storage_class("gp3", "ebs.csi.aws.com", "WaitForFirstConsumer", True),
        storage_class("efs", "efs.csi.aws.com", "WaitForFirstConsumer"),
    ]
    plan = team_storage_plan(classes, "efs")
    assert (plan.storage_class, plan.problems, plan.wait) == ("efs", [], False)
    assert "WaitForFirstConsumer" in plan.notes[0]
    assert team_storage_plan(classes, None).problems  # the default (EBS) cannot serve ReadWriteMany


names = st.text(alphabet="abcdefgh-", min_size=1, max_size=8)
provisioners = st.sampled_from([*READ_WRITE_MANY, *READ_WRITE_ONCE, "example.com/unknown", ""])
classes = st.lists(
    st.builds(
        storage_class,
        names,
        provisioners,
        st.sampled_from(["Immediate", "WaitForFirstConsumer"]),
        st.booleans(),
    ),
    max_size=5,
    unique_by=lambda sc: sc["metadata"]["name"],
)


@given(classes, st.one_of(st.none(), names))
def test_every_cluster_gets_a_class_or_a_reason(storage_classes, requested):
    plan = team_storage_plan(storage_classes, requested)
    by_name = {sc["metadata"]["name"]: sc for sc in storage_classes}
    defaults = [n for n, sc in by_name.items() if sc["metadata"]["annotations"]]
    if requested is not None and requested not in by_name:
        assert plan.storage_class is None and requested in plan.problems[0]
        assert all(name in plan.problems[0] for name in by_name)
        return
    if requested is None and len(defaults) != 1:
        assert plan.storage_class is None and "storage.storage_class" in plan.problems[0]
        return
    chosen = by_name[requested if requested is not None else defaults[0]]
    assert plan.storage_class == chosen["metadata"]["name"]
    assert bool(plan.problems) == (chosen["provisioner"] in READ_WRITE_ONCE)
    unknown = chosen["provisioner"] not in READ_WRITE_MANY + READ_WRITE_ONCE
    assert any("cannot tell" in n for n in plan.notes) == unknown
    assert plan.wait == (chosen["volumeBindingMode"] != "WaitForFirstConsumer")
