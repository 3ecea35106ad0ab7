"""IDX files (the MNIST container format), raw or gzip-compressed.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian
uint32 per dimension, then the data in C order. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from digitnet.errors import DataError
from digitnet.safefiles import read_regular

# dtype code -> big-endian numpy dtype, as in the IDX specification.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES = {dt.newbyteorder("="): code for code, dt in DTYPES.items()}

# The largest MNIST-format set (EMNIST ByClass, 697,932 images) holds 547 MB; this bound keeps
# a hostile header, or a gzip bomb behind an honest-looking one, from asking for more.
MAX_BYTES = 1 << 30
# NumPy arrays have at most 64 dimensions; real IDX files have 1 to 4.
MAX_DIMS = 32


def parse_header(data: bytes, name: str = "<bytes>") -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, header length) from the first bytes of an IDX file; checks sizes only
    against MAX_BYTES, not against the data that follows."""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    if code not in DTYPES:
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    if ndim > MAX_DIMS:
        raise DataError(f"{name}: IDX header declares {ndim} dimensions, more than {MAX_DIMS}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header_len} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = DTYPES[code]
    # Python integers: a uint64 product wraps around, so (65536,)*4 would "need" 0 bytes.
    # Zero dimensions are left out, as NumPy refuses (0, 2**32-1, 2**32-1) all the same.
    if math.prod(d for d in shape if d) * dtype.itemsize > MAX_BYTES:
        raise DataError(f"{name}: IDX header declares shape {shape} of {dtype.name}, too large")
    return dtype, shape, header_len


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into an array in native byte order."""
    dtype, shape, header_len = parse_header(data, name)
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header_len
    if got < expected:
        raise DataError(
            f"{name}: truncated IDX data: header {shape} needs {expected} bytes, found {got}"
        )
    if got > expected:
        raise DataError(
            f"{name}: {got - expected} unexpected bytes after the data declared by shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_raw(path: str | os.PathLike) -> bytes:
    """The bytes of a file as stored, with a clear error when it cannot be read."""
    # A dataset file may be a symlink to the real one, but never a FIFO, a device or a file
    # larger than any IDX file digitnet reads.
    return read_regular(path, MAX_BYTES + (1 << 20), error=DataError, follow=True)


def decompress(raw: bytes, name: str) -> bytes:
    """`raw` gunzipped when it is gzip data, else unchanged.

    Gzip data is inflated only as far as its IDX header declares (plus 1 MiB, to report
    extra data), so a decompression bomb costs no more memory than an honest file."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        head = gunzip(raw, 4 + 4 * MAX_DIMS)
        dtype, shape, header_len = parse_header(head, name)
        size = header_len + math.prod(shape) * dtype.itemsize + (1 << 20)
        data = gunzip(raw, size) if len(head) > 4 + 4 * MAX_DIMS else head
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data ({exc})") from None
    if len(data) > size:
        raise DataError(f"{name}: decompresses to over 1 MiB more than its IDX header declares")
    return data


def read_bytes(path: str | os.PathLike) -> bytes:
    """The uncompressed content of an IDX file (gunzipped when the file is gzip)."""
    return decompress(read_raw(path), str(path))


def gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress gzip bytes, stopping after `limit` + 1 bytes whatever the input declares."""
    d = zlib.decompressobj(wbits=31)
    out = bytearray(d.decompress(raw, limit + 1))
    while not d.eof and len(out) <= limit:
        chunk = d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        if not chunk:
            raise EOFError("compressed file ended before the end-of-stream marker")
        out += chunk
    if d.eof and d.unused_data:  # read as one IDX file, more would be silently dropped
        raise EOFError(f"{len(d.unused_data)} bytes after the end of the gzip stream "
                       "(junk, or a second gzip member)")
    return bytes(out)


def peek_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) from the first bytes of an IDX file (raw or .gz), without reading the rest,
    so that a caller can refuse a file before its data is allocated."""
    from digitnet.safefiles import open_regular

    f, _ = open_regular(path, MAX_BYTES + (1 << 20), error=DataError, follow=True)
    with f:
        raw = f.read(1 << 16)
    if raw[:2] == b"\x1f\x8b":
        try:
            d = zlib.decompressobj(wbits=31)
            raw = d.decompress(raw, 4 + 4 * MAX_DIMS)
        except zlib.error as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    dtype, shape, _ = parse_header(raw, str(path))
    return dtype.newbyteorder("="), shape


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or .gz, validating its header against its length."""
    return parse_idx(read_bytes(path), name=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes for `array` (any dtype IDX supports)."""
    array = np.asarray(array)
    code = CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot hold dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"IDX cannot hold an array of {array.ndim} dimensions")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as IDX, gzip-compressed when the name ends in .gz; atomically."""
    from digitnet.files import atomic_write_bytes

    data = encode_idx(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(Path(path), data)
