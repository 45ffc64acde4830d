"""The dask policy of a project's gateway, declared once for both backends.

What a member may ask of the project's Dask Gateway: the cluster options (worker cores and memory from
the spec's choices, an idle timeout up to the spec's, an image from the project's images) and the
per-user limits that hold across all of a user's clusters (running clusters, workers, cores). The
settings are traits of :class:`DaskPolicy`, filled from the project plan (``platform_lib.plan``) as
``c.DaskPolicy.<trait> = ...`` lines; :func:`local_backend_class` and :func:`kube_backend_class` give
dask-gateway-server's own backends with the policy applied.

This module is gateway-side code: it may import only the standard library, traitlets and
``dask_gateway_server`` (never ``platform_lib``), and it has no ``from __future__`` import, because it
runs in two ways: the embedded platform's gateway loads it from its file by path
(``platform_lib/local/configs.py``), and ``esdl project render`` inlines its text into the chart's
gateway config (``gateway.extraConfig``, ``platform_lib/deploy/values.py``), as z2jh keeps its hub
Python in real files.

>>> policy = DaskPolicy(max_workers_per_user=4, worker_cores=[1, 2], default_worker_cores=1,
...                     worker_memory={"2Gi": 2**31}, default_worker_memory="2Gi", idle_timeout_minutes=30)
>>> [f["field"] for f in policy.cluster_options().get_specification()]
['worker_cores', 'worker_memory', 'idle_timeout_minutes', 'image']
>>> policy.room(cores=1, others=[(3, 1)])
1
"""

import copy
import os

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.options import Float as FloatOption
from dask_gateway_server.options import Integer as IntegerOption
from dask_gateway_server.options import Options, Select, String
from traitlets import Dict, Float, Integer, List, Unicode, default
from traitlets.config import Configurable

#: the key of the gateway's settings in the project spec, named in every refusal
SPEC_SECTION = "dask"
#: the shortest idle timeout a member may choose (6 seconds: a cluster for one quick computation)
MIN_IDLE_TIMEOUT_MINUTES = 0.1


