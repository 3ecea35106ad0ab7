"""`keras.losses` for classifiers (on probabilities or, with from_logits=True, on logits), and
the check that targets fit the loss.

The engine trains on integer labels or on target rows; this module turns what the user passed
into one of those, or says which fix applies (the tutorial's deliberate mistake included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras import metrics as kmetrics
from digitnet.keras.backend import Tensor, tensor
from digitnet.keras.errors import KerasValueError

# Keras' names (and aliases) → (canonical Keras name, engine loss).
NAMES = {
    "categorical_crossentropy": ("categorical_crossentropy", "cross_entropy"),
    "sparse_categorical_crossentropy": ("sparse_categorical_crossentropy", "cross_entropy"),
    "mse": ("mean_squared_error", "mse"),
    "mean_squared_error": ("mean_squared_error", "mse"),
    "binary_crossentropy": ("binary_crossentropy", "cross_entropy"),  # on one unit: binary
}


class Loss:
    """A Keras loss: callable as loss(y_true, y_pred, sample_weight=None) → the mean over the
    batch, and usable in compile()."""

    keras_name = ""
    label_smoothing = 0.0

    def __init__(self, from_logits: bool = False, reduction: str = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None, **options: Any):
        if reduction not in ("sum_over_batch_size", "auto", "sum", "none", None):
            raise KerasValueError(f"{type(self).__name__}: reduction={reduction!r} is not supported")
        bad = {k: v for k, v in options.items() if v not in (None, 0, 0.0, -1, "float32")}
        if bad:
            raise KerasValueError(f"{type(self).__name__}: unsupported option(s) {', '.join(bad)}")
        self.from_logits, self.reduction = bool(from_logits), reduction or "none"
        self.name = name or self.keras_name

    def values(self, y_true: Any, y_pred: Any) -> np.ndarray:
        """Per-example losses."""
        raise NotImplementedError(f"{type(self).__name__} is not a loss digitnet can compute; "
                                  "define values()")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.values(y_true, y_pred)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        per = np.asarray(self.call(y_true, y_pred), np.float32)
        if sample_weight is not None:
            per = per * np.asarray(sample_weight, np.float32).reshape(per.shape[:1] + (1,) * (per.ndim - 1))
        if self.reduction == "none":
            return tensor(per)
        total = np.float32(per.sum())
        if self.reduction == "sum":
            return tensor(total)
        return tensor(np.float32(total / max(per.size, 1)))

    def check_output(self, kind: str, layer: str, units: int = 2) -> None:
        """Refuse a loss that would read the model's outputs as what they are not."""
        if self.keras_name == "mean_squared_error":
            if kind == "logits":
                raise KerasValueError(f"mean_squared_error trains on the model's probabilities: give "
                                      f"the last Dense layer ({layer!r}) activation='softmax' (or "
                                      "'sigmoid' for one unit)")
            return
        if units == 1:
            raise KerasValueError(
                f"{self.keras_name} needs at least 2 classes, but the model's last Dense layer "
                f"({layer!r}) has one unit (a binary classifier): use loss='binary_crossentropy'")
        if kind == "logits" and not self.from_logits:
            raise KerasValueError(
                f"the model outputs logits (its last Dense layer {layer!r} has no activation) but the "
                f"loss expects probabilities: use {type(self).__name__}(from_logits=True), or give "
                "the last layer activation='softmax'")
        if kind == "softmax" and self.from_logits:
            raise KerasValueError(
                f"{type(self).__name__}(from_logits=True) expects logits, but the model's last layer "
                f"({layer!r}) applies a softmax: drop from_logits=True, or remove the softmax")

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits}


class CategoricalCrossentropy(Loss):
    keras_name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str | None = None, **options: Any):
        super().__init__(from_logits, reduction, name, axis=axis, **options)
        if not 0 <= label_smoothing < 1:
            raise KerasValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def values(self, y_true: Any, y_pred: Any) -> np.ndarray:
        return np.asarray(kmetrics.categorical_crossentropy(y_true, y_pred, self.from_logits,
                                                            self.label_smoothing))


class SparseCategoricalCrossentropy(Loss):
    keras_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_class: Any = None,
                 reduction: str = "sum_over_batch_size", name: str | None = None, **options: Any):
        super().__init__(from_logits, reduction, name, ignore_class=ignore_class, **options)

    def values(self, y_true: Any, y_pred: Any) -> np.ndarray:
        return np.asarray(kmetrics.sparse_categorical_crossentropy(y_true, y_pred, self.from_logits))


