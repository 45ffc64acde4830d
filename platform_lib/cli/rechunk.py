"""``esdl rechunk``: copy a cube to another chunking (ts <-> map or custom) in bounded memory."""

from __future__ import annotations

import argparse

from platform_lib.errors import EsdlError


def parse_sizes(text: str | None, what: str) -> dict[str, int] | None:
    """``"time=46,lat=64"`` -> ``{"time": 46, "lat": 64}`` (a clear error otherwise).

    >>> parse_sizes("time=46,lat=64", "--target")
    {'time': 46, 'lat': 64}
    """
    if text is None:
        return None
    out = {}
    for part in text.split(","):
        dim, sep, size = part.partition("=")
        if not sep or not dim.strip() or not size.strip().isdigit():
            raise EsdlError(f"{what} {text!r}: use dim=size pairs separated by commas, e.g. time=46,lat=64.")
        out[dim.strip()] = int(size)
    return out


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
    p.add_argument("--target", default="ts", help="'ts', 'map' or dim=size pairs (default: ts)")
    p.add_argument("--max-mem", default="1GB", help="memory bound of the copy, e.g. 512MB (default: 1GB)")
    p.add_argument(
        "--shards", help="dim=size pairs: store several chunks per object (multiples of the chunks)"
    )
    p.add_argument("--variables", help="comma-separated variables to copy (default: all)")
    p.add_argument("--register", metavar="NAME", help="add the result to the team catalog under NAME")
    p.add_argument("--overwrite", action="store_true", help="replace OUT (and a team catalog entry NAME)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rechunk)


def cmd_rechunk(args: argparse.Namespace) -> int:
    from platform_lib.rechunk import rechunk_cube

    target = args.target if args.target in ("ts", "map") else parse_sizes(args.target, "--target")
    out = rechunk_cube(
        args.source,
        target,
        args.out,
        max_mem=args.max_mem,
        shards=parse_sizes(args.shards, "--shards"),
        variables=args.variables.split(",") if args.variables else None,
        overwrite=args.overwrite,
        register=args.register,
        progress=not args.no_progress,
    )
    print(
        f"rechunked {args.source} -> {out}" + (f" (registered as {args.register!r})" if args.register else "")
    )
    return 0
