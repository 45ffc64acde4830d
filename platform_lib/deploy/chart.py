"""The chart, offline: render it with Helm's own engine, check what each subchart receives, lint it.

Helm's Go SDK (``helm-python-sdk``) renders ``helm/esdl-project``'s own templates even when the two
upstream subcharts are not downloaded (there is no network on CI); what the subcharts receive -- the
``jupyterhub:`` and ``dask-gateway:`` blocks, coalesced with the subchart's defaults as Helm does -- is
checked against their published values schemas, kept beside the repository in ``../shared/upstream``
(``ESDL_UPSTREAM_DIR`` names another place).

>>> from platform_lib.deploy.values import render_values
>>> from platform_lib.projects import load_project
>>> docs = render_manifests(render_values(load_project("demo")), release="demo", namespace="esdl-demo")
>>> sorted({d["kind"] for d in docs})
['ConfigMap', 'LimitRange', 'NetworkPolicy', 'PersistentVolumeClaim', 'ResourceQuota']
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from platform_lib.deploy.values import CHART_DIR
from platform_lib.errors import EsdlError, import_extra
from platform_lib.paths import repo_root

__all__ = [
    "SUBCHARTS",
    "check_values",
    "kubernetes_versions",
    "lint_chart",
    "load_chart",
    "merged_values",
    "render_manifests",
    "subchart_values",
    "upstream_dir",
    "validate_manifests",
]

#: subchart name -> (folder in the upstream directory, release version)
SUBCHARTS: dict[str, tuple[str, str]] = {
    "jupyterhub": ("jupyterhub-chart-4.4.0", "4.4.0"),
    "dask-gateway": ("dask-gateway-chart-2026.3.0", "2026.3.0"),
}


def _helm() -> Any:
    return import_extra("helm_python", "deploy", "rendering the Helm chart")


def load_chart(chart_dir: str | os.PathLike[str] = CHART_DIR) -> Any:
    """The chart as a ``helm_python.Chart`` (helm-python-sdk, from the ``deploy`` extra)."""
    return _helm().Chart.load(str(chart_dir))


def merged_values(
    values: Mapping[str, Any] | None = None, chart_dir: str | os.PathLike[str] = CHART_DIR
) -> dict:
    """The chart's values.yaml coalesced with ``values`` by Helm (what an install would use).

    >>> merged_values({"quota": {"cpu": "8"}})["quota"]["cpu"]
    '8'
    """
    return load_chart(chart_dir).merge_values(dict(values or {}))


def render_manifests(
    values: Mapping[str, Any] | None,
    *,
    release: str,
    namespace: str,
    chart_dir: str | os.PathLike[str] = CHART_DIR,
) -> list[dict[str, Any]]:
    """The chart's own objects, rendered by Helm's template engine, as parsed YAML documents.

    The chart's values schema is checked first (Helm does so on render); a bad value raises
    :class:`EsdlError` with Helm's message, which names the key.
    """
    helm = _helm()
    chart = load_chart(chart_dir)
    try:
        rendered = chart.render(dict(values or {}), name=release, namespace=namespace)
    except (helm.HelmValuesError, helm.HelmRenderError) as exc:
        raise EsdlError(f"the chart {Path(chart_dir).name} refused these values: {exc}") from None
    docs = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions manifests are checked against: 1.32 and the newest kubernetes-validate ships."""
    kv = import_extra("kubernetes_validate", "deploy", "checking manifests")
    newest = ".".join(kv.latest_version().split(".")[:2])
    return sorted({"1.32", newest}, key=lambda v: tuple(int(p) for p in v.split(".")))


def validate_manifests(docs: Iterable[Mapping[str, Any]], versions: Iterable[str] | None = None) -> list[str]:
    """Problems of ``docs`` against the Kubernetes OpenAPI schemas (strict: unknown fields are errors).

    >>> validate_manifests([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}])[0]
    "ConfigMap/x (Kubernetes 1.32): Additional properties are not allowed ('dta' was unexpected)"
    """
    kv = import_extra("kubernetes_validate", "deploy", "checking manifests")
    problems = []
    for version in versions or kubernetes_versions():
        for doc in docs:
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            try:
                kv.validate(dict(doc), version, strict=True)
            except kv.ValidationError as exc:
                problems.append(f"{name} (Kubernetes {version}): {exc.message}")
    return problems


