"""`keras.Model`, `keras.Sequential` and `load_model`: a front end over digitnet's engine.

Every model digitnet.keras runs is a chain: [Input] [Flatten] [Dropout] Dense [Activation]
[Dropout] … Dense [Softmax], made as a Sequential (possibly of Sequentials), with the functional
API (`Model(inputs, outputs)`), or as a subclassed Model whose `call` is such a chain. The chain
becomes an MLPSpec with preprocess="none" (the user scales inputs); fit/evaluate/predict run the
same compiled engine as `digitnet train`. The engine trains on logits; a model whose last layer
is linear outputs them, one that ends in softmax outputs probabilities, as in Keras.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from digitnet import artifacts
from digitnet.callbacks import TrainState
from digitnet.engine import steps_per_epoch as epoch_steps
from digitnet.errors import TrainingDiverged
from digitnet.keras import callbacks as cbs
from digitnet.keras import losses, optimizers
from digitnet.keras import metrics as kmetrics
from digitnet.keras.backend import tensor
from digitnet.keras.errors import KerasFileError, KerasValueError
from digitnet.keras.h5weights import (
    LayerWeights,
    h5_bytes,
    read_keras3_paths,
    read_weights,
    write_keras3,
    write_keras3_paths,
    write_legacy,
)
from digitnet.keras.layers import (
    Activation,
    BatchNormalization,
    Dense,
    Dropout,
    Flatten,
    InputLayer,
    KerasTensor,
    Layer,
    Normalization,
    input_stats,
    snake_case,
)
from digitnet.keras.progbar import Progbar, resolve
from digitnet.keras.utils import next_seed, unique_name
from digitnet.metrics import compiled_loss_values
from digitnet.model import INPUT, MLPSpec, init_params, predict_logits
from digitnet.optimizers import make_optimizer
from digitnet.regularize import penalty
from digitnet.runtime import enable_compile_cache
from digitnet.spec import BN_EPSILON, BN_MOMENTUM, PER_DENSE
from digitnet.train import fit_arrays
from digitnet.trainconfig import TrainConfig


class Model(Layer):
    """keras.Model: `Model(inputs, outputs)` (functional), or subclass it and define `call`."""

    class_name = "Functional"
    # The batch dimension of the inputs a subclassed model was first built on (its first batch,
    # as Keras builds it): Keras' summary shows the layers' shapes as built.
    built_batch: int | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Model:
        # As in Keras 3, Model(inputs, outputs) makes a Functional (a subclass of Model).
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            cls = Functional
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        inputs = kwargs.pop("inputs", args[0] if args else None)
        outputs = kwargs.pop("outputs", args[1] if len(args) > 1 else None)
        name = kwargs.pop("name", None)
        trainable = kwargs.pop("trainable", True)
        if len(args) > 2 or kwargs:
            extra = next(iter(kwargs)) if kwargs else "a third positional argument"
            raise TypeError(f"Model.__init__() got an unexpected keyword argument {extra!r}")
        if not trainable:
            raise KerasValueError("Model: trainable=False is not supported")
        self._init_model(name)
        if inputs is not None or outputs is not None:
            self._functional(inputs, outputs)
        elif type(self).call is Model.call:
            raise KerasValueError("keras.Model() needs inputs and outputs (the functional API), "
                                  "or subclass it and define call()")
        else:
            self.class_name = type(self).__name__
            if self.auto_named:
                self.name = unique_name(snake_case(type(self).__name__))

    def _init_model(self, name: str | None, default: str = "functional") -> None:
        self.auto_named = name is None
        self.name = name or unique_name(default)
        self.input_shape_declared: tuple[int, ...] | None = None
        self.input_layer: InputLayer | None = None
        self._layers: list[Layer] = []
        self._shape: tuple[int, ...] | None = None  # the input shape it is built for
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: str | None = None
        self.loss_object: losses.Loss | None = None
        self.label_smoothing = 0.0
        self.compiled_metrics: list[Any] = []
        self._log_names: list[str] = []
        self._made_metrics: dict[str, kmetrics.Metric] = {}
        self.stop_training = False
        self.history: cbs.History | None = None

    def _functional(self, inputs: Any, outputs: Any) -> None:
        for what, value in (("inputs", inputs), ("outputs", outputs)):
            if isinstance(value, list | tuple | dict):
                if len(value) != 1 or isinstance(value, dict):
                    raise KerasValueError(f"Model: several {what} are not supported; digitnet.keras "
                                          "runs models with one input and one output (an MLP)")
        inputs = inputs[0] if isinstance(inputs, list | tuple) else inputs
        outputs = outputs[0] if isinstance(outputs, list | tuple) else outputs
        if not isinstance(inputs, KerasTensor) or not isinstance(outputs, KerasTensor):
            raise KerasValueError("Model(inputs, outputs) expects keras.Input(...) and the tensor "
                                  "that layer calls made from it")
        chain = outputs.chain()
        if chain[0] is not inputs.layer or inputs.parent is not None:
            raise KerasValueError("Model: the outputs were not computed from these inputs")
        self.input_layer = chain[0]
        self._layers = chain[1:]
        self.input_shape_declared = self.input_layer.input_shape
        self._build_layers(self.input_shape_declared)

    def call(self, inputs: Any, training: Any = None) -> Any:
        """The forward pass: override it in a subclass, as a chain of layer calls."""
        raise NotImplementedError

    # ------------------------------------------------------------ structure

    @property
    def input_shape(self) -> tuple[Any, ...]:  # type: ignore[override]
        shape = self._shape or self._declared_input_shape()
        if shape is None:
            raise KerasValueError(f"model {self.name!r} has not been built yet: it has no input shape")
        return (None, *shape)

    @input_shape.setter
    def input_shape(self, value: Any) -> None:
        pass  # Layer.__init__'s attribute; a model's input shape comes from its layers

    @property
    def output_shape(self) -> tuple[Any, ...]:
        shape = (None, *self.input_shape[1:])
        for layer in self._atoms():
            shape = layer.output_shape_for(shape)
        return shape

    @property
    def layers(self) -> list[Layer]:
        """The model's layers; a functional model's start with its InputLayer, as in Keras 3."""
        self._trace_call()
        functional = self.input_layer is not None and self.class_name != "Sequential"
        return [self.input_layer, *self._layers] if functional else list(self._layers)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index into `layers`, with Keras' errors."""
        if index is not None and name is not None:
            raise KerasValueError(f"Provide only a layer name or a layer index. Received: index={index}, "
                                  f"name={name}.")
        if index is not None:
            if len(self.layers) <= index:
                raise KerasValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                      f"{len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise KerasValueError(f"No such layer: {name}. Existing layers are: "
                                  f"{[layer.name for layer in self.layers]}.")
        raise KerasValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def built(self) -> bool:
        return self._shape is not None

    @property
    def subclassed(self) -> bool:
        """A keras.Model subclass defining call() (neither Sequential nor functional)."""
        return (self.input_layer is None and not isinstance(self, Sequential)
                and type(self).call is not Model.call)

    @property
    def inputs(self) -> list[KerasTensor]:
        return [KerasTensor(self.input_shape, self.input_layer or InputLayer(self.input_shape[1:]))]

    @property
    def outputs(self) -> list[KerasTensor]:
        return [KerasTensor(self.output_shape, self._layers[-1] if self._layers else self)]

    def _declared_input_shape(self) -> tuple[int, ...] | None:
        if self.input_layer is not None:
            return self.input_layer.input_shape
        if self.input_shape_declared is not None:
            return self.input_shape_declared
        for layer in self._layers[:1]:
            if isinstance(layer, Model):
                return layer._shape or layer._declared_input_shape()
            return layer.input_shape
        return None

    def _trace_call(self, shape: tuple[int, ...] | None = None) -> None:
        """A subclassed model's layers: its call() run once on a symbolic input."""
        if type(self).call is Model.call or self._layers:
            return
        shape = shape or self._shape
        if shape is None:
            return
        out = self.call(KerasTensor((None, *shape), InputLayer(shape=shape)))
        if not isinstance(out, KerasTensor):
            raise KerasValueError(f"{type(self).__name__}.call must return the result of layer calls "
                                  f"on its input (a chain of layers), got {type(out).__name__}")
        self._layers = out.chain()[1:]

    def _atoms(self) -> list[Layer]:
        """The chain of plain layers, nested models expanded."""
        self._trace_call()
        out: list[Layer] = []
        for layer in self._layers:
            if isinstance(layer, Model):
                layer._trace_call(self._shape)
                out += layer._atoms()
            else:
                out.append(layer)
        return out

    def _dense(self) -> list[Dense]:
        return [layer for layer in self._atoms() if isinstance(layer, Dense)]

    def _plan(self, input_shape: tuple[int, ...]) -> tuple[MLPSpec, str]:
        """(the engine's spec, 'softmax', 'sigmoid' or 'logits'), or an error naming what it
        cannot run. A 1-unit last Dense (linear or sigmoid) is a binary classifier."""
        atoms = self._atoms()
        flatten = False
        dense: list[list[Any]] = []  # [layer, activation]
        rates: list[float] = []
        input_rate = 0.0
        input_norm: BatchNormalization | None = None
        for layer in atoms:
            if isinstance(layer, Flatten) and not dense and not flatten and not input_rate and not input_norm:
                flatten = True
            elif hasattr(layer, "affine") and not dense and not input_rate and not input_norm:
                pass  # an input scaling layer: the engine's input transform (see _stats)
            elif (isinstance(layer, BatchNormalization) and not dense and not input_rate
                  and not input_norm and (flatten or len(input_shape) == 1)):
                input_norm = layer  # of the flat inputs, after the scaling layers
            elif isinstance(layer, Dense):
                dense.append([layer, layer.activation])
                rates.append(0.0)
            elif isinstance(layer, Activation) and dense and not rates[-1]:
                if dense[-1][1] != "linear":
                    raise KerasValueError(f"{layer.class_name} layer {layer.name!r} follows a Dense layer "
                                          f"that already has activation {dense[-1][1]!r}")
                dense[-1][1] = layer.activation
            elif isinstance(layer, BatchNormalization) and dense and not rates[-1] and len(dense[-1]) == 2:
                # of the pre-activations while the Dense is linear so far (an Activation layer
                # may follow), else of its outputs
                dense[-1].append(("before" if dense[-1][1] == "linear" else "after", layer))
            elif isinstance(layer, Dropout) and not dense and not input_rate:
                input_rate = layer.rate
            elif isinstance(layer, Dropout) and dense and not rates[-1]:
                rates[-1] = layer.rate
            else:
                where = {Flatten: "first", Activation: "right after a Dense layer"}.get(
                    type(layer) if not isinstance(layer, Activation) else Activation,
                    "between Dense layers (once)")
                if isinstance(layer, InputLayer):
                    where = "first"
                if hasattr(layer, "affine"):
                    where = "before the first Dense layer (and before an input Dropout)"
                if isinstance(layer, BatchNormalization):
                    where = ("right after a hidden Dense layer (before or after its activation, "
                             "before its Dropout; once), or on the flat inputs (after Flatten and "
                             "the scaling layers, before the first Dense and an input Dropout)")
                raise KerasValueError(f"{layer.class_name} layer {layer.name!r} is only supported "
                                      f"{where}, in an MLP")
        if not dense:
            raise KerasValueError("the model needs at least one Dense layer")
        last, act = dense[-1][0], dense[-1][1]
        binary = last.units == 1 and act in ("linear", "sigmoid")
        if not binary and (act not in ("linear", "softmax") or last.units < 2):
            raise KerasValueError(
                f"the last Dense layer ({last.name!r}) must be a classifier: at least 2 units "
                f"outputting logits (no activation) or probabilities (softmax), or 1 unit (binary) "
                f"outputting a logit or a sigmoid probability; got {act!r} with {last.units} units")
        if rates[-1]:
            raise KerasValueError("a Dropout after the last Dense layer is not supported")
        if len(dense[-1]) > 2:
            raise KerasValueError(f"BatchNormalization layer {dense[-1][2][1].name!r} after the last "
                                  "Dense layer is not supported: batch normalization is for hidden "
                                  "layers")
        for layer, hidden, *_ in dense[:-1]:
            if hidden == "softmax":
                raise KerasValueError(f"activation {hidden!r} is only supported on the last Dense "
                                      f"layer, not on {layer.name!r}")
        if len(input_shape) != 1 and not flatten:
            raise KerasValueError(
                f"inputs of shape {input_shape} need a Flatten() first layer, or reshape them to "
                f"(N, {int(np.prod(input_shape))})")
        acts = tuple(d[1] for d in dense[:-1])
        norms = [d[2] if len(d) > 2 else None for d in dense[:-1]]
        batchnorm = {"batchnorm": tuple(n[0] if n else "none" for n in norms),
                     "batchnorm_momentum": tuple(n[1].momentum if n else BN_MOMENTUM for n in norms),
                     "batchnorm_epsilon": tuple(n[1].epsilon if n else BN_EPSILON for n in norms)}
        spec = MLPSpec(input_shape=input_shape, hidden=tuple(d[0].units for d in dense[:-1]),
                       num_classes=2 if binary else last.units, activation=acts[0] if acts else "relu",
                       activations=acts, dropout=tuple(rates[:-1]), input_dropout=input_rate,
                       preprocess="none", output="sigmoid" if binary else "softmax",
                       **batchnorm, use_bias=tuple(d[0].use_bias for d in dense),
                       input_batchnorm=input_norm is not None,
                       input_batchnorm_momentum=input_norm.momentum if input_norm else BN_MOMENTUM,
                       input_batchnorm_epsilon=input_norm.epsilon if input_norm else BN_EPSILON,
                       **{name: tuple(d[0].penalties()[name] for d in dense) for name in PER_DENSE})
        return spec, act if act in ("softmax", "sigmoid") else "logits"

    @property
    def spec(self) -> MLPSpec | None:
        if self._shape is None:
            return None
        return self._plan(self._shape)[0]

    @property
    def output_kind(self) -> str:
        self._require_built()
        return self._plan(self._shape)[1]

    def build(self, input_shape: Any = None) -> None:
        """Create the weights for inputs of shape (None, 784) (or the declared shape)."""
        shape = tuple(input_shape)[1:] if input_shape is not None else self._declared_input_shape()
        if shape is None:
            raise KerasValueError("build needs an input shape, e.g. build((None, 784))")
        if self._shape is None and input_shape is not None:
            self.built_batch = tuple(input_shape)[0]
        self._build_layers(tuple(int(d) for d in shape))

    def _build_layers(self, shape: tuple[int, ...]) -> None:
        """Give every Dense layer weights for inputs of `shape` (keeping those it has)."""
        self._trace_call(shape)
        atoms = self._atoms()
        current: tuple[Any, ...] = (None, *shape)
        todo: list[tuple[Dense, int]] = []
        for layer in atoms:
            if isinstance(layer, InputLayer):
                continue
            if isinstance(layer, Dense):
                todo.append((layer, int(current[-1])))
            current = layer.output_shape_for(current)
            if isinstance(layer, BatchNormalization):
                layer.build(current)
        try:  # the engine's initial weights for the MLP this is, as digitnet train draws them
            spec: MLPSpec | None = self._plan(shape)[0]
        except KerasValueError:
            spec = None  # not a classifier yet: weights for now, drawn again once it is one
        if spec is not None:
            fresh = init_params(spec, jax.random.key(next_seed()))
            keys = jax.random.split(jax.random.key(next_seed()), len(fresh))
        else:
            keys = jax.random.split(jax.random.key(0), max(len(todo), 1))
        for i, (layer, fan_in) in enumerate(todo):
            if (layer._kernel is not None and layer._kernel.shape == (fan_in, layer.units)
                    and not (spec is not None and getattr(layer, "provisional", False))):
                continue  # built before, with the same shape: keep its weights
            default = layer.kernel_initializer.default and spec is not None
            layer.kernel, layer.bias = layer.initial_weights(
                keys[i], fan_in, fresh[i]["kernel"] if default else None)
            layer.provisional = spec is None
        self._shape = shape
        for layer in self._layers:
            if isinstance(layer, Model) and layer._shape is None:
                layer._shape = shape

    def _require_built(self) -> None:
        if self._shape is None and self._declared_input_shape() is not None:
            self._build_layers(self._declared_input_shape())
        if self._shape is None:
            raise KerasValueError(
                "this model has not yet been built: give the first layer an input_shape, call "
                "build((None, features)), or call fit/predict on data first")

    def _batchnorms(self) -> tuple[BatchNormalization | None, list[BatchNormalization | None]]:
        """The BatchNormalization of the inputs (before the first Dense), and per Dense layer
        the one that follows it (None: none)."""
        first: BatchNormalization | None = None
        out: list[BatchNormalization | None] = []
        for layer in self._atoms():
            if isinstance(layer, Dense):
                out.append(None)
            elif isinstance(layer, BatchNormalization) and not out:
                first = layer
            elif isinstance(layer, BatchNormalization) and out[-1] is None:
                out[-1] = layer
        return first, out

    def params(self) -> list[dict[str, np.ndarray]]:
        """The engine's weights: per Dense layer its kernel and bias, and the weights of the
        BatchNormalization after it; the first layer's also the inputs' normalization's."""
        first, after = self._batchnorms()
        out = [{"kernel": d._kernel, "bias": d._bias, **(bn.engine_weights() if bn else {})}
               for d, bn in zip(self._dense(), after, strict=True)]
        if first is not None and out:
            out[0].update({INPUT + k: v for k, v in first.engine_weights().items()})
        return out

    def use_params(self, params: list[dict[str, Any]]) -> None:
        first, after = self._batchnorms()
        for layer, bn, p in zip(self._dense(), after, params, strict=True):
            layer.kernel, layer.bias = np.asarray(p["kernel"]), np.asarray(p["bias"])
            if bn is not None:
                bn.set_weights([np.asarray(p[name]) for name in bn.WEIGHTS])
        if first is not None:
            first.set_weights([np.asarray(params[0][INPUT + name]) for name in first.WEIGHTS])

    def count_params(self) -> int:
        self._require_built()
        return sum(w.size for w in self.get_weights())

    def summary(self, line_length: int | None = None, positions: Any = None, print_fn: Any = None,
                expand_nested: bool = False, show_trainable: bool = False,
                layer_range: Any = None) -> None:
        """Print the layers, their output shapes and parameter counts, as Keras does."""
        from digitnet.keras.summary import summary_text

        (print_fn or print)(summary_text(self, show_trainable))

    def get_config(self) -> dict[str, Any]:
        from digitnet.keras.saving import model_config

        self._require_built()
        return model_config(self, keras3=True)["config"]

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Any:
        """The model get_config() describes, with fresh weights: a Sequential, a functional
        chain (keras.Model.from_config), or your subclass called with the config."""
        from digitnet.keras.saving import layers_from_config

        if cls not in (Model, Functional, Sequential):
            return cls(**config)  # a subclassed model's own get_config(), as Keras does
        functional = cls is not Sequential
        kind = "Functional" if isinstance(config, dict) and "input_layers" in config else "Sequential"
        name, layers = layers_from_config({"class_name": kind, "config": config}, Path("from_config"),
                                          chain_model)
        return chain_model(name, layers, functional=functional)

    def to_json(self, **kwargs: Any) -> str:
        """The model's Keras description as JSON (keras.models.model_from_json reads it)."""
        from digitnet.keras.saving import model_config

        self._require_built()
        config = model_config(self, keras3=True)
        config.pop("compile_config", None)
        return json.dumps(config, **kwargs)

    # ------------------------------------------------------------ weights

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self._weighted() for w in layer.get_weights()]

    def _weighted(self) -> list[Layer]:
        """The layers holding weights, in order: Dense layers and adapted Normalization layers."""
        return [layer for layer in self._atoms()
                if isinstance(layer, Dense | BatchNormalization)
                or (isinstance(layer, Normalization) and layer.get_weights())]

    @property
    def weights(self) -> list[Any]:
        scope = f"{self.name}/" if self.class_name == "Sequential" else ""  # as Keras names them
        out = []
        for layer in self._atoms():
            if isinstance(layer, Dense | BatchNormalization):
                for v in layer.weights:
                    v.scope = scope
                    out.append(v)
        return out

    @property
    def trainable_weights(self) -> list[Any]:
        return [v for v in self.weights if v.trainable]

    @property
    def non_trainable_weights(self) -> list[Any]:
        return [v for v in self.weights if not v.trainable]

    def set_weights(self, weights: list[Any]) -> None:
        weights = [np.asarray(w, np.float32) for w in weights]
        first = next((w for w in weights if w.ndim == 2), None)
        if self._shape is None and first is not None:
            self._build_layers(self._declared_input_shape() or (first.shape[0],))
        self._require_built()
        held = self._weighted()
        counts = [layer.weight_count if isinstance(layer, Dense) else
                  4 if isinstance(layer, BatchNormalization) else 3 for layer in held]
        if len(weights) != sum(counts):
            dense = self._dense()
            raise KerasValueError(f"the model has {sum(counts)} weight arrays "
                                  f"({len(dense)} Dense layers), got {len(weights)}")
        start = 0
        for layer, n in zip(held, counts, strict=True):
            layer.set_weights(weights[start : start + n])
            start += n

    def _layer_weights(self) -> list[LayerWeights]:
        """The plain layers' weights in order, models inside the model expanded (Keras files of
        the model as the one chain of layers it computes)."""
        self._require_built()
        return [LayerWeights(layer.class_name, layer.name, layer.get_weights()) for layer in self._atoms()]

    def keeps_nesting(self) -> bool:
        """Whether Keras files keep this model's structure: a Sequential or functional model
        holding such models (not subclassed ones, which Keras needs the class of)."""
        return self.class_name in ("Sequential", "Functional") and not self._flat() and all(
            layer.keeps_nesting() or layer._flat() for layer in self._layers if isinstance(layer, Model))

    def _flat(self) -> bool:
        return self.class_name in ("Sequential", "Functional") and not any(
            isinstance(layer, Model) for layer in self._layers)

    def _keras3_paths(self, prefix: str = "") -> list[tuple[str, Layer]]:
        """Each plain layer with the path Keras 3 keeps its weights under: in a Sequential or
        functional model `layers/<class>[_k]`, numbered per class, models inside recursed into;
        in a subclassed model the attribute holding the layer."""
        out: list[tuple[str, Layer]] = []
        if self.class_name in ("Sequential", "Functional"):
            used: dict[str, int] = {}
            named = []
            for layer in self._layers:
                base = snake_case(layer.class_name)
                named.append((f"{prefix}layers/{base}" + (f"_{used[base]}" if base in used else ""), layer))
                used[base] = used.get(base, 0) + 1
        else:
            self._trace_call()
            attrs = {id(v): k for k, v in reversed(vars(self).items()) if isinstance(v, Layer)}
            missing = [layer.name for layer in self._layers if id(layer) not in attrs]
            if missing:
                raise KerasValueError(f"saving: layer {missing[0]!r} of {self.class_name} is not an "
                                      "attribute of the model; Keras names a subclassed model's "
                                      "weights by the attributes holding its layers")
            named = [(prefix + attrs[id(layer)], layer) for layer in self._layers]
        for path, layer in named:
            out += layer._keras3_paths(path + "/") if isinstance(layer, Model) else [(path, layer)]
        return out

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """'x.weights.h5': Keras 3's layout; 'x.h5': the legacy Keras 2 layout (the tutorial's)."""
        path = Path(filepath)
        self._check_overwrite(path, overwrite)
        if path.name.endswith(".weights.h5") and not self._flat():
            self._require_built()
            entries = [(p, LayerWeights(a.class_name, a.name, a.get_weights()))
                       for p, a in self._keras3_paths()]
            data = h5_bytes(lambda f: write_keras3_paths(f, entries))
        elif path.name.endswith(".weights.h5"):
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
        source: Any = path
        if zipfile.is_zipfile(path):
            from digitnet.keras.saving import read_archive

            source = io.BytesIO(read_archive(path)[1])
        found = self._read_by_paths(source, path) if not self._flat() and self.built else None
        self.assign(found if found is not None else read_h5(source, path, lambda found: self._check_found(
            found, path)), path)

    def _read_by_paths(self, source: Any, name: Path) -> list[LayerWeights] | None:
        """A nested or subclassed model's Dense weights at their Keras 3 paths, if the file
        has them all (Keras wrote it, or save_weights did); else None (a file of the chain)."""
        paths = [p for p, layer in self._keras3_paths() if isinstance(layer, Dense)]
        try:
            with h5py.File(source, "r") as f:
                return read_keras3_paths(f, paths, str(name))
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, KerasFileError):
                raise
            raise KerasFileError(f"{name}: not a readable HDF5 weights file ({exc})") from None

    def assign(self, found: list[LayerWeights], source: Path) -> None:
        self._check_found(found, source)
        for kind, layers in self._weight_kinds().items():
            for layer, item in zip(layers, [i for i in found if i.class_name == kind], strict=True):
                layer.set_weights(item.arrays)

    def _weight_kinds(self) -> dict[str, list[Any]]:
        """The layers a weights file fills, by the class the file names them by, each in order."""
        return {"Normalization": self._adaptable_norms(), "Dense": self._dense(),
                "BatchNormalization": [layer for layer in self._atoms()
                                       if isinstance(layer, BatchNormalization)]}

    def _adaptable_norms(self) -> list[Any]:
        return [layer for layer in self._atoms()
                if isinstance(layer, Normalization) and layer.input_mean is None]

    def _check_found(self, found: list[LayerWeights], source: Path) -> None:
        """The file's weights (arrays, or h5py datasets not yet read) have this model's shapes."""
        norms = self._adaptable_norms()
        stats = [item for item in found if item.class_name == "Normalization"]
        if len(stats) != len(norms):
            raise KerasFileError(f"{source}: the file holds statistics for {len(stats)} Normalization "
                                 f"layers, the model has {len(norms)} adaptable ones")
        norms = [item for item in found if item.class_name == "BatchNormalization"]
        found = [item for item in found if item.class_name == "Dense"]
        dense = self._dense()
        if len(found) != len(dense):
            raise KerasFileError(f"{source}: the file holds weights for {len(found)} layers, the "
                                 f"model has {len(dense)} Dense layers")
        batchnorms = self._weight_kinds()["BatchNormalization"]
        if len(norms) != len(batchnorms):
            raise KerasFileError(f"{source}: the file holds weights for {len(norms)} "
                                 f"BatchNormalization layers, the model has {len(batchnorms)}")
        if self._shape is None and found and found[0].arrays and found[0].arrays[0].ndim == 2:
            self._build_layers(self._declared_input_shape() or (found[0].arrays[0].shape[0],))
        self._require_built()
        for layer, item in zip([*dense, *batchnorms], [*found, *norms], strict=True):
            want = [w.shape for w in layer.get_weights()]
            got = [a.shape for a in item.arrays]
            if got != want:
                raise KerasFileError(f"{source}: layer {item.name!r} has weights of shapes {got}; "
                                     f"the model's {layer.name!r} needs {want}")

    def export(self, filepath: Any = None, format: str = "tf_saved_model", **kwargs: Any) -> None:  # noqa: A002
        """Keras' export to a TensorFlow SavedModel (or ONNX, OpenVINO): not digitnet.keras'."""
        raise KerasValueError(f"export: exporting a model (format={format!r}) is not supported by "
                              "digitnet.keras; save it with model.save('model.keras'), or export ONNX "
                              "through digitnet.Model.from_keras (docs/keras.md)")

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, zipped: Any = None) -> None:
        """'x.keras': Keras 3's archive; 'x.h5': the legacy full-model HDF5."""
        from digitnet.keras.saving import archive_bytes, write_legacy_model

        path = Path(filepath)
        self._check_overwrite(path, overwrite)
        layers = self._layer_weights()
        if path.suffix == ".keras" and self.keeps_nesting():
            entries = [(p, LayerWeights(a.class_name, a.name, a.get_weights()))
                       for p, a in self._keras3_paths()]
            data = archive_bytes(self, h5_bytes(lambda f: write_keras3_paths(f, entries)))
        elif path.suffix == ".keras":
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

    # ------------------------------------------------------------ calling

    def output_shape_for(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._shape is None:
            self._build_layers(tuple(int(d) for d in shape[1:]))
        for layer in self._atoms():
            shape = layer.output_shape_for(shape)
        return shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._outputs(self._inputs(x))

    def __call__(self, inputs: Any, training: Any = None, mask: Any = None, **kwargs: Any) -> Any:
        """On a KerasTensor: a step of a functional model. On an array: the model's output, as
        a Tensor (NumPy, with TensorFlow's .numpy())."""
        if kwargs:
            raise TypeError(f"{type(self).__name__}.call() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        if training:
            raise KerasValueError("calling a model with training=True (dropout on) is not supported; "
                                  "fit() trains it")
        return Layer.__call__(self, inputs)

    def _outputs(self, x: np.ndarray) -> np.ndarray:
        """The model's output for checked inputs: probabilities or logits, as its last layer."""
        return self._outputs_of(predict_logits(self.spec, self.params(), self._stats(), x))

    def _outputs_of(self, logits: Any) -> np.ndarray:
        """What the last layer outputs, from the engine's logits."""
        if self.output_kind == "softmax":
            return np.asarray(jax.nn.softmax(logits, axis=-1), np.float32)
        if self.output_kind == "sigmoid":
            return np.asarray(jax.nn.sigmoid(logits), np.float32)
        return np.asarray(logits, np.float32)

    # ------------------------------------------------------------ training and inference

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, loss_weights: Any = None,
                metrics: Any = None, weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: Any = "auto",
                auto_scale_loss: bool = True) -> None:
        """Choose the optimizer, the loss and the metrics, as in Keras."""
        del run_eagerly, jit_compile, auto_scale_loss  # how Keras runs; the engine always compiles
        if loss_weights is not None or weighted_metrics:
            raise KerasValueError("compile: loss_weights and weighted_metrics are not supported")
        if steps_per_execution != 1:
            raise KerasValueError("compile: steps_per_execution is not supported (the engine runs "
                                  "compiled chunks of an epoch by itself)")
        if isinstance(metrics, dict):
            raise KerasValueError("compile: metrics per output (a dict) are not supported")
        items = [metrics] if isinstance(metrics, str) else list(metrics or [])
        self.compiled_metrics = [kmetrics.get(m) for m in items]
        self._made_metrics: dict[str, kmetrics.Metric] = {}  # metric names resolved per output
        # Keras logs a repeated name as name_1, name_2, … (metrics=['auc', 'auc'], or two
        # metrics given one name).
        self._log_names: list[str] = []
        for m in self.compiled_metrics:
            name = base = m if isinstance(m, str) else m.name
            k = 0
            while name in self._log_names:
                k += 1
                name = f"{base}_{k}"
            self._log_names.append(name)
        self.optimizer = optimizers.get(optimizer)
        self.loss_object = losses.get_object(loss) if loss is not None else None
        self.loss = self.loss_object.keras_name if self.loss_object else None
        self.label_smoothing = self.loss_object.label_smoothing if self.loss_object else 0.0

    def _metrics(self) -> list[tuple[str, kmetrics.Metric | None]]:
        """(log name, metric) for each compiled metric, with None where the training step's hit
        count gives it exactly. On a one-unit output, 'accuracy' is Keras' binary accuracy
        (output > 0.5: on a logit too, as Keras thresholds whatever the model outputs)."""
        binary = self.spec is not None and self.spec.output == "sigmoid"
        kind = self.output_kind if binary else None
        out: list[tuple[str, kmetrics.Metric | None]] = []
        for m, name in zip(self.compiled_metrics, self._log_names, strict=True):
            if not binary:
                out.append((name, None if kmetrics.engine_counted(m) else m))
            elif isinstance(m, str):
                counted = m in ("accuracy", "acc") and kind == "sigmoid"
                cls = kmetrics.BinaryAccuracy if m in ("accuracy", "acc") else kmetrics.BY_NAME[m]
                made = self._made_metrics.setdefault(name, cls(name=name))
                out.append((name, None if counted else made))
            else:
                counted = (type(m) is kmetrics.BinaryAccuracy and kind == "sigmoid"
                           and m._options.get("threshold") == 0.5)
                out.append((name, None if counted else m))
        return out

    @property
    def metrics_names(self) -> list[str]:
        """As Keras 3 names them: the loss, then the compiled metrics as one entry."""
        return ["loss", "compile_metrics"] if self.compiled_metrics else ["loss"]

    @property
    def metric_names(self) -> list[str]:
        return list(self._log_names)

    def _inputs(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        if isinstance(x, list | tuple | dict) and not isinstance(x, np.ndarray):
            x = np.asarray(x) if isinstance(x, list) else x
        elif not isinstance(x, np.ndarray) and hasattr(x, "__array__"):
            x = np.asarray(x)  # as Keras: pandas DataFrames, torch tensors, anything array-like
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise KerasValueError(f"expected a NumPy array of inputs (N, features), got "
                                  f"{type(x).__name__} (datasets and generators are not supported)")
        x = np.asarray(x)
        if x.dtype.kind not in "fiub" or x.ndim < 2:
            raise KerasValueError(f"expected a batch of inputs (N, features) of numbers, got "
                                  f"{x.dtype} {x.shape}")
        if self._shape is None:
            self.built_batch = min(batch_size, len(x)) if batch_size else len(x)
            self._build_layers(self._declared_input_shape() or tuple(x.shape[1:]))
        spec = self.spec
        if tuple(x.shape[1:]) != spec.input_shape:
            hint = (f"; reshape them with x.reshape((-1, {spec.input_dim}))"
                    if int(np.prod(x.shape[1:])) == spec.input_dim else "")
            raise KerasValueError(f"the model expects inputs of shape (N, "
                                  f"{', '.join(map(str, spec.input_shape))}), got {x.shape}{hint}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise KerasValueError("inputs contain NaN or infinite values")
        return x

    def _targets(self, y: Any, n: int) -> np.ndarray:
        if y is None:
            raise KerasValueError("no targets: give y (the labels) with x; datasets and generators "
                                  "that hold both are not supported")
        if self.loss is None:
            raise KerasValueError("compile the model with a loss before fit or evaluate, e.g. "
                                  "model.compile(optimizer='adam', loss='categorical_crossentropy', "
                                  "metrics=['accuracy'])")
        self.loss_object.check_output(self.output_kind, self._dense()[-1].name, self.spec.output_units)
        t = losses.targets(self.loss, y, self.spec.output_units)
        if len(t) != n:
            raise KerasValueError(f"{n} inputs but {len(t)} targets")
        return t

    def _stats(self) -> dict[str, np.ndarray]:
        return input_stats(self._atoms(), self.spec.input_shape)

    def _engine_loss(self) -> str:
        return losses.engine_loss(self.loss)

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: list[Any] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: Any = True,
            class_weight: Any = None, sample_weight: Any = None, initial_epoch: int = 0,
            steps_per_epoch: Any = None, validation_steps: Any = None,
            validation_batch_size: int | None = None, validation_freq: int = 1) -> cbs.History:
        """Train; returns a History whose .history holds per-epoch loss, metrics, val_…"""
        self._require_own_steps()
        # Programs persist in digitnet's cache as digitnet.fit's do: a notebook's next session
        # skips compiling them.
        enable_compile_cache()
        if self.optimizer is None:
            raise KerasValueError("You must call `compile()` before using the model.")
        if class_weight is not None and sample_weight is not None:
            raise KerasValueError("You cannot `class_weight` and `sample_weight` at the same time.")
        refuse_options("fit",
                       steps_per_epoch=steps_per_epoch, validation_steps=validation_steps)
        if not isinstance(validation_freq, int | list) or isinstance(validation_freq, bool):
            raise KerasValueError("Expected `validation_freq` to be a list or int. Received: "
                                  f"validation_freq={validation_freq} of the type {type(validation_freq)}.")
        if isinstance(validation_freq, int) and validation_freq < 1:
            raise KerasValueError(f"validation_freq must be at least 1, got {validation_freq}")
        if not isinstance(shuffle, bool):
            raise KerasValueError(f"fit: shuffle must be True or False, got {shuffle!r}")
        x = self._inputs(x, int(batch_size or 32))
        y_raw = np.asarray(y) if y is not None else None
        t = self._targets(y, len(x))
        weighting = class_weight_text(class_weight, self.spec.num_classes)
        weights = example_weights(sample_weight, len(x))
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
                raise KerasValueError("validation_data must be a pair (x_val, y_val) or a triple "
                                      "(x_val, y_val, val_sample_weight)")
            vx = self._inputs(validation_data[0])
            validation = (vx, np.asarray(validation_data[1]))
            self._targets(validation[1], len(vx))
            if len(validation_data) == 3 and validation_data[2] is not None:
                validation = (*validation, example_weights(validation_data[2], len(vx)))
        elif validation_split:
            if not 0 < validation_split < 1:
                raise KerasValueError(f"validation_split must be in (0, 1), got {validation_split}")
            cut = int(len(x) * (1 - validation_split))  # the last examples, before shuffling, as Keras
            x, t, validation = x[:cut], t[:cut], (x[cut:], y_raw[cut:])
            y_raw = y_raw[:cut]
            if weights is not None:  # the held-out examples keep theirs: val_loss is weighted
                validation, weights = (*validation, weights[cut:]), weights[:cut]
        verbose = resolve(verbose)
        batch = int(batch_size or 32)
        user = list(callbacks or [])
        for cb in user:
            if not isinstance(cb, cbs.Callback | cbs.train.Callback):
                raise KerasValueError(f"callbacks must be keras.callbacks.Callback objects, got "
                                      f"{type(cb).__name__}")
        self.history = cbs.History()
        run_class = cbs.BatchRun if cbs.wants_batches(user) else cbs.Run
        run = run_class(self, [*user, self.history] + ([cbs.ProgbarLogger()] if verbose else []),
                      verbose=verbose, epochs=int(epochs), train=(x, y_raw), validation=validation,
                      batch_size=batch, val_batch_size=int(validation_batch_size or batch),
                      validation_freq=validation_freq)
        params = self.params()
        opt_state = self.optimizer.state
        if opt_state is None:
            opt_state = make_optimizer(self._train_config(1, batch, shuffle), 1).init(params)
        state = TrainState(params=params, opt_state=opt_state, epoch=int(initial_epoch))
        run.on_train_begin(state)
        cfg = self._train_config(int(epochs), batch, shuffle, weighting)
        while True:
            try:
                # One compiled engine per learning rate: a callback that changes the rate
                # (LearningRateScheduler, ReduceLROnPlateau) ends the stretch at the next epoch.
                cfg = self._train_config(int(epochs), batch, shuffle, weighting)
                state.stop = False
                state = fit_arrays(self.spec, cfg, x, t, self._stats(), None, state, [run],
                                   sample_weight=weights)
            except cbs.Restart:
                continue
            except TrainingDiverged:
                if not run.terminate_on_nan(state.epoch):
                    raise
            break
        self.use_params(state.params)
        self.optimizer._iterations += (state.epoch - int(initial_epoch)) * epoch_steps(len(x), cfg)
        self.optimizer.state = jax.tree.map(np.asarray, state.opt_state)
        self.optimizer.built_variables = "all"
        run.finish()
        return self.history

    # Keras' hooks for custom training logic: digitnet's compiled engine runs its own steps.
    STEP_HOOKS = ("train_step", "test_step", "predict_step", "compute_loss", "compute_metrics")

    def _require_own_steps(self) -> None:
        mine = [c for c in type(self).__mro__ if c not in Model.__mro__]  # the user's classes
        overridden = [n for n in self.STEP_HOOKS if any(n in vars(c) for c in mine)]
        if overridden:
            raise KerasValueError(
                f"{type(self).__name__} overrides {overridden[0]}: custom training logic is not "
                "supported; digitnet.keras trains, evaluates and predicts with its compiled engine "
                "(a chain of layers, a built-in loss and metrics)")

    def _train_config(self, epochs: int, batch: int, shuffle: bool,
                      class_weight: str = "") -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=batch, validation="none", seed=self._fit_seed(),
                           shuffle=shuffle, loss=self._engine_loss(), class_weight=class_weight,
                           label_smoothing=self.label_smoothing, **self.optimizer.train_options())

    def _fit_seed(self) -> int:
        # One seed per fit call (drawn when the fit starts), so stretches of it share shuffles.
        if getattr(self, "_seed_fit", None) is not self.history:
            self._seed_fit, self._seed = self.history, next_seed()
        return self._seed

    def _logs_for(self, x: np.ndarray, y: Any, batch_size: int, callbacks: Any = None,
                  prefix: str = "", weights: np.ndarray | None = None) -> dict[str, float]:
        """loss and metrics over (x, y), batch by batch as Keras evaluates (running sums); test
        batch hooks of `callbacks` see each batch's running values. `weights`: each example's
        loss weight (evaluate's sample_weight; the metrics stay unweighted, as Keras')."""
        t = self._targets(y, len(x))
        out = self._outputs(x)
        logits = predict_logits(self.spec, self.params(), self._stats(), x)
        per = np.asarray(compiled_loss_values(logits, t, loss=self._engine_loss(),
                                              smoothing=self.label_smoothing), np.float64)
        if weights is not None:
            per = per * weights
        if self.spec.regularized:  # Keras reports the loss with the layers' penalties
            per = per + float(penalty(self.params(), self.spec, np))
        if self.spec.output == "sigmoid":
            hits = ((out > 0.5).astype(np.float32) == t)[:, 0].astype(np.float64)
        else:
            hits = (logits.argmax(-1) == (t if t.ndim == 1 else t.argmax(-1))).astype(np.float64)
        plan = self._metrics()
        host = [m for _, m in plan if m is not None]
        for m in host:
            m.reset_state()
        n = len(x)
        steps = -(-n // batch_size)
        logs: dict[str, float] = {}
        for b in range(steps):
            lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
            if callbacks is not None:
                callbacks.batch("test", "begin", b, {})
            for m in host:
                m.update_state(y[lo:hi], tensor(out[lo:hi]))
            if callbacks is not None or b == steps - 1:
                logs = {"loss": float(per[:hi].mean())}
                for name, m in plan:
                    logs[name] = float(hits[:hi].mean()) if m is None else float(m.result())
                logs = dict(sorted(logs.items()))
            if callbacks is not None:
                callbacks.batch("test", "end", b, logs)
        return {prefix + k: v for k, v in logs.items()}

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: Any = None,
                 callbacks: Any = None, return_dict: bool = False, **kwargs: Any) -> Any:
        """[loss, metrics…] (the loss alone when compiled without metrics), as Keras orders them."""
        if kwargs:
            raise ValueError(f"Arguments not recognized: {kwargs}")
        self._require_own_steps()
        enable_compile_cache()
        refuse_options("evaluate", steps=steps)
        if self.loss is None:
            raise KerasValueError("You must call `compile()` before using the model")
        batch = int(batch_size or 32)
        x = self._inputs(x, batch)
        weights = example_weights(sample_weight, len(x))
        verbose = resolve(verbose)
        run = cbs.TestRun(self, list(callbacks or []), verbose, -(-len(x) // batch))
        run.begin()
        start = time.time()
        logs = self._logs_for(x, None if y is None else np.asarray(y), batch, run, weights=weights)
        run.end(logs, start)
        if return_dict:
            return logs
        values = [logs["loss"], *(logs[name] for name in self.metric_names)]
        return values if self.compiled_metrics else values[0]

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto", steps: Any = None,
                callbacks: Any = None) -> np.ndarray:
        """The model's outputs (N, classes) as a NumPy array: probabilities if its last layer is a
        softmax, else logits."""
        self._require_own_steps()
        enable_compile_cache()
        refuse_options("predict", steps=steps)
        batch = int(batch_size or 32)
        x = self._inputs(x, batch)
        verbose = resolve(verbose)
        total = -(-len(x) // batch)
        bar = Progbar(total, verbose) if verbose else None
        for cb in callbacks or []:
            cb.set_model(self)
            cb.on_predict_begin({})
        out = self._outputs(x)
        for cb in callbacks or []:
            for b in range(total):
                cb.on_predict_batch_begin(b, {})
                cb.on_predict_batch_end(b, {"outputs": out[b * batch : (b + 1) * batch]})
        if bar is not None:
            bar.update(total)
        for cb in callbacks or []:
            cb.on_predict_end({})
        return np.asarray(out)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return self._outputs(self._inputs(x))

    def __repr__(self) -> str:
        return f"<{self.class_name} name={self.name}, built={self.built}>"


class Functional(Model):
    """What keras.Model(inputs, outputs) makes."""


class Sequential(Model):
    """A stack of layers: Sequential([Dense(64, activation='relu', input_shape=(784,)), …]);
    a layer may itself be a model (Sequential([model, Softmax()]))."""

    class_name = "Sequential"

    def __init__(self, layers: list[Any] | None = None, trainable: bool = True, name: str | None = None):
        if not trainable:
            raise KerasValueError("Sequential: trainable=False is not supported")
        self._init_model(name, "sequential")
        for layer in layers or []:
            self.add(layer)

    def call(self, inputs: Any, training: Any = None) -> Any:
        for layer in self._layers:
            inputs = layer(inputs)
        return inputs

    def _trace_call(self, shape: tuple[int, ...] | None = None) -> None:
        pass

    def add(self, layer: Any) -> None:
        if isinstance(layer, KerasTensor) and layer.parent is None:
            layer = layer.layer  # keras.Input(...) as the first entry
        if not isinstance(layer, Layer):
            raise KerasValueError(f"Sequential.add expects a layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self._layers or self.input_layer is not None:
                raise KerasValueError("an Input must be the first entry of a Sequential model")
            self.input_layer = layer
        else:
            if layer.name in {other.name for other in self._layers}:
                raise KerasValueError(f"All layers added to a Sequential model should have unique "
                                      f"names. Name {layer.name!r} is already the name of a layer in "
                                      "this model. Update the `name` argument to pass a unique name.")
            self._layers.append(layer)
        self._shape = None
        shape = self._declared_input_shape()
        if shape is not None:
            self._build_layers(shape)  # as Keras builds when the input shape is known

    def pop(self) -> Layer:
        if not self._layers:
            raise KerasValueError("There are no layers in the model.")
        layer = self._layers.pop()
        self._shape = None
        if self._declared_input_shape() is not None and self._layers:
            self._build_layers(self._declared_input_shape())
        return layer


# Why each refused fit/evaluate/predict argument is: digitnet's engine runs whole epochs over
# NumPy arrays.
REFUSED_OPTIONS = {
    "steps_per_epoch": "an epoch is one pass over the arrays given",
    "validation_steps": "validation runs over all of the validation data",
    "steps": "it runs over all of the arrays given",
}


def example_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    """fit's or evaluate's sample_weight: one finite weight per example, (N,) or (N, 1)."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, np.float64)
    except (TypeError, ValueError):
        raise KerasValueError(f"sample_weight must be an array of numbers, got "
                              f"{type(sample_weight).__name__}") from None
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or len(w) != n:
        raise KerasValueError(f"sample_weight must hold one weight per example: {n} examples, "
                              f"got an array of shape {w.shape}")
    if not np.isfinite(w).all():
        raise KerasValueError("sample_weight contains NaN or infinite values")
    return w.astype(np.float32)


def class_weight_text(class_weight: Any, classes: int) -> str:
    """fit's class_weight as TrainConfig.class_weight: one weight per class, 1 for a class the
    mapping leaves out, as Keras 3 (class_weight_to_sample_weights: keys are class indices, or
    what int() reads as one; keys of no class match no label)."""
    if class_weight is None:
        return ""
    if not hasattr(class_weight, "items") or not hasattr(class_weight, "get"):
        raise KerasValueError("`class_weight` must be a dict-like mapping of class indices to "
                              f"weights. Received: class_weight={class_weight} of type "
                              f"{type(class_weight)}.")
    weights = [1.0] * classes
    for key, value in class_weight.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise KerasValueError("`class_weight` must be a dictionary with integer keys "
                                  f"representing class indices. Received an invalid key: {key!r} "
                                  f"of type {type(key)}.") from None
        try:
            weight = float(value)
        except (TypeError, ValueError):
            raise KerasValueError(f"class_weight: the weight of class {index} must be a number, "
                                  f"got {value!r}") from None
        if not (math.isfinite(weight) and weight >= 0):
            raise KerasValueError(f"class_weight: the weight of class {index} must be a finite "
                                  f"number ≥ 0 in digitnet.keras, got {value!r}")
        if 0 <= index < classes:
            weights[index] = weight
    if not any(weights):
        raise KerasValueError("class_weight: every class weighs 0; nothing would train")
    return ",".join(repr(w) for w in weights)


def refuse_options(method: str, **options: Any) -> None:
    """A one-line ValueError naming the first refused argument that was given."""
    for name, value in options.items():
        if value is not None:
            raise KerasValueError(f"{method}: {name} is not supported: {REFUSED_OPTIONS[name]}")


def read_h5(source: Any, name: Path,
            check: Callable[[list[LayerWeights]], None] | None = None) -> list[LayerWeights]:
    try:
        with h5py.File(source, "r") as f:
            return read_weights(f, str(name), check)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:  # h5py on a corrupt file
        if isinstance(exc, KerasFileError):
            raise
        raise KerasFileError(f"{name}: not a readable HDF5 weights file ({exc})") from None


def load_model(filepath: str | os.PathLike, custom_objects: Any = None, compile: bool = True,
               safe_mode: bool = True) -> Model:
    """A Sequential (or functional chain) MLP from a Keras 3 .keras archive or a legacy
    full-model .h5."""
    from digitnet.keras.saving import (
        check_declared_weights,
        compile_options,
        layers_from_config,
        read_archive,
        read_json_attr,
    )

    del custom_objects  # nothing is loaded as code: subclassed models come back as their chain
    del safe_mode  # always safe: nothing in the file is executed
    path = Path(filepath)
    if not path.is_file():
        raise KerasFileError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        config, data = read_archive(path)
        name, layers = layers_from_config(config, path, chain_model)
        source: Any = io.BytesIO(data)
        training = config.get("compile_config")
    else:
        source = path
        try:
            with h5py.File(path, "r") as f:
                config = read_json_attr(f, "model_config", path)
                if config is None:
                    raise KerasFileError(f"{path}: no model_config (a weights-only file? build the "
                                         "model and call load_weights)")
                name, layers = layers_from_config(config, path, chain_model)
                training = read_json_attr(f, "training_config", path)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:  # h5py on a corrupt file
            if isinstance(exc, KerasFileError):
                raise
            raise KerasFileError(f"{path}: not a .keras archive or an HDF5 model ({exc})") from None
    def checked(found: list[LayerWeights]) -> None:
        check_declared_weights(layers, found, path)

    # A chain's weights are checked against its config before any model is built; a model
    # holding models reads them at Keras' nested paths, once built.
    nested = any(isinstance(layer, Model) for layer in layers)
    found = None if nested else read_h5(source, path, checked)
    model = chain_model(name, layers, functional=(config or {}).get("class_name") == "Functional")
    if found is None and not model._flat() and model.built:
        found = model._read_by_paths(source, path)
    model.assign(found if found is not None else read_h5(source, path, checked), path)
    options = compile_options(training, path) if compile else None
    if options is not None:
        try:
            model.compile(**options)
        except KerasValueError as exc:
            warnings.warn(f"{path}: loaded without compiling ({exc}); call compile() before fit",
                          stacklevel=2)
        else:  # what Keras builds of the optimizer when it loads: all of it from a .keras file
            model.optimizer.built_variables = "all" if zipfile.is_zipfile(path) else "scalars"
    return model


def chain_model(name: str, layers: list[Layer], functional: bool) -> Model:
    """A functional chain (InputLayer first) or a Sequential of the layers."""
    if functional and layers and isinstance(layers[0], InputLayer):
        tensor_ = layers[0].output
        for layer in layers[1:]:
            tensor_ = layer(tensor_)
        return Model(layers[0].output, tensor_, name=name)
    return Sequential(layers, name=name)



def model_from_json(json_string: str, custom_objects: Any = None) -> Model:
    """The model a Keras JSON description (model.to_json()) describes, with fresh weights."""
    from digitnet.keras.saving import MAX_JSON, layers_from_config

    if len(json_string) > MAX_JSON:
        raise KerasValueError(f"model_from_json: {len(json_string):,} characters; at most {MAX_JSON:,}")
    try:
        config = json.loads(json_string)
    except ValueError as exc:
        raise KerasValueError(f"model_from_json: not JSON ({exc})") from None
    name, layers = layers_from_config(config, Path("model_from_json"), chain_model)
    return chain_model(name, layers, functional=isinstance(config, dict)
                       and config.get("class_name") == "Functional")


def clone_model(model: Model, input_tensors: Any = None, clone_function: Any = None,
                call_function: Any = None, recursive: bool = False, **kwargs: Any) -> Model:
    """A model of the same layers with fresh weights, as keras.models.clone_model."""
    if input_tensors is not None or clone_function is not None or call_function is not None or kwargs:
        raise KerasValueError("clone_model: input_tensors, clone_function and call_function are not "
                              "supported; digitnet.keras clones a model's layers as they are")
    if not isinstance(model, Model):
        raise KerasValueError(f"clone_model expects a keras Model, got {type(model).__name__}")
    if model.class_name not in ("Sequential", "Functional"):
        return type(model).from_config(model.get_config())
    if not model.built and model._declared_input_shape() is None:
        return Sequential([type(layer).from_config(layer.get_config()) for layer in model._layers],
                          name=model.name)
    return type(model).from_config(model.get_config())


def save_model(model: Model, filepath: str | os.PathLike, overwrite: bool = True, **kwargs: Any) -> None:
    """keras.models.save_model(model, path): model.save(path)."""
    model.save(filepath, overwrite=overwrite, **kwargs)


__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]
