"""IDX files (the MNIST container format), raw or gzip-compressed.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian
uint32 per dimension, then the data in C order. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from digitnet.errors import DataError

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

# No MNIST-format set comes near this; it keeps a hostile header from asking for terabytes.
MAX_BYTES = 4 << 30


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into an array in native byte order."""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number 0x{data[:4].hex()})")
    if code not in DTYPES:
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header_len} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.uint64)) * dtype.itemsize
    if expected > MAX_BYTES:
        raise DataError(f"{name}: IDX header declares {expected} bytes of data, too large")
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
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def decompress(raw: bytes, name: str) -> bytes:
    """`raw` gunzipped when it is gzip data, else unchanged."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gunzip(raw, limit=MAX_BYTES + 1024)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data ({exc})") from None


def read_bytes(path: str | os.PathLike) -> bytes:
    """The uncompressed content of an IDX file (gunzipped when the file is gzip)."""
    return decompress(read_raw(path), str(path))


def gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress gzip bytes, refusing output larger than `limit` (decompression bombs)."""
    out = bytearray()
    d = zlib.decompressobj(wbits=31)
    chunk = d.decompress(raw, limit)
    out += chunk
    while d.unconsumed_tail:
        if len(out) >= limit:
            raise OSError(f"decompresses to more than {limit} bytes")
        out += d.decompress(d.unconsumed_tail, limit - len(out))
    if not d.eof:
        raise EOFError("compressed file ended before the end-of-stream marker")
    return bytes(out)


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
    from digitnet.artifacts import atomic_write_bytes

    data = encode_idx(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(Path(path), data)
