"""``esdl catalog``: check a catalog file."""

from __future__ import annotations

import argparse
import sys

from platform_lib.cli.arguments import text_file


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``esdl catalog ...`` to the parser."""
    p = sub.add_parser("catalog", help="check catalog files")
    cat = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    val = cat.add_parser(
        "validate",
        help="check every entry's metadata (and with --open, that it opens and matches)",
        description="Check every entry of a catalog: required metadata (title, variables with units, "
        "extents, chunking, licence, source); with --open also open each store and compare.",
    )
    val.add_argument(
        "path", nargs="?", type=text_file, help="catalog file (default: the shared catalog/esdl.yaml)"
    )
    val.add_argument("--open", action="store_true", help="open every store and compare it with its metadata")
    val.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from platform_lib import catalog

    path = args.path or str(catalog.repo_root() / catalog.DEFAULT_CATALOG)
    problems = catalog.validate_catalog(path, open_stores=args.open)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    n = len(catalog.read_catalog(path))
    print(f"{path}: {n} entries OK" + (" (opened and compared)" if args.open else ""))
    return 0
