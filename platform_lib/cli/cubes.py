"""``esdl cubes``: list, describe and generate cubes.

The library (and with it xarray and dask) is imported inside each command, so ``esdl`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import time


def _years(text: str) -> tuple[int, int]:
    try:
        first, _, last = text.partition("-")
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"years {text!r} must look like 2001-2021 or 2003") from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``esdl cubes ...`` to the parser."""
    p = sub.add_parser("cubes", help="find, describe and generate cubes")
    cubes = p.add_subparsers(dest="cubes_command", metavar="ACTION", required=True)

    ls = cubes.add_parser("list", help="list every cube in the shared and team catalogs")
    ls.add_argument("--catalog", help="a catalog file instead of ESDL_CATALOG / the shared one")
    ls.set_defaults(func=cmd_list)

    desc = cubes.add_parser("describe", help="show a cube's catalog metadata (no data read)")
    desc.add_argument("name")
    desc.add_argument("--catalog", help="a catalog file instead of ESDL_CATALOG / the shared one")
    desc.add_argument("--json", action="store_true", help="print JSON")
    desc.set_defaults(func=cmd_describe)

    gen = cubes.add_parser(
        "generate",
        help="generate the ESDC-like demo cubes (both chunkings)",
        description="Generate the deterministic ESDC-like demo cube and write its 'ts' and 'map' chunkings "
        "as Zarr v3 stores (atomically) into the data folder. Existing stores are kept unless --overwrite.",
    )
    gen.add_argument("--resolution", type=float, help="degrees (default: the demo default, 1)")
    gen.add_argument("--years", type=_years, help="FIRST-LAST (default: the demo default, 2001-2021)")
    gen.add_argument("--data-dir", help="target folder (default: ESDL_DATA_DIR or .esdl-state/data)")
    gen.add_argument("--overwrite", action="store_true", help="replace stores that exist")
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=cmd_generate)

    from platform_lib.cli.regional import register_regional  # esdl cubes regional (issue 7)

    register_regional(cubes)


def cmd_list(args: argparse.Namespace) -> int:
    from platform_lib import catalog

    for name in catalog.list_cubes(args.catalog):
        meta = catalog.describe_cube(name, args.catalog)
        print(f"{name:28s} {meta.get('chunking', ''):4s} {meta.get('title', '')}")
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
