"""digitnet.fused: the GPU training step's two kernels against XLA's step.

No GPU here: the kernels run in Pallas' interpreter (the same kernel code, executed op by op on
the CPU), and their lowering to Triton for CUDA is checked without compiling it."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import digitnet
from digitnet import fused, runtime
from digitnet.engine import Engine, EngineSettings
from digitnet.model import MLPSpec, preprocess_stats
from digitnet.train import TrainConfig, fit_arrays


@pytest.fixture(scope="module")
def mnist():
    ds = digitnet.load_dataset()
    return ds.x_train[:600], ds.y_train[:600].astype(np.int32)


def run_chunk(spec, cfg, mode, x, y, steps):
    engine = Engine(spec, cfg, steps, EngineSettings(unroll=2, fused=mode))
    params, opt_state, _, key = engine.init_state(cfg.seed)
    params = jax.tree.map(jnp.copy, params)  # the chunk donates its inputs
    stats = jax.device_put(preprocess_stats(spec, x))
    order = jnp.asarray(np.random.default_rng(0).permutation(len(x)).astype(np.int32))
    start = cfg.batch_size  # not at 0: the chunk reads its own slice of the epoch's order
    return engine.train_chunk(params, opt_state, stats, jnp.asarray(x), jnp.asarray(y), order,
                              start, key, steps=steps, batch=cfg.batch_size, per_batch=True)


@pytest.mark.parametrize("hidden,batch,preprocess", [
    ((64, 64), 32, "center"),  # the tutorial
    ((100, 50, 30), 16, "standardize"),  # widths that are not powers of two, three layers
    ((128,), 64, "unit"),
])
@pytest.mark.slow
def test_fused_chunk_matches_xla_step(mnist, hidden, batch, preprocess):
    spec = MLPSpec(hidden=hidden, preprocess=preprocess)
    cfg = TrainConfig(batch_size=batch, lr=3e-3, validation="none")
    assert fused.applies(spec, cfg, batch, soft_labels=False, augmented=False)
    x, y = mnist
    steps = 5
    start = Engine(spec, cfg, steps).init_state(cfg.seed)[0]
    params, opt_state, loss_sum, hits, per_step = run_chunk(spec, cfg, "interpret", x, y, steps)
    ref_params, ref_state, ref_loss, ref_hits, ref_per_step = run_chunk(spec, cfg, None, x, y, steps)
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    assert jax.tree.structure(opt_state) == jax.tree.structure(ref_state)
    # Same up to float rounding and the order of sums. Adam's moments are running sums of the
    # gradients and their squares: they agree to 0.1% of each tensor's largest. Its steps
    # (m/√v) amplify rounding where a gradient is near zero, so the weights' changes agree to
    # that in all but a few elements, and those stay within the steps' bound (lr a step).
    def far(got, want):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        return np.abs(got - want) > 1e-3 * np.abs(want).max()

    for got, want in zip(jax.tree.leaves(opt_state), jax.tree.leaves(ref_state), strict=True):
        assert not far(got, want).any()
    moved = jax.tree.map(lambda p, p0: p - p0, (params, ref_params), (start, start))
    for got, want in zip(jax.tree.leaves(moved[0]), jax.tree.leaves(moved[1]), strict=True):
        assert far(got, want).mean() <= 0.002
        assert np.abs(np.asarray(got) - np.asarray(want)).max() <= 2 * cfg.lr * steps
    assert float(np.abs(np.asarray(moved[1][0]["kernel"])).max()) > 1e-3  # training moved them
    assert int(opt_state[0].count) == steps
    np.testing.assert_allclose(float(loss_sum), float(ref_loss), rtol=1e-5)
    assert int(hits) == int(ref_hits)
    # Each step's values, in order, and the totals are their running sums.
    np.testing.assert_allclose(np.asarray(per_step[0]), np.asarray(ref_per_step[0]), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(per_step[1]), np.asarray(ref_per_step[1]))
    assert per_step[0].shape == per_step[1].shape == (steps,)
    assert int(np.asarray(per_step[1]).sum()) == int(hits)


@pytest.mark.slow
def test_fit_with_the_fused_step_matches_xla(mnist):
    """Whole epochs through the engine: chunks of several fused steps, and a last partial batch
    (12 examples) that XLA's step trains."""
    x, y = mnist[0][:300], mnist[1][:300]
    spec = MLPSpec(hidden=(32, 32))
    cfg = TrainConfig(epochs=2, validation="none", chunks_per_epoch=3)
    stats = preprocess_stats(spec, x)
    states = {}
    for mode in ("interpret", None):
        states[mode] = fit_arrays(spec, cfg, x, y, stats, settings=EngineSettings(unroll=2, fused=mode))
    got, want = states["interpret"], states[None]
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    for h, r in zip(got.history, want.history, strict=True):
        assert h["loss"] == pytest.approx(r["loss"], rel=1e-4)
        assert h["accuracy"] == pytest.approx(r["accuracy"], abs=1 / 300)


