"""IDX files: round trip for every dtype, raw and gzip, and a clear error for each corruption."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from digitnet.data.datasets import FILES, read_folder
from digitnet.data.idx import encode_idx, read_idx, write_idx
from digitnet.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype_raw_and_gzip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    low, high = (np.iinfo(dtype).min, np.iinfo(dtype).max) if np.dtype(dtype).kind in "iu" else (-1e6, 1e6)
    array = rng.uniform(low, high, size=(3, 5, 7)).astype(dtype)
    assert np.isfinite(array.astype(np.float64)).all() and len(np.unique(array)) > 50
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 5, 7)
    assert back.tobytes() == array.tobytes()
    # Big-endian on disk, whatever the machine: the first value's bytes follow the header.
    body = gzip.decompress(raw) if suffix else raw
    big_endian = array.astype(np.dtype(dtype).newbyteorder(">"))
    assert body[16 : 16 + array.itemsize] == big_endian[0, 0, :1].tobytes()


def test_one_dimensional_labels_round_trip(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "l-idx1-ubyte", labels)
    assert (tmp_path / "l-idx1-ubyte").read_bytes()[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 10])
    assert read_idx(tmp_path / "l-idx1-ubyte").tolist() == list(range(10))


def test_unsupported_dtype_is_refused():
    with pytest.raises(DataError, match="cannot hold dtype"):
        encode_idx(np.zeros(3, np.uint16))


GOOD = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))

CORRUPT = {
    "bad magic": (b"\x01\x00" + GOOD[2:], "bad magic number"),
    "unknown dtype code": (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX dtype code 0x07"),
    "truncated header": (GOOD[:10], "truncated IDX header"),
    "truncated data": (GOOD[:-5], "truncated IDX data"),
    "trailing bytes": (GOOD + b"\x00\x00", "2 unexpected bytes after the data"),
    "too short": (b"\x00\x00", "not an IDX file"),
    "zero dimensions": (b"\x00\x00\x08\x00", "zero dimensions"),
    "huge header": (struct.pack(">HBB3I", 0, 8, 3, 1 << 20, 1 << 20, 1 << 10), "too large"),
}


@pytest.mark.parametrize("case", CORRUPT)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_corrupt_file_names_the_file_and_the_problem(tmp_path, case, suffix):
    data, message = CORRUPT[case]
    path = tmp_path / f"broken-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_bad_gzip_names_the_file(tmp_path, damage):
    packed = gzip.compress(GOOD)
    if damage == "cut":
        packed = packed[:-12]
    else:
        packed = packed[:12] + bytes([packed[12] ^ 0xFF]) + packed[13:]
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(packed)
    with pytest.raises(DataError, match="corrupt gzip data") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def write_set(folder: Path, **overrides: np.ndarray) -> None:
    arrays = {
        "train_images": np.zeros((6, 4, 4), np.uint8), "train_labels": np.arange(6, dtype=np.uint8) % 2,
        "test_images": np.zeros((3, 4, 4), np.uint8), "test_labels": np.arange(3, dtype=np.uint8) % 2,
    }
    arrays.update(overrides)
    for role, stem in FILES.items():
        write_idx(folder / f"{stem}.gz", arrays[role])


@pytest.mark.parametrize("overrides, bad_file, message", [
    ({"train_labels": np.zeros(5, np.uint8)}, "train-labels",
     "5 labels but train-images-idx3-ubyte.gz holds 6"),
    ({"test_labels": np.zeros((3, 2), np.uint8)}, "t10k-labels", r"labels must be integers of shape \(N,\)"),
    ({"test_labels": np.zeros(3, np.float32)}, "t10k-labels", "labels must be integers"),
    ({"train_images": np.zeros((6, 4, 4), np.float32)}, "train-images", "images must be uint8"),
    ({"test_images": np.zeros((3, 5, 4), np.uint8)}, "t10k-images", "train images are"),
    ({"train_labels": np.array([0, 1, -1, 0, 1, 0], np.int8)}, "train-labels", "negative label"),
])
def test_inconsistent_set_names_the_file(tmp_path, overrides, bad_file, message):
    write_set(tmp_path, **overrides)
    with pytest.raises(DataError, match=message) as err:
        read_folder(tmp_path, "bad")
    assert f"{tmp_path}/{bad_file}" in str(err.value)


def test_folder_finds_raw_gz_and_dotted_names(tmp_path):
    write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").rename(tmp_path / "t10k-labels.idx1-ubyte.gz")
    ds = read_folder(tmp_path, "x")
    assert ds.y_test.tolist() == [0, 1, 0] and ds.image_shape == (4, 4)
    (tmp_path / "t10k-labels.idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        read_folder(tmp_path, "x")