class DaskPolicy(Configurable):
    """A project's dask policy: the options members may choose and the limits per user.

    Each trait is one setting of the spec's ``dask:`` section (or derived from it by the plan); the
    defaults allow nothing surprising (no limit is 0 only where the help says so).

    >>> policy = DaskPolicy(max_clusters_per_user=2)
    >>> policy.check_new_cluster("ada", running=2)
    Traceback (most recent call last):
    ...
    dask_gateway_server.backends.base.PublicException: ada already runs 2 dask clusters, this project's limit per user (dask.max_clusters_per_user = 2); shut one down first (cluster.shutdown(), or gateway.list_clusters() to find them)
    """

    max_clusters_per_user = Integer(1, help="Clusters one user may run at the same time.").tag(config=True)
    max_workers_per_user = Integer(1, help="Workers one user may have, summed over their clusters.").tag(
        config=True
    )
    max_cores_per_user = Float(
        0.0, help="Worker cores one user may have, summed over their clusters (0: workers x largest choice)."
    ).tag(config=True)
    worker_cores = List(Integer(), [1], help="Worker cores a member may choose.").tag(config=True)
    default_worker_cores = Integer(1, help="The preselected worker cores.").tag(config=True)
    worker_memory = Dict(
        value_trait=Integer(), default_value={"1Gi": 2**30}, help="Worker memory choices: label -> bytes."
    ).tag(config=True)
    default_worker_memory = Unicode("1Gi", help="The preselected worker memory (a label).").tag(config=True)
    idle_timeout_minutes = Integer(
        30, help="Longest idle time before a cluster is shut down; members may choose less."
    ).tag(config=True)
    images = List(
        Unicode(),
        help="Images a cluster may run; empty: the backend's default image only. A member's workers"
        " run the image of their server (the client sends it as the `image` option).",
    ).tag(config=True)
    admin_writable_mounts = List(
        Unicode(),
        help="Volume mounts of workers that are read-only for members and read-write for admins.",
    ).tag(config=True)

    def cluster_options(self) -> Options:
        """The options of ``Gateway.new_cluster(...)``: each declared here, once, for both backends.

        >>> DaskPolicy(worker_cores=[1, 2]).cluster_options().get_specification()[0]["spec"]
        {'type': 'int', 'min': 1, 'max': 2}
        """
        memory = dict(self.worker_memory)

        def handler(options, user):
            image = self.check_image(options.image)
            cores = options.worker_cores
            if cores not in self.worker_cores:
                allowed = ", ".join(map(str, self.worker_cores))
                raise ValueError(f"worker_cores={cores} is not one of this project's choices: {allowed}")
            overrides = {
                "worker_cores": cores,
                "worker_memory": int(options.worker_memory),
                "worker_threads": max(1, cores),
                "idle_timeout": 60.0 * options.idle_timeout_minutes,
                "cluster_max_workers": self.max_workers_per_user,
            }
            if image:
                overrides["image"] = image
            return overrides

        return Options(
            IntegerOption(
                "worker_cores",
                self.default_worker_cores,
                min=min(self.worker_cores),
                max=max(self.worker_cores),
                label="Worker cores",
            ),
            Select(
                "worker_memory",
                list(memory.items()),
                default=self.default_worker_memory,
                label="Worker memory",
            ),
            FloatOption(
                "idle_timeout_minutes",
                float(self.idle_timeout_minutes),
                min=MIN_IDLE_TIMEOUT_MINUTES,
                max=float(self.idle_timeout_minutes),
                label="Shut down after idle (minutes)",
            ),
            String("image", "", label="Image (default: your notebook image)"),
            handler=handler,
        )

    def check_image(self, image: str) -> str:
        """``image`` if the project allows it ("" for the default), else a ``ValueError`` naming the allowed.

        >>> DaskPolicy(images=["ghcr.io/esdl/user:1"]).check_image("docker.io/miner:latest")
        Traceback (most recent call last):
        ...
        ValueError: image 'docker.io/miner:latest' is not one of this project's images; allowed: ghcr.io/esdl/user:1
        """
        if image and image not in self.images:
            allowed = ", ".join(sorted(self.images)) or "(only the default image)"
            raise ValueError(f"image {image!r} is not one of this project's images; allowed: {allowed}")
        return image

    @property
    def cores_per_user(self) -> float:
        """The cores limit in force: ``max_cores_per_user``, or workers x the largest core choice.

        >>> DaskPolicy(max_workers_per_user=4, worker_cores=[1, 2]).cores_per_user
        8.0
        """
        return self.max_cores_per_user or float(self.max_workers_per_user * max(self.worker_cores))

    def check_new_cluster(self, username: str, running: int) -> None:
        """Refuse a new cluster when ``username`` already runs ``max_clusters_per_user``."""
        if running >= self.max_clusters_per_user:
            raise PublicException(
                f"{username} already runs {running} dask cluster{'s' if running != 1 else ''}, this project's"
                f" limit per user ({SPEC_SECTION}.max_clusters_per_user = {self.max_clusters_per_user});"
                " shut one down first (cluster.shutdown(), or gateway.list_clusters() to find them)"
            )

    def room(self, cores: float, others: list[tuple[int, float]]) -> int:
        """Workers of ``cores`` each that one cluster may have while the user's ``others`` clusters
        (workers, cores per worker) keep theirs: what both per-user limits leave.

        >>> DaskPolicy(max_workers_per_user=4, max_cores_per_user=6, worker_cores=[1, 2]).room(2, [(1, 2)])
        2
        """
        by_workers = self.max_workers_per_user - sum(n for n, _ in others)
        by_cores = (self.cores_per_user - sum(n * c for n, c in others)) // cores
        return int(max(min(by_workers, by_cores), 0))

    def check_workers(self, username: str, count: int, cores: float, others: list[tuple[int, float]]) -> None:
        """Refuse ``count`` workers of ``cores`` each when, with the user's ``others`` clusters
        (workers, cores per worker), they would pass the per-user workers or cores limit.

        >>> DaskPolicy(max_workers_per_user=4, worker_cores=[1]).check_workers("ada", 3, 1, [(2, 1)])
        Traceback (most recent call last):
        ...
        dask_gateway_server.backends.base.PublicException: 3 workers would give ada 5 dask workers over all their clusters, above this project's limit per user (dask.max_workers_per_user = 4); this cluster may have at most 2 while the others keep theirs
        """
        held = sum(n for n, _ in others)
        held_cores = sum(n * c for n, c in others)
        room = f"; this cluster may have at most {self.room(cores, others)} while the others keep theirs"
        if held + count > self.max_workers_per_user:
            raise PublicException(
                f"{count} workers would give {username} {held + count} dask workers over all their clusters,"
                f" above this project's limit per user ({SPEC_SECTION}.max_workers_per_user ="
                f" {self.max_workers_per_user})" + room
            )
        if held_cores + count * cores > self.cores_per_user:
            raise PublicException(
                f"{count} workers of {cores:g} cores would give {username} {held_cores + count * cores:g} worker"
                " cores over all their clusters, above this project's limit per user"
                f" ({SPEC_SECTION}.max_cores_per_user = {self.cores_per_user:g})" + room
            )


