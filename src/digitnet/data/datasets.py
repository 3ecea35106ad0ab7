"""Datasets by name: the embedded MNIST, and any folder of the four standard IDX files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from digitnet.data.idx import parse_idx, read_bytes
from digitnet.errors import DataError

# The four files of every MNIST-format set, by role.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the uncompressed IDX files (see src/digitnet/data/mnist/README.md).
MNIST_SHA256 = {
    "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@dataclass(frozen=True)
class Dataset:
    """Train and test splits as uint8 images (N, H, W) and integer labels (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def describe(self) -> dict:
        """What a run records about its data: enough to tell later which data it was."""
        return {
            "name": self.name,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "train_size": len(self.y_train),
            "test_size": len(self.y_test),
            "sha256": dict(self.sha256),
        }


def find_file(folder: Path, stem: str) -> Path:
    """The file for `stem` in `folder`: raw or .gz, with '-' or '.' before 'idx'."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: missing {stem} (or {stem}.gz)")


def read_folder(folder: Path, name: str, expected: dict[str, str] | None = None,
                cache: Path | None = None) -> Dataset:
    """Load the four IDX files in `folder`, checking them against `expected` SHA-256s.

    With `cache` (and `expected`), the uncompressed files are kept there: gunzip is most of
    the load time, while SHA-256 is cheap, so a cached file is still verified on every load.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory")
    arrays, digests = {}, {}
    for role, stem in FILES.items():
        cached = cache / stem if cache and expected else None
        data = cached_bytes(cached, expected[role]) if cached else None
        if data is not None:
            path, digests[role] = cached, expected[role]
        else:
            path = find_file(folder, stem)
            data = read_bytes(path)
            digests[role] = hashlib.sha256(data).hexdigest()
            if cached and digests[role] == expected[role]:
                keep(cached, data)
        if expected and digests[role] != expected[role]:
            raise DataError(
                f"{path}: SHA-256 {digests[role][:12]}… does not match the pinned "
                f"{expected[role][:12]}… (corrupt or different file)"
            )
        arrays[role] = parse_idx(data, name=str(path))
    check_arrays(arrays, folder)
    return Dataset(
        name=name,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"].astype(np.int32),
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"].astype(np.int32),
        sha256=digests,
    )


def cached_bytes(path: Path, sha256: str) -> bytes | None:
    """The bytes of a cached uncompressed file if it exists and matches `sha256`."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def keep(path: Path, data: bytes) -> None:
    """Write a cache file atomically; a cache that cannot be written is no error."""
    from digitnet.artifacts import atomic_write_bytes

    try:
        atomic_write_bytes(path, data)
    except OSError:
        pass


def check_arrays(arrays: dict[str, np.ndarray], folder: Path) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.dtype != np.uint8 or x.ndim < 2:
            raise DataError(f"{folder}: {split} images must be uint8 (N, H[, W]), got {x.dtype} {x.shape}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(f"{folder}: {split} labels must be integers of shape (N,), got {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        if len(y) and y.min() < 0:
            raise DataError(f"{folder}: negative {split} label")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{folder}: train and test images differ in shape")


def embedded_dir() -> Path:
    return Path(str(resources.files("digitnet.data") / "mnist"))


def home() -> Path:
    """digitnet's cache: $DIGITNET_HOME, else $XDG_CACHE_HOME/digitnet, else ~/.cache/digitnet."""
    if os.environ.get("DIGITNET_HOME"):
        return Path(os.environ["DIGITNET_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "digitnet"


NAMES = ("mnist",)


@lru_cache(maxsize=4)
def load_dataset(name: str = "mnist", path: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name, or from a folder of the four standard IDX files.

    >>> ds = load_dataset("mnist")
    >>> ds.x_train.shape, ds.y_test[:5].tolist()
    ((60000, 28, 28), [7, 2, 1, 0, 4])
    """
    if path is not None:
        folder = Path(path).expanduser()
        return read_folder(folder, name=name if name != "mnist" else folder.name)
    if name == "mnist":
        return read_folder(embedded_dir(), "mnist", expected=MNIST_SHA256,
                           cache=home() / "mnist" if os.environ.get("DIGITNET_DATA_CACHE", "1") != "0"
                           else None)
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(NAMES)} (or --data-dir DIR)")
