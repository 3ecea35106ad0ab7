"""Training: the loop over epochs and chunks that drives the compiled engine
(digitnet.engine), reads each chunk's loss, validates, and calls the callbacks.

Optimizers live in digitnet.optimizers, the state and hooks handed to callbacks in
digitnet.callbacks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from digitnet import regularize
from digitnet.callbacks import Callback, TrainState, wants_batches, wants_outputs
from digitnet.deskew import deskew_dataset
from digitnet.engine import EngineSettings, check_finite, engine_for, epoch_chunks, steps_per_epoch
from digitnet.errors import ConfigError, TrainingDiverged
from digitnet.metrics import higher_is_better
from digitnet.model import MLPSpec
from digitnet.trainconfig import TrainConfig


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; restore the best weights."""

    def __init__(self, patience: int, monitor: str = "val_loss", restore_best: bool = True,
                 min_delta: float = 0.0):
        self.patience, self.monitor, self.restore_best = patience, monitor, restore_best
        self.min_delta = min_delta
        self.mode = -1.0 if higher_is_better(monitor) else 1.0
        self.best, self.best_params, self.wait = math.inf, None, 0

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            return
        if self.mode * value < self.best - self.min_delta:
            self.best, self.wait = self.mode * value, 0
            if self.restore_best:
                self.best_params = jax.tree.map(np.array, state.weights())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_params is not None:
            state.params = jax.tree.map(jnp.asarray, self.best_params)
            state.opt_state = regularize.replace_ema(state.opt_state, state.params)


class EpochMeter:
    """Running loss and accuracy of one epoch, fed chunk by chunk; stops on a NaN/Inf loss."""

    def __init__(self, epoch: int, lr: float, callbacks: Sequence[Callback]):
        self.epoch, self.lr, self.callbacks = epoch, lr, callbacks
        self.per_batch = wants_batches(callbacks)
        self.outputs = wants_outputs(callbacks)
        self.loss, self.correct, self.seen, self.steps = 0.0, 0, 0, 0

    def add(self, loss_sum: jax.Array, correct: jax.Array, per_step: tuple | None, steps: int,
            batch: int) -> None:
        value = float(loss_sum)
        first_step = self.steps
        if self.outputs and per_step is not None:
            logits, indices = np.asarray(per_step[2]), np.asarray(per_step[3])
            for cb in self.callbacks:
                cb.on_batch_outputs(first_step, logits, indices)
        if self.per_batch and per_step is not None:
            # Before the divergence check, so that a batch watcher (Keras' TerminateOnNaN)
            # sees the batch whose loss broke.
            losses = (np.asarray(per_step[0], np.float64) / batch).tolist()
            accuracies = (np.asarray(per_step[1], np.float64) / batch).tolist()
            for cb in self.callbacks:
                cb.on_batches_end(first_step, losses, accuracies)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the loss became {value} in epoch {self.epoch + 1}; training stopped "
                f"(lower the learning rate, now {self.lr:g})"
            )
        self.loss += value
        self.correct += int(correct)
        self.seen += steps * batch
        self.steps += steps
        for cb in self.callbacks:
            cb.on_chunk_end(self.steps, self.loss / self.seen, self.correct / self.seen)


def shape_of(a: jax.Array) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(a.shape, a.dtype)


def precompile_evaluation(spec: MLPSpec, params: Any, stats: Any, x: Any, y: Any, loss: str,
                          smoothing: float) -> None:
    """Compile what metrics.evaluate_arrays will run on (x, y), ahead of its first call, which
    then finds the compiled programs; anything that fails here is left for that call to raise."""
    from digitnet.metrics import compiled_loss_values
    from digitnet.model import SLICE, compiled_forward

    try:
        x = np.asarray(x).reshape(len(x), -1)
        for rows in dict.fromkeys(min(SLICE, len(x) - i) for i in range(0, len(x), SLICE)):
            compiled_forward(spec).lower(params, stats, x[:rows]).compile()
        logits = jax.ShapeDtypeStruct((len(x), spec.num_classes), jnp.float32)
        compiled_loss_values.lower(logits, np.asarray(y), loss=loss, smoothing=smoothing).compile()
    except Exception:  # noqa: BLE001 - the evaluation itself meets the same error and reports it
        pass


