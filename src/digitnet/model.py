"""The MLP: its spec, initial parameters and forward pass, as pure functions over a pytree.

params = [{"kernel": (fan_in, fan_out), "bias": (fan_out,)}, ...], one dict per Dense layer,
in Keras' layout so that Keras weight files map onto it one to one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from digitnet.deskew import deskew, deskew_dataset
from digitnet.errors import DigitnetError
from digitnet.knobs import active
from digitnet.spec import (  # noqa: F401  (MLP: the public name)
    BATCHNORM_WEIGHTS,
    MLP,
    MLPSpec,
    parse_activation,
)

Params = list[dict[str, jax.Array]]
# Dropout's keep masks for one batch: hidden layer i's at index i, the input's last (None where a
# layer has no dropout).
Masks = list[jax.Array | None]

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": partial(jax.nn.gelu, approximate=False),  # Keras' default
    "elu": jax.nn.elu,
    "leaky_relu": partial(jax.nn.leaky_relu, negative_slope=0.2),  # Keras 3's default slope
    "selu": jax.nn.selu,
    "linear": lambda x: x,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "silu": jax.nn.silu,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_silu": jax.nn.hard_silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),  # Keras' formula
    "exponential": jnp.exp,
    "relu6": jax.nn.relu6,
    "celu": jax.nn.celu,
    "hard_tanh": jax.nn.hard_tanh,
    "log_sigmoid": jax.nn.log_sigmoid,
}  # the same names as digitnet.spec.ACTIVATION_NAMES (a test checks)


def keras_relu(x: jax.Array, max_value: float | None, negative_slope: float,
               threshold: float) -> jax.Array:
    """Keras' relu with options (its ReLU layer), operation for operation as Keras 3 computes
    it, so that the same inputs give the same float32 values."""
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return jax.nn.leaky_relu(x, negative_slope=negative_slope)
        negative_part = jax.nn.relu(-x + threshold) if threshold != 0 else jax.nn.relu(-x)
    clip_max = max_value is not None
    if threshold != 0:
        x = jnp.where(x > jnp.asarray(threshold, x.dtype), x, 0)
    elif max_value == 6:
        x, clip_max = jax.nn.relu6(x), False
    else:
        x = jax.nn.relu(x)
    if clip_max:
        x = jnp.clip(x, jnp.asarray(0.0, x.dtype), jnp.asarray(max_value, x.dtype))
    if negative_slope != 0.0:
        x = x - negative_slope * negative_part
    return x


@cache
def activation_fn(spelling: str) -> Callable[[jax.Array], jax.Array]:
    """The function of an activation as a spec spells it: "relu", "leaky_relu(negative_slope=0.3)"."""
    if spelling in ACTIVATIONS:
        return ACTIVATIONS[spelling]
    name, options = parse_activation(spelling)
    if name == "relu":
        return partial(keras_relu, **options)
    if name == "leaky_relu":
        return partial(jax.nn.leaky_relu, negative_slope=options["negative_slope"])
    if name in ("elu", "celu"):
        return partial(getattr(jax.nn, name), alpha=options["alpha"])
    return ACTIVATIONS[name]


def init_params(spec: MLPSpec, key: jax.Array) -> Params:
    """Glorot-uniform kernels and zero biases, as Keras' Dense does by default (and a batch
    normalization's initial weights, as Keras' BatchNormalization's)."""
    glorot = jax.nn.initializers.glorot_uniform()
    keys = jax.random.split(key, len(spec.sizes) - 1)
    return with_batchnorm(spec, [
        {"kernel": glorot(k, (a, b), jnp.float32), "bias": jnp.zeros((b,), jnp.float32)}
        for k, a, b in zip(keys, spec.sizes[:-1], spec.sizes[1:], strict=True)
    ], jnp)


def host_init_params(spec: MLPSpec, key: np.ndarray) -> list[dict[str, np.ndarray]]:
    """init_params(spec, jax.random.wrap_key_data(key)) made by NumPy (digitnet.hostrandom): the
    same bits, without compiling JAX's random draws."""
    from digitnet import hostrandom

    keys = hostrandom.split(key, len(spec.sizes) - 1)
    return with_batchnorm(spec, [{"kernel": hostrandom.glorot_uniform(k, a, b),
                                  "bias": np.zeros((b,), np.float32)}
                                 for k, a, b in zip(keys, spec.sizes[:-1], spec.sizes[1:], strict=True)],
                          np)


