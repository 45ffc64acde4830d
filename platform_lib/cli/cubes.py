"""``esdl cubes``: list, describe and generate cubes.

The library (and with it xarray and dask) is imported inside each command, so ``esdl`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import time

from platform_lib.cli.arguments import (
    add_bbox_option,
    positive_number,
    text_file,
    whole_number,
    writable_folder,
    year_range,
)

#: the demo generator's seeds (numpy takes any size; a seed is a label, 32 bits are plenty)
MAX_SEED = 2**32 - 1


def _resolution(text: str) -> float:
    """``--resolution``: a grid the demo generator makes (its module loads only here)."""
    from platform_lib.demo import check_resolution
    from platform_lib.errors import EsdlError

    try:
        return check_resolution(positive_number(text))
    except EsdlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _years(text: str) -> tuple[int, int]:
    """``--years FIRST-LAST`` within the years the demo generator makes (its module loads only here)."""
    from platform_lib.demo import MAX_YEAR, MIN_YEAR

    return year_range(MIN_YEAR, MAX_YEAR)(text)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``esdl cubes ...`` to the parser."""
    p = sub.add_parser("cubes", help="find, describe and generate cubes")
    cubes = p.add_subparsers(dest="cubes_command", metavar="ACTION", required=True)

    ls = cubes.add_parser(
        "list",
        help="list (or find) cubes in the shared and team catalogs",
        description="List the cubes of the shared and team catalogs: name, chunking, where they are read"
        " from ('offline': a store on this machine; 'needs internet': a remote store) and title. The filters"
        " read only the catalogs' metadata. Exits 1 when no cube matches.",
        epilog="Example: esdl cubes list --variable kndvi --bbox -10 35 30 60 --time 2003-08-01",
    )
    ls.add_argument(
        "--catalog", type=text_file, help="a catalog file instead of ESDL_CATALOG / the shared one"
    )
    ls.add_argument(
        "--variable", nargs="+", metavar="NAME", help="cubes holding every one of these variables"
    )
    add_bbox_option(ls, "cubes overlapping this box")
    ls.add_argument(
        "--time", nargs="+", metavar="DATE", help="cubes covering this date, or overlapping START END"
    )
    where = ls.add_mutually_exclusive_group()
    where.add_argument("--offline", action="store_true", help="only cubes stored on this machine")
    where.add_argument("--remote", action="store_true", help="only cubes read over the network")
    ls.set_defaults(func=cmd_list)

    desc = cubes.add_parser("describe", help="show a cube's catalog metadata (no data read)")
    desc.add_argument("name")
    desc.add_argument(
        "--catalog", type=text_file, help="a catalog file instead of ESDL_CATALOG / the shared one"
    )
    desc.add_argument("--json", action="store_true", help="print JSON")
    desc.set_defaults(func=cmd_describe)

    gen = cubes.add_parser(
        "generate",
        help="generate the ESDC-like demo cubes (both chunkings)",
        description="Generate the deterministic ESDC-like demo cube and write its 'ts' and 'map' chunkings "
        "as Zarr v3 stores (atomically) into the data folder. Existing stores are kept unless --overwrite.",
    )
    gen.add_argument("--resolution", type=_resolution,
                     help="degrees, a divisor of 180 from 0.25 to 30, e.g. 0.25, 0.5, 1, 2.5, 5 or 10 (default 1)")  # fmt: skip
    gen.add_argument("--years", type=_years,
                     help="FIRST-LAST or one year, within 1979-2030 (default: 2001-2021)")  # fmt: skip
    gen.add_argument("--data-dir", type=writable_folder,
                     help="target folder, made if missing (default: ESDL_DATA_DIR or .esdl-state/data)")  # fmt: skip
    gen.add_argument("--overwrite", action="store_true", help="replace stores that exist")
    gen.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0,
                     help=f"random seed, a whole number from 0 to {MAX_SEED} (default 0)")  # fmt: skip
    gen.set_defaults(func=cmd_generate)

    from platform_lib.cli.regional import register_regional  # esdl cubes regional (issue 7)

    register_regional(cubes)


def cmd_list(args: argparse.Namespace) -> int:
    import sys

    from platform_lib import catalog
    from platform_lib.errors import EsdlError

    remote = True if args.remote else False if args.offline else None
    time = args.time
    if time is not None and len(time) > 2:
        raise EsdlError(f"--time takes one date or START END; got {len(time)} values: {' '.join(time)}.")
    names = catalog.find_cubes(
        variable=args.variable,
        bbox=args.bbox,
        time=None if time is None else time[0] if len(time) == 1 else tuple(time),
        catalog=args.catalog,
        remote=remote,
    )
    for name in names:
        meta = catalog.describe_cube(name, args.catalog)
        where = "needs internet" if meta["remote"] else "offline"
        print(f"{name:28s} {meta.get('chunking', ''):4s} {where:14s} {meta.get('title', '')}")
    if not names:
        print("no cube matches; `esdl cubes list` shows them all", file=sys.stderr)
        return 1
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from platform_lib import catalog

    meta = catalog.describe_cube(args.name, args.catalog)
    if args.json:
        print(json.dumps(meta, indent=2, default=str))
        return 0
    print(f"{meta['name']}: {meta.get('title', '')}")
    if meta.get("description"):
        print(f"  {meta['description']}")
    for key in (
        "urlpath",
        "chunking",
        "chunks",
        "spatial_extent",
        "temporal_extent",
        "license",
        "source",
        "provenance",
    ):
        if key in meta:
            print(f"  {key}: {meta[key]}")
    print("  variables:")
    for var, info in meta.get("variables", {}).items():
        print(f"    {var:36s} [{info.get('units', '?')}] {info.get('long_name', '')}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from platform_lib import demo

    start = time.perf_counter()
    given = {k: v for k, v in (("resolution", args.resolution), ("years", args.years)) if v is not None}
    paths = demo.write_demo_cubes(args.data_dir, overwrite=args.overwrite, seed=args.seed, **given)
    for chunking, path in paths.items():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"{chunking:>3}: {path} ({size / 1e6:.0f} MB)")
    print(f"demo cubes ready in {time.perf_counter() - start:.1f} s")
    return 0
