"""Seeing inside a model: which pixels pushed an answer (gradient × input), what the first
layer's units look for (their weights as images), how each hidden layer responds per class.

Gradient × input is taken with respect to the raw pixels the model was given (0–255, the
28×28 image it saw), so each pixel's value is its first-order share of the chosen class's
logit against a blank (black, 0) image; positive pixels pushed towards that class.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from digitnet.errors import ConfigError
from digitnet.model import MLPSpec, forward, layer_outputs


@lru_cache(maxsize=8)
def _grad_fn(spec: MLPSpec):
    def logit(x, params, stats, c):
        out = forward(params, stats, x[None], spec)[0]
        if spec.output_units == 1:  # one sigmoid unit z: its log-odds for class 1, -z for 0
            return jnp.where(c == 1, out[0], -out[0])
        return out[c]

    grad = jax.vmap(jax.grad(logit), in_axes=(0, None, None, 0))
    return jax.jit(lambda x, params, stats, c: grad(x, params, stats, c) * x)


def gradient_x_input(model: Any, x: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), attributions (N, *input_shape)) for raw images x; each attribution is the
    gradient of the class's logit times the pixel, for `labels` or else the predicted class."""
    xs = model._inputs(x).astype(np.float32)
    if labels is None:
        labels = model.predict(xs)
    labels = np.asarray(labels, np.int32).reshape(-1)
    attr = _grad_fn(model.spec)(jnp.asarray(xs), model.params, model.stats, jnp.asarray(labels))
    return labels, np.asarray(attr).reshape(len(xs), *model.spec.input_shape)


def normalized(attr: np.ndarray) -> np.ndarray:
    """Each map scaled to [-1, 1] by its largest magnitude (all zeros stays zeros)."""
    peak = np.abs(attr).reshape(len(attr), -1).max(axis=1)
    return attr / np.where(peak > 0, peak, 1).reshape(-1, *([1] * (attr.ndim - 1)))


def text_map(attr: np.ndarray) -> str:
    """One attribution map (H, W) as text, two characters a pixel: "#" and "+" pushed towards
    the answer (strongly, weakly), "-" and "=" away from it, "·" a little either way, blank
    nothing."""
    side = int(round(np.sqrt(attr.size)))
    if attr.ndim == 1 and side * side == attr.size:  # a model of flat inputs (Keras' (784,))
        attr = attr.reshape(side, side)
    if attr.ndim != 2:
        raise ConfigError(f"cannot draw an attribution map of shape {attr.shape} as an image")
    a = normalized(attr[None])[0]
    rows = []
    for row in a:
        chars = []
        for v in row:
            if v == 0:
                c = " "
            elif v >= 0.5:
                c = "#"
            elif v >= 0.15:
                c = "+"
            elif v > -0.15:
                c = "·"
            elif v > -0.5:
                c = "-"
            else:
                c = "="
            chars.append(c * 2)
        rows.append("".join(chars).rstrip())
    while rows and not rows[-1]:
        rows.pop()
    while rows and not rows[0]:
        rows.pop(0)
    return "\n".join(rows)


def first_layer_images(model: Any) -> np.ndarray:
    """The first layer's kernel as one image per unit: (units, *input_shape)."""
    kernel = np.asarray(model.params[0]["kernel"])
    return kernel.T.reshape(kernel.shape[1], *model.spec.input_shape)


def mean_hidden_per_class(model: Any, x: np.ndarray, y: np.ndarray,
                          batch: int = 2000) -> list[np.ndarray]:
    """For each hidden layer, the mean activation of each unit over each class's images:
    a list of (classes, units) arrays."""
    fn = jax.jit(lambda p, s, xb: layer_outputs(p, s, xb, model.spec)[1:])
    k = model.spec.num_classes
    sums = [np.zeros((k, h), np.float64) for h in model.spec.hidden]
    onehot = np.eye(k)[np.asarray(y)]
    for i in range(0, len(x), batch):
        outs = fn(model.params, model.stats, jnp.asarray(x[i : i + batch]))
        for acc, h in zip(sums, outs, strict=True):
            acc += onehot[i : i + batch].T @ np.asarray(h, np.float64)
    counts = np.maximum(onehot.sum(axis=0), 1)[:, None]
    return [acc / counts for acc in sums]
