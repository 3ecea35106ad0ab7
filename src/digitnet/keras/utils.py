"""`keras.utils`: one-hot encoding, normalize, the random seed, and plot_model's refusal."""

from __future__ import annotations

import numpy as np

from digitnet.keras.errors import KerasValueError

_seed = {"value": 0, "draws": 0}


def to_categorical(y, num_classes: int | None = None) -> np.ndarray:
    """Integer class labels (N,) or (N, 1) → one-hot float32 rows (N, num_classes)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise KerasValueError(f"to_categorical expects integer labels of shape (N,), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise KerasValueError("to_categorical expects integer labels, got non-integer values")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise KerasValueError(f"to_categorical expects integer labels, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise KerasValueError("to_categorical: labels must not be negative")
    n = int(num_classes) if num_classes is not None else (int(y.max()) + 1 if len(y) else 0)
    if len(y) and y.max() >= n:
        raise KerasValueError(f"to_categorical: label {int(y.max())} does not fit num_classes={n}")
    out = np.zeros((len(y), n), np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


_uids: dict[str, int] = {}


def unique_name(prefix: str) -> str:
    """Keras' automatic names: 'dense', then 'dense_1', 'dense_2', … for the whole process
    (until clear_session())."""
    _uids[prefix] = _uids.get(prefix, 0) + 1
    return prefix if _uids[prefix] == 1 else f"{prefix}_{_uids[prefix] - 1}"


def clear_session(free_memory: bool = True) -> None:
    """Start naming layers and models afresh, as Keras' clear_session does."""
    _uids.clear()


def set_random_seed(seed: int) -> None:
    """Seed every random choice of later models: initial weights, shuffling and dropout."""
    _seed["value"], _seed["draws"] = int(seed), 0


def next_seed() -> int:
    """A fresh seed for one build or one fit, reproducible after set_random_seed."""
    _seed["draws"] += 1
    return _seed["value"] * 1_000_003 + _seed["draws"]


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """keras.utils.normalize: x divided by its `order`-norm along `axis` (zero norms left as 0)."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis or -1)  # Keras' own `axis or -1`, quirk included


def plot_model(model, to_file: str = "model.png", *args, **kwargs) -> None:
    """keras.utils.plot_model needs pydot and graphviz, which digitnet does not ship: the error
    Keras raises without them."""
    raise ImportError("You must install pydot (`pip install pydot`) for `plot_model` to work.")
