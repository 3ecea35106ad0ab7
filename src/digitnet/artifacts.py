"""The run directory: config.json + weights.safetensors + history.csv (+ checkpoint.safetensors),
and the training checkpoint (weights, optimizer state and history after each epoch).

Every file is written atomically (digitnet.files), so a crash leaves either the old file or the
new one, never half of one. Nothing is unpickled.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from digitnet.budget import MAX_PARAMS
from digitnet.callbacks import Callback, TrainState
from digitnet.engine import steps_per_epoch
from digitnet.errors import ConfigError, ModelFileError
from digitnet.files import TMP_SUFFIX
from digitnet.files import atomic_write_bytes as atomic_write_bytes  # the run dir's writes
from digitnet.files import atomic_write_files as atomic_write_files
from digitnet.files import json_bytes as json_bytes  # JAX-free: cli.seed_workers writes with it
from digitnet.model import BATCHNORM_WEIGHTS, INPUT, MLPSpec, init_params
from digitnet.optimizers import make_optimizer
from digitnet.safefiles import MAX_JSON_BYTES as MAX_JSON_BYTES  # config.json's limit
from digitnet.safefiles import read_json as read_json  # JAX-free: the CLI reads runs before JAX starts
from digitnet.safefiles import read_regular
from digitnet.trainconfig import INT_BOUNDS

if TYPE_CHECKING:
    from digitnet.trainconfig import TrainConfig

FORMAT = "digitnet-run"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.safetensors"
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
# Largest files a loader reads: weights of MAX_PARAMS float32 values plus their header; config
# and history are text of a few kB.
MAX_TENSOR_BYTES = 4 * MAX_PARAMS + (16 << 20)
MAX_HISTORY_BYTES = 16 << 20
MAX_HISTORY_ROWS = INT_BOUNDS["epochs"]  # one per epoch


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files that a killed writer left in `folder` (`.NAME.*.tmp`);
    loaders never read them. Only one process may write a run directory at a time."""
    stale = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file() and any(
             p.name.startswith(f".{name}.") for name in (CONFIG, WEIGHTS, HISTORY, CHECKPOINT))]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))




def write_tensors(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    atomic_write_bytes(path, tensors_bytes(tensors, meta))


def tensors_bytes(tensors: dict[str, np.ndarray], meta: dict[str, str]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()},
                metadata=meta)


def weights_bytes(specs: list[MLPSpec]) -> int:
    """The most bytes a weights file of these models (a run: one; an ensemble: its members)
    can need: their float32 parameters and preprocessing, and room for the header. A file
    holding more is refused before it is read."""
    values = sum(s.num_params + 2 * s.input_dim for s in specs)
    tensors = sum(2 * len(s.sizes) for s in specs)
    return min(4 * values + (1 << 20) + 256 * tensors, MAX_TENSOR_BYTES)


def read_tensors(path: Path,
                 max_bytes: int = MAX_TENSOR_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of a safetensors file no larger than max_bytes (weights_bytes of its models)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    data = read_regular(path, max_bytes, Path(path).parent)
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


def tensors_to_params(tensors: dict[str, np.ndarray], spec: MLPSpec, path: Path,
                      prefix: str = "") -> list[dict[str, np.ndarray]]:
    """Rebuild the layer list, checking every shape against the spec (a batch-normalised hidden
    layer holds its normalization's weights too)."""
    params = []
    for i, (a, b) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:], strict=True)):
        layer = {}
        extra = [(name, (b,)) for name, _ in BATCHNORM_WEIGHTS] if i < len(spec.hidden) and \
            spec.batchnorm_of(i) else []
        if i == 0 and spec.input_batchnorm:
            extra += [(INPUT + name, (a,)) for name, _ in BATCHNORM_WEIGHTS]
        for name, shape in (("kernel", (a, b)), ("bias", (b,)), *extra):
            key = f"{prefix}dense_{i}.{name}"
            if key not in tensors:
                raise ModelFileError(f"{path}: missing tensor {key}")
            v = tensors[key]
            if v.shape != shape or v.dtype != np.float32:
                raise ModelFileError(
                    f"{path}: {key} is {v.dtype} {v.shape}, the config needs float32 {shape}"
                )
            if not np.isfinite(v).all():
                raise ModelFileError(f"{path}: {key} holds NaN or infinite values")
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
    if not os.path.lexists(path):
        return []
    rows = []
    try:
        text = read_regular(path, MAX_HISTORY_BYTES, Path(path).parent).decode()
        for row in csv.DictReader(io.StringIO(text, newline="")):
            if len(rows) == MAX_HISTORY_ROWS:
                raise ModelFileError(f"{path}: more than {MAX_HISTORY_ROWS:,} rows; a run has "
                                     "one per epoch")
            rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()
                         if k in HISTORY_FIELDS and v not in ("", None)})
    except (UnicodeDecodeError, csv.Error, ValueError, TypeError) as exc:
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


