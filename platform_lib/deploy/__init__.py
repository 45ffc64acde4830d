"""Kubernetes deployment of a project: spec -> Helm values -> a release of ``helm/esdl-project``.

- :mod:`platform_lib.deploy.values`: :func:`render_values` (what the spec decides), secret references.
- :mod:`platform_lib.deploy.chart`: render the chart with Helm's own engine (``helm-python-sdk``), the
  values each upstream subchart receives, lint.
- :mod:`platform_lib.deploy.release`: write the values and namespace manifest, deploy, diff, delete.

Only ``values`` is imported here; the others need the ``deploy`` extra (helm-python-sdk, kubernetes).

>>> from platform_lib.deploy import render_values, namespace_for
>>> from platform_lib.projects import load_project
>>> namespace_for(load_project("demo"))
'esdl-demo'
"""

from platform_lib.deploy.values import (
    CHART_DIR,
    ENV_SECRET,
    SecretRef,
    derived_quota,
    namespace_for,
    release_name,
    render_values,
    secret_refs,
)

__all__ = [
    "CHART_DIR",
    "ENV_SECRET",
    "SecretRef",
    "derived_quota",
    "namespace_for",
    "release_name",
    "render_values",
    "secret_refs",
]
