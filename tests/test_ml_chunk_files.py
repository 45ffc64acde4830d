"""Chunk files decoded directly with the array's own codecs: the same values zarr reads, for generated
arrays, codecs and regions; zarr's own read for every layout it does not handle; and each chunk file
decoded once per epoch by a training set over a store path."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_helpers import CHUNKINGS, synthetic_cube, write_cube

from platform_lib.ml import SampleSpec, TrainingSet
from platform_lib.ml.chunk_files import ChunkFileReader, chunk_file_reader

COMPRESSORS = {
    "none": None,
    "blosc": zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "zstd": zarr.codecs.ZstdCodec(level=1),
    "gzip": zarr.codecs.GzipCodec(level=1),
}


@st.composite
def arrays_and_regions(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)  # chunks may overhang the edge
    region = []
    for n in shape:
        lo = draw(st.integers(0, n - 1))
        region.append(slice(lo, draw(st.integers(lo + 1, n))))
    dtype = draw(st.sampled_from(["float32", "float64", "int16", ">f4"]))
    compressor = draw(st.sampled_from(sorted(COMPRESSORS)))
    seed = draw(st.integers(0, 2**16))
    return shape, chunks, tuple(region), dtype, compressor, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrays_and_regions())
def test_a_region_decoded_from_chunk_files_equals_zarrs_read(tmp_path_factory, case):
    shape, chunks, region, dtype, compressor, seed = case
    path = tmp_path_factory.mktemp("chunks") / "a.zarr"
    rng = np.random.default_rng(seed)
    floating = np.dtype(dtype).kind == "f"
    fill = np.nan if floating else -7
    codec = COMPRESSORS[compressor]
    arr = zarr.create_array(
        str(path),
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=fill,
        compressors=[codec] if codec is not None else None,
        config={"write_empty_chunks": False},
    )
    values = rng.normal(size=shape) * 100
    values[rng.random(shape) < 0.3] = np.nan if floating else fill  # some chunks end up never written
    arr[...] = values.astype(dtype)
    opened = zarr.open_array(str(path), mode="r")
    reader = chunk_file_reader(opened)
    assert isinstance(reader, ChunkFileReader)
    # blosc and zstd decode whole chunks straight into the output; the rest through zarr's codecs
    assert (reader.in_place is not None) == (compressor in ("blosc", "zstd"))  # stored little-endian
    out = np.full(tuple(s.stop - s.start for s in region), 99, dtype=opened.dtype)
    got = reader.read(region, out)
    np.testing.assert_array_equal(got, opened[region])  # NaN where NaN, the fill where never written


def test_layouts_it_does_not_decode_are_left_to_zarr(tmp_path):
    plain = dict(shape=(8, 8), dtype="float32")
    sharded = zarr.create_array(str(tmp_path / "s.zarr"), chunks=(2, 2), shards=(4, 4), **plain)
    v2 = zarr.create_array(str(tmp_path / "v2.zarr"), chunks=(4, 4), zarr_format=2, **plain)
    transposed = zarr.create_array(
        str(tmp_path / "t.zarr"), chunks=(4, 4), filters=[zarr.codecs.TransposeCodec(order=(1, 0))], **plain
    )
    in_memory = zarr.create_array(zarr.storage.MemoryStore(), chunks=(4, 4), **plain)
    for arr in (sharded, v2, transposed, in_memory):
        assert chunk_file_reader(arr) is None, arr


def test_a_training_set_over_a_path_decodes_each_chunk_file_once_per_epoch(tmp_path, monkeypatch):
    chunks = CHUNKINGS["ts"]
    path = write_cube(synthetic_cube(seed=3), tmp_path / "cube.zarr", chunks)
    spec = SampleSpec(inputs=["kndvi"], targets=["gross_primary_productivity"], patch={"time": 8})
    ts = TrainingSet(path, spec, normalise=False)
    assert ts.reader.direct == set(spec.variables)
    reads: Counter = Counter()
    original = ChunkFileReader.read_piece

    def counting(self, piece, out):
        reads[(self.directory, piece.coords)] += 1
        return original(self, piece, out)

    monkeypatch.setattr(ChunkFileReader, "read_piece", counting)
    for epoch in (0, 1):
        values = {
            int(s): x
            for b in ts.iter_batches(64, seed=0, epoch=epoch)
            for s, x in zip(b["sample"], b["x"], strict=True)
        }
        assert len(values) == len(ts)
        # every chunk file read once per epoch, and only those: no zarr call, no second decode
        assert set(reads.values()) == {epoch + 1}, Counter(reads.values())
    ds = zarr.open_group(str(path), mode="r")
    n_chunks = int(np.prod([-(-n // c) for n, c in zip(ds["kndvi"].shape, ds["kndvi"].chunks, strict=True)]))
    assert len(reads) == 2 * n_chunks
    origin = ts.plan.starts[5]
    t, y, x = (int(v) for v in origin)
    np.testing.assert_array_equal(values[5][0], ds["kndvi"][t : t + 8, y, x])


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
def test_block_reads_through_chunk_files_equal_reads_through_zarr(tmp_path, chunking):
    path = write_cube(synthetic_cube(seed=4), tmp_path / "cube.zarr", CHUNKINGS[chunking])
    spec = SampleSpec(inputs=["kndvi", "air_temperature_2m"], patch={"time": 5, "lat": 3, "lon": 3})
    direct = TrainingSet(path, spec, normalise=False)
    through_zarr = TrainingSet(path, spec, normalise=False)
    for name in through_zarr.reader.variables:  # the same arrays, read with one zarr call each
        arr, _ = through_zarr.reader._array(name)
        through_zarr.reader._arrays[name] = (arr, None)
    for block in range(direct.plan.n_blocks):
        region = direct.plan.region(block)
        np.testing.assert_array_equal(direct.reader.read(region), through_zarr.reader.read(region))


def test_a_block_of_partial_chunks_is_read_as_whole_chunks_and_cut_from_a_view(tmp_path):
    cube = synthetic_cube(seed=5)
    path = write_cube(cube, tmp_path / "cube.zarr", CHUNKINGS["map"])
    # maps of 5 x 7 cells do not fill a 12 x 24 chunk: each block's region is part of its chunks
    spec = SampleSpec(inputs=["kndvi"], targets=["air_temperature_2m"], patch={"lat": 5, "lon": 7})
    ts = TrainingSet(path, spec, normalise=False)
    assert ts.reader.decodes_in_place
    region = ts.plan.region(0)
    outer = ts._whole_chunks(region)
    assert outer != region and all(
        o.start <= r.start and r.stop <= o.stop for o, r in zip(outer, region, strict=True)
    )
    block = ts.read_block(0)
    assert block.tiles is not None and len(block.ids) == ts.plan.block_samples(0).stop
    n = 0
    for batch in ts.iter_batches(50, seed=3):
        for origin, x, y in zip(batch["origin"], batch["x"], batch["y"], strict=True):
            t, lat, lon = (int(v) for v in origin)
            box = {"time": t, "lat": slice(lat, lat + 5), "lon": slice(lon, lon + 7)}
            np.testing.assert_array_equal(x[0], cube["kndvi"].isel(box).values)
            np.testing.assert_array_equal(y[0], cube["air_temperature_2m"].isel(box).values)
            n += 1
    assert n == len(ts)
