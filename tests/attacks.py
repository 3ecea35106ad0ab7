"""The eight classes of hostile input of issue 16, each as a generator of many cases.

    1 memory amplified before a limit     5 files that point elsewhere
    2 5xx from the service                6 tracebacks instead of one line (CLI, loaders)
    3 CPU bombs                           7 bad values accepted at load
    4 slow clients                        8 the HTTP layer (malformed requests, Host)

Library and CLI cases run in a worker process under an address-space limit (a case that hangs
kills it with a traceback); service cases go to `digitnet serve` in its own process, one fresh
server per class, whose CPU time per request and peak RSS (VmHWM) are read from /proc. A case
fails when its outcome is not the promised one: a one-line DigitnetError or exit 2 with one
line of stderr, a 4xx JSON answer, a bounded cost. `tests/reliability.py` runs this as its
`attack` part; `tests/test_reliability.py` runs a few cases of each class.
"""

from __future__ import annotations

import base64
import contextlib
import faulthandler
import io
import json
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE_SECONDS = 30.0  # a library case running longer is a hang
MEMORY_LIMIT = 3 << 30  # RLIMIT_AS of the worker
CASE_RSS_GROWTH = 128  # MiB a refused class-1 file may add to the worker's peak RSS
CASE_CPU = 1.0  # CPU seconds a refused class-1 file may cost
SERVER_CPU_LIMIT = 1.0  # CPU seconds the server may spend on one request
SERVER_RSS_GROWTH = 768  # MiB the server's peak RSS may grow under a class's requests
STALL_SECONDS = 45.0  # a stalled connection must be closed by the server within this (body timeout 30 s)
TITLES = {1: "memory amplified before any limit", 2: "5xx from the service", 3: "CPU bombs",
          4: "slow clients", 5: "files that point elsewhere", 6: "tracebacks instead of one line",
          7: "bad values accepted at load", 8: "the HTTP layer"}
WORKER_CLASSES = (1, 5, 6, 7)
SERVICE_CLASSES = (1, 2, 3, 4, 8)


@dataclass
class Outcome:
    cls: int
    cases: int = 0
    failures: list[str] = field(default_factory=list)  # first few, one line each
    failed: int = 0
    worst_cpu_s: float = 0.0
    worst_case: str = ""
    peak_rss_mb: float = 0.0

    def record(self, label: str, ok: bool, why: str = "", cpu: float = 0.0) -> None:
        self.cases += 1
        if cpu >= self.worst_cpu_s:
            self.worst_cpu_s, self.worst_case = round(cpu, 3), label
        if not ok:
            self.failed += 1
            if len(self.failures) < 12:
                self.failures.append(f"{label}: {why}"[:300])

    def merge(self, other: Outcome) -> None:
        self.cases += other.cases
        self.failed += other.failed
        self.failures += other.failures[: 12 - len(self.failures)]
        if other.worst_cpu_s >= self.worst_cpu_s:
            self.worst_cpu_s, self.worst_case = other.worst_cpu_s, other.worst_case
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)


# =========================================================================== library cases

def one_line_error(fn: Callable[[], Any]) -> tuple[bool, str]:
    """(refused with a one-line DigitnetError, what happened)."""
    from digitnet.errors import DigitnetError

    try:
        fn()
    except DigitnetError as exc:
        return "\n" not in str(exc), f"DigitnetError: {exc}"
    except BaseException as exc:  # noqa: BLE001 - any other exception is the failure we look for
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return False, "accepted"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)
    t0 = time.process_time()
    try:
        return fn(), time.process_time() - t0
    finally:
        faulthandler.cancel_dump_traceback_later()


class Files:
    """Seed files, made once per worker: a small run directory, a .keras and a .h5 model."""

    def __init__(self, workdir: Path):
        import shutil

        self.dir = workdir
        if workdir.exists():  # an earlier run's cases (the seed files are made again below)
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        self.run = workdir / "seed-run"
        if not (self.run / "weights.safetensors").exists():
            from reliability import run_files

            self.run.mkdir(parents=True, exist_ok=True)
            for name, data in run_files().items():
                (self.run / name).write_bytes(data)
        from reliability import keras_seeds

        self.keras = keras_seeds(workdir)
        self.n = 0

    def fresh(self, suffix: str = "") -> Path:
        self.n += 1
        return self.dir / f"case-{self.n}{suffix}"

    def run_copy(self) -> Path:
        import shutil

        out = self.fresh()
        shutil.copytree(self.run, out)
        return out


