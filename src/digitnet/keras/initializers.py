"""`keras.initializers`: how a Dense layer's kernel and bias start, by Keras' names and classes.

The values are drawn with JAX's generator (digitnet's seeds: `keras.utils.set_random_seed`, or
the initializer's own `seed`), so they follow Keras' distributions, not its exact numbers; the
constant ones (zeros, ones, Constant) are Keras' exactly. An unseeded GlorotUniform kernel is the
one `digitnet train` draws for the same MLP.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import numpy as np

from digitnet.keras.errors import KerasValueError

_VS = {"GlorotUniform": (1.0, "fan_avg", "uniform"), "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
       "HeUniform": (2.0, "fan_in", "uniform"), "HeNormal": (2.0, "fan_in", "truncated_normal"),
       "LecunUniform": (1.0, "fan_in", "uniform"), "LecunNormal": (1.0, "fan_in", "truncated_normal")}


class Initializer:
    """What every initializer shares: a Keras config, and values for a shape."""

    class_name: ClassVar[str] = "Initializer"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any):
        unknown = set(options) - set(self.defaults) - {"input_axes", "output_axes"}
        if unknown:
            raise KerasValueError(f"{self.class_name}: unknown option(s) {sorted(unknown)}")
        for axes in ("input_axes", "output_axes"):
            if options.pop(axes, None) is not None:
                raise KerasValueError(f"{self.class_name}: {axes} is not supported")
        self.options = {**self.defaults, **options}
        seed = self.options.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
            raise KerasValueError(f"{self.class_name}: seed must be an integer or None, got {seed!r}")
        for key, value in self.options.items():
            if key not in ("seed", "mode", "distribution") and (
                    isinstance(value, bool) or not isinstance(value, int | float | np.number)):
                raise KerasValueError(f"{self.class_name}: {key} must be a number, got {value!r}")

    @property
    def default(self) -> bool:
        """Keras' default kernel initializer, unseeded: digitnet train's own draw."""
        return type(self) is GlorotUniform and self.options.get("seed") is None

    def key(self) -> jax.Array:
        """The seeded initializer's own key (the same values every time, as in Keras), or a fresh
        one from digitnet.keras' seed sequence."""
        from digitnet.keras.utils import next_seed

        seed = self.options.get("seed")
        return jax.random.key(int(seed) if seed is not None else next_seed())

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        return self.draw(self.key(), tuple(int(d) for d in shape))

    def get_config(self) -> dict[str, Any]:
        return dict(self.options)

    def serialize(self) -> dict[str, Any]:
        return {"module": "keras.initializers", "class_name": self.class_name,
                "config": self.get_config(), "registered_name": None}


class Zeros(Initializer):
    class_name = "Zeros"

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)


class Ones(Initializer):
    class_name = "Ones"

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        return np.ones(shape, np.float32)


class Constant(Initializer):
    """A number, or an array broadcast to the weight's shape (TensorFlow's imbalanced-data
    tutorial: `Constant(np.log([pos / neg]))` for an output bias), as Keras'."""

    class_name = "Constant"
    defaults = {"value": 0.0}

    def __init__(self, value: Any = 0.0, **options: Any):
        if isinstance(value, dict) and value.get("class_name") == "__numpy__":  # a Keras config
            value = value.get("config", {}).get("value")
        try:
            array = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            array = np.array(np.nan)
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise KerasValueError(f"Constant: value must be a finite number or array, got {value!r}")
        self.array = None if array.ndim == 0 else array
        super().__init__(value=float(array) if array.ndim == 0 else 0.0, **options)

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        if self.array is None:
            return np.full(shape, self.options["value"], np.float32)
        try:
            return np.array(np.broadcast_to(self.array.astype(np.float32), shape))
        except ValueError:
            raise KerasValueError(f"Constant: a value of shape {self.array.shape} does not fit a "
                                  f"weight of shape {shape}") from None

    def get_config(self) -> dict[str, Any]:
        if self.array is None:
            return super().get_config()
        return {"value": {"class_name": "__numpy__",
                          "config": {"value": self.array.tolist(), "dtype": "float64"}}}


class RandomNormal(Initializer):
    class_name = "RandomNormal"
    defaults = {"seed": None, "mean": 0.0, "stddev": 0.05}

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None, **options: Any):
        super().__init__(mean=mean, stddev=stddev, seed=seed, **options)

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        o = self.options
        return np.asarray(o["mean"] + o["stddev"] * jax.random.normal(key, shape, np.float32), np.float32)


class TruncatedNormal(RandomNormal):
    """A normal distribution cut at two standard deviations, as Keras'."""

    class_name = "TruncatedNormal"

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        o = self.options
        z = jax.random.truncated_normal(key, -2.0, 2.0, shape, np.float32)
        return np.asarray(o["mean"] + o["stddev"] * z, np.float32)


class RandomUniform(Initializer):
    class_name = "RandomUniform"
    defaults = {"seed": None, "minval": -0.05, "maxval": 0.05}

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None,
                 **options: Any):
        super().__init__(minval=minval, maxval=maxval, seed=seed, **options)

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        o = self.options
        return np.asarray(jax.random.uniform(key, shape, np.float32, o["minval"], o["maxval"]))


