"""The optimizer of a training config: Optax's, with Keras' defaults, then the regularisers
that run as Optax transformations (digitnet.regularize)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import optax

from digitnet import regularize
from digitnet.knobs import active
from digitnet.model import Params

if TYPE_CHECKING:
    from digitnet.trainconfig import TrainConfig

# Keras' Adam; digitnet.fused's kernels run the same.
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer, then the max-norm projection and the weight average if asked for."""
    tx = base_optimizer(cfg, total_steps)
    if active(cfg.max_norm):
        tx = optax.chain(tx, regularize.max_norm(cfg.max_norm))
    if active(cfg.ema):
        tx = optax.chain(tx, regularize.weight_ema(cfg.ema))
    return tx


def base_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer with Keras' defaults (eps=1e-7 for Adam and RMSprop, rho=0.9)."""
    if isinstance(cfg.lr, jax.Array) and cfg.schedule != "constant":
        # A population member's traced rate (digitnet.knobs): every schedule here is the peak
        # rate times a shape, and Optax's schedules branch on the rate's value.
        unit, peak = learning_rate(cfg, total_steps, 1.0), cfg.lr
        lr = lambda count: peak * unit(count)  # noqa: E731
    else:
        lr = learning_rate(cfg, total_steps, cfg.lr)
    if cfg.optimizer_options or cfg.optimizer not in ("adam", "adamw", "sgd", "rmsprop"):
        from digitnet.kerasopt import keras_optimizer

        tx = keras_optimizer(cfg.optimizer, lr, cfg.optimizer_options)
        if active(cfg.weight_decay):
            tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=kernel_mask), tx)
        return tx
    if cfg.optimizer == "adam":
        tx = optax.adam(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
    elif cfg.optimizer == "adamw":
        return optax.adamw(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS, weight_decay=cfg.weight_decay,
                           mask=kernel_mask)
    elif cfg.optimizer == "sgd":
        tx = optax.sgd(lr, momentum=cfg.momentum if active(cfg.momentum) else None,
                       nesterov=cfg.nesterov)
    else:
        tx = optax.rmsprop(lr, decay=0.9, eps=1e-7)
    if active(cfg.weight_decay):
        tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=kernel_mask), tx)
    return tx


def learning_rate(cfg: TrainConfig, total_steps: int, peak: float) -> Any:
    """The rate (a number or an Optax schedule) of cfg.schedule peaking at `peak`."""
    steps_per_epoch = max(total_steps, 1) / cfg.epochs
    if cfg.schedule == "cosine" and cfg.warmup:
        return optax.warmup_cosine_decay_schedule(0.0, peak, round(cfg.warmup * steps_per_epoch),
                                                  max(total_steps, 1))
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(peak, max(total_steps, 1))
    if cfg.schedule == "step":
        every = cfg.step_epochs or max(1, cfg.epochs // 3)
        return optax.exponential_decay(peak, max(1, round(every * steps_per_epoch)), cfg.step_gamma,
                                       staircase=True)
    if cfg.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(max(total_steps, 1), peak)
    return peak


def kernel_mask(params: Params) -> list[dict[str, bool]]:
    return [{name: name == "kernel" for name in layer} for layer in params]