def keras_with_config(seed: bytes, edit: Callable[[dict], Any], members: dict | None = None,
                      compress: int = zipfile.ZIP_STORED) -> bytes:
    with zipfile.ZipFile(io.BytesIO(seed)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    files.update(members or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in files.items():
            z.writestr(name, data if isinstance(data, bytes) else data.encode())
    return buf.getvalue()


def h5_file(build: Callable[[Any], None]) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        build(f)
    return buf.getvalue()


# ---------------------------------------------------------------- class 1 (library part)

def legacy_with_config(seed: bytes, edit: Callable[[dict], Any]) -> bytes:
    """A legacy full-model .h5 whose model_config is edited (its weights kept)."""
    import h5py

    buf = io.BytesIO(seed)
    with h5py.File(buf, "a") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        del f.attrs["model_config"]
        f.attrs["model_config"] = json.dumps(config)
    return buf.getvalue()


WEIGHT_STORAGE = ("declared giant", "chunk bomb", "unknown filter", "odd dtype", "scaleoffset",
                  "deflated zeros")


def weights_h5(rng: random.Random, kind: str | None = None) -> tuple[str, bytes]:
    """A Keras 3 .weights.h5 for the seed model (784 → 8 → 10) whose first kernel is stored in
    a way that costs far more to read than the file's bytes, or cannot be read as weights."""
    kind = kind or rng.choice(WEIGHT_STORAGE)
    label = ""

    def build(f):
        nonlocal label
        vars_ = f.create_group("layers").create_group("dense").create_group("vars")
        if kind == "declared giant":  # the shape of a Dense(100000) kernel, one chunk written
            units = rng.choice([30_000, 100_000, 160_000])
            ds = vars_.create_dataset("0", shape=(784, units), dtype="f4", chunks=(784, 64),
                                      compression="gzip")
            ds[:, :64] = 0.5
            label = f"a kernel declared (784, {units}), one chunk written"
        elif kind == "chunk bomb":  # a small dataset in one huge compressed chunk
            side = rng.choice([4608, 6144, 8192])  # 81 to 256 MiB; writing one costs that much here
            ds = vars_.create_dataset("0", shape=(784, 8), maxshape=(None, None), dtype="f4",
                                      chunks=(side, side), compression="gzip")
            ds[...] = 0.5
            label = f"a (784, 8) kernel in one {side}x{side} gzip chunk"
        elif kind == "unknown filter":
            code = rng.choice([307, 32001, 32004, 32015, 65000])
            ds = vars_.create_dataset("0", shape=(784, 8), dtype="f4", chunks=(784, 8),
                                      compression=code, allow_unknown_filter=True)
            ds.id.write_direct_chunk((0, 0), os.urandom(64))
            label = f"a kernel through HDF5 filter {code}"
        elif kind == "deflated zeros":  # written in full, but 1000:1
            units = rng.choice([8192, 40960])
            vars_.create_dataset("0", data=np.zeros((784, units), np.float32), chunks=(784, 512),
                                 compression="gzip")
            label = f"a (784, {units}) kernel of zeros, deflated"
        elif kind == "scaleoffset":
            vars_.create_dataset("0", data=np.ones((784, 8), np.float32), scaleoffset=2)
            label = "a kernel through the scale-offset filter"
        else:
            dtype = rng.choice(["S8", "i8", "c8", [("a", "f4"), ("b", "f4")]])
            vars_.create_dataset("0", shape=(784, 8), dtype=np.dtype(dtype))
            vars_["0"][...] = np.zeros((784, 8), np.dtype(dtype))
            label = f"a kernel of dtype {np.dtype(dtype)}"
        vars_.create_dataset("1", data=np.zeros(8, np.float32))
        last = f["layers"].create_group("dense_1").create_group("vars")
        last.create_dataset("0", data=np.zeros((8, 10), np.float32))
        last.create_dataset("1", data=np.zeros(10, np.float32))
        f.create_group("vars")

    data = h5_file(build)
    return label, data


def safetensors_with_extra(run: Path, megabytes: int) -> None:
    """The run's weights file with an extra tensor nothing in its config asks for."""
    from safetensors.numpy import load, save

    tensors = load((run / "weights.safetensors").read_bytes())
    tensors["junk"] = np.zeros(megabytes << 18, np.float32)
    (run / "weights.safetensors").write_bytes(save(tensors))


def class1_library(files: Files, n: int, rng: random.Random) -> Iterator[tuple[str, Callable]]:
    """Model files whose declared sizes would allocate far more than their bytes: Dense units up
    to 10^12 (and within the parameter limit, over small weights), huge input shapes, many big
    layers, thousands of small ones; HDF5 datasets never written or barely written, listed many
    times, in giant chunks, deflated 1000:1, behind unknown filters, of other types (load_weights
    too, into built and unbuilt models); run dirs whose weights file holds more than their config
    asks for. Each case must also stay cheap
    (worker_main: CASE_RSS_GROWTH, CASE_CPU)."""
    import digitnet
    from digitnet import keras
    from digitnet.keras import load_model

    for i in range(n):
        kind = i % 9
        if kind in (4, 5):  # Dense sizes the parameter limit allows, over the seed's small weights
            units = rng.choice([20_000, 50_000, 100_000, 150_000])
            layer = rng.randint(0, 1)

            def edit(c, units=units, layer=layer):
                dense = [e for e in c["config"]["layers"] if e["class_name"] == "Dense"]
                dense[layer]["config"]["units"] = units
            suffix = ".keras" if kind == 4 else ".h5"
            label = f"{suffix} declaring Dense({units}) as layer {layer} over small weights"
            data = (keras_with_config(files.keras[".keras"], edit) if kind == 4
                    else legacy_with_config(files.keras[".h5"], edit))
        elif kind == 6:
            count = rng.choice([200, 999, 1000, 1001, 3000])

            def edit(c, count=count):
                layers = c["config"]["layers"]
                extra = [{"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                          "config": {"name": f"small_{j}", "units": 8, "activation": "relu"}}
                         for j in range(count)]
                c["config"]["layers"] = layers[:3] + extra + layers[3:]
            label = f".keras with {count} extra Dense(8) layers, weights for 2"
            data = keras_with_config(files.keras[".keras"], edit)
        elif kind == 7:
            what, h5 = weights_h5(rng)
            path = files.fresh(".weights.h5")
            path.write_bytes(h5)

            built = rng.random() < 0.5  # unbuilt: the file's first kernel sets the input size

            def load_weights(path=path, built=built):
                model = keras.Sequential([*([keras.Input((784,))] if built else []),
                                          keras.layers.Dense(8, activation="relu"),
                                          keras.layers.Dense(10, activation="softmax")])
                model.load_weights(path)
            yield f"load_weights ({'built' if built else 'unbuilt'} model): {what}", load_weights
            continue
        elif kind == 8:
            run = files.run_copy()
            megabytes = rng.choice([8, 64, 160])
            safetensors_with_extra(run, megabytes)
            yield (f"run dir: weights.safetensors with an extra {megabytes} MB tensor",
                   lambda run=run: digitnet.load(run))
            continue
        elif kind == 0:
            units = rng.choice([10**rng.randint(5, 12), rng.randint(1 << 20, 1 << 40)])
            layer = rng.randint(0, 1)

            def edit(c, units=units, layer=layer):
                dense = [e for e in c["config"]["layers"] if e["class_name"] == "Dense"]
                dense[layer]["config"]["units"] = units
            label = f".keras with Dense(units={units}) as layer {layer}"
            data = keras_with_config(files.keras[".keras"], edit)
        elif kind == 1:
            side = rng.choice([3000, 4096, 65536, 10**6])

            def edit(c, side=side):
                c["config"]["layers"][0]["config"]["batch_shape"] = [None, side, side]
            label = f".keras with input shape ({side}, {side})"
            data = keras_with_config(files.keras[".keras"], edit)
        elif kind == 2:
            count, units = rng.randint(10, 400), rng.randint(2048, 65536)

            def edit(c, count=count, units=units):
                layers = c["config"]["layers"]
                extra = [{"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                          "config": {"name": f"big_{j}", "units": units, "activation": "relu"}}
                         for j in range(count)]
                c["config"]["layers"] = layers[:2] + extra + layers[2:]
            label = f".keras with {count} extra Dense({units}) layers"
            data = keras_with_config(files.keras[".keras"], edit)
        else:
            elements, copies = 1 << rng.randint(20, 30), rng.randint(2, 64)
            written = rng.random() < 0.5

            def build(f, elements=elements, copies=copies, written=written):
                layers = f.create_group("layers")
                ds = layers.create_group("dense").create_group("vars").create_dataset(
                    "0", shape=(elements,), dtype="f4", chunks=(min(elements, 1 << 16),),
                    compression="gzip")
                if written:  # one chunk written: the rest reads as fill values
                    ds[: 1 << 10] = 1.0
                layers["dense"]["vars"]["1"] = ds
                for j in range(1, copies):
                    layers.create_group(f"dense_{j}").create_group("vars")["0"] = ds
                f.create_group("vars")
            label = (f".h5 weights: a {'barely' if written else 'never'}-written dataset of "
                     f"{elements} floats listed {copies + 1} times")
            h5 = h5_file(build)
            data = keras_with_config(files.keras[".keras"], lambda c: None, {"model.weights.h5": h5})
        path = files.fresh(".keras")
        path.write_bytes(data)
        yield label, lambda path=path: load_model(path)


# ---------------------------------------------------------------- class 5

def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def class5(files: Files, n: int, rng: random.Random) -> Iterator[tuple[str, Callable]]:
    """Run-directory files and HDF5 objects that point at /dev/zero, a FIFO, another file, or are
    sparse giants."""
    import h5py

    import digitnet
    from digitnet.keras import load_model

    names = ("config.json", "weights.safetensors", "history.csv")
    outside = files.dir / "outside.bin"
    outside.write_bytes(os.urandom(4096))
    for i in range(n):
        kind = i % 2
        if kind == 0:
            run = files.run_copy()
            name = rng.choice(names)
            target = rng.choice(("symlink /dev/zero", "symlink FIFO", "FIFO", "symlink outside",
                                 "sparse 3 GiB", "symlink /dev/urandom", "directory"))
            p = run / name
            p.unlink()
            if target == "symlink /dev/zero":
                p.symlink_to("/dev/zero")
            elif target == "symlink /dev/urandom":
                p.symlink_to("/dev/urandom")
            elif target == "symlink FIFO":
                p.symlink_to(fifo(files.fresh(".fifo")))
            elif target == "FIFO":
                fifo(p)
            elif target == "symlink outside":
                p.symlink_to(outside)
            elif target == "directory":
                p.mkdir()
            else:
                with open(p, "wb") as f:
                    f.truncate(3 << 30)
            yield f"run dir: {name} is a {target}", lambda run=run: digitnet.load(run)
        else:
            target = rng.choice(("FIFO", "/dev/zero", "another file"))
            other = {"FIFO": lambda: str(fifo(files.fresh(".fifo"))), "/dev/zero": lambda: "/dev/zero",
                     "another file": lambda: str(outside)}[target]()
            how = rng.choice(("external link", "external storage", "virtual dataset", "soft link"))
            suffix = rng.choice((".h5", ".keras"))

            def build(f, how=how, other=other):
                layers = f.create_group("layers")
                vars_ = layers.create_group("dense").create_group("vars")
                if how == "external link":
                    vars_["0"] = h5py.ExternalLink(other, "/data")
                elif how == "soft link":
                    vars_["0"] = h5py.SoftLink("/elsewhere")
                    f.create_dataset("elsewhere", data=np.ones((784, 8), np.float32))
                elif how == "external storage":
                    vars_.create_dataset("0", shape=(784, 8), dtype="f4",
                                         external=[(other, 0, 784 * 8 * 4)])
                else:
                    layout = h5py.VirtualLayout(shape=(784, 8), dtype="f4")
                    layout[:] = h5py.VirtualSource(other, "data", shape=(784, 8))
                    vars_.create_virtual_dataset("0", layout, fillvalue=0)
                vars_.create_dataset("1", data=np.zeros(8, np.float32))
                f.create_group("vars")
            label = f"{suffix}: weights by {how} to {target}"
            path = files.fresh(suffix)
            if suffix == ".keras":
                path.write_bytes(keras_with_config(files.keras[".keras"], lambda c: None,
                                                   {"model.weights.h5": h5_file(build)}))
            else:
                with h5py.File(io.BytesIO(files.keras[".h5"]), "r") as f:  # its model, other weights
                    config = f.attrs["model_config"]
                path.write_bytes(h5_file(lambda f, build=build, config=config: (
                    build(f), f.attrs.create("model_config", config))))
            yield label, lambda path=path: load_model(path)


# ---------------------------------------------------------------- class 6

def deep(depth: int, kind: str = "list") -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def idx_file(path: Path, shape: tuple[int, ...], fill: bytes = b"", code: int = 8,
             data: bool = True) -> Path:
    header = struct.pack(f">HBB{len(shape)}I", 0, code, len(shape), *shape)
    size = int(np.prod(shape)) * {8: 1, 0x0D: 4}[code]
    with open(path, "wb") as f:
        f.write(header)
        if data:
            f.write(fill or bytes(size))
    return path


def tiny_data(folder: Path) -> Path:
    from reliability import small_dataset

    return small_dataset(folder, n_train=200, n_test=50)


BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "1e400", "true", "abc", "", "0x10", "1,2",
               str(2**70), str(-(2**70)), "1e-400", "2**70", str(2**64)]


def class6(files: Files, n: int, rng: random.Random) -> Iterator[tuple[str, Callable]]:
    """The CLI and the loaders on bad values: options, TOML files, data folders, predict inputs,
    Keras archives and HDF5 attributes. Each must end in exit 2 (or a DigitnetError) with one
    line."""
    from digitnet.keras import load_model

    data = tiny_data(files.dir / "tiny")
    run = files.run
    flags = {"--seed": BAD_NUMBERS, "--hidden": ["1000000000", "0", "-5", "a", "64,,x", "1e3",
             str(2**70), "64.5"],
             "--epochs": ["0", "-1", str(10**12), "1.5"], "--batch-size": ["0", "-3", str(2**40)],
             "--lr": ["nan", "inf", "-1", "0", "true", "1e400"], "--dropout": ["1.5", "-0.1", "nan"],
             "--validation": ["2", "-1", "abc", "nan"], "--momentum": ["nan", "inf"],
             "--warmup": ["-1", "inf"], "--label-smoothing": ["1", "-0.5", "nan"]}
    toml_values = {"lr": ["true", '"0.1"', "inf", "nan", "-1.0", "[1]", "{a = 1}"],
                   "epochs": ["true", '"5"', "1.5", str(2**62), "-1", "inf"],
                   "seed": ["true", str(2**63), "-1", '"1"', "1.0"],
                   "hidden": ["[1000000000]", '["64"]', "[64.5]", "[true]", "[-64]", "64",
                              "[[64]]", f"[{2**40}]", "[0]"],
                   "deskew": ['"false"', "1", "0", '"yes"', "[]"],
                   "shuffle": ['"false"', "1"], "nesterov": ['"no"', "2"],
                   "batch_size": ["0", "true", '"32"', str(2**50)],
                   "activation": ["5", "true", '"RELU"', "[]"],
                   "dropout": ['"0.5"', "[true]", "1.5", "nan"],
                   "optimizer": ["1", '"adamx"'], "validation": ["true", "[]", "2.0"]}
    for i in range(n):
        kind = i % 8
        out = str(files.fresh("-out"))
        if kind == 0:
            flag = rng.choice(sorted(flags))
            value = rng.choice(flags[flag])
            argv = ["train", "--data-dir", str(data), "--epochs", "1", "--out", out, "--quiet",
                    f"{flag}={value}"]
            yield f"train {flag}={value}", ("cli", argv, True)
        elif kind == 1:
            key = rng.choice(sorted(toml_values))
            value = rng.choice(toml_values[key])
            path = files.fresh(".toml")
            path.write_text(f"{key} = {value}\n")
            # Flags win over the file: --epochs is left out when the file's bad value is epochs.
            argv = ["train", "--config", str(path), "--data-dir", str(data),
                    *(["--epochs", "1"] if key != "epochs" else []), "--out", out, "--quiet"]
            yield f"TOML {key} = {value}", ("cli", argv, True)
        elif kind == 2:
            what = rng.choice(("FIFO", "symlink /dev/zero", "deep array", "deep table", "2 MiB",
                               "bad UTF-8", "directory"))
            path = files.fresh(".toml")
            if what == "FIFO":
                fifo(path)
            elif what == "symlink /dev/zero":
                path.symlink_to("/dev/zero")
            elif what == "deep array":
                path.write_text(f"hidden = {deep(rng.randint(1000, 100000))}\n")
            elif what == "deep table":
                d = rng.randint(1000, 50000)
                path.write_text("x = " + "{a = " * d + "1" + "}" * d + "\n")
            elif what == "2 MiB":
                path.write_text("# x\n" * (1 << 19))
            elif what == "directory":
                path.mkdir()
            else:
                path.write_bytes(b'lr = "\xff\xfe"\n')
            yield f"TOML file: {what}", ("cli", ["train", "--config", str(path), "--data-dir",
                                                 str(data), "--epochs", "1", "--out", out], True)
        elif kind == 3:
            port = rng.choice([rng.randint(65536, 10**9), -rng.randint(1, 10**6), 2**70])
            yield f"serve --port {port}", ("cli", ["serve", str(run), "--port", str(port)], True)
        elif kind == 4:
            opset = rng.choice([rng.randint(29, 10**9), rng.randint(-10**6, 16), 2**70])
            yield f"export --opset {opset}", ("cli", ["export", str(run), "--opset", str(opset),
                                                      "--out", out + ".onnx"], True)
        elif kind == 5:
            folder = files.fresh("-data")
            folder.mkdir()
            what = rng.choice(("empty train split", "empty test split", "1-D images",
                               "labels of another length", "3000×3000 images",
                               "train and test of different shapes"))
            shapes = {"train-images-idx3-ubyte": (20, 28, 28), "train-labels-idx1-ubyte": (20,),
                      "t10k-images-idx3-ubyte": (10, 28, 28), "t10k-labels-idx1-ubyte": (10,)}
            if what == "empty train split":
                shapes.update({"train-images-idx3-ubyte": (0, 28, 28),
                               "train-labels-idx1-ubyte": (0,)})
            elif what == "empty test split":
                shapes.update({"t10k-images-idx3-ubyte": (0, 28, 28),
                               "t10k-labels-idx1-ubyte": (0,)})
            elif what == "1-D images":
                shapes["train-images-idx3-ubyte"] = (20,)
            elif what == "labels of another length":
                shapes["t10k-labels-idx1-ubyte"] = (11,)
            elif what == "3000×3000 images":
                shapes["train-images-idx3-ubyte"] = (2, 3000, 3000)
                shapes["train-labels-idx1-ubyte"] = (2,)
                shapes["t10k-images-idx3-ubyte"] = (1, 3000, 3000)
                shapes["t10k-labels-idx1-ubyte"] = (1,)
            else:
                shapes["t10k-images-idx3-ubyte"] = (10, 14, 14)
            for name, shape in shapes.items():
                idx_file(folder / name, shape)
            yield f"train --data-dir with {what}", ("cli", ["train", "--data-dir", str(folder),
                                                            "--epochs", "1", "--out", out], True)
        elif kind == 6:
            what = rng.choice(("1-D IDX", "3000×3000 IDX", "two IDX of different shapes",
                               "float IDX with NaN", "truncated IDX", "14×14 IDX"))
            a = files.fresh("-idx-ubyte")
            paths = [a]
            if what == "1-D IDX":
                idx_file(a, (784,))
            elif what == "3000×3000 IDX":
                idx_file(a, (rng.randint(1, 4), 3000, 3000))
            elif what == "two IDX of different shapes":
                idx_file(a, (2, 28, 28))
                paths.append(idx_file(files.fresh("-idx-ubyte"), (2, 14, 14)))
            elif what == "float IDX with NaN":
                idx_file(a, (1, 28, 28), np.full(784, np.nan, ">f4").tobytes(), code=0x0D)
            elif what == "truncated IDX":
                idx_file(a, (5, 28, 28), bytes(100))
            else:
                idx_file(a, (3, 14, 14))
            yield f"predict {what}", ("cli", ["predict", str(run), *map(str, paths)], True)
        else:
            what = rng.choice(("encrypted member", "bzip2 members", "lzma members",
                               "deep config.json", "deep .h5 model_config"))
            path = files.fresh(".h5" if what.endswith("model_config") else ".keras")
            seed = files.keras[".keras"]
            if what == "encrypted member":
                raw = bytearray(seed)
                # Set the "encrypted" flag of every member, local and central headers alike.
                for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
                    pos = raw.find(sig)
                    while pos >= 0:
                        raw[pos + off] |= 1
                        pos = raw.find(sig, pos + 4)
                path.write_bytes(bytes(raw))
            elif what in ("bzip2 members", "lzma members"):
                method = zipfile.ZIP_BZIP2 if what.startswith("bzip2") else zipfile.ZIP_LZMA
                path.write_bytes(keras_with_config(seed, lambda c: None, compress=method))
            elif what == "deep config.json":
                d = rng.randint(2000, 200000)
                with zipfile.ZipFile(io.BytesIO(seed)) as z:
                    members = {m: z.read(m) for m in z.namelist()}
                members["config.json"] = deep(d, rng.choice(("list", "dict"))).encode()
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as z:
                    for m, b in members.items():
                        z.writestr(m, b)
                path.write_bytes(buf.getvalue())
            else:
                d = rng.randint(2000, 30000)  # an attribute holds at most 64 kB
                import h5py

                path.write_bytes(files.keras[".h5"])
                with h5py.File(path, "a") as f:
                    del f.attrs["model_config"]
                    f.attrs["model_config"] = deep(d, rng.choice(("list", "dict")))
            yield f"load_model: {what}", lambda path=path: load_model(path)


def run_cli_case(argv: list[str]) -> tuple[bool, str]:
    """digitnet's main() in this process: exit 2 and one line on stderr."""
    from contextlib import redirect_stderr, redirect_stdout

    from digitnet.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = main(argv)
    except BaseException as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0]
    lines = err.getvalue().strip().splitlines()
    if code == 2 and len(lines) == 1 and lines[0].startswith("digitnet: error:"):
        return True, lines[0]
    return False, f"exit {code}, stderr {err.getvalue().strip()[-200:]!r}"


# ---------------------------------------------------------------- class 7

WRONG_VALUES = {
    "deskew": ["false", "true", 1, 0, "yes", None, [], 2.5],
    "input_shape": [[-28, -28], [0, 784], [28.0, 28], [28, -28], ["28", 28], [2**40, 1],
                    [True, 784], [], [-1, -784]],
    "hidden": [["64"], [64.5], [True], [-64], [2**40], "64", [[64]], None],
    "num_classes": ["10", 1, -10, 10.5, True, 2**70],
    "activation": [5, None, "RELU", ["relu"]],
    "preprocess": [1, None, "Center"],
    "dropout": ["x", [True], 1.5, [float("nan")]],
    "input_dropout": [True, "x", -0.5, float("inf")],
    "activations": [[1], [None], 5, [True]],
}


def class7(files: Files, n: int, rng: random.Random) -> Iterator[tuple[str, Callable]]:
    """Saved models carrying bad values: wrong types and signs in config.json, NaN/Inf in the
    weights or preprocessing, NaN in Keras files. Each must be refused at load (a value of the
    wrong type above all); a model that loads must predict finite probabilities."""
    import digitnet
    from digitnet import artifacts as art
    from digitnet.keras import load_model

    digits = None
    for i in range(n):
        kind = i % 3
        run = files.run_copy()
        if kind == 0:
            key = rng.choice(sorted(WRONG_VALUES))
            value = rng.choice(WRONG_VALUES[key])
            config = json.loads((run / art.CONFIG).read_text())
            config["model"][key] = value
            (run / art.CONFIG).write_text(json.dumps(config))
            label = f"config.json model.{key} = {json.dumps(value)}"
        elif kind == 1:
            tensors, meta = art.read_tensors(run / art.WEIGHTS)
            name = rng.choice(sorted(tensors))
            value = rng.choice([np.nan, np.inf, -np.inf])
            t = tensors[name].copy()
            t.flat[rng.randrange(t.size)] = value
            tensors[name] = t
            (run / art.WEIGHTS).write_bytes(art.tensors_bytes(tensors, meta))
            label = f"weights: {name} holds {value}"
        else:
            import h5py

            path = files.fresh(".h5")
            path.write_bytes(files.keras[".h5"])
            with h5py.File(path, "a") as f:
                datasets: list[Any] = []
                f.visititems(lambda _, o, found=datasets: found.append(o)
                             if isinstance(o, h5py.Dataset) else None)
                ds = rng.choice(datasets)
                a = ds[()]
                a.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf])
                ds[...] = a
                label = f"legacy .h5: {ds.name} holds a non-finite value"

            def load_keras(path=path):
                model = load_model(path)
                probs = model.predict(np.zeros((1, 28, 28), np.float32), verbose=0)
                if not np.isfinite(probs).all():
                    raise AssertionError("loaded, and predicts NaN")
            yield label, load_keras
            continue
        if digits is None:
            from reliability import mnist_digits

            digits = mnist_digits().x_test[:5]

        def load_run(run=run, digits=digits):
            model = digitnet.load(run)
            if not np.isfinite(model.predict_proba(digits)).all():
                raise AssertionError("loaded, and predicts NaN")
        yield label, load_run


