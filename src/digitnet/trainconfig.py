"""How to train: the TrainConfig dataclass, declared with option metadata (digitnet.options).

Free of JAX, so that the CLI, progress bars, trackers and config files can use it without
starting JAX; digitnet.train runs it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from digitnet.errors import ConfigError
from digitnet.options import choose, option

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion", "ftrl")
# Keras 3's options of each optimizer and their defaults: `optimizer_options` may set these
# (digitnet.kerasopt runs them as Keras does; digitnet.keras fills it in).
_KERAS_COMMON = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None, "weight_decay": None}
_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
KERAS_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {name: {**_KERAS_COMMON, **own} for name, own in {
    "sgd": {"momentum": 0.0, "nesterov": False},
    "adam": {**_ADAM, "amsgrad": False},
    "adamw": {**_ADAM, "amsgrad": False, "weight_decay": 0.004},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "adagrad": {"initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "adadelta": {"rho": 0.95, "epsilon": 1e-7},
    "adamax": dict(_ADAM), "nadam": dict(_ADAM), "lion": {"beta_1": 0.9, "beta_2": 0.99},
    "ftrl": {"learning_rate_power": -0.5, "initial_accumulator_value": 0.1, "beta": 0.0,
             "l1_regularization_strength": 0.0, "l2_regularization_strength": 0.0,
             "l2_shrinkage_regularization_strength": 0.0},
}.items()}
SCHEDULES = ("constant", "cosine", "onecycle", "step")
LOSSES = ("cross_entropy", "mse")  # digitnet.metrics computes them
# The fields that switch augmentation on (any of them non-zero); digitnet.augment applies them.
AUG_KEYS = ("aug_shift", "aug_rotate", "aug_scale", "aug_shear", "elastic_alpha")

REG = "regularisation"


# Upper bounds of the integer options: beyond them a run could not finish, and a seed must fit
# the 64-bit counter of JAX's random keys.
INT_BOUNDS = {"epochs": 100_000, "batch_size": 1 << 20, "seed": (1 << 63) - 1, "patience": 100_000,
              "chunks_per_epoch": 100_000, "step_epochs": 100_000}


def check_types(cfg: Any) -> None:
    """Each field holds its declared type (an int for int, a finite real for float, true/false
    for bool): `lr = true` or `seed = 2**70` from a TOML file or a run's config.json is refused
    here, whichever entry point built the config."""
    for name, f in cfg.__dataclass_fields__.items():
        value, kind = getattr(cfg, name), f.type
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            bound = INT_BOUNDS.get(name, 1 << 31)
            if not 0 <= value <= bound:
                raise ConfigError(f"{name} must be within 0…{bound:,}, got {value}")
            setattr(cfg, name, int(value))
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value!r}")
            setattr(cfg, name, float(value))
        elif kind == "str" and not isinstance(value, str):
            if name == "validation" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                continue  # a fraction, as a number: "0.1" and 0.1 mean the same
            raise ConfigError(f"{name} must be a string, got {value!r}")
# Keras' learning-rate schedules (keras.optimizers.schedules) digitnet.kerasopt runs, and their
# options: the optimizer options carry one as {"class_name": ..., "config": {...}}.
KERAS_SCHEDULES: dict[str, tuple[str, ...]] = {
    "ExponentialDecay": ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
    "InverseTimeDecay": ("initial_learning_rate", "decay_steps", "decay_rate", "staircase"),
    "PiecewiseConstantDecay": ("boundaries", "values"),
    "PolynomialDecay": ("initial_learning_rate", "decay_steps", "end_learning_rate", "power"),
    "CosineDecay": ("initial_learning_rate", "decay_steps", "alpha"),
}


def check_optimizer_options(optimizer: str, text: str) -> None:
    """optimizer_options: empty, or a JSON object of the optimizer's Keras options."""
    if not text:
        return
    import json

    try:
        given = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"optimizer_options must be a JSON object: {exc}") from None
    if not isinstance(given, dict):
        raise ConfigError("optimizer_options must be a JSON object")
    allowed = KERAS_OPTIMIZER_DEFAULTS[optimizer]
    schedule = given.pop("learning_rate_schedule", None)
    kind = schedule.get("class_name") if isinstance(schedule, dict) else None
    known = kind in KERAS_SCHEDULES and isinstance(schedule.get("config"), dict) and set(
        schedule["config"]) <= set(KERAS_SCHEDULES[kind])
    if schedule is not None and not known:
        raise ConfigError("optimizer_options: learning_rate_schedule must be "
                          f'{{"class_name": one of {", ".join(KERAS_SCHEDULES)}, "config": {{its options}}}}')
    for key, value in given.items():
        if key not in allowed:
            raise ConfigError(f"optimizer_options: {optimizer} has no option {key!r} "
                              f"(it has {', '.join(sorted(allowed))})")
        low = -math.inf if key == "learning_rate_power" else 0
        if value is not None and not (isinstance(value, bool | int | float) and math.isfinite(value)
                                      and value >= low):
            raise ConfigError(f"optimizer_options: {key} must be a number ≥ {low}, true/false or "
                              f"null, got {value!r}")


