"""Hub-side hooks of a project's JupyterHub on Kubernetes, inlined into the chart's ``hub.extraConfig``.

``esdl project render`` puts this file's text into z2jh's hub config (``platform_lib/deploy/values.py``),
followed by ``ADMIN_WRITABLE_MOUNTS = [...]`` and ``c.KubeSpawner.modify_pod_hook =
admin_writable_mounts_hook``. It is hub-side code: standard library only, no ``from __future__`` import
(the text runs inside z2jh's ``jupyterhub_config.py``), never ``platform_lib``.

>>> from types import SimpleNamespace as NS
>>> mount = NS(name="esdl-team-storage", read_only=True)
>>> pod = NS(spec=NS(containers=[NS(volume_mounts=[mount])]))
>>> _ = admin_writable_mounts_hook(NS(user=NS(admin=True)), pod, ["esdl-team-storage"])
>>> mount.read_only
False
"""

#: volume mounts that are read-only for members and read-write for admins (set after this text)
ADMIN_WRITABLE_MOUNTS: list = []


def admin_writable_mounts_hook(spawner, pod, mounts=None):
    """KubeSpawner's ``modify_pod_hook``: an admin's server mounts ``mounts`` (default
    :data:`ADMIN_WRITABLE_MOUNTS`) read-write; members keep them as the chart mounts them."""
    names = ADMIN_WRITABLE_MOUNTS if mounts is None else mounts
    if getattr(spawner.user, "admin", False):
        for container in pod.spec.containers:
            for mount in container.volume_mounts or []:
                if mount.name in names:
                    mount.read_only = False
    return pod