# ---------------------------------------------------------------- the worker

GENERATORS = {1: class1_library, 5: class5, 6: class6, 7: class7}


def worker_main(cls: int, n: int, workdir: Path, seed: int) -> dict[str, Any]:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    files = Files(workdir)
    out = Outcome(cls)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for label, case in GENERATORS[cls](files, n, random.Random(seed)):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if isinstance(case, tuple):  # ("cli", argv, must_refuse)
            (ok, why), cpu = timed(lambda case=case: run_cli_case(case[1]))
        else:
            (ok, why), cpu = timed(lambda case=case: one_line_error(case))
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
        if ok and cls == 1 and (grew > CASE_RSS_GROWTH or cpu > CASE_CPU):
            ok, why = False, f"refused, but only after {grew:.0f} MiB more peak RSS, {cpu:.2f} s CPU"
        out.record(label, ok, why, cpu)
    out.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {**asdict(out), "baseline_rss_mb": round(rss0, 1)}


def run_worker(cls: int, n: int, workdir: Path, seed: int, src: Path) -> Outcome:
    cmd = [sys.executable, "-m", "tests.attacks", "--worker", str(cls), str(n), str(workdir),
           str(seed)]
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        out = Outcome(cls)
        tail = proc.stderr.strip().splitlines()[-3:]
        out.record("worker", False, f"exited {proc.returncode}: {' | '.join(tail)}")
        return out
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    doc.pop("baseline_rss_mb", None)
    return Outcome(**doc)