def class_weight_values(text: str) -> tuple[float, ...] | None:
    """class_weight's explicit weights; None for '' (all alike) and 'balanced' (resolved from the
    training labels by with_class_weights)."""
    if text in ("", "balanced"):
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"class_weight must be 'balanced' or comma-separated numbers, one per "
                          f"class (1,1,5), got {text!r}") from None
    if len(values) < 2 or not all(math.isfinite(v) and v >= 0 for v in values) or not any(values):
        raise ConfigError(f"class_weight needs a finite weight ≥ 0 for each class (two or more, "
                          f"not all 0), got {text!r}")
    return values


def with_class_weights(cfg: TrainConfig, labels: Any, classes: int) -> TrainConfig:
    """cfg with class_weight as the engine reads it: 'balanced' made explicit from the labels
    that train (sklearn's n / (classes × count of the class); 1 for a class with none), and the
    number of weights checked against the classes."""
    if cfg.class_weight == "balanced":
        import numpy as np

        labels = np.asarray(labels)
        labels = labels.argmax(-1) if labels.ndim == 2 and labels.shape[1] > 1 else labels.reshape(-1)
        counts = np.bincount(np.round(labels).astype(np.int64), minlength=classes)[:classes]
        weights = [len(labels) / (classes * c) if c else 1.0 for c in counts.tolist()]
        return dataclasses.replace(cfg, class_weight=",".join(repr(float(w)) for w in weights))
    values = class_weight_values(cfg.class_weight)
    if values is not None and len(values) != classes:
        raise ConfigError(f"class_weight has {len(values)} weights; the model has {classes} classes")
    return cfg


