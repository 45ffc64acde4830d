"""The chart, offline: render it with Helm's own engine, check what each subchart receives, lint it.

Helm's Go SDK (``helm-python-sdk``) renders ``helm/esdl-project``'s own templates even when the two
upstream subcharts are not downloaded (there is no network on CI); what the subcharts receive -- the
``jupyterhub:`` and ``dask-gateway:`` blocks, coalesced with the subchart's defaults as Helm does -- is
checked against their published values schemas, kept beside the repository in ``../shared/upstream``
(``ESDL_UPSTREAM_DIR`` names another place).

>>> from platform_lib.deploy.values import render_values
>>> from platform_lib.projects import load_project
>>> docs = render_manifests(render_values(load_project("demo")), release="demo", namespace="esdl-demo")
>>> sorted({d["kind"] for d in docs})[:5]
['ConfigMap', 'LimitRange', 'NetworkPolicy', 'PersistentVolumeClaim', 'ResourceQuota']
"""

from __future__ import annotations

import copy
import hashlib
import json
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
    "chart_lock",
    "check_values",
    "custom_resource_schemas",
    "kubernetes_versions",
    "lint_chart",
    "load_chart",
    "merged_values",
    "render_manifests",
    "subchart_values",
    "umbrella_chart",
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
    subcharts: bool = False,
    upstream: Path | None = None,
) -> list[dict[str, Any]]:
    """The chart's objects, rendered by Helm's template engine, as parsed YAML documents: its own, or
    with ``subcharts`` the whole release (the upstream jupyterhub and dask-gateway charts included,
    :func:`umbrella_chart`), post-rendered as a deploy does (:mod:`platform_lib.deploy.harden`).

    The chart's values schema is checked first (Helm does so on render); a bad value raises
    :class:`EsdlError` with Helm's message, which names the key.
    """
    if subcharts:  # the whole release, post-rendered as a deploy does (deploy.harden)
        from platform_lib.deploy.harden import harden_gateway_pods

        with tempfile.TemporaryDirectory(prefix="esdl-render-") as tmp:
            umbrella = umbrella_chart(Path(tmp) / Path(chart_dir).name, upstream, chart_dir)
            docs = render_manifests(values, release=release, namespace=namespace, chart_dir=umbrella)
            return harden_gateway_pods(docs)
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


