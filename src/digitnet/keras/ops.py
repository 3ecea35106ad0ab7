"""`keras.ops` for what MLP code does with arrays: NumPy functions under Keras' names.

They run on the host and return `backend.Tensor`s; a user's `Metric.update_state` or a script's
`keras.ops.softmax(logits)` gets real numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitnet.keras.backend import Tensor, Variable, tensor


def _np(x: Any) -> Any:
    return np.asarray(x) if isinstance(x, Variable | list | tuple) else x


def _wrap(fn: Any) -> Any:
    def op(*args: Any, **kwargs: Any) -> Tensor:
        return tensor(fn(*[_np(a) for a in args], **{k: _np(v) for k, v in kwargs.items()}))
    op.__name__ = fn.__name__ if hasattr(fn, "__name__") else "op"
    return op


def convert_to_tensor(x: Any, dtype: Any = None, sparse: Any = None) -> Tensor:
    return tensor(np.asarray(x), dtype=dtype)


def convert_to_numpy(x: Any) -> np.ndarray:
    return np.array(x).view(np.ndarray)


def cast(x: Any, dtype: Any) -> Tensor:
    return tensor(np.asarray(x).astype(dtype))


def softmax(x: Any, axis: int = -1) -> Tensor:
    x = np.asarray(x, np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return tensor(e / e.sum(axis=axis, keepdims=True))


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    x = np.asarray(x, np.float32)
    shifted = x - x.max(axis=axis, keepdims=True)
    return tensor(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True)))


def sigmoid(x: Any) -> Tensor:
    return tensor(1 / (1 + np.exp(-np.asarray(x, np.float32))))


def relu(x: Any) -> Tensor:
    return tensor(np.maximum(np.asarray(x), 0))


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = "float32") -> Tensor:
    return tensor(np.eye(num_classes, dtype=dtype)[np.asarray(x, np.int64)])


def top_k(x: Any, k: int, sorted: bool = True) -> tuple[Tensor, Tensor]:  # noqa: A002
    idx = np.argsort(-np.asarray(x), axis=-1, kind="stable")[..., :k]
    return tensor(np.take_along_axis(np.asarray(x), idx, -1)), tensor(idx.astype(np.int32))


def in_top_k(targets: Any, predictions: Any, k: int) -> Tensor:
    p = np.asarray(predictions)
    t = np.asarray(targets, np.int64)
    target_scores = np.take_along_axis(p, t[:, None], -1)
    return tensor((p > target_scores).sum(-1) < k)


abs = _wrap(np.abs)  # noqa: A001
add, subtract, multiply, divide = (_wrap(np.add), _wrap(np.subtract), _wrap(np.multiply),
                                   _wrap(np.divide))
argmax, argmin, argsort = _wrap(np.argmax), _wrap(np.argmin), _wrap(np.argsort)
clip, concatenate, count_nonzero = _wrap(np.clip), _wrap(np.concatenate), _wrap(np.count_nonzero)
equal, not_equal, greater, less = _wrap(np.equal), _wrap(np.not_equal), _wrap(np.greater), _wrap(np.less)
greater_equal, less_equal = _wrap(np.greater_equal), _wrap(np.less_equal)
exp, log, sqrt, square = _wrap(np.exp), _wrap(np.log), _wrap(np.sqrt), _wrap(np.square)
expand_dims, squeeze, reshape, transpose = (_wrap(np.expand_dims), _wrap(np.squeeze),
                                            _wrap(np.reshape), _wrap(np.transpose))
logical_and, logical_or, logical_not = _wrap(np.logical_and), _wrap(np.logical_or), _wrap(np.logical_not)
matmul, dot, maximum, minimum = _wrap(np.matmul), _wrap(np.dot), _wrap(np.maximum), _wrap(np.minimum)
max, min, mean, sum, std, var, prod = (_wrap(np.max), _wrap(np.min), _wrap(np.mean),  # noqa: A001
                                       _wrap(np.sum), _wrap(np.std), _wrap(np.var), _wrap(np.prod))
ones, zeros, ones_like, zeros_like, arange, eye = (_wrap(np.ones), _wrap(np.zeros), _wrap(np.ones_like),
                                                   _wrap(np.zeros_like), _wrap(np.arange), _wrap(np.eye))
round, sign, stack, take, tanh, where = (_wrap(np.round), _wrap(np.sign), _wrap(np.stack),  # noqa: A001
                                         _wrap(np.take), _wrap(np.tanh), _wrap(np.where))
take_along_axis, isnan, isfinite, power = (_wrap(np.take_along_axis), _wrap(np.isnan), _wrap(np.isfinite),
                                           _wrap(np.power))


def shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x))
