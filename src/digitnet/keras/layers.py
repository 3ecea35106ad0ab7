"""`keras.layers` for MLPs: Input, Flatten, Dense, Dropout.

A layer holds its configuration and, once its model is built, its weights as NumPy arrays;
training runs on the engine, over the whole model at once (see models.Sequential).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from digitnet.keras.errors import KerasValueError
from digitnet.model import ACTIVATIONS

# Keras' names for the initializers it shares with JAX: Keras name → (class, JAX factory name).
INITIALIZERS = {
    "glorot_uniform": ("GlorotUniform", "glorot_uniform"),
    "glorot_normal": ("GlorotNormal", "glorot_normal"),
    "he_uniform": ("HeUniform", "he_uniform"),
    "he_normal": ("HeNormal", "he_normal"),
    "lecun_uniform": ("LecunUniform", "lecun_uniform"),
    "lecun_normal": ("LecunNormal", "lecun_normal"),
    "zeros": ("Zeros", "zeros"),
    "ones": ("Ones", "ones"),
}
INITIALIZER_BY_CLASS = {cls: name for name, (cls, _) in INITIALIZERS.items()}
DTYPE_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                "registered_name": None}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def check_dtype(dtype: Any, where: str) -> None:
    """float32 only: given as a name, a DTypePolicy config, or not at all."""
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype not in (None, "float32"):
        raise KerasValueError(f"{where}: dtype {dtype!r} is not supported (digitnet runs float32)")


def initializer_name(value: Any, where: str) -> str:
    """'glorot_uniform', from a name or a Keras initializer config."""
    if isinstance(value, dict):
        cls = value.get("class_name")
        if cls not in INITIALIZER_BY_CLASS or value.get("registered_name"):
            raise KerasValueError(f"{where}: initializer {cls!r} is not supported; "
                                  f"supported: {', '.join(INITIALIZERS)}")
        return INITIALIZER_BY_CLASS[cls]
    if not isinstance(value, str) or snake_case(value) not in INITIALIZERS:
        raise KerasValueError(f"{where}: initializer {value!r} is not supported; "
                              f"supported: {', '.join(INITIALIZERS)}")
    return snake_case(value)


def shape_tuple(shape: Any, where: str) -> tuple[int, ...]:
    try:
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if all(isinstance(d, int | np.integer) and d > 0 for d in dims) and dims:
            return tuple(int(d) for d in dims)
    except TypeError:
        pass
    raise KerasValueError(f"{where}: input shape must be positive integers such as (784,), got {shape!r}")


class Layer:
    """What every layer shares: a name, an optional input shape, weights, a Keras config."""

    class_name: ClassVar[str] = "Layer"

    def __init__(self, *, name: str | None = None, input_shape: Any = None,
                 batch_input_shape: Any = None, dtype: Any = None, trainable: bool = True,
                 **unsupported: Any):
        kind = type(self).__name__
        if unsupported:
            raise KerasValueError(f"{kind}: unsupported argument(s) {', '.join(sorted(unsupported))}")
        if not trainable:
            raise KerasValueError(f"{kind}: trainable=False (frozen layers) is not supported")
        check_dtype(dtype, kind)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        self.input_shape = shape_tuple(input_shape, kind) if input_shape is not None else None
        self.auto_named = name is None
        self.name = name if name is not None else snake_case(self.class_name)

    def get_weights(self) -> list[np.ndarray]:
        return []

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if len(weights):
            raise KerasValueError(f"layer {self.name!r} has no weights, got {len(weights)} arrays")

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": True, "dtype": DTYPE_POLICY}

    def __repr__(self) -> str:
        return f"<{self.class_name} name={self.name}>"


class InputLayer(Layer):
    """The model's input: `Input((784,))` as a Sequential's first entry."""

    class_name = "InputLayer"

    def __init__(self, shape: Any = None, batch_size: int | None = None, dtype: Any = None,
                 name: str | None = None, batch_shape: Any = None, sparse: bool = False,
                 ragged: bool = False, optional: bool = False, **kwargs: Any):
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if sparse or ragged or optional:
            raise KerasValueError("InputLayer: sparse, ragged and optional inputs are not supported")
        del batch_size  # any batch size works
        super().__init__(name=name, input_shape=shape, dtype=dtype, **kwargs)
        if self.input_shape is None:
            raise KerasValueError("Input needs a shape, e.g. Input(shape=(784,))")

    def get_config(self) -> dict[str, Any]:
        return {"batch_shape": [None, *self.input_shape], "dtype": "float32", "sparse": False,
                "ragged": False, "name": self.name, "optional": False}


def Input(shape: Any = None, batch_size: int | None = None, dtype: Any = None,  # noqa: N802
          name: str | None = None, **kwargs: Any) -> InputLayer:
    """`keras.Input(shape)`: here it returns the InputLayer, for use in Sequential([...])."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, **kwargs)


