"""Regularisers of the training step: L1/L2 penalties in the loss, max-norm and an EMA of the
weights (label smoothing is part of the loss: digitnet.metrics.loss_values).

Max-norm and the EMA are Optax transformations chained after the optimizer, so they run inside
the compiled step, their state is checkpointed with the optimizer's, and when they are off they
are simply not in the chain (nothing is compiled for them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def penalty(params: Any, spec: Any, xp: Any = jnp) -> Any:
    """Σ over Dense layers of l1·Σ|w| + l2·Σw², for the kernels and biases the spec penalises
    (Keras' L1L2 regularizers, added to the loss as Keras adds them); 0.0 when none is.
    xp: jax.numpy in the compiled step, NumPy for the loss reported on the host."""
    total = 0.0
    for i, layer in enumerate(params):
        for name, l1s, l2s in (("kernel", spec.kernel_l1, spec.kernel_l2),
                               ("bias", spec.bias_l1, spec.bias_l2)):
            w = layer[name]
            if l1s and l1s[i]:
                total = total + xp.float32(l1s[i]) * xp.sum(xp.abs(w))
            if l2s and l2s[i]:
                total = total + xp.float32(l2s[i]) * xp.sum(xp.square(w))
    return total


def keras_max_norm(params: Any, limits: tuple[float, ...]) -> Any:
    """Each kernel with a limit m > 0 rescaled as Keras' MaxNorm(m) does after a step:
    w · clip(norms, 0, m) / (1e-7 + norms), norms of the columns (axis 0)."""
    out = []
    for layer, limit in zip(params, limits, strict=True):
        if limit:
            w = layer["kernel"]
            norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True))
            layer = {**layer, "kernel": w * (jnp.clip(norms, 0, limit) / (1e-7 + norms))}
        out.append(layer)
    return out


def clip_columns(kernel: jax.Array, max_norm: float) -> jax.Array:
    """Rescale each column (one unit's incoming weights, Keras' MaxNorm(axis=0)) to a norm of at
    most `max_norm`."""
    norms = jnp.sqrt(jnp.sum(kernel * kernel, axis=0, keepdims=True))
    return kernel * jnp.minimum(1.0, max_norm / jnp.maximum(norms, 1e-12))


def max_norm(limit: float) -> optax.GradientTransformation:
    """Project every kernel onto the max-norm ball after the update: the update is replaced by
    (projected new kernel - kernel). Biases are left alone."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("max_norm needs the parameters")
        new = [
            {name: (clip_columns(p[name] + u[name], limit) - p[name]) if name == "kernel" else u[name]
             for name in u}
            for u, p in zip(updates, params, strict=True)
        ]
        return new, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class EmaState(NamedTuple):
    ema: Any  # same pytree as the parameters


def weight_ema(decay: float) -> optax.GradientTransformation:
    """Track ema ← decay·ema + (1 - decay)·new params after each step, starting from the initial
    parameters. Updates pass through unchanged."""

    def init(params):
        return EmaState(ema=jax.tree.map(jnp.array, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("weight_ema needs the parameters")
        new = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, new)
        return updates, EmaState(ema=ema)

    return optax.GradientTransformation(init, update)


def replace_ema(opt_state: Any, params: Any) -> Any:
    """The optimizer state with its EMA weights (if any) replaced by `params`."""
    return jax.tree.map(lambda n: EmaState(ema=params) if isinstance(n, EmaState) else n, opt_state,
                        is_leaf=lambda n: isinstance(n, EmaState))


def ema_params(opt_state: Any) -> Any | None:
    """The EMA weights held in an optimizer state, or None if it tracks none."""
    for node in jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, EmaState)):
        if isinstance(node, EmaState):
            return node.ema
    return None
