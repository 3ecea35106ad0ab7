"""Batch normalization (Keras' BatchNormalization after a hidden Dense; MLPSpec.batchnorm): files
real Keras 3 wrote, a NumPy recomputation of a training step, every digitnet path a run dir
goes through (run dirs, ONNX against onnxruntime, the server's predictor, populations), the
CLI, and what stays refused. Training against Keras itself: tests/test_keras_layers.py's
scenario batch_norm (losses, weights and moving averages after two epochs)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import digitnet
from digitnet import keras
from digitnet.cli import main
from digitnet.errors import ConfigError
from digitnet.keras.errors import KerasValueError
from digitnet.model import MLPSpec, forward, preprocess_stats
from scripts.keras_layers_interop import BATCHNORM, X, batchnorm_model

FIXTURES = Path(__file__).parent / "fixtures/keras"


@pytest.mark.parametrize("name", [name for name, _ in BATCHNORM])
def test_reads_the_files_keras_wrote_and_writes_them_back(name, tmp_path):
    if name.endswith(".weights.h5"):
        model = batchnorm_model(keras)
        model.load_weights(FIXTURES / name)
    else:
        model = keras.models.load_model(FIXTURES / name)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["BatchNormalization", "Dense", "BatchNormalization", "Activation", "Dense",
                     "BatchNormalization", "Dropout", "Dense"]
    assert model.spec.batchnorm == ("before", "after") and model.spec.input_batchnorm
    assert model.spec.input_batchnorm_momentum == 0.8 and model.spec.use_bias == (False, True, True)
    assert model.layers[1].bias is None and len(model.get_weights()) == 4 + 1 + 4 + 2 + 4 + 2
    assert model.spec.batchnorm_momentum == (0.99, 0.9) and model.spec.batchnorm_epsilon == (1e-3, 0.01)
    want = np.load(FIXTURES / "layers_bn.npy")
    np.testing.assert_allclose(model.predict(X, verbose=0), want, atol=1e-6)
    # Keras trained it: its moving averages are no longer the initial zeros and ones
    # (after normalised inputs and a bias-free layer, the second one's means stay near zero)
    assert np.abs(model.layers[2].moving_variance.numpy() - 1).max() > 1e-3
    assert np.abs(model.layers[0].moving_mean.numpy()).max() > 1e-3
    out = tmp_path / name
    if name.endswith(".weights.h5"):
        model.save_weights(out)
        with h5py.File(out) as ours, h5py.File(FIXTURES / name) as theirs:
            assert sorted(ours["layers"]) == sorted(theirs["layers"])
            assert len(ours["layers/batch_normalization_1/vars"]) == 4
    else:
        model.save(out)
        np.testing.assert_allclose(keras.models.load_model(out).predict(X, verbose=0), want, atol=1e-6)


def numpy_step(spec, params, x, y, lr):
    """One plain-SGD step of a one-hidden-layer ReLU MLP with batch normalization before the
    activation, by hand in float64: the forward pass, backpropagation through the batch
    statistics, and the moving averages. An independent oracle of the engine's step."""
    p = {k: np.asarray(v, np.float64) for k, v in params[0].items()}
    out = {k: np.asarray(v, np.float64) for k, v in params[1].items()}
    eps, mom = spec.batchnorm_epsilon[0], spec.batchnorm_momentum[0]
    z = x @ p["kernel"] + p["bias"]
    mu, var = z.mean(0), z.var(0)
    xhat = (z - mu) / np.sqrt(var + eps)
    a = p["gamma"] * xhat + p["beta"]
    h = np.maximum(a, 0)
    logits = h @ out["kernel"] + out["bias"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    n = len(x)
    dlogits = (probs - np.eye(logits.shape[1])[y]) / n
    dh = dlogits @ out["kernel"].T
    da = dh * (a > 0)
    dgamma, dbeta = (da * xhat).sum(0), da.sum(0)
    dxhat = da * p["gamma"]
    dz = (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0)) / np.sqrt(var + eps)
    new = [{"kernel": p["kernel"] - lr * x.T @ dz, "bias": p["bias"] - lr * dz.sum(0),
            "gamma": p["gamma"] - lr * dgamma, "beta": p["beta"] - lr * dbeta,
            "moving_mean": p["moving_mean"] * mom + mu * (1 - mom),
            "moving_variance": p["moving_variance"] * mom + var * (1 - mom)},
           {"kernel": out["kernel"] - lr * h.T @ dlogits, "bias": out["bias"] - lr * dlogits.sum(0)}]
    return new


