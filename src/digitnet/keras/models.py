"""`keras.models`: Sequential and load_model, a thin front end over digitnet's engine.

A Sequential of [Input|Flatten] Dense [Dropout] … Dense(softmax) is an MLPSpec with
preprocess="none" (the user scales inputs, as in the tutorial); fit/evaluate/predict run the
same compiled engine as `digitnet train`.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from digitnet import artifacts
from digitnet.callbacks import TrainState
from digitnet.keras import callbacks as cbs
from digitnet.keras import losses, optimizers
from digitnet.keras.errors import KerasFileError, KerasValueError
from digitnet.keras.h5weights import LayerWeights, h5_bytes, read_weights, write_keras3, write_legacy
from digitnet.keras.layers import INITIALIZERS, Dense, Dropout, Flatten, InputLayer, Layer
from digitnet.keras.utils import next_seed
from digitnet.metrics import evaluate_arrays
from digitnet.model import MLPSpec, init_params, predict_logits, preprocess_stats
from digitnet.optimizers import make_optimizer
from digitnet.train import TrainConfig, fit_arrays

METRICS = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


class Sequential:
    """A stack of layers: Sequential([Dense(64, activation='relu', input_shape=(784,)), …])."""

    def __init__(self, layers: list[Layer] | None = None, name: str | None = None,
                 trainable: bool = True):
        if not trainable:
            raise KerasValueError("Sequential: trainable=False is not supported")
        self.name = name or "sequential"
        self.input_layer: InputLayer | None = None
        self._layers: list[Layer] = []
        self.spec: MLPSpec | None = None
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: str | None = None
        self.label_smoothing = 0.0
        self.metric_names: list[str] = []
        self.stop_training = False
        self.history: cbs.History | None = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------ structure

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def built(self) -> bool:
        return self.spec is not None

    @property
    def input_shape(self) -> tuple[Any, ...]:
        self._require_built()
        return (None, *self.spec.input_shape)

    @property
    def output_shape(self) -> tuple[Any, ...]:
        self._require_built()
        return (None, self.spec.num_classes)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise KerasValueError(f"Sequential.add expects a layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self._layers or self.input_layer is not None:
                raise KerasValueError("an Input must be the first entry of a Sequential model")
            self.input_layer = layer
        else:
            taken = {other.name for other in self._layers}
            if layer.name in taken:
                if not layer.auto_named:
                    raise KerasValueError(f"layer names must be unique; {layer.name!r} is taken")
                base, i = layer.name, 1
                while f"{base}_{i}" in taken:
                    i += 1
                layer.name = f"{base}_{i}"
            self._layers.append(layer)
        self.spec = None
        shape = self._declared_input_shape()
        if shape is not None:
            try:  # as Keras builds when the input shape is known; until the stack is a
                self._build(shape)  # complete classifier, it stays unbuilt
            except KerasValueError:
                pass

    def _declared_input_shape(self) -> tuple[int, ...] | None:
        if self.input_layer is not None:
            return self.input_layer.input_shape
        return self._layers[0].input_shape if self._layers else None

    def _dense(self) -> list[Dense]:
        return [layer for layer in self._layers if isinstance(layer, Dense)]

    def _spec_for(self, input_shape: tuple[int, ...]) -> MLPSpec:
        """The engine's description of this stack, or an error naming what it cannot run."""
        layers = self._layers
        flatten = bool(layers) and isinstance(layers[0], Flatten)
        dense: list[Dense] = []
        rates: list[float] = []
        for layer in layers[int(flatten):]:
            if isinstance(layer, Dense):
                dense.append(layer)
                rates.append(0.0)
            elif isinstance(layer, Dropout) and dense and not rates[-1]:
                rates[-1] = layer.rate
            else:
                where = "first" if isinstance(layer, Flatten) else "after a Dense layer"
                raise KerasValueError(f"{layer.class_name} layer {layer.name!r} is only supported "
                                      f"{where} (once), in an MLP")
        if not dense:
            raise KerasValueError("the model needs at least one Dense layer")
        last = dense[-1]
        if last.activation != "softmax" or last.units < 2:
            raise KerasValueError(
                f"the last Dense layer ({last.name!r}) must be a classifier: activation='softmax' "
                f"with at least 2 units (got {last.activation!r}, {last.units} units)")
        if rates[-1]:
            raise KerasValueError("a Dropout after the last Dense layer is not supported")
        for layer in dense[:-1]:
            if layer.activation == "softmax":
                raise KerasValueError(
                    f"softmax is only supported on the last Dense layer, not on {layer.name!r}")
        if len(input_shape) != 1 and not flatten:
            raise KerasValueError(
                f"inputs of shape {input_shape} need a Flatten() first layer, or reshape them to "
                f"(N, {int(np.prod(input_shape))})")
        acts = tuple(layer.activation for layer in dense[:-1])
        return MLPSpec(input_shape=input_shape, hidden=tuple(d.units for d in dense[:-1]),
                       num_classes=last.units, activation=acts[0] if acts else "relu",
                       activations=acts, dropout=tuple(rates[:-1]), preprocess="none")

    def build(self, input_shape: Any = None) -> None:
        """Create the weights for inputs of shape (None, 784) (or the declared shape)."""
        shape = tuple(input_shape)[1:] if input_shape is not None else self._declared_input_shape()
        if shape is None:
            raise KerasValueError("build needs an input shape, e.g. build((None, 784))")
        self._build(tuple(int(d) for d in shape))

    def _build(self, shape: tuple[int, ...]) -> None:
        spec = self._spec_for(shape)
        fresh = init_params(spec, jax.random.key(next_seed()))
        keys = jax.random.split(jax.random.key(next_seed()), len(fresh))
        for layer, p, a, b, key in zip(self._dense(), fresh, spec.sizes[:-1], spec.sizes[1:], keys,
                                       strict=True):
            if layer.kernel is not None and layer.kernel.shape == (a, b):
                continue  # built before, with the same shape: keep its weights
            init = INITIALIZERS[layer.kernel_initializer][1]
            if init == "glorot_uniform":
                kernel = p["kernel"]
            elif init in ("zeros", "ones"):
                kernel = np.full((a, b), float(init == "ones"), np.float32)
            else:
                kernel = getattr(jax.nn.initializers, init)()(key, (a, b), np.float32)
            layer.kernel, layer.bias = np.asarray(kernel), np.zeros(b, np.float32)
        self.spec = spec

    def _require_built(self) -> None:
        if self.spec is None and self._declared_input_shape() is not None:
            self._build(self._declared_input_shape())  # raises what is wrong with the stack
        if self.spec is None:
            raise KerasValueError(
                "this model has not yet been built: give the first layer an input_shape, call "
                "build((None, features)), or call fit/predict on data first")

    def params(self) -> list[dict[str, np.ndarray]]:
        return [{"kernel": d.kernel, "bias": d.bias} for d in self._dense()]

    def use_params(self, params: list[dict[str, Any]]) -> None:
        for layer, p in zip(self._dense(), params, strict=True):
            layer.kernel, layer.bias = np.asarray(p["kernel"]), np.asarray(p["bias"])

    def count_params(self) -> int:
        self._require_built()
        return self.spec.num_params

    def summary(self, print_fn: Any = None, **_: Any) -> None:
        """Print the layers, their output shapes and parameter counts, as Keras does."""
        self._require_built()
        rows, dims = [], iter(self.spec.sizes[1:])
        units = self.spec.input_dim
        for layer in self._layers:
            n = 0
            if isinstance(layer, Dense):
                n, units = layer.kernel.size + layer.bias.size, next(dims)
            rows.append((f"{layer.name} ({layer.class_name})", f"(None, {units})", n))
        width = max(32, *(len(r[0]) + 2 for r in rows))
        line = "─" * (width + 40)
        total = self.count_params()
        out = [f'Model: "{self.name}"', line,
               f"{'Layer (type)':<{width}}{'Output Shape':<24}{'Param #':>16}", line]
        out += [f"{name:<{width}}{shape:<24}{n:>16,}" for name, shape, n in rows]
        size = f"{total * 4 / 1024:.2f} KB"
        out += [line, f"Total params: {total:,} ({size})", f"Trainable params: {total:,} ({size})",
                "Non-trainable params: 0 (0.00 B)"]
        (print_fn or print)("\n".join(out))

    def get_config(self) -> dict[str, Any]:
        from digitnet.keras.saving import model_config

        self._require_built()
        return model_config(self, keras3=True)["config"]

    # ------------------------------------------------------------ weights

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights: list[Any]) -> None:
        weights = [np.asarray(w, np.float32) for w in weights]
        dense = self._dense()
        if not self.built and weights and weights[0].ndim == 2:
            self._build(self._declared_input_shape() or (weights[0].shape[0],))
        self._require_built()
        if len(weights) != 2 * len(dense):
            raise KerasValueError(f"the model has {2 * len(dense)} weight arrays "
                                  f"({len(dense)} Dense layers), got {len(weights)}")
        for i, layer in enumerate(dense):
            layer.set_weights(weights[2 * i : 2 * i + 2])

    def _layer_weights(self) -> list[LayerWeights]:
        self._require_built()
        return [LayerWeights(layer.class_name, layer.name, layer.get_weights()) for layer in self._layers]

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """'x.weights.h5': Keras 3's layout; 'x.h5': the legacy Keras 2 layout (the tutorial's)."""
        path = Path(filepath)
        self._check_overwrite(path, overwrite)
        if path.name.endswith(".weights.h5"):
            data = h5_bytes(lambda f: write_keras3(f, self._layer_weights(), self.name))
        elif path.suffix in (".h5", ".hdf5"):
            data = h5_bytes(lambda f: write_legacy(f, self._layer_weights()))
        else:
            raise KerasValueError(f"{path}: save_weights needs a name ending in .weights.h5 "
                                  "(Keras 3) or .h5 (legacy Keras 2)")
        artifacts.atomic_write_bytes(path, data)

    def load_weights(self, filepath: str | os.PathLike, skip_mismatch: bool = False,
                     by_name: bool = False) -> None:
        """Weights from a Keras file: .weights.h5, legacy .h5 (weights or whole model), .keras."""
        if skip_mismatch or by_name:
            raise KerasValueError("load_weights: skip_mismatch and by_name are not supported")
        path = Path(filepath)
        if not path.is_file():
            raise KerasFileError(f"{path}: no such file")
        if zipfile.is_zipfile(path):
            from digitnet.keras.saving import read_archive

            _, data = read_archive(path)
            found = read_h5(io.BytesIO(data), path)
        else:
            found = read_h5(path, path)
        self.assign(found, path)

    def assign(self, found: list[LayerWeights], source: Path) -> None:
        dense = self._dense()
        if len(found) != len(dense):
            raise KerasFileError(f"{source}: the file holds weights for {len(found)} layers, the "
                                 f"model has {len(dense)} Dense layers")
        if not self.built and found and found[0].arrays and found[0].arrays[0].ndim == 2:
            self._build(self._declared_input_shape() or (found[0].arrays[0].shape[0],))
        self._require_built()
        for layer, item in zip(dense, found, strict=True):
            want = [w.shape for w in layer.get_weights()]
            got = [a.shape for a in item.arrays]
            if got != want:
                raise KerasFileError(f"{source}: layer {item.name!r} has weights of shapes {got}; "
                                     f"the model's {layer.name!r} needs {want}")
        for layer, item in zip(dense, found, strict=True):
            layer.set_weights(item.arrays)

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, **_: Any) -> None:
        """'x.keras': Keras 3's archive; 'x.h5': the legacy full-model HDF5."""
        from digitnet.keras.saving import archive_bytes, write_legacy_model

        path = Path(filepath)
        self._check_overwrite(path, overwrite)
        layers = self._layer_weights()
        if path.suffix == ".keras":
            data = archive_bytes(self, h5_bytes(lambda f: write_keras3(f, layers, self.name)))
        elif path.suffix in (".h5", ".hdf5"):
            data = h5_bytes(lambda f: write_legacy_model(f, self, layers))
        else:
            raise KerasValueError(f"{path}: save needs a name ending in .keras (or .h5, legacy)")
        artifacts.atomic_write_bytes(path, data)

    @staticmethod
    def _check_overwrite(path: Path, overwrite: bool) -> None:
        if not overwrite and path.exists():
            raise KerasValueError(f"{path} exists and overwrite=False")

    # ------------------------------------------------------------ training and inference

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                loss_weights: Any = None, weighted_metrics: Any = None, **_: Any) -> None:
        """Choose the optimizer, the loss and the metrics, as in Keras."""
        if loss_weights is not None or weighted_metrics:
            raise KerasValueError("compile: loss_weights and weighted_metrics are not supported")
        names = [metrics] if isinstance(metrics, str) else list(metrics or [])
        for m in names:
            if m not in METRICS:
                raise KerasValueError(f"metric {m!r} is not supported; use 'accuracy'")
        if len(names) > 1:
            raise KerasValueError("compile: give one accuracy metric")
        self.optimizer = optimizers.get(optimizer)
        self.loss, self.label_smoothing = losses.get(loss) if loss is not None else (None, 0.0)
        self.metric_names = names

    def _inputs(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub" or x.ndim < 2:
            raise KerasValueError(f"expected a batch of inputs (N, features) of numbers, got "
                                  f"{x.dtype} {x.shape}")
        if not self.built:
            self._build(self._declared_input_shape() or tuple(x.shape[1:]))
        if tuple(x.shape[1:]) != self.spec.input_shape:
            hint = (f"; reshape them with x.reshape((-1, {self.spec.input_dim}))"
                    if int(np.prod(x.shape[1:])) == self.spec.input_dim else "")
            raise KerasValueError(f"the model expects inputs of shape (N, "
                                  f"{', '.join(map(str, self.spec.input_shape))}), got {x.shape}{hint}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise KerasValueError("inputs contain NaN or infinite values")
        return x

    def _targets(self, y: Any, n: int) -> np.ndarray:
        if self.loss is None:
            raise KerasValueError("compile the model with a loss before fit or evaluate, e.g. "
                                  "model.compile(optimizer='adam', loss='categorical_crossentropy', "
                                  "metrics=['accuracy'])")
        t = losses.targets(self.loss, y, self.spec.num_classes)
        if len(t) != n:
            raise KerasValueError(f"{n} inputs but {len(t)} targets")
        return t

    def _stats(self) -> dict[str, np.ndarray]:
        return preprocess_stats(self.spec, np.zeros((0, self.spec.input_dim), np.float32))

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: list[Any] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: Any = True,
            class_weight: Any = None, sample_weight: Any = None, initial_epoch: int = 0,
            steps_per_epoch: Any = None, **_: Any) -> cbs.History:
        """Train; returns a History whose .history holds per-epoch loss, accuracy, val_…"""
        if self.optimizer is None:
            raise KerasValueError("compile the model before fit, e.g. model.compile(optimizer='adam', "
                                  "loss='categorical_crossentropy', metrics=['accuracy'])")
        if class_weight is not None or sample_weight is not None or steps_per_epoch is not None:
            raise KerasValueError("fit: class_weight, sample_weight and steps_per_epoch are not supported")
        if not isinstance(shuffle, bool):
            raise KerasValueError(f"fit: shuffle must be True or False, got {shuffle!r}")
        x = self._inputs(x)
        t = self._targets(y, len(x))
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise KerasValueError("validation_data must be a pair (x_val, y_val)")
            vx = self._inputs(validation_data[0])
            validation = (vx, self._targets(validation_data[1], len(vx)))
        elif validation_split:
            if not 0 < validation_split < 1:
                raise KerasValueError(f"validation_split must be in (0, 1), got {validation_split}")
            cut = int(len(x) * (1 - validation_split))  # the last examples, before shuffling, as Keras
            x, t, validation = x[:cut], t[:cut], (x[cut:], t[cut:])
        verbose = 1 if verbose == "auto" else int(verbose)
        cfg = TrainConfig(epochs=int(epochs), batch_size=int(batch_size or 32), validation="none",
                          seed=next_seed(), shuffle=shuffle, loss=losses.engine_loss(self.loss),
                          label_smoothing=self.label_smoothing,
                          **self.optimizer.train_options())
        params = self.params()
        opt_state = self.optimizer.state
        if opt_state is None:
            opt_state = make_optimizer(cfg, 1).init(params)
        state = TrainState(params=params, opt_state=opt_state, epoch=int(initial_epoch))
        self.history = cbs.History()
        engine_callbacks: list[Any] = [cbs.Bridge(self, [self.history, *(callbacks or [])],
                                                  self.metric_names[0] if self.metric_names else None,
                                                  verbose)]
        if verbose:
            engine_callbacks.append(progress_display(verbose, self.metric_names))
        state = fit_arrays(self.spec, cfg, x, t, self._stats(), validation, state, engine_callbacks)
        self.use_params(state.params)
        self.optimizer.state = jax.tree.map(np.asarray, state.opt_state)
        self.history.model = self
        self.history.params = {"epochs": int(epochs), "verbose": verbose}
        return self.history

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", return_dict: bool = False, **_: Any) -> Any:
        """[loss, accuracy] (or the loss alone when compiled without metrics)."""
        x = self._inputs(x)
        t = self._targets(y, len(x))
        ev = evaluate_arrays(self.spec, self.params(), self._stats(), x, t,
                             loss=losses.engine_loss(self.loss), smoothing=self.label_smoothing)
        values = {"loss": ev.loss, **{m: ev.accuracy for m in self.metric_names}}
        if return_dict:
            return values
        return list(values.values()) if self.metric_names else ev.loss

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto", **_: Any) -> np.ndarray:
        """Softmax probabilities (N, classes)."""
        logits = predict_logits(self.spec, self.params(), self._stats(), self._inputs(x))
        return np.asarray(jax.nn.softmax(logits, axis=-1), np.float32)


def progress_display(verbose: int, metric_names: list[str]) -> Any:
    """A live bar (verbose=1) or a line per epoch (verbose=2, or a notebook without ipywidgets)."""
    import importlib.util

    from rich.console import Console

    if verbose == 1 and not (Console().is_jupyter and importlib.util.find_spec("ipywidgets") is None):
        from digitnet.progress import ProgressBar

        return ProgressBar()
    return cbs.EpochLines(metric_names[0] if metric_names else None)


def read_h5(source: Any, name: Path) -> list[LayerWeights]:
    try:
        with h5py.File(source, "r") as f:
            return read_weights(f, str(name))
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, KerasFileError):
            raise
        raise KerasFileError(f"{name}: not a readable HDF5 weights file ({exc})") from None