def with_batchnorm(spec: MLPSpec, params: list[dict[str, Any]], xp: Any) -> list[dict[str, Any]]:
    """params with each batch normalization's initial gamma, beta and moving averages: a hidden
    layer's beside its kernel, the inputs' in the first layer's, named input_gamma, …"""
    for i, layer in enumerate(params[:-1]):
        if spec.batchnorm_of(i):
            n = layer["bias"].shape[0]
            layer.update({name: xp.full((n,), value, xp.float32) for name, value in BATCHNORM_WEIGHTS})
    if spec.input_batchnorm:
        params[0].update({INPUT + name: xp.full((spec.input_dim,), value, xp.float32)
                          for name, value in BATCHNORM_WEIGHTS})
    return params


# The prefix of the inputs' batch-normalization weights, kept in the first layer's dict.
INPUT = "input_"


def input_norm_weights(layer: dict[str, Any]) -> dict[str, Any]:
    """The inputs' batch normalization's weights (from the first layer's dict), by their names."""
    return {name: layer[INPUT + name] for name, _ in BATCHNORM_WEIGHTS}


def batch_norm(h: jax.Array, layer: dict[str, jax.Array], epsilon: float,
               batch_stats: list[tuple[jax.Array, jax.Array]] | None) -> jax.Array:
    """Keras' BatchNormalization of h (N, units), operation for operation as Keras 3 computes it
    on JAX: in training (batch_stats a list, to which the batch's mean and variance are
    appended), by the batch's statistics; in inference by the layer's moving averages."""
    if batch_stats is not None:
        mean, variance = jnp.mean(h, axis=0), jnp.var(h, axis=0)
        batch_stats.append((mean, variance))
    else:
        mean, variance = layer["moving_mean"], layer["moving_variance"]
    inv = jax.lax.rsqrt(variance + epsilon) * layer["gamma"]
    return h * inv + (-mean * inv + layer["beta"])