def test_one_training_step_matches_numpy_backpropagation():
    from digitnet.train import TrainConfig, TrainState, fit_arrays

    rng = np.random.default_rng(3)
    spec = MLPSpec(input_shape=(20,), hidden=(6,), num_classes=3, preprocess="none",
                   batchnorm="before", batchnorm_momentum=0.8)
    x = rng.normal(0, 1, (16, 20)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    params = [{"kernel": rng.normal(0, 0.3, (20, 6)).astype(np.float32),
               "bias": rng.normal(0, 0.1, 6).astype(np.float32),
               "gamma": rng.uniform(0.5, 1.5, 6).astype(np.float32),
               "beta": rng.normal(0, 0.2, 6).astype(np.float32),
               "moving_mean": np.zeros(6, np.float32), "moving_variance": np.ones(6, np.float32)},
              {"kernel": rng.normal(0, 0.3, (6, 3)).astype(np.float32),
               "bias": np.zeros(3, np.float32)}]
    cfg = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.5, shuffle=False,
                      validation="none")
    from digitnet.optimizers import make_optimizer

    state = TrainState(params=params, opt_state=make_optimizer(cfg, 1).init(params))
    got = fit_arrays(spec, cfg, x, y, preprocess_stats(spec, x), state=state).params
    want = numpy_step(spec, params, x.astype(np.float64), y, 0.5)
    for g, w in zip(got, want, strict=True):
        assert sorted(g) == sorted(w)
        for k in w:
            np.testing.assert_allclose(np.asarray(g[k]), w[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # inference normalises by the moving averages, not the batch's statistics
    logits = np.asarray(forward(got, preprocess_stats(spec, x), x, spec))
    p = {k: np.asarray(v, np.float64) for k, v in got[0].items()}
    z = x @ p["kernel"] + p["bias"]
    h = np.maximum((z - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"]
                   + p["beta"], 0)
    np.testing.assert_allclose(logits, h @ np.asarray(got[1]["kernel"]) + np.asarray(got[1]["bias"]),
                               rtol=1e-4, atol=1e-5)


def test_a_keras_model_becomes_a_run_dir_served_exported_and_evaluated_alike(tmp_path):
    import onnxruntime as ort

    from digitnet.export import to_onnx
    from digitnet.serve.predictor import Predictor, numpy_forward

    model = digitnet.Model.from_keras(keras.models.load_model(FIXTURES / "layers_bn.keras"))
    want = np.load(FIXTURES / "layers_bn.npy")
    model.save(tmp_path / "run")
    run = digitnet.load(tmp_path / "run")
    assert run.spec == model.spec and run.spec.non_trainable_params == 2 * (784 + 32 + 16)
    np.testing.assert_allclose(run.predict_proba(X), want, atol=1e-6)
    sess = ort.InferenceSession(to_onnx(run).SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.clip(X * 255, 0, 255).astype(np.uint8)
    probs, = sess.run(["probabilities"], {"images": pixels})
    np.testing.assert_allclose(probs, run.predict_proba(pixels), atol=1e-5)
    assert numpy_forward(run) is None  # the server's NumPy path leaves it to the compiled one
    served = Predictor(tmp_path / "run", max_batch=8)
    np.testing.assert_allclose(served(pixels[:5]), run.predict_proba(pixels[:5]), atol=1e-6)


def test_cli_trains_a_batch_normalized_model_and_its_moving_averages_follow(tmp_path):
    out = tmp_path / "bn"
    assert main(["train", "--hidden", "32,32", "--batchnorm", "before,after", "--batchnorm-momentum",
                 "0.9", "--input-batchnorm", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    model = digitnet.load(out)
    assert model.spec.batchnorm == ("before", "after") and model.spec.batchnorm_momentum == (0.9, 0.9)
    assert model.spec.input_batchnorm and np.abs(model.params[0]["input_moving_mean"]).max() > 0.01
    assert model.config["metrics"]["test_accuracy"] > 0.9
    first = model.params[0]
    assert np.abs(first["moving_variance"] - 1).max() > 0.01 and np.abs(first["moving_mean"]).max() > 0
    # a run without batch normalization writes none of its options (run files stay as before)
    assert "batchnorm" not in MLPSpec().to_dict()


def test_a_population_member_trains_as_it_does_alone(mnist):
    from dataclasses import replace

    from digitnet.population import Member, fit_members
    from digitnet.train import TrainConfig, fit_arrays

    spec = MLPSpec(hidden=(16,), batchnorm="after")
    x, y = mnist.x_train[:1600], mnist.y_train[:1600]
    cfg = TrainConfig(epochs=1, validation="none", seed=1)
    stats = preprocess_stats(spec, x)
    members = [Member(spec, replace(cfg, seed=s), stats) for s in (1, 2)]
    fit_members(members, x, y)
    alone = fit_arrays(spec, cfg, x, y, stats).params
    for a, b in zip(members[0].state.params, alone, strict=True):
        for k in b:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layers, message", [
    (lambda L: [L.Dropout(0.1), L.BatchNormalization(), L.Dense(8), L.Dense(10)],
     "right after a hidden Dense"),
    (lambda L: [L.Dense(8, activation="relu"), L.Dropout(0.2), L.BatchNormalization(), L.Dense(10)],
     "right after a hidden Dense"),
    (lambda L: [L.Dense(8), L.BatchNormalization(), L.BatchNormalization(), L.Dense(10)],
     "right after a hidden Dense"),
    (lambda L: [L.Dense(8), L.Dense(10), L.BatchNormalization()], "after the last Dense"),
])
def test_places_batch_normalization_cannot_go_are_refused_in_one_line(layers, message):
    model = keras.Sequential([keras.Input((784,)), *layers(keras.layers)])
    with pytest.raises(KerasValueError, match=message):
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(X, np.arange(len(X)) % 10, epochs=1, verbose=0)


@pytest.mark.parametrize("option", [{"center": False}, {"scale": False}, {"renorm": True},
                                    {"axis": 0}, {"gamma_regularizer": "l2"}])
def test_options_it_does_not_run_are_refused_by_name(option):
    with pytest.raises(KerasValueError, match=f"BatchNormalization: {next(iter(option))}"):
        keras.layers.BatchNormalization(**option)


def test_on_images_it_normalises_the_flat_inputs_only_after_flatten():
    L = keras.layers
    flat = keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.BatchNormalization(), L.Dense(10)])
    assert flat.spec.input_batchnorm
    before = keras.Sequential([keras.Input((28, 28)), L.BatchNormalization(), L.Flatten(), L.Dense(10)])
    with pytest.raises(KerasValueError, match="on the flat inputs"):
        before.predict(X.reshape(-1, 28, 28), verbose=0)


def test_called_on_arrays_it_computes_inference_and_refuses_training_mode():
    layer = keras.layers.BatchNormalization(epsilon=0.5)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(np.asarray(layer(x)), x / np.sqrt(1.5), rtol=1e-6)  # initial weights
    with pytest.raises(KerasValueError, match="training=True outside fit"):
        layer(x, training=True)


@pytest.mark.parametrize("fields, message", [({"batchnorm": "sideways"}, "unknown batchnorm"),
                                             ({"batchnorm": "after", "batchnorm_momentum": 1.5},
                                              "momentum"),
                                             ({"batchnorm": "after", "batchnorm_epsilon": 0}, "epsilon"),
                                             ({"batchnorm": ("after",) * 3}, "one per hidden layer")])
def test_spec_checks(fields, message):
    with pytest.raises(ConfigError, match=message):
        MLPSpec(**fields)