# =========================================================================== service cases

class Server:
    """The server process's CPU seconds and peak RSS, from /proc."""

    def __init__(self, url: str):
        import psutil
        from reliability import server_process

        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.proc: psutil.Process = server_process(url)

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def hwm_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_mb(self) -> float:
        return self.proc.memory_info().rss / 2**20


def png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def digit_image(size: int, mode: str, rng: random.Random):
    """A large, mostly blank image of one MNIST-like stroke (compresses to a few kB)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA" if mode in ("RGBA", "LA", "PA") else "RGB", (size, size),
                    (255, 255, 255, 0) if mode in ("RGBA", "LA", "PA") else (255, 255, 255))
    draw = ImageDraw.Draw(img)
    s = size // 4
    draw.line([(s, s), (3 * s, s), (2 * s, 3 * s)], fill=(0, 0, 0, 255), width=max(size // 30, 1))
    return img.convert(mode) if mode not in ("RGBA", "RGB") else img


def http_post(url: str, body: bytes, ctype: str, path: str = "/predict",
              timeout: float = 60) -> tuple[int, str, str]:
    import httpx

    try:
        r = httpx.post(url + path, content=body, headers={"content-type": ctype}, timeout=timeout)
        return r.status_code, r.headers.get("content-type", ""), r.text[:200]
    except httpx.HTTPError as exc:
        return 0, "", f"{type(exc).__name__}: {exc}"


def json_answer(status: int, ctype: str) -> bool:
    return 0 < status < 500 and ctype.startswith("application/json")


def class1_service(srv: Server, n: int, rng: random.Random) -> Outcome:
    """Large, tiny-to-send images (transparent PNGs up to 4096², greys, palettes) sent 8 at a
    time: no 5xx, and the server's peak RSS grows by less than SERVER_RSS_GROWTH."""
    from concurrent.futures import ThreadPoolExecutor

    out = Outcome(1)
    base = srv.rss_mb()
    modes = ("RGBA", "LA", "RGB", "L", "P")
    bodies = []
    for i in range(n):
        size = rng.choice([1024, 2048, 3000, 4096, rng.randint(1500, 4096)])
        mode = modes[i % len(modes)]
        bodies.append((f"{size}×{size} {mode} PNG (8 at once)", png(digit_image(size, mode, rng))))
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, len(bodies), 8):
            chunk = bodies[start : start + 8]
            cpu0 = srv.cpu()
            answers = list(pool.map(lambda b: http_post(srv.url, b[1], "image/png"), chunk))
            cpu = (srv.cpu() - cpu0) / len(chunk)
            for (label, _), (status, ctype, text) in zip(chunk, answers, strict=True):
                out.record(label, json_answer(status, ctype), f"HTTP {status} {text}", cpu)
    growth = srv.hwm_mb() - base
    out.peak_rss_mb = round(srv.hwm_mb(), 1)
    out.record(f"server peak RSS grew {growth:.0f} MiB", growth < SERVER_RSS_GROWTH,
               f"over {SERVER_RSS_GROWTH} MiB")
    return out


