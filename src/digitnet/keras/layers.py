"""`keras.layers` for MLPs: Input, Flatten, Dense, BatchNormalization, Dropout, Activation, Softmax,
ReLU, LeakyReLU, ELU, and Rescaling and Normalization at the front.

A layer holds its configuration and, once its model is built, its weights as NumPy arrays;
training runs on the engine, over the whole model at once (see models.Model). Calling a layer
on a `KerasTensor` (from `keras.Input`) records a step of a functional model; calling it on an
array computes its output. Layers outside an MLP (convolutions, recurrent layers, merges) are
refused by name when they are made.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import jax
import numpy as np

from digitnet.errors import ConfigError
from digitnet.keras import constraints, initializers, regularizers
from digitnet.keras.backend import Variable, tensor
from digitnet.keras.errors import KerasValueError
from digitnet.model import activation_fn, batchnorm_affine
from digitnet.spec import (
    ACTIVATION_ALIASES,
    ACTIVATION_NAMES,
    BATCHNORM_WEIGHTS,
    activation_spelling,
    parse_activation,
)

DTYPE_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                "registered_name": None}


# Options a layer config may carry that change nothing as long as they are off.
INERT_OPTIONS = ("quantization_config", "lora_rank", "lora_alpha", "activity_regularizer")


def snake_case(name: str) -> str:
    """Keras' to_snake_case: ReLU → re_lu, InputLayer → input_layer, MyMLP → my_mlp."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def check_dtype(dtype: Any, where: str) -> None:
    """float32 only: given as a name, a DTypePolicy config, or not at all."""
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype not in (None, "float32"):
        raise KerasValueError(f"{where}: dtype {dtype!r} is not supported (digitnet runs float32)")


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
            raise KerasValueError(f"Unrecognized keyword arguments passed to {kind}: {unsupported}")
        if not trainable:
            raise KerasValueError(f"{kind}: trainable=False (frozen layers) is not supported")
        check_dtype(dtype, kind)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        self.input_shape = shape_tuple(input_shape, kind) if input_shape is not None else None
        self.auto_named = name is None
        self.name = name if name is not None else unique_name(snake_case(self.class_name))

    def get_weights(self) -> list[np.ndarray]:
        return []

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if len(weights):
            raise KerasValueError(f"layer {self.name!r} has no weights, got {len(weights)} arrays")

    @property
    def weights(self) -> list[Any]:
        return self.get_weights()

    @property
    def trainable_weights(self) -> list[Any]:
        return self.get_weights()

    @property
    def non_trainable_weights(self) -> list[Any]:
        return []

    @property
    def variables(self) -> list[Any]:
        return self.weights

    @property
    def trainable_variables(self) -> list[Any]:
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list[Any]:
        return self.non_trainable_weights

    @property
    def built(self) -> bool:
        return True

    @property
    def trainable(self) -> bool:
        """Always True: every weight trains (Normalization's statistics are not weights that
        train, as in Keras). Freezing a layer is refused rather than silently ignored."""
        return True

    @trainable.setter
    def trainable(self, value: Any) -> None:
        if not value:
            raise KerasValueError(f"{type(self).__name__}: trainable=False (frozen layers) is not supported")

    def output_shape_for(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """The output shape (batch first) for inputs of `shape`."""
        return shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def __call__(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        """On a KerasTensor: the next step of a functional model. On an array: the output."""
        if kwargs:
            raise TypeError(f"{type(self).__name__}.call() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        if isinstance(inputs, list | tuple) and any(isinstance(t, KerasTensor) for t in inputs):
            raise KerasValueError(f"{self.class_name} layer {self.name!r} called on {len(inputs)} "
                                  "tensors: layers with several inputs (a branching graph) are not "
                                  "supported; digitnet.keras runs chains of layers (an MLP)")
        if isinstance(inputs, KerasTensor):
            return KerasTensor(self.output_shape_for(inputs.shape), self, inputs)
        x = np.asarray(inputs, np.float32)
        if x.ndim < 2:
            raise KerasValueError(f"{self.class_name} layer {self.name!r} expects a batch "
                                  f"(N, features), got shape {x.shape}")
        return tensor(self.forward(x))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": True, "dtype": DTYPE_POLICY}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """The layer get_config() describes (options that are off are dropped, as in files)."""
        return cls(**{k: v for k, v in config.items() if not (k in INERT_OPTIONS and v is None)})

    def __repr__(self) -> str:
        return f"<{self.class_name} name={self.name}>"


class LayerVariable(Variable):
    """One of a layer's weight arrays as a Keras variable: `.numpy()`, `.assign(new)`, `.path`."""

    def __init__(self, layer: Layer, attr: str, name: str):
        self.layer, self.attr, self.name, self.trainable = layer, attr, name, True
        self.scope = ""  # the Sequential model the layer was built in, as Keras' path has it

    @property
    def path(self) -> str:
        return f"{self.scope}{self.layer.name}/{self.name}"

    @property
    def _value(self) -> np.ndarray:  # type: ignore[override]
        return getattr(self.layer, self.attr)

    @_value.setter
    def _value(self, value: Any) -> None:
        setattr(self.layer, self.attr, np.asarray(value, np.float32))

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"


class WeightAttribute:
    """`layer.kernel` / `layer.bias` as Keras has them: a variable over the layer's own array
    (`layer.bias.assign([0.0])`, `.numpy()`), which the model trains and saves; None before the
    layer is built. Assigning an array sets it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.store = name, "_" + name

    def __get__(self, layer: Any, owner: type | None = None) -> Any:
        if layer is None:
            return self
        if getattr(layer, self.store) is None or (self.name == "bias" and not layer.use_bias):
            return None  # unbuilt, or a Dense(use_bias=False)
        return LayerVariable(layer, self.store, self.name)

    def __set__(self, layer: Any, value: Any) -> None:
        setattr(layer, self.store, None if value is None else np.asarray(value, np.float32))


class KerasTensor:
    """A symbolic output of the functional API: its shape (batch first, None) and the layer
    call that made it (`layer(parent)`); an Input's tensor has no parent."""

    def __init__(self, shape: tuple[Any, ...], layer: Layer, parent: KerasTensor | None = None):
        self.shape, self.layer, self.parent = tuple(shape), layer, parent
        self.dtype = "float32"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def chain(self) -> list[Layer]:
        """The layers from the Input to this tensor, the InputLayer first."""
        out, t = [], self
        while t is not None:
            out.append(t.layer)
            t = t.parent
        return out[::-1]

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise KerasValueError("a symbolic KerasTensor has no values: only layer calls can be "
                              "applied to it (digitnet.keras runs chains of layers)")

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise KerasValueError("arithmetic on symbolic tensors is not supported: a functional "
                              "model (or a subclassed model's call) must be a chain of layer calls")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __matmul__ = __getitem__ = __neg__ = __pow__ = _refuse

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype=float32, name={self.layer.name}>"


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


    @property
    def output(self) -> KerasTensor:
        return KerasTensor((None, *self.input_shape), self)


def Input(shape: Any = None, batch_size: int | None = None, dtype: Any = None,  # noqa: N802
          name: str | None = None, **kwargs: Any) -> KerasTensor:
    """`keras.Input(shape)`: the symbolic input of a functional model (or a Sequential's first
    entry)."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, **kwargs).output


class Flatten(Layer):
    """Turns each (28, 28) image into 784 values; only as the first layer of an MLP."""

    class_name = "Flatten"

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        if data_format not in (None, "channels_last"):
            raise KerasValueError(f"Flatten: data_format={data_format!r} is not supported")
        super().__init__(**kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": "channels_last"}

    def output_shape_for(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (shape[0], int(np.prod(shape[1:])))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)


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

    def __call__(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        if training and not isinstance(inputs, KerasTensor):
            raise KerasValueError("Dropout called with training=True outside fit is not supported")
        return super().__call__(inputs, **kwargs)


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
        self.activation = ActivationFunction(activation_name(activation, "Dense"))
        # An activation layer given as the activation is saved as that layer, as Keras does.
        self.activation_layer = activation if isinstance(activation, Activation) else None
        if isinstance(activation, dict):
            self.activation_layer = LAYER_CLASSES[activation["class_name"]](
                **(activation.get("config") or {}))
        if not isinstance(use_bias, bool | np.bool_):
            raise KerasValueError(f"Dense: use_bias must be True or False, got {use_bias!r}")
        # Without a bias the layer keeps a zero one for the engine, which never adds it; Keras'
        # weights, files and counts have only the kernel.
        self.use_bias = bool(use_bias)
        for option, value in (("activity_regularizer", activity_regularizer),
                              ("bias_constraint", bias_constraint)):
            if value is not None:
                raise KerasValueError(f"Dense: {option} is not supported")
        self.kernel_constraint = constraints.get(kernel_constraint, "Dense kernel_constraint")
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "Dense kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "Dense bias_regularizer")
        self.kernel_initializer = initializers.get(kernel_initializer, "Dense kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, "Dense bias_initializer")
        self._kernel: np.ndarray | None = None
        self._bias: np.ndarray | None = None

    kernel = WeightAttribute()
    bias = WeightAttribute()

    def get_weights(self) -> list[np.ndarray]:
        if self._kernel is None or self._bias is None:
            return []
        return [np.array(self._kernel), np.array(self._bias)][:1 + self.use_bias]

    @property
    def weights(self) -> list[Any]:
        """kernel and bias as Keras variables (reading and assigning the layer's arrays)."""
        if self._kernel is None:
            return []
        return [self.kernel, self.bias][:1 + self.use_bias]

    @property
    def weight_count(self) -> int:
        """How many arrays the layer's weights are: kernel and bias, or the kernel alone."""
        return 1 + self.use_bias

    @property
    def trainable_weights(self) -> list[Any]:
        return self.weights

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if self._kernel is None or self._bias is None:
            raise KerasValueError(f"layer {self.name!r} is not built yet; build the model first")
        if len(weights) != self.weight_count:
            what = "(kernel, bias)" if self.use_bias else "(kernel: use_bias=False)"
            raise KerasValueError(f"layer {self.name!r} expects {self.weight_count} weights {what}, "
                                  f"got {len(weights)}")
        new = [np.asarray(w, np.float32) for w in weights]
        if not self.use_bias:
            new.append(np.zeros_like(self._bias))
        for old, w, what in ((self._kernel, new[0], "kernel"), (self._bias, new[1], "bias")):
            if w.shape != old.shape:
                raise KerasValueError(f"layer {self.name!r}: {what} shape {w.shape} does not match "
                                      f"{old.shape}")
        self.kernel, self.bias = new
        self.provisional = False  # the user's weights stay when the model is completed

    @property
    def built(self) -> bool:
        return self._kernel is not None

    def build(self, input_shape: Any) -> None:
        """Create the kernel and bias for inputs with input_shape[-1] features."""
        fan_in = int(tuple(input_shape)[-1])
        if self._kernel is not None and self._kernel.shape[0] == fan_in:
            return
        self.kernel, self.bias = self.initial_weights(self.kernel_initializer.key(), fan_in)

    def initial_weights(self, key: jax.Array, fan_in: int,
                        kernel: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(kernel, bias) as the layer's initializers draw them (`kernel`: one drawn already);
        an initializer's own seed wins over `key`."""
        init = self.kernel_initializer
        if kernel is None:
            kernel = init.draw(init.key() if init.options.get("seed") is not None else key,
                               (fan_in, self.units))
        bias_init = self.bias_initializer
        bias_key = (bias_init.key() if bias_init.options.get("seed") is not None
                    else jax.random.fold_in(key, 1))
        bias = bias_init.draw(bias_key, (self.units,)) if self.use_bias else np.zeros(self.units, np.float32)
        return np.asarray(kernel, np.float32), bias

    def output_shape_for(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(shape) != 2:
            raise KerasValueError(f"Dense layer {self.name!r} called on inputs of shape {shape}: "
                                  "digitnet.keras runs Dense layers on flat inputs (None, features); "
                                  "add a Flatten() first")
        return (shape[0], self.units)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2:
            raise KerasValueError(f"Dense layer {self.name!r} expects inputs (N, features), got {x.shape}")
        self.build(x.shape)
        return activate(self.activation, x @ self._kernel + self._bias)

    def get_config(self) -> dict[str, Any]:
        layer = self.activation_layer
        activation = ({"module": "keras.layers", "class_name": layer.class_name,
                       "config": layer.get_config(), "registered_name": None}
                      if layer is not None else self.activation)
        return {**super().get_config(), "units": self.units, "activation": activation,
                "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer.serialize(),
                "bias_initializer": self.bias_initializer.serialize(),
                "kernel_regularizer": self.kernel_regularizer and self.kernel_regularizer.serialize(),
                "bias_regularizer": self.bias_regularizer and self.bias_regularizer.serialize(),
                "kernel_constraint": self.kernel_constraint and self.kernel_constraint.serialize(),
                "bias_constraint": None}

    def penalties(self) -> dict[str, float]:
        """The spec's penalty factors of this layer (kernel_l1 …), 0 where it has none."""
        out = {}
        for what, reg in (("kernel", self.kernel_regularizer),
                          ("bias", self.bias_regularizer if self.use_bias else None)):
            out[f"{what}_l1"] = reg.l1 if reg else 0.0
            out[f"{what}_l2"] = reg.l2 if reg else 0.0
        out["kernel_max_norm"] = float(self.kernel_constraint.max_value) if self.kernel_constraint else 0.0
        return out


def activate(name: str, x: np.ndarray) -> np.ndarray:
    """An activation by Keras' name, on the host (the engine compiles the same functions)."""
    if name == "softmax":
        return np.asarray(jax.nn.softmax(x, axis=-1))
    return np.asarray(activation_fn(name)(x))


SUPPORTED_ACTIVATIONS = ", ".join((*ACTIVATION_NAMES, *ACTIVATION_ALIASES, "softmax"))


class ActivationFunction(str):
    """A layer's activation as Keras holds it, a function (`layer.activation(x)`,
    `layer.activation.__name__`), that is also the spec's spelling of it ('relu',
    'leaky_relu(negative_slope=0.1)')."""

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return self.split("(")[0]

    def __call__(self, x: Any) -> Any:
        return tensor(activate(str(self), np.asarray(x, np.float32)))


def activation_name(value: Any, where: str) -> str:
    """The spec's spelling of an activation given as Keras takes it: a name ('swish' is
    'silu'), a keras.activations function, or an activation layer (LeakyReLU(0.1))."""
    name = "linear" if value is None else value
    if callable(name) and getattr(name, "__module__", "") == "digitnet.keras.activations":
        name = name.__name__  # keras.activations.relu, given as a function
    if isinstance(name, dict) and name.get("module") == "keras.layers" and name.get(
            "class_name") in ("LeakyReLU", "ELU", "ReLU", "Activation") and not name.get("registered_name"):
        name = LAYER_CLASSES[name["class_name"]](**(name.get("config") or {}))  # as Keras saves one
    if isinstance(name, Activation):
        return name.activation
    if isinstance(name, str) and name == "softmax":
        return name
    if isinstance(name, str) and "(" not in name:
        try:
            base, options = parse_activation(name)
            return activation_spelling(base, **options)
        except ConfigError:
            pass
    raise KerasValueError(f"{where}: activation {value!r} is not supported; "
                          f"supported: {SUPPORTED_ACTIVATIONS}")


class Activation(Layer):
    """An activation function as a layer: Activation('relu'), Activation('softmax')."""

    class_name = "Activation"

    def __init__(self, activation: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = ActivationFunction(activation_name(activation, "Activation"))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return activate(self.activation, x)

    def get_config(self) -> dict[str, Any]:
        own = self.layer_options()
        return {**super().get_config(), **(own if own is not None else {"activation": self.activation})}

    def layer_options(self) -> dict[str, Any] | None:
        """A specific activation layer's own options, which its config holds instead of the
        activation's name (ReLU: max_value, negative_slope, threshold)."""
        return dict(self.options) if getattr(self, "options", None) is not None else None

    def use_options(self, name: str, **options: Any) -> None:
        """Run activation `name` with these options (and keep them as the layer's, by name)."""
        self.options = options
        self.activation = ActivationFunction(activation_spelling(name, **options))
        for key, value in options.items():
            setattr(self, key, value)


class Softmax(Activation):
    """softmax over the last axis: turns a model's logits into probabilities."""

    class_name = "Softmax"

    def __init__(self, axis: int = -1, **kwargs: Any):
        if axis != -1:
            raise KerasValueError(f"Softmax: axis={axis} is not supported (only the last axis)")
        super().__init__("softmax", **kwargs)
        self.options = {"axis": -1}


def non_negative(kind: str, option: str, value: Any, none_ok: bool = False) -> float | None:
    """An activation layer's option as Keras checks it: a number ≥ 0 (None where allowed)."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not value >= 0:
        never = "" if none_ok else "None or "
        raise KerasValueError(f"{option} of a {kind} layer cannot be {never}a negative value. "
                              f"Received: {option}={value}")
    return float(value)


class ReLU(Activation):
    """Keras' ReLU layer: max(x, 0), or with its options, leaky below `threshold` and clipped
    at `max_value`."""

    class_name = "ReLU"

    def __init__(self, max_value: Any = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 **kwargs: Any):
        options = {"max_value": non_negative("ReLU", "max_value", max_value, none_ok=True),
                   "negative_slope": non_negative("ReLU", "negative_slope", negative_slope),
                   "threshold": non_negative("ReLU", "threshold", threshold)}
        super().__init__("relu", **kwargs)
        self.use_options("relu", **options)


class LeakyReLU(Activation):
    """x, or negative_slope·x below 0 (Keras 3's default slope 0.3; `alpha=` is its old name)."""

    class_name = "LeakyReLU"

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any):
        if "alpha" in kwargs:  # as Keras 3: the old name still works, with a warning
            import warnings

            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        if negative_slope is None or isinstance(negative_slope, bool) or negative_slope < 0:
            raise KerasValueError("The negative_slope value of a Leaky ReLU layer cannot be None or "
                                  f"negative value. Expected a float. Received: negative_slope="
                                  f"{negative_slope}")
        super().__init__("leaky_relu", **kwargs)
        self.use_options("leaky_relu", negative_slope=float(negative_slope))


class ELU(Activation):
    """x, or alpha·(exp(x) - 1) below 0."""

    class_name = "ELU"

    def __init__(self, alpha: float = 1.0, **kwargs: Any):
        if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.number):
            raise KerasValueError(f"ELU: alpha must be a number, got {alpha!r}")
        super().__init__("elu", **kwargs)
        self.use_options("elu", alpha=float(alpha))


class Rescaling(Layer):
    """inputs · scale + offset, as the first layers of a model (`Rescaling(1./255)`): compiled
    into the engine's input transform."""

    class_name = "Rescaling"

    def __init__(self, scale: Any, offset: Any = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        for option, value in (("scale", scale), ("offset", offset)):
            if (isinstance(value, bool) or not isinstance(value, int | float | np.number)
                    or not np.isfinite(value)):
                raise KerasValueError(f"Rescaling: {option} must be a finite number (per-channel "
                                      f"arrays are not supported), got {value!r}")
        if scale == 0:
            raise KerasValueError("Rescaling: scale=0 makes every input the same")
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * np.float32(self.scale) + np.float32(self.offset)

    def affine(self) -> tuple[float, float]:
        """(a, b) with output = input · a + b."""
        return self.scale, self.offset

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Normalization(Layer):
    """(x - mean) / max(√variance, 1e-7) per feature of the last axis (or over all values,
    axis=None), from given values or from `adapt(data)`; as the first layers of a model it is
    compiled into the engine's input transform. Adapted statistics are its three weights (mean,
    variance, count), not trained, saved in Keras' files as Keras saves them."""

    class_name = "Normalization"
    EPSILON = 1e-7  # Keras' backend.epsilon()

    def __init__(self, axis: Any = -1, mean: Any = None, variance: Any = None, invert: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        axis = () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        if axis not in ((-1,), ()):
            raise KerasValueError(f"Normalization: axis={axis} is not supported (only -1, the last "
                                  "axis, or None)")
        if invert:
            raise KerasValueError("Normalization: invert=True is not supported")
        if (mean is None) != (variance is None):
            raise KerasValueError("When setting values directly, both `mean` and `variance` must be "
                                  f"set. Received: mean={mean} and variance={variance}")
        self.axis = axis
        self.input_mean, self.input_variance = mean, variance
        self.mean: np.ndarray | None = None
        self.variance: np.ndarray | None = None
        self.count: np.ndarray | None = None
        if mean is not None:
            self.mean = np.asarray(mean, np.float32).reshape(-1)
            self.variance = np.asarray(variance, np.float32).reshape(-1)
            if self.mean.shape != self.variance.shape or (axis == () and self.mean.size != 1):
                raise KerasValueError("Normalization: mean and variance must have the same shape, one "
                                      "value per feature of the last axis (one value for axis=None)")

    def adapt(self, data: Any, batch_size: Any = None, steps: Any = None) -> None:
        """The mean and variance of `data` (N, …), per feature of the last axis."""
        x = np.asarray(data, np.float64)
        if x.ndim < 1 or x.size == 0 or not np.isfinite(x).all():
            raise KerasValueError("Normalization.adapt expects a non-empty array of finite numbers")
        flat = x.reshape(-1, x.shape[-1]) if self.axis else x.reshape(-1, 1)
        self.mean = flat.mean(axis=0).astype(np.float32)
        self.variance = flat.var(axis=0).astype(np.float32)
        self.count = np.array(0, np.int32)  # Keras 3.15.1 leaves it at 0 after adapt on an array
        self.input_mean = self.input_variance = None

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.variance is None:
            raise KerasValueError(f"Normalization layer {self.name!r} has no statistics: call "
                                  "adapt(data) or give mean and variance")
        return self.mean, self.variance

    def forward(self, x: np.ndarray) -> np.ndarray:
        mean, var = self._stats()
        return (x - mean) / np.maximum(np.sqrt(var), np.float32(self.EPSILON))

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) with output = input · a + b, per feature of the last axis."""
        mean, var = (v.astype(np.float64) for v in self._stats())
        a = 1.0 / np.maximum(np.sqrt(var), self.EPSILON)
        return a, -mean * a

    def get_weights(self) -> list[np.ndarray]:
        if self.input_mean is not None or self.mean is None:
            return []  # given values are its config, not weights (as in Keras)
        count = self.count if self.count is not None else np.array(0, np.int32)
        return [np.array(self.mean), np.array(self.variance), np.array(count)]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if len(weights) != 3:
            raise KerasValueError(f"layer {self.name!r} expects 3 weights (mean, variance, count), "
                                  f"got {len(weights)}")
        mean, var = (np.asarray(w, np.float32).reshape(-1) for w in weights[:2])
        if self.mean is not None and (mean.shape != self.mean.shape or var.shape != mean.shape):
            raise KerasValueError(f"layer {self.name!r}: mean/variance of shape {mean.shape} do not "
                                  f"match {self.mean.shape}")
        self.mean, self.variance = mean, var
        self.count = np.asarray(weights[2]).astype(np.int32)
        self.input_mean = self.input_variance = None

    @property
    def non_trainable_weights(self) -> list[Any]:
        return self.get_weights()

    @property
    def trainable_weights(self) -> list[Any]:
        return []

    def get_config(self) -> dict[str, Any]:
        given = self.input_mean is not None
        return {**super().get_config(), "axis": list(self.axis), "invert": False,
                "mean": np.asarray(self.input_mean).tolist() if given else None,
                "variance": np.asarray(self.input_variance).tolist() if given else None}


class BatchNormalization(Layer):
    """Keras' BatchNormalization after a Dense layer (before or after its activation): in
    training the batch's mean and variance normalise each unit and moving averages of them
    follow (momentum); in inference the moving averages do; then gamma scales and beta shifts.
    It trains inside the engine with its Dense layer (MLPSpec.batchnorm, model.batch_norm)."""

    class_name = "BatchNormalization"
    WEIGHTS = tuple(name for name, _ in BATCHNORM_WEIGHTS)

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, renorm: bool = False, renorm_clipping: Any = None,
                 renorm_momentum: float = 0.99, synchronized: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if axis not in (-1, 1):
            raise KerasValueError(f"BatchNormalization: axis={axis!r} is not supported (only -1: "
                                  "the units of the Dense layer before it)")
        for option, value, default in (("center", center, True), ("scale", scale, True),
                                       ("renorm", renorm, False), ("synchronized", synchronized, False),
                                       ("beta_regularizer", beta_regularizer, None),
                                       ("gamma_regularizer", gamma_regularizer, None),
                                       ("beta_constraint", beta_constraint, None),
                                       ("gamma_constraint", gamma_constraint, None),
                                       ("renorm_clipping", renorm_clipping, None)):
            if value != default:
                raise KerasValueError(f"BatchNormalization: {option}={value!r} is not supported")
        momentum, epsilon = float(momentum), float(epsilon)
        if not 0.0 <= momentum <= 1.0 or not epsilon > 0.0:
            raise KerasValueError(f"BatchNormalization: momentum must be in [0, 1] and epsilon > 0, "
                                  f"got {momentum}, {epsilon}")
        self.axis, self.momentum, self.epsilon = -1, momentum, epsilon
        self.renorm_momentum = float(renorm_momentum)
        self.initializers = {name: initializers.get(value, f"BatchNormalization {name}_initializer")
                             for name, value in (("gamma", gamma_initializer), ("beta", beta_initializer),
                                                 ("moving_mean", moving_mean_initializer),
                                                 ("moving_variance", moving_variance_initializer))}
        for name in self.WEIGHTS:
            setattr(self, "_" + name, None)

    gamma = WeightAttribute()
    beta = WeightAttribute()
    moving_mean = WeightAttribute()
    moving_variance = WeightAttribute()

    @property
    def built(self) -> bool:
        return self._gamma is not None

    def build(self, input_shape: Any) -> None:
        """Create the four weights for inputs with input_shape[-1] units (Keras' initializers)."""
        units = int(tuple(input_shape)[-1])
        if self._gamma is not None and self._gamma.shape == (units,):
            return
        for name in self.WEIGHTS:
            init = self.initializers[name]
            seeded = init.options.get("seed") is not None  # ones and zeros need no draw
            setattr(self, name, init.draw(init.key() if seeded else jax.random.key(0), (units,)))

    def get_weights(self) -> list[np.ndarray]:
        if self._gamma is None:
            return []
        return [np.array(getattr(self, "_" + name)) for name in self.WEIGHTS]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        if self._gamma is None:
            raise KerasValueError(f"layer {self.name!r} is not built yet; build the model first")
        if len(weights) != 4:
            raise KerasValueError(f"layer {self.name!r} expects 4 weights (gamma, beta, moving_mean, "
                                  f"moving_variance), got {len(weights)}")
        new = [np.asarray(w, np.float32) for w in weights]
        if any(w.shape != self._gamma.shape for w in new):
            raise KerasValueError(f"layer {self.name!r}: weights of shapes {[w.shape for w in new]} do "
                                  f"not match {self._gamma.shape}")
        for name, w in zip(self.WEIGHTS, new, strict=True):
            setattr(self, name, w)

    @property
    def weights(self) -> list[Any]:
        if self._gamma is None:
            return []
        out = [getattr(self, name) for name in self.WEIGHTS]
        for v in out[2:]:
            v.trainable = False
        return out

    @property
    def trainable_weights(self) -> list[Any]:
        return self.weights[:2]

    @property
    def non_trainable_weights(self) -> list[Any]:
        return self.weights[2:]

    def __call__(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        if training and not isinstance(inputs, KerasTensor):
            raise KerasValueError("BatchNormalization called with training=True outside fit is not "
                                  "supported (its batch statistics are the engine's, in fit)")
        return super().__call__(inputs, **kwargs)

    def engine_weights(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, "_" + name) for name in self.WEIGHTS}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Inference: by the moving averages, as Keras computes it."""
        self.build(x.shape)
        inv, res = batchnorm_affine(self.engine_weights(), self.epsilon)
        return x * inv + res

    def get_config(self) -> dict[str, Any]:
        out = {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
               "epsilon": self.epsilon, "center": True, "scale": True}
        for name in ("beta", "gamma", "moving_mean", "moving_variance"):
            out[f"{name}_initializer"] = self.initializers[name].serialize()
        return {**out, "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
                "gamma_constraint": None, "synchronized": False, "renorm": False,
                "renorm_clipping": None, "renorm_momentum": self.renorm_momentum}


def input_stats(layers: list[Layer], input_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The engine's input transform (x - shift) · scale, per input feature, for the scaling
    layers at the front of a model (identity without them): their affine maps composed, each
    per feature of the last axis of what it sees (the image rows before a Flatten)."""
    dim = int(np.prod(input_shape))
    a, b = np.ones(dim, np.float64), np.zeros(dim, np.float64)
    shape = tuple(input_shape)
    for layer in layers:
        if isinstance(layer, Flatten):
            shape = (dim,)
        elif hasattr(layer, "affine"):
            la, lb = (np.broadcast_to(np.asarray(v, np.float64), shape).reshape(-1) for v in layer.affine())
            a, b = a * la, b * la + lb
    # + 0.0: no shift of -0.0, so that (x - shift) is x itself without scaling layers
    return {"shift": (-b / a + 0.0).astype(np.float32), "scale": a.astype(np.float32)}


class Unsupported:
    """A Keras layer outside an MLP: making one is refused, naming what it is."""

    feature = ""

    def __init__(self, *args: Any, **kwargs: Any):
        raise KerasValueError(f"{type(self).__name__}: {self.feature} are not supported; "
                              "digitnet.keras runs multilayer perceptrons (Input, Rescaling, Flatten, "
                              "Normalization, Dense, BatchNormalization, Dropout, Activation, Softmax, ReLU, "
                              "LeakyReLU, ELU)")


def _unsupported(feature: str, *names: str) -> dict[str, type]:
    return {n: type(n, (Unsupported,), {"feature": feature}) for n in names}


_REFUSED = {
    **_unsupported("convolution layers", "Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose",
                   "SeparableConv2D", "DepthwiseConv2D"),
    **_unsupported("pooling layers", "MaxPooling1D", "MaxPooling2D", "AveragePooling2D",
                   "GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D"),
    **_unsupported("recurrent layers", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "RNN"),
    **_unsupported("merge layers (branching graphs)", "Concatenate", "Add", "Multiply", "Average",
                   "Subtract", "Maximum", "Minimum", "Dot"),
    **_unsupported("normalization layers other than BatchNormalization", "LayerNormalization",
                   "GroupNormalization", "UnitNormalization"),
    **_unsupported("noise layers", "GaussianNoise", "GaussianDropout", "AlphaDropout"),
    **_unsupported("spatial dropout layers (for convolutions)", "SpatialDropout1D",
                   "SpatialDropout2D", "SpatialDropout3D"),
    **_unsupported("embedding layers", "Embedding"),
    **_unsupported("attention layers", "Attention", "MultiHeadAttention"),
    **_unsupported("Lambda layers (arbitrary code)", "Lambda"),
    **_unsupported("reshaping layers other than Flatten", "Reshape", "Permute", "RepeatVector"),
    **_unsupported("preprocessing layers other than Rescaling", "Resizing", "RandomFlip",
                   "RandomRotation", "RandomZoom", "RandomTranslation", "CenterCrop"),
    **_unsupported("trainable activations (PReLU's learned slope)", "PReLU"),
}
globals().update(_REFUSED)


# The layers a saved model may name, by Keras class name.
LAYER_CLASSES: dict[str, type[Layer]] = {c.class_name: c for c in (
    InputLayer, Flatten, Dropout, Dense, Activation, Softmax, ReLU, LeakyReLU, ELU, Rescaling, Normalization,
    BatchNormalization)}


from digitnet.keras.utils import unique_name  # noqa: E402  (utils imports nothing from here)
