"""``esdl cubes regional``: make a regional cube for the team, list or remove team cubes.

The lead's ``platform_lib/cli/cubes.py`` calls :func:`register_regional` with its sub-parsers.
"""

from __future__ import annotations

import argparse

from platform_lib.cli.arguments import add_bbox_option, positive_number
from platform_lib.errors import EsdlError


def register_regional(cubes: argparse._SubParsersAction) -> None:
    """Add ``esdl cubes regional ...`` to the ``esdl cubes`` sub-parsers."""
    p = cubes.add_parser(
        "regional",
        help="make a regional cube for the team (subset, coarsen, register); list or remove team cubes",
        description="Subset (and optionally coarsen) SOURCE to a region, write it atomically to the team "
        "storage with its provenance and register it in the team catalog, so every member sees it in "
        "`esdl cubes list`. Example: esdl cubes regional esdc-demo-ts --name europe-2003 "
        "--bbox -10 35 30 60 --time 2003-06-01 2003-08-31 --variables air_temperature_2m kndvi",
    )
    p.add_argument("source", nargs="?", help="the catalog cube to cut from (e.g. esdc-demo-ts)")
    p.add_argument("--name", help="the new cube's catalog name (lower case, digits, - _ .)")
    add_bbox_option(p, "the region to cut")
    p.add_argument("--time", nargs=2, metavar=("START", "END"), help="inclusive dates (default: all)")
    p.add_argument("--variables", nargs="+", metavar="VAR", help="variables to keep (default: all)")
    p.add_argument(
        "--resolution",
        type=positive_number,
        help="degrees, a whole multiple of the source grid (default: keep)",
    )
    p.add_argument(
        "--chunking", choices=["ts", "map"], default="ts", help="output chunking (default %(default)s)"
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the team's cubes (first registering any finished cube whose call was killed before"
        " registering it, and removing dead writes' temporaries)",
    )
    p.add_argument(
        "--remove", metavar="NAME", help="remove a team cube (entry and its store in the team folder)"
    )
    p.add_argument(
        "--keep-data", action="store_true", help="with --remove: keep the store, drop only the entry"
    )
    p.set_defaults(func=cmd_regional)


def cmd_regional(args: argparse.Namespace) -> int:
    from platform_lib import team

    if args.list:
        from platform_lib.regional import reconcile_team_cubes

        for name in reconcile_team_cubes():  # what killed calls left: registered, temporaries removed
            print(f"registered {name!r}: its store was finished by a call killed before registering it")
        entries = team.team_cube_entries()
        if not entries:
            print(f"no team cubes yet in {team.team_catalog_path()}")
        for name, entry in sorted(entries.items()):
            meta = entry.get("metadata", {})
            prov = meta.get("provenance", {})
            print(
                f"{name:28s} {meta.get('registered_by', ''):12s} {prov.get('source_cube', '')} {meta.get('spatial_extent', '')}"
            )
        return 0
    if args.remove:
        if (
            args.remove not in team.team_cube_entries()
        ):  # said before the team catalog is locked (a lock file)
            names = ", ".join(repr(n) for n in sorted(team.team_cube_entries())) or "(none)"
            raise EsdlError(f"--remove: no team cube named {args.remove!r}; team cubes: {names}")
        team.remove_cube(args.remove, delete_data=not args.keep_data)
        print(f"removed team cube {args.remove!r}" + (" (store kept)" if args.keep_data else ""))
        return 0
    missing = [
        flag
        for flag, value in (("SOURCE", args.source), ("--name", args.name), ("--bbox", args.bbox))
        if not value
    ]
    if missing:
        raise EsdlError(f"making a regional cube needs {', '.join(missing)} (or use --list / --remove NAME).")
    from platform_lib.regional import make_regional_cube

    path = make_regional_cube(
        args.source,
        bbox=args.bbox,
        time_range=args.time,
        variables=args.variables,
        resolution=args.resolution,
        chunking=args.chunking,
        name=args.name,
    )
    print(f"wrote {path} and registered {args.name!r} in {team.team_catalog_path()}")
    return 0
