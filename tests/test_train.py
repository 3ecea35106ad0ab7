"""The engine on real MNIST: accuracy, determinism, partial batches, resume, NaN, early stop."""

import numpy as np
import pytest

import digitnet
from digitnet import artifacts as art
from digitnet.callbacks import Callback
from digitnet.data.datasets import Dataset
from digitnet.engine import chunk_length, epoch_chunks
from digitnet.errors import TrainingDiverged
from digitnet.model import MLPSpec
from digitnet.train import TrainConfig


def subset(ds: Dataset, n_train: int, n_test: int = 1000) -> Dataset:
    return Dataset("mnist-subset", ds.x_train[:n_train], ds.y_train[:n_train],
                   ds.x_test[:n_test], ds.y_test[:n_test])


def weights_of(model) -> list[np.ndarray]:
    return [np.asarray(v) for layer in model.params for v in layer.values()]


def test_tutorial_model_reaches_93_percent_after_one_epoch(trained_model, mnist):
    acc = trained_model.config["metrics"]["test_accuracy"]
    assert acc >= 0.93, acc
    assert trained_model.predict(mnist.x_test[:5]).tolist() == [7, 2, 1, 0, 4]
    ev = trained_model.evaluate()
    assert ev.accuracy == pytest.approx(acc)
    assert ev.confusion.sum() == 10_000
    assert ev.confusion.trace() == round(acc * 10_000)


def test_same_seed_gives_bit_identical_weights_and_metrics(mnist):
    small = subset(mnist, 3000)
    cfg = TrainConfig(epochs=2, seed=7)
    spec = MLPSpec(dropout=0.2)
    a = digitnet.fit(spec, cfg, small, verbose=False)
    b = digitnet.fit(spec, cfg, small, verbose=False)
    for wa, wb in zip(weights_of(a), weights_of(b), strict=True):
        assert wa.tobytes() == wb.tobytes()
    assert a.history[-1]["loss"] == b.history[-1]["loss"]
    c = digitnet.fit(spec, TrainConfig(epochs=2, seed=8), small, verbose=False)
    assert weights_of(a)[0].tobytes() != weights_of(c)[0].tobytes()


def test_last_partial_batch_is_trained_not_dropped():
    assert epoch_chunks(100, 32, 20) == [(0, 1, 32), (32, 1, 32), (64, 1, 32), (96, 1, 4)]
    assert sum(s * b for _, s, b in epoch_chunks(60_000, 32, 20)) == 60_000
    assert chunk_length(1875, 20) == 75  # a divisor: one compiled shape per epoch
    assert chunk_length(1873, 20) == 93  # prime-ish: target length plus a shorter last chunk


class CountSteps(Callback):
    def __init__(self):
        self.steps = []

    def on_chunk_end(self, steps_done, loss, accuracy):
        self.steps.append(steps_done)


def test_progress_hooks_see_every_step_including_the_partial_batch(mnist):
    counter = CountSteps()
    digitnet.fit(config=TrainConfig(epochs=1, batch_size=64), dataset=subset(mnist, 1000),
                 verbose=False, callbacks=[counter])
    assert counter.steps[-1] == 16  # 15 full batches of 64 + one of 40
    assert len(counter.steps) > 1  # the bar moves during the epoch