def odd_mode_image(mode: str, fmt: str) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (64, 64), "white")
    img.paste((0, 0, 0), (20, 10, 40, 54))
    try:
        img = img.convert(mode)
    except ValueError:
        img = Image.new(mode, (64, 64))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


ODD_MODES = [("LAB", "TIFF"), ("CMYK", "TIFF"), ("CMYK", "JPEG"), ("YCbCr", "TIFF"),
             ("I;16", "PNG"), ("I", "TIFF"), ("F", "TIFF"), ("1", "PNG"), ("1", "TIFF"),
             ("I;16", "TIFF"), ("LA", "TIFF"), ("RGBA", "TIFF"), ("P", "BMP"), ("1", "BMP"),
             ("RGBA", "WEBP"), ("L", "PPM"), ("I;16", "PPM"), ("RGBX", "TIFF"), ("HSV", "TIFF"),
             ("CMYK", "TIFF"), ("I;16B", "TIFF"), ("P", "TIFF")]


def odd_images() -> list[tuple[str, str, bytes]]:
    """(mode, format, file) for each pair of ODD_MODES that Pillow can write."""
    out = []
    for mode, fmt in ODD_MODES:
        with contextlib.suppress(OSError, ValueError, KeyError):
            out.append((mode, fmt, odd_mode_image(mode, fmt)))
    return out