def save_checkpoint(run_dir: Path, state: TrainState, stats: dict[str, np.ndarray]) -> None:
    """The checkpoint and history.csv, staged together so that they always agree."""
    leaves = jax.tree.leaves(state.opt_state)
    tensors = {**params_to_tensors(state.params, "params."),
               **{f"opt.{i}": np.asarray(v) for i, v in enumerate(leaves)},
               **{f"preprocess.{k}": v for k, v in stats.items()}}
    meta = {"format": FORMAT, "epoch": str(state.epoch), "history": json.dumps(state.history)}
    atomic_write_files(run_dir, {CHECKPOINT: tensors_bytes(tensors, meta),
                                     HISTORY: history_bytes(state.history)})


def load_checkpoint(run_dir: Path, spec: MLPSpec, cfg: TrainConfig, n_train: int) -> TrainState:
    """The training state saved after the last complete epoch. The optimizer state's structure
    comes from a fresh `tx.init`, so nothing but arrays is read from disk."""
    path = run_dir / CHECKPOINT
    tx = make_optimizer(cfg, steps_per_epoch(n_train, cfg) * cfg.epochs)
    leaves, treedef = jax.tree.flatten(tx.init(init_params(spec, jax.random.key(0))))
    # Weights, optimizer state and the history in the metadata: nothing larger is read.
    limit = weights_bytes([spec]) + sum(int(np.size(v)) * 8 for v in leaves) + (16 << 20)
    tensors, meta = read_tensors(path, min(limit, MAX_TENSOR_BYTES))
    params = tensors_to_params(tensors, spec, path, prefix="params.")
    restored = []
    for i, leaf in enumerate(leaves):
        v = tensors.get(f"opt.{i}")
        # safetensors stores 0-d arrays (step counters) as shape (1,)
        if v is None or v.size != np.size(leaf) or v.dtype != leaf.dtype:
            raise ModelFileError(f"{path}: optimizer state does not match this configuration")
        restored.append(v.reshape(np.shape(leaf)))
    epoch, history = checkpoint_progress(meta, path)
    return TrainState(params=params, opt_state=jax.tree.unflatten(treedef, restored),
                      epoch=epoch, history=history)


def checkpoint_progress(meta: dict[str, str], path: Path) -> tuple[int, list[dict[str, float]]]:
    """The epochs completed and the history a checkpoint's metadata records, checked as
    read_history checks history.csv: an epoch count within the epochs a run may have, and rows
    of known fields holding finite numbers, one per epoch at most."""
    try:
        text = meta["epoch"]
        epoch = int(text) if text.isdigit() and len(text) <= 7 else -1
        rows = json.loads(meta["history"], parse_constant=float)
    except (KeyError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: bad checkpoint metadata ({exc.__class__.__name__})") from None
    if not 0 <= epoch <= MAX_HISTORY_ROWS:
        raise ModelFileError(f"{path}: bad checkpoint metadata (epoch {text[:20]!r})")
    if not isinstance(rows, list) or len(rows) > epoch or not all(
            isinstance(r, dict) and r.keys() <= set(HISTORY_FIELDS)
            and all(type(v) in (int, float) and np.isfinite(v) for v in r.values()) for r in rows):
        raise ModelFileError(f"{path}: bad checkpoint metadata (history is not a list of at most "
                             f"{epoch} rows of finite {', '.join(HISTORY_FIELDS)})")
    return epoch, rows


def spec_from_config(config: dict[str, Any], path: Path) -> MLPSpec:
    try:
        return MLPSpec.from_dict(config["model"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{path / CONFIG}: bad or missing model spec ({exc})") from None
    except ConfigError as exc:
        raise ModelFileError(f"{path / CONFIG}: {exc}") from None


def read_stats(tensors: dict[str, np.ndarray], spec: MLPSpec, path: Path) -> dict[str, np.ndarray]:
    stats = {}
    for k in ("shift", "scale"):
        v = tensors.get(f"preprocess.{k}")
        if v is None or v.shape != (spec.input_dim,) or v.dtype != np.float32:
            raise ModelFileError(f"{path}: missing or malformed tensor preprocess.{k}")
        if not np.isfinite(v).all():
            raise ModelFileError(f"{path}: preprocess.{k} holds NaN or infinite values")
        stats[k] = v
    return stats


class Checkpoint(Callback):
    """After every epoch: weights + optimizer state + history in one atomic file."""

    def __init__(self, run_dir: Path, stats: dict[str, np.ndarray]):
        self.run_dir, self.stats = run_dir, stats

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        save_checkpoint(self.run_dir, state, self.stats)