class StopAfter(Callback):
    """Simulates a crash right after an epoch's checkpoint was written."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, state, logs):
        if state.epoch == self.epochs:
            raise KeyboardInterrupt


def test_resume_from_checkpoint_equals_an_uninterrupted_run(mnist, tmp_path):
    small = subset(mnist, 2000)
    spec, cfg = MLPSpec(dropout=0.1), TrainConfig(epochs=3, seed=3, schedule="cosine")
    whole = digitnet.fit(spec, cfg, small, out=tmp_path / "whole", verbose=False)
    with pytest.raises(KeyboardInterrupt):
        digitnet.fit(spec, cfg, small, out=tmp_path / "cut", verbose=False,
                     callbacks=[StopAfter(2)])
    assert not (tmp_path / "cut" / art.WEIGHTS).exists()
    assert len(art.read_history(tmp_path / "cut" / art.HISTORY)) == 2
    resumed = digitnet.fit(spec, cfg, small, out=tmp_path / "cut", resume=True, verbose=False)
    for wa, wb in zip(weights_of(whole), weights_of(resumed), strict=True):
        assert wa.tobytes() == wb.tobytes()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    reloaded = digitnet.load(tmp_path / "cut")
    assert reloaded.predict(small.x_test).tolist() == whole.predict(small.x_test).tolist()


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(mnist, tmp_path):
    small = subset(mnist, 2000)
    out = tmp_path / "run"
    digitnet.fit(config=TrainConfig(epochs=1, optimizer="sgd", lr=0.01), dataset=small, out=out,
                 verbose=False)
    good = (out / art.CHECKPOINT).read_bytes()
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        digitnet.fit(config=TrainConfig(epochs=3, optimizer="sgd", lr=0.01), dataset=small,
                     out=out, resume=True, verbose=False,
                     callbacks=[PoisonWeights()])
    assert (out / art.CHECKPOINT).read_bytes() != good  # epoch 2 completed and was saved
    tensors, meta = art.read_tensors(out / art.CHECKPOINT)
    assert meta["epoch"] == "2"
    assert all(np.isfinite(v).all() for v in tensors.values())


class PoisonWeights(Callback):
    """After epoch 2, make the weights absurd so that epoch 3's loss overflows."""

    def on_epoch_end(self, state, logs):
        if state.epoch == 2:
            import jax

            state.params = jax.tree.map(lambda v: v * 1e30, state.params)


def test_absurd_learning_rate_is_reported_as_divergence(mnist):
    with pytest.raises(TrainingDiverged):
        digitnet.fit(config=TrainConfig(epochs=1, optimizer="sgd", lr=1e12),
                     dataset=subset(mnist, 2000), verbose=False)


def test_early_stopping_restores_the_best_weights(mnist):
    small = subset(mnist, 1000, 300)
    model = digitnet.fit(MLPSpec(hidden=(256, 256)),
                         TrainConfig(epochs=30, patience=2, lr=0.01), small, verbose=False)
    val = [h["val_loss"] for h in model.history]
    assert len(val) < 30  # stopped early: a 1000-example set overfits fast at this rate
    best = min(val)
    assert model.evaluate(small.x_test, small.y_test).loss == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("optimizer,extra", [
    ("adamw", {"weight_decay": 1e-4}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}), ("adam", {"schedule": "onecycle", "weight_decay": 1e-5}),
])
def test_each_optimizer_learns(mnist, optimizer, extra):
    lr = 0.05 if optimizer == "sgd" else 1e-3
    model = digitnet.fit(config=TrainConfig(epochs=1, optimizer=optimizer, lr=lr, **extra),
                         dataset=subset(mnist, 5000), verbose=False)
    assert model.config["metrics"]["test_accuracy"] > 0.75  # chance is 0.1


def test_held_out_validation_fraction(mnist):
    model = digitnet.fit(config=TrainConfig(epochs=1, validation="0.2"),
                         dataset=subset(mnist, 2000), verbose=False)
    assert "val_accuracy" in model.history[0]
    none = digitnet.fit(config=TrainConfig(epochs=1, validation="none"),
                        dataset=subset(mnist, 2000), verbose=False)
    assert "val_accuracy" not in none.history[0]


def test_runs_differing_only_in_seed_share_compiled_code():
    from digitnet.engine import engine_for

    spec = MLPSpec()
    a = engine_for(spec, TrainConfig(seed=1, validation="none"), 100)
    assert engine_for(spec, TrainConfig(seed=2, patience=3), 100) is a
    assert engine_for(spec, TrainConfig(seed=1, lr=0.01), 100) is not a
    assert engine_for(MLPSpec(hidden=(32,)), TrainConfig(seed=1), 100) is not a


@pytest.mark.parametrize("n", [1, 1000, 60_000, 70_001])
def test_epoch_order_is_jax_random_permutation(n):
    # The engine sorts JAX's random keys in NumPy (faster on a CPU); the order must be exactly
    # what jax.random.permutation gives, or runs would change with that choice.
    import jax

    from digitnet.engine import engine_for

    engine = engine_for(MLPSpec(), TrainConfig(), 10)
    key, dropout_key = jax.random.key(3), jax.random.key(4)
    for epoch in (0, 7):
        order, epoch_key = engine.epoch_order(key, dropout_key, epoch, n)
        expected = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        np.testing.assert_array_equal(order, np.asarray(expected))
        assert order.dtype == np.int32
    unshuffled = engine_for(MLPSpec(), TrainConfig(shuffle=False), 10)
    np.testing.assert_array_equal(unshuffled.epoch_order(key, dropout_key, 0, n)[0], np.arange(n))