def class2(srv: Server, n: int, rng: random.Random) -> Outcome:
    """Deep JSON, numbers beyond float64, odd image modes (LAB, CMYK, 16-bit, 1-bit, float):
    every answer a 4xx or 200 with a JSON body."""
    out = Outcome(2)
    for i in range(n):
        kind = i % 3
        path = rng.choice(("/predict", "/predict/batch"))
        if kind == 0:
            d = rng.choice([rng.randint(500, 5000), rng.randint(5000, 300000)])
            where = rng.choice(("top", "pixels", "image", "images"))
            inner = deep(d, rng.choice(("list", "dict")))
            body = inner if where == "top" else f'{{"{where}": {inner}}}'
            label = f"JSON nested {d} deep ({where}) to {path}"
        elif kind == 1:
            digits = rng.choice([rng.randint(20, 400), rng.randint(400, 5000), 4301, 100000])
            number = rng.choice(["1" + "0" * digits, "-1" + "0" * digits, f"1e{digits}",
                                 f"-1e{digits}", f"1e-{digits}", "1" + "0" * digits + ".5"])
            pixels = [0] * 783
            body = json.dumps({"pixels": pixels})[:-2] + ", " + number + "]}"
            if path == "/predict/batch":
                body = '{"pixels": [' + body[len('{"pixels": '):-1] + "]}"
            label = f"a pixel of {number[:12]}… ({len(number)} chars) to {path}"
        else:
            mode, fmt, data = rng.choice(odd_images())
            how = rng.choice(("raw", "base64", "multipart"))
            label = f"{mode} {fmt} ({how})"
            if how == "raw":
                status, ctype, text = http_post(srv.url, data, f"image/{fmt.lower()}")
            elif how == "multipart":
                import httpx

                try:
                    r = httpx.post(srv.url + "/predict", files={"file": (f"x.{fmt.lower()}", data)},
                                   timeout=60)
                    status, ctype, text = r.status_code, r.headers.get("content-type", ""), r.text
                except httpx.HTTPError as exc:
                    status, ctype, text = 0, "", str(exc)
            else:
                body = json.dumps({"image": base64.b64encode(data).decode()})
                status, ctype, text = http_post(srv.url, body.encode(), "application/json")
            out.record(label, json_answer(status, ctype), f"HTTP {status} {text[:100]}")
            continue
        cpu0 = srv.cpu()
        status, ctype, text = http_post(srv.url, body.encode(), "application/json", path)
        out.record(label, json_answer(status, ctype), f"HTTP {status} {text[:100]}",
                   srv.cpu() - cpu0)
    out.peak_rss_mb = round(srv.hwm_mb(), 1)
    return out


