"""`keras.regularizers`: L1, L2 and L1L2 penalties on a Dense layer's kernel or bias.

A layer's penalty becomes factors of the engine's spec (MLPSpec.kernel_l1 …) and is added to
the training loss inside the compiled step, as Keras adds it: the loss fit and evaluate report
includes it (digitnet.regularize.penalty).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from digitnet.keras.errors import KerasValueError


def factor(value: Any, name: str) -> float:
    """A penalty factor as Keras validates it (a number ≥ 0), kept as float32 holds it where
    Keras keeps that (L1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not np.isfinite(value):
        raise KerasValueError(f"Invalid value for argument {name}: expected a float. "
                              f"Received: {name}={value}")
    if value < 0:
        raise KerasValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                              f"Received: {name}={value}")
    return float(value)


class Regularizer:
    class_name: ClassVar[str] = "Regularizer"

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = factor(l1, "l1"), factor(l2, "l2")

    def __call__(self, x: Any) -> float:
        x = np.asarray(x, np.float32)
        out = np.float32(0.0)
        if self.l1:
            out += np.float32(self.l1) * np.abs(x).sum(dtype=np.float32)
        if self.l2:
            out += np.float32(self.l2) * np.square(x).sum(dtype=np.float32)
        return float(out)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    def serialize(self) -> dict[str, Any]:
        return {"module": "keras.regularizers", "class_name": self.class_name,
                "config": self.get_config(), "registered_name": None}

    def __repr__(self) -> str:
        return f"<{self.class_name} {self.get_config()}>"


class L1L2(Regularizer):
    """l1·Σ|w| + l2·Σw² (both 0 by default, as Keras')."""

    class_name = "L1L2"

    def __init__(self, l1: float | None = 0.0, l2: float | None = 0.0):
        super().__init__(0.0 if l1 is None else l1, 0.0 if l2 is None else l2)


class L1(Regularizer):
    """l1·Σ|w| (0.01 by default)."""

    class_name = "L1"

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=factor(l1, "l1"))
        self.l1 = float(np.float32(self.l1))  # as Keras keeps it

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(Regularizer):
    """l2·Σw² (0.01 by default)."""

    class_name = "L2"

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


l1, l2, l1_l2, l1l2 = L1, L2, L1L2, L1L2  # Keras exports the classes under these names too

CLASSES: dict[str, type[Regularizer]] = {"L1": L1, "L2": L2, "L1L2": L1L2}
# The names Keras' get() takes ('l1_l2' is not one of them: Keras refuses it too).
NAMES: dict[str, type[Regularizer]] = {"l1": L1, "l2": L2, "l1l2": L1L2, **CLASSES}


def get(identifier: Any, where: str = "regularizer") -> Regularizer | None:
    """A regularizer from a name ('l2'), a class, an instance, or a Keras config; None for None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if isinstance(identifier, dict):
        cls, options = identifier.get("class_name"), identifier.get("config") or {}
        if cls in CLASSES and identifier.get("registered_name") in (None, cls) and isinstance(options, dict):
            try:
                return CLASSES[cls](**options)
            except TypeError as exc:
                raise KerasValueError(f"{where}: bad {cls} config ({exc})") from None
        identifier = cls
    elif isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier]()
    raise KerasValueError(f"{where}: could not interpret regularizer identifier {identifier!r}; "
                          "supported: L1, L2, L1L2 ('l1', 'l2', 'l1l2', or keras.regularizers.l1_l2(...))")
