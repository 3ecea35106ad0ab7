"""The model's spec: everything that fixes the network's shape and its input transform.

Declared with option metadata (digitnet.options) and free of JAX, so that the CLI's flags and
`digitnet.MLP(...)` are available without starting JAX; digitnet.model runs it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from digitnet.budget import check_layer_sizes
from digitnet.errors import ConfigError
from digitnet.options import choose, option, parse_list

# digitnet.model maps each name to its function (Keras' functions of these names).
ACTIVATION_NAMES = ("relu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu", "selu", "linear",
                    "softplus", "softsign", "silu", "hard_sigmoid", "hard_silu", "mish", "exponential",
                    "relu6", "celu", "hard_tanh", "log_sigmoid")
# Keras' other names for some of them (a model's config holds the name on the right, as Keras').
ACTIVATION_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}
# The options an activation may take, at Keras' defaults: an activation with other values is
# spelt with them, "leaky_relu(negative_slope=0.3)" (Keras' LeakyReLU layer), "elu(alpha=0.5)",
# "relu(max_value=6.0, negative_slope=0.0, threshold=0.0)" (its ReLU layer).
ACTIVATION_OPTIONS: dict[str, dict[str, float | None]] = {
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 1.0},
    "celu": {"alpha": 1.0},
    "relu": {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
}

# How raw pixels become network inputs; part of the model, saved with it.
#   center: x/255 - 0.5 (the tutorial)   unit: x/255   standardize: per-pixel (x-mean)/std
#   none: the input is used as given (the Keras front end, where the user scales).
PREPROCESS = ("center", "unit", "standardize", "none")

# The output layer: a softmax over num_classes units, or, for two classes, one sigmoid unit
# (a Keras Dense(1, activation='sigmoid'): the two-class softmax over the logits (0, z)).
OUTPUTS = ("softmax", "sigmoid")

# The per-layer penalty factors of the loss (Keras' kernel_regularizer and bias_regularizer).
PENALTIES = ("kernel_l1", "kernel_l2", "bias_l1", "bias_l2")
# Per-Dense-layer options written into a run's files only where set.
PER_DENSE = (*PENALTIES, "kernel_max_norm")
# Batch normalization of a hidden layer (Keras' BatchNormalization after a Dense): of its
# pre-activations ("before" the activation) or of its outputs ("after"), or none.
BATCHNORM = ("none", "before", "after")
# Per-hidden-layer batch-normalization options, written into a run's files only where set.
PER_BATCHNORM = ("batchnorm", "batchnorm_momentum", "batchnorm_epsilon")
# The inputs' batch-normalization options, written into a run's files only where it is on.
INPUT_BATCHNORM = ("input_batchnorm", "input_batchnorm_momentum", "input_batchnorm_epsilon")
# Keras' BatchNormalization defaults.
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3
# A batch-normalised layer's weights beside its kernel and bias, in Keras' order, and their
# initial values (Keras' gamma_initializer, beta_initializer, moving_mean_initializer and
# moving_variance_initializer: ones, zeros, zeros, ones).
BATCHNORM_WEIGHTS = (("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0), ("moving_variance", 1.0))


def activation_spelling(name: str, **options: Any) -> str:
    """An activation's name in a spec: the bare name at Keras' defaults, else with its options
    ("leaky_relu(negative_slope=0.3)"), so that one function has one spelling."""
    name = ACTIVATION_ALIASES.get(name, name)
    defaults = ACTIVATION_OPTIONS.get(name, {})
    unknown = set(options) - set(defaults)
    if name not in ACTIVATION_NAMES or unknown:
        raise ConfigError(f"unknown activation {name!r}"
                          + (f" option(s) {sorted(unknown)}" if unknown else ""))
    values = {}
    for key, default in defaults.items():
        value = options.get(key, default)
        if value is not None or default is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"activation {name}: {key} must be a finite number, got {value!r}")
            value = float(value)
        values[key] = value
    if values == defaults:
        return name
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def parse_activation(spelling: Any) -> tuple[str, dict[str, float | None]]:
    """(name, options with Keras' defaults filled in) of an activation as a spec spells it:
    "relu", "swish" (Keras' other name of silu), "leaky_relu(negative_slope=0.3)"."""
    if not isinstance(spelling, str):
        raise ConfigError(f"an activation must be a name (a string), got {spelling!r}")
    name, _, rest = spelling.partition("(")
    name = ACTIVATION_ALIASES.get(name.strip(), name.strip())
    choose("activation", name, ACTIVATION_NAMES)
    options: dict[str, Any] = {}
    if rest:
        if not rest.endswith(")"):
            raise ConfigError(f"activation {spelling!r}: expected name(option=value, ...)")
        for item in filter(None, (part.strip() for part in rest[:-1].split(","))):
            key, eq, value = item.partition("=")
            try:
                options[key.strip()] = None if value.strip() == "None" else float(value)
            except ValueError:
                eq = ""
            if not eq:
                raise ConfigError(f"activation {spelling!r}: expected option=number, got {item!r}")
    activation_spelling(name, **options)  # checks the options
    return name, {**ACTIVATION_OPTIONS.get(name, {}), **options}


def canonical_activation(spelling: Any) -> str:
    name, options = parse_activation(spelling)
    return activation_spelling(name, **options)


def int_tuple(values: Any, name: str) -> tuple[int, ...]:
    """Whole numbers (bool, float and str refused), as Python ints."""
    if not isinstance(values, list | tuple) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{name} must be whole numbers, got {values!r}")
    return tuple(int(v) for v in values)


def float_tuple(values: Any, name: str) -> tuple[float, ...]:
    """Finite real numbers (bool refused; a per-layer option may come as text, "0.5"), as
    Python floats."""
    if not isinstance(values, list | tuple) or not all(
            isinstance(v, numbers.Real | str) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{name} must be numbers, got {values!r}")
    try:
        out = tuple(float(v) for v in values)
    except ValueError:
        raise ConfigError(f"{name} must be numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{name} must be finite, got {values!r}")
    return out


@dataclass(frozen=True)
class MLPSpec:
    """Everything that fixes the network's shape and its input transform."""

    input_shape: tuple[int, ...] = option((28, 28), "image shape (set from the dataset)", cli=False)
    hidden: tuple[int, ...] = option((64, 64), "hidden layer sizes, e.g. 64,64",
                                     parse=parse_list(int))
    num_classes: int = option(10, "number of classes (set from the dataset)", cli=False)
    activation: str = option("relu", "activation of the hidden layers", choices=ACTIVATION_NAMES)
    dropout: tuple[float, ...] = option((), "dropout after each hidden layer: one rate for all "
                                        "(0.5) or one per layer (0.2,0.5)", per_layer=True,
                                        parse=parse_list(float))
    preprocess: str = option("center", "pixels → inputs: center is x/255-0.5, unit x/255, "
                             "standardize per pixel, none as given", choices=PREPROCESS)
    activations: tuple[str, ...] = option((), "one activation per hidden layer, where they differ "
                                          "(as a Keras model may have); none: --activation for all",
                                          per_layer=True, choices=ACTIVATION_NAMES,
                                          parse=parse_list(str))
    input_dropout: float = option(0.0, "dropout rate on the (preprocessed) inputs",
                                 group="regularisation")
    deskew: bool = option(False, "straighten and centre each image by its moments first "
                          "(digitnet.deskew)")
    output: str = option("softmax", "output layer: softmax over the classes, or one sigmoid unit "
                         "for two classes (binary cross-entropy)", choices=OUTPUTS, cli=False)
    # Keras' kernel_regularizer / bias_regularizer: one factor per Dense layer (the output layer
    # last), the penalty l1·Σ|w| + l2·Σw² added to the training loss (digitnet.regularize.penalty).
    kernel_l1: tuple[float, ...] = option((), "L1 penalty factor of each layer's kernel", cli=False,
                                          group="regularisation")
    kernel_l2: tuple[float, ...] = option((), "L2 penalty factor of each layer's kernel", cli=False,
                                          group="regularisation")
    bias_l1: tuple[float, ...] = option((), "L1 penalty factor of each layer's bias", cli=False,
                                        group="regularisation")
    bias_l2: tuple[float, ...] = option((), "L2 penalty factor of each layer's bias", cli=False,
                                        group="regularisation")
    # Keras' kernel_constraint=MaxNorm(m): after each step, each unit's incoming weights are
    # scaled to a norm of at most m (0: no constraint on that layer).
    kernel_max_norm: tuple[float, ...] = option((), "max-norm of each layer's kernel columns (Keras' "
                                                "MaxNorm constraint; 0 = none)", cli=False,
                                                group="regularisation")

    # Keras' Dense(use_bias=False): one flag per Dense layer (the output layer last); such a
    # layer's bias stays zero and is not added (a batch normalization after it shifts instead).
    use_bias: tuple[bool, ...] = option((), "whether each Dense layer adds a bias (Keras' use_bias; "
                                        "default: every layer)", cli=False)
    # Keras' BatchNormalization after a hidden Dense layer: normalised by the batch's mean and
    # variance in training, by their moving averages (momentum) in inference, then scaled and
    # shifted by a trained gamma and beta (model.batch_norm).
    batchnorm: tuple[str, ...] = option((), "batch normalization of each hidden layer: 'before' "
                                        "its activation, 'after' it, or 'none' (one value for "
                                        "all layers or one per layer)", per_layer=True,
                                        choices=BATCHNORM, parse=parse_list(str))
    batchnorm_momentum: tuple[float, ...] = option((), "momentum of each batch normalization's "
                                                   f"moving averages (default {BN_MOMENTUM})",
                                                   per_layer=True, parse=parse_list(float))
    input_batchnorm: bool = option(False, "batch normalization of the (preprocessed) inputs, "
                                   "before the first layer (Keras' BatchNormalization after Flatten)")
    input_batchnorm_momentum: float = option(BN_MOMENTUM, "momentum of the inputs' batch "
                                             "normalization", cli=False)
    input_batchnorm_epsilon: float = option(BN_EPSILON, "epsilon of the inputs' batch "
                                            "normalization", cli=False)
    batchnorm_epsilon: tuple[float, ...] = option((), "epsilon added to each batch "
                                                  f"normalization's variance (default {BN_EPSILON})",
                                                  per_layer=True, parse=parse_list(float))

    def __post_init__(self) -> None:
        # Strict types: a model file saying "deskew": "false" or "hidden": [64.5] is refused,
        # not read as something else (digitnet.budget bounds the sizes).
        object.__setattr__(self, "input_shape", int_tuple(self.input_shape, "input_shape"))
        object.__setattr__(self, "hidden", int_tuple(self.hidden, "hidden"))
        object.__setattr__(self, "num_classes", int_tuple((self.num_classes,), "num_classes")[0])
        drop = float_tuple(per_layer(self.dropout, len(self.hidden), "dropout"), "dropout")
        object.__setattr__(self, "input_dropout",
                           float_tuple((self.input_dropout,), "input_dropout")[0])
        if any(not 0.0 <= d < 1.0 for d in (*drop, self.input_dropout)):
            raise ConfigError(f"dropout rates must be in [0, 1), got {[*drop, self.input_dropout]}")
        object.__setattr__(self, "dropout", drop if any(drop) else ())
        if not isinstance(self.activations, list | tuple | str):
            raise ConfigError(f"activations must be a list of names, got {self.activations!r}")
        acts = per_layer(self.activations, len(self.hidden), "activations")
        if not all(isinstance(a, str) for a in (self.activation, self.preprocess, *acts)):
            raise ConfigError("activation, activations and preprocess must be names (strings)")
        # One spelling per function: "swish" is stored as "silu", default options dropped.
        object.__setattr__(self, "activation", canonical_activation(self.activation))
        object.__setattr__(self, "activations", tuple(canonical_activation(a) for a in acts))
        choose("preprocess", self.preprocess, PREPROCESS)
        choose("output", self.output, OUTPUTS)
        for name in PER_DENSE:
            factors = float_tuple(getattr(self, name), name)
            if factors and len(factors) != len(self.hidden) + 1:
                raise ConfigError(f"{name} needs one factor per Dense layer ({len(self.hidden) + 1}), "
                                  f"got {len(factors)}")
            if any(f < 0 for f in factors):
                raise ConfigError(f"{name} factors must be ≥ 0, got {list(factors)}")
            object.__setattr__(self, name, factors if any(factors) else ())
        self._check_batchnorm()
        if not isinstance(self.use_bias, list | tuple) or not all(isinstance(b, bool) for b in self.use_bias):
            raise ConfigError(f"use_bias must be true or false per Dense layer, got {self.use_bias!r}")
        if self.use_bias and len(self.use_bias) != len(self.hidden) + 1:
            raise ConfigError(f"use_bias needs one value per Dense layer ({len(self.hidden) + 1}), "
                              f"got {len(self.use_bias)}")
        object.__setattr__(self, "use_bias", tuple(self.use_bias) if not all(self.use_bias) else ())
        if self.output == "sigmoid" and self.num_classes != 2:
            raise ConfigError(f"a sigmoid output is for two classes, not {self.num_classes}")
        if not isinstance(self.deskew, bool):
            raise ConfigError(f"deskew must be true or false, got {self.deskew!r}")
        if self.deskew and (len(self.input_shape) != 2 or self.preprocess == "none"):
            raise ConfigError("deskew needs 2-D images of raw 0-255 pixels (input_shape (H, W) "
                              "and a preprocess other than 'none')")
        if any(d <= 0 for d in (*self.input_shape, *self.hidden)) or self.num_classes < 2:
            raise ConfigError("layer sizes must be positive and there must be at least 2 classes")
        if not 1 <= len(self.input_shape) <= 3:
            raise ConfigError(f"input_shape must have 1 to 3 dimensions, got {self.input_shape}")
        check_layer_sizes(self.sizes, "model")

    def _check_batchnorm(self) -> None:
        layers = len(self.hidden)
        if not isinstance(self.batchnorm, list | tuple | str):
            raise ConfigError(f"batchnorm must be a list of 'none', 'before' or 'after', got "
                              f"{self.batchnorm!r}")
        where = per_layer(self.batchnorm, layers, "batchnorm")
        for w in where:
            choose("batchnorm", w, BATCHNORM)
        on = any(w != "none" for w in where)
        momentum = float_tuple(per_layer(self.batchnorm_momentum, layers, "batchnorm_momentum"),
                               "batchnorm_momentum") or (BN_MOMENTUM,) * layers
        epsilon = float_tuple(per_layer(self.batchnorm_epsilon, layers, "batchnorm_epsilon"),
                              "batchnorm_epsilon") or (BN_EPSILON,) * layers
        if any(not 0.0 <= m <= 1.0 for m in momentum):
            raise ConfigError(f"batchnorm_momentum must be in [0, 1], got {list(momentum)}")
        if any(not e > 0.0 for e in epsilon):
            raise ConfigError(f"batchnorm_epsilon must be > 0, got {list(epsilon)}")
        if not isinstance(self.input_batchnorm, bool):
            raise ConfigError(f"input_batchnorm must be true or false, got {self.input_batchnorm!r}")
        m, e = float_tuple((self.input_batchnorm_momentum, self.input_batchnorm_epsilon),
                           "input_batchnorm_momentum and _epsilon")
        if not 0.0 <= m <= 1.0 or not e > 0.0:
            raise ConfigError(f"input_batchnorm_momentum must be in [0, 1] and its epsilon > 0, got "
                              f"{m}, {e}")
        object.__setattr__(self, "input_batchnorm_momentum", m)
        object.__setattr__(self, "input_batchnorm_epsilon", e)
        # Stored only where some layer normalises, and then in full, one value per layer.
        object.__setattr__(self, "batchnorm", where if on else ())
        object.__setattr__(self, "batchnorm_momentum", momentum if on else ())
        object.__setattr__(self, "batchnorm_epsilon", epsilon if on else ())

    def has_bias(self, i: int) -> bool:
        """Whether Dense layer i (the output layer is len(hidden)) adds its bias."""
        return self.use_bias[i] if self.use_bias else True

    def batchnorm_of(self, i: int) -> str:
        """Where hidden layer i normalises: 'before' or 'after' its activation, or '' (none)."""
        where = self.batchnorm[i] if self.batchnorm else "none"
        return "" if where == "none" else where

    @property
    def regularized(self) -> bool:
        """Whether a kernel or bias penalty is part of the loss."""
        return any(getattr(self, name) for name in PENALTIES)

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def hidden_activations(self) -> tuple[str, ...]:
        return self.activations or (self.activation,) * len(self.hidden)

    @property
    def sizes(self) -> list[int]:
        return [self.input_dim, *self.hidden, self.output_units]

    @property
    def output_units(self) -> int:
        return 1 if self.output == "sigmoid" else self.num_classes

    @property
    def num_params(self) -> int:
        """Every weight, as Keras counts them: kernels, biases and, per batch normalization,
        its gamma, beta and two moving averages."""
        return sum(a * b + b * self.has_bias(i)
                   for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True))) + \
            4 * self.normalized_units

    @property
    def normalized_units(self) -> int:
        """Units with a batch normalization (the inputs' included): four weights each."""
        return sum(n for i, n in enumerate(self.hidden) if self.batchnorm_of(i)) + \
            self.input_dim * self.input_batchnorm

    @property
    def non_trainable_params(self) -> int:
        """The batch normalizations' moving averages: updated in training, not by gradients."""
        return 2 * self.normalized_units

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Options a model may leave unused are written only where it uses them: a run's files
        # stay as before (and readable by digitnet versions before them).
        written = {k: bool(d[k]) for k in (*PER_DENSE, *PER_BATCHNORM, "use_bias")}
        written.update({k: self.input_batchnorm for k in INPUT_BATCHNORM})
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if written.get(k, True)}

    def for_data(self, image_shape: tuple[int, ...], num_classes: int) -> MLPSpec:
        """This spec as fit trains it on images of `image_shape` in `num_classes` classes: the
        data's input shape, and the data's classes (at least two) where the spec has fewer or
        a shape other than the data's."""
        if tuple(image_shape) == self.input_shape and num_classes <= self.num_classes:
            return self
        return MLPSpec(**{**self.to_dict(), "input_shape": tuple(image_shape),
                          "num_classes": max(num_classes, 2)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MLPSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def summary(self) -> str:
        """A Keras-style table: layers, output shapes, parameter counts."""
        rows = []
        if self.input_batchnorm:
            rows.append(("input_batch_normalization", f"(None, {self.input_dim})", 4 * self.input_dim))
        if self.input_dropout:
            rows.append((f"input_dropout (Dropout {self.input_dropout:g})", f"(None, {self.input_dim})", 0))
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            last = i == len(self.hidden)
            act = self.output if last else self.hidden_activations[i]
            rows.append((f"dense_{i} (Dense, {act}{'' if self.has_bias(i) else ', no bias'})",
                         f"(None, {b})", a * b + b * self.has_bias(i)))
            if not last and self.batchnorm_of(i):
                rows.append((f"batch_normalization_{i} ({self.batchnorm_of(i)} {act})",
                             f"(None, {b})", 4 * b))
            if not last and self.dropout and self.dropout[i]:
                rows.append((f"dropout_{i} (Dropout {self.dropout[i]:g})", f"(None, {b})", 0))
        width = max(len(r[0]) for r in rows) + 2
        line = "─" * (width + 30)
        prep = f"deskew, {self.preprocess}" if self.deskew else self.preprocess
        out = [f"Model: MLP, input {self.input_shape} → {self.input_dim}, preprocess {prep}",
               line, f"{'Layer (type)':<{width}}{'Output Shape':<16}{'Param #':>14}", line]
        out += [f"{name:<{width}}{shape:<16}{n:>14,}" for name, shape, n in rows]
        frozen = self.non_trainable_params
        out += [line, f"Total params: {self.num_params:,}",
                f"Trainable params: {self.num_params - frozen:,}"]
        if frozen:
            out.append(f"Non-trainable params: {frozen:,}")
        return "\n".join(out)


MLP = MLPSpec  # the public name: digitnet.MLP(hidden=(128, 128), activation="tanh")


def per_layer(value: Any, layers: int, name: str) -> tuple:
    """A per-layer option as one value per hidden layer: a single value (0.5, or [0.5]) applies
    to every layer; () means the option's default for all of them."""
    if isinstance(value, str | int | float):
        value = (value,)
    value = tuple(value)
    if len(value) == 1:
        return value * layers
    if value and len(value) != layers:
        raise ConfigError(f"{name} needs one value or one per hidden layer ({layers}), got {len(value)}")
    return value
