"""Keras 3's optimizers as one Optax transformation, update for update as keras/src/optimizers/
computes them: the optimizers digitnet.optimizers has no path of its own for (Adagrad, Adadelta,
Adamax, Nadam, Lion, Ftrl, and Keras' AdamW, which decays every variable) and the options every Keras
optimizer has (clipnorm, clipvalue, global_clipnorm, weight_decay, Adam's amsgrad, …).

Keras clips the gradients, then decays the weights (w -= w·wd·lr), then applies the update;
the step count, like Keras' `iterations`, lives in the state and carries over between fits.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from digitnet.trainconfig import KERAS_OPTIMIZER_DEFAULTS


class KerasState(NamedTuple):
    count: jax.Array  # Keras' `iterations`: steps applied so far
    slots: tuple[Any, ...]  # the optimizer's per-variable accumulators, one tree each
    u_product: jax.Array  # Nadam's running product of momentum-cache coefficients


# The per-variable accumulators each optimizer keeps, with their initial value.
SLOTS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum",), "adam": ("m", "v", "v_hat"), "adamw": ("m", "v", "v_hat"),
    "rmsprop": ("velocity", "average_gradient", "momentum"), "adagrad": ("accumulator",),
    "adadelta": ("accumulated_grad", "accumulated_delta"), "adamax": ("m", "u"),
    "nadam": ("m", "v"), "lion": ("m",), "ftrl": ("accumulator", "linear"),
}


def options_of(name: str, text: str) -> dict[str, Any]:
    """The optimizer's options: Keras' defaults, overridden by the config's JSON."""
    return {**KERAS_OPTIMIZER_DEFAULTS[name], **(json.loads(text) if text else {})}


def clip(grads: Any, o: dict[str, Any]) -> Any:
    """Keras' _clip_gradients: each tensor to a norm, all to a global norm, or each value."""
    if o.get("clipnorm"):
        c = o["clipnorm"]

        def by_norm(g: jax.Array) -> jax.Array:
            l2sum = jnp.sum(jnp.square(g))
            norm = jnp.where(l2sum > 0, jnp.sqrt(jnp.where(l2sum > 0, l2sum, 1.0)), l2sum)
            return g * c / jnp.maximum(norm, c)
        return jax.tree.map(by_norm, grads)
    if o.get("global_clipnorm"):
        c = o["global_clipnorm"]
        norm = optax.tree.norm(grads)
        return jax.tree.map(lambda g: g * c / jnp.maximum(norm, c), grads)
    if o.get("clipvalue"):
        v = o["clipvalue"]
        return jax.tree.map(lambda g: jnp.clip(g, -v, v), grads)
    return grads


