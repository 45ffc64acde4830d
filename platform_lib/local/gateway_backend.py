"""The dask-gateway backend of the embedded platform: local processes with per-user limits.

:class:`ProjectLocalBackend` is dask-gateway's ``UnsafeLocalBackend`` (hub users are not Unix users)
plus the two per-user limits of a project spec that dask-gateway has no setting for: at most
``max_clusters_per_user`` running clusters, and at most ``max_workers_per_user`` workers summed over a
user's clusters (a cluster's share is capped when its scheduler asks for more). Loaded by the
gateway from this file (see ``configs._module_loader``): it may import only the standard library and
the gateway's own packages, never ``platform_lib``.
"""

from __future__ import annotations

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import UnsafeLocalBackend
from traitlets import Integer


class ProjectLocalBackend(UnsafeLocalBackend):
    """``UnsafeLocalBackend`` with per-user cluster and worker limits."""

    max_clusters_per_user = Integer(0, help="Running clusters a user may have (0 = no limit).").tag(
        config=True
    )
    max_workers_per_user = Integer(0, help="Workers a user may have over all clusters (0 = no limit).").tag(
        config=True
    )

    def _active(self, username: str, exclude: str | None = None) -> list:
        return [c for c in self.db.list_clusters(username=username) if c.is_active() and c.name != exclude]

    async def start_cluster(self, user, cluster_options):
        if self.max_clusters_per_user and len(self._active(user.name)) >= self.max_clusters_per_user:
            raise PublicException(
                f"user {user.name!r} already has {self.max_clusters_per_user} running cluster(s), the project's"
                " limit (dask.max_clusters_per_user); shut one down first (cluster.shutdown())"
            )
        return await super().start_cluster(user, cluster_options)

    async def on_cluster_heartbeat(self, cluster_name, msg):
        cluster = self.db.get_cluster(cluster_name)
        if self.max_workers_per_user and cluster is not None:
            others = sum(c.count for c in self._active(cluster.username, exclude=cluster_name))
            allowed = max(self.max_workers_per_user - others, 0)
            if msg.get("count", 0) > allowed:
                self.log.info(
                    "Cluster %s asks for %d workers; user %s may have %d more (max_workers_per_user=%d)",
                    cluster_name,
                    msg["count"],
                    cluster.username,
                    allowed,
                    self.max_workers_per_user,
                )
                msg = {**msg, "count": allowed}
        return await super().on_cluster_heartbeat(cluster_name, msg)


def cluster_options(
    worker_cores: list[int], default_cores: int, worker_memory: dict[str, int], default_memory: str
):
    """The options users may pass to ``Gateway.new_cluster``: the spec's worker cores and memory choices.

    ``worker_cores`` is an integer that must be one of the choices; ``worker_memory`` is one of the
    spec's quantities (``"2Gi"``), turned into bytes for the worker.
    """
    from dask_gateway_server.options import Integer, Options, Select

    def handler(options):
        cores = options.worker_cores
        if cores not in worker_cores:
            raise ValueError(f"worker_cores={cores} is not allowed in this project; allowed: {worker_cores}")
        return {"worker_cores": cores, "worker_memory": worker_memory[options.worker_memory]}

    return Options(
        Integer(
            "worker_cores",
            default=default_cores,
            min=min(worker_cores),
            max=max(worker_cores),
            label="Worker cores",
        ),
        Select("worker_memory", list(worker_memory), default=default_memory, label="Worker memory"),
        handler=handler,
    )
