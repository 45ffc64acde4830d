"""Read a region of a local Zarr v3 array by decoding its chunk files with the array's own codecs.

A read through ``zarr.Array`` passes zarr's asyncio machinery: on this kind of machine about 1 ms per
call and several times the cost of decoding the bytes for chunks of a few hundred KB. For the layout
of analysis-ready cubes (a local directory store, a regular chunk grid, the ``bytes`` codec plus
compressors that decode synchronously, no sharding or transposes) :func:`chunk_file_reader` gives a
reader that opens each chunk file and decodes it with the very codec objects zarr would use
(``_decode_sync`` of zarr's ``SupportsSyncCodec`` protocol); chunks that were never written read as
the array's fill value. For any other layout it returns None and the caller reads through zarr.

>>> import tempfile, numpy as np, zarr
>>> path = tempfile.mkdtemp() + "/a.zarr"
>>> arr = zarr.create_array(path, shape=(4, 6), chunks=(2, 4), dtype="float32", fill_value=np.nan)
>>> arr[:2] = np.arange(12, dtype="float32").reshape(2, 6)
>>> reader = chunk_file_reader(zarr.open_array(path, mode="r"))
>>> out = np.empty((3, 3), "float32")
>>> reader.read((slice(1, 4), slice(2, 5)), out).tolist()
[[8.0, 9.0, 10.0], [nan, nan, nan], [nan, nan, nan]]
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

Region = tuple[slice, ...]


@dataclass(frozen=True)
class ChunkPiece:
    """One chunk's share of a region: the chunk, the part of the decoded chunk, and where it goes."""

    coords: tuple[int, ...]
    source: Region  # in the decoded chunk
    target: Region  # in the output region


class ChunkFileReader:
    """Decodes the chunk files of one local Zarr v3 array (see :func:`chunk_file_reader`)."""

    def __init__(self, array: Any, directory: str) -> None:
        from zarr.core.array_spec import ArrayConfig
        from zarr.core.buffer import default_buffer_prototype

        meta = array.metadata
        self.directory = directory
        self.shape = tuple(int(n) for n in meta.shape)
        self.chunks = tuple(int(c) for c in meta.chunk_grid.chunk_shape)
        self.dtype = np.dtype(array.dtype)
        self.fill_value = meta.fill_value
        self._encode_key = meta.encode_chunk_key
        self._prototype = default_buffer_prototype()
        self._spec = meta.get_chunk_spec((0,) * len(self.shape), ArrayConfig.from_dict({}), self._prototype)
        codecs = list(meta.codecs)
        self._array_bytes = codecs[0]
        self._bytes_bytes = codecs[1:][::-1]  # decoded last-applied first
        self.in_place = _in_place_decoder(codecs, self.dtype)

    def pieces(self, region: Region) -> Iterator[ChunkPiece]:
        """The chunks ``region`` (one slice per dim, step 1, within the array) touches, in C order.

        >>> import tempfile, zarr
        >>> arr = zarr.create_array(tempfile.mkdtemp() + "/b.zarr", shape=(10,), chunks=(4,), dtype="f4")
        >>> [(p.coords, p.source, p.target) for p in chunk_file_reader(arr).pieces((slice(3, 6),))]
        [((0,), (slice(3, 4, None),), (slice(0, 1, None),)), ((1,), (slice(0, 2, None),), (slice(1, 3, None),))]
        """
        per_dim = []
        for sl, c in zip(region, self.chunks, strict=True):
            parts = []
            for k in range(sl.start // c, -(-sl.stop // c)):
                lo, hi = max(sl.start, k * c), min(sl.stop, (k + 1) * c)
                parts.append((k, slice(lo - k * c, hi - k * c), slice(lo - sl.start, hi - sl.start)))
            per_dim.append(parts)
        for combo in itertools.product(*per_dim):
            yield ChunkPiece(
                tuple(p[0] for p in combo), tuple(p[1] for p in combo), tuple(p[2] for p in combo)
            )

    def read_piece(self, piece: ChunkPiece, out: np.ndarray) -> None:
        """Decode ``piece``'s chunk file into ``out[piece.target]`` (the fill value when never written)."""
        path = os.path.join(self.directory, self._encode_key(piece.coords))
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            out[piece.target] = self.fill_value
            return
        target = out[piece.target]
        whole = all(sl.stop - sl.start == c for sl, c in zip(piece.source, self.chunks, strict=True))
        if self.in_place is not None and whole and target.flags.c_contiguous and target.dtype == self.dtype:
            self.in_place.decode(raw, out=target)  # straight into the block: no second copy
            return
        data: Any = self._prototype.buffer.from_bytes(raw)
        for codec in self._bytes_bytes:
            data = codec._decode_sync(data, self._spec)
        decoded = self._array_bytes._decode_sync(data, self._spec).as_numpy_array()
        out[piece.target] = decoded.reshape(self.chunks)[piece.source]

    def read(self, region: Region, out: np.ndarray) -> np.ndarray:
        """Read ``region`` into ``out`` (shaped like the region), chunk by chunk; returns ``out``."""
        for piece in self.pieces(region):
            self.read_piece(piece, out)
        return out


def _in_place_decoder(codecs: list[Any], dtype: np.dtype) -> Any:
    """A numcodecs codec that decodes a whole chunk straight into a contiguous output (blosc or zstd
    after ``bytes`` in the machine's byte order), or None: then the zarr codecs decode and the values
    are copied into place."""
    import numcodecs
    from zarr.codecs import BloscCodec, ZstdCodec

    if len(codecs) != 2 or dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
        return None
    endian = getattr(codecs[0], "endian", None)
    if endian is not None and endian.value != ("little" if np.little_endian else "big"):
        return None
    if isinstance(codecs[1], BloscCodec):
        return numcodecs.Blosc()  # the header says how it was compressed
    if isinstance(codecs[1], ZstdCodec):
        return numcodecs.Zstd()
    return None


def chunk_file_reader(array: Any) -> ChunkFileReader | None:
    """A :class:`ChunkFileReader` for the ``zarr.Array`` ``array``, or None when its layout is not the
    plain one it decodes (not Zarr v3, not a local directory store, an irregular chunk grid, sharding,
    a transpose or other array-to-array codec, a codec without synchronous decoding).

    >>> import zarr
    >>> chunk_file_reader(zarr.create_array({}, shape=(3,), dtype="f4")) is None  # in memory: not files
    True
    """
    from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec, SupportsSyncCodec
    from zarr.codecs import BytesCodec
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.storage import LocalStore

    meta = array.metadata
    store = array.store_path.store
    if getattr(meta, "zarr_format", None) != 3 or not isinstance(store, LocalStore):
        return None
    if not isinstance(meta.chunk_grid, RegularChunkGrid):
        return None
    codecs = list(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[0], ArrayBytesCodec):
        return None
    if not all(isinstance(c, BytesBytesCodec) and isinstance(c, SupportsSyncCodec) for c in codecs[1:]):
        return None
    directory = os.path.join(str(store.root), array.store_path.path)
    return ChunkFileReader(array, directory)
