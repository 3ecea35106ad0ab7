"""The run directory: config.json + weights.safetensors + history.csv (+ checkpoint.safetensors).

Every file is written atomically (temporary file in the same folder, fsync, rename), so a
crash leaves either the old file or the new one, never half of one. Nothing is unpickled.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.errors import ModelFileError

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.safetensors"
UMASK = os.umask(0o022)
os.umask(UMASK)
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a model file is for sharing
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry itself is flushed)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return obj


def write_tensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()}
    atomic_write_bytes(path, save(arrays, metadata=meta))


def read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not a valid safetensors file ({exc})") from None
    return tensors, meta


def params_to_tensors(params: list[dict[str, Any]], prefix: str = "") -> dict[str, np.ndarray]:
    return {f"{prefix}dense_{i}.{name}": np.asarray(v)
            for i, layer in enumerate(params) for name, v in layer.items()}


def tensors_to_params(tensors: dict[str, np.ndarray], sizes: list[int], path: Path,
                      prefix: str = "") -> list[dict[str, np.ndarray]]:
    """Rebuild the layer list, checking every shape against the spec."""
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layer = {}
        for name, shape in (("kernel", (a, b)), ("bias", (b,))):
            key = f"{prefix}dense_{i}.{name}"
            if key not in tensors:
                raise ModelFileError(f"{path}: missing tensor {key}")
            v = tensors[key]
            if v.shape != shape or v.dtype != np.float32:
                raise ModelFileError(
                    f"{path}: {key} is {v.dtype} {v.shape}, the config needs float32 {shape}"
                )
            layer[name] = v
        params.append(layer)
    return params


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
    atomic_write_bytes(path, buf.getvalue().encode())


def read_history(path: Path) -> list[dict[str, float]]:
    if not Path(path).exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()
                         if v not in ("", None)})
    return rows


def check_run_dir(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (CONFIG, WEIGHTS):
        path = path.parent
    if not path.is_dir():
        raise ModelFileError(f"{path}: no such run directory")
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise ModelFileError(f"{path}: not a digitnet run (missing {name})")
    return path
