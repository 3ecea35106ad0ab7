"""What Keras code gets back from digitnet.keras: arrays on the host.

`Tensor` is a NumPy array that also has TensorFlow's `.numpy()`, so code written for either
backend (`model(x).numpy()`, `np.asarray(model(x))`, `keras.ops.…`) runs unchanged. `Variable`
is the mutable state of metrics and the optimizer's learning rate (`assign`, `assign_add`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Tensor(np.ndarray):
    """An ndarray with `.numpy()` (a plain ndarray copy of it), as TensorFlow's tensors have."""

    def numpy(self) -> np.ndarray:
        return np.array(self).view(np.ndarray)


def tensor(value: Any, dtype: Any = None) -> Tensor:
    return np.asarray(value, dtype=dtype).view(Tensor)


class Variable(np.lib.mixins.NDArrayOperatorsMixin):
    """A named value that can be assigned in place: `v.assign(0.0)`, `v.assign_add(x)`."""

    def __init__(self, value: Any = 0.0, name: str | None = None, dtype: Any = "float32",
                 trainable: bool = False):
        self.name, self.trainable = name, trainable
        self._value = np.array(value, dtype=dtype)

    @property
    def value(self) -> Tensor:
        return tensor(self._value)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    def numpy(self) -> np.ndarray:
        return np.array(self._value)

    def assign(self, value: Any) -> Variable:
        self._value = np.array(np.broadcast_to(np.asarray(value), self._value.shape), self._value.dtype)
        return self

    def assign_add(self, value: Any) -> Variable:
        return self.assign(self._value + np.asarray(value))

    def assign_sub(self, value: Any) -> Variable:
        return self.assign(self._value - np.asarray(value))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._value, dtype=dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        args = [np.asarray(x) if isinstance(x, Variable) else x for x in inputs]
        return tensor(getattr(ufunc, method)(*args, **kwargs))

    def __float__(self) -> float:
        return float(self._value)

    def __int__(self) -> int:
        return int(self._value)

    def __repr__(self) -> str:
        return f"<Variable path={self.name}, shape={self.shape}, dtype={self.dtype}, value={self._value}>"


def clear_session(free_memory: bool = True) -> None:
    """Start naming layers and models afresh ('dense', 'dense_1', …), as Keras does."""
    from digitnet.keras.utils import clear_session as clear

    clear(free_memory)


def backend() -> str:
    return "jax"


def epsilon() -> float:
    return 1e-7
