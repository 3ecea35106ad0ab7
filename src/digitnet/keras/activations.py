"""`keras.activations`: the activation functions digitnet.keras runs, by Keras' names. Passing
one to a layer (`Dense(64, activation=keras.activations.relu)`) is the same as its name."""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras.backend import Tensor, tensor
from digitnet.keras.errors import KerasValueError
from digitnet.keras.layers import activate
from digitnet.spec import ACTIVATION_ALIASES, ACTIVATION_NAMES, activation_spelling


def _activation(name: str) -> Any:
    def fn(x: Any, **options: Any) -> Tensor:
        # Keras' options of the function: relu(x, negative_slope, max_value, threshold), elu(x, alpha)…
        return tensor(activate(activation_spelling(name, **options) if options else name,
                               np.asarray(x, np.float32)))
    fn.__name__ = name
    return fn


for _name in (*ACTIVATION_NAMES, "softmax"):
    globals()[_name] = _activation(_name)
for _alias, _name in ACTIVATION_ALIASES.items():
    globals()[_alias] = globals()[_name]

relu = globals()["relu"]  # the names a reader (and a linter) looks for
softmax = globals()["softmax"]


def get(identifier: Any) -> Any:
    if identifier is None:
        return globals()["linear"]
    if isinstance(identifier, str):
        if identifier not in (*ACTIVATION_NAMES, *ACTIVATION_ALIASES, "softmax"):
            raise KerasValueError(f"Could not interpret activation function identifier: {identifier}")
        return globals()[identifier]
    return identifier
