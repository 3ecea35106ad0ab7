"""`keras.optimizers`: Adam, SGD and RMSprop with Keras' defaults, run by the engine's Optax.

An optimizer keeps its state (moments, step count) between `fit` calls, as in Keras, until the
model is compiled with another one.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from digitnet.keras.backend import Variable
from digitnet.keras.errors import KerasValueError

# Options every Keras 3 optimizer has (and Keras 2's `decay`), with the values digitnet runs.
COMMON = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
          "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
          "loss_scale_factor": None, "gradient_accumulation_steps": None, "decay": 0.0}
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
        if isinstance(rate, dict) or not isinstance(rate, int | float) or not rate > 0:
            raise KerasValueError(f"{self.class_name}: learning_rate must be a positive number "
                                  f"(schedules are not supported), got {rate!r}")
        self._learning_rate = float(rate)
        self.options = dict(self.defaults)
        for key, value in options.items():
            if key in IGNORED:
                continue
            if key in self.defaults and (key in self.supported or same(value, self.defaults[key])):
                self.options[key] = value
            elif key in COMMON and same(value, COMMON[key]):
                continue
            elif key in self.defaults or key in COMMON:
                raise KerasValueError(f"{self.class_name}({key}={value!r}) is not supported by digitnet; "
                                      f"it runs {self.class_name} with Keras' defaults for {key}")
            else:
                raise KerasValueError(f"{self.class_name}: unknown argument {key!r}")
        self.state: Any = None  # the engine's optimizer state, once trained

    @property
    def learning_rate(self) -> LearningRate:
        """The rate as Keras shows it: a variable (float(), .numpy(), .assign(new))."""
        return LearningRate(self)

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        rate = float(np.asarray(value))
        if not rate > 0:
            raise KerasValueError(f"{self.class_name}: learning_rate must be positive, got {rate}")
        self._learning_rate = rate

    @property
    def lr(self) -> LearningRate:
        return self.learning_rate

    @lr.setter
    def lr(self, value: Any) -> None:
        self.learning_rate = value

    default_learning_rate: ClassVar[float] = 0.001
    supported: ClassVar[tuple[str, ...]] = ()  # options of `defaults` the engine can vary

    def train_options(self) -> dict[str, Any]:
        """The TrainConfig fields for this optimizer."""
        return {"optimizer": self.engine_name, "lr": self._learning_rate}

    def get_config(self) -> dict[str, Any]:
        return {"name": self.engine_name, "learning_rate": self._learning_rate,
                **{k: v for k, v in COMMON.items() if k != "decay"}, **self.options}

    def __repr__(self) -> str:
        return f"{self.class_name}(learning_rate={self._learning_rate:g})"


class Adam(Optimizer):
    class_name, engine_name = "Adam", "adam"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}


class RMSprop(Optimizer):
    class_name, engine_name = "RMSprop", "rmsprop"
    defaults = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}


class SGD(Optimizer):
    class_name, engine_name = "SGD", "sgd"
    defaults = {"momentum": 0.0, "nesterov": False}
    default_learning_rate = 0.01
    supported = ("momentum", "nesterov")

    def __init__(self, learning_rate: float | None = None, lr: float | None = None, **options: Any):
        super().__init__(learning_rate, lr, **options)
        if not 0.0 <= float(self.options["momentum"]) < 1.0:
            raise KerasValueError(f"SGD: momentum must be in [0, 1), got {self.options['momentum']}")

    def train_options(self) -> dict[str, Any]:
        return {**super().train_options(), "momentum": float(self.options["momentum"]),
                "nesterov": bool(self.options["nesterov"])}


class LearningRate(Variable):
    """The optimizer's learning rate as a Keras variable; assigning it sets the optimizer's."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer, self.name, self.trainable = optimizer, "learning_rate", False

    @property
    def _value(self) -> np.ndarray:  # type: ignore[override]
        return np.array(self.optimizer._learning_rate, np.float32)

    @_value.setter
    def _value(self, value: Any) -> None:
        self.optimizer.learning_rate = value


OPTIMIZERS: dict[str, type[Optimizer]] = {c.class_name: c for c in (Adam, RMSprop, SGD)}


def get(identifier: Any) -> Optimizer:
    """An optimizer from 'adam' / 'sgd' / 'rmsprop', an instance, or a Keras config dict."""
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
    raise KerasValueError(f"optimizer {identifier!r} is not supported; use 'adam', 'sgd' or 'rmsprop' "
                          f"(or Adam(...), SGD(...), RMSprop(...))")