class VarianceScaling(Initializer):
    """Keras' VarianceScaling (and the Glorot, He and LeCun presets): JAX's, which has the same
    fan modes and distributions ('untruncated_normal' is JAX's 'normal')."""

    class_name = "VarianceScaling"
    defaults = {"seed": None, "scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None, **options: Any):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise KerasValueError(f"VarianceScaling: mode must be fan_in, fan_out or fan_avg, got {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise KerasValueError("VarianceScaling: distribution must be truncated_normal, "
                                  f"untruncated_normal or uniform, got {distribution!r}")
        if not scale > 0:
            raise KerasValueError(f"VarianceScaling: scale must be positive, got {scale!r}")
        super().__init__(scale=scale, mode=mode, distribution=distribution, seed=seed, **options)

    def draw(self, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        o = self.options
        return scaled_draw(key, shape, o["scale"], o["mode"], o["distribution"])


def scaled_draw(key: jax.Array, shape: tuple[int, ...], scale: float, mode: str,
                distribution: str) -> np.ndarray:
    """Keras' VarianceScaling draw, by JAX's initializer of the same fan modes and distributions
    ('untruncated_normal' is JAX's 'normal'); a vector (a bias) has its length as both fans, as
    in Keras, where JAX would refuse it."""
    dist = "normal" if distribution == "untruncated_normal" else distribution
    if len(shape) == 1:
        std = math.sqrt(scale / shape[0])
        if dist == "uniform":
            values = jax.random.uniform(key, shape, np.float32, -std * math.sqrt(3), std * math.sqrt(3))
        elif dist == "truncated_normal":  # the constant: the std of a unit normal cut at ±2
            values = jax.random.truncated_normal(key, -2, 2, shape, np.float32) * (std / .87962566103423978)
        else:
            values = jax.random.normal(key, shape, np.float32) * std
        return np.asarray(values, np.float32)
    init = jax.nn.initializers.variance_scaling(scale, mode, dist)
    return np.asarray(init(key, shape, np.float32))


def _preset(name: str) -> type[VarianceScaling]:
    scale, mode, distribution = _VS[name]

    def __init__(self: Any, seed: int | None = None, **options: Any) -> None:  # noqa: N807
        Initializer.__init__(self, seed=seed, **options)

    def draw(self: Any, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
        return scaled_draw(key, shape, scale, mode, distribution)

    return type(name, (VarianceScaling,), {"class_name": name, "__init__": __init__, "draw": draw,
                                            "defaults": {"seed": None}})


GlorotUniform = _preset("GlorotUniform")
GlorotNormal = _preset("GlorotNormal")
HeUniform = _preset("HeUniform")
HeNormal = _preset("HeNormal")
LecunUniform = _preset("LecunUniform")
LecunNormal = _preset("LecunNormal")

CLASSES: dict[str, type[Initializer]] = {c.class_name: c for c in (
    Zeros, Ones, Constant, RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling, GlorotUniform,
    GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal)}
# Keras' string names (and its older ones: normal, uniform, zero, one)
NAMES = {"zeros": Zeros, "zero": Zeros, "ones": Ones, "one": Ones, "constant": Constant,
         "random_normal": RandomNormal, "normal": RandomNormal, "truncated_normal": TruncatedNormal,
         "random_uniform": RandomUniform, "uniform": RandomUniform, "variance_scaling": VarianceScaling,
         "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal, "he_uniform": HeUniform,
         "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal}

zeros, ones, constant = Zeros, Ones, Constant
random_normal, truncated_normal, random_uniform, variance_scaling = (
    RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling)
glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal = (
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal)


class LayerDefault(GlorotUniform):  # type: ignore[misc, valid-type]
    """What a layer given `initializer=None` draws: Keras' add_weight default, glorot_uniform,
    for a bias too (Keras 3's Dense(bias_initializer=None) draws its bias so); saved as None."""

    def serialize(self) -> None:  # type: ignore[override]
        return None


def get(identifier: Any, where: str = "initializer") -> Initializer:
    """An initializer from a name ('he_normal'), a class, an instance, or a Keras config; None
    is the layer's default, as in Keras (LayerDefault)."""
    if identifier is None:
        return LayerDefault()
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, dict):
        cls = identifier.get("class_name")
        options = identifier.get("config") or {}
        if cls not in CLASSES or identifier.get("registered_name") not in (None, cls) or not isinstance(
                options, dict):
            raise KerasValueError(f"{where}: initializer {cls!r} is not supported; supported: "
                                  f"{', '.join(CLASSES)}")
        return CLASSES[cls](**options)
    if isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier]()
    if isinstance(identifier, str) and identifier in CLASSES:
        return CLASSES[identifier]()
    raise KerasValueError(f"{where}: initializer {identifier!r} is not supported; supported: "
                          f"{', '.join(NAMES)} (or their classes)")
