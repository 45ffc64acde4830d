"""Dask Gateway helpers for notebooks: a cluster of N workers that is always shut down, and clean closing.

In a session of the platform ``dask_gateway.Gateway()`` needs no arguments (the hub sets
``DASK_GATEWAY__ADDRESS``, ``DASK_GATEWAY__PROXY_ADDRESS`` and the token). :func:`gateway_cluster`
adds what every notebook repeats: scale, wait for the workers, and shut the cluster down on exit even
after an error, so no idle cluster is left holding the project's worker quota::

    from platform_lib.gateway import gateway_cluster
    with gateway_cluster(workers=2) as (cluster, client):
        value = cube["air_temperature_2m"].mean().compute()

The dashboard link of a gateway cluster answers without a login (dask-gateway's own route; the random
cluster name is its only secret): do not share it. The options are the project's (``worker_cores``,
``worker_memory``, ``idle_timeout_minutes``, ``image``;
see ``Gateway().cluster_options()``), the same on one machine and on Kubernetes
(``platform_lib/gateway_policy.py``). Needs the hub extra (``pip install 'esdl-platform[hub]'``).

>>> gw = open_gateway("http://127.0.0.1:9/services/dask-gateway", proxy_address="gateway://127.0.0.1:9", token="t")
>>> gw.address, type(gw.auth).__name__, gw.auth.api_token
('http://127.0.0.1:9/services/dask-gateway', 'JupyterHubAuth', 't')
>>> close_gateway(gw)
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator
from typing import Any

from platform_lib.errors import EsdlError


def _dask_gateway():
    try:
        import dask_gateway
    except ImportError:
        raise EsdlError("Dask Gateway is not installed: pip install 'esdl-platform[hub]'") from None
    return dask_gateway


def open_gateway(
    address: str | None = None, *, proxy_address: str | None = None, token: str | None = None
) -> Any:
    """A ``dask_gateway.Gateway``: from the session's environment, or for ``address`` with a hub ``token``."""
    dg = _dask_gateway()
    kwargs: dict[str, Any] = {}
    if address:
        kwargs["address"] = address
    if proxy_address:
        kwargs["proxy_address"] = proxy_address
    if token:
        kwargs["auth"] = dg.JupyterHubAuth(api_token=token)
    return dg.Gateway(**kwargs)


def close_gateway(gateway: Any) -> None:
    """Close a ``Gateway`` once (dask-gateway 2026.3 closes again on garbage collection and complains
    there once its loop has stopped; this closes it and skips that second close)."""
    with contextlib.suppress(RuntimeError):
        gateway.close()
    _skip_second_close(gateway)


def _skip_second_close(gateway: Any) -> None:
    with contextlib.suppress(AttributeError):
        del gateway._loop_runner  # Gateway.__del__ closes only when this attribute exists


@contextlib.contextmanager
def gateway_cluster(
    workers: int = 2, *, gateway: Any = None, timeout: float = 180.0, **options: Any
) -> Iterator[tuple[Any, Any]]:
    """A new Gateway cluster scaled to ``workers`` (waited for), with its ``distributed.Client``.

    The cluster is shut down and the client closed on exit, also after an error. ``options`` are the
    project's cluster options, e.g. ``worker_memory="2Gi"``.
    """
    own = gateway is None
    gw = open_gateway() if own else gateway
    cluster = None
    client = None
    try:
        try:
            cluster = gw.new_cluster(**options) if options else gw.new_cluster()
        except Exception:
            # a failed new_cluster leaves a half-built GatewayCluster in a reference cycle; collect it
            # here, so its __del__ does not run later on dask-gateway's event-loop thread and deadlock it
            gc.collect()
            raise
        cluster.scale(workers)
        client = cluster.get_client()
        if workers:
            client.wait_for_workers(workers, timeout=timeout)
        yield cluster, client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.shutdown()  # also closes the cluster's own Gateway object
            _skip_second_close(cluster.gateway)
        if own:
            close_gateway(gw)


@contextlib.contextmanager
def session_cluster(workers: int = 2, *, timeout: float = 180.0) -> Iterator[tuple[Any, Any]]:
    """A Dask cluster of ``workers`` for a notebook, with its client, shut down on exit: on the project's
    gateway inside a platform session (``DASK_GATEWAY__ADDRESS`` is set; :func:`gateway_cluster`), else a
    ``distributed.LocalCluster`` of one thread per worker on this machine, so one notebook runs in both.

    >>> with session_cluster(workers=1) as (cluster, client):  # no gateway here: a local cluster
    ...     type(cluster).__name__, client.submit(sum, [1, 2]).result()
    ('LocalCluster', 3)
    """
    import os

    if os.environ.get("DASK_GATEWAY__ADDRESS"):
        with gateway_cluster(workers, timeout=timeout) as (cluster, client):
            yield cluster, client
        return
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
    with local as cluster, Client(cluster) as client:
        yield cluster, client


def server_proxied_link(link: str, service_prefix: str | None = None) -> str:
    """A gateway cluster's dashboard ``link`` through the person's own server (jupyter-server-proxy's
    ``proxy/PORT/...``), when the gateway answers on this machine; any other link unchanged.

    JupyterLab's Dask sidebar (dask-labextension 7) shows a cluster it started through its own
    ``dask/dashboard/<id>`` route, which drops the path of the link: a gateway dashboard lives under
    ``/services/dask-gateway/clusters/<name>/``, so the sidebar would stay "not connected". A link
    through the server's own proxy is used as it is. ``service_prefix`` is the server's
    ``JUPYTERHUB_SERVICE_PREFIX`` (read from the environment when not given).

    >>> server_proxied_link("http://localhost:8000/services/dask-gateway/clusters/p.ab/status", "/user/ada/")
    'http://localhost:8000/user/ada/proxy/8000/services/dask-gateway/clusters/p.ab/status'
    >>> server_proxied_link("/services/dask-gateway/clusters/p.ab/status", "/user/ada/")
    '/services/dask-gateway/clusters/p.ab/status'
    """
    import os
    from urllib.parse import urlsplit

    prefix = service_prefix if service_prefix is not None else os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    parts = urlsplit(link)
    if not prefix or parts.hostname not in ("localhost", "127.0.0.1") or not parts.port:
        return link
    return f"{parts.scheme}://{parts.netloc}{prefix.rstrip('/')}/proxy/{parts.port}{parts.path}"


def sidebar_cluster(*args: Any, **kwargs: Any) -> Any:
    """The cluster JupyterLab's Dask sidebar starts (dask-labextension's ``labextension.factory``): a
    ``dask_gateway.GatewayCluster`` on the project's gateway whose ``dashboard_link`` goes through the
    person's own server (:func:`server_proxied_link`), so the sidebar shows its plots.

    >>> sidebar_cluster.__name__  # the session's DASK_LABEXTENSION__FACTORY__CLASS
    'sidebar_cluster'
    """
    return _sidebar_cluster_class()(*args, **kwargs)


@functools.cache
def _sidebar_cluster_class() -> type:
    dg = _dask_gateway()

    class GatewayCluster(dg.GatewayCluster):  # the sidebar lists its clusters by class name
        # GatewayCluster sets ``dashboard_link`` as a plain attribute: keep what it sets, hand out the proxied
        @property
        def dashboard_link(self) -> str | None:
            link = self.__dict__.get("_gateway_dashboard_link")
            return server_proxied_link(link) if link else link

        @dashboard_link.setter
        def dashboard_link(self, link: str | None) -> None:
            self.__dict__["_gateway_dashboard_link"] = link

    return GatewayCluster