def fit_arrays(
    spec: MLPSpec,
    cfg: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    stats: dict[str, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    state: TrainState | None = None,
    callbacks: Sequence[Callback] = (),
    settings: EngineSettings | None = None,
    sample_weight: np.ndarray | None = None,
) -> TrainState:
    """Train on arrays x (N, ...) of raw inputs and y (N,) of integer labels, or (N, classes)
    of target rows (soft labels). `sample_weight` (N,): each example's loss weight, as Keras'
    fit(sample_weight=...).

    Pass `state` (from a checkpoint) to resume: epochs before `state.epoch` are skipped, and
    since every epoch's shuffle and dropout masks derive from (seed, epoch), the result is the
    same as an uninterrupted run. `settings`: how the engine runs (EngineSettings.default()
    when None); they change speed, not the steps.
    """
    from digitnet.metrics import evaluate_arrays

    n = len(x)
    if n == 0:
        raise ConfigError("no training examples")
    chunks = epoch_chunks(n, cfg.batch_size, cfg.chunks_per_epoch)
    epoch_steps = steps_per_epoch(n, cfg)
    engine = engine_for(spec, cfg, epoch_steps, settings)
    y = np.asarray(y, np.float32 if np.ndim(y) == 2 else np.int32)
    if sample_weight is not None:  # the engine's targets become (targets, weights)
        y = (y, np.asarray(sample_weight, np.float32).reshape(n))
    # Deskewing is deterministic: done once here, not in every step (it rounds to uint8, so
    # the step sees the same pixels either way).
    xd = deskew_dataset(x.reshape(n, *spec.input_shape)) if spec.deskew else jax.device_put(x)
    yd = jax.device_put(y)
    statsd = jax.device_put(stats)
    # What each chunk's examples are gathered from (Engine.chunk_data): on the host, views of
    # the same memory on a CPU.
    xh, yh = (np.asarray(xd), y) if engine.settings.host_gather else (xd, yd)
    # The training step compiles in a thread while this one compiles and runs the rest of the
    # start (initial weights; the shuffler's thread: the first shuffle).
    compiling = threading.Thread(target=engine.precompile,
                                 args=(statsd, xd, yd, chunks, wants_batches(callbacks),
                                       wants_outputs(callbacks)),
                                 name="digitnet-compile", daemon=True)
    compiling.start()
    params, opt_state, order_key, dropout_key = engine.init_state(cfg.seed)
    if state is None:
        state = TrainState(params=params, opt_state=opt_state)
    else:
        state.params = jax.tree.map(jnp.asarray, state.params)
        state.opt_state = jax.tree.map(jnp.asarray, state.opt_state)
    for cb in callbacks:
        cb.on_train_begin(state, epoch_steps, cfg.epochs)

    # Each epoch's shuffle is worked out in a thread while the epoch before it trains.
    shuffler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitnet-shuffle")
    upcoming = shuffler.submit(engine.epoch_order, order_key, dropout_key, state.epoch, n)
    compiling.join()  # else the first chunk would compile the same program a second time
    compiling_eval = None
    if validation is not None:
        # The end of epoch 1 evaluates: its programs compile meanwhile, beside the training.
        compiling_eval = threading.Thread(
            target=precompile_evaluation, name="digitnet-compile-eval",
            args=(spec, jax.tree.map(shape_of, state.params), statsd, *validation, cfg.loss,
                  cfg.label_smoothing))
        compiling_eval.start()
    try:
        for epoch in range(state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            order, epoch_key = upcoming.result()
            if epoch + 1 < cfg.epochs:
                upcoming = shuffler.submit(engine.epoch_order, order_key, dropout_key, epoch + 1, n)
            meter = EpochMeter(epoch, cfg.lr, callbacks)
            # Read each chunk's loss only after the next chunk is queued, so that the device
            # never waits for Python.
            pending = None
            for start, steps, batch in chunks:
                data = engine.chunk_data(xh, yh, order, start, steps, batch)
                state.params, state.opt_state, loss_sum, correct, per_step = engine.run_chunk(
                    state.params, state.opt_state, statsd, *data, start, epoch_key,
                    steps=steps, batch=batch, per_batch=meter.per_batch, outputs=meter.outputs)
                if pending is not None:
                    meter.add(*pending)
                pending = (loss_sum, correct, per_step, steps, batch)
            meter.add(*pending)
            check_finite(state.params, epoch, cfg.lr)

            logs: dict[str, float] = {
                "epoch": epoch + 1,
                "loss": meter.loss / meter.seen,
                "accuracy": meter.correct / meter.seen,
            }
            if validation is not None:
                # val_loss is the training objective (label smoothing included), as in Keras.
                ev = evaluate_arrays(spec, state.weights(), statsd, *validation, loss=cfg.loss,
                                     smoothing=cfg.label_smoothing)
                logs["val_loss"], logs["val_accuracy"] = ev.loss, ev.accuracy
            logs["seconds"] = time.perf_counter() - t0
            state.epoch = epoch + 1
            state.history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(state, logs)
            if state.stop:
                break
    finally:
        shuffler.shutdown(wait=False, cancel_futures=True)
        if compiling_eval is not None:
            # A process that exits (a diverged run) while XLA compiles in a thread aborts.
            compiling_eval.join()
    for cb in callbacks:
        cb.on_train_end(state)
    return state

