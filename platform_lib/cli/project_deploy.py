"""``esdl project render | deploy | diff | delete``: a project's release on Kubernetes.

Added to the ``esdl project`` group by :func:`add_subcommands`; each command only parses its arguments
and calls :mod:`platform_lib.deploy`.

>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> add_subcommands(sub)
>>> sorted(sub.choices)
['delete', 'deploy', 'diff', 'render']
"""

from __future__ import annotations

import argparse

from platform_lib.cli.arguments import project_spec, text_file, writable_folder


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``render``, ``deploy``, ``diff`` and ``delete`` to the ``esdl project`` sub-parsers."""
    render = sub.add_parser(
        "render", help="write the Helm values, namespace and manifests of a project (no cluster needed)"
    )
    render.add_argument("spec", metavar="NAME|PATH", type=project_spec, help="project name or spec file")
    render.add_argument(
        "--out", metavar="DIR", type=writable_folder, help="folder to write to (default: <state>/deploy/NAME)"
    )
    render.add_argument(
        "--shared-catalog",
        metavar="PATH",
        type=text_file,
        help="shared catalog file (default: catalog/esdl.yaml)",
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="also check the manifests against the Kubernetes schemas and the subchart values against the"
        " upstream charts' schemas (../shared/upstream or ESDL_UPSTREAM_DIR)",
    )
    render.add_argument("--dry-run", action="store_true", help="check and print the values; write nothing")
    render.set_defaults(func=run_render)

    deploy = sub.add_parser("deploy", help="create the namespace, check Secrets, helm upgrade --install")
    deploy.add_argument("spec", metavar="NAME|PATH", type=project_spec, help="project name or spec file")
    deploy.add_argument(
        "--dry-run", action="store_true", help="print the plan; change nothing on the cluster"
    )
    _values_option(
        deploy, "extra values layered on top (site settings: ingress, TLS, node selectors); repeatable"
    )
    deploy.add_argument("--kube-context", metavar="NAME", help="kubeconfig context (default: current)")
    deploy.set_defaults(func=run_deploy)

    diff = sub.add_parser(
        "diff",
        help="show how the rendered values and objects differ from the deployed release; exit 0 same, 1 different,"
        " 2 cluster not read",
    )
    diff.add_argument("spec", metavar="NAME|PATH", type=project_spec, help="project name or spec file")
    _values_option(diff, "the extra values deploy gets")
    diff.add_argument("--kube-context", metavar="NAME", help="kubeconfig context (default: current)")
    diff.add_argument(
        "--last-render",
        action="store_true",
        help="compare with the last `render` on disk instead of the cluster (values only)",
    )
    diff.add_argument(
        "--dry-run", action="store_true", help="accepted for symmetry: diff never changes anything"
    )
    diff.set_defaults(func=run_diff)

    delete = sub.add_parser("delete", help="helm uninstall the project's release (team storage is kept)")
    delete.add_argument("spec", metavar="NAME|PATH", type=project_spec, help="project name or spec file")
    delete.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    delete.add_argument(
        "--delete-namespace",
        action="store_true",
        help="also delete the namespace, with the team storage claim",
    )
    delete.add_argument("--kube-context", metavar="NAME", help="kubeconfig context (default: current)")
    delete.set_defaults(func=run_delete)


def _values_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``-f/--values FILE`` (repeatable) of ``deploy`` and ``diff``: extra values files, layered in order."""
    parser.add_argument(
        "-f", "--values", action="append", default=[], type=text_file, metavar="FILE", help=help
    )


def run_render(args: argparse.Namespace) -> int:
    from platform_lib.projects import load_project

    """Write (or with ``--dry-run`` print) the release files; with ``--check`` run the offline checks."""
    import yaml

    from platform_lib.deploy.chart import check_values, render_manifests, validate_manifests
    from platform_lib.deploy.release import write_release
    from platform_lib.deploy.values import namespace_for, release_name, render_values

    spec = load_project(args.spec)
    values = render_values(spec, shared_catalog=args.shared_catalog)
    failed = 0
    if args.check:
        docs = render_manifests(values, release=release_name(spec), namespace=namespace_for(spec))
        problems = validate_manifests(docs)
        for chart, found in check_values(values).items():
            problems += [f"{chart}: {p}" for p in found]
        for problem in problems:
            print(f"problem: {problem}")
        failed = 1 if problems else 0
        print(f"checked {len(docs)} manifests and the values of 3 charts: {len(problems)} problem(s)")
    if args.dry_run:
        print(yaml.safe_dump(values, sort_keys=False, width=110))
        return failed
    files = write_release(spec, args.out, shared_catalog=args.shared_catalog)
    for kind, path in files.items():
        print(f"wrote {kind:<9} {path}")
    return failed


def run_deploy(args: argparse.Namespace) -> int:
    from platform_lib.deploy.release import deploy
    from platform_lib.projects import load_project

    return deploy(
        load_project(args.spec),
        dry_run=args.dry_run,
        extra_values=args.values,
        kube_context=args.kube_context,
    )


def run_diff(args: argparse.Namespace) -> int:
    from platform_lib.deploy.release import diff
    from platform_lib.projects import load_project

    return diff(
        load_project(args.spec),
        extra_values=args.values,
        kube_context=args.kube_context,
        last_render=args.last_render,
    )


def run_delete(args: argparse.Namespace) -> int:
    from platform_lib.deploy.release import delete
    from platform_lib.projects import load_project

    return delete(
        load_project(args.spec),
        dry_run=args.dry_run,
        delete_namespace=args.delete_namespace,
        kube_context=args.kube_context,
    )
