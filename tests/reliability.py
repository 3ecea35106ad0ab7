"""Attempts to break digitnet's promises: kill -9 during training, a full disk, a diverging run,
hostile bytes for every file reader (IDX, images, run directories), and the eight classes of
hostile input of issue 16 (tests/attacks.py: memory and CPU bombs, 5xx, slow clients, links,
one-line errors, bad values at load, the HTTP layer).

Each check is a function that returns what it tried and what it saw; the default test suite
(tests/test_reliability.py) runs each at a small count, and

    python -m tests.reliability --full        # from the repository root

runs the full counts (10,000 fuzz cases per reader, 20 kills) and writes docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gzip
import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # as under pytest, when run as `python -m tests.…`
from cli_runner import run_cli  # noqa: E402

CASE_SECONDS = 20.0  # a case running longer is a hang: the process dies with a traceback
MEMORY_LIMIT = 3 << 30  # RLIMIT_AS for fuzz workers: JAX maps ~1 GiB, a bomb would need more


def mnist_digits():
    from digitnet.data.datasets import load_dataset

    return load_dataset("mnist")


# --------------------------------------------------------------------------- mutations

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def mutated(draw, seeds: list[bytes], max_ops: int = 6) -> bytes:
    """A seed file with a few byte-level edits, biased towards its header."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(data)
        head = draw(st.booleans())
        pos = draw(st.integers(0, max(min(n, 64 if head else n) - 1, 0)))
        op = draw(st.sampled_from(("flip", "byte", "int", "insert", "delete", "truncate")))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and n:
            data[pos] = draw(st.integers(0, 255))
        elif op == "int":
            value = draw(st.sampled_from(INTERESTING))
            data[pos : pos + 4] = value.to_bytes(4, draw(st.sampled_from(("big", "little"))))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


# --------------------------------------------------------------------------- IDX reader

def idx_seeds() -> list[bytes]:
    from digitnet.data.idx import encode_idx

    ds = mnist_digits()
    rng = np.random.default_rng(0)
    arrays = [ds.x_test[:3, 4:12, 4:12], ds.y_test[:20].astype(np.uint8),
              rng.integers(-100, 100, (4, 5)).astype(np.int8),
              rng.integers(-9999, 9999, (3, 2, 2)).astype(np.int16),
              rng.integers(-1 << 30, 1 << 30, (7,)).astype(np.int32),
              rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(5)]
    return [encode_idx(a) for a in arrays]


@st.composite
def idx_headers(draw) -> bytes:
    """A header with any dtype code, any rank and any dimensions, then a little data."""
    ndim = draw(st.integers(0, 255))
    dims = draw(st.lists(st.one_of(st.integers(0, 4), st.sampled_from(INTERESTING),
                                   st.integers(0, 2**32 - 1)), min_size=ndim, max_size=ndim))
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]))
    return (struct.pack(f">HBB{ndim}I", 0, code, ndim, *dims)
            + draw(st.binary(max_size=64)))


def idx_inputs() -> st.SearchStrategy[tuple[bytes, bool]]:
    """(file content, gzip it?) — gzip of mutated IDX, or mutated gzip, or raw."""
    seeds = idx_seeds()
    gz_seeds = [gzip.compress(s, mtime=0) for s in seeds]
    content = st.one_of(mutated(seeds), idx_headers(), st.binary(max_size=512))
    return st.one_of(st.tuples(content, st.booleans()),
                     st.tuples(mutated(gz_seeds), st.just(False)))


class IdxTarget:
    def __init__(self, workdir: Path):
        self.path = workdir / "fuzz-idx-ubyte"

    def __call__(self, case: tuple[bytes, bool]) -> None:
        from digitnet.data.idx import read_idx

        data, compress = case
        self.path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
        assert read_idx(self.path).dtype.isnative


