"""`keras.optimizers`: SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion and Ftrl with
Keras' defaults and options (clipnorm, clipvalue, global_clipnorm, weight_decay, …), run by the
engine's Optax (digitnet.kerasopt computes Keras' updates where the engine's own differ).

An optimizer keeps its state (moments, step count) between `fit` calls, as in Keras, until the
model is compiled with another one.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from typing import Any, ClassVar

import numpy as np

from digitnet.keras import schedules
from digitnet.keras.backend import Variable
from digitnet.keras.errors import KerasValueError
from digitnet.trainconfig import KERAS_OPTIMIZER_DEFAULTS

# `from keras.optimizers.schedules import ExponentialDecay` with the import line changed.
sys.modules[f"{__name__}.schedules"] = schedules

# Options every Keras 3 optimizer has, with the values digitnet runs.
COMMON = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
          "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
          "loss_scale_factor": None, "gradient_accumulation_steps": None}
# The common options the engine runs (digitnet.kerasopt); the rest must keep their defaults.
CLIPPING = ("weight_decay", "clipnorm", "global_clipnorm", "clipvalue")
# Options that change nothing here (how Keras compiles) and are accepted whatever their value.
IGNORED = ("jit_compile", "is_legacy_optimizer", "name")


def same(value: Any, default: Any) -> bool:
    """Whether an option keeps its default; None, 0 and False all mean "off", and a float may
    have gone through float32 in a saved config."""
    if value in (None, 0, False) and default in (None, 0, False):
        return True
    if isinstance(value, int | float) and isinstance(default, int | float) and not isinstance(value, bool):
        return math.isclose(value, default, rel_tol=1e-6)
    return value == default


class Optimizer:
    class_name: ClassVar[str]
    engine_name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]  # this optimizer's own options and Keras' defaults

    def __init__(self, learning_rate: float | None = None, lr: float | None = None, **options: Any):
        if lr is not None and learning_rate is not None:
            raise KerasValueError(f"{self.class_name}: give learning_rate or lr, not both")
        rate = learning_rate if learning_rate is not None else lr  # `lr`: Keras 2's name
        if rate is None:
            rate = self.default_learning_rate
        if isinstance(rate, dict):  # a schedule, as Keras serializes it into a config
            rate = schedules.deserialize(rate)
        self.schedule = rate if isinstance(rate, schedules.LearningRateSchedule) else None
        if self.schedule is not None:
            rate = float(self.schedule(0))
        if not isinstance(rate, int | float) or not rate > 0:
            raise KerasValueError(f"{self.class_name}: learning_rate must be a positive number or a "
                                  f"keras.optimizers.schedules schedule, got {rate!r}")
        self._learning_rate = float(rate)
        self.options = dict(self.defaults)
        if options.pop("decay", None) is not None:  # as Keras 3: warned about, then ignored
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=2)
        for key, value in options.items():
            if key in IGNORED:
                continue
            if key in self.defaults or key in CLIPPING:
                self.options[key] = self._check(key, value)
            elif key in COMMON and same(value, COMMON[key]):
                continue
            elif key in self.defaults or key in COMMON:
                raise KerasValueError(f"{self.class_name}({key}={value!r}) is not supported by digitnet; "
                                      f"it runs {self.class_name} with Keras' defaults for {key}")
            else:
                raise KerasValueError(f"{self.class_name}: unknown argument {key!r}")
        self.state: Any = None  # the engine's optimizer state, once trained
        self._iterations = 0  # Keras' `iterations`: the steps applied so far (fit and apply)
        self._applied: Applied | None = None  # apply()'s own state and variables
        # What Keras would have built of this optimizer's variables: "all" (after fit, or loaded
        # from a .keras file), "scalars" (loaded from a legacy .h5), or None (not yet).
        self.built_variables: str | None = None

    @property
    def learning_rate(self) -> LearningRate:
        """The rate as Keras shows it: a variable (float(), .numpy(), .assign(new))."""
        return LearningRate(self)

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        if self.schedule is not None:
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not "
                            "settable.")
        rate = float(np.asarray(value))
        if not rate > 0:
            raise KerasValueError(f"{self.class_name}: learning_rate must be positive, got {rate}")
        self._learning_rate = rate

    @property
    def iterations(self) -> Iterations:
        """Keras' step counter, a variable (int(), .numpy(), .assign(n))."""
        return Iterations(self)

    @property
    def steps_applied(self) -> int:
        return self._iterations

    @steps_applied.setter
    def steps_applied(self, value: Any) -> None:
        self._iterations = int(np.asarray(value))

    @property
    def lr(self) -> LearningRate:
        return self.learning_rate

    @lr.setter
    def lr(self, value: Any) -> None:
        self.learning_rate = value

    default_learning_rate: ClassVar[float] = 0.001
    if_defaults: ClassVar[tuple[str, ...]] = ()  # options the engine's own path also runs

    def slots(self) -> tuple[int, int]:
        """(accumulators per weight, extra scalars) of Keras' optimizer variables."""
        o, name = self.options, self.engine_name
        per = {"sgd": int(bool(o.get("momentum"))),
               "rmsprop": 1 + int(bool(o.get("momentum"))) + int(bool(o.get("centered"))),
               "adam": 2 + int(bool(o.get("amsgrad"))), "adamw": 2 + int(bool(o.get("amsgrad"))),
               "adagrad": 1, "adadelta": 2, "adamax": 2, "nadam": 2, "lion": 1, "ftrl": 2}[name]
        return per, int(name == "nadam")

    def variable_count(self, weights: int) -> int | None:
        """How many values Keras' summary counts as "Optimizer params" for a model of `weights`
        trainable values (iterations and the learning rate, then the accumulators), or None
        while Keras has built none."""
        if self.built_variables is None:
            return None
        if self.built_variables == "scalars":
            return 2
        per, extra = self.slots()
        return 2 + extra + per * weights

    def _check(self, key: str, value: Any) -> Any:
        if isinstance(value, bool) and isinstance(self.defaults.get(key), bool):
            return value
        if value is None and (key in CLIPPING or self.defaults.get(key) is None):
            return None
        low = -math.inf if key == "learning_rate_power" else 0
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value < low:
            raise KerasValueError(f"{self.class_name}: {key} must be a number ≥ {low}, got {value!r}")
        return float(value)

    def train_options(self) -> dict[str, Any]:
        """The TrainConfig fields for this optimizer: the engine's own Adam/SGD/RMSprop when the
        options are Keras' defaults, else Keras' update (digitnet.kerasopt) with its options."""
        base = {"optimizer": self.engine_name, "lr": self._learning_rate}
        defaults = KERAS_OPTIMIZER_DEFAULTS[self.engine_name]
        changed = {k: v for k, v in self.options.items() if not same(v, defaults.get(k))}
        if self.engine_name in ("adam", "rmsprop", "sgd") and set(changed) <= set(self.if_defaults) \
                and self.schedule is None:
            return {**base, **{k: v for k, v in changed.items()}}
        options = dict(self.options)
        if self.schedule is not None:
            options["learning_rate_schedule"] = self.schedule.to_json()
        return {**base, "optimizer_options": json.dumps(options, sort_keys=True)}

    def get_config(self) -> dict[str, Any]:
        rate: Any = self._learning_rate
        if self.schedule is not None:
            rate = {"module": "keras.optimizers.schedules", "class_name": self.schedule.class_name,
                    "config": self.schedule.get_config(), "registered_name": None}
        return {"name": self.engine_name, "learning_rate": rate,
                **COMMON, **self.options}

    def apply_gradients(self, grads_and_vars: Any) -> None:
        """Keras' optimizer.apply_gradients(zip(grads, variables)): one step of Keras' update on
        the variables (e.g. a model's trainable_variables), assigned in place."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads: Any, trainable_variables: Any = None) -> None:
        """Keras' optimizer.apply(grads, trainable_variables): the variables of the last call
        when none are given."""
        applied = self._applied
        variables = list(trainable_variables) if trainable_variables is not None else (
            applied.variables if applied is not None else [])
        grads = [np.asarray(g, np.float32) for g in grads]
        if len(grads) != len(variables) or not variables:
            raise KerasValueError(f"{self.class_name}.apply: {len(grads)} gradients for "
                                  f"{len(variables)} variables")
        if applied is None or applied.keys != Applied.key(variables):
            applied = self._applied = Applied(self, variables)
        params = [np.asarray(v, np.float32) for v in variables]
        for g, p in zip(grads, params, strict=True):
            if g.shape != p.shape:
                raise KerasValueError(f"{self.class_name}.apply: a gradient of shape {g.shape} for a "
                                      f"variable of shape {p.shape}")
        updates, applied.state = applied.tx.update(grads, applied.state, params)
        for v, p, u in zip(variables, params, updates, strict=True):
            v.assign(p + np.asarray(u))
        self._iterations += 1

    def __repr__(self) -> str:
        return f"{self.class_name}(learning_rate={self._learning_rate:g})"


def own(name: str) -> dict[str, Any]:
    """An optimizer's own options (not the common ones) and Keras' defaults for them."""
    return {k: v for k, v in KERAS_OPTIMIZER_DEFAULTS[name].items() if k not in CLIPPING}


class Adam(Optimizer):
    class_name, engine_name = "Adam", "adam"
    defaults = own("adam")


class AdamW(Optimizer):
    class_name, engine_name = "AdamW", "adamw"
    defaults = {"weight_decay": 0.004, **own("adamw")}


class RMSprop(Optimizer):
    class_name, engine_name = "RMSprop", "rmsprop"
    defaults = own("rmsprop")


class SGD(Optimizer):
    class_name, engine_name = "SGD", "sgd"
    defaults = own("sgd")
    default_learning_rate = 0.01
    if_defaults = ("momentum", "nesterov")

    def __init__(self, learning_rate: float | None = None, lr: float | None = None, **options: Any):
        super().__init__(learning_rate, lr, **options)
        if not 0.0 <= float(self.options["momentum"]) < 1.0:
            raise KerasValueError(f"SGD: momentum must be in [0, 1), got {self.options['momentum']}")


class Adagrad(Optimizer):
    class_name, engine_name = "Adagrad", "adagrad"
    defaults = own("adagrad")


class Adadelta(Optimizer):
    class_name, engine_name = "Adadelta", "adadelta"
    defaults = own("adadelta")


class Adamax(Optimizer):
    class_name, engine_name = "Adamax", "adamax"
    defaults = own("adamax")


class Nadam(Optimizer):
    class_name, engine_name = "Nadam", "nadam"
    defaults = own("nadam")


class Lion(Optimizer):
    class_name, engine_name = "Lion", "lion"
    defaults = own("lion")


class Ftrl(Optimizer):
    class_name, engine_name = "Ftrl", "ftrl"
    defaults = own("ftrl")


class OptimizerScalar(Variable):
    """One of the optimizer's scalars as a Keras variable: read from the optimizer's attribute
    `held`, assigned through its attribute `assigned` (which checks the value)."""

    held: ClassVar[str]
    assigned: ClassVar[str]
    kind: ClassVar[Any]

    def __init__(self, optimizer: Optimizer, name: str):
        self.optimizer, self.name, self.trainable = optimizer, name, False

    @property
    def _value(self) -> np.ndarray:  # type: ignore[override]
        return np.array(getattr(self.optimizer, self.held), self.kind)

    @_value.setter
    def _value(self, value: Any) -> None:
        setattr(self.optimizer, self.assigned, value)


class LearningRate(OptimizerScalar):
    """The optimizer's learning rate as a Keras variable; assigning it sets the optimizer's."""

    held, assigned, kind = "_learning_rate", "learning_rate", np.float32

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer, "learning_rate")


class Iterations(OptimizerScalar):
    """The optimizer's step count as Keras' `iterations` variable (int64)."""

    held, assigned, kind = "_iterations", "steps_applied", np.int64

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer, "iteration")


OPTIMIZERS: dict[str, type[Optimizer]] = {
    c.class_name: c for c in (Adam, AdamW, RMSprop, SGD, Adagrad, Adadelta, Adamax, Nadam, Lion, Ftrl)}


def get(identifier: Any) -> Optimizer:
    """An optimizer from its name ('adam', 'sgd', …), an instance, or a Keras config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        by_name = {c.engine_name: c for c in OPTIMIZERS.values()}
        if identifier.lower() in by_name:
            return by_name[identifier.lower()]()
    if isinstance(identifier, dict):
        cls = OPTIMIZERS.get(identifier.get("class_name", ""))
        if cls is not None and not identifier.get("registered_name"):
            return cls(**(identifier.get("config") or {}))
        identifier = identifier.get("class_name")
    names = ", ".join(repr(c.engine_name) for c in OPTIMIZERS.values())
    raise KerasValueError(f"optimizer {identifier!r} is not supported; use one of {names} "
                          f"(or Adam(...), SGD(...), …)")


class Applied:
    """An optimizer's state for variables it updates itself (apply_gradients), apart from the
    state the engine keeps for fit."""

    def __init__(self, optimizer: Optimizer, variables: list[Any]):
        from digitnet.kerasopt import keras_optimizer

        self.variables, self.keys = variables, self.key(variables)
        self.tx = keras_optimizer(optimizer.engine_name, optimizer._learning_rate,
                                  optimizer.train_options().get("optimizer_options", "")
                                  or json.dumps(optimizer.options, sort_keys=True))
        self.state = self.tx.init([np.asarray(v, np.float32) for v in variables])

    @staticmethod
    def key(variables: list[Any]) -> list[tuple[int, str]]:
        """Which variables these are: a layer's variable objects are made afresh on each access."""
        return [(id(v.layer), v.attr) if hasattr(v, "layer") else (id(v), "") for v in variables]