def test_loop_unrolling_changes_speed_not_the_training(mnist):
    # GPUs run several steps per loop iteration (EngineSettings.unroll); the steps, and so the
    # weights, must be the same as one step per iteration, up to float rounding of a fused
    # program.
    from digitnet.engine import EngineSettings

    small, cfg = subset(mnist, 1600), TrainConfig(epochs=2, seed=3, validation="none")
    four = EngineSettings(unroll=4)  # 50 steps a chunk: 12 iterations + 2
    assert four.scan_unroll(50) == 4 and four.scan_unroll(2) == 2
    assert four.scan_unroll(50, draws=True) == 1  # dropout or augmentation
    plain = digitnet.fit(config=cfg, dataset=small, verbose=False, settings=EngineSettings(unroll=1))
    unrolled = digitnet.fit(config=cfg, dataset=small, verbose=False, settings=four)
    for a, b in zip(weights_of(plain), weights_of(unrolled), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert unrolled.history[-1]["loss"] == pytest.approx(plain.history[-1]["loss"], rel=1e-5)


def test_dropout_masks_drawn_by_the_block_train_what_each_step_drawing_its_own_trains(mnist):
    # EngineSettings.mask_block draws a block of steps' dropout masks in one batched draw from
    # the steps' own keys: the same masks, so the same training, bit for bit. 1600 examples
    # are 50 steps a chunk: blocks of 16 leave a remainder of 2 steps.
    from digitnet.engine import EngineSettings

    small = subset(mnist, 1600)
    spec = MLPSpec(hidden=(32, 16), dropout=(0.3, 0.0), input_dropout=0.2)
    cfg = TrainConfig(epochs=2, seed=4, validation="none")
    assert EngineSettings(mask_block=16).mask_block_steps(50, 32 * (32 + 784)) == 16
    assert EngineSettings(mask_block=16).mask_block_steps(50, 0) == 0  # no dropout: no blocks
    assert EngineSettings(mask_block=0).mask_block_steps(50, 100) == 0
    runs = {block: digitnet.fit(spec, cfg, small, verbose=False,
                                settings=EngineSettings(unroll=1, mask_block=block))
            for block in (0, 16)}
    for a, b in zip(weights_of(runs[0]), weights_of(runs[16]), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[0].history, runs[16].history, strict=True):
        assert (a["loss"], a["accuracy"]) == (b["loss"], b["accuracy"])
    # without dropout in training, a model trains differently (the masks do reach the step)
    plain = digitnet.fit(MLPSpec(hidden=(32, 16)), cfg, small, verbose=False,
                         settings=EngineSettings(unroll=1, mask_block=16))
    assert not np.array_equal(weights_of(plain)[0], weights_of(runs[16])[0])


def test_a_split_first_gradient_changes_speed_not_the_training(mnist):
    # EngineSettings.split_rows computes the first kernel's gradient as two products: the same
    # sums, so the same training up to the rounding of the products' kernels (on this CPU's
    # two-thread pool, the same bits: `digitnet calibrate` checks that before choosing it).
    import jax
    import jax.numpy as jnp

    from digitnet.engine import EngineSettings, split_grad_matmul

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 30)).astype(np.float32), rng.standard_normal((30, 5)).astype(np.float32)
    loss = lambda mm: lambda x, w: (jnp.tanh(mm(x, w)) ** 2).sum()  # noqa: E731
    gx, gw = jax.grad(loss(split_grad_matmul(12)), argnums=(0, 1))(x, w)
    want = jax.grad(loss(lambda x, w: x @ w), argnums=(0, 1))(x, w)
    # The gradients are sums of products of O(1) terms: rounding leaves ~1e-6 of absolute error
    # (AVX-512's kernels round other than AVX2's), which small entries show as a larger rtol.
    np.testing.assert_allclose(gw, want[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, want[0], rtol=1e-5, atol=1e-5)
    # its forward pass is the plain product (both compiled: an eager product may take another
    # kernel, with other rounding, on an AVX-512 CPU)
    np.testing.assert_array_equal(jax.jit(split_grad_matmul(12))(x, w), jax.jit(lambda x, w: x @ w)(x, w))

    small, cfg = subset(mnist, 1600), TrainConfig(epochs=1, seed=3, validation="none")
    plain = digitnet.fit(config=cfg, dataset=small, verbose=False, settings=EngineSettings(unroll=2))
    split = digitnet.fit(config=cfg, dataset=small, verbose=False,
                         settings=EngineSettings(unroll=2, split_rows=740))
    for a, b in zip(weights_of(plain), weights_of(split), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg", [TrainConfig(epochs=2, seed=5, validation="none"),
                                 TrainConfig(epochs=1, seed=6, validation="none", batch_size=64,
                                             optimizer="sgd", momentum=0.9, chunks_per_epoch=3)])
