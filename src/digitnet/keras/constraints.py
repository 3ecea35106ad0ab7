"""`keras.constraints`: MaxNorm on a Dense layer's kernel, applied after every training step
inside the compiled engine (MLPSpec.kernel_max_norm, digitnet.regularize.keras_max_norm) with
Keras' formula. Other constraints are refused by name."""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras.errors import KerasValueError


class Constraint:
    class_name = "Constraint"


class MaxNorm(Constraint):
    """Each unit's incoming weights (a kernel column) scaled to a norm of at most max_value."""

    class_name = "MaxNorm"

    def __init__(self, max_value: float = 2, axis: Any = 0):
        if axis not in (0, [0], (0,)):
            raise KerasValueError(f"MaxNorm: axis={axis!r} is not supported (only 0: per unit of a Dense)")
        if (isinstance(max_value, bool) or not isinstance(max_value, int | float | np.number)
                or not max_value > 0):
            raise KerasValueError(f"MaxNorm: max_value must be a positive number, got {max_value!r}")
        self.max_value, self.axis = max_value, 0

    def __call__(self, w: Any) -> np.ndarray:
        w = np.asarray(w, np.float32)
        norms = np.sqrt(np.sum(np.square(w), axis=0, keepdims=True))
        return w * (np.clip(norms, 0, self.max_value) / (np.float32(1e-7) + norms))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}

    def serialize(self) -> dict[str, Any]:
        return {"module": "keras.constraints", "class_name": "MaxNorm", "config": self.get_config(),
                "registered_name": None}


max_norm = MaxNorm


def get(identifier: Any, where: str = "constraint") -> MaxNorm | None:
    """MaxNorm from a name ('max_norm'), the class, an instance or a Keras config; None for None."""
    if identifier is None or isinstance(identifier, MaxNorm):
        return identifier
    if identifier is MaxNorm or identifier in ("max_norm", "MaxNorm"):
        return MaxNorm()
    if isinstance(identifier, dict) and identifier.get("class_name") == "MaxNorm" and identifier.get(
            "registered_name") in (None, "MaxNorm"):
        try:
            return MaxNorm(**(identifier.get("config") or {}))
        except TypeError as exc:
            raise KerasValueError(f"{where}: bad MaxNorm config ({exc})") from None
    name = identifier.get("class_name") if isinstance(identifier, dict) else identifier
    raise KerasValueError(f"{where}: constraint {name!r} is not supported (digitnet.keras runs MaxNorm "
                          "on kernels)")
