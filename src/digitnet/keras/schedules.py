"""`keras.optimizers.schedules`: Keras 3's learning-rate schedules of the optimizer's step
count, computed in the compiled step by digitnet.kerasopt (the same formula serves both)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from digitnet.keras.errors import KerasValueError
from digitnet.trainconfig import KERAS_SCHEDULES


class LearningRateSchedule:
    class_name: ClassVar[str] = "LearningRateSchedule"
    defaults: ClassVar[dict[str, Any]] = {}
    refused: ClassVar[dict[str, Any]] = {}  # Keras options digitnet runs only at these values

    def __init__(self, *args: Any, **kwargs: Any):
        names = KERAS_SCHEDULES[self.class_name]
        if len(args) > len(names):
            raise TypeError(f"{self.class_name}() takes at most {len(names)} positional arguments")
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        given.pop("name", None)
        for key, value in self.refused.items():
            if given.pop(key, value) != value:
                raise KerasValueError(f"{self.class_name}({key}=…) is not supported by digitnet")
        unknown = set(given) - set(names)
        if unknown:
            raise TypeError(f"{self.class_name}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        self.config = {**self.defaults, **given}
        missing = [n for n in names if n not in self.config]
        if missing:
            raise TypeError(f"{self.class_name}() missing argument {missing[0]!r}")
        for key, value in self.config.items():
            if key != "staircase":
                numbers = value if isinstance(value, list | tuple) else [value]
                if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                           for v in numbers):
                    raise KerasValueError(f"{self.class_name}: {key} must be a number, got {value!r}")
        if "decay_steps" in self.config and not self.config["decay_steps"] > 0:
            raise KerasValueError(f"{self.class_name}: decay_steps must be positive")

    def __call__(self, step: Any) -> np.ndarray:
        from digitnet.kerasopt import rate_at

        return np.asarray(rate_at(self.class_name, self.config, step, xp=np), np.float32)

    def get_config(self) -> dict[str, Any]:
        return {**self.config, "name": self.class_name}

    def to_json(self) -> dict[str, Any]:
        """How digitnet's training config carries the schedule."""
        return {"class_name": self.class_name, "config": dict(self.config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    class_name, defaults = "ExponentialDecay", {"staircase": False}


class InverseTimeDecay(LearningRateSchedule):
    class_name, defaults = "InverseTimeDecay", {"staircase": False}


class PiecewiseConstantDecay(LearningRateSchedule):
    class_name = "PiecewiseConstantDecay"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if len(self.config["values"]) != len(self.config["boundaries"]) + 1:
            raise KerasValueError("PiecewiseConstantDecay: values must have one more element than boundaries")
        self.config = {k: [float(v) for v in vs] for k, vs in self.config.items()}


class PolynomialDecay(LearningRateSchedule):
    class_name, defaults = "PolynomialDecay", {"end_learning_rate": 0.0001, "power": 1.0}
    refused = {"cycle": False}


class CosineDecay(LearningRateSchedule):
    class_name, defaults = "CosineDecay", {"alpha": 0.0}
    refused = {"warmup_target": None, "warmup_steps": 0}


SCHEDULES: dict[str, type[LearningRateSchedule]] = {c.class_name: c for c in (
    ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, PolynomialDecay, CosineDecay)}


def deserialize(config: dict[str, Any]) -> LearningRateSchedule:
    """A schedule from Keras' serialized form ({"class_name": ..., "config": ...})."""
    cls = SCHEDULES.get(config.get("class_name", "")) if isinstance(config, dict) else None
    if cls is None or config.get("registered_name") not in (None, cls.class_name):
        raise KerasValueError(f"learning-rate schedule {config!r:.80} is not supported; digitnet runs "
                              f"{', '.join(SCHEDULES)}")
    return cls.from_config({k: v for k, v in (config.get("config") or {}).items() if k != "name"})