def chart_lock(chart_dir: str | os.PathLike[str] = CHART_DIR, generated: str = "2026-12-04T00:00:00Z") -> str:
    """``Chart.lock`` for the chart's dependencies as ``Chart.yaml`` declares them (exact versions), with
    the digest Helm checks (sha256 of the JSON of the declared and the locked dependencies): the file that
    ``helm dependency build`` needs to fetch exactly these subcharts. ``make chart-lock`` writes it.

    >>> chart_lock().splitlines()[-2].startswith("digest: sha256:")
    True
    """
    meta = yaml.safe_load((Path(chart_dir) / "Chart.yaml").read_text())
    deps = [
        {"name": d["name"], "version": d["version"], "repository": d["repository"]}
        for d in meta["dependencies"]
    ]
    digest = hashlib.sha256(json.dumps([deps, deps], separators=(",", ":")).encode()).hexdigest()
    lock = {"dependencies": deps, "digest": f"sha256:{digest}", "generated": generated}
    return yaml.safe_dump(lock, sort_keys=False)


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions manifests are checked against: 1.32 and the newest kubernetes-validate ships."""
    kv = import_extra("kubernetes_validate", "deploy", "checking manifests")
    newest = ".".join(kv.latest_version().split(".")[:2])
    return sorted({"1.32", newest}, key=lambda v: tuple(int(p) for p in v.split(".")))


def validate_manifests(
    docs: Iterable[Mapping[str, Any]], versions: Iterable[str] | None = None, upstream: Path | None = None
) -> list[str]:
    """Problems of ``docs`` against the Kubernetes OpenAPI schemas (strict: unknown fields are errors);
    custom resources (``IngressRoute``, ``Middleware``, ``DaskCluster``) against the upstream charts' CRDs.

    >>> validate_manifests([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}])[0]
    "ConfigMap/x (Kubernetes 1.32): Additional properties are not allowed ('dta' was unexpected)"
    >>> validate_manifests([{"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware", "metadata": {"name": "m"},
    ...                      "spec": {"stripPrefix": {"prefixes": "/x"}}}])[0]
    "Middleware/m (CRD middlewares.traefik.io): spec.stripPrefix.prefixes: '/x' is not of type 'array'"
    """
    kv = import_extra("kubernetes_validate", "deploy", "checking manifests")
    jsonschema = import_extra("jsonschema", "deploy", "checking custom resources")
    crds = custom_resource_schemas(upstream)
    problems = []
    docs = list(docs)
    for version in versions or kubernetes_versions():
        for doc in docs:
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            crd = crds.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
            if crd is not None:
                crd_name, schema = crd
                problems += [
                    f"{name} (CRD {crd_name}): {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                    for e in jsonschema.Draft7Validator(schema).iter_errors(dict(doc))
                ]
                continue
            try:
                kv.validate(dict(doc), version, strict=True)
            except kv.ValidationError as exc:
                problems.append(f"{name} (Kubernetes {version}): {exc.message}")
            except kv.SchemaNotFoundError:
                problems.append(
                    f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}"
                )
    return sorted(set(problems), key=problems.index)


def custom_resource_schemas(
    upstream: Path | None = None,
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """``(apiVersion, kind) -> (CRD name, schema)`` from the upstream charts' ``crds/`` folders.

    >>> sorted(k for _, k in custom_resource_schemas())[:2]
    ['DaskCluster', 'IngressRoute']
    """
    schemas = {}
    for subchart in SUBCHARTS:
        for path in sorted((_upstream(subchart, upstream) / "crds").glob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    schema = copy.deepcopy(version.get("schema", {}).get("openAPIV3Schema", {}))
                    schema.setdefault("properties", {}).setdefault("metadata", {"type": "object"})
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = (crd["metadata"]["name"], schema)
    return schemas


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


def _subchart(subchart: str, upstream: Path | None, target: Path) -> Path:
    """A copy of the whole upstream chart (templates, files, schema) at ``target``, with the release
    version in its ``Chart.yaml`` (the source file carries a placeholder) and its YAML schema as
    ``values.schema.json`` (Helm reads that one)."""
    src = _upstream(subchart, upstream)
    shutil.copytree(src, target, dirs_exist_ok=True)
    meta = yaml.safe_load((src / "Chart.yaml").read_text())
    meta["version"] = SUBCHARTS[subchart][1]
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    schema = yaml.safe_load((src / "values.schema.yaml").read_text())
    (target / "values.schema.json").write_text(json.dumps(schema, indent=1))
    return target


def umbrella_chart(
    target: Path, upstream: Path | None = None, chart_dir: str | os.PathLike[str] = CHART_DIR
) -> Path:
    """A copy of the project chart at ``target`` with both upstream charts, whole, in its ``charts/``: what
    ``helm dependency build`` would give, from ``../shared/upstream`` instead of the network."""
    shutil.copytree(chart_dir, target, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    for subchart in SUBCHARTS:
        _subchart(subchart, upstream, target / "charts" / subchart)
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
        chart = _subchart(subchart, upstream, Path(tmp) / subchart)
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
    """``helm lint --strict --with-subcharts`` on the umbrella chart (:func:`umbrella_chart`), so Helm itself
    also checks what each subchart receives. Returns Helm's report (``errors``, ``messages``)."""
    with tempfile.TemporaryDirectory(prefix="esdl-lint-") as tmp:
        copy_dir = umbrella_chart(Path(tmp) / Path(chart_dir).name, upstream, chart_dir)
        return _helm().lint(str(copy_dir), dict(values or {}), strict=True, with_subcharts=True)