def upstream_dir() -> Path:
    """The upstream charts' schemas and defaults: ``ESDL_UPSTREAM_DIR`` or ``<repo>/../shared/upstream``."""
    env = os.environ.get("ESDL_UPSTREAM_DIR")
    return Path(env) if env else repo_root().parent / "shared" / "upstream"


def _upstream(subchart: str, upstream: Path | None) -> Path:
    if subchart not in SUBCHARTS:
        raise EsdlError(f"unknown subchart {subchart!r}; allowed: {', '.join(SUBCHARTS)}")
    folder = (upstream or upstream_dir()) / SUBCHARTS[subchart][0]
    if not (folder / "values.yaml").is_file():
        raise EsdlError(
            f"the upstream {subchart} chart data is missing at {folder}; set ESDL_UPSTREAM_DIR to the folder"
            " that holds jupyterhub-chart-4.4.0/ and dask-gateway-chart-2026.3.0/"
        )
    return folder


def _metadata_chart(subchart: str, upstream: Path | None, target: Path) -> Path:
    """A chart folder with the upstream chart's metadata, defaults and schema (no templates)."""
    src = _upstream(subchart, upstream)
    target.mkdir(parents=True, exist_ok=True)
    meta = yaml.safe_load((src / "Chart.yaml").read_text())
    meta["version"] = SUBCHARTS[subchart][1]  # the release tag (the source file carries a placeholder)
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    shutil.copyfile(src / "values.yaml", target / "values.yaml")
    schema = yaml.safe_load((src / "values.schema.yaml").read_text())
    import json

    (target / "values.schema.json").write_text(json.dumps(schema, indent=1))
    return target


def subchart_values(
    values: Mapping[str, Any] | None,
    subchart: str,
    upstream: Path | None = None,
    chart_dir: str | os.PathLike[str] = CHART_DIR,
) -> dict[str, Any]:
    """What ``subchart`` would receive: its block of the merged values over its own defaults (Helm's merge).

    >>> subchart_values({}, "dask-gateway")["gateway"]["auth"]["type"]
    'jupyterhub'
    """
    block = copy.deepcopy(merged_values(values, chart_dir).get(subchart) or {})
    with tempfile.TemporaryDirectory(prefix=f"esdl-{subchart}-") as tmp:
        chart = _metadata_chart(subchart, upstream, Path(tmp) / subchart)
        return _helm().Chart.load(str(chart)).merge_values(block)


def check_values(values: Mapping[str, Any] | None, upstream: Path | None = None) -> dict[str, list[str]]:
    """Schema problems per chart: ``esdl-project`` (its values.schema.json) and each subchart (upstream).

    >>> check_values({})
    {'esdl-project': [], 'jupyterhub': [], 'dask-gateway': []}
    """
    jsonschema = import_extra("jsonschema", "deploy", "checking values against the upstream schemas")
    helm = _helm()
    problems: dict[str, list[str]] = {"esdl-project": []}
    try:
        load_chart().validate_schema(dict(values or {}))
    except helm.HelmValuesError as exc:
        problems["esdl-project"].append(str(exc))
    for subchart in SUBCHARTS:
        schema = yaml.safe_load((_upstream(subchart, upstream) / "values.schema.yaml").read_text())
        validator = jsonschema.Draft7Validator(schema)
        received = subchart_values(values, subchart, upstream)
        problems[subchart] = [
            f"{subchart}.{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(received), key=lambda e: list(map(str, e.absolute_path)))
        ]
    return problems


def lint_chart(
    values: Mapping[str, Any] | None = None,
    upstream: Path | None = None,
    chart_dir: str | os.PathLike[str] = CHART_DIR,
) -> dict[str, Any]:
    """``helm lint --strict --with-subcharts`` on a copy of the chart whose ``charts/`` holds the upstream
    charts' metadata, defaults and schemas (their templates cannot be downloaded offline), so Helm itself
    also checks what each subchart receives. Returns Helm's report (``errors``, ``messages``)."""
    with tempfile.TemporaryDirectory(prefix="esdl-lint-") as tmp:
        copy_dir = Path(tmp) / Path(chart_dir).name
        shutil.copytree(chart_dir, copy_dir, ignore=shutil.ignore_patterns("charts", "*.tgz"))
        for subchart in SUBCHARTS:
            _metadata_chart(subchart, upstream, copy_dir / "charts" / subchart)
        return _helm().lint(str(copy_dir), dict(values or {}), strict=True, with_subcharts=True)