def step_update(name: str, o: dict[str, Any], g: jax.Array, p: jax.Array, slots: list[jax.Array],
                lr: jax.Array, t: jax.Array, u_t: jax.Array,
                u_product: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """(the change to one variable, its new accumulators) for Keras' update_step; t = iterations + 1."""
    eps = o.get("epsilon", 1e-7)
    if name == "sgd":
        mom = o["momentum"]
        if not mom:
            return -lr * g, slots
        m = mom * slots[0] - lr * g
        return (mom * m - lr * g if o["nesterov"] else m), [m]
    if name in ("adam", "adamw"):
        b1, b2 = o["beta_1"], o["beta_2"]
        m = slots[0] + (g - slots[0]) * (1 - b1)
        v = slots[1] + (jnp.square(g) - slots[1]) * (1 - b2)
        alpha = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        v_hat = jnp.maximum(slots[2], v) if o["amsgrad"] else slots[2]
        return -(m * alpha) / (jnp.sqrt(v_hat if o["amsgrad"] else v) + eps), [m, v, v_hat]
    if name == "rmsprop":
        rho, mom = o["rho"], o["momentum"]
        velocity = rho * slots[0] + (1 - rho) * jnp.square(g)
        average = slots[1]
        if o["centered"]:
            average = rho * average + (1 - rho) * g
            denominator = velocity - jnp.square(average) + eps
        else:
            denominator = velocity + eps
        increment = lr * g / jnp.sqrt(denominator)
        if mom:
            m = mom * slots[2] + increment
            return -m, [velocity, average, m]
        return -increment, [velocity, average, slots[2]]
    if name == "adagrad":
        acc = slots[0] + jnp.square(g)
        return -lr * g / jnp.sqrt(acc + eps), [acc]
    if name == "adadelta":
        rho = o["rho"]
        acc_g = rho * slots[0] + (1 - rho) * jnp.square(g)
        delta = -jnp.sqrt(slots[1] + eps) * g / jnp.sqrt(acc_g + eps)
        acc_d = rho * slots[1] + (1 - rho) * jnp.square(delta)
        return lr * delta, [acc_g, acc_d]
    if name == "adamax":
        b1, b2 = o["beta_1"], o["beta_2"]
        m = slots[0] + (g - slots[0]) * (1 - b1)
        u = jnp.maximum(b2 * slots[1], jnp.abs(g))
        return -(lr * m) / ((1 - b1 ** t) * (u + eps)), [m, u]
    if name == "nadam":
        b1, b2 = o["beta_1"], o["beta_2"]
        u_t_1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        m = slots[0] + (g - slots[0]) * (1 - b1)
        v = slots[1] + (jnp.square(g) - slots[1]) * (1 - b2)
        m_hat = u_t_1 * m / (1 - u_product * u_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - b2 ** t)
        return -(m_hat * lr) / (jnp.sqrt(v_hat) + eps), [m, v]
    if name == "lion":
        b1, b2 = o["beta_1"], o["beta_2"]
        update = -lr * jnp.sign(slots[0] * b1 + g * (1.0 - b1))
        return update, [slots[0] * b2 + g * (1.0 - b2)]
    if name == "ftrl":
        power, l1 = o["learning_rate_power"], o["l1_regularization_strength"]
        l2 = o["l2_regularization_strength"] + o["beta"] / (2.0 * lr)
        accum, linear = slots
        new_accum = accum + jnp.square(g)
        linear = linear + (g + 2 * o["l2_shrinkage_regularization_strength"] * p
                           - (new_accum ** -power - accum ** -power) / lr * p)
        quadratic = new_accum ** -power / lr + 2 * l2
        return (jnp.clip(linear, -l1, l1) - linear) / quadratic - p, [new_accum, linear]
    raise ValueError(f"unknown Keras optimizer {name!r}")


def keras_optimizer(name: str, learning_rate: Any, options: str) -> optax.GradientTransformation:
    """Keras' `name` optimizer with its options (a JSON object, Keras' argument names) at a rate
    that is a number or an Optax schedule of the step count."""
    o = options_of(name, options)
    initial = {"accumulator": o.get("initial_accumulator_value", 0.0)}
    schedule = o.pop("learning_rate_schedule", None)
    if schedule is not None:  # Keras' schedule of its `iterations`, in place of a fixed rate
        def learning_rate(count: jax.Array, s: dict[str, Any] = schedule) -> jax.Array:
            return rate_at(s["class_name"], s["config"], count)

    def init(params: Any) -> KerasState:
        slots = tuple(jax.tree.map(lambda p, s=s: jnp.full_like(p, initial.get(s, 0.0)), params)
                      for s in SLOTS[name])
        return KerasState(jnp.zeros([], jnp.int32), slots, jnp.ones([], jnp.float32))

    def update(grads: Any, state: KerasState, params: Any = None) -> tuple[Any, KerasState]:
        lr = jnp.asarray(learning_rate(state.count) if callable(learning_rate) else learning_rate,
                         jnp.float32)
        t = (state.count + 1).astype(jnp.float32)
        u_t = o.get("beta_1", 0.0) * (1.0 - 0.5 * 0.96 ** t)
        u_product = state.u_product * u_t
        grads = clip(grads, o)
        leaves, tree = jax.tree.flatten(grads)
        slot_leaves = [jax.tree.leaves(s) for s in state.slots]
        param_leaves = jax.tree.leaves(params)
        updates, new_slots = [], [[] for _ in state.slots]
        for i, g in enumerate(leaves):
            delta, slots = step_update(name, o, g, param_leaves[i], [s[i] for s in slot_leaves], lr, t,
                                       u_t, u_product)
            if o.get("weight_decay"):
                delta = delta - param_leaves[i] * o["weight_decay"] * lr
            updates.append(delta)
            for k, s in enumerate(slots):
                new_slots[k].append(s)
        slots = tuple(jax.tree.unflatten(tree, s) for s in new_slots)
        new_u = u_product if name == "nadam" else state.u_product
        return jax.tree.unflatten(tree, updates), KerasState(state.count + 1, slots, new_u)

    return optax.GradientTransformation(init, update)


def rate_at(kind: str, c: dict[str, Any], step: Any, xp: Any = jnp) -> Any:
    """Keras' schedule `kind` at optimizer step `step` (its `iterations`), in NumPy or JAX."""
    step = xp.asarray(step, xp.float32)
    if kind in ("ExponentialDecay", "InverseTimeDecay"):
        p = step / c["decay_steps"]
        p = xp.floor(p) if c.get("staircase") else p
        if kind == "ExponentialDecay":
            return c["initial_learning_rate"] * c["decay_rate"] ** p
        return c["initial_learning_rate"] / (1 + c["decay_rate"] * p)
    if kind == "PiecewiseConstantDecay":
        b, v = c["boundaries"], c["values"]
        out = xp.where(step <= b[0], v[0], 0.0) + xp.where(step > b[-1], v[-1], 0.0)
        for low, high, value in zip(b[:-1], b[1:], v[1:-1], strict=True):
            out = out + xp.where((step > low) & (step <= high), value, 0.0)
        return out
    if kind == "PolynomialDecay":
        p = xp.minimum(step, c["decay_steps"]) / c["decay_steps"]
        end = c.get("end_learning_rate", 0.0001)
        return (c["initial_learning_rate"] - end) * (1 - p) ** c.get("power", 1.0) + end
    if kind == "CosineDecay":
        done = xp.minimum(step, c["decay_steps"]) / c["decay_steps"]
        alpha = c.get("alpha", 0.0)
        return c["initial_learning_rate"] * ((1 - alpha) * 0.5 * (1 + xp.cos(xp.pi * done)) + alpha)
    raise ValueError(f"unknown learning-rate schedule {kind!r}")
