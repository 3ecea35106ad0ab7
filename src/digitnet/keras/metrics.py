"""`keras.metrics`: the built-in metrics MLP classifiers use, and `Metric` for your own.

Metrics are stateful objects over NumPy arrays (`update_state`, `result`, `reset_state`), as in
Keras. In `fit`, the accuracy family (`'accuracy'`, `CategoricalAccuracy()`, …) is counted by
the compiled training step itself; other metrics are updated batch by batch on the model's
outputs (see docs/keras.md for when).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras.backend import Tensor, Variable, tensor
from digitnet.keras.errors import KerasValueError
from digitnet.keras.layers import snake_case

EPSILON = 1e-7  # Keras' backend.epsilon(): the clip of probabilities in cross-entropies


class Metric:
    """Subclass and define update_state(y_true, y_pred, sample_weight=None) and result();
    state lives in variables made by add_weight, which reset_state() sets back to their start."""

    def __init__(self, name: str | None = None, dtype: Any = None):
        self.name = name or snake_case(type(self).__name__)
        self.dtype = dtype or "float32"
        self._variables: list[tuple[Variable, np.ndarray]] = []

    def add_weight(self, name: str | None = None, shape: Any = (), initializer: Any = "zeros",
                   dtype: Any = None, aggregation: str = "sum", **_: Any) -> Variable:
        start = np.zeros(shape) if initializer in ("zeros", None) else (
            np.ones(shape) if initializer == "ones" else np.broadcast_to(np.asarray(initializer), shape))
        var = Variable(start, name=name, dtype=dtype or self.dtype)
        self._variables.append((var, np.array(start)))
        return var

    add_variable = add_weight

    @property
    def variables(self) -> list[Variable]:
        return [v for v, _ in self._variables]

    def reset_state(self) -> None:
        for var, start in self._variables:
            var.assign(start)

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define update_state")

    def result(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define result")

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        self.update_state(*args, **kwargs)
        return tensor(np.asarray(self.result()))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """The (weighted) mean of the values given to update_state."""

    def __init__(self, name: str = "mean", dtype: Any = None):
        super().__init__(name, dtype)
        self.total = self.add_weight("total")
        self.count = self.add_weight("count")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        values = np.asarray(values, np.float32)
        weight = np.ones_like(values) if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, np.float32).reshape(values.shape[:1] + (1,) * (values.ndim - 1)),
            values.shape)
        self.total.assign_add(np.sum(values * weight))
        self.count.assign_add(np.sum(weight))

    def result(self) -> Tensor:
        count = float(self.count)
        return tensor(np.float32(float(self.total) / count if count else 0.0))


class Sum(Metric):
    def __init__(self, name: str = "sum", dtype: Any = None):
        super().__init__(name, dtype)
        self.total = self.add_weight("total")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        values = np.asarray(values, np.float32)
        if sample_weight is not None:
            values = values * np.asarray(sample_weight, np.float32)
        self.total.assign_add(np.sum(values))

    def result(self) -> Tensor:
        return self.total.value


def _labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    return y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y


def _xent(y_true: np.ndarray, y_pred: np.ndarray, from_logits: bool, sparse: bool,
          smoothing: float = 0.0) -> np.ndarray:
    """Keras' categorical cross-entropies, per example: on logits via log-softmax; on
    probabilities after normalising the rows and clipping to [ε, 1 − ε]."""
    p = np.asarray(y_pred, np.float32)
    if from_logits:
        shifted = p - p.max(-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    else:
        p = p / p.sum(-1, keepdims=True)
        logp = np.log(np.clip(p, EPSILON, 1 - EPSILON))
    if sparse:
        idx = _labels(y_true).astype(np.int64)
        return -np.take_along_axis(logp, idx[:, None], -1)[:, 0]
    t = np.asarray(y_true, np.float32)
    if smoothing:
        t = t * (1 - smoothing) + smoothing / t.shape[-1]
    return -(t * logp).sum(-1)


def _bce(y_true: Any, y_pred: Any, from_logits: bool, smoothing: float = 0.0) -> np.ndarray:
    t, p = np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)
    t = t.reshape(p.shape)
    if smoothing:
        t = t * (1 - smoothing) + 0.5 * smoothing
    if from_logits:
        return (np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))).mean(-1)
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(-1)


# Per-example functions, by Keras' name (also `keras.metrics.<name>(y_true, y_pred)`).
def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> Tensor:
    return tensor((_labels(y_true).astype(np.int64) == np.argmax(y_pred, -1)).astype(np.float32))


def categorical_accuracy(y_true: Any, y_pred: Any) -> Tensor:
    return tensor((np.argmax(y_true, -1) == np.argmax(y_pred, -1)).astype(np.float32))


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> Tensor:
    p = np.asarray(y_pred)
    t = np.asarray(y_true).reshape(p.shape)
    return tensor(((p > threshold) == t).astype(np.float32).mean(-1))


def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> Tensor:
    return sparse_top_k_categorical_accuracy(np.argmax(y_true, -1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> Tensor:
    p = np.asarray(y_pred, np.float32)
    t = _labels(y_true).astype(np.int64)
    score = np.take_along_axis(p, t[:, None], -1)
    return tensor(((p > score).sum(-1) < k).astype(np.float32))


def accuracy(y_true: Any, y_pred: Any) -> Tensor:
    p = np.asarray(y_pred)
    return tensor((np.asarray(y_true).reshape(p.shape) == p).astype(np.float32))


def mean_squared_error(y_true: Any, y_pred: Any) -> Tensor:
    p = np.asarray(y_pred, np.float32)
    return tensor(((np.asarray(y_true, np.float32).reshape(p.shape) - p) ** 2).mean(-1))


def mean_absolute_error(y_true: Any, y_pred: Any) -> Tensor:
    p = np.asarray(y_pred, np.float32)
    return tensor(np.abs(np.asarray(y_true, np.float32).reshape(p.shape) - p).mean(-1))


class MeanMetricWrapper(Mean):
    """The mean of a per-example function of (y_true, y_pred)."""

    def __init__(self, fn: Any, name: str | None = None, dtype: Any = None, **options: Any):
        super().__init__(name or fn.__name__, dtype)
        self._fn, self._options = fn, options

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        super().update_state(self._fn(y_true, y_pred, **self._options), sample_weight)


def _wrapper(fn: Any, default_name: str, **fixed: Any) -> type[MeanMetricWrapper]:
    def __init__(self, name: str = default_name, dtype: Any = None, **options: Any) -> None:  # noqa: N807
        unknown = set(options) - set(fixed)
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                            f"{sorted(unknown)[0]!r}")
        MeanMetricWrapper.__init__(self, fn, name, dtype, **{**fixed, **options})
    return type("_", (MeanMetricWrapper,), {"__init__": __init__})


class Accuracy(_wrapper(accuracy, "accuracy")):  # type: ignore[misc]
    pass


class CategoricalAccuracy(_wrapper(categorical_accuracy, "categorical_accuracy")):  # type: ignore[misc]
    pass


class SparseCategoricalAccuracy(_wrapper(sparse_categorical_accuracy,  # type: ignore[misc]
                                         "sparse_categorical_accuracy")):
    pass


class BinaryAccuracy(_wrapper(binary_accuracy, "binary_accuracy", threshold=0.5)):  # type: ignore[misc]
    pass


class TopKCategoricalAccuracy(_wrapper(top_k_categorical_accuracy,  # type: ignore[misc]
                                       "top_k_categorical_accuracy", k=5)):
    pass


class SparseTopKCategoricalAccuracy(_wrapper(sparse_top_k_categorical_accuracy,  # type: ignore[misc]
                                             "sparse_top_k_categorical_accuracy", k=5)):
    pass


class MeanSquaredError(_wrapper(mean_squared_error, "mean_squared_error")):  # type: ignore[misc]
    pass


class MeanAbsoluteError(_wrapper(mean_absolute_error, "mean_absolute_error")):  # type: ignore[misc]
    pass


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> Tensor:
    return tensor(_xent(y_true, y_pred, from_logits, False, label_smoothing))


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: Any = None, axis: int = -1) -> Tensor:
    return tensor(_xent(y_true, y_pred, from_logits, True))


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> Tensor:
    return tensor(_bce(y_true, y_pred, from_logits, label_smoothing))


class CategoricalCrossentropy(_wrapper(categorical_crossentropy, "categorical_crossentropy",  # type: ignore[misc]
                                       from_logits=False, label_smoothing=0.0, axis=-1)):
    pass


class SparseCategoricalCrossentropy(_wrapper(sparse_categorical_crossentropy,  # type: ignore[misc]
                                             "sparse_categorical_crossentropy", from_logits=False,
                                             axis=-1)):
    pass


class BinaryCrossentropy(_wrapper(binary_crossentropy, "binary_crossentropy",  # type: ignore[misc]
                                  from_logits=False, label_smoothing=0.0)):
    pass


class _Confusion(Metric):
    """Counts of binary (or one-class) predictions at a threshold (a prediction above it is
    positive, as Keras'), and what Precision and Recall make of them."""

    def __init__(self, thresholds: Any = None, top_k: Any = None, class_id: int | None = None,
                 name: str | None = None, dtype: Any = None):
        super().__init__(name, dtype)
        if top_k is not None or isinstance(thresholds, list | tuple):
            raise KerasValueError(f"{type(self).__name__}: top_k and several thresholds are not supported")
        self.threshold = 0.5 if thresholds is None else float(thresholds)
        self.class_id = class_id
        self.true_positives = self.add_weight("true_positives")
        self.false_positives = self.add_weight("false_positives")
        self.false_negatives = self.add_weight("false_negatives")
        self.true_negatives = self.add_weight("true_negatives")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        p, t = np.asarray(y_pred, np.float32), np.asarray(y_true, np.float32)
        if self.class_id is not None:
            p, t = p[..., self.class_id], t[..., self.class_id]
        t = t.reshape(p.shape).astype(bool)
        pos = p > self.threshold
        w = np.ones_like(p) if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, np.float32).reshape(p.shape[:1] + (1,) * (p.ndim - 1)), p.shape)
        self.true_positives.assign_add(np.sum(w * (pos & t)))
        self.false_positives.assign_add(np.sum(w * (pos & ~t)))
        self.false_negatives.assign_add(np.sum(w * (~pos & t)))
        self.true_negatives.assign_add(np.sum(w * (~pos & ~t)))


