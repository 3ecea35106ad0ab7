"""Options declared once: flags, TOML keys, keywords, sweep axes and docs all follow the
declarations on MLPSpec, TrainConfig and RunOptions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import digitnet
from digitnet.config import FIELDS, resolve
from digitnet.errors import ConfigError
from digitnet.options import markdown_table
from digitnet.spec import ACTIVATION_NAMES, MLPSpec
from digitnet.trainconfig import HOST_ONLY, LOSSES, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_docs_option_table_is_current():
    from digitnet.config import OPTION_CLASSES

    current = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert current == markdown_table(OPTION_CLASSES), \
        "regenerate: python -m digitnet.config > docs/options.md"


def test_every_option_has_a_flag_with_its_choices_in_help():
    from digitnet.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest: a for a in train._actions}
    for name, f in FIELDS.items():
        if f.metadata["cli"]:
            assert name in dests, name
            assert all(c in dests[name].help for c in f.metadata["choices"]), name
    assert "linear" in dests["activation"].help


def test_declared_choices_match_what_the_engine_runs():
    from digitnet.metrics import loss_values
    from digitnet.model import ACTIVATIONS

    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    import jax.numpy as jnp

    for loss in LOSSES:
        loss_values(jnp.zeros((1, 10)), jnp.zeros((1,), jnp.int32), loss)


def test_host_only_comes_from_the_declarations():
    assert set(HOST_ONLY) == {"seed", "validation", "patience", "chunks_per_epoch"}


@pytest.mark.parametrize("given", [0.5, "0.5", [0.5], (0.5,)])
def test_one_per_layer_value_applies_to_every_layer(given):
    spec, _, _ = resolve({"hidden": "32,32,32", "dropout": given})
    assert spec.dropout == (0.5, 0.5, 0.5)
    assert MLPSpec(hidden=(8, 8), dropout=given).dropout == (0.5, 0.5)
    assert MLPSpec(hidden=(8, 8), activations=["tanh"]).hidden_activations == ("tanh", "tanh")
    with pytest.raises(ConfigError, match="one value or one per hidden layer"):
        MLPSpec(hidden=(8, 8, 8), dropout=(0.1, 0.2))


def test_precedence_recipe_then_toml_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 7\nlr = 0.01\ndropout = 0.1\n')
    spec, cfg, run = resolve({"lr": 0.02, "out": "x"}, recipe="fast", config=toml)
    assert (cfg.epochs, cfg.lr, cfg.schedule) == (7, 0.02, "onecycle")  # flag > TOML > recipe
    assert spec.hidden == (256, 256) and spec.dropout == (0.1, 0.1) and run == {"out": "x"}
    spec, cfg, _ = resolve(recipe="fast")
    assert (spec, cfg) == digitnet.config.recipe("fast")[:2]


def test_unknown_keys_name_the_source_and_the_closest_option(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown option 'learning_rate'; did you mean lr\?"):
        resolve(config=toml)
    with pytest.raises(ConfigError, match=r"did you mean batch_size\?"):
        resolve({"batchsize": 3})
    with pytest.raises(ConfigError, match=r"did you mean lr\?"):
        digitnet.fit(learning_rate=0.1, verbose=False)
    with pytest.raises(ConfigError, match=r"choose from .*; did you mean sgd\?"):
        TrainConfig(optimizer="sdg")


def test_sweep_axes_are_checked_against_the_options():
    from digitnet.sweep import make_plan

    with pytest.raises(ConfigError, match=r"grid.g: unknown option 'learning_rate'; did you mean lr"):
        make_plan({"grid": {"g": {"learning_rate": [0.1, 0.2]}}})
    plan = make_plan({"base": {"hidden": [8, 8]}, "grid": {"g": {"dropout": [0.5]}}})
    assert [t.options["dropout"] for t in plan.trials] == [0.5]


def test_help_and_the_option_modules_do_not_import_jax():
    code = ("import sys; from digitnet.cli import build_parser; build_parser().format_help();"
            "import digitnet; digitnet.MLP(dropout=0.5); digitnet.TrainConfig(); "
            "from digitnet.config import resolve; resolve({'hidden': '8'});"
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})


def test_dir_shows_the_public_api():
    names = dir(digitnet)
    for name in ("fit", "load", "MLP", "TrainConfig", "load_dataset"):
        assert name in names
