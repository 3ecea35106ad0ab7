"""`keras.callbacks`, run from the engine's hooks with Keras' logs.

The engine trains a stretch of an epoch in one compiled call. Epoch hooks run between epochs, as
in Keras. Batch hooks (`on_train_batch_begin/end`, `on_batch_begin/end`) are replayed after each
compiled chunk, once per batch, in order, with the running loss and accuracy of the epoch up to
that batch, from the per-step values the chunk returns; they see the weights as of the chunk's
end. Metrics the step does not count (top-k, precision, your own Metric) are fed, batch by
batch, the outputs of the training step itself (its logits, which the chunk then returns), so
the training logs hold what Keras accumulates over the epoch. A callback that changes the
learning rate (LearningRateScheduler, ReduceLROnPlateau) makes the next epoch run a new compiled
step with that rate.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from digitnet import callbacks as engine_callbacks
from digitnet import train
from digitnet.keras.errors import KerasValueError
from digitnet.keras.progbar import Progbar, write
from digitnet.metrics import higher_is_better


def monitor_sign(monitor: str, mode: str) -> float:
    """+1 when lower is better (a loss), -1 when higher is (an accuracy), as Keras' mode='auto'."""
    if mode not in ("auto", "min", "max"):
        raise KerasValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return -1.0 if higher_is_better(monitor) or monitor.endswith(("precision", "recall")) else 1.0
    return 1.0 if mode == "min" else -1.0


