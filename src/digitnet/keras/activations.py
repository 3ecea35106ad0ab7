"""`keras.activations`: the activation functions digitnet.keras runs, by Keras' names. Passing
one to a layer (`Dense(64, activation=keras.activations.relu)`) is the same as its name."""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras.backend import Tensor, tensor
from digitnet.keras.layers import activate


def _activation(name: str) -> Any:
    def fn(x: Any) -> Tensor:
        return tensor(activate(name, np.asarray(x, np.float32)))
    fn.__name__ = name
    return fn


relu, sigmoid, tanh, gelu, elu, selu, softmax, linear = (
    _activation(n) for n in ("relu", "sigmoid", "tanh", "gelu", "elu", "selu", "softmax", "linear"))
leaky_relu = _activation("leaky_relu")


def get(identifier: Any) -> Any:
    return globals()[identifier] if isinstance(identifier, str) else identifier
