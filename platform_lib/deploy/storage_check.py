"""Before a deploy: can the cluster's StorageClass serve the team folder, and may Helm wait?

The team folder is one ReadWriteMany claim that every user server and dask worker mounts. A class that
cannot serve ReadWriteMany leaves the claim Pending and every spawn stuck; a class that binds only when a
pod uses the claim (``volumeBindingMode: WaitForFirstConsumer``, e.g. k3s's local-path) makes
``helm --wait`` (and ``--atomic``, which waits) hang until its timeout, because only user pods bind it.
:func:`team_storage_plan` decides both from the cluster's StorageClass objects, before Helm runs.

>>> nfs = {"metadata": {"name": "nfs", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
...        "provisioner": "nfs.csi.k8s.io", "volumeBindingMode": "Immediate"}
>>> plan = team_storage_plan([nfs], None)
>>> plan.storage_class, plan.problems, plan.wait
('nfs', [], True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["READ_WRITE_MANY", "READ_WRITE_ONCE", "StoragePlan", "team_storage_plan"]

#: provisioners known to serve ReadWriteMany (file systems shared over the network)
READ_WRITE_MANY = (
    "nfs.csi.k8s.io",
    "cluster.local/nfs-subdir-external-provisioner",
    "k8s-sigs.io/nfs-subdir-external-provisioner",
    "cephfs.csi.ceph.com",
    "efs.csi.aws.com",
    "file.csi.azure.com",
    "kubernetes.io/azure-file",
    "filestore.csi.storage.gke.io",
    "smb.csi.k8s.io",
    "csi.juicefs.com",
    "driver.longhorn.io",  # ReadWriteMany through its share manager
)
#: provisioners of block or node-local volumes: ReadWriteOnce only
READ_WRITE_ONCE = (
    "rancher.io/local-path",
    "kubernetes.io/no-provisioner",
    "ebs.csi.aws.com",
    "kubernetes.io/aws-ebs",
    "pd.csi.storage.gke.io",
    "kubernetes.io/gce-pd",
    "disk.csi.azure.com",
    "kubernetes.io/azure-disk",
    "rbd.csi.ceph.com",
    "cinder.csi.openstack.org",
    "kubernetes.io/cinder",
    "openebs.io/local",
    "topolvm.io",
    "hostpath.csi.k8s.io",
)
_DEFAULT_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


@dataclass(frozen=True)
class StoragePlan:
    """What the team claim will get: its class, problems that stop a deploy, notes, and whether Helm
    may wait for the release (``--wait --atomic``)."""

    storage_class: str | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wait: bool = True


def _name(sc: Mapping[str, Any]) -> str:
    return str((sc.get("metadata") or {}).get("name", ""))


def _is_default(sc: Mapping[str, Any]) -> bool:
    annotations = (sc.get("metadata") or {}).get("annotations") or {}
    return any(str(annotations.get(a, "")).lower() == "true" for a in _DEFAULT_ANNOTATIONS)


def team_storage_plan(storage_classes: Sequence[Mapping[str, Any]], requested: str | None) -> StoragePlan:
    """Check the team folder's class (``requested``, the spec's ``storage.storage_class``, else the
    cluster's default) among ``storage_classes`` (StorageClass objects as dicts).

    >>> local = {"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    ...          "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}
    >>> print(team_storage_plan([local], None).problems[0])
    StorageClass 'local-path' (provisioner rancher.io/local-path) serves ReadWriteOnce volumes only; the team folder needs ReadWriteMany: set storage.storage_class to a shared file system class (NFS, CephFS, EFS, Azure Files, Filestore, Longhorn RWX)
    >>> team_storage_plan([local], "fast").problems
    ["no StorageClass named 'fast' on this cluster; storage.storage_class may be one of: local-path"]
    """
    names = sorted(_name(sc) for sc in storage_classes)
    if requested:
        chosen = next((sc for sc in storage_classes if _name(sc) == requested), None)
        if chosen is None:
            return StoragePlan(
                None,
                [
                    f"no StorageClass named {requested!r} on this cluster; storage.storage_class may be one of:"
                    f" {', '.join(names) or '(the cluster has none)'}"
                ],
            )
    else:
        defaults = [sc for sc in storage_classes if _is_default(sc)]
        if len(defaults) != 1:
            which = "no default StorageClass" if not defaults else f"{len(defaults)} default StorageClasses"
            return StoragePlan(
                None,
                [
                    f"the cluster has {which}; set storage.storage_class in the spec to a ReadWriteMany class,"
                    f" one of: {', '.join(names) or '(the cluster has none)'}"
                ],
            )
        chosen = defaults[0]
    name, provisioner = _name(chosen), str(chosen.get("provisioner", ""))
    problems, notes = [], []
    if provisioner in READ_WRITE_ONCE:
        problems.append(
            f"StorageClass {name!r} (provisioner {provisioner}) serves ReadWriteOnce volumes only; the team"
            " folder needs ReadWriteMany: set storage.storage_class to a shared file system class (NFS,"
            " CephFS, EFS, Azure Files, Filestore, Longhorn RWX)"
        )
    elif provisioner not in READ_WRITE_MANY:
        notes.append(
            f"cannot tell whether StorageClass {name!r} (provisioner {provisioner or 'none'}) serves ReadWriteMany;"
            " if the claim esdl-team-storage stays Pending, set storage.storage_class to a class that does"
        )
    wait = chosen.get("volumeBindingMode", "Immediate") != "WaitForFirstConsumer"
    if not wait:
        notes.append(
            f"StorageClass {name!r} binds a claim only when a pod uses it (WaitForFirstConsumer): Helm will not"
            " wait for the release (the team claim binds at the first user server), so a failed upgrade is not"
            " rolled back automatically; check with `kubectl -n NAMESPACE get pods` after the deploy"
        )
    return StoragePlan(name, problems, notes, wait)