@dataclass
class TrainConfig:
    """How to train. The defaults are the tutorial's: Adam 1e-3, 5 epochs at batch 32."""

    epochs: int = option(5, "passes over the training set")
    batch_size: int = option(32, "images per step")
    optimizer: str = option("adam", "the optimizer (Keras' defaults)", choices=OPTIMIZERS)
    lr: float = option(1e-3, "learning rate", aliases=("learning_rate", "rate"))
    optimizer_options: str = option("", "Keras optimizer options as a JSON object (Keras' names: "
                                    "clipnorm, epsilon, amsgrad, ...); set by digitnet.keras",
                                    cli=False)
    momentum: float = option(0.0, "SGD momentum (sgd only)")
    nesterov: bool = option(False, "Nesterov momentum (sgd only)")
    schedule: str = option("constant", "learning-rate schedule", choices=SCHEDULES)
    weight_decay: float = option(0.0, "L2 weight decay on kernels (decoupled for adamw)")
    validation: str = option("test", "test, none, or a held-out fraction of train such as 0.1",
                             host_only=True)
    seed: int = option(1, "seed of initialisation, shuffling, dropout and augmentation",
                       host_only=True)
    shuffle: bool = option(True, "reshuffle the training set every epoch")
    patience: int = option(0, "early stopping on val_loss after this many epochs without "
                           "progress; 0 = off", host_only=True)
    chunks_per_epoch: int = option(20, "how often per epoch the progress bar moves",
                                   host_only=True)
    loss: str = option("cross_entropy", "loss (mse: of the softmax probabilities)", choices=LOSSES)
    class_weight: str = option("", "loss weight of each class, as Keras' fit(class_weight=...): "
                               "comma-separated, one per class (1,1,5), or 'balanced' "
                               "(n / (classes × count), from the training labels); empty = equal",
                               group=REG)
    warmup: float = option(0.0, "cosine schedule: epochs of linear warm-up", group=REG)
    step_epochs: int = option(0, "step schedule: decay every N epochs (0: a third of the run)",
                              group=REG)
    step_gamma: float = option(0.1, "step schedule: decay factor", group=REG)
    label_smoothing: float = option(0.0, "label smoothing ε", group=REG)
    max_norm: float = option(0.0, "max L2 norm of each unit's incoming weights; 0 = off", group=REG)
    ema: float = option(0.0, "decay of an average of the weights (0.999), used for evaluation "
                        "and saving; 0 = off", group=REG)
    aug_shift: float = option(0.0, "random shift bound, pixels per axis", group=REG)
    aug_rotate: float = option(0.0, "random rotation bound, degrees", group=REG)
    aug_scale: float = option(0.0, "random zoom bound: 0.1 = 0.9–1.1", group=REG)
    aug_shear: float = option(0.0, "random shear bound, degrees", group=REG)
    elastic_alpha: float = option(0.0, "elastic distortion α, pixels (Simard: 34); 0 = off",
                                  group=REG)
    elastic_sigma: float = option(4.0, "elastic distortion σ, pixels", group=REG)

    def __post_init__(self) -> None:
        check_types(self)
        self.validation = str(self.validation)
        choose("optimizer", self.optimizer, OPTIMIZERS)
        choose("schedule", self.schedule, SCHEDULES)
        check_optimizer_options(self.optimizer, self.optimizer_options)
        choose("loss", self.loss, LOSSES)
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if self.validation not in ("test", "none"):
            try:
                frac = float(self.validation)
            except ValueError:
                frac = -1.0
            if not 0 < frac < 1:
                raise ConfigError(
                    f"validation must be 'test', 'none' or a fraction in (0, 1), got {self.validation!r}"
                )
        if not (0 <= self.label_smoothing < 1 and 0 <= self.ema < 1):
            raise ConfigError("label_smoothing and ema must be in [0, 1)")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ConfigError(f"label smoothing applies to the cross-entropy loss, not {self.loss}")
        class_weight_values(self.class_weight)
        if self.max_norm < 0 or self.warmup < 0 or self.step_epochs < 0 or not 0 < self.step_gamma <= 1:
            raise ConfigError("max_norm, warmup and step_epochs must be ≥ 0, step_gamma in (0, 1]")
        if min(getattr(self, k) for k in AUG_KEYS) < 0:
            raise ConfigError(f"augmentation settings must be ≥ 0 ({', '.join(AUG_KEYS)})")
        if self.aug_scale >= 1 or self.aug_rotate > 180 or self.aug_shear >= 90 or self.elastic_sigma <= 0:
            raise ConfigError("augmentation out of range: aug_scale < 1, aug_rotate ≤ 180 (degrees), "
                              "aug_shear < 90 (degrees), elastic_sigma > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


# TrainConfig fields that never reach the compiled functions. Runs that differ only in these
# (the seeds of a sweep, say) share one Engine, so its programs are traced and compiled once.
HOST_ONLY = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["host_only"])
