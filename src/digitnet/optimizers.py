"""The optimizer of a training config: Optax's, with Keras' defaults, then the regularisers
that run as Optax transformations (digitnet.regularize)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optax

from digitnet import regularize
from digitnet.model import Params

if TYPE_CHECKING:
    from digitnet.trainconfig import TrainConfig

# Keras' Adam; digitnet.fused's kernels run the same.
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer, then the max-norm projection and the weight average if asked for."""
    tx = base_optimizer(cfg, total_steps)
    if cfg.max_norm:
        tx = optax.chain(tx, regularize.max_norm(cfg.max_norm))
    if cfg.ema:
        tx = optax.chain(tx, regularize.weight_ema(cfg.ema))
    return tx


def base_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer with Keras' defaults (eps=1e-7 for Adam and RMSprop, rho=0.9)."""
    steps_per_epoch = max(total_steps, 1) / cfg.epochs
    if cfg.schedule == "cosine" and cfg.warmup:
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, round(cfg.warmup * steps_per_epoch),
                                                max(total_steps, 1))
    elif cfg.schedule == "cosine":
        lr = optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
    elif cfg.schedule == "step":
        every = cfg.step_epochs or max(1, cfg.epochs // 3)
        lr = optax.exponential_decay(cfg.lr, max(1, round(every * steps_per_epoch)), cfg.step_gamma,
                                     staircase=True)
    elif cfg.schedule == "onecycle":
        lr = optax.cosine_onecycle_schedule(max(total_steps, 1), cfg.lr)
    else:
        lr = cfg.lr
    if cfg.optimizer == "adam":
        tx = optax.adam(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
    elif cfg.optimizer == "adamw":
        return optax.adamw(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS, weight_decay=cfg.weight_decay,
                           mask=kernel_mask)
    elif cfg.optimizer == "sgd":
        tx = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    else:
        tx = optax.rmsprop(lr, decay=0.9, eps=1e-7)
    if cfg.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=kernel_mask), tx)
    return tx


def kernel_mask(params: Params) -> list[dict[str, bool]]:
    return [{name: name == "kernel" for name in layer} for layer in params]
