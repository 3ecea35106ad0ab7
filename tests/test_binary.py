"""Binary classifiers (one sigmoid unit, MLPSpec(output="sigmoid")) made by digitnet.keras, on
every path a digitnet model takes: load, predict, evaluate, the CLI, ONNX, ensembles, serving.
Oracles: NumPy's forward pass, the predictions real Keras recorded, onnxruntime. The binary run
and its server are session fixtures (tests/conftest.py); the serve page's two-bar view is tested
in a browser in tests/serving/test_serve_page.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

import digitnet
from digitnet.api import Model
from digitnet.cli import main
from digitnet.errors import ConfigError

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "keras"


def numpy_sigmoid(model: Model, x: np.ndarray) -> np.ndarray:
    """p(class 1) by NumPy in float64, from the raw pixels."""
    h = (x.reshape(len(x), -1).astype(np.float64) - model.stats["shift"]) * model.stats["scale"]
    for layer in model.params[:-1]:
        h = np.maximum(h @ layer["kernel"] + layer["bias"], 0)
    z = h @ model.params[-1]["kernel"] + model.params[-1]["bias"]
    return 1 / (1 + np.exp(-z[:, 0]))


def test_python_paths_against_numpy(five, mnist):
    folder, km, run = five
    model = digitnet.load(run)
    assert model.spec.output == "sigmoid" and model.spec.sizes == [784, 32, 1]
    x, y = mnist.x_test[:500], (mnist.y_test[:500] == 5).astype(int)
    p1 = numpy_sigmoid(model, x)
    probs = model.predict_proba(x)
    assert probs.shape == (500, 2)
    np.testing.assert_allclose(probs[:, 1], p1, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(probs[:, 1], km.predict(x / 255.0, verbose=0)[:, 0], atol=1e-5)
    pred = model.predict(x)
    np.testing.assert_array_equal(pred, p1 > 0.5)
    assert 0 < pred.sum() < len(pred)  # the model says both answers: the test can tell them apart
    ev = model.evaluate()  # the run's dataset: the 0/1 test labels
    bce = -np.mean(y * np.log(p1) + (1 - y) * np.log(1 - p1))
    assert ev.accuracy == pytest.approx(np.mean(pred == y))
    assert ev.loss == pytest.approx(bce, abs=1e-5)
    np.testing.assert_array_equal(ev.confusion, [[np.sum((y == a) & (pred == b)) for b in (0, 1)]
                                                 for a in (0, 1)])
    # Labels as Keras takes them, (N, 1) floats, and one-hot rows: the same evaluation.
    assert model.evaluate(x, y[:, None].astype("float32")).accuracy == ev.accuracy
    assert model.evaluate(x, np.eye(2)[y]).loss == pytest.approx(ev.loss)
    with pytest.raises(ConfigError, match="0/1 labels") as err:
        model.evaluate(x, mnist.y_test[:500])
    assert "\n" not in str(err.value)


def test_keras_written_binary_file():
    """A functional binary classifier real Keras 3 wrote: the same probabilities as Keras gave."""
    from digitnet import keras
    from scripts.keras_layers_interop import X

    km = keras.models.load_model(FIXTURES / "layers_binary.keras")
    model = Model.from_keras(km)  # its inputs were used as given
    want = np.load(FIXTURES / "layers_binary.npy")
    np.testing.assert_allclose(model.predict_proba(X)[:, 1:], want, atol=1e-6)
    np.testing.assert_array_equal(model.predict(X), want[:, 0] > 0.5)


@pytest.mark.slow
def test_cli_paths(five, tmp_path, capsys):
    folder, _, run = five
    model = digitnet.load(run)
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(model.evaluate().accuracy)
    assert main(["predict", str(run), "--indices", "0:4", "--json", "--explain"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [len(r["probabilities"]) for r in rows] == [2] * 4
    assert [r["true"] for r in rows] == [0, 0, 0, 0]
    assert all(np.abs(r["explanation"]).max() == 1.0 for r in rows)
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.html").is_file()
    assert main(["compare", str(run), str(run)]) == 0
    assert "McNemar" in capsys.readouterr().out
    # A binary run without 0/1 labels to score it on: one line, exit 2.
    bare = Model(model.spec, model.params, model.stats).save(tmp_path / "bare")
    assert main(["evaluate", str(bare)]) == 2
    assert "0/1 labels" in capsys.readouterr().err


def test_onnx_and_ensembles(five, mnist, tmp_path):
    import onnxruntime as ort

    folder, km, run = five
    other = Model.from_keras(km, preprocess="unit", dataset=folder)
    other.params[0]["kernel"] = other.params[0]["kernel"] * 0.5  # another member
    other.save(tmp_path / "other")
    assert main(["ensemble", str(run), str(tmp_path / "other"), "--out", str(tmp_path / "ens")]) == 0
    x = mnist.x_test[:500]
    for path in (run, tmp_path / "ens"):
        model = digitnet.load(path)
        assert main(["export", str(path), "--out", str(tmp_path / "m.onnx")]) == 0
        sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        probs, logits = sess.run(["probabilities", "logits"], {"images": x})
        assert probs.shape == logits.shape == (500, 2)
        np.testing.assert_allclose(probs, model.predict_proba(x), atol=1e-5)
    ens = digitnet.load(tmp_path / "ens")
    mean = (digitnet.load(run).predict_proba(x) + other.predict_proba(x)) / 2
    np.testing.assert_allclose(ens.predict_proba(x), mean, atol=1e-6)
    assert ens.evaluate().accuracy == pytest.approx(np.mean(mean.argmax(1) == (mnist.y_test[:500] == 5)))
    # A two-class softmax model and a binary one do not mix.
    softmax2 = Model(digitnet.MLPSpec(hidden=(4,), num_classes=2), ens.members[0].params[:1] + [
        {"kernel": np.zeros((4, 2), np.float32), "bias": np.zeros(2, np.float32)}], ens.members[0].stats)
    softmax2.params[0] = {"kernel": np.zeros((784, 4), np.float32), "bias": np.zeros(4, np.float32)}
    with pytest.raises(ConfigError, match="output layer"):
        digitnet.ensemble.Ensemble([ens.members[0], softmax2])


def test_serve_answers_two_class_probabilities(five, binary_server, mnist):
    import httpx

    _, _, run = five
    model = digitnet.load(run)
    with httpx.Client(base_url=binary_server, timeout=30) as c:
        for i in range(4):
            x = mnist.x_test[i]
            got = c.post("/predict", json={"pixels": x.tolist()}).json()
            want = model.predict_proba(x[None])[0]
            assert got["label"] == int(want.argmax())
            np.testing.assert_allclose(got["probabilities"], want, atol=1e-6)
        batch = c.post("/predict/batch", json={"pixels": [mnist.x_test[i].tolist() for i in range(3)]})
        assert batch.status_code == 200, batch.text
        got = np.array([p["probabilities"] for p in batch.json()["predictions"]])
        np.testing.assert_allclose(got, model.predict_proba(mnist.x_test[:3]), atol=1e-6)


def test_fit_trains_a_binary_run(five, tmp_path, capsys):
    """digitnet.fit on a 2-class IDX folder with a sigmoid output; `digitnet runs` lists it."""
    folder, _, _ = five
    spec = digitnet.MLPSpec(output="sigmoid", num_classes=2, hidden=(8,))
    model = digitnet.fit(spec, digitnet.TrainConfig(epochs=1), data_dir=folder,
                         out=tmp_path / "fit", verbose=False)
    assert model.spec.sizes == [784, 8, 1]
    assert digitnet.load(tmp_path / "fit").evaluate().accuracy == model.config["metrics"]["test_accuracy"]
    assert main(["runs", str(tmp_path)]) == 0
    assert "784-8-1" in capsys.readouterr().out
