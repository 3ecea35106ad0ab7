"""Datasets by name (the embedded MNIST, downloadable MNIST-format sets), and any folder of
the four standard IDX files."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitnet.data.idx import decompress, parse_idx, read_raw
from digitnet.errors import DataError

if TYPE_CHECKING:
    from rich.progress import Progress

# The four files of every MNIST-format set, by role.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}



@dataclass(frozen=True)
class RemoteFile:
    """One file of a set as its publisher serves it (gzip-compressed IDX)."""

    name: str
    size: int
    sha256: str  # of the file as served, i.e. of the .gz bytes


@dataclass(frozen=True)
class Entry:
    """A dataset digitnet knows by name: its files, where they come from, what the labels mean."""

    name: str
    description: str
    licence: str
    classes: tuple[str, ...]
    files: Mapping[str, RemoteFile]  # role (a key of FILES) -> file
    mirrors: tuple[str, ...] = ()  # base URLs, tried in order; none = shipped inside the package

    @property
    def embedded(self) -> bool:
        return not self.mirrors

    @property
    def download_size(self) -> int:
        return sum(f.size for f in self.files.values())


def gz_files(sizes_and_sha256: Mapping[str, tuple[int, str]]) -> dict[str, RemoteFile]:
    return {role: RemoteFile(FILES[role] + ".gz", size, sha)
            for role, (size, sha) in sizes_and_sha256.items()}


# The pins were checked against two independent public sources each, which agree:
# tensorflow/datasets tensorflow_datasets/url_checksums/{fashion_mnist,kmnist}.txt (URL, size,
# SHA-256) and pytorch/vision torchvision/prototype/datasets/_builtin/mnist.py (SHA-256).
# MNIST's are those of the embedded files (src/digitnet/data/mnist/SHA256SUMS).
REGISTRY: dict[str, Entry] = {
    "mnist": Entry(
        "mnist", "handwritten digits 0-9 (Y. LeCun, C. Cortes, C. J. C. Burges)", "CC BY-SA 3.0",
        tuple("0123456789"),
        gz_files({
            "train_images": (9719438, "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971"),
            "train_labels": (28857, "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203"),
            "test_images": (1616508, "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be"),
            "test_labels": (4517, "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b"),
        }),
    ),
    "fashion-mnist": Entry(
        "fashion-mnist", "Zalando article images in 10 classes (H. Xiao, K. Rasul, R. Vollgraf)",
        "MIT",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"),
        gz_files({
            "train_images": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train_labels": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "test_images": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "test_labels": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        }),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
    ),
    "kmnist": Entry(
        "kmnist", "Kuzushiji-MNIST: cursive Japanese hiragana in 10 classes (ROIS-DS CODH)",
        "CC BY-SA 4.0",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        gz_files({
            "train_images": (18165135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
            "train_labels": (29497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"),
            "test_images": (3041136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
            "test_labels": (5120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
        }),
        # CODH is the only publisher; its site answers on both schemes.
        mirrors=(
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        ),
    ),
}
NAMES = tuple(REGISTRY)


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


def read_folder(folder: Path, name: str, pins: Mapping[str, RemoteFile] | None = None) -> Dataset:
    """Load the four IDX files in `folder`; with `pins`, exactly those files, checksums verified."""
    return read_files(folder, name, pins)[0]


def read_files(folder: Path, name: str, pins: Mapping[str, RemoteFile] | None = None
               ) -> tuple[Dataset, dict[str, bytes]]:
    """read_folder, and each file's uncompressed bytes by role."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory")
    arrays, digests, paths, datas = {}, {}, {}, {}
    for role, stem in FILES.items():
        path = paths[role] = folder / pins[role].name if pins else find_file(folder, stem)
        raw = read_raw(path)
        if pins:
            check_pin(path, hashlib.sha256(raw).hexdigest(), pins[role].sha256, name)
        data = datas[role] = decompress(raw, str(path))
        digests[role] = hashlib.sha256(data).hexdigest()
        arrays[role] = parse_idx(data, name=str(path))
    check_arrays(arrays, paths)
    return dataset_of(name, arrays, digests), datas


def check_pin(path: Path, got: str, want: str, name: str) -> None:
    from digitnet.data.download import pin_mismatch

    if got != want:
        raise DataError(f"{path}: {pin_mismatch(got, want)} (corrupt or different file; "
                        f"`digitnet datasets verify {name}` checks every file)")