def _with_policy(base: type) -> type:
    """``base`` (a dask-gateway backend class) with the project's :class:`DaskPolicy` applied."""

    class PolicyBackend(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.policy = DaskPolicy(parent=self)
            self._workers_asked = {}  # cluster name -> workers asked for (last scale or heartbeat)

        @default("cluster_options")
        def _policy_cluster_options(self):
            return DaskPolicy(parent=self).cluster_options()

        async def _others(self, cluster) -> list[tuple[int, float]]:
            """(workers, cores per worker) of the user's other running or starting clusters."""
            clusters = await self.list_clusters(username=cluster.username)
            return [
                (self._workers_asked.get(c.name, 0), float(c.config.get("worker_cores") or 1))
                for c in clusters
                if c.name != cluster.name
            ]

        async def start_cluster(self, user, cluster_options):
            running = await self.list_clusters(username=user.name)
            self.policy.check_new_cluster(user.name, len(running))
            return await super().start_cluster(user, cluster_options)

        async def forward_message_to_scheduler(self, cluster, msg):
            count = {"scale": msg.get("count"), "adapt": msg.get("minimum")}.get(msg.get("op"))
            if count:
                cores = float(cluster.config.get("worker_cores") or 1)
                self.policy.check_workers(cluster.username, int(count), cores, await self._others(cluster))
            await super().forward_message_to_scheduler(cluster, msg)
            if msg.get("op") == "scale":
                self._workers_asked[cluster.name] = int(msg["count"])

        async def on_cluster_heartbeat(self, cluster_name, msg):
            # the backstop for adaptive clusters and for requests that raced each other: a scheduler
            # never gets more workers than the user's other clusters leave
            cluster = await self.get_cluster(cluster_name)
            count = msg.get("count")
            if cluster is not None and isinstance(count, int):
                cores = float(cluster.config.get("worker_cores") or 1)
                allowed = self.policy.room(cores, await self._others(cluster))
                if count > allowed:
                    self.log.info(
                        "Cluster %s asks for %d workers; user %s may have %d more (dask policy)",
                        cluster_name,
                        count,
                        cluster.username,
                        allowed,
                    )
                    msg = {**msg, "count": allowed}
                self._workers_asked[cluster_name] = msg["count"]
            return await super().on_cluster_heartbeat(cluster_name, msg)

    PolicyBackend.__name__ = PolicyBackend.__qualname__ = f"Policy{base.__name__}"
    return PolicyBackend


def local_backend_class() -> type:
    """dask-gateway's ``LocalBackend`` (local processes) with the policy applied.

    Its clusters accept the same options as on Kubernetes; the ``image`` a member chooses is checked
    and recorded, while the processes run this machine's environment. With ``os_accounts`` (hub user ->
    OS account, set when the platform runs as root) each person's scheduler and workers run under their
    own account, in a working folder of their own that is also their dask scratch space; without it
    (one trust domain, a laptop) they run as the gateway's user, as upstream's ``UnsafeLocalBackend``.

    >>> backend = local_backend_class()
    >>> backend.cluster_config_class.default_value.__name__
    'ProjectLocalClusterConfig'
    >>> backend().os_accounts
    {}
    """
    import pwd

    from dask_gateway_server.backends.base import ClusterConfig
    from dask_gateway_server.backends.local import LocalBackend, LocalClusterConfig
    from traitlets import Type

    class ProjectLocalClusterConfig(LocalClusterConfig):
        image = Unicode(
            "", help="The image asked for (checked and recorded; local clusters run this Python)."
        )

    class ProjectLocalBackend(_with_policy(LocalBackend)):
        cluster_config_class = Type(ProjectLocalClusterConfig, klass=ClusterConfig, config=True)
        os_accounts = Dict(
            {},
            help="Hub user -> OS account whose clusters run under it; empty: every cluster runs as the"
            " gateway's own user (one trust domain). A user missing from a non-empty map gets no cluster.",
        ).tag(config=True)

        def _account(self, username):
            account = self.os_accounts.get(username)
            if account is None:
                raise PermissionError(f"{username!r} has no OS account on this platform; no cluster for them")
            return pwd.getpwnam(account)

        def make_preexec_fn(self, cluster):
            workdir = cluster.state["workdir"]
            if not self.os_accounts:

                def as_gateway():  # pragma: no cover - runs in the child
                    os.chdir(workdir)

                return as_gateway
            entry = self._account(cluster.username)
            groups = os.getgrouplist(entry.pw_name, entry.pw_gid)

            def as_account():  # pragma: no cover - runs in the child
                os.setgid(entry.pw_gid)
                os.setgroups(groups)
                os.setuid(entry.pw_uid)
                os.umask(0o002)  # what they write to the team folder stays readable by the team
                os.chdir(workdir)

            return as_account

        def setup_working_directory(self, cluster):
            # upstream's (2026.3.0) with one fix: it adds the key and cert paths with ``list.extend(str)``,
            # one character at a time, so that as root ``set_file_permissions`` chowns "/" to the user
            import tempfile

            if self.clusters_directory:
                workdir = os.path.join(self.clusters_directory, cluster.name)
            else:
                workdir = tempfile.mkdtemp(prefix="dask", suffix=cluster.name)
            paths = [workdir, self.get_certs_directory(workdir), self.get_logs_directory(workdir)]
            for path in paths:
                os.makedirs(path, 0o700, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            for path, data in zip(
                self._get_tls_paths(workdir), (cluster.tls_cert, cluster.tls_key), strict=True
            ):
                with os.fdopen(os.open(path, flags, 0o600), "wb") as file:
                    file.write(data)
                paths.append(path)
            self.set_file_permissions(paths, cluster.username)
            return workdir

        def set_file_permissions(self, paths, username):
            if not self.os_accounts:
                return
            entry = self._account(username)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

        def get_env(self, cluster):
            env = super().get_env(cluster)
            workdir = cluster.state.get("workdir")
            if workdir:  # per-person scratch: dask's spill files and temporaries in the cluster's own folder
                env["DASK_TEMPORARY_DIRECTORY"] = env["TMPDIR"] = workdir
            if self.os_accounts:
                entry = self._account(cluster.username)
                env["USER"], env["HOME"] = entry.pw_name, entry.pw_dir
            return env

    return ProjectLocalBackend


def kube_backend_class(base: type | None = None) -> type:
    """dask-gateway's ``KubeBackend`` (or ``base``, a subclass of it) with the policy applied; admins'
    workers also get read-write ``admin_writable_mounts`` (members' are read-only where the project says so),
    and the gateway watches its own namespace only (``own_namespace_only``).

    >>> kube_backend_class().__mro__[1].__name__
    'PolicyKubeBackend'
    """
    import asyncio
    from collections import defaultdict

    from traitlets import Bool

    if base is None:
        from dask_gateway_server.backends.kubernetes import KubeBackend as base

    class ProjectKubeBackend(_with_policy(base)):
        own_namespace_only = Bool(
            True,
            help="Watch the DaskClusters of the gateway's own namespace only (upstream lists them cluster-wide),"
            " so a Role in that namespace is all the gateway's account needs.",
        ).tag(config=True)

        async def setup(self, app):
            if not self.own_namespace_only:
                return await super().setup(app)
            # KubeBackend.setup of dask-gateway-server 2026.3.0, but for the informer's namespaced list
            from dask_gateway_server.backends.base import Backend
            from dask_gateway_server.backends.kubernetes.utils import Informer
            from dask_gateway_server.utils import Flag
            from dask_gateway_server.workqueue import WorkQueue
            from kubernetes_asyncio import client, config

            await Backend.setup(self, app)
            try:
                config.load_incluster_config()
            except config.ConfigException:
                await config.load_kube_config()
            self.api_client = client.ApiClient()
            self.core_client = client.CoreV1Api(api_client=self.api_client)
            self.custom_client = client.CustomObjectsApi(api_client=self.api_client)
            self.cluster_waiters = defaultdict(Flag)
            self.clusters = {}
            self.username_to_clusters = defaultdict(dict)
            self.queue = WorkQueue()
            self.informer = Informer(
                parent=self,
                name="cluster",
                client=self.custom_client,
                method="list_namespaced_custom_object",
                method_kwargs=dict(
                    namespace=self.cluster_config_class(parent=self).namespace,
                    group="gateway.dask.org",
                    version=self.crd_version,
                    plural="daskclusters",
                    label_selector=self.label_selector,
                ),
                on_update=self.on_cluster_event,
                on_delete=self.on_cluster_event,
            )
            await self.informer.start()
            self.sync_task = asyncio.ensure_future(self.sync_clusters_loop())

        async def process_cluster_options(self, user, request):
            options, config = await super().process_cluster_options(user, request)
            if getattr(user, "admin", False) and self.policy.admin_writable_mounts:
                container = copy.deepcopy(dict(config.worker_extra_container_config or {}))
                for mount in container.get("volumeMounts", []):
                    if mount.get("name") in self.policy.admin_writable_mounts:
                        mount["readOnly"] = False
                config.worker_extra_container_config = container
            return options, config

    return ProjectKubeBackend
