"""Benchmark: reading a catalog file strictly against the plain libyaml safe loader.

For the shipped catalog (``catalog/esdl.yaml``) and a generated one of ``--entries`` entries (the shape
``catalog.catalog_source`` writes), it times, in the same run and interleaved:

- ours: ``platform_lib.catalog.read_catalog_document(path)`` (UTF-8 check, duplicate keys and
  self-containing aliases refused, structure checked: :mod:`platform_lib.strict_yaml`);
- reference: ``yaml.load(path.read_text(), Loader=yaml.CSafeLoader)``, the fast read it replaced;
- and, for scale, ``yaml.safe_load`` (PyYAML's pure-Python loader).

It prints the median of the repetitions and the ratio ours / reference (target: under 1.10).

    .venv/bin/python bench/catalog_read.py [--entries N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from platform_lib.catalog import DEFAULT_CATALOG, catalog_source, dump_catalog, read_catalog_document
from platform_lib.paths import repo_root


def median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generated_catalog(folder: Path, entries: int) -> Path:
    """A catalog of ``entries`` demo-like entries, written as the platform writes catalogs."""
    meta = {
        "title": "cube",
        "variables": {f"v{i}": {"units": "1", "long_name": f"variable {i}"} for i in range(12)},
        "spatial_extent": [-180.0, -90.0, 180.0, 90.0],
        "temporal_extent": ["2001-01-05", "2021-12-31"],
        "chunking": "ts",
        "license": "CC-BY-4.0",
        "source": "bench",
    }
    sources = {
        f"cube-{i:05d}": catalog_source(f"/data/cube-{i}.zarr", f"cube {i}", meta) for i in range(entries)
    }
    path = folder / "big.yaml"
    path.write_text(dump_catalog(sources, title="bench"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    print(f"{'catalog':<28} {'ours':>9} {'reference':>10} {'ratio':>6} {'pure-Python':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in (
            ("catalog/esdl.yaml", repo_root() / DEFAULT_CATALOG),
            (f"generated, {args.entries} entries", generated_catalog(Path(tmp), args.entries)),
        ):
            assert (
                read_catalog_document(path)["sources"]
                == yaml.load(path.read_text(), Loader=loader)["sources"]
            )
            ours, ref = [], []
            for _ in range(3):  # interleaved rounds, so drift hits both alike
                ours.append(median_seconds(lambda p=path: read_catalog_document(p), args.repeat))
                ref.append(
                    median_seconds(lambda p=path: yaml.load(p.read_text(), Loader=loader), args.repeat)
                )
            pure = median_seconds(lambda p=path: yaml.safe_load(p.read_text()), max(3, args.repeat // 5))
            o, r = statistics.median(ours), statistics.median(ref)
            print(f"{label:<28} {o * 1e3:>7.2f}ms {r * 1e3:>8.2f}ms {o / r:>6.2f} {pure * 1e3:>10.2f}ms")


if __name__ == "__main__":
    main()
