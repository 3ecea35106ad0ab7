"""`keras.losses` for classifiers with a softmax output, and the check that targets fit the loss.

The engine trains on integer labels or on target rows; this module turns what the user passed
into one of those, or says which fix applies (the tutorial's deliberate mistake included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras.errors import KerasValueError

# Keras' names (and aliases) → (canonical Keras name, engine loss).
NAMES = {
    "categorical_crossentropy": ("categorical_crossentropy", "cross_entropy"),
    "sparse_categorical_crossentropy": ("sparse_categorical_crossentropy", "cross_entropy"),
    "mse": ("mean_squared_error", "mse"),
    "mean_squared_error": ("mean_squared_error", "mse"),
}


class Loss:
    keras_name = ""
    label_smoothing = 0.0

    def __init__(self, from_logits: bool = False, reduction: str = "sum_over_batch_size",
                 name: str | None = None, **options: Any):
        if from_logits:
            raise KerasValueError(f"{type(self).__name__}(from_logits=True) is not supported: the "
                                  "model's last Dense has a softmax activation")
        if reduction not in ("sum_over_batch_size", "auto"):
            raise KerasValueError(f"{type(self).__name__}: reduction={reduction!r} is not supported")
        bad = {k: v for k, v in options.items() if v not in (None, 0, 0.0, -1, "float32")}
        if bad:
            raise KerasValueError(f"{type(self).__name__}: unsupported option(s) {', '.join(bad)}")
        del name


class CategoricalCrossentropy(Loss):
    keras_name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str | None = None, **options: Any):
        super().__init__(from_logits, reduction, name, axis=axis, **options)
        if not 0 <= label_smoothing < 1:
            raise KerasValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)


class SparseCategoricalCrossentropy(Loss):
    keras_name = "sparse_categorical_crossentropy"


class MeanSquaredError(Loss):
    keras_name = "mean_squared_error"


CLASSES = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy, MeanSquaredError)}


def get(identifier: Any) -> tuple[str, float]:
    """(canonical Keras name, label smoothing) of a loss given by name, instance or Keras
    config dict."""
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        if identifier.get("registered_name"):
            raise KerasValueError(f"custom loss {identifier['registered_name']!r} is not supported")
        identifier = CLASSES[identifier["class_name"]](**(identifier.get("config") or {}))
    if isinstance(identifier, Loss):
        return identifier.keras_name, identifier.label_smoothing
    if isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier][0], 0.0
    name = identifier.get("class_name") if isinstance(identifier, dict) else identifier
    raise KerasValueError(f"loss {name!r} is not supported; use 'categorical_crossentropy', "
                          "'sparse_categorical_crossentropy' or 'mse'")


def engine_loss(name: str) -> str:
    return NAMES[name][1]


def config(name: str, label_smoothing: float) -> str | dict[str, Any]:
    """How a saved model's compile config names the loss: by name, or, with label smoothing,
    as the Keras config of a CategoricalCrossentropy object (what Keras itself writes)."""
    if not label_smoothing:
        return name
    return {"module": "keras.losses", "class_name": "CategoricalCrossentropy",
            "config": {"name": name, "reduction": "sum_over_batch_size", "from_logits": False,
                       "label_smoothing": label_smoothing, "axis": -1},
            "registered_name": None}


def targets(name: str, y: Any, classes: int) -> np.ndarray:
    """What the engine trains on for loss `name`: int labels (N,) or float32 target rows
    (N, classes). One-hot rows become labels: the same loss, in a tenth of the memory."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1 and classes > 1:
        y = y[:, 0]
    if name == "sparse_categorical_crossentropy":
        if y.ndim != 1:
            raise KerasValueError(
                f"sparse_categorical_crossentropy expects integer labels of shape (N,), got targets "
                f"of shape {y.shape}; for one-hot targets use loss='categorical_crossentropy'")
        return labels(y, classes)
    if y.ndim == 1:
        kind = "integer labels" if y.dtype.kind in "iu" else "one value per example"
        raise KerasValueError(
            f"{name} expects targets of shape (N, {classes}), one row per example like the "
            f"model's {classes}-unit softmax output, but got {kind} of shape {y.shape}. Either "
            f"one-hot encode them with to_categorical(labels) (from digitnet.keras.utils import "
            f"to_categorical), or compile with loss='sparse_categorical_crossentropy' to train "
            f"on the integer labels as they are.")
    if y.ndim != 2 or y.shape[1] != classes:
        raise KerasValueError(f"targets of shape {y.shape} do not match the model's output "
                              f"(N, {classes})")
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise KerasValueError("targets contain NaN or infinite values")
    if name == "categorical_crossentropy" and np.all((y == 0) | (y == 1)) and np.all(y.sum(1) == 1):
        return y.argmax(axis=1).astype(np.int32)
    return y


def labels(y: np.ndarray, classes: int) -> np.ndarray:
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise KerasValueError(f"sparse_categorical_crossentropy expects integer labels, got {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise KerasValueError(f"labels must be in [0, {classes}), got values from {int(y.min())} "
                              f"to {int(y.max())}")
    return y.astype(np.int32)
