"""Loss, accuracy, confusion matrix and per-class scores."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from digitnet.errors import ConfigError
from digitnet.knobs import active


def loss_values(logits: jax.Array, targets: jax.Array, loss: str = "cross_entropy",
                smoothing: float = 0.0) -> jax.Array:
    """Per-example loss of softmax(logits) against integer labels (N,) or target rows (N, C)
    such as soft labels: cross-entropy, or the mean squared error of the probabilities.

    Label smoothing ε (cross-entropy only) moves each target toward uniform, (1 − ε)·t + ε/C, as
    Keras' label_smoothing does. Cross-entropy is linear in the target, so that loss is
    (1 − ε)·CE(t) + ε·mean(−log p), with no (N, C) target rows built for integer labels.

    One output unit (MLPSpec(output="sigmoid")) is a binary classifier: sigmoid(logits)
    against targets of 0/1 (or soft) values, (N,) or (N, 1)."""
    if logits.shape[-1] == 1:
        return binary_loss_values(logits, targets, loss, smoothing)
    if loss == "mse":
        if targets.ndim == 1:
            targets = jax.nn.one_hot(targets, logits.shape[-1])
        return jnp.mean((jax.nn.softmax(logits) - targets) ** 2, axis=-1)
    logp = jax.nn.log_softmax(logits)  # once: the gradient then takes one path through it
    if targets.ndim == 1:
        ce = -jnp.take_along_axis(logp, targets[:, None].astype(jnp.int32), axis=1)[:, 0]
    else:
        ce = -jnp.sum(targets * logp, axis=-1)
    if active(smoothing):
        ce = (1.0 - smoothing) * ce - smoothing * logp.mean(axis=-1)
    return ce


def class_weighted(losses: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    """Per-example losses times the weight of each example's class, as Keras' fit(class_weight=)
    (its class_weight_to_sample_weights): the class is an integer label, a target row's argmax,
    or a binary target rounded; a class without a weight weighs 1."""
    if targets.ndim == 2 and targets.shape[1] > 1:
        classes = jnp.argmax(targets, axis=-1)
    else:
        classes = jnp.round(targets.reshape(-1)).astype(jnp.int32)
    return losses * jnp.take(weights, classes, mode="fill", fill_value=1.0)


def binary_loss_values(logits: jax.Array, targets: jax.Array, loss: str,
                       smoothing: float) -> jax.Array:
    """loss_values for one sigmoid unit: binary cross-entropy on the logits (Keras' from_logits
    formula; label smoothing moves targets toward 1/2 as Keras' does), or the mean squared
    error of the probabilities."""
    t = targets.reshape(logits.shape).astype(jnp.float32)
    if loss == "mse":
        return jnp.mean((jax.nn.sigmoid(logits) - t) ** 2, axis=-1)
    if active(smoothing):
        t = t * (1.0 - smoothing) + 0.5 * smoothing
    return jnp.mean(-t * jax.nn.log_sigmoid(logits) - (1.0 - t) * jax.nn.log_sigmoid(-logits), axis=-1)


def hits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """How many examples are classified right: the argmax against the label (or a target row's
    argmax); for one sigmoid unit, Keras' binary accuracy: (sigmoid(z) > 0.5) equals the target."""
    if logits.shape[-1] == 1:
        t = targets.reshape(logits.shape)
        return jnp.sum((jax.nn.sigmoid(logits) > 0.5).astype(t.dtype) == t)
    return jnp.sum(jnp.argmax(logits, -1) == target_labels(targets))


def target_labels(targets: jax.Array) -> jax.Array:
    """The class of each example: the label itself, or the argmax of a target row."""
    return targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)


# One compiled program: called op by op, each of the loss's ops would compile on its own on
# first use, slowing every process' first evaluation (the same values either way).
compiled_loss_values = jax.jit(loss_values, static_argnames=("loss", "smoothing"))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = how many examples of class i were predicted as j."""
    idx = np.asarray(y_true, np.int64) * num_classes + np.asarray(y_pred, np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # (classes, classes), rows true, columns predicted

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(len(predicted)),
                         where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.zeros(len(actual)),
                         where=actual > 0)

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return np.divide(2 * p * r, p + r, out=np.zeros(len(p)), where=(p + r) > 0)

    def to_dict(self) -> dict:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "confusion_matrix": self.confusion.tolist(),
            "per_class": [
                {"class": c, "precision": float(p), "recall": float(r), "f1": float(f),
                 "support": int(s)}
                for c, (p, r, f, s) in enumerate(
                    zip(self.precision, self.recall, self.f1, self.confusion.sum(axis=1),
                        strict=True))
            ],
        }

    def table(self) -> str:
        lines = [f"loss {self.loss:.4f}   accuracy {self.accuracy:.4f}", "",
                 "class  precision  recall     f1  support"]
        for row in self.to_dict()["per_class"]:
            lines.append(f"{row['class']:>5}  {row['precision']:>9.4f}  {row['recall']:>6.4f}"
                         f"  {row['f1']:.4f}  {row['support']:>7}")
        return "\n".join(lines)


def evaluate_arrays(spec, params, stats, x: np.ndarray, y: np.ndarray,
                    loss: str = "cross_entropy", smoothing: float = 0.0) -> Evaluation:
    """Loss, accuracy and confusion matrix of a model on raw inputs x and integer labels y
    (N,), or target rows y (N, classes). The loss is `loss`, label-smoothed by `smoothing`."""
    from digitnet.model import predict_logits

    y = np.asarray(y)
    if spec.output_units == 1:
        y = binary_targets(y)
    logits = predict_logits(spec, params, stats, x)
    loss_value = float(np.asarray(compiled_loss_values(logits, y, loss=loss,
                                                          smoothing=smoothing)).mean())
    if spec.output_units == 1:
        # Class 1 where sigmoid(z) > 0.5; a hit where that equals the target, as Keras' binary
        # accuracy counts (a soft target is never hit); the confusion matrix rounds targets.
        pred = (logits[:, 0] > 0).astype(np.int64)
        return Evaluation(loss=loss_value, accuracy=float((pred == y).mean()),
                          confusion=confusion_matrix((y > 0.5).astype(np.int64), pred, 2))
    y = np.asarray(target_labels(y))
    pred = logits.argmax(-1)
    return Evaluation(loss=loss_value, accuracy=float((pred == y).mean()),
                      confusion=confusion_matrix(y, pred, spec.num_classes))


def binary_targets(y: np.ndarray) -> np.ndarray:
    """The targets (N,) of a binary model from targets (N,) or (N, 1) in [0, 1] (soft ones too),
    or one-hot rows (N, 2); anything else (a 10-class dataset's labels) is refused in one line."""
    if y.ndim == 2 and y.shape[1] == 2:
        y = y.argmax(axis=1)
    y = y.reshape(len(y), -1)[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.dtype.kind not in "biuf" or y.size and not ((y >= 0) & (y <= 1)).all():
        values = np.unique(y)[:10].tolist() if y.dtype.kind in "biuf" else y.dtype
        raise ConfigError(f"a binary model (one sigmoid unit) is evaluated on 0/1 labels; got "
                          f"labels of shape {y.shape} with values {values}")
    return y


def binary_labels(y: np.ndarray) -> np.ndarray:
    """binary_targets, as int labels: only 0 and 1 (no soft targets)."""
    y = binary_targets(y)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ConfigError("a binary model (one sigmoid unit) is evaluated on 0/1 labels; got soft "
                          "targets between them")
    return y.astype(np.int64)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the metric `name` is better: accuracies (accuracy,
    val_accuracy, test_accuracy, Keras' acc), not losses."""
    return "acc" in name
