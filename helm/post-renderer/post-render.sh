#!/bin/sh
# Rendered manifests in, the same with the dask-gateway pods hardened out (platform_lib/deploy/harden.py).
# `esdl project deploy` names its own esdl-post-render in ESDL_POST_RENDER; otherwise the one on PATH.
exec "${ESDL_POST_RENDER:-esdl-post-render}"