class MeanSquaredError(Loss):
    keras_name = "mean_squared_error"

    def values(self, y_true: Any, y_pred: Any) -> np.ndarray:
        return np.asarray(kmetrics.mean_squared_error(y_true, y_pred))


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, for a model whose last layer is one unit: Dense(1,
    activation='sigmoid'), or a linear Dense(1) with from_logits=True."""

    keras_name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str = "sum_over_batch_size", name: str | None = None, **options: Any):
        super().__init__(from_logits, reduction, name, axis=axis, **options)
        if not 0 <= label_smoothing < 1:
            raise KerasValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def values(self, y_true: Any, y_pred: Any) -> np.ndarray:
        return np.asarray(kmetrics.binary_crossentropy(y_true, y_pred, self.from_logits,
                                                       self.label_smoothing))

    def check_output(self, kind: str, layer: str, units: int = 1) -> None:
        if units != 1:
            raise KerasValueError(
                f"binary_crossentropy is trained on a one-unit output (Dense(1, activation="
                f"'sigmoid')), but the model's last Dense layer ({layer!r}) has {units} units: for "
                "several classes use sparse_categorical_crossentropy (digitnet.keras does not train "
                "multi-label outputs)")
        if kind == "logits" and not self.from_logits:
            raise KerasValueError(
                f"the model outputs a logit (its last Dense layer {layer!r} has no activation) but "
                "the loss expects a probability: use BinaryCrossentropy(from_logits=True), or give "
                "the last layer activation='sigmoid'")
        if kind == "sigmoid" and self.from_logits:
            raise KerasValueError(
                f"BinaryCrossentropy(from_logits=True) expects a logit, but the model's last layer "
                f"({layer!r}) applies a sigmoid: drop from_logits=True, or remove the sigmoid")


CLASSES = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                   MeanSquaredError, BinaryCrossentropy)}
BY_NAME = {"categorical_crossentropy": CategoricalCrossentropy,
           "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
           "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
           "binary_crossentropy": BinaryCrossentropy}


def get_object(identifier: Any) -> Loss:
    """A Loss object from a name, an instance or a Keras config dict."""
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        if identifier.get("registered_name"):
            raise KerasValueError(f"custom loss {identifier['registered_name']!r} is not supported")
        config = {k: v for k, v in (identifier.get("config") or {}).items() if k not in ("name", "dtype")}
        identifier = CLASSES[identifier["class_name"]](**config)
    if isinstance(identifier, Loss):
        if type(identifier) not in CLASSES.values():
            raise KerasValueError(f"custom loss {type(identifier).__name__} is not supported; digitnet "
                                  "compiles categorical_crossentropy, sparse_categorical_crossentropy, "
                                  "binary_crossentropy and mse")
        return identifier
    if isinstance(identifier, str) and identifier in BY_NAME:
        return BY_NAME[identifier]()
    if isinstance(identifier, str) and identifier in FUNCTIONS:
        return BY_NAME[identifier]()
    if callable(identifier) and identifier in FUNCTIONS.values():
        return BY_NAME[identifier.__name__]()
    name = identifier.get("class_name") if isinstance(identifier, dict) else getattr(
        identifier, "__name__", identifier)
    raise KerasValueError(f"loss {name!r} is not supported (custom loss functions are not compiled "
                          "into digitnet's engine); use 'categorical_crossentropy', "
                          "'sparse_categorical_crossentropy', 'binary_crossentropy' or 'mse', by "
                          "name or as a keras.losses object")


def get(identifier: Any) -> tuple[str, float]:
    """(canonical Keras name, label smoothing) of a loss given by name, instance or Keras
    config dict."""
    loss = get_object(identifier)
    return loss.keras_name, loss.label_smoothing


# Keras' loss functions: per-example values of (y_true, y_pred).
sparse_categorical_crossentropy = kmetrics.sparse_categorical_crossentropy
categorical_crossentropy = kmetrics.categorical_crossentropy
binary_crossentropy = kmetrics.binary_crossentropy
mean_squared_error = mse = kmetrics.mean_squared_error
FUNCTIONS = {"sparse_categorical_crossentropy": sparse_categorical_crossentropy,
             "categorical_crossentropy": categorical_crossentropy,
             "binary_crossentropy": binary_crossentropy, "mean_squared_error": mean_squared_error}


def engine_loss(name: str) -> str:
    return NAMES[name][1]


def config(name: str, label_smoothing: float, from_logits: bool = False) -> str | dict[str, Any]:
    """How a saved model's compile config names the loss: by name, or, with label smoothing or
    from_logits, as the Keras config of the loss object (what Keras itself writes)."""
    if not label_smoothing and not from_logits:
        return name
    cls = BY_NAME[name]
    options: dict[str, Any] = {"name": name, "reduction": "sum_over_batch_size", "from_logits": from_logits}
    if cls is CategoricalCrossentropy:
        options.update(label_smoothing=label_smoothing, axis=-1)
    elif cls is SparseCategoricalCrossentropy:
        options.update(ignore_class=None)
    elif cls is BinaryCrossentropy:
        options.update(label_smoothing=label_smoothing, axis=-1)
    return {"module": "keras.losses", "class_name": cls.__name__, "config": options,
            "registered_name": None}


def targets(name: str, y: Any, classes: int) -> np.ndarray:
    """What the engine trains on for loss `name`: int labels (N,) or float32 target rows
    (N, classes). One-hot rows become labels: the same loss, in a tenth of the memory."""
    y = np.asarray(y)
    if classes == 1:
        return binary_targets(name, y)
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


def binary_targets(name: str, y: np.ndarray) -> np.ndarray:
    """Targets of a one-unit model, (N,) or (N, 1) numbers (0/1 labels, or soft values), as the
    float32 (N, 1) rows the engine compares with its one output."""
    if y.dtype.kind not in "fiub" or not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise KerasValueError(f"{name} on a one-unit output expects targets of shape (N,) or (N, 1) "
                              f"(0 or 1 per example), got {y.dtype} {y.shape}")
    y = y.reshape(-1, 1).astype(np.float32)
    if not np.isfinite(y).all():
        raise KerasValueError("targets contain NaN or infinite values")
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