class Precision(_Confusion):
    def result(self) -> Tensor:
        tp, fp = float(self.true_positives), float(self.false_positives)
        return tensor(np.float32(tp / (tp + fp) if tp + fp else 0.0))


class Recall(_Confusion):
    def result(self) -> Tensor:
        tp, fn = float(self.true_positives), float(self.false_negatives)
        return tensor(np.float32(tp / (tp + fn) if tp + fn else 0.0))


class _Count(_Confusion):
    """One cell of the confusion matrix, as Keras' TruePositives … FalseNegatives."""

    cell = ""

    def __init__(self, thresholds: Any = None, name: str | None = None, dtype: Any = None):
        super().__init__(thresholds=thresholds, name=name, dtype=dtype)

    def result(self) -> Tensor:
        return tensor(np.float32(float(getattr(self, self.cell))))


class TruePositives(_Count):
    cell = "true_positives"


class FalsePositives(_Count):
    cell = "false_positives"


class TrueNegatives(_Count):
    cell = "true_negatives"


class FalseNegatives(_Count):
    cell = "false_negatives"


class FBetaScore(Metric):
    """Keras' FBetaScore over one-hot targets (N, classes): a prediction is the row's maximum
    (threshold None) or every output above `threshold`; per class (average None), or averaged:
    'micro' (counts pooled), 'macro', 'weighted' (by each class's count). Keras' formulas."""

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str | None = "fbeta_score", dtype: Any = None):
        super().__init__(name, dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise KerasValueError("Invalid `average` argument value. Expected one of: "
                                  f"{{None, 'micro', 'macro', 'weighted'}}. Received: average={average}")
        if not isinstance(beta, float) or beta <= 0.0:
            raise KerasValueError(f"Invalid `beta` argument value. It should be a Python float > 0. "
                                  f"Received: beta={beta} of type '{type(beta)}'")
        if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
            raise KerasValueError("Invalid `threshold` argument value. It should be a Python float "
                                  f"with 0 < threshold <= 1. Received: threshold={threshold}")
        self.average, self.beta, self.threshold = average, beta, threshold
        self.counts: dict[str, np.ndarray] | None = None

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        t, p = np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)
        if t.ndim != 2 or p.ndim != 2:
            raise KerasValueError("FBetaScore expects 2D inputs with shape (batch_size, output_dim). "
                                  f"Received input shapes: y_pred.shape={p.shape} and "
                                  f"y_true.shape={t.shape}.")
        if self.threshold is None:
            p = (p >= p.max(axis=-1, keepdims=True)) & (np.abs(p) > 1e-9)
        else:
            p = p > self.threshold
        p = p.astype(np.float32)
        w = None if sample_weight is None else np.asarray(sample_weight, np.float32).reshape(-1, 1)
        axis = None if self.average == "micro" else 0

        def total(v: np.ndarray) -> np.ndarray:
            return np.sum(v if w is None else v * w, axis=axis)

        new = {"tp": total(p * t), "fp": total(p * (1 - t)), "fn": total((1 - p) * t), "weights": total(t)}
        self.counts = new if self.counts is None else {k: self.counts[k] + v for k, v in new.items()}

    def reset_state(self) -> None:
        self.counts = None

    def result(self) -> Tensor:
        if self.counts is None:
            return tensor(np.float32(0.0))
        c = {k: v.astype(np.float32) for k, v in self.counts.items()}
        precision = c["tp"] / (c["tp"] + c["fp"] + np.float32(EPSILON))
        recall = c["tp"] / (c["tp"] + c["fn"] + np.float32(EPSILON))
        b2 = np.float32(self.beta ** 2)
        score = (precision * recall) / (b2 * precision + recall + np.float32(EPSILON)) * (1 + b2)
        if self.average == "weighted":
            score = np.sum(score * c["weights"] / (np.sum(c["weights"]) + np.float32(EPSILON)))
        elif self.average is not None:
            score = np.mean(score)
        return tensor(np.asarray(score, np.float32))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with beta 1 (Keras' F1Score)."""

    def __init__(self, average: str | None = None, threshold: float | None = None,
                 name: str | None = "f1_score", dtype: Any = None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("beta")
        return config


AUC_CURVES = ("ROC", "PR", "PRGAIN")
AUC_SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(Metric):
    """Keras' AUC: the area under the ROC (or precision-recall) curve, from confusion counts at
    num_thresholds thresholds (evenly spaced in (0, 1), plus -ε and 1 + ε) accumulated over the
    batches, a prediction above a threshold counting as positive; predictions and labels are
    flattened (multi_label=False). The same formulas as Keras' result(), in NumPy."""

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 dtype: Any = None, thresholds: Any = None, multi_label: bool = False,
                 num_labels: Any = None, label_weights: Any = None, from_logits: bool = False):
        super().__init__(name, dtype)
        if multi_label or num_labels is not None or label_weights is not None:
            raise KerasValueError("AUC: multi_label, num_labels and label_weights are not "
                                  "supported (one curve over all outputs)")
        curve, summation = str(curve).upper(), str(summation_method).lower()
        if curve not in AUC_CURVES:
            raise KerasValueError(f'Invalid AUC curve value "{curve}". Expected values are '
                                  "['ROC', 'PR', 'PRGAIN']")
        if summation not in AUC_SUMMATIONS:
            raise KerasValueError(f'Invalid AUC summation method value "{summation_method}". '
                                  "Expected values are ['interpolation', 'majoring', 'minoring']")
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
        else:
            if int(num_thresholds) <= 1:
                raise KerasValueError("Argument `num_thresholds` must be an integer > 1. "
                                      f"Received: num_thresholds={num_thresholds}")
            n = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
        self.curve, self.summation_method, self._from_logits = curve, summation, bool(from_logits)
        self._thresholds = np.array([0.0 - EPSILON, *inner, 1.0 + EPSILON])
        self.num_thresholds = len(self._thresholds)
        shape = (self.num_thresholds,)
        self.true_positives = self.add_weight("true_positives", shape)
        self.false_positives = self.add_weight("false_positives", shape)
        self.true_negatives = self.add_weight("true_negatives", shape)
        self.false_negatives = self.add_weight("false_negatives", shape)

    @property
    def thresholds(self) -> list[float]:
        return list(self._thresholds)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        p = np.asarray(y_pred, np.float32)
        if self._from_logits:
            p = (1 / (1 + np.exp(-p.astype(np.float64)))).astype(np.float32)
        t = np.asarray(y_true, np.float32).reshape(p.shape).astype(bool).ravel()
        w = (np.ones(p.shape, np.float64) if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, np.float64).reshape(p.shape[:1] + (1,) * (p.ndim - 1)),
            p.shape)).ravel()
        p = p.ravel()
        order = np.argsort(p, kind="stable")
        # For each threshold, the weight of the predictions at or below it (sorted once).
        below = np.searchsorted(p[order], self._thresholds.astype(np.float32), side="right")
        pos = np.concatenate([[0.0], np.cumsum((w * t)[order])])
        neg = np.concatenate([[0.0], np.cumsum((w * ~t)[order])])
        self.true_positives.assign_add(pos[-1] - pos[below])
        self.false_positives.assign_add(neg[-1] - neg[below])
        self.false_negatives.assign_add(pos[below])
        self.true_negatives.assign_add(neg[below])

    def result(self) -> Tensor:
        tp, fp, tn, fn = (np.asarray(v, np.float64) for v in (
            self.true_positives, self.false_positives, self.true_negatives, self.false_negatives))

        def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # Keras' divide_no_nan
            return np.divide(a, b, out=np.zeros_like(a), where=b != 0)

        if self.curve == "PR" and self.summation_method == "interpolation":
            # Davis & Goadrich's interpolation, in Keras' closed form (interpolate_pr_auc).
            dtp, p = tp[:-1] - tp[1:], tp + fp
            slope = ratio(dtp, np.maximum(p[:-1] - p[1:], 0))
            intercept = tp[1:] - slope * p[1:]
            p_ratio = np.where((p[:-1] > 0) & (p[1:] > 0), ratio(p[:-1], np.maximum(p[1:], 0)), 1.0)
            terms = ratio(slope * (dtp + intercept * np.log(p_ratio)), np.maximum(tp[1:] + fn[1:], 0))
            return tensor(np.float32(terms.sum()))
        recall = ratio(tp, tp + fn)
        if self.curve == "ROC":
            x, y = ratio(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, ratio(tp, tp + fp)
        else:  # PRGAIN
            scale = ratio(tp + fn, tn + fp)
            x = np.maximum(np.where(tp == 0, 0.0, 1.0 - scale * ratio(fn, tp)), 0.0)
            y = np.where(tp == 0, 1.0, 1.0 - scale * ratio(fp, tp))
        heights = {"interpolation": (y[:-1] + y[1:]) / 2, "minoring": np.minimum(y[:-1], y[1:]),
                   "majoring": np.maximum(y[:-1], y[1:])}[self.summation_method]
        return tensor(np.float32(np.sum((x[:-1] - x[1:]) * heights)))


# Metrics by the names compile() accepts, with the class each stands for.
BY_NAME: dict[str, type[Metric]] = {
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "precision": Precision, "recall": Recall, "auc": AUC, "f1_score": F1Score,
    "fbeta_score": FBetaScore,
    "true_positives": TruePositives, "false_positives": FalsePositives,
    "true_negatives": TrueNegatives, "false_negatives": FalseNegatives,
}
# The accuracy family: counted by the engine's training step (argmax of the output against
# the label, or against the argmax of a target row).
ENGINE_ACCURACY = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def get(identifier: Any) -> Metric | str:
    """A Metric object, or one of ENGINE_ACCURACY's names for the accuracy the engine counts."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in ENGINE_ACCURACY:
            return identifier
        if identifier in BY_NAME:
            return BY_NAME[identifier](name=identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier, getattr(identifier, "__name__", "metric"))
    raise KerasValueError(f"metric {identifier!r} is not supported; use 'accuracy', one of "
                          f"{', '.join(BY_NAME)}, or a keras.metrics.Metric object")


def engine_counted(metric: Metric | str) -> bool:
    """Whether the training step's own hit count gives this metric exactly."""
    if isinstance(metric, str):
        return True
    return type(metric) in (CategoricalAccuracy, SparseCategoricalAccuracy)