@pytest.mark.slow
def test_host_gathered_chunks_train_the_same_bits(mnist, cfg):
    # EngineSettings.host_gather (the CPU's default) hands the compiled chunk its examples
    # gathered by NumPy instead of gathering them in the program: the same examples, so the
    # same bits. 1,250 examples: a partial last batch; the per-step outputs exercise the
    # chunk's example indices.
    from digitnet.engine import EngineSettings

    small = subset(mnist, 1250)
    outputs = [Outputs(), Outputs()]
    runs = [digitnet.fit(config=cfg, dataset=small, verbose=False, callbacks=[out],
                         settings=EngineSettings(unroll=2, host_gather=gather))
            for out, gather in zip(outputs, (False, True), strict=True)]
    seen = np.concatenate(outputs[0].indices)
    assert len(seen) == cfg.epochs * 1250 and sorted(seen[:1250]) == list(range(1250))
    np.testing.assert_array_equal(np.concatenate(outputs[1].indices), seen)
    for a, b in zip(weights_of(runs[0]), weights_of(runs[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    for h, r in zip(runs[0].history, runs[1].history, strict=True):
        assert {**h, "seconds": 0} == {**r, "seconds": 0}


class Outputs(Callback):
    """Keeps each step's example indices (Callback.on_batch_outputs)."""

    needs_outputs = True

    def __init__(self):
        self.indices: list[np.ndarray] = []

    def on_batch_outputs(self, first_step, logits, indices):
        self.indices.append(np.asarray(indices).reshape(-1))


def test_engine_settings_are_part_of_the_engine_cache_key():
    from digitnet.engine import EngineSettings, engine_for

    spec, cfg = MLPSpec(), TrainConfig()
    one, two = EngineSettings(unroll=1), EngineSettings(unroll=2)
    assert engine_for(spec, cfg, 100, one) is engine_for(spec, cfg, 100, EngineSettings(unroll=1))
    assert engine_for(spec, cfg, 100, two) is not engine_for(spec, cfg, 100, one)
    assert engine_for(spec, cfg, 100, two).settings == two
    with pytest.raises(ValueError):
        EngineSettings(unroll=0)


@pytest.mark.slow
def test_per_batch_values_add_up_to_the_epoch(mnist):
    """on_batches_end gets each batch's loss and accuracy, in step order, chunk by chunk; they
    average to the epoch's logs (a last partial batch weighs by its size)."""

    class Batches(Callback):
        def __init__(self):
            self.rows: dict[int, tuple[float, float]] = {}

        def on_batches_end(self, first_step, losses, accuracies):
            for i, (loss, acc) in enumerate(zip(losses, accuracies, strict=True)):
                assert first_step + i not in self.rows
                self.rows[first_step + i] = (loss, acc)

        def on_epoch_end(self, state, logs):
            self.logs = logs

    n, batch = 1010, 32
    cb = Batches()
    digitnet.fit(config=TrainConfig(epochs=1, batch_size=batch, validation="none", chunks_per_epoch=4),
                 dataset=subset(mnist, n), verbose=False, callbacks=[cb])
    steps = -(-n // batch)
    assert sorted(cb.rows) == list(range(steps))
    sizes = np.array([batch] * (steps - 1) + [n - batch * (steps - 1)])
    losses, accs = (np.array([cb.rows[i][j] for i in range(steps)]) for j in (0, 1))
    assert float((losses * sizes).sum() / n) == pytest.approx(cb.logs["loss"], rel=1e-5)
    assert float((accs * sizes).sum() / n) == pytest.approx(cb.logs["accuracy"], abs=1e-9)
    assert all(0 <= a <= 1 for a in accs) and losses.std() > 0
