"""Run directories: save → load → identical predictions; corrupt files give clear errors."""

import json
import os

import jax
import numpy as np
import pytest

import digitnet
from digitnet import artifacts as art
from digitnet.errors import ModelFileError


def test_save_load_gives_identical_predictions(trained_model, mnist, tmp_path):
    trained_model.save(tmp_path / "copy")
    again = digitnet.load(tmp_path / "copy")
    np.testing.assert_array_equal(again.predict_proba(mnist.x_test),
                                  trained_model.predict_proba(mnist.x_test))
    assert again.spec == trained_model.spec
    assert again.history == trained_model.history  # floats round-trip exactly through CSV
    config = json.loads((tmp_path / "copy" / art.CONFIG).read_text())
    assert config["model"]["hidden"] == [64, 64]
    assert config["dataset"]["sha256"]["test_images"].startswith("0fa7898d")
    assert {"jax", "optax", "digitnet"} <= set(config["versions"])
    assert config["device"] == {"backend": jax.default_backend(),
                                "device": jax.devices()[0].device_kind}


def test_the_run_directory_holds_config_weights_history(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {art.CONFIG, art.WEIGHTS, art.HISTORY, art.CHECKPOINT} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    header = (trained_run / art.HISTORY).read_text().splitlines()[0]
    assert header == "epoch,loss,accuracy,val_loss,val_accuracy,seconds"


@pytest.fixture
def run_copy(trained_model, tmp_path):
    return trained_model.save(tmp_path / "run")


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / art.WEIGHTS).write_bytes(b"garbage"), "not a valid safetensors"),
    (lambda d: (d / art.WEIGHTS).write_bytes((d / art.WEIGHTS).read_bytes()[:1000]),
     "not a valid safetensors"),
    (lambda d: (d / art.CONFIG).write_text("{not json"), "not valid JSON"),
    (lambda d: (d / art.CONFIG).write_text('{"format": "pickle"}'), "not a digitnet run"),
    (lambda d: os.remove(d / art.WEIGHTS), "missing weights.safetensors"),
    (lambda d: (d / art.CONFIG).write_text(
        (d / art.CONFIG).read_text().replace('"hidden": [\n      64,\n      64\n    ]',
                                             '"hidden": [\n      32,\n      64\n    ]')),
     "the config needs float32"),
])
def test_damaged_runs_give_clear_errors(run_copy, damage, message):
    damage(run_copy)
    with pytest.raises(ModelFileError, match=message):
        digitnet.load(run_copy)


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "weights.safetensors"
    art.atomic_write_bytes(target, b"old model")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        art.atomic_write_bytes(target, b"new model")
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]  # no temp left over


def test_predict_accepts_flat_and_single_images(trained_model, mnist):
    flat = mnist.x_test[:3].reshape(3, -1)
    assert trained_model.predict(flat).tolist() == trained_model.predict(mnist.x_test[:3]).tolist()
    assert trained_model.predict(mnist.x_test[0]).tolist() == [7]
    with pytest.raises(digitnet.DigitnetError, match="784 values"):
        trained_model.predict(np.zeros((2, 10)))
    with pytest.raises(digitnet.DigitnetError, match="NaN"):
        trained_model.predict(np.full((1, 784), np.nan))
