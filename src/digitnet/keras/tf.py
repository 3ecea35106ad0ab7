"""`from digitnet.keras import tf` in place of `import tensorflow as tf`: the part of TensorFlow's
namespace that Keras MLP scripts reach through `tf.`, so that such a script runs with only its
import line changed. `tf.keras` is digitnet.keras; `tf.random.set_seed` seeds it
(keras.utils.set_random_seed); `tf.nn`'s activations are keras.activations' (the same as their
names in a layer); `tf.config.list_physical_devices` lists JAX's devices as TensorFlow names
them; a few tensor functions are keras.ops'. Anything else (tf.data, tf.GradientTape,
tf.function, …) is an AttributeError that names it: digitnet does not run TensorFlow code.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from digitnet import keras
from digitnet.keras import activations, ops
from digitnet.keras.utils import set_random_seed

# TensorFlow's first release whose tf.keras is Keras 3, the API digitnet.keras follows.
__version__ = "2.16.1"

version = SimpleNamespace(VERSION=__version__)  # print(tf.version.VERSION)
random = SimpleNamespace(set_seed=set_random_seed)
nn = SimpleNamespace(**{name: getattr(activations, name) for name in
                        ("relu", "relu6", "elu", "selu", "gelu", "sigmoid", "softmax", "softplus",
                         "softsign", "swish", "silu", "tanh", "leaky_relu", "log_softmax")
                        if hasattr(activations, name)})

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int32, int64, uint8, bool = np.int8, np.int32, np.int64, np.uint8, np.bool_  # noqa: A001

cast, one_hot, reshape, expand_dims, argmax = ops.cast, ops.one_hot, ops.reshape, ops.expand_dims, ops.argmax
convert_to_tensor = constant = ops.convert_to_tensor
reduce_mean, reduce_sum, reduce_max = ops.mean, ops.sum, ops.max


class PhysicalDevice(NamedTuple):
    name: str
    device_type: str


def list_physical_devices(device_type: str | None = None) -> list[PhysicalDevice]:
    """TensorFlow's list of devices: one CPU, and each GPU where JAX runs on GPUs."""
    import jax

    devices = [PhysicalDevice("/physical_device:CPU:0", "CPU")]
    if jax.default_backend() == "gpu":
        devices += [PhysicalDevice(f"/physical_device:GPU:{d.id}", "GPU") for d in jax.devices()]
    return [d for d in devices if device_type is None or d.device_type == device_type.upper()]


config = SimpleNamespace(list_physical_devices=list_physical_devices)

__all__ = ["__version__", "cast", "config", "constant", "convert_to_tensor", "keras", "nn", "one_hot",
           "random", "reshape", "version"]


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"digitnet's stand-in for TensorFlow has no tf.{name}: it covers tf.keras, tf.random.set_seed, "
        "tf.nn's activations, tf.config.list_physical_devices and a few tensor functions (pass NumPy "
        "arrays to fit; docs/keras.md)")
