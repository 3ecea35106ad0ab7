"""`keras.callbacks`: Callback, History, EarlyStopping, ModelCheckpoint.

Training runs in compiled chunks of steps, so callbacks see epochs (begin/end) and the start and
end of training; per-batch hooks are not called.
"""

from __future__ import annotations

import warnings
from typing import Any

from digitnet import callbacks as engine_callbacks
from digitnet import train
from digitnet.keras.errors import KerasValueError
from digitnet.metrics import higher_is_better


def monitor_sign(monitor: str, mode: str) -> float:
    """+1 when lower is better (a loss), -1 when higher is (an accuracy), as Keras' mode='auto'."""
    if mode not in ("auto", "min", "max"):
        raise KerasValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return -1.0 if higher_is_better(monitor) else 1.0
    return 1.0 if mode == "min" else -1.0


class Callback:
    """Subclass and override on_epoch_end(epoch, logs) and friends; `self.model` is the model."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...


class History(Callback):
    """What `fit` returns: `.history` maps 'loss', 'accuracy', 'val_loss', … to per-epoch lists."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class EarlyStopping(train.EarlyStopping):
    """Keras' EarlyStopping, run by the engine's (so it can keep the best weights cheaply)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        if baseline is not None or start_from_epoch:
            raise KerasValueError("EarlyStopping: baseline and start_from_epoch are not supported")
        super().__init__(patience, monitor, restore_best_weights, abs(min_delta))
        self.mode = monitor_sign(monitor, mode)
        self.verbose = verbose


class ModelCheckpoint(Callback):
    """Save the model (or its weights) after each epoch, or only when `monitor` improves.
    `filepath` may hold fields such as 'ckpt-{epoch:02d}-{val_loss:.3f}.keras'."""

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str = "epoch",
                 initial_value_threshold: float | None = None):
        super().__init__()
        if save_freq != "epoch":
            raise KerasValueError("ModelCheckpoint: only save_freq='epoch' is supported")
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.sign = monitor_sign(monitor, mode)
        self.best = float("inf") if initial_value_threshold is None else self.sign * initial_value_threshold

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warnings.warn(f"ModelCheckpoint: {self.monitor!r} is not among the logged metrics "
                              f"({', '.join(logs)}); nothing saved", stacklevel=2)
                return
            if self.sign * value >= self.best:
                return
            self.best = self.sign * value
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved to {path}")


def keras_logs(logs: dict[str, float], metric: str | None) -> dict[str, float]:
    """The engine's logs under Keras' names: loss, <metric>, val_loss, val_<metric>."""
    out = {}
    for prefix in ("", "val_"):
        if prefix + "loss" in logs:
            out[prefix + "loss"] = float(logs[prefix + "loss"])
            if metric:
                out[prefix + metric] = float(logs[prefix + "accuracy"])
    return out


class Bridge(engine_callbacks.Callback):
    """Runs Keras callbacks from the engine's hooks, with Keras' metric names in `logs`, and
    keeps the model's weights current for them."""

    def __init__(self, model: Any, callbacks: list[Any], metric: str | None, verbose: int):
        self.model, self.callbacks, self.metric, self.verbose = model, callbacks, metric, verbose

    def on_train_begin(self, state: engine_callbacks.TrainState, steps_per_epoch: int, epochs: int) -> None:
        self.model.stop_training = False
        for cb in self.callbacks:
            if isinstance(cb, engine_callbacks.Callback):
                cb.on_train_begin(state, steps_per_epoch, epochs)
            else:
                cb.set_model(self.model)
                cb.set_params({"epochs": epochs, "steps": steps_per_epoch, "verbose": self.verbose})
                cb.on_train_begin({})

    def on_epoch_begin(self, epoch: int) -> None:
        for cb in self.callbacks:
            if isinstance(cb, engine_callbacks.Callback):
                cb.on_epoch_begin(epoch)
            else:
                cb.on_epoch_begin(epoch, {})

    def on_epoch_end(self, state: engine_callbacks.TrainState, logs: dict[str, float]) -> None:
        self.model.use_params(state.params)
        klogs = keras_logs(logs, self.metric)
        for cb in self.callbacks:
            if isinstance(cb, engine_callbacks.Callback):
                cb.on_epoch_end(state, klogs)
            else:
                cb.on_epoch_end(int(logs["epoch"]) - 1, dict(klogs))
        if self.model.stop_training:
            state.stop = True

    def on_train_end(self, state: engine_callbacks.TrainState) -> None:
        for cb in self.callbacks:
            if isinstance(cb, engine_callbacks.Callback):
                cb.on_train_end(state)
        self.model.use_params(state.params)
        for cb in self.callbacks:
            if not isinstance(cb, engine_callbacks.Callback):
                cb.on_train_end({})


class EpochLines(engine_callbacks.Callback):
    """One line per epoch on stdout, as Keras' verbose=2 (and in notebooks without ipywidgets,
    where a live progress bar cannot render)."""

    def __init__(self, metric: str | None):
        self.metric = metric

    def on_train_begin(self, state: engine_callbacks.TrainState, steps_per_epoch: int, epochs: int) -> None:
        self.steps, self.epochs = steps_per_epoch, epochs

    def on_epoch_end(self, state: engine_callbacks.TrainState, logs: dict[str, float]) -> None:
        parts = [f"{self.steps}/{self.steps}", f"{logs['seconds']:.1f}s"]
        parts += [f"{k}: {v:.4f}" for k, v in keras_logs(logs, self.metric).items()]
        print(f"Epoch {int(logs['epoch'])}/{self.epochs}\n" + " - ".join(parts), flush=True)
