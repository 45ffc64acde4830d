"""``esdl up`` / ``esdl down`` / ``esdl status`` / ``esdl passwd``: the embedded platform of one or more
projects.

>>> import argparse
>>> sub = argparse.ArgumentParser().add_subparsers()
>>> register(sub)
>>> sorted(sub.choices)
['down', 'passwd', 'status', 'up']
"""

from __future__ import annotations

import argparse

from platform_lib.cli.arguments import listen_address, port, project_spec


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser(
        "up",
        help="start (or repair) the embedded platform of projects: hub, proxy, dask-gateway",
        description="Start each project's JupyterHub, configurable-http-proxy and Dask Gateway, or restart"
        " the components that died. Returns when every login page answers (or, with --foreground, watches"
        " them until Ctrl-C and then stops everything).",
    )
    up.add_argument("--project", "-p", action="append", metavar="NAME|PATH", type=project_spec,
                    help="project spec name or path (repeat for several; default: demo)")  # fmt: skip
    up.add_argument("--port", type=port, default=None,
                    help="web port of the (single) project, 0-65535; 0 = any free port (default: kept from the"
                         " last start, else the first free port from 8000)")  # fmt: skip
    up.add_argument("--ip", type=listen_address, default="127.0.0.1",
                    help="IPv4 address of this machine the web port listens on: 127.0.0.1 (this machine"
                         " only, the default), 0.0.0.0 (every interface) or one of its addresses")  # fmt: skip
    up.add_argument("--foreground", action="store_true", help="keep running; Ctrl-C stops everything")
    up.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    up.add_argument(
        "--shared-account",
        action="store_true",
        help="not root: run a project of several people under this one OS account anyway (each member can"
        " then read every other member's files and tokens)",
    )
    up.set_defaults(func=run_up)

    down = subparsers.add_parser("down", help="stop the embedded platform (all projects by default)")
    _only_projects(down)
    down.set_defaults(func=run_down)

    status = subparsers.add_parser(
        "status", help="components, servers, clusters and accounts of each project"
    )
    _only_projects(status)
    status.set_defaults(func=run_status)

    passwd = subparsers.add_parser(
        "passwd",
        help="give a person of a project a new password (printed once; only its hash is kept)",
        description="Make a new password for USER of the project's embedded platform and print it once. Only"
        " its bcrypt hash is kept; the running hub takes it at the person's next login.",
    )
    passwd.add_argument("user", metavar="USER", help="the person (as listed in the spec)")
    passwd.add_argument(
        "--project",
        "-p",
        default="demo",
        metavar="NAME",
        type=project_spec,
        help="the project (default: demo)",
    )
    passwd.set_defaults(func=run_passwd)


def _only_projects(parser: argparse.ArgumentParser) -> None:
    """``--project NAME`` (repeatable) of ``down`` and ``status``: only these projects."""
    parser.add_argument(
        "--project",
        "-p",
        action="append",
        metavar="NAME",
        type=project_spec,
        help="only this project (repeatable)",
    )


def _project_names(values: list[str] | None) -> list[str]:
    from platform_lib.projects import project_path

    # a path is allowed too: the platform is keyed by the spec's file name (== its name)
    return [project_path(v).stem for v in values] if values else []


def run_up(args: argparse.Namespace) -> int:
    from platform_lib.local import run_foreground, up
    from platform_lib.local.configs import kubernetes_only_settings, ungenerated_shared_cubes

    names = args.project or ["demo"]
    prepared = up(
        names, port=args.port, host=args.ip, log_level=args.log_level, shared_account=args.shared_account
    )
    for p in prepared:
        spec = p.settings.spec
        for note in kubernetes_only_settings(spec, accounts=bool(p.settings.accounts)):
            print(f"  note: {spec.name}: {note}")
        print(f"  {spec.name}: log in at {p.url} as one of {', '.join(spec.users)}")
        if p.new_logins:
            print(
                f"  {spec.name}: new logins (shown once: only their hashes are kept; `esdl passwd USER` resets one):"
            )
            for user, password in p.new_logins.items():
                print(login_line(user, password))
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

    names = _project_names(args.project)
    reports = status(names or None)
    for name in sorted(set(names) - {r.name for r in reports}):
        print(f"{name}: never started here (esdl up --project {name})")
    if not reports and not names:
        print("no project has been started yet (esdl up --project NAME)")
    degraded = False
    for r in reports:
        degraded |= r.state == "degraded"
        print(f"{r.name}: {r.state}  {r.url or ''}")
        for comp, state in r.components.items():
            pid = f" (pid {r.pids[comp]})" if comp in r.pids else ""
            hint = "  <- run `esdl up` to restart it" if state in ("dead", "not answering") else ""
            print(f"  {comp:<8} {state}{pid}{hint}")
        print(f"  servers  {', '.join(r.user_servers) or 'none'}")
        if r.dead_servers:
            print(
                f"  dead     servers of {', '.join(r.dead_servers)}: the hub lists them but their processes are gone"
                " (each restarts at its person's next visit; an admin can stop it from the hub's admin page)"
            )
        print(f"  clusters {r.clusters}")
        if r.dead_clusters:
            print(
                f"  dead     clusters {', '.join(r.dead_clusters)}: the gateway lists them but their schedulers are"
                " gone (their owners stop them with cluster.shutdown(), or the gateway marks them failed)"
            )
        if r.accounts:
            print(
                f"  accounts {', '.join(r.accounts)}  (passwords are shown once; `esdl passwd USER` resets one)"
            )
        print(f"  state    {r.state_dir}")
    return 1 if degraded else 0


def run_passwd(args: argparse.Namespace) -> int:
    from platform_lib.local.layout import ProjectLayout

    project = _project_names([args.project])[0]
    layout = ProjectLayout.for_project(project)
    password = layout.reset_password(args.user)
    print(f"  {project}: new password (shown once; the hub takes it at the next login):")
    print(login_line(args.user, password))
    return 0


def login_line(user: str, password: str) -> str:
    """How ``esdl up`` and ``esdl passwd`` print a password, the one time they do.

    >>> login_line("ada", "s3cret-s3cret")
    '    ada              s3cret-s3cret'
    """
    return f"    {user:<16} {password}"


def printed_logins(text: str) -> dict[tuple[str, str], str]:
    r"""``(project, user) -> password`` from what ``esdl up`` / ``esdl passwd`` printed (for scripts and tests).

    >>> printed_logins("  demo: new logins (shown once):\n" + login_line("ada", "pw-1") + "\nnext line")
    {('demo', 'ada'): 'pw-1'}
    """
    import re

    found: dict[tuple[str, str], str] = {}
    project = None
    for line in text.splitlines():
        header = re.match(r"^  (\S+): new (?:logins|password)\b", line)
        if header:
            project = header.group(1)
            continue
        entry = re.match(r"^    (\S+) +(\S+)$", line)
        if project and entry:
            found[(project, entry.group(1))] = entry.group(2)
        elif not line.startswith("    "):
            project = None
    return found