def many_scan_jpeg(size: int, scans: int, rng: random.Random) -> bytes:
    """A progressive JPEG whose smallest scan is repeated until it has `scans` scans: every
    decoder pass runs over all the image's blocks (a few bytes per scan, seconds of CPU)."""
    from PIL import Image

    img = Image.new("L", (size, size), 255)  # a blank page: its refinement scans are tiny
    buf = io.BytesIO()
    img.save(buf, format="JPEG", progressive=True, quality=rng.randint(30, 90))
    data = buf.getvalue()
    starts = [i for i in range(len(data)) if data.startswith(b"\xff\xda", i)]
    ends = starts[1:] + [len(data) - 2]
    # The smallest later scan (a refinement scan: a few bytes for a blank page), SOS to its end.
    a, b = min(zip(starts[2:], ends[2:], strict=False), key=lambda t: t[1] - t[0])
    return data[:-2] + data[a:b] * max(scans - len(starts), 0) + b"\xff\xd9"


def class3(srv: Server, n: int, rng: random.Random) -> Outcome:
    """Progressive JPEGs of up to thousands of scans, large interlaced PNGs, many-frame GIFs:
    each request costs the server at most SERVER_CPU_LIMIT CPU seconds and answers < 500."""
    from PIL import Image

    out = Outcome(3)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            size = rng.choice([512, 1024, 2048, 3000])
            scans = rng.choice([rng.randint(20, 200), rng.randint(200, 3000)])
            body, ctype = many_scan_jpeg(size, scans, rng), "image/jpeg"
            label = f"progressive JPEG {size}² with {scans} scans ({len(body) // 1024} kB)"
        elif kind == 1:
            size = rng.choice([2048, 3000, 4000])
            buf = io.BytesIO()
            digit_image(size, "L", rng).save(buf, format="PNG", interlace=1)
            body, ctype = buf.getvalue(), "image/png"
            label = f"interlaced PNG {size}²"
        else:
            frames = rng.randint(100, 600)
            buf = io.BytesIO()
            first = digit_image(256, "L", rng).convert("P")
            first.save(buf, format="GIF", save_all=True, append_images=[
                Image.new("P", (256, 256), j % 256) for j in range(frames - 1)], duration=10)
            body, ctype = buf.getvalue(), "image/gif"
            label = f"GIF of {frames} frames"
        cpu0 = srv.cpu()
        status, rtype, text = http_post(srv.url, body, ctype)
        cpu = srv.cpu() - cpu0
        ok = json_answer(status, rtype) and cpu <= SERVER_CPU_LIMIT
        out.record(label, ok, f"HTTP {status}, {cpu:.2f} CPU s {text[:80]}", cpu)
    out.peak_rss_mb = round(srv.hwm_mb(), 1)
    return out


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def class4(srv: Server, n: int, rng: random.Random) -> Outcome:
    """Clients that stall: mid-request-line, mid-headers, after one byte of a declared body,
    inside a chunked body. With `n` such connections open, /health must answer within 5 s, and
    the server must close each stalled connection within STALL_SECONDS."""
    import httpx

    out = Outcome(4)
    raise_nofile(n + 256)
    starts = [b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
              b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
              b"Content-Length: 100000\r\n\r\nx",
              b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n10\r\n{\"pix",
              b"GET /hea", b"P"]
    kinds = ("mid-headers", "1 body byte of 100000", "inside a chunked body", "mid-request-line",
             "one byte")
    socks, labels = [], []
    for i in range(n):
        k = rng.randrange(len(starts))
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(starts[k])
        except OSError as exc:
            out.record(f"opening stalled connection {i}", False, f"{exc}")
            break
        socks.append(s)
        labels.append(kinds[k])
    t0 = time.perf_counter()
    try:
        status = httpx.get(srv.url + "/health", timeout=30).status_code
    except httpx.HTTPError as exc:
        status = 0
        why = type(exc).__name__
    else:
        why = f"HTTP {status}"
    health_s = time.perf_counter() - t0
    out.record(f"/health with {len(socks)} stalled connections", status == 200 and health_s < 5,
               f"{why} after {health_s:.1f} s", 0.0)
    # Which stalled connections the server closes (EOF or reset) within STALL_SECONDS.
    deadline = time.monotonic() + STALL_SECONDS
    open_ = dict(enumerate(socks))
    closed_at: dict[int, float] = {}
    for s in socks:
        s.setblocking(False)
    while open_ and time.monotonic() < deadline:
        for i, s in list(open_.items()):
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 4"):  # closed, or refused with a 4xx
                closed_at[i] = STALL_SECONDS - (deadline - time.monotonic())
                open_.pop(i)
        time.sleep(0.2)
    for i, s in enumerate(socks):
        out.record(f"stalled {labels[i]}", i in closed_at,
                   f"still open after {STALL_SECONDS:.0f} s (no header/body timeout)")
        s.close()
    out.peak_rss_mb = round(srv.hwm_mb(), 1)
    return out


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes | None:
    """What the server answers to `data` on a fresh connection; b"" when it just closes, None
    when it neither answers nor closes within `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        except TimeoutError:
            return None
        except OSError:
            return b""


def class8(srv: Server, n: int, rng: random.Random) -> Outcome:
    """Malformed HTTP (negative or duplicate Content-Length, bad chunk sizes, NUL bytes, HTTP/0.9,
    overlong lines) and hostile Host headers (DNS rebinding). Malformed requests must get a 4xx
    or a closed connection, never a 5xx or a hang; a foreign Host a 400 JSON answer."""
    out = Outcome(8)
    host = f"127.0.0.1:{srv.port}"
    body = json.dumps({"pixels": [0] * 784}).encode()
    bad = [
        ("negative Content-Length", lambda: f"Content-Length: -{rng.randint(1, 10**6)}\r\n".encode()),
        ("duplicate Content-Length", lambda: f"Content-Length: {len(body)}\r\nContent-Length: "
                                             f"{rng.randint(0, 10**6)}\r\n".encode()),
        ("Content-Length with junk", lambda: rng.choice(
            [b"Content-Length: +12\r\n", b"Content-Length: 0x10\r\n", b"Content-Length: 1 2\r\n",
             b"Content-Length: 99999999999999999999999\r\n"])),
        ("bad chunk size", lambda: b"Transfer-Encoding: chunked\r\n"),
        ("NUL byte in a header", lambda: b"X-A: a\x00b\r\n"),
        ("overlong header", lambda: b"X-A: " + b"a" * rng.randint(70_000, 300_000) + b"\r\n"),
        ("10,000 headers", lambda: b"".join(b"X-%d: 1\r\n" % j for j in range(10_000))),
        ("header without a colon", lambda: b"Just-a-name\r\n"),
        ("obsolete line folding", lambda: b"X-A: a\r\n b\r\n"),
    ]
    for i in range(n):
        kind = i % 4
        if kind == 0:
            label, extra = bad[rng.randrange(len(bad))]
            head = extra()
            tail = body
            if label == "bad chunk size":
                tail = rng.choice([b"zz\r\n", b"-5\r\n", b"ffffffffffffffffff\r\n", b"1;\x00\r\n",
                                   b"5\r\nabc\r\n0\r\n"])
                request = (b"POST /predict HTTP/1.1\r\nHost: " + host.encode() +
                           b"\r\nContent-Type: application/json\r\n" + head + b"\r\n" + tail)
            else:
                request = (b"POST /predict HTTP/1.1\r\nHost: " + host.encode() +
                           b"\r\nContent-Type: application/json\r\n" + head + b"\r\n" + tail)
            answer = raw_exchange(srv.port, request)
            ok = answer is not None and not answer.startswith(b"HTTP/1.1 5")
            out.record(label, ok, "no answer within 10 s" if answer is None else
                       answer.split(b"\r\n")[0].decode("latin-1"))
        elif kind == 1:
            line = rng.choice([b"GET /\r\n", b"GET /health\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n",
                               b"get /health HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n",
                               b"GET /he\x00alth HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n",
                               b"GET /" + b"a" * rng.randint(10_000, 200_000) + b" HTTP/1.1\r\n\r\n",
                               b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
                               os.urandom(rng.randint(1, 512)),
                               b"BREW /health HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n",
                               b"GET /health HTTP/1.1\r\n\r\n"])
            label = f"request line {line[:24]!r}"
            answer = raw_exchange(srv.port, line)
            ok = answer is not None and not answer.startswith(b"HTTP/1.1 5")
            out.record(label, ok, "no answer within 10 s" if answer is None else
                       answer.split(b"\r\n")[0].decode("latin-1"))
        else:
            foreign = rng.choice(["evil.example", f"evil.example:{srv.port}", "127.0.0.1.evil.example",
                                  "localhost.evil.example", f"attacker-{rng.randint(0, 10**6)}.test",
                                  "0.0.0.0", "10.0.0.1", "[::ffff:7f00:1]", "localhost@evil.example",
                                  "127.0.0.1:80@evil.example", "", "127.0.0.1 evil", "LOCALHOST.evil"])
            allowed = rng.choice([host, f"localhost:{srv.port}", "127.0.0.1", "LocalHost"])
            for name, want in ((foreign, False), (allowed, True)):
                request = (f"GET /health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                           ).encode()
                answer = raw_exchange(srv.port, request) or b""
                status = answer.split(b"\r\n")[0]
                if want:
                    ok = status.startswith(b"HTTP/1.1 200")
                else:
                    ok = status.startswith(b"HTTP/1.1 400") and b"host_not_allowed" in answer
                out.record(f"Host: {name!r}", ok, status.decode("latin-1") or "no answer")
    import httpx

    try:
        alive = httpx.get(srv.url + "/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        alive = False
    out.record("/health after the malformed requests", alive, "the server stopped answering")
    out.peak_rss_mb = round(srv.hwm_mb(), 1)
    return out


def describe(cls: int) -> str:
    """What a class's generators produce: the first sentence of each generator's docstring."""
    parts = [GENERATORS.get(cls), SERVICE.get(cls)]
    return " ".join(" ".join((f.__doc__ or "").split()).split(". ")[0].rstrip(".") + "."
                    for f in parts if f is not None)


SERVICE = {1: class1_service, 2: class2, 3: class3, 4: class4, 8: class8}


@contextlib.contextmanager
def server(run_dir: Path, workdir: Path, src: Path) -> Iterator[Server]:
    from reliability import serving

    workdir.mkdir(parents=True, exist_ok=True)
    with serving(run_dir, workdir, src=src) as url:
        yield Server(url)


# =========================================================================== driver

def counts(scale: int) -> dict[int, dict[str, int]]:
    """Cases per class for a scale (1: the default tests; 10 and more: the full suite)."""
    return {1: {"library": 9 * scale, "service": 8 * scale}, 2: {"service": 12 * scale},
            3: {"service": 6 * scale}, 4: {"service": 16 * scale},
            5: {"library": 8 * scale}, 6: {"library": 16 * scale}, 7: {"library": 12 * scale},
            8: {"service": 16 * scale}}


def run_attacks(workdir: Path, run_dir: Path, scale: int = 1, classes: tuple[int, ...] = tuple(TITLES),
                seed: int = 0, src: Path = ROOT / "src",
                log: Callable[[str], None] = lambda s: None) -> dict[int, Outcome]:
    """Every class at `scale`; the service classes each against a fresh server."""
    results: dict[int, Outcome] = {}
    plan = counts(scale)
    for cls in classes:
        outcome = Outcome(cls)
        if "library" in plan[cls]:
            outcome.merge(run_worker(cls, plan[cls]["library"], workdir / f"class{cls}", seed, src))
        if "service" in plan[cls]:
            with server(run_dir, workdir / f"serve{cls}", src) as srv:
                outcome.merge(SERVICE[cls](srv, plan[cls]["service"], random.Random(seed + cls)))
        results[cls] = outcome
        log(f"class {cls} ({TITLES[cls]}): {outcome.cases} cases, {outcome.failed} failed"
            + (f"; e.g. {outcome.failures[0]}" if outcome.failures else ""))
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m tests.attacks")
    p.add_argument("--worker", nargs=4, metavar=("CLASS", "N", "DIR", "SEED"))
    args = p.parse_args(argv)
    if args.worker:
        cls, n, folder, seed = args.worker
        print(json.dumps(worker_main(int(cls), int(n), Path(folder), int(seed))))
        return 0
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    sys.exit(main())
