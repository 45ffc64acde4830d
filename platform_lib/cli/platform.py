"""``esdl up`` / ``esdl down`` / ``esdl status``: the embedded platform of one or more projects.

>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> register(sub)
>>> sorted(sub.choices)
['down', 'status', 'up']
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start (or repair) the embedded platform of projects: hub, proxy, dask-gateway",
        description="Start each project's JupyterHub, configurable-http-proxy and Dask Gateway, or restart"
        " the components that died. Returns when every login page answers (or, with --foreground, watches"
        " them until Ctrl-C and then stops everything).",
    )
    up.add_argument("--project", "-p", action="append", metavar="NAME|PATH",
                    help="project spec name or path (repeat for several; default: demo)")  # fmt: skip
    up.add_argument("--port", type=int, default=None,
                    help="web port of the (single) project; 0 = any free port (default: kept from the last"
                         " start, else the first free port from 8000)")  # fmt: skip
    up.add_argument("--ip", default="127.0.0.1", help="address the web port listens on (default 127.0.0.1)")
    up.add_argument("--foreground", action="store_true", help="keep running; Ctrl-C stops everything")
    up.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    up.set_defaults(func=run_up)

    down = subparsers.add_parser("down", help="stop the embedded platform (all projects by default)")
    down.add_argument(
        "--project", "-p", action="append", metavar="NAME", help="only this project (repeatable)"
    )
    down.set_defaults(func=run_down)

    status = subparsers.add_parser("status", help="components, users, clusters and passwords of each project")
    status.add_argument(
        "--project", "-p", action="append", metavar="NAME", help="only this project (repeatable)"
    )
    status.add_argument("--hide-passwords", action="store_true", help="do not print the generated passwords")
    status.set_defaults(func=run_status)


def _project_names(values: list[str] | None) -> list[str]:
    from platform_lib.projects import project_path

    # a path is allowed too: the platform is keyed by the spec's file name (== its name)
    return [project_path(v).stem for v in values] if values else []


def run_up(args: argparse.Namespace) -> int:
    from platform_lib.local import run_foreground, up
    from platform_lib.local.configs import kubernetes_only_settings, ungenerated_shared_cubes

    names = args.project or ["demo"]
    prepared = up(names, port=args.port, host=args.ip, log_level=args.log_level)
    for p in prepared:
        spec = p.settings.spec
        for note in kubernetes_only_settings(spec):
            print(f"  note: {spec.name}: {note}")
        print(f"  {spec.name}: log in at {p.url} as one of {', '.join(spec.users)}; passwords: `esdl status`")
        if p.new_logins:
            print(f"  {spec.name}: new logins (kept in the state folder, owner-only):")
            for user, password in p.new_logins.items():
                print(f"    {user:<16} {password}")
        missing = ungenerated_shared_cubes(p.settings)
        if missing:
            print(f"  note: {', '.join(missing)} not generated yet; run `esdl cubes generate` (make up does)")
    if args.foreground:
        run_foreground(prepared)
    return 0


def run_down(args: argparse.Namespace) -> int:
    from platform_lib.local import down

    down(_project_names(args.project) or None)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from platform_lib.local import status

    reports = status(_project_names(args.project) or None)
    if not reports:
        print("no project has been started yet (esdl up --project NAME)")
        return 0
    degraded = False
    for r in reports:
        degraded |= r.state == "degraded"
        print(f"{r.name}: {r.state}  {r.url or ''}")
        for comp, state in r.components.items():
            pid = f" (pid {r.pids[comp]})" if comp in r.pids else ""
            hint = "  <- run `esdl up` to restart it" if state in ("dead", "not answering") else ""
            print(f"  {comp:<8} {state}{pid}{hint}")
        print(f"  servers  {', '.join(r.user_servers) or 'none'}")
        print(f"  clusters {r.clusters}")
        if r.credentials:
            print("  logins (state folder, owner-only):")
            for user, password in r.credentials.items():
                print(f"    {user:<16} {'********' if args.hide_passwords else password}")
        print(f"  state    {r.state_dir}")
    return 1 if degraded else 0
