"""``esdl rechunk``: copy a cube to another chunking (ts <-> map or custom) in bounded memory."""

from __future__ import annotations

import argparse

from platform_lib.cli.arguments import chunk_sizes, quoted


def target_chunks(text: str) -> str | dict[str, int]:
    """``--target``: ``ts``, ``map`` or ``dim=size`` pairs.

    >>> target_chunks("map"), target_chunks("time=46,lat=64")
    ('map', {'time': 46, 'lat': 64})
    """
    if text.strip() in ("ts", "map"):
        return text.strip()
    try:
        return chunk_sizes(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not allowed: use ts, map or dim=size pairs separated by commas, each size a"
            " whole number above 0, e.g. time=46,lat=64"
        ) from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``esdl rechunk ...`` to the parser."""
    p = sub.add_parser(
        "rechunk",
        help="copy a cube to the ts or map chunking (or custom chunks) in bounded memory",
        description="Copy SOURCE (a catalog cube name or a Zarr store) to the Zarr v3 store OUT with new "
        "chunks, block by block within --max-mem, atomically. See docs/ml.md.",
    )
    p.add_argument("source", help="catalog cube name or Zarr store path")
    p.add_argument("out", help="the new Zarr store")
    p.add_argument(
        "--target",
        default="ts",
        type=target_chunks,
        help="'ts', 'map' or dim=size pairs, sizes above 0 (default: ts)",
    )
    p.add_argument("--max-mem", default="1GB", help="memory bound of the copy, e.g. 512MB (default: 1GB)")
    p.add_argument(
        "--shards",
        type=chunk_sizes,
        help="dim=size pairs: store several chunks per object (multiples of the chunks)",
    )
    p.add_argument("--variables", help="comma-separated variables to copy (default: all)")
    p.add_argument("--register", metavar="NAME", help="add the result to the team catalog under NAME")
    p.add_argument("--overwrite", action="store_true", help="replace OUT (and a team catalog entry NAME)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rechunk)


def cmd_rechunk(args: argparse.Namespace) -> int:
    from platform_lib.rechunk import rechunk_cube

    out = rechunk_cube(
        args.source,
        args.target,
        args.out,
        max_mem=args.max_mem,
        shards=args.shards,
        variables=args.variables.split(",") if args.variables else None,
        overwrite=args.overwrite,
        register=args.register,
        progress=not args.no_progress,
    )
    print(
        f"rechunked {args.source} -> {out}" + (f" (registered as {args.register!r})" if args.register else "")
    )
    return 0
