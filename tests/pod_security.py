"""The Kubernetes Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
as admission enforces them since 1.25), checked on a pod spec: what keeps a pod out of ``baseline`` and
out of ``restricted``."""

from __future__ import annotations

from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
LEVELS = ("restricted", "baseline", "privileged")


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]


def baseline_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps a pod spec out of the baseline level."""
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{key}: true")
    psc = pod.get("securityContext") or {}
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("hostProcess")
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("pod seccompProfile Unconfined")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl.get('name')}")
    found += [f"hostPath volume {v['name']}" for v in pod.get("volumes") or [] if "hostPath" in v]
    for c in _containers(pod):
        sc = c.get("securityContext") or {}
        name = c.get("name")
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        added = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(f"{name}: adds capabilities {sorted(added)}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{name}: hostPort")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{name}: seccompProfile Unconfined")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"{name}: procMount {sc['procMount']}")
    return found


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps a pod spec out of the restricted level (baseline's findings included)."""
    found = baseline_violations(pod)
    psc = pod.get("securityContext") or {}
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {v['name']} of type {sorted(kinds)}")
    for c in _containers(pod):
        sc = c.get("securityContext") or {}
        name = c.get("name")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation not false")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile not RuntimeDefault")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{name}: does not drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
    return found


def pod_security_level(pod: dict[str, Any]) -> str:
    """The strictest level a pod spec meets: ``restricted``, ``baseline`` or ``privileged``."""
    if not restricted_violations(pod):
        return "restricted"
    return "baseline" if not baseline_violations(pod) else "privileged"


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``Kind/name`` -> pod spec of every workload among rendered objects (and of bare Pods)."""
    specs = {}
    for doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        if kind == "Pod":
            specs[f"{kind}/{name}"] = doc["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            specs[f"{kind}/{name}"] = doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            specs[f"{kind}/{name}"] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs
