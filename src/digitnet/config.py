"""Options (from the command line, a TOML file, or a sweep) → MLPSpec + TrainConfig + run options.

A config file is flat: every key is a field of MLPSpec, TrainConfig or RUN_KEYS, e.g.

    hidden = [128, 128]
    activation = "relu"
    epochs = 10
    lr = 0.005
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from digitnet.errors import ConfigError
from digitnet.model import MLPSpec
from digitnet.recipes import recipe_options
from digitnet.train import TrainConfig

RUN_KEYS = ("dataset", "data_dir", "out")
MODEL_KEYS = tuple(k for k in MLPSpec.__dataclass_fields__ if k not in ("input_shape", "num_classes"))
TRAIN_KEYS = tuple(TrainConfig.__dataclass_fields__)


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def recipe(name: str, **overrides: Any) -> tuple[MLPSpec, TrainConfig, dict[str, Any]]:
    """(spec, config, run options) of a shipped recipe, with some options overridden:
    `recipe("best", epochs=3)`."""
    return split_options({**recipe_options(name), **overrides})


def split_options(options: dict[str, Any]) -> tuple[MLPSpec, TrainConfig, dict[str, Any]]:
    """Validate flat options and sort them into the model spec, training config and the rest."""
    options = {k.replace("-", "_"): v for k, v in options.items() if v is not None}
    unknown = set(options) - set(MODEL_KEYS) - set(TRAIN_KEYS) - set(RUN_KEYS)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    model = {k: options[k] for k in MODEL_KEYS if k in options}
    if isinstance(model.get("hidden"), str):
        model["hidden"] = parse_ints(model["hidden"], "hidden")
    if isinstance(model.get("dropout"), str):
        model["dropout"] = parse_floats(model["dropout"], "dropout")
    try:
        spec = MLPSpec(**model)
        cfg = TrainConfig(**{k: options[k] for k in TRAIN_KEYS if k in options})
    except TypeError as exc:
        raise ConfigError(f"bad option value ({exc})") from None
    return spec, cfg, {k: options[k] for k in RUN_KEYS if k in options}


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{name} expects comma-separated integers, got {text!r}") from None


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--{name} expects comma-separated numbers, got {text!r}") from None