class Flatten(Layer):
    """Turns each (28, 28) image into 784 values; only as the first layer of an MLP."""

    class_name = "Flatten"

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        if data_format not in (None, "channels_last"):
            raise KerasValueError(f"Flatten: data_format={data_format!r} is not supported")
        super().__init__(**kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": "channels_last"}


class Dropout(Layer):
    """Zeroes a fraction `rate` of the previous layer's outputs while training."""

    class_name = "Dropout"

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any):
        if noise_shape is not None:
            raise KerasValueError("Dropout: noise_shape is not supported")
        if not 0.0 <= float(rate) < 1.0:
            raise KerasValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": None}


class Dense(Layer):
    """A fully connected layer: activation(x @ kernel + bias)."""

    class_name = "Dense"

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, input_dim: int | None = None, **kwargs: Any):
        if input_dim is not None:  # Keras 2's spelling of input_shape=(input_dim,)
            kwargs.setdefault("input_shape", (input_dim,))
        super().__init__(**kwargs)
        if not isinstance(units, int | np.integer) or units < 1:
            raise KerasValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units = int(units)
        activation = "linear" if activation is None else activation
        if not isinstance(activation, str) or activation not in (*ACTIVATIONS, "softmax"):
            raise KerasValueError(
                f"Dense: activation {activation!r} is not supported; "
                f"supported: {', '.join((*ACTIVATIONS, 'softmax'))}")
        self.activation = activation
        if not use_bias:
            raise KerasValueError("Dense: use_bias=False is not supported (every Dense has a bias)")
        for option, value in (("kernel_regularizer", kernel_regularizer),
                              ("bias_regularizer", bias_regularizer),
                              ("activity_regularizer", activity_regularizer),
                              ("kernel_constraint", kernel_constraint),
                              ("bias_constraint", bias_constraint)):
            if value is not None:
                raise KerasValueError(f"Dense: {option} is not supported")
        self.kernel_initializer = initializer_name(kernel_initializer, "Dense")
        if initializer_name(bias_initializer, "Dense") != "zeros":
            raise KerasValueError("Dense: only bias_initializer='zeros' is supported")
        self.kernel: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def get_weights(self) -> list[np.ndarray]:
        if self.kernel is None or self.bias is None:
            return []
        return [np.array(self.kernel), np.array(self.bias)]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if self.kernel is None or self.bias is None:
            raise KerasValueError(f"layer {self.name!r} is not built yet; build the model first")
        if len(weights) != 2:
            raise KerasValueError(f"layer {self.name!r} expects 2 weights (kernel, bias), got {len(weights)}")
        new = [np.asarray(w, np.float32) for w in weights]
        for old, w, what in ((self.kernel, new[0], "kernel"), (self.bias, new[1], "bias")):
            if w.shape != old.shape:
                raise KerasValueError(f"layer {self.name!r}: {what} shape {w.shape} does not match "
                                      f"{old.shape}")
        self.kernel, self.bias = new

    def get_config(self) -> dict[str, Any]:
        cls, _ = INITIALIZERS[self.kernel_initializer]
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": True,
                "kernel_initializer": {"module": "keras.initializers", "class_name": cls,
                                       "config": {} if cls in ("Zeros", "Ones") else {"seed": None},
                                       "registered_name": None},
                "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                     "config": {}, "registered_name": None},
                "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
                "bias_constraint": None}


# The layers a saved model may name, by Keras class name.
LAYER_CLASSES: dict[str, type[Layer]] = {c.class_name: c for c in (InputLayer, Flatten, Dropout, Dense)}
