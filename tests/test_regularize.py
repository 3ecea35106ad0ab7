"""Regularisers and schedules of the training step, against closed forms on small inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from digitnet.callbacks import TrainState
from digitnet.errors import ConfigError
from digitnet.metrics import loss_values
from digitnet.model import MLPSpec, forward, init_params
from digitnet.optimizers import make_optimizer
from digitnet.regularize import ema_params
from digitnet.train import TrainConfig


def toy_params(seed: int = 0):
    return init_params(MLPSpec(input_shape=(6,), hidden=(5,), num_classes=3), jax.random.key(seed))


def test_label_smoothing_matches_the_hand_formula():
    # Keras' definition: cross-entropy against (1 - ε)·t + ε/K, for labels and target rows alike.
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], np.float32)
    labels = np.array([0, 2])
    soft = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]], np.float32)
    eps, k = 0.1, 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for t in (np.eye(k)[labels], soft):
        expected = -(((1 - eps) * t + eps / k) * np.log(p)).sum(1)
        given = labels if t is not soft else soft
        got = loss_values(jnp.asarray(logits), jnp.asarray(given), "cross_entropy", eps)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    with pytest.raises(ConfigError, match="cross-entropy"):
        TrainConfig(loss="mse", label_smoothing=0.1)


def test_max_norm_holds_after_a_step():
    params = toy_params()
    tx = make_optimizer(TrainConfig(optimizer="sgd", lr=10.0, max_norm=0.5), total_steps=10)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: -jnp.ones_like(p), params)  # a big step: columns must grow
    updates, state = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    for layer in new:
        norms = np.linalg.norm(np.asarray(layer["kernel"]), axis=0)
        assert norms.max() <= 0.5 + 1e-5
        np.testing.assert_allclose(norms, 0.5, rtol=1e-5)  # all were clipped to the bound
    # Biases are not projected: they moved by the full step.
    np.testing.assert_allclose(np.asarray(new[0]["bias"]), 10.0, rtol=1e-6)


def test_ema_equals_its_closed_form_after_k_steps():
    decay, lr, k = 0.9, 0.1, 7
    params = toy_params()
    tx = make_optimizer(TrainConfig(optimizer="sgd", lr=lr, ema=decay), total_steps=k)
    state = tx.init(params)
    g = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    p = params
    for _ in range(k):
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    # SGD with a constant gradient: p_j = p_0 - j·lr·g, and
    # ema_k = d^k·p_0 + (1 - d)·Σ_{j=1..k} d^(k-j)·p_j.
    for layer0, got in zip(params, ema_params(state), strict=True):
        for name in layer0:
            p0 = np.asarray(layer0[name], np.float64)
            want = decay**k * p0 + (1 - decay) * sum(
                decay ** (k - j) * (p0 - j * lr * 0.5) for j in range(1, k + 1))
            np.testing.assert_allclose(np.asarray(got[name]), want, rtol=1e-5, atol=1e-6)
    assert TrainState(params=p, opt_state=state).weights() is ema_params(state)
    assert TrainState(params=p, opt_state=tx.init(p)).weights() is not p


def test_weights_are_the_params_without_ema():
    params = toy_params()
    state = make_optimizer(TrainConfig(), 10).init(params)
    assert ema_params(state) is None
    assert TrainState(params=params, opt_state=state).weights() is params


@pytest.mark.parametrize("schedule, extra, want", [
    ("step", {"step_epochs": 2, "step_gamma": 0.5}, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]),
    ("cosine", {"warmup": 2}, [0.0, 0.5, 1.0]),
])
def test_schedules(schedule, extra, want):
    # One step per epoch, so the learning rate is read off as -update for a gradient of 1.
    cfg = TrainConfig(optimizer="sgd", lr=1.0, schedule=schedule, epochs=6, **extra)
    tx = make_optimizer(cfg, total_steps=6)
    p = {"w": jnp.zeros(())}
    s = tx.init(p)
    rates = []
    for _ in want:
        u, s = tx.update({"w": jnp.ones(())}, s, p)
        rates.append(-float(u["w"]))
    np.testing.assert_allclose(rates, want, atol=1e-6)


def test_input_dropout_only_in_training():
    spec = MLPSpec(input_shape=(6,), hidden=(5,), num_classes=3, input_dropout=0.5)
    params, stats = toy_params(), {"shift": jnp.zeros(6), "scale": jnp.ones(6)}
    x = jnp.ones((4, 6))
    plain = forward(params, stats, x, MLPSpec(input_shape=(6,), hidden=(5,), num_classes=3))
    np.testing.assert_array_equal(np.asarray(forward(params, stats, x, spec)), np.asarray(plain))
    dropped = forward(params, stats, x, spec, jax.random.key(0))
    assert not np.allclose(np.asarray(dropped), np.asarray(plain))
    assert "input_dropout (Dropout 0.5)" in spec.summary()


def test_early_stopping_restores_the_best_average():
    from digitnet.train import EarlyStopping

    tx = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1, ema=0.5), total_steps=3)
    params = toy_params()
    state = TrainState(params=params, opt_state=tx.init(params))
    stopper = EarlyStopping(patience=1)
    stopper.on_epoch_end(state, {"val_loss": 1.0})
    best = [np.asarray(v) for v in jax.tree.leaves(state.weights())]
    state.opt_state = tx.update(jax.tree.map(jnp.ones_like, params), state.opt_state, params)[1]
    stopper.on_epoch_end(state, {"val_loss": 2.0})
    assert state.stop
    stopper.on_train_end(state)
    for u, v in zip(best, jax.tree.leaves(state.weights()), strict=True):
        np.testing.assert_array_equal(u, np.asarray(v))