class Callback:
    """Subclass and override the hooks you need; `self.model` is the model, `self.params` holds
    epochs, steps (per epoch) and verbose."""

    def __init__(self) -> None:
        self._model: Any = None
        self.params: dict[str, Any] = {}

    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value

    def set_model(self, model: Any) -> None:
        self._model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs: dict | None = None) -> None: ...
    def on_test_end(self, logs: dict | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_begin(self, logs: dict | None = None) -> None: ...
    def on_predict_end(self, logs: dict | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


class History(Callback):
    """What `fit` returns: `.history` maps 'loss', 'accuracy', 'val_loss', … to per-epoch lists."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class ProgbarLogger(Callback):
    """What fit prints: 'Epoch k/N', then the bar (verbose=1) or one line (verbose=2)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.bar = Progbar(self.params["steps"], self.params["verbose"])
        if self.params["epochs"] > 1:
            write(f"Epoch {epoch + 1}/{self.params['epochs']}\n")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.bar.update(batch + 1, logs, finalize=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.bar.update(self.params["steps"], logs, finalize=True)


class LambdaCallback(Callback):
    """Callbacks from functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "on_batch_begin",
             "on_batch_end", "on_train_batch_begin", "on_train_batch_end", "on_test_begin",
             "on_test_end", "on_test_batch_begin", "on_test_batch_end", "on_predict_begin",
             "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")

    def __init__(self, on_epoch_begin: Any = None, on_epoch_end: Any = None, on_train_begin: Any = None,
                 on_train_end: Any = None, on_train_batch_begin: Any = None,
                 on_train_batch_end: Any = None, **kwargs: Any):
        super().__init__()
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end, **kwargs}
        for hook, fn in given.items():
            if hook not in self.HOOKS:
                raise TypeError(f"LambdaCallback() got an unexpected keyword argument {hook!r}")
            if fn is None:
                continue
            if hook in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
                        "on_predict_begin", "on_predict_end"):
                setattr(self, hook, lambda logs=None, fn=fn: fn(logs))
            else:
                setattr(self, hook, lambda i, logs=None, fn=fn: fn(i, logs))


class EarlyStopping(train.EarlyStopping):
    """Keras' EarlyStopping, run by the engine's (so it can keep the best weights cheaply), with
    Keras 3's rules: epochs before `start_from_epoch` are not watched; an improvement that does
    not beat `baseline` does not reset the wait; no stop after the first epoch."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(patience, monitor, restore_best_weights, abs(min_delta))
        self.mode = monitor_sign(monitor, mode)
        self.verbose = verbose
        self.baseline, self.start_from_epoch = baseline, int(start_from_epoch)
        self.stopped_epoch = self.best_epoch = 0

    def reset(self) -> None:
        """At each fit's start (not at each compiled stretch of it), as Keras' on_train_begin:
        the callback can be reused across fits."""
        self.best, self.best_params, self.wait = math.inf, None, 0
        self.stopped_epoch = self.best_epoch = 0

    def improves(self, value: float, reference: float) -> bool:
        return self.mode * value < reference - self.min_delta

    def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None:
        epoch, value = state.epoch - 1, logs.get(self.monitor)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best and self.best_params is None:
            self.best_params, self.best_epoch = jax.tree.map(np.array, state.weights()), epoch
        self.wait += 1
        if self.improves(value, self.best):
            self.best, self.best_epoch = self.mode * value, epoch
            if self.restore_best:
                self.best_params = jax.tree.map(np.array, state.weights())
            if self.baseline is None or self.improves(value, self.mode * self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            state.stop = True

    def on_train_end(self, state: Any) -> None:
        # As Keras 3: the stop, then the restoring (also when training ran to its end).
        if self.stopped_epoch and self.verbose:
            write(f"Epoch {self.stopped_epoch + 1}: early stopping\n")
        if self.verbose and self.restore_best and self.best_params is not None:
            write(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.\n")
        super().on_train_end(state)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) after each epoch, every `save_freq` batches, or only when
    `monitor` improves. `filepath` may hold fields such as 'ckpt-{epoch:02d}-{val_loss:.3f}.keras'
    (and {batch} with save_freq=int)."""

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: Any = "epoch",
                 initial_value_threshold: float | None = None):
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' "
                             "or integer values")
        name = str(filepath)
        if save_weights_only and not name.endswith(".weights.h5"):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the filepath "
                             f"provided must end in `.weights.h5` (Keras weights format). Received: "
                             f"filepath={name}")
        if not save_weights_only and not name.endswith((".keras", ".h5")):
            raise ValueError("The filepath provided must end in `.keras` (Keras model format). "
                             f"Received: filepath={name}")
        self.filepath, self.monitor, self.verbose = name, monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.save_freq = save_freq
        self.sign = monitor_sign(monitor, mode)
        self.best = math.inf if initial_value_threshold is None else self.sign * initial_value_threshold
        self.epoch, self.since_save, self.last_batch = 0, 0, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            return
        added = batch + 1 if self.last_batch is None or batch <= self.last_batch else batch - self.last_batch
        self.since_save += added
        self.last_batch = batch
        if self.since_save >= self.save_freq:
            self.since_save = 0
            self.save(self.epoch, batch, logs or {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            self.save(epoch, None, logs or {})

    def save(self, epoch: int, batch: int | None, logs: dict[str, float]) -> None:
        fields = {"epoch": epoch + 1, **logs}
        if batch is not None:
            fields["batch"] = batch + 1
        path = self.filepath.format(**fields)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            else:
                best = "None" if self.best == math.inf else f"{self.sign * self.best:.5f}"
                if not self.sign * value < self.best:
                    if self.verbose:
                        write(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}\n")
                    return
                if self.verbose:
                    write(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {value:.5f}, "
                          f"saving model to {path}\n")
                self.best = self.sign * value
        elif self.verbose:
            write(f"\nEpoch {epoch + 1}: saving model to {path}\n")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            write(f"\nEpoch {epoch + 1}: finished saving model to {path}\n")


class CSVLogger(Callback):
    """Write each epoch's logs to a CSV file: epoch, then the logs' keys in sorted order (and
    their val_ columns, NA, when the fit has no validation)."""

    def __init__(self, filename: str, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.sep, self.append = str(filename), separator, append
        self.keys: list[str] | None = None
        self.file: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        exists = Path(self.filename).is_file() and Path(self.filename).stat().st_size > 0
        self.header = not (self.append and exists)
        self.file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                # As Keras 3: val_ columns all the same (NA when there is no validation).
                self.keys += [f"val_{k}" for k in self.keys]
            # Keras writes csv's excel dialect: "\r\n" ends each line.
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys],
                                         delimiter=self.sep)
            if self.header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start: schedule(epoch, lr) → the new rate."""

    def __init__(self, schedule: Any, verbose: int = 0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        try:
            lr = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        except TypeError:  # Keras' older one-argument schedules
            lr = self.schedule(epoch)
        if not isinstance(lr, float | np.float32 | np.float64):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr}")
        self.model.optimizer.learning_rate = lr
        if self.verbose > 0:
            write(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.\n")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved for `patience`
    epochs (then wait `cooldown` epochs), down to `min_lr`."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0, **kwargs: Any):
        super().__init__()
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau() got an unexpected keyword argument {next(iter(kwargs))!r}")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.sign, self.min_delta = monitor_sign(monitor, mode), min_delta
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best, self.wait, self.cooldown_counter = math.inf, 0, 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is "
                          f"not available. Available metrics are: {','.join(logs)}.", stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.sign * current < self.best - self.min_delta:
            self.best, self.wait = self.sign * current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(self.model.optimizer.learning_rate)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose > 0:
                        write(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.\n")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite."""

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                                   "Terminating training immediately.")
            write(f"Batch {batch}: Invalid loss, terminating training\n")
            self.model.stop_training = True


class Unsupported(Callback):
    """A Keras callback digitnet.keras does not run: making one is a one-line ValueError that
    names it, rather than an AttributeError or a callback silently doing nothing."""

    why = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise KerasValueError(f"{type(self).__name__}: {self.why}")


class TensorBoard(Callback):
    """Keras' TensorBoard callback, written with tensorboardX (no TensorFlow) to Keras' folders
    and tags: log_dir/train and log_dir/validation event files holding `epoch_<log>` each epoch
    (and `epoch_learning_rate`), `evaluation_<log>_vs_iterations` after each validation,
    `batch_<log>` every `update_freq` batches, and `<weight path>/histogram` every
    `histogram_freq` epochs; with write_graph, the model's JSON as Keras' conceptual graph
    (`keras`). Checked against Keras 3.15.1's files (tests/test_keras_api.py)."""

    def __init__(self, log_dir: Any = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False,
                 update_freq: Any = "epoch", profile_batch: Any = 0, embeddings_freq: int = 0,
                 embeddings_metadata: Any = None):
        super().__init__()
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise KerasValueError("TensorBoard: writing TensorBoard logs needs tensorboardX: pip "
                                  "install 'digitnet[tensorboard]' (or 'digitnet[all]')") from None
        for option, value in (("write_images", write_images), ("profile_batch", profile_batch),
                              ("embeddings_freq", embeddings_freq),
                              ("embeddings_metadata", embeddings_metadata)):
            if value:
                raise KerasValueError(f"TensorBoard: {option} is not supported (scalars and "
                                      "weight histograms are)")
        update_freq = 1 if update_freq == "batch" else update_freq
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise KerasValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a "
                                  f"positive integer, got {update_freq!r}")
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise KerasValueError(f"TensorBoard: histogram_freq must be an integer ≥ 0, got "
                                  f"{histogram_freq!r}")
        self.log_dir, self.histogram_freq, self.update_freq = str(log_dir), histogram_freq, update_freq
        self.write_graph, self.write_steps_per_second = write_graph, write_steps_per_second
        self._summary_writer = SummaryWriter
        self._writers: dict[str, Any] = {}
        self._global_train_batch = 0
        self._steps_before = self._epochs_done = 0
        self._in_fit = False
        self._epoch_start = time.time()

    def _writer(self, split: str) -> Any:
        if split not in self._writers:
            # Keras' file names carry the pid and a count: a second writer in the same second
            # (evaluate after fit) must not replace the first one's file.
            TensorBoard._files += 1
            self._writers[split] = self._summary_writer(
                logdir=os.path.join(self.log_dir, split),
                filename_suffix=f".{os.getpid()}.{TensorBoard._files}.v2")
        return self._writers[split]

    _files = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._global_train_batch, self._epochs_done, self._in_fit = 0, 0, True
        self._steps_before = int(self.model.optimizer.iterations)
        if self.write_graph:  # Keras' conceptual graph: the model's JSON, as TensorBoard reads it
            from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
            from tensorboardX.proto.tensor_pb2 import TensorProto

            meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
                plugin_name="graph_keras_model", content=b"1"))
            graph = TensorProto(dtype="DT_STRING", string_val=[self.model.to_json().encode()])
            summary = Summary(value=[Summary.Value(tag="keras", metadata=meta, tensor=graph)])
            self._writer("train")._get_file_writer().add_summary(summary, 0)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.time()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._global_train_batch += 1

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        for name, value in (logs or {}).items():
            self._writer("train").add_scalar(f"batch_{name}", value, self._global_train_batch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self._epochs_done += 1
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        train["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        if self.write_steps_per_second:
            seconds = max(time.time() - self._epoch_start, 1e-9)
            train["steps_per_second"] = self.params.get("steps", 0) / seconds
        for name, value in train.items():
            self._writer("train").add_scalar(f"epoch_{name}", value, epoch)
        for name, value in logs.items():
            if name.startswith("val_"):
                self._writer("validation").add_scalar(f"epoch_{name[4:]}", value, epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for weight in self.model.weights:  # their paths name the model, as Keras'
                self._writer("train").add_histogram(
                    f"{weight.path.replace(':', '_')}/histogram", np.asarray(weight), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_test_end(self, logs: dict | None = None) -> None:
        # Keras' step: the optimizer's iterations. In fit they are counted once fit ends, so
        # here they are the steps before fit plus those of this epoch and the ones before it.
        step = (self._steps_before + (self._epochs_done + 1) * self.params.get("steps", 0)
                if self._in_fit else int(self.model.optimizer.iterations))
        for name, value in (logs or {}).items():
            self._writer("validation").add_scalar(f"evaluation_{name}_vs_iterations", value, step)
        self._writer("validation").flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._in_fit = False
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class BackupAndRestore(Unsupported):
    why = ("resuming an interrupted fit is not supported by digitnet.keras; save with "
           "keras.callbacks.ModelCheckpoint and load_model, or train with `digitnet train --resume`")


class RemoteMonitor(Unsupported):
    why = "posting logs to a server is not supported by digitnet.keras; use keras.callbacks.CSVLogger"


class SwapEMAWeights(Unsupported):
    why = "the optimizer's use_ema is not supported, so there are no EMA weights to swap"


class Restart(Exception):
    """Raised at an epoch's start when the learning rate changed: fit starts a new stretch."""


class Run(engine_callbacks.Callback):
    """One fit: runs the Keras callbacks from the engine's hooks with Keras' logs, computes the
    epoch's metrics and validation, and keeps the model's weights current for the callbacks."""

    def __init__(self, model: Any, callbacks: list[Any], verbose: int, epochs: int,
                 train: tuple[np.ndarray, Any], validation: Any, batch_size: int, val_batch_size: int,
                 validation_freq: int | list[int] = 1):
        self.model, self.callbacks, self.verbose, self.epochs = model, callbacks, verbose, epochs
        self.train, self.validation, self.validation_freq = train, validation, validation_freq
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.steps = -(-len(train[0]) // batch_size)
        self.begun = -1  # the last epoch whose begin hooks ran
        self.lr = float(model.optimizer.learning_rate)
        self.logs: dict[str, float] = {}
        # Metrics the training step does not count are fed its outputs, batch by batch.
        self.host = [(name, m) for name, m in model._metrics() if m is not None]
        self.needs_outputs = bool(self.host)
        self.queued: list[tuple[Any, Any]] = []  # (outputs, targets) of steps not yet fed

    def keras_callbacks(self) -> list[Callback]:
        return [cb for cb in self.callbacks if isinstance(cb, Callback)]

    def on_train_begin(self, state: Any, steps_per_epoch: int | None = None,
                       epochs: int | None = None) -> None:
        if steps_per_epoch is not None:
            self.stretch_lr = self.lr
            for cb in self.callbacks:
                if isinstance(cb, engine_callbacks.Callback):
                    cb.on_train_begin(state, steps_per_epoch, epochs)
            return
        self.model.stop_training = False
        for cb in self.callbacks:
            if isinstance(cb, EarlyStopping):
                cb.reset()
        for cb in self.keras_callbacks():
            cb.set_model(self.model)
            cb.set_params({"verbose": self.verbose, "epochs": self.epochs, "steps": self.steps})
        for cb in self.keras_callbacks():
            cb.on_train_begin({})

    def on_epoch_begin(self, epoch: int) -> None:
        if self.begun != epoch:
            self.begun = epoch
            self.batch, self.seen, self.loss_sum, self.hits = 0, 0, 0.0, 0
            self.queued = []
            for _, m in self.host:
                m.reset_state()
            for cb in self.callbacks:
                if isinstance(cb, engine_callbacks.Callback):
                    cb.on_epoch_begin(epoch)
                else:
                    cb.on_epoch_begin(epoch, {})
        self.lr = float(self.model.optimizer.learning_rate)
        if self.lr != self.stretch_lr:
            raise Restart

    def on_chunk_end(self, steps_done: int, loss: float, accuracy: float) -> None:
        if steps_done < self.steps and self.batch < steps_done:  # not replayed batch by batch
            for cb in self.callbacks:
                if isinstance(cb, ProgbarLogger):
                    cb.on_train_batch_end(steps_done - 1, self.running(loss, accuracy))

    def on_batch_outputs(self, first_step: int, logits: Any, indices: Any) -> None:
        """The chunk's per-step outputs: queued for replay when batch hooks run (so that each
        batch's logs hold the metrics up to it), else fed to the metrics at once."""
        y = self.train[1]
        outputs = self.model._outputs_of(logits.reshape(-1, logits.shape[-1])).reshape(logits.shape)
        self.queued += [(out, y[idx]) for out, idx in zip(outputs, indices, strict=True)]
        if not isinstance(self, BatchRun):
            self.feed(len(self.queued))

    def feed(self, steps: int) -> None:
        """update_state of the host metrics with the next `steps` queued batches, as Keras updates
        them after each training step."""
        from digitnet.keras.backend import tensor

        for out, y in self.queued[:steps]:
            for _, m in self.host:
                m.update_state(y, tensor(out))
        del self.queued[:steps]

    def replay(self, first_step: int, losses: Any, accuracies: Any) -> None:
        """Each batch of the compiled chunk just run (its mean loss and accuracy): the batch
        hooks, in order, with the epoch's running logs up to that batch, as Keras passes them."""
        n = len(self.train[0])
        for step, (loss, accuracy) in enumerate(zip(losses, accuracies, strict=True), first_step):
            size = min(self.batch_size, n - step * self.batch_size)
            for cb in self.keras_callbacks():
                cb.on_train_batch_begin(self.batch, {})
            self.loss_sum += float(loss) * size
            self.hits += round(float(accuracy) * size)
            self.seen += size
            self.feed(1)
            logs = self.running(self.loss_sum / self.seen, self.hits / self.seen)
            for cb in self.keras_callbacks():
                cb.on_train_batch_end(self.batch, dict(logs))
            self.batch += 1
            if self.model.stop_training:
                break

    def running(self, loss: float, accuracy: float) -> dict[str, float]:
        logs = {"loss": loss}
        for name, m in self.model._metrics():
            logs[name] = accuracy if m is None else float(m.result())
        return dict(sorted(logs.items()))

    def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None:
        self.model.use_params(state.params)
        klogs = self.running(float(logs["loss"]), float(logs["accuracy"]))
        # As Keras' validation_freq: validation after every validation_freq-th epoch, or after
        # the (1-based) epochs listed.
        freq = self.validation_freq
        due = state.epoch in freq if isinstance(freq, list) else state.epoch % freq == 0
        if self.validation is not None and due:
            test = TestRun(self.model, self.keras_callbacks(), 0, 0, in_fit=True)
            test.begin()
            x, y, *weights = self.validation  # (x, y) or, split off with sample_weight, (x, y, w)
            val = self.model._logs_for(x, y, self.val_batch_size, test, prefix="val_",
                                       weights=weights[0] if weights else None)
            test.end({k[4:]: v for k, v in val.items()}, time.time())
            klogs.update(val)
        klogs = dict(sorted(klogs.items()))
        self.logs = klogs
        for cb in self.callbacks:
            if isinstance(cb, engine_callbacks.Callback):
                cb.on_epoch_end(state, klogs)
            else:
                cb.on_epoch_end(int(logs["epoch"]) - 1, klogs)
        if self.model.stop_training:
            state.stop = True
        if state.stop:
            self.model.stop_training = True

    def on_train_end(self, state: Any) -> None:
        for cb in self.callbacks:
            if isinstance(cb, engine_callbacks.Callback):
                cb.on_train_end(state)

    def finish(self) -> None:
        for cb in self.keras_callbacks():
            cb.on_train_end(dict(self.logs))

    def terminate_on_nan(self, epoch: int) -> bool:
        """On a diverged loss: what TerminateOnNaN does, if the fit has one (unless it already
        did, seeing the batch's loss): stop, and end the epoch with the logs so far."""
        stoppers = [cb for cb in self.keras_callbacks() if isinstance(cb, TerminateOnNaN)]
        if not stoppers:
            return False
        if not self.model.stop_training:
            for cb in stoppers:
                cb.on_batch_end(self.batch, {"loss": float("nan")})
        logs = self.running(float("nan"), self.hits / self.seen if self.seen else 0.0)
        for cb in self.keras_callbacks():
            cb.on_epoch_end(epoch, dict(logs))
        self.logs = logs
        return True


class BatchRun(Run):
    """A Run whose callbacks have batch hooks: the engine hands it each chunk's per-batch values
    (it costs the compiled step a little, so only such fits ask for them)."""

    def on_batches_end(self, first_step: int, losses: Any, accuracies: Any) -> None:
        self.replay(first_step, losses, accuracies)


BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")


def wants_batches(callbacks: list[Any]) -> bool:
    """Whether a Keras callback overrides a batch hook (or, for LambdaCallback, was given one)."""
    for cb in callbacks:
        if not isinstance(cb, Callback) or isinstance(cb, ProgbarLogger | History):
            continue
        if isinstance(cb, ModelCheckpoint) and cb.save_freq == "epoch":
            continue
        if isinstance(cb, TensorBoard) and cb.update_freq == "epoch":
            continue
        for hook in BATCH_HOOKS:
            if hook in vars(cb) or getattr(type(cb), hook) is not getattr(Callback, hook):
                return True
    return False


class TestRun:
    """evaluate's callbacks (and fit's, while it validates) and its progress output."""

    def __init__(self, model: Any, callbacks: list[Any], verbose: int, steps: int, in_fit: bool = False):
        self.model, self.callbacks, self.verbose, self.steps = model, callbacks, verbose, steps
        self.in_fit = in_fit

    def begin(self) -> None:
        for cb in self.callbacks:
            if not self.in_fit:
                cb.set_model(self.model)
                cb.set_params({"verbose": self.verbose, "epochs": 1, "steps": self.steps})
            cb.on_test_begin({})

    def batch(self, kind: str, when: str, index: int, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            getattr(cb, f"on_{kind}_batch_{when}")(index, dict(logs))

    def end(self, logs: dict[str, float], start: float) -> None:
        for cb in self.callbacks:
            cb.on_test_end(dict(logs))
        if self.verbose and not self.in_fit:
            bar = Progbar(self.steps, self.verbose)
            bar.start = start
            bar.update(self.steps, logs)
