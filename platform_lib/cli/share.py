"""``esdl share``: publish a notebook to the team folder (outputs stripped) or list what was shared."""

from __future__ import annotations

import argparse

from platform_lib import team
from platform_lib.errors import EsdlError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``esdl share ...`` to the parser."""
    p = sub.add_parser(
        "share",
        help="share a notebook with the team (outputs stripped), or list shared notebooks",
        description="Copy NOTEBOOK to the team folder (ESDL_TEAM_DIR/notebooks) with its outputs, execution "
        "counts and widget state stripped; the original is not changed. --list shows what the team shared.",
    )
    p.add_argument("notebook", nargs="?", help="the .ipynb file to share")
    p.add_argument("--name", help="file name in the team folder (default: the notebook's own)")
    p.add_argument("--overwrite", action="store_true", help="replace a shared notebook of the same name")
    p.add_argument("--list", action="store_true", help="list the team's shared notebooks")
    p.set_defaults(func=cmd_share)


def cmd_share(args: argparse.Namespace) -> int:
    if args.list:
        if args.notebook:
            raise EsdlError("give either NOTEBOOK (to share it) or --list, not both.")
        shared = team.list_shared_notebooks()
        if not shared:
            print(f"no notebooks shared yet in {team.team_notebooks_dir()}")
        for nb in shared:
            print(f"{nb['name']:40s} {nb['shared_by']:16s} {nb['shared_at']}")
        return 0
    if not args.notebook:
        raise EsdlError("name the notebook to share (esdl share analysis.ipynb) or pass --list.")
    path = team.share_notebook(args.notebook, name=args.name, overwrite=args.overwrite)
    print(f"shared {args.notebook} -> {path} (outputs stripped)")
    return 0
