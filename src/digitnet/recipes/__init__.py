"""Recipes shipped with digitnet: flat TOML option files (NAME.toml in this folder), as
digitnet.config.resolve takes them. Kept free of JAX so that `digitnet --help` is instant."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from digitnet.errors import ConfigError

FOLDER = resources.files(__name__)


def recipe_names() -> list[str]:
    return sorted(f.name.removesuffix(".toml") for f in FOLDER.iterdir() if f.name.endswith(".toml"))


def recipe_options(name: str) -> dict[str, Any]:
    """The flat options of the recipe NAME."""
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; choose from {', '.join(recipe_names())}")
    return tomllib.loads((FOLDER / f"{name}.toml").read_text(encoding="utf-8"))