def zero_bomb(header: bytes, zeros: int) -> bytes:
    """A valid gzip file of `header` then `zeros` (a multiple of 1 MiB) zero bytes, built in
    well under a second: after a full flush deflate starts afresh, so every 1 MiB block of
    zeros compresses to the same bytes, which are repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    for _ in range(zeros >> 20):
        crc = zlib.crc32(block, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03" + head + body * (zeros >> 20)
            + c.flush() + struct.pack("<II", crc, (len(header) + zeros) & 0xFFFFFFFF))


def idx_bombs() -> dict[str, bytes]:
    """gzip files that inflate to far more than their IDX header declares, or declare absurd
    sizes. Each must fail with a DataError without using the memory it asks for."""
    big = struct.pack(">HBB3I", 0, 8, 3, 100000, 100000, 100000)
    small = struct.pack(">HBB2I", 0, 8, 2, 10, 10)
    over = struct.pack(">HBB3I", 0, 8, 3, 2048, 1024, 1024)
    return {"1 GiB of zeros, no header": zero_bomb(b"", 1 << 30),
            "header declaring 2 GiB, then 1 GiB of zeros": zero_bomb(over, 1 << 30),
            "header declaring 10^15 bytes": zero_bomb(big, 1 << 20),
            "100-byte header, then 1 GiB": zero_bomb(small, 1 << 30),
            "(65536,)*4 dims (wraps a uint64 to 0)": gzip.compress(
                struct.pack(">HBB4I", 0, 8, 4, *[65536] * 4))}


# --------------------------------------------------------------------------- images

def image_seeds() -> list[bytes]:
    from PIL import Image

    digit = 255 - mnist_digits().x_test[0]  # black ink on white paper, as a user draws
    img = Image.fromarray(digit).resize((56, 56))
    seeds = []
    for fmt, mode in (("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "L"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "L"), ("WEBP", "RGB"), ("PPM", "RGB")):
        buf = io.BytesIO()
        img.convert(mode).save(buf, format=fmt)
        seeds.append(buf.getvalue())
    return seeds


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG with a valid IHDR for width×height (8-bit grey) and the given image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


@st.composite
def declared_sizes(draw) -> bytes:
    """Valid image headers that declare any size, up to 2^32-1 on a side."""
    side = st.one_of(st.integers(1, 64), st.integers(1, 2**31 - 1), st.sampled_from(INTERESTING))
    w, h = draw(side), draw(side)
    kind = draw(st.sampled_from(("png", "gif", "bmp")))
    if kind == "png":
        return png_declaring(max(w, 1), max(h, 1), zlib.compress(bytes(draw(st.integers(0, 4096)))))
    if kind == "gif":
        return (b"GIF89a" + struct.pack("<HHBBB", w & 0xFFFF, h & 0xFFFF, 0, 0, 0)
                + b"," + struct.pack("<HHHHB", 0, 0, w & 0xFFFF, h & 0xFFFF, 0)
                + b"\x08" + draw(st.binary(max_size=64)) + b"\x00;")
    body = draw(st.binary(max_size=256))
    info = struct.pack("<IiiHHIIiiII", 40, w & 0x7FFFFFFF, h & 0x7FFFFFFF, 1, 8, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + info + body


def image_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(image_seeds()), declared_sizes(), st.binary(max_size=512))


def image_target(data: bytes) -> None:
    from digitnet.data.images import load_digit

    digit = load_digit(data)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8


def image_bombs() -> dict[str, bytes]:
    return {"PNG declaring 100000×100000": png_declaring(100000, 100000,
                                                         zlib.compress(bytes(1 << 20), 9)),
            "PNG 6000×6000 (36 Mpx, under the limit) of zeros":
                png_declaring(6000, 6000, zlib.compress(bytes(6001 * 6000), 9))}


# --------------------------------------------------------------------------- run directories

def run_files() -> dict[str, bytes]:
    """The three files of a small saved model (784-8-10, random weights), as bytes."""
    import jax

    from digitnet import artifacts as art
    from digitnet.api import Model
    from digitnet.model import MLPSpec, init_params

    spec = MLPSpec(hidden=(8,))
    params = jax.tree.map(np.asarray, init_params(spec, jax.random.key(0)))
    stats = {"shift": np.full(784, 0.5, np.float32), "scale": np.full(784, 1 / 255, np.float32)}
    model = Model(spec, params, stats, {"train": {"epochs": 1}}, [{"epoch": 1, "loss": 0.5}])
    folder = ROOT / ".pytest_cache" / "reliability-seed-run"
    model.save(folder)
    return {name: (folder / name).read_bytes() for name in (art.CONFIG, art.WEIGHTS, art.HISTORY)}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=12)


@st.composite
def configs(draw, seed_config: bytes) -> bytes:
    """config.json with model fields replaced by arbitrary JSON values."""
    doc = json.loads(seed_config)
    for key in draw(st.lists(st.sampled_from(sorted(doc["model"]) + ["format", "model"]),
                             min_size=1, max_size=3)):
        if key in ("format", "model"):
            doc[key] = draw(JSON_VALUES)
        elif isinstance(doc["model"], dict):
            doc["model"][key] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


@st.composite
def safetensors_headers(draw, names: list[str]) -> bytes:
    """A safetensors file whose header gives any dtype, shape and offsets."""
    header = {}
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True)):
        big = st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1))
        header[name] = {"dtype": draw(st.sampled_from(("F32", "F64", "F16", "BF16", "I64", "U8",
                                                       "BOOL", "F8_E4M3", "X"))),
                        "shape": draw(st.lists(big, max_size=4)),
                        "data_offsets": draw(st.lists(big, min_size=2, max_size=2))}
    text = json.dumps(header).encode()
    length = len(text) if draw(st.booleans()) else draw(st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + text + draw(st.binary(max_size=256))


def run_inputs() -> st.SearchStrategy[dict[str, bytes]]:
    from digitnet import artifacts as art

    seed = run_files()
    names = [f"dense_{i}.{k}" for i in range(2) for k in ("kernel", "bias")]
    names += ["preprocess.shift", "preprocess.scale"]
    weights = st.one_of(mutated([seed[art.WEIGHTS]]), safetensors_headers(names),
                        st.just(seed[art.WEIGHTS]))
    config = st.one_of(mutated([seed[art.CONFIG]]), configs(seed[art.CONFIG]),
                       st.just(seed[art.CONFIG]))
    history = st.one_of(mutated([seed[art.HISTORY]]), st.just(seed[art.HISTORY]))
    return st.fixed_dictionaries({art.WEIGHTS: weights, art.CONFIG: config, art.HISTORY: history})


class RunTarget:
    def __init__(self, workdir: Path):
        self.folder = workdir / "fuzz-run"

    def __call__(self, files: dict[str, bytes]) -> None:
        import digitnet

        self.folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (self.folder / name).write_bytes(data)
        model = digitnet.load(self.folder)
        assert all(p["kernel"].dtype == np.float32 for p in model.params)


# --------------------------------------------------------------------------- Keras files

def keras_seeds(workdir: Path) -> dict[str, bytes]:
    """A .keras archive and a legacy .h5 model of a small MLP, by digitnet.keras itself."""
    from digitnet import keras

    model = keras.Sequential([keras.layers.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out = {}
    for suffix in (".keras", ".h5"):
        path = workdir / f"seed{suffix}"
        model.save(path)
        out[suffix] = path.read_bytes()
        path.unlink()
    return out


def zip_of(members: list[tuple[str, bytes, bool]]) -> bytes:
    """A zip of (name, data, is_symlink) members, names taken as given."""
    import zipfile

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        warnings.simplefilter("ignore")  # duplicate member names are part of the attack
        for name, data, link in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.external_attr = (0o120777 << 16)  # S_IFLNK: a symlink to `data`
            z.writestr(info, data)
    return buf.getvalue()


def zip_bomb() -> bytes:
    """A .keras-looking zip whose model.weights.h5 inflates to 256 MiB of zeros (~250 kB)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", b"{}")
        with z.open("model.weights.h5", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(256):
                f.write(block)
    return buf.getvalue()


@st.composite
def keras_archives(draw, seed: bytes) -> bytes:
    """A .keras zip rebuilt from the seed with hostile names, symlinks or layer configs."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config = json.loads(members["config.json"])
    if draw(st.booleans()):
        layers = config["config"]["layers"]
        layer = layers[draw(st.integers(0, len(layers) - 1))]
        layer["class_name"] = draw(st.sampled_from(
            ("Lambda", "TFOpLambda", "Functional", "Conv2D", "Dense", "Custom>Evil", "")))
        layer["module"] = draw(st.sampled_from(
            ("keras.layers", "os", "builtins", "__main__", "keras.src.layers", None)))
        if draw(st.booleans()):
            layer["registered_name"] = draw(st.sampled_from(("Custom>Evil", "os.system", None)))
        if draw(st.booleans()):
            layer["config"] = draw(JSON_VALUES)
    entries = [(n, json.dumps(config).encode() if n == "config.json" else d, False)
               for n, d in members.items()]
    extra = st.sampled_from(("../evil.py", "/tmp/evil.py", "a/../../evil.py", "C:evil",
                             "..\\evil.py", "model.weights.h5", "config.json", "assets/x"))
    for _ in range(draw(st.integers(0, 2))):
        entries.append((draw(extra), draw(st.binary(max_size=32)), draw(st.booleans())))
    return zip_of(draw(st.permutations(entries)))


def keras_inputs(workdir: Path) -> st.SearchStrategy[tuple[str, bytes]]:
    seeds = keras_seeds(workdir)
    suffix = st.sampled_from((".keras", ".h5"))
    return st.one_of(
        st.tuples(suffix, mutated(list(seeds.values()))),
        st.tuples(st.just(".keras"), keras_archives(seeds[".keras"])),
        st.tuples(st.just(".keras"), st.just(zip_bomb())),
        st.tuples(suffix, st.binary(max_size=512)))


class KerasTarget:
    """digitnet.keras.load_model on a file; nothing may appear beside it (no extraction)."""

    def __init__(self, workdir: Path):
        self.folder = workdir / "fuzz-keras"
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, case: tuple[str, bytes]) -> None:
        from digitnet.keras import load_model

        suffix, data = case
        path = self.folder / f"model{suffix}"
        for p in self.folder.iterdir():
            p.unlink()
        path.write_bytes(data)
        try:
            load_model(path)
        finally:
            assert [p.name for p in self.folder.iterdir()] == [path.name]
            assert not (self.folder.parent / "evil.py").exists()


# --------------------------------------------------------------------------- fuzz driver

@dataclass
class FuzzResult:
    name: str
    cases: int = 0
    accepted: int = 0  # read without error
    rejected: int = 0  # a DigitnetError (the documented clear error)
    slowest_s: float = 0.0
    peak_rss_mb: float = 0.0
    failure: str | None = None


def fuzz_target(name: str, workdir: Path):
    """(callable, hypothesis strategy) for one reader."""
    if name == "idx":
        return IdxTarget(workdir), idx_inputs()
    if name == "images":
        return image_target, image_inputs()
    if name == "run":
        return RunTarget(workdir), run_inputs()
    if name == "keras":
        return KerasTarget(workdir), keras_inputs(workdir)
    raise ValueError(name)


FUZZ_NAMES = ("idx", "images", "run", "keras")


def fuzz(name: str, cases: int, workdir: Path, seed: int = 0) -> FuzzResult:
    """Run `cases` generated inputs through one reader. Anything but a one-line DigitnetError
    is a failure (hypothesis then shrinks it to a minimal input); a case that runs past
    CASE_SECONDS kills the process with a traceback of where it hung."""
    from digitnet.errors import DigitnetError

    target, strategy = fuzz_target(name, workdir)
    result = FuzzResult(name)

    def case(data: Any) -> None:
        faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)
        t0 = time.perf_counter()
        try:
            target(data)
            result.accepted += 1
        except DigitnetError as exc:
            assert "\n" not in str(exc), f"multi-line error: {exc!r}"
            result.rejected += 1
        finally:
            faulthandler.cancel_dump_traceback_later()
            result.cases += 1
            result.slowest_s = max(result.slowest_s, time.perf_counter() - t0)

    run = settings(max_examples=cases, deadline=None, database=None, derandomize=False,
                   suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                   print_blob=True)(given(strategy)(case))
    try:
        hypothesis_seed(seed)(run)()
    except Exception as exc:  # the falsifying example is printed by hypothesis
        result.failure = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def bombs(which: str) -> dict[str, str]:
    """Each bomb → the error it gave. Run under an address-space limit (see worker())."""
    from digitnet.data.idx import read_idx
    from digitnet.data.images import load_digit
    from digitnet.errors import DigitnetError

    out = {}
    items = idx_bombs() if which == "idx" else image_bombs()
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"digitnet-bomb-{os.getpid()}.gz"
    for label, data in items.items():
        try:
            if which == "idx":
                path.write_bytes(data)
                read_idx(path)
            else:
                load_digit(data)
            out[label] = "accepted"
        except DigitnetError as exc:
            out[label] = f"DigitnetError: {exc}"
        except MemoryError:
            out[label] = "MemoryError"
        finally:
            path.unlink(missing_ok=True)
    return out


def worker(kind: str, arg: str, cases: int, workdir: Path, memory: int) -> dict[str, Any]:
    """Run one fuzz target or the bombs in a fresh process under RLIMIT_AS = `memory`."""
    cmd = [sys.executable, "-m", "tests.reliability", "--worker", kind, arg, str(cases),
           str(workdir), str(memory)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        return {"failure": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(kind: str, arg: str, cases: int, workdir: Path, memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "fuzz":
        out: Any = asdict(fuzz(arg, cases, workdir))
    else:
        out = {"results": bombs(arg),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out))


# --------------------------------------------------------------------------- kill -9

def small_dataset(folder: Path, n_train: int = 2000, n_test: int = 300) -> Path:
    """A real MNIST subset as the four IDX files, so that a run takes seconds."""
    from digitnet.data.idx import write_idx

    ds = mnist_digits()
    for stem, arr in (("train-images-idx3-ubyte", ds.x_train[:n_train]),
                      ("train-labels-idx1-ubyte", ds.y_train[:n_train].astype(np.uint8)),
                      ("t10k-images-idx3-ubyte", ds.x_test[:n_test]),
                      ("t10k-labels-idx1-ubyte", ds.y_test[:n_test].astype(np.uint8))):
        if not (folder / stem).exists():
            write_idx(folder / stem, arr)
    return folder


def train_options(epochs: int, **more: Any) -> dict[str, Any]:
    return {"hidden": "32", "epochs": epochs, "batch_size": 32, "seed": 7, **more}


def train_flags(data: Path, epochs: int, **more: Any) -> list[str]:
    """The command-line form of train_options(), for `digitnet train`."""
    flags = ["--data-dir", str(data), "--quiet"]
    for key, value in train_options(epochs, **more).items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def train_in_process(data: Path, out: Path, epochs: int, **more: Any) -> None:
    """What `digitnet train` with train_flags() does, without a new process (faster)."""
    import digitnet
    from digitnet.config import resolve

    spec, cfg, _ = resolve(train_options(epochs, **more))
    digitnet.fit(spec, cfg, data_dir=data, out=out, verbose=False)


def check_run_dir(folder: Path) -> dict[str, Any]:
    """Every file present must load; temporary files must be ours. Returns what is there."""
    from digitnet import artifacts as art
    from digitnet.api import load

    seen: dict[str, Any] = {"temps": []}
    if not folder.exists():
        return seen
    for p in folder.iterdir():
        if p.name.endswith(art.TMP_SUFFIX):
            assert p.name.startswith("."), p
            seen["temps"].append(p.name)
        elif p.name == art.CONFIG:
            seen["status"] = art.read_json(p).get("status")
        elif p.name == art.CHECKPOINT:
            tensors, meta = art.read_tensors(p)
            assert all(np.isfinite(v).all() for v in tensors.values())
            seen["checkpoint_epoch"] = int(meta["epoch"])
        elif p.name == art.HISTORY:
            seen["history_rows"] = len(art.read_history(p))
        elif p.name == art.WEIGHTS:
            load(folder)  # weights present: config + weights + history form a model
            seen["weights"] = True
        else:
            raise AssertionError(f"unexpected file {p}")
    return seen


def checkpoint_epoch(folder: Path) -> int:
    from digitnet import artifacts as art

    try:
        return int(art.read_tensors(folder / art.CHECKPOINT)[1]["epoch"])
    except Exception:  # not there yet
        return 0


def weights_equal(a: Path, b: Path) -> bool:
    from digitnet import artifacts as art

    ta, tb = art.read_tensors(a / art.WEIGHTS)[0], art.read_tensors(b / art.WEIGHTS)[0]
    return ta.keys() == tb.keys() and all(ta[k].tobytes() == tb[k].tobytes() for k in ta)


@dataclass
class KillReport:
    epochs: int
    kills: list[dict[str, Any]] = field(default_factory=list)
    completions: int = 0
    identical: int = 0
    processes: int = 0
    seconds: float = 0.0


def kill_resume(workdir: Path, kills: int, epochs: int = 20, seed: int = 0) -> KillReport:
    """SIGKILL `digitnet train --resume` at random moments until `kills` kills have landed.

    Each kill aims at start-up (one in five) or at a random point of a random epoch still ahead,
    so that kills fall everywhere from the imports to the final save. After each kill the run directory
    is checked file by file; the checkpoint epoch must never go back (no finished epoch is lost
    but the one in progress); each run that completes must equal the uninterrupted reference
    bit for bit, and leaves no temporary file."""
    rng = random.Random(seed)
    report = KillReport(epochs)
    t_start = time.perf_counter()
    data = small_dataset(workdir / "data")
    flags = train_flags(data, epochs)
    reference = workdir / "reference"
    if not (reference / "weights.safetensors").exists():
        train_in_process(data, reference, epochs)  # so the CLI must also match the API
    scenario, run = 0, workdir / "run-0"
    while True:
        before = checkpoint_epoch(run)
        proc = subprocess.Popen([sys.executable, "-m", "digitnet", "train", *flags, "--out",
                                 str(run), "--resume"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        report.processes += 1
        started = time.time()
        # A checkpoint epoch to wait for, strictly ahead (or -1: kill during start-up); none
        # when this process has no epoch left to aim at: it then completes the scenario.
        aim = None
        if len(report.kills) < kills:
            aim = -1 if rng.random() < 0.2 else (
                rng.randrange(before + 1, epochs) if before + 1 < epochs else None)
        killed, epoch_s = False, 0.5
        if aim is not None:
            if aim < 0:  # during start-up: imports, data loading, compilation
                time.sleep(rng.uniform(0, 3.0))
            else:  # a random point inside epoch aim+1 (or the final save when aim+1 = epochs)
                while proc.poll() is None and (checkpoint_epoch(run) < aim
                                               or not rewritten(run, started)):
                    time.sleep(0.01)
                rows = json_history(run)
                epoch_s = rows[-1]["seconds"] if rows else epoch_s
                time.sleep(rng.uniform(0, 1.2 * epoch_s))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
        _, err = proc.communicate(timeout=600)
        seen = check_run_dir(run)
        after = seen.get("checkpoint_epoch", 0)
        assert after >= before, f"checkpoint went back from epoch {before} to {after}"
        assert seen.get("history_rows", 0) in (after, after - 1), seen
        if killed:
            report.kills.append({"aim": "start-up" if aim < 0 else f"epoch {aim + 1}",
                                 "after_s": round(time.time() - started, 2),
                                 "checkpoint_before": before, "checkpoint_after": after,
                                 "temps": len(seen["temps"]), "weights": "weights" in seen})
            continue
        assert proc.returncode == 0, err.decode()[-2000:]
        assert seen["status"] == "complete" and not seen["temps"], seen
        assert seen["history_rows"] == epochs
        report.completions += 1
        report.identical += weights_equal(reference, run)
        assert weights_equal(reference, run), f"{run} differs from the uninterrupted run"
        if len(report.kills) >= kills:
            break
        scenario += 1
        run = workdir / f"run-{scenario}"
    report.seconds = round(time.perf_counter() - t_start, 1)
    return report


def rewritten(run: Path, since: float) -> bool:
    """Whether this process has begun fitting: it rewrites config.json first."""
    try:
        return (run / "config.json").stat().st_mtime >= since
    except FileNotFoundError:
        return False


def json_history(run: Path) -> list[dict[str, float]]:
    from digitnet import artifacts as art

    try:
        return art.read_history(run / art.HISTORY)
    except Exception:  # being replaced right now
        return []


# --------------------------------------------------------------------------- downloads

FETCH_CHILD = """
import dataclasses, hashlib, json, sys
from digitnet.data import datasets, download
from digitnet.data.datasets import RemoteFile
served, url = json.loads(sys.argv[1]), sys.argv[2]
pins = {role: RemoteFile(name, size, sha) for role, (name, size, sha) in served.items()}
datasets.REGISTRY["kmnist"] = dataclasses.replace(datasets.REGISTRY["kmnist"], files=pins,
                                                  mirrors=(url,))
download.BACKOFF = 0.01
datasets.fetch("kmnist")
ds = datasets.load_dataset("kmnist")
print(len(ds.y_train), len(ds.y_test))
"""


def download_faults(workdir: Path, kills: int, seed: int = 0) -> dict[str, Any]:
    """Real `datasets.fetch` processes against a slow server on 127.0.0.1: two at once into one
    cache, and SIGKILLs at random moments of a download, each followed by a clean fetch.
    The cache must only ever hold complete files that match their pins."""
    import hashlib
    import shutil
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from digitnet.data.datasets import FILES
    from digitnet.data.idx import encode_idx

    rng = np.random.default_rng(seed)
    files = {f"{FILES[role]}.gz": gzip.compress(encode_idx(array), mtime=0) for role, array in (
        ("train_images", rng.integers(0, 256, (3000, 28, 28), dtype=np.uint8)),
        ("train_labels", rng.integers(0, 10, 3000).astype(np.uint8)),
        ("test_images", rng.integers(0, 256, (500, 28, 28), dtype=np.uint8)),
        ("test_labels", rng.integers(0, 10, 500).astype(np.uint8)))}
    hits: dict[str, int] = {}

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = files.get(self.path.rsplit("/", 1)[-1])
            hits[self.path] = hits.get(self.path, 0) + 1
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 1 << 16):  # ~2 s for the largest: kills land mid-body
                self.wfile.write(body[i : i + (1 << 16)])
                self.wfile.flush()
                time.sleep(0.05)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a killed client breaks its pipe: that is the test

    server = Server(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/m/"
    served = {role: (f"{stem}.gz", len(files[f"{stem}.gz"]),
                     hashlib.sha256(files[f"{stem}.gz"]).hexdigest())
              for role, stem in FILES.items()}
    pins = {name: sha for name, _, sha in served.values()}
    home = workdir / "download-home"

    def start() -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DIGITNET_HOME": str(home)}
        return subprocess.Popen([sys.executable, "-c", FETCH_CHILD, json.dumps(served), url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def cache() -> dict[str, str]:
        """Each real (non-temporary) file in the cache → whether it matches its pin."""
        folder = home / "kmnist"
        out = {}
        for p in sorted(folder.iterdir()) if folder.exists() else []:
            if not p.name.startswith("."):
                ok = hashlib.sha256(p.read_bytes()).hexdigest() == pins.get(p.name)
                out[p.name] = "good" if ok else "CORRUPT"
        return out

    def finish(proc: subprocess.Popen) -> None:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.split() == [b"3000", b"500"], out

    try:
        report: dict[str, Any] = {"kills": 0, "files_at_kill": [], "corrupt": 0}
        shutil.rmtree(home, ignore_errors=True)
        hits.clear()
        pair = [start(), start()]
        for proc in pair:
            finish(proc)
        report["concurrent"] = {"cache": cache(), "requests": sum(hits.values())}
        rand = random.Random(seed)
        for _ in range(3 * kills):
            if report["kills"] >= kills:
                break
            shutil.rmtree(home, ignore_errors=True)
            proc = start()
            time.sleep(rand.uniform(0.2, 3.0))
            killed = proc.poll() is None
            if killed:
                os.kill(proc.pid, signal.SIGKILL)
                report["kills"] += 1
            proc.communicate()
            seen = cache()
            if killed:
                report["files_at_kill"].append(len(seen))
            report["corrupt"] += sum(v != "good" for v in seen.values())
            finish(start())
            report["corrupt"] += sum(v != "good" for v in cache().values())
        return report
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- the service

@contextlib.contextmanager
def serving(run_dir: Path, workdir: Path, *flags: str, src: Path = ROOT / "src") -> Iterator[str]:
    """`digitnet serve RUN FLAGS…` in its own process on a free port of 127.0.0.1; yields its
    URL, and stops it afterwards. Its output goes to WORKDIR/serve.log. `src`: the digitnet
    sources to run (another checkout's, to measure what an attack finds there)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = workdir / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(run_dir),
                                 "--port", str(port), *flags], stdout=out, stderr=out,
                                env={**os.environ, "PYTHONPATH": str(src)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # stuck in a request (the attack part finds such)
            proc.kill()
            proc.wait(timeout=30)


def wait_for_health(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    """Until `url`/health answers 200; a RuntimeError with the server's log if it exits first."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"digitnet serve did not start: {log.read_text()}")


def raw_request(url: str, head: bytes, timeout: float = 10.0) -> bytes:
    """Send `head` on a fresh socket and return what the server answers first."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        return sock.recv(4096)


def fuzz_operation(op: Any, mode: Any, url: str, cases: int) -> tuple[dict[int, int], bool]:
    """Status codes of `cases` schemathesis requests to one operation; whether any was a 5xx."""
    codes: dict[int, int] = {}

    def call(case: Any) -> None:
        status = case.call(base_url=url, timeout=30).status_code
        codes[status] = codes.get(status, 0) + 1
        assert status < 500, f"{case.method} {case.path}: HTTP {status}"

    run = settings(max_examples=cases, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck),
                   phases=(Phase.generate,))(given(op.as_strategy(mode))(call))
    try:
        run()
    except AssertionError:
        return codes, True
    except Unsatisfiable:  # no invalid request exists for an operation without inputs
        pass
    return codes, False


def service_faults(url: str, cases: int) -> dict[str, Any]:
    """Every operation of the OpenAPI schema fuzzed by schemathesis (valid and invalid
    requests): no 5xx. A body declared over the limit is refused before it is sent; 64 clients
    that stall mid-headers do not stop /health from answering."""
    import socket

    import httpx
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    per_run = max(1, cases // (2 * len(operations)))
    out: dict[str, Any] = {"operations": {}, "server_errors": 0}
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            codes, failed = fuzz_operation(op, mode, url, per_run)
            out["operations"][f"{op.method.upper()} {op.path} ({mode.value})"] = codes
            out["server_errors"] += failed
    limit = httpx.get(f"{url}/model").json()["limits"]["max_body_bytes"]
    t0 = time.perf_counter()
    answer = raw_request(url, (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                               f"image/png\r\nContent-Length: {limit * 10}\r\n\r\n").encode())
    out["oversized"] = {"declared": limit * 10, "status": answer.split(b"\r\n")[0].decode(),
                        "seconds": round(time.perf_counter() - t0, 2)}
    slow = []
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        slow.append(s)
    t0 = time.perf_counter()
    health = httpx.get(f"{url}/health", timeout=30).status_code
    out["slow_clients"] = {"stalled": len(slow), "health": health,
                           "seconds": round(time.perf_counter() - t0, 2)}
    for s in slow:
        s.close()
    out["cases"] = sum(n for codes in out["operations"].values() for n in codes.values())
    return out


def server_process(url: str):
    """The psutil.Process listening on `url`'s port (to read its resident memory)."""
    import psutil

    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"no process listens on port {port}")


def service_load(url: str, seconds: float = 60, clients: int = 32,
                 burst: int = 256) -> dict[str, Any]:
    """`clients` concurrent clients POST a real MNIST digit (PNG) to /predict for `seconds`,
    then `burst` requests at once: throughput, latency percentiles, errors, server RSS."""
    import asyncio

    import httpx
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(255 - mnist_digits().x_test[0]).resize((84, 84)).save(buf, format="PNG")
    png = buf.getvalue()
    server = server_process(url)

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        errors: list[str] = []
        limits = httpx.Limits(max_connections=max(clients, burst))
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def one() -> None:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/predict", content=png,
                                          headers={"content-type": "image/png"})
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                latencies.append(time.perf_counter() - t0)

            async def loop(until: float) -> None:
                while time.perf_counter() < until:
                    await one()

            await one()  # warm-up: the first request compiles nothing, but opens a connection
            rss_start = server.memory_info().rss
            t0 = time.perf_counter()
            await asyncio.gather(*[loop(t0 + seconds) for _ in range(clients)])
            steady = time.perf_counter() - t0
            n_steady = len(latencies) - 1
            t1 = time.perf_counter()
            await asyncio.gather(*[one() for _ in range(burst)])
            burst_s = time.perf_counter() - t1
            rss_end = server.memory_info().rss
        steady_ms = np.array(latencies[1 : 1 + n_steady]) * 1000
        burst_ms = np.array(latencies[1 + n_steady :]) * 1000
        return {"clients": clients, "seconds": round(steady, 1), "requests": n_steady,
                "req_per_s": round(n_steady / steady, 1),
                "p50_ms": round(float(np.percentile(steady_ms, 50)), 1),
                "p99_ms": round(float(np.percentile(steady_ms, 99)), 1),
                "burst": burst, "burst_s": round(burst_s, 2),
                "burst_p99_ms": round(float(np.percentile(burst_ms, 99)), 1),
                "errors": len(errors), "error_kinds": sorted(set(errors)),
                "rss_start_mb": round(rss_start / 2**20, 1),
                "rss_end_mb": round(rss_end / 2**20, 1)}

    return asyncio.run(run())


# --------------------------------------------------------------------------- full disk, NaN

def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


def full_disk(workdir: Path, model_dir: Path) -> dict[str, Any]:
    """A tmpfs with room for a saved model and half of another. Saving the model over itself,
    and training a new run beside it, must each fail with one line (exit 2 from the CLI),
    leave the previous model byte for byte unchanged and leave no temporary file."""
    import shutil

    import digitnet
    from digitnet import artifacts as art
    from digitnet.errors import StorageError

    disk = workdir / "small-disk"
    names = (art.CONFIG, art.WEIGHTS, art.HISTORY)
    size = sum((model_dir / name).stat().st_size for name in names) * 3 // 2
    if not mount_tmpfs(disk, str(size)):
        return {"skipped": "cannot mount a tmpfs (needs root)"}
    try:
        run = disk / "run"
        run.mkdir()
        for name in names:
            shutil.copyfile(model_dir / name, run / name)
        before = {p.name: p.read_bytes() for p in run.iterdir()}
        model = digitnet.load(run)
        try:
            model.save(run)
            api = "saved (the disk was not full)"
        except StorageError as exc:
            api = f"StorageError: {exc}"
        after_api = {p.name: p.read_bytes() for p in run.iterdir()}
        proc = run_cli("train", "--out", str(disk / "new-run"), "--epochs", "1", "--quiet",
                   "--data-dir", str(small_dataset(workdir / "data")))
        kept = {p.name: p.read_bytes() for p in run.iterdir()} == before
        digitnet.load(run)
        return {"tmpfs_bytes": size, "api": api, "api_unchanged": after_api == before,
                "cli_exit": proc.returncode, "cli_stderr": proc.stderr.strip(),
                "model_kept": kept,
                "files_after": sorted(p.name for p in disk.glob("*/*")) + sorted(
                    p.name for p in disk.glob("*/.*"))}
    finally:
        umount(disk)


def diverge(workdir: Path) -> dict[str, Any]:
    """One good SGD epoch, then resume with lr 1e12: the run must stop with one line (exit 2)
    and keep the epoch-1 checkpoint and the saved model, both finite."""
    from digitnet import artifacts as art

    data = small_dataset(workdir / "data")
    run = workdir / "diverge"
    train_in_process(data, run, 1, hidden="16", optimizer="sgd", lr=0.01)
    good = (run / art.WEIGHTS).read_bytes()
    proc = run_cli("train", *train_flags(data, 3, hidden="16", optimizer="sgd", lr=1e12), "--out",
               str(run), "--resume")
    tensors, meta = art.read_tensors(run / art.CHECKPOINT)
    return {"exit": proc.returncode, "stderr": proc.stderr.strip(),
            "checkpoint_epoch": int(meta["epoch"]),
            "checkpoint_finite": all(bool(np.isfinite(v).all()) for v in tensors.values()),
            "weights_kept": (run / art.WEIGHTS).read_bytes() == good}


# --------------------------------------------------------------------------- the full run

def run_fuzz(workdir: Path, cases: int, kills: int, previous: dict[str, Any]) -> dict[str, Any]:
    """Each reader at `cases` cases; readers that already passed at that count are kept."""
    out: dict[str, Any] = {**previous, "cases": cases} if previous.get("cases") == cases else {
        "cases": cases}
    for name in FUZZ_NAMES:
        if name in out and not out[name].get("failure"):
            continue
        print(f"fuzz {name}: {cases} cases", flush=True)
        out[name] = worker("fuzz", name, cases, workdir / f"fuzz-{name}", MEMORY_LIMIT)
        print(" ", out[name], flush=True)
    return out


def run_bombs(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    return {which: worker("bombs", which, 0, workdir, 1 << 30) for which in ("idx", "images")}


def run_kills(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    return asdict(kill_resume(workdir / "kill", kills))


def run_downloads(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    return download_faults(workdir, kills)


def reference_run(workdir: Path) -> Path:
    """The uninterrupted run of the kill part (trained here when that part has not run)."""
    reference = workdir / "kill" / "reference"
    if not (reference / "weights.safetensors").exists():
        train_in_process(small_dataset(workdir / "data"), reference, 20)
    return reference


def run_service(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    with serving(reference_run(workdir), workdir) as url:
        return service_faults(url, cases)


def run_load(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    with serving(reference_run(workdir), workdir) as url:
        return service_load(url)


def run_diverge(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    return diverge(workdir)


def run_full_disk(workdir: Path, cases: int, kills: int) -> dict[str, Any]:
    return full_disk(workdir, reference_run(workdir))


ATTACK_SCALE = 0  # --attack-scale; 0: from --cases


def run_attack(workdir: Path, cases: int, kills: int, before: str | None = None,
               classes: tuple[int, ...] = (), previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The eight classes of tests/attacks.py at a scale that follows --cases (10,000 → 25);
    with `before` (a git revision), also a smaller run against that revision's sources, to
    count what the attack finds without the fixes. `classes`: rerun only these, keeping the
    others' results from `previous`."""
    import attacks

    scale = ATTACK_SCALE or max(1, cases // 400)
    now = attacks.run_attacks(workdir / "attack", reference_run(workdir), scale,
                              classes or tuple(attacks.TITLES),
                              log=lambda s: print(" ", s, flush=True))
    out: dict[str, Any] = {"scale": scale, "now": {c: asdict(o) for c, o in now.items()},
                           "generators": {c: attacks.describe(c) for c in now}}
    if classes and previous:
        def by_name(d: dict) -> dict:  # keys are ints here, strings once read back from JSON
            return {str(k): v for k, v in d.items()}

        keep = {k: v for k, v in by_name(previous["now"]).items() if int(k) not in classes}
        out = {**previous, "now": {**keep, **by_name(out["now"])},
               "generators": {**by_name(previous["generators"]), **by_name(out["generators"])}}
        out["now"] = dict(sorted(out["now"].items(), key=lambda kv: int(kv[0])))
        return out
    if before:
        src = workdir / "before-src"
        if not src.exists():
            src.mkdir(parents=True)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", before, "src"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        old_scale = max(1, scale // 5)
        then = attacks.run_attacks(workdir / "attack-before", reference_run(workdir), old_scale,
                                   src=src / "src", log=lambda s: print(" before:", s, flush=True))
        out["before"] = {"revision": before, "scale": old_scale,
                         "results": {c: asdict(o) for c, o in then.items()}}
    return out


PARTS = {"fuzz": run_fuzz, "bombs": run_bombs, "kills": run_kills, "diverge": run_diverge,
         "full_disk": run_full_disk, "downloads": run_downloads, "service": run_service,
         "load": run_load, "attack": run_attack}


def full_run(workdir: Path, cases: int, kills: int, parts: list[str],
             results: dict[str, Any], before: str | None = None,
             classes: tuple[int, ...] = ()) -> dict[str, Any]:
    """Run the chosen parts at full count into `results` (which may hold an earlier run's)."""
    for part in parts:
        t0 = time.perf_counter()
        if part == "fuzz":
            results[part] = run_fuzz(workdir, cases, kills, results.get("fuzz", {}))
        elif part == "attack":
            results[part] = run_attack(workdir, cases, kills, before, classes,
                                       results.get("attack"))
        else:
            results[part] = PARTS[part](workdir, cases, kills)
        results.setdefault("seconds", {})[part] = round(time.perf_counter() - t0, 1)
        print(f"{part} ({results['seconds'][part]} s):", results[part], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    p.add_argument("--full", action="store_true", help="full counts; writes docs/reliability.md")
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--workdir", default="/tmp/digitnet-reliability")
    p.add_argument("--parts", default=",".join(PARTS),
                   help="comma list of parts to run; the others keep their last results")
    p.add_argument("--attack-before", metavar="REV",
                   help="also run the attack part against this git revision (before the fixes)")
    p.add_argument("--attack-scale", type=int, default=0,
                   help="cases per class of the attack part, as a multiple of the default "
                        "tests' (default: --cases / 400)")
    p.add_argument("--attack-classes", default="",
                   help="comma list: rerun only these classes of the attack part")
    p.add_argument("--worker", nargs=5, metavar=("KIND", "ARG", "CASES", "DIR", "MEMORY"))
    args = p.parse_args(argv)
    if args.worker:
        kind, arg, cases, folder, memory = args.worker
        worker_main(kind, arg, int(cases), Path(folder), int(memory))
        return 0
    if not args.full:
        p.print_help()
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    saved = workdir / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    global ATTACK_SCALE
    ATTACK_SCALE = args.attack_scale
    full_run(workdir, args.cases, args.kills, args.parts.split(","), results, args.attack_before,
             tuple(int(c) for c in args.attack_classes.split(",") if c))
    saved.write_text(json.dumps(results, indent=2))
    from reliability_report import write_report

    write_report(results, ROOT / "docs" / "reliability.md",
                 command=f"python -m tests.reliability --full --cases {args.cases} "
                         f"--kills {args.kills}"
                         + (f" --attack-scale {args.attack_scale}" if args.attack_scale else "")
                         + (f" --attack-before {args.attack_before}" if args.attack_before else ""))
    print(f"wrote docs/reliability.md ({sum(results['seconds'].values()):.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