def test_what_the_fused_step_covers():
    tutorial, cfg = MLPSpec(), TrainConfig()
    assert fused.applies(tutorial, cfg, 32, soft_labels=False, augmented=False)
    others = [
        (MLPSpec(activation="sigmoid"), cfg, 32),
        (MLPSpec(dropout=0.2), cfg, 32),
        (MLPSpec(hidden=(256, 64)), cfg, 32),
        (tutorial, TrainConfig(optimizer="sgd"), 32),
        (tutorial, TrainConfig(schedule="cosine"), 32),
        (tutorial, TrainConfig(label_smoothing=0.1), 32),
        (tutorial, TrainConfig(loss="mse"), 32),
        (tutorial, TrainConfig(weight_decay=1e-4), 32),
        (tutorial, cfg, 24),  # not a power of two: e.g. an epoch's last, partial batch
        (tutorial, cfg, 8),
    ]
    for spec, config, batch in others:
        assert not fused.applies(spec, config, batch, soft_labels=False, augmented=False), (spec, config)
    assert not fused.applies(tutorial, cfg, 32, soft_labels=True, augmented=False)
    assert not fused.applies(tutorial, cfg, 32, soft_labels=False, augmented=True)


def test_kernels_lower_to_triton_for_cuda():
    """What runs on a GPU: the chunk lowers for CUDA with the kernels as Triton calls (a kernel
    that Triton's lowering cannot take, such as a block whose size is not a power of two,
    fails here)."""
    spec, cfg = MLPSpec(hidden=(100, 64)), TrainConfig(validation="none")
    engine = Engine(spec, cfg, 8, EngineSettings(unroll=5, fused="gpu"))
    params, opt_state, _, key = engine.init_state(1)
    stats = jax.device_put(preprocess_stats(spec, np.zeros((2, 784), np.uint8)))
    x, y = jnp.zeros((512, 28, 28), jnp.uint8), jnp.zeros(512, jnp.int32)
    lowered = engine.train_chunk.trace(params, opt_state, stats, x, y, jnp.arange(512, dtype=jnp.int32),
                                       0, key, steps=8, batch=32, per_batch=True).lower(
                                           lowering_platforms=("cuda",))
    text = lowered.as_text()
    assert text.count("__gpu$xla.gpu.triton") >= 2
    assert "digitnet_step_p" in text and "digitnet_step_q" in text


def test_fused_step_switch(monkeypatch):
    monkeypatch.setenv("DIGITNET_FUSED_STEP", "interpret")
    assert runtime.fused_step() == "interpret"
    monkeypatch.setenv("DIGITNET_FUSED_STEP", "0")
    assert runtime.fused_step() is None
    monkeypatch.delenv("DIGITNET_FUSED_STEP")
    if jax.default_backend() == "cpu":
        assert runtime.fused_step() is None


def test_a_fused_step_that_fails_to_compile_gives_way_to_xla(mnist):
    """Here (no GPU) the Triton kernels cannot compile: the engine warns once and trains with
    XLA's step, bit for bit what an engine without the fused step trains."""
    spec, cfg = MLPSpec(), TrainConfig(validation="none")
    x, y = mnist
    stats = jax.device_put(preprocess_stats(spec, x))
    order = jnp.arange(len(x), dtype=jnp.int32)
    results = []
    for mode in ("gpu", None):
        engine = Engine(spec, cfg, 4, EngineSettings(unroll=2, fused=mode))
        params, opt_state, _, key = engine.init_state(1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results.append(engine.run_chunk(params, opt_state, stats, jnp.asarray(x), jnp.asarray(y),
                                            order, 0, key, steps=4, batch=32))
        assert engine.settings.fused is None
        messages = [str(w.message) for w in caught if "fused GPU" in str(w.message)]
        if mode == "gpu":
            assert len(messages) == 1 and "training with XLA's step instead" in messages[0]
        else:
            assert not messages
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
