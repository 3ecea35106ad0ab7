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

from digitnet.errors import ModelFileError, StorageError

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.safetensors"
UMASK = os.umask(0o022)
os.umask(UMASK)
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    atomic_write_files(path.parent, {path.name: data})


def atomic_write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write several files of one folder, each atomically. All are staged (written and synced
    to temporary files) before any is renamed, so a full disk or a failed write changes
    nothing: the folder keeps its previous files. Failures raise StorageError."""
    folder = Path(folder)
    staged: list[tuple[str, Path]] = []
    target = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = folder / name
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=TMP_SUFFIX)
            staged.append((tmp, folder / name))
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a model file is for sharing
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        while staged:
            tmp, target = staged[0]
            os.replace(tmp, target)
            staged.pop(0)
        target = folder
        fsync_dir(folder)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files that a killed writer left in `folder` (`.NAME.*.tmp`);
    loaders never read them. Only one process may write a run directory at a time."""
    stale = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file() and any(
             p.name.startswith(f".{name}.") for name in (CONFIG, WEIGHTS, HISTORY, CHECKPOINT))]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry itself is flushed)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelFileError(f"{path}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return obj


def write_tensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    atomic_write_bytes(path, tensors_bytes(tensors, meta))


def tensors_bytes(tensors: dict[str, np.ndarray], meta: dict[str, str]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()},
                metadata=meta)


def read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from None
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
    atomic_write_bytes(path, history_bytes(history))


def history_bytes(history: list[dict[str, float]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
    return buf.getvalue().encode()


def read_history(path: Path) -> list[dict[str, float]]:
    if not Path(path).exists():
        return []
    rows = []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()
                             if k in HISTORY_FIELDS and v not in ("", None)})
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a valid history file ({exc})") from None
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
