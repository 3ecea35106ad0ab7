"""Options (recipe, TOML file, flags or keywords, sweep) → MLPSpec + TrainConfig + run options.

`resolve` is the one merge, used by the CLI, digitnet.fit and sweeps; precedence:
recipe < TOML file < flags/keywords. A config file is flat: every key is an option, e.g.

    hidden = [128, 128]
    activation = "relu"
    epochs = 10
    lr = 0.005
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitnet.errors import ConfigError
from digitnet.options import did_you_mean, option
from digitnet.recipes import recipe_options
from digitnet.safefiles import read_regular
from digitnet.spec import MLPSpec
from digitnet.trainconfig import TrainConfig


@dataclass
class RunOptions:
    """Where the data comes from and where the run goes."""

    dataset: str = option("mnist", "dataset name (see `digitnet datasets list`)", group="run")
    data_dir: str | None = option(None, "a folder holding the four standard IDX files", group="run")
    out: str | None = option(None, "run directory (default runs/<dataset or --data-dir folder name>-<time>)",
                             group="run")


OPTION_CLASSES = (("Model", MLPSpec), ("Training", TrainConfig), ("Data and output", RunOptions))
FIELDS = {f.name: f for _, cls in OPTION_CLASSES for f in dataclasses.fields(cls)}
ALIASES = {a: name for name, f in FIELDS.items() for a in f.metadata["aliases"]}
RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunOptions))
MAX_TOML_BYTES = 1 << 20
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(MLPSpec))
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))
Resolved = tuple[MLPSpec, TrainConfig, dict[str, Any]]


def read_toml(path: str | Path) -> dict[str, Any]:
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: no such config file")
    # A FIFO or a device named as the config file is refused, not waited on or read forever.
    data = read_regular(path, MAX_TOML_BYTES, error=ConfigError, follow=True)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: TOML nested too deeply") from None


def check_keys(keys: Any, where: str = "") -> None:
    """A ConfigError for the first key that is no option, with the closest one offered."""
    for key in keys:
        if key not in FIELDS:
            raise ConfigError(f"{where + ': ' if where else ''}unknown option {key!r}"
                              + did_you_mean(key, FIELDS, ALIASES))


def normalize(options: Mapping[str, Any] | None, where: str = "") -> dict[str, Any]:
    """Flat options with checked keys; text given for a list option ('64,64') parsed."""
    out = {str(k).replace("-", "_"): v for k, v in (options or {}).items() if v is not None}
    check_keys(out, where)
    for key, value in out.items():
        parse = FIELDS[key].metadata["parse"]
        if parse is not None and isinstance(value, str):
            try:
                out[key] = parse(value)
            except ValueError as exc:
                raise ConfigError(f"{where + ': ' if where else ''}{key}: {exc}") from None
    return out


def resolve(options: Mapping[str, Any] | None = None, *, recipe: str | None = None,
            config: str | Path | Mapping[str, Any] | None = None,
            base: Mapping[str, Any] | None = None) -> Resolved:
    """(spec, train config, run options) from, lowest precedence first: `base` (a resumed
    run's saved options), a shipped `recipe`, a TOML `config` file (or its table), `options`."""
    merged = normalize(base, "saved run")
    if recipe is not None:
        merged.update(normalize(recipe_options(recipe), f"recipe {recipe}"))
    if config is not None:
        table = config if isinstance(config, Mapping) else read_toml(config)
        merged.update(normalize(table, "" if isinstance(config, Mapping) else str(config)))
    merged.update(normalize(options))
    try:
        spec = MLPSpec(**{k: merged[k] for k in MODEL_KEYS if k in merged})
        cfg = TrainConfig(**{k: merged[k] for k in TRAIN_KEYS if k in merged})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option value ({exc})") from None
    return spec, cfg, {k: merged[k] for k in RUN_KEYS if k in merged}


def recipe(name: str, **overrides: Any) -> Resolved:
    """(spec, config, run options) of a shipped recipe, with some options overridden:
    `recipe("best", epochs=3)`."""
    return resolve(overrides, recipe=name)


if __name__ == "__main__":  # python -m digitnet.config > docs/options.md
    from digitnet.options import markdown_table

    print(markdown_table(OPTION_CLASSES), end="")