def batchnorm_affine(weights: dict[str, Any], epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """A batch normalization at inference as (inv, res), its output x · inv + res per unit, in
    NumPy float32 as Keras computes it: inv = gamma / √(moving variance + ε), res = beta − moving
    mean · inv (ONNX export; digitnet.keras' layer called on arrays)."""
    var, gamma = (np.asarray(weights[k], np.float32) for k in ("moving_variance", "gamma"))
    inv = (np.float32(1.0) / np.sqrt(var + np.float32(epsilon))) * gamma
    return inv, -np.asarray(weights["moving_mean"], np.float32) * inv + np.asarray(weights["beta"],
                                                                                  np.float32)


def update_moving_stats(spec: MLPSpec, params: Params, old: Params,
                        batch_stats: list[tuple[jax.Array, jax.Array]]) -> Params:
    """params with each batch normalization's moving averages moved towards the batch's
    statistics from `old`'s, as Keras' layer assigns them in a training step."""
    stats = iter(batch_stats)
    out = []

    def follow(layer: dict, before: dict, m: float, prefix: str = "") -> dict:
        mean, variance = next(stats)
        return {**layer,
                prefix + "moving_mean": before[prefix + "moving_mean"] * m + mean * (1.0 - m),
                prefix + "moving_variance": before[prefix + "moving_variance"] * m + variance * (1.0 - m)}

    for i, (layer, before) in enumerate(zip(params, old, strict=True)):
        if i == 0 and spec.input_batchnorm:  # the inputs' statistics come first
            layer = follow(layer, before, spec.input_batchnorm_momentum, INPUT)
        if i < len(spec.hidden) and spec.batchnorm_of(i):
            layer = follow(layer, before, spec.batchnorm_momentum[i])
        out.append(layer)
    return out


def preprocess_stats(spec: MLPSpec, x_train: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel (shift, scale) with inputs = (x - shift) * scale, computed once from train data
    (after deskewing, for a model that deskews)."""
    d = spec.input_dim
    if spec.preprocess == "center":
        shift, scale = np.full(d, 127.5), np.full(d, 1 / 255)
    elif spec.preprocess == "unit":
        shift, scale = np.zeros(d), np.full(d, 1 / 255)
    elif spec.preprocess == "none":
        shift, scale = np.zeros(d), np.ones(d)
    else:
        if spec.deskew:
            x_train = np.asarray(deskew_dataset(np.asarray(x_train).reshape(-1, *spec.input_shape)))
        flat = x_train.reshape(len(x_train), -1)
        # Two passes in float64 on the host: exact, and only done once per training run.
        shift = flat.mean(axis=0, dtype=np.float64)
        std = np.sqrt(((flat - shift) ** 2).mean(axis=0))
        scale = 1.0 / np.maximum(std, 1.0)  # constant pixels (MNIST's borders) stay at 0
    return {"shift": shift.astype(np.float32), "scale": scale.astype(np.float32)}


def forward(
    params: Params,
    stats: dict[str, jax.Array],
    x: jax.Array,
    spec: MLPSpec,
    dropout_key: jax.Array | None = None,
    first_matmul: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    masks: Masks | None = None,
    batch_stats: list[tuple[jax.Array, jax.Array]] | None = None,
) -> jax.Array:
    """Logits for a batch of raw inputs x (uint8 or float, any shape with N first).
    first_matmul: the first layer's product, if not `@` (the engine's, for how its gradient
    is computed: digitnet.engine.split_grad_matmul). masks: dropout_masks(spec, dropout_key,
    N), drawn beforehand (the engine draws a block of steps' masks at once). batch_stats: in
    training, a list that each batch normalization appends its batch's statistics to."""
    h = layer_outputs(params, stats, x, spec, dropout_key, first_matmul, masks, batch_stats)[-1]
    z = h @ params[-1]["kernel"]
    return z + params[-1]["bias"] if spec.has_bias(len(spec.hidden)) else z


def dropout_layers(spec: MLPSpec) -> list[tuple[Any, int]]:
    """(rate, width) of what dropout may apply to: each hidden layer's outputs, then the inputs."""
    rates = [spec.dropout[i] if spec.dropout else 0.0 for i in range(len(spec.hidden))]
    return list(zip([*rates, spec.input_dropout], [*spec.hidden, spec.input_dim], strict=True))


def dropout_masks(spec: MLPSpec, key: jax.Array, n: int) -> Masks:
    """The keep masks of a training batch of n rows, drawn from `key` (each layer's from its
    own fold of it: hidden layer i's from index i, the input's from index len(hidden))."""
    return [jax.random.bernoulli(jax.random.fold_in(key, i), 1 - rate, (n, width))
            if active(rate) else None for i, (rate, width) in enumerate(dropout_layers(spec))]


def layer_outputs(params: Params, stats: dict[str, jax.Array], x: jax.Array, spec: MLPSpec,
                  dropout_key: jax.Array | None = None,
                  first_matmul: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                  masks: Masks | None = None,
                  batch_stats: list[tuple[jax.Array, jax.Array]] | None = None) -> list[jax.Array]:
    """The preprocessed inputs, then each hidden layer's output: what the last layer sees.
    Dropout applies when a dropout_key (or its masks) is given: in training; batch
    normalization uses the batch's statistics when batch_stats (a list) is given."""
    if spec.deskew:
        x = deskew(x.reshape(x.shape[0], *spec.input_shape))
    h = (x.reshape(x.shape[0], -1).astype(jnp.float32) - stats["shift"]) * stats["scale"]
    if spec.input_batchnorm:
        h = batch_norm(h, input_norm_weights(params[0]), spec.input_batchnorm_epsilon, batch_stats)
    if masks is None and dropout_key is not None:
        masks = dropout_masks(spec, dropout_key, h.shape[0])
    if masks is not None and masks[-1] is not None:
        h = dropout(h, spec.input_dropout, masks[-1])
    outputs = [h]
    for i, (layer, act) in enumerate(zip(params[:-1], spec.hidden_activations, strict=True)):
        z = first_matmul(h, layer["kernel"]) if i == 0 and first_matmul else h @ layer["kernel"]
        if spec.has_bias(i):  # without one (Keras' use_bias=False) the bias stays zero, unused
            z = z + layer["bias"]
        where = spec.batchnorm_of(i)
        if where == "before":
            z = batch_norm(z, layer, spec.batchnorm_epsilon[i], batch_stats)
        h = activation_fn(act)(z)
        if where == "after":
            h = batch_norm(h, layer, spec.batchnorm_epsilon[i], batch_stats)
        if masks is not None and masks[i] is not None:
            h = dropout(h, spec.dropout[i], masks[i])
        outputs.append(h)
    return outputs


def dropout(h: jax.Array, rate: float, keep: jax.Array) -> jax.Array:
    """Inverted dropout: the kept units scaled by 1 / (1 - rate), the others zeroed."""
    return jnp.where(keep, h / (1 - rate), 0.0)


# Inference runs the network over blocks of this many rows inside one compiled call. One
# pass over 10k rows would materialise the float32 inputs (31 MB) in fresh pages on every
# call; blocks keep each layer's working set in cache and reuse one buffer. Same results
# bit for bit, for less CPU time (docs/performance.md: "predict 10k").
BLOCK = 1000


def blocked_forward(params: Params, stats: dict[str, jax.Array], x: jax.Array,
                    spec: MLPSpec) -> jax.Array:
    """forward() over row blocks of x (for inference: no dropout)."""
    n = x.shape[0]
    full = n // BLOCK * BLOCK
    if full <= BLOCK:
        return forward(params, stats, x, spec)
    blocks = x[:full].reshape(full // BLOCK, BLOCK, *x.shape[1:])
    out = jax.lax.map(lambda b: forward(params, stats, b, spec), blocks).reshape(full, -1)
    if full == n:
        return out
    return jnp.concatenate([out, forward(params, stats, x[full:], spec)])


@lru_cache(maxsize=32)
def compiled_forward(spec: MLPSpec) -> Callable[..., jax.Array]:
    """forward(params, stats, x) -> logits, jitted once per spec."""
    return jax.jit(partial(blocked_forward, spec=spec))


# Inference runs in slices of this many rows: one compiled shape covers any large input.
SLICE = 10_000


def predict_logits(spec: MLPSpec, params: Params, stats: dict, x: Any) -> np.ndarray:
    """Logits for raw inputs x (N, ...) as a NumPy array."""
    fn = compiled_forward(spec)
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    # One compiled shape for (N, H, W) and (N, H*W) alike: the evaluation inside fit and
    # Model.predict then share a program (forward flattens its input first either way).
    x = x.reshape(len(x), -1)
    parts = [fn(params, stats, x[i : i + SLICE]) for i in range(0, len(x), SLICE)]
    if not parts:
        return np.zeros((0, spec.output_units), np.float32)
    return np.asarray(jnp.concatenate(parts) if len(parts) > 1 else parts[0])



def finite_logits(spec: MLPSpec, params: Params, stats: dict, x: Any, logits: np.ndarray) -> np.ndarray:
    """`logits` (of inputs x), or a one-line error where a row is NaN or infinite, naming the first
    layer whose values left float32's range: a NaN probability is never handed on silently."""
    finite = np.isfinite(logits).all(axis=1)
    if finite.all():
        return logits
    bad = np.flatnonzero(~finite)
    # Only on this failure path: one row run again, layer by layer, to say where it overflowed.
    row = np.asarray(x)[bad[:1]].reshape(1, -1)
    outputs = [np.asarray(h) for h in layer_outputs(params, stats, jnp.asarray(row), spec)]
    layer = next((i for i, h in enumerate(outputs) if not np.isfinite(h).all()), len(outputs))
    hint = ""
    if layer == 0:
        where = "the preprocessed inputs"
    elif layer < len(outputs):
        act = spec.hidden_activations[layer - 1]
        where = f"hidden layer {layer} ({act})"
        if parse_activation(act)[0] == "exponential":
            hint = "; exp(x) overflows above x = 88.7: scale the inputs down or use another activation"
    else:
        where = "the output layer"
    raise DigitnetError(f"the model's outputs are NaN or infinite for {len(bad)} of {len(logits)} "
                        f"input(s) (the first: row {bad[0]}): {where} left float32's range{hint}")