def check_arrays(arrays: dict[str, np.ndarray], paths: dict[str, Path]) -> None:
    """The four arrays make a dataset: uint8 images, one integer label per image."""
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        xp, yp = paths[f"{split}_images"], paths[f"{split}_labels"]
        if x.dtype != np.uint8 or x.ndim < 2:
            raise DataError(f"{xp}: images must be uint8 of shape (N, H[, W]), "
                            f"got {x.dtype} {x.shape}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(f"{yp}: labels must be integers of shape (N,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{yp}: {len(y)} labels but {xp.name} holds {len(x)} images")
        if not len(y):
            raise DataError(f"{xp}: the {split} split is empty (no images)")
        if len(y) and y.min() < 0:
            raise DataError(f"{yp}: negative label {y.min()}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{paths['test_images']}: images of shape {arrays['test_images'].shape[1:]} "
                        f"but the train images are {arrays['train_images'].shape[1:]}")


def embedded_dir() -> Path:
    return Path(str(resources.files("digitnet.data") / "mnist"))


def home() -> Path:
    """digitnet's cache: $DIGITNET_HOME, else $XDG_CACHE_HOME/digitnet, else ~/.cache/digitnet."""
    if os.environ.get("DIGITNET_HOME"):
        return Path(os.environ["DIGITNET_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "digitnet"


def entry(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(NAMES)} "
                        "(or --data-dir DIR for a folder of IDX files)") from None


def location(name: str) -> Path:
    """Where a known set's files are: inside the package, or in the cache (home()/NAME)."""
    return embedded_dir() if entry(name).embedded else home() / name


def status(name: str) -> str:
    """embedded, cached, partial (k/4 files) or missing; from names and sizes, without hashing."""
    e = entry(name)
    if e.embedded:
        return "embedded"
    folder = location(name)
    present = sum((folder / f.name).is_file() and (folder / f.name).stat().st_size == f.size
                  for f in e.files.values())
    if present == len(e.files):
        return "cached"
    return f"partial ({present}/{len(e.files)} files)" if present else "missing"


def verify(name: str) -> dict[Path, str | None]:
    """Re-hash each file of a known set: file -> None when it matches its pin, else the problem."""
    from digitnet.data.download import pin_mismatch, sha256_file

    folder = location(name)
    report: dict[Path, str | None] = {}
    for f in entry(name).files.values():
        path = folder / f.name
        if not path.is_file():
            report[path] = "missing"
            continue
        got = sha256_file(path)
        report[path] = None if got == f.sha256 else pin_mismatch(got, f.sha256)
    return report


def fetch(name: str, progress: Progress | None = None) -> Path:
    """Download whatever files of a known set are missing or corrupt into the cache; its folder.

    `progress` is a rich Progress to draw on (default: a new bar on stderr). Each file tries
    the mirrors in order, starting with the one that served the previous file.
    """
    from digitnet.data.download import DownloadError, download, progress_bar

    e, folder = entry(name), location(name)
    if e.embedded:
        return folder
    if progress is None:
        with progress_bar() as bar:
            return fetch(name, bar)
    mirrors = list(e.mirrors)
    try:
        for f in e.files.values():
            url = download([m + f.name for m in mirrors], folder / f.name, f.sha256, f.size,
                           progress=progress)
            if url is not None:
                progress.console.print(f"{name}: {f.name} ({f.size / 1e6:.1f} MB) from {url}",
                                       highlight=False, soft_wrap=True)
                mirrors.insert(0, mirrors.pop(mirrors.index(url[: -len(f.name)])))
    except DownloadError as exc:
        raise DataError(
            f"{name}: {exc}. Offline? Get the four files elsewhere and pass --data-dir DIR "
            f"(Python: load_dataset(path=DIR)), or copy them into {folder}"
        ) from None
    except OSError as exc:  # the cache itself: read-only, full disk, …
        raise DataError(f"{folder}: cannot write the download cache ({exc.strerror or exc}); "
                        "set $DIGITNET_HOME to a writable folder") from None
    return folder


@lru_cache(maxsize=4)
def load_dataset(name: str = "mnist", path: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name, or from a folder of the four standard IDX files.

    Known names: mnist (embedded), fashion-mnist and kmnist (downloaded into home()/NAME on
    first use, SHA-256 pinned). Pinned files are verified on every load.

    >>> ds = load_dataset("mnist")
    >>> ds.x_train.shape, ds.y_test[:5].tolist()
    ((60000, 28, 28), [7, 2, 1, 0, 4])

    The arrays are read-only (shared through a cache): copy them to change them.
    """
    if path is None and (pending := _prefetched.pop(name, None)) is not None:
        return pending.result()
    return _load(name, path)


def _load(name: str, path: str | os.PathLike | None = None) -> Dataset:
    if path is not None:
        folder = Path(path).expanduser()
        return read_only(read_folder(folder, name=name if name != "mnist" else folder.name))
    e = entry(name)
    cached = read_unpacked(name, e.files)
    if cached is not None:
        return read_only(cached)
    if status(name) not in ("embedded", "cached"):
        fetch(name)
    ds, datas = read_files(location(name), name, pins=e.files)
    write_unpacked(name, datas, ds.sha256, e.files)
    return read_only(ds)


def read_only(ds: Dataset) -> Dataset:
    """The dataset with its arrays made read-only: load_dataset's result is cached and shared by
    every caller in the process, so a write into it would change every later run."""
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        arr.flags.writeable = False
    return ds


_prefetched: dict[str, Future[Dataset]] = {}


def prefetch(name: str = "mnist") -> None:
    """Start loading a known set that needs no download in a thread; load_dataset(name) then
    takes that result. Reading and hashing release the GIL, so the CLI loads the data while
    Python imports JAX (0.2-0.3 s off a cold start)."""
    if name not in REGISTRY or name in _prefetched or status(name) not in ("embedded", "cached"):
        return
    future: Future[Dataset] = Future()

    def work() -> None:
        try:
            future.set_result(_load(name))
        except BaseException as exc:  # handed to whoever asks for the set
            future.set_exception(exc)

    _prefetched[name] = future
    threading.Thread(target=work, name="digitnet-prefetch", daemon=True).start()


# A known set's four files, gunzipped, in home()/unpacked/NAME with a manifest of their SHA-256:
# hashing the 55 MB of MNIST costs about a third of inflating its 11 MB of gzip (see
# docs/performance.md, "cold start"). Every load re-hashes the files against the manifest, and
# the manifest names the pinned downloads they came from, so a changed pin or a damaged file
# falls back to the pinned files (and rewrites the cache).
UNPACKED_FORMAT = 1


def unpacked_dir(name: str) -> Path:
    return home() / "unpacked" / name


def read_unpacked(name: str, pins: Mapping[str, RemoteFile]) -> Dataset | None:
    """The set from its unpacked cache, every file verified; None when there is no valid cache."""
    folder = unpacked_dir(name)
    try:
        manifest = json.loads((folder / "manifest.json").read_bytes())
        if (manifest.get("format") != UNPACKED_FORMAT
                or manifest.get("sources") != {role: f.sha256 for role, f in pins.items()}):
            return None
        arrays, digests, paths = {}, {}, {}
        for role, stem in FILES.items():
            paths[role] = folder / stem
            data = read_raw(paths[role])
            digests[role] = hashlib.sha256(data).hexdigest()
            if digests[role] != manifest["sha256"][role]:
                return None
            arrays[role] = parse_idx(data, name=str(paths[role]))
        check_arrays(arrays, paths)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError):
        return None
    return dataset_of(name, arrays, digests)


def write_unpacked(name: str, datas: Mapping[str, bytes], digests: Mapping[str, str],
                   pins: Mapping[str, RemoteFile]) -> None:
    """Cache a verified set's uncompressed files; best effort (a read-only home just keeps the
    slow path). Each file is renamed into place whole, the manifest last; no fsync: a file
    damaged by a crash fails its hash on the next load and is rewritten."""
    folder = unpacked_dir(name)
    manifest = {"format": UNPACKED_FORMAT, "sources": {r: f.sha256 for r, f in pins.items()},
                "sha256": dict(digests)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for role, stem in FILES.items():
            replace_file(folder / stem, datas[role])
        replace_file(folder / "manifest.json", json.dumps(manifest).encode())
    except OSError:
        pass


def replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dataset_of(name: str, arrays: dict[str, np.ndarray], digests: dict[str, str]) -> Dataset:
    return Dataset(
        name=name,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"].astype(np.int32),
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"].astype(np.int32),
        sha256=digests,
    )
