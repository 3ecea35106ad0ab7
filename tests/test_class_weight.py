"""class_weight: each example's loss times its class's weight, as Keras' fit(class_weight=...).
Real Keras' answers for the same training are in tests/keras_oracle (scenario `class_weight`);
here, the option itself, 'balanced', and the reported loss against NumPy."""

import json

import numpy as np
import pytest

import digitnet
from digitnet.data.datasets import Dataset
from digitnet.errors import ConfigError
from digitnet.train import TrainConfig
from digitnet.trainconfig import with_class_weights
from tests.cli_runner import run_cli


@pytest.mark.parametrize("text", ["1,x", "3", "-1,2", "0,0,0", "1,inf", "balance"])
def test_bad_class_weights_are_refused_in_one_line(text):
    with pytest.raises(ConfigError, match="^class_weight") as err:
        TrainConfig(class_weight=text)
    assert "\n" not in str(err.value)


def test_balanced_is_sklearns_formula_over_the_labels_that_train():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    cfg = with_class_weights(TrainConfig(class_weight="balanced"), labels, 4)
    weights = [float(w) for w in cfg.class_weight.split(",")]
    assert weights == [10 / (4 * 6), 10 / (4 * 3), 10 / (4 * 1), 1.0]  # class 3 has none: 1
    assert with_class_weights(TrainConfig(), labels, 4).class_weight == ""
    with pytest.raises(ConfigError, match="class_weight has 2 weights; the model has 4 classes"):
        with_class_weights(TrainConfig(class_weight="1,2"), labels, 4)


def small(mnist, n=256) -> Dataset:
    return Dataset("mnist-small", mnist.x_train[:n], mnist.y_train[:n], mnist.x_test[:500],
                   mnist.y_test[:500])


def test_the_epoch_loss_is_the_weighted_mean_of_the_examples_losses(mnist, tmp_path):
    """One full-batch step at a learning rate too small to move a float32 weight: the model
    saved holds the weights the loss was computed with, so NumPy recomputes that loss."""
    ds = small(mnist)
    cfg = TrainConfig(epochs=1, batch_size=len(ds.y_train), optimizer="sgd", lr=1e-30,
                      validation="none", class_weight="balanced")
    model = digitnet.fit(config=cfg, dataset=ds, out=tmp_path / "run", verbose=False)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["train"]["class_weight"]
    weights = np.array([float(w) for w in stored.split(",")])
    counts = np.bincount(ds.y_train, minlength=10)
    assert np.allclose(weights, len(ds.y_train) / (10 * counts))  # 'balanced', written out
    p = model.predict_proba(ds.x_train).astype(np.float64)
    ce = -np.log(p[np.arange(len(p)), ds.y_train])
    assert model.history[0]["loss"] == pytest.approx(np.mean(weights[ds.y_train] * ce), rel=1e-5)
    assert model.history[0]["loss"] != pytest.approx(np.mean(ce), rel=1e-3)
    notes = json.loads((tmp_path / "run" / "config.json").read_text())["metrics"]["loss_notes"]
    assert "weighted by its class" in notes["loss"] and notes["test_loss"] == "unweighted"


def test_weights_of_one_train_the_unweighted_bits(mnist):
    ds = small(mnist)
    runs = [digitnet.fit(config=TrainConfig(epochs=1, class_weight=cw, validation="none"),
                         dataset=ds, verbose=False) for cw in ("", ",".join(["1"] * 10))]
    a, b = ([np.asarray(v) for layer in m.params for v in layer.values()] for m in runs)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


def test_cli_class_weight_errors_exit_2(tmp_path):
    r = run_cli("train", "--class-weight", "1,2", "--epochs", "1", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "class_weight has 2 weights; the model has 10 classes" in r.stderr
    assert not (tmp_path / "r" / "model.safetensors").exists()
    r = run_cli("train", "--class-weight", "heavy", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
