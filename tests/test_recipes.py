"""Recipes from the CLI and the API, and reproducible training with augmentation."""

from __future__ import annotations

import json
import tomllib

import jax
import numpy as np
import pytest

import digitnet
from digitnet.cli import main
from digitnet.config import recipe
from digitnet.data.datasets import FILES, Dataset, load_dataset
from digitnet.data.idx import write_idx
from digitnet.errors import ConfigError
from digitnet.model import MLPSpec
from digitnet.recipes import FOLDER, recipe_names
from digitnet.train import TrainConfig, fit_arrays


@pytest.fixture(scope="module")
def small() -> Dataset:
    ds = load_dataset()
    return Dataset("mnist-small", ds.x_train[:512], ds.y_train[:512], ds.x_test[:200], ds.y_test[:200])


@pytest.fixture(scope="module")
def small_dir(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    for role, stem in FILES.items():
        split, kind = role.split("_")
        write_idx(folder / stem, getattr(small, f"{'x' if kind == 'images' else 'y'}_{split}")
                  .astype(np.uint8))
    return folder


def test_the_four_recipes_are_shipped():
    assert {"tutorial", "fast", "best", "ceiling"} <= set(recipe_names())


def test_tutorial_recipe_is_the_defaults():
    spec, cfg, run = recipe("tutorial")
    assert (spec, cfg, run) == (MLPSpec(), TrainConfig(), {})


@pytest.mark.parametrize("name", ["fast", "best", "ceiling"])
def test_recipe_api_reads_the_file_and_takes_overrides(name):
    options = tomllib.loads((FOLDER / f"{name}.toml").read_text())
    spec, cfg, _ = recipe(name, epochs=2)
    assert cfg.epochs == 2
    assert list(spec.hidden) == options["hidden"]
    assert spec.deskew == options.get("deskew", False) and spec.preprocess == options["preprocess"]
    for key, value in options.items():
        if key in TrainConfig.__dataclass_fields__ and key != "epochs":
            assert getattr(cfg, key) == value, key
    uses_augmentation = any(k.startswith(("aug_", "elastic_")) for k in options)
    assert uses_augmentation == (name == "ceiling")


def test_unknown_recipe_exits_2_with_one_line(capsys):
    assert main(["train", "--recipe", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown recipe 'nope'" in err and "best" in err
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe("nope")


def test_cli_recipe_with_overrides(small_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "fast", "--hidden", "32", "--epochs", "1", "--quiet",
                 "--data-dir", str(small_dir), "--out", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    _, fast, _ = recipe("fast")
    assert saved["recipe"] == "fast"
    assert saved["model"]["hidden"] == [32] and saved["train"]["epochs"] == 1
    assert saved["train"]["label_smoothing"] == fast.label_smoothing
    assert saved["train"]["batch_size"] == fast.batch_size


def test_api_fit_with_a_recipe(small):
    model = digitnet.fit(dataset=small, verbose=False, recipe="fast")
    spec, cfg, _ = recipe("fast")
    assert model.config["recipe"] == "fast"
    assert model.spec.hidden == spec.hidden and model.config["train"] == cfg.to_dict()
    assert model.config["metrics"]["test_accuracy"] > 0.5  # 512 images are enough to learn


@pytest.mark.slow
def test_training_with_augmentation_is_deterministic(small):
    spec = MLPSpec(hidden=(16,), dropout=0.2, input_dropout=0.1)
    x, y = small.x_train[:128], small.y_train[:128]
    stats = {"shift": np.full(784, 127.5, np.float32), "scale": np.full(784, 1 / 255, np.float32)}

    def weights(seed: int, **aug) -> list[np.ndarray]:
        cfg = TrainConfig(epochs=1, batch_size=32, seed=seed, ema=0.9, max_norm=2.0,
                          chunks_per_epoch=1, **aug)
        state = fit_arrays(spec, cfg, x, y, stats)
        return [np.asarray(v) for v in jax.tree.leaves(state.weights())]

    aug = dict(aug_shift=2.0, aug_rotate=10.0, aug_scale=0.1, aug_shear=5.0, elastic_alpha=34.0)
    a, b = weights(1, **aug), weights(1, **aug)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    # The augmentation is really applied: the same seed without it trains differently.
    assert any(not np.array_equal(u, v) for u, v in zip(a, weights(1), strict=True))