def load_model(filepath: str | os.PathLike, custom_objects: Any = None, compile: bool = True,
               safe_mode: bool = True) -> Sequential:
    """A Sequential MLP from a Keras 3 .keras archive or a legacy full-model .h5."""
    from digitnet.keras.saving import compile_options, layers_from_config, read_archive, read_json_attr

    if custom_objects:
        raise KerasValueError("load_model: custom_objects are not supported (no code is loaded)")
    del safe_mode  # always safe: nothing in the file is executed
    path = Path(filepath)
    if not path.is_file():
        raise KerasFileError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        config, data = read_archive(path)
        name, layers = layers_from_config(config, path)
        weights = read_h5(io.BytesIO(data), path)
        training = config.get("compile_config")
    else:
        try:
            with h5py.File(path, "r") as f:
                config = read_json_attr(f, "model_config", path)
                if config is None:
                    raise KerasFileError(f"{path}: no model_config (a weights-only file? build the "
                                         "model and call load_weights)")
                name, layers = layers_from_config(config, path)
                weights = read_weights(f, str(path))
                training = read_json_attr(f, "training_config", path)
        except (OSError, KeyError, ValueError) as exc:  # h5py's errors on a corrupt file
            if isinstance(exc, KerasFileError):
                raise
            raise KerasFileError(f"{path}: not a .keras archive or an HDF5 model ({exc})") from None
    model = Sequential(layers, name=name)
    model.assign(weights, path)
    options = compile_options(training) if compile else None
    if options is not None:
        try:
            model.compile(**options)
        except KerasValueError as exc:
            warnings.warn(f"{path}: loaded without compiling ({exc}); call compile() before fit",
                          stacklevel=2)
    return model
