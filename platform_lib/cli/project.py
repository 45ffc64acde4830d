"""``esdl project``: check and list project specs (``projects/<name>.yaml``); render, deploy, diff
and delete their Kubernetes releases (:mod:`platform_lib.cli.project_deploy`).

>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> register(sub)
>>> sorted(sub.choices["project"]._subparsers._group_actions[0].choices)
['delete', 'deploy', 'diff', 'health', 'list', 'render', 'validate']
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from platform_lib.cli.arguments import http_url, project_spec
from platform_lib.cli.project_deploy import add_subcommands as add_deploy_subcommands
from platform_lib.errors import EsdlError

if TYPE_CHECKING:  # the spec models (pydantic) load only when a command needs them
    from platform_lib.projects import ProjectSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("project", help="check and list project specs (projects/<name>.yaml)")
    sub = parser.add_subparsers(dest="project_command", metavar="SUBCOMMAND", required=True)

    validate = sub.add_parser("validate", help="validate specs by name or path (all in projects/ by default)")
    validate.add_argument(
        "specs", nargs="*", metavar="NAME|PATH", type=project_spec, help="project names or spec files"
    )
    validate.set_defaults(func=run_validate)

    listing = sub.add_parser("list", help="list the project specs in projects/")
    listing.set_defaults(func=run_list)

    health = sub.add_parser(
        "health",
        help="check a project's hub end to end: a server, a catalog cube, a 2-worker gateway cluster (exit 1 on"
        " the first failure)",
    )
    health.add_argument("spec", metavar="NAME|PATH", type=project_spec, help="project name or spec file")
    where = health.add_mutually_exclusive_group()
    where.add_argument(
        "--local", action="store_true", help="the embedded platform (default when it runs here)"
    )
    where.add_argument("--kubernetes", action="store_true", help="the project's release on Kubernetes")
    health.add_argument(
        "--url",
        type=http_url,
        help="the hub's public address, http(s)://HOST[:PORT] (Kubernetes; default: the proxy-public Service's)",
    )
    health.add_argument("--kube-context", metavar="NAME", help="kubeconfig context (default: current)")
    health.set_defaults(func=run_health)

    add_deploy_subcommands(sub)  # render, deploy, diff, delete: platform_lib/cli/project_deploy.py


def _summary(spec: ProjectSpec) -> str:
    return (
        f"{spec.name}: {len(spec.admins)} admin(s), {len(spec.members)} member(s), login {spec.login.method},"
        f" {len(spec.profiles)} profile(s), up to {spec.dask.max_workers_per_user} dask workers per user"
    )


def run_validate(args: argparse.Namespace) -> int:
    """Validate each spec; print ``ok`` or every problem; exit 1 if any spec is invalid."""
    from platform_lib.projects import list_projects, load_project, projects_dir

    names = args.specs or list_projects()
    if not names:
        raise EsdlError(f"no project specs in {projects_dir()}; pass a name or a path")
    failed = 0
    for name in names:
        try:
            spec = load_project(name)
        except EsdlError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        print(f"ok  {spec.source}  ({_summary(spec)})")
    if failed and len(names) > 1:  # one spec's error already says it is invalid
        print(f"{failed} of {len(names)} spec(s) invalid", file=sys.stderr)
    return 1 if failed else 0


def run_list(args: argparse.Namespace) -> int:
    """One line per spec in ``projects/``: name, title, people, login; invalid specs are flagged."""
    from platform_lib.projects import list_projects, load_project, projects_dir

    names = list_projects()
    if not names:
        print(f"no project specs in {projects_dir()}")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        try:
            spec = load_project(name)
        except EsdlError as exc:
            problems = getattr(exc, "problems", [str(exc)])
            print(
                f"{name:<{width}}  INVALID ({len(problems)} problem(s); run `esdl project validate {name}`)"
            )
            continue
        print(f"{name:<{width}}  {spec.title}  [{len(spec.users)} people, login {spec.login.method}]")
    return 0


def run_health(args: argparse.Namespace) -> int:
    from platform_lib.health import check_health, kubernetes_target, local_target
    from platform_lib.local.supervisor import status
    from platform_lib.projects import load_project

    spec = load_project(args.spec)
    local = args.local or (not args.kubernetes and any(s.state == "running" for s in status([spec.name])))
    target = local_target(spec.name) if local else kubernetes_target(spec, args.kube_context, args.url)
    return check_health(target)
