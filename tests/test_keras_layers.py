"""The MLP layers and options beyond Dense/Dropout (activation layers and names, input scaling,
regularizers, initializers) against recorded Keras 3 behaviour: the scenarios of
tests/keras_oracle/layer_scenarios.py, recorded with real Keras in
tests/fixtures/keras/layers_behaviour.json, replayed here on digitnet.keras; plus file round
trips and the engine's own checks."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from digitnet import keras
from digitnet.keras.errors import KerasValueError
from tests.keras_oracle.layer_scenarios import SCENARIOS, V
from tests.test_keras_behaviour import same, screen

RECORDED = json.loads((Path(__file__).parent / "fixtures/keras/layers_behaviour.json").read_text())


def run(name: str, tmp_path: Path) -> tuple[object, str]:
    fn = SCENARIOS[name]
    out = io.StringIO()
    keras.utils.set_random_seed(0)
    with contextlib.redirect_stdout(out):
        returned = fn(keras, str(tmp_path)) if fn.__code__.co_argcount == 2 else fn(keras)
    return returned, out.getvalue()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_matches_keras(name, tmp_path):
    want = RECORDED[name]
    assert "error" not in want, want.get("traceback")
    returned, printed = run(name, tmp_path)
    same(json.loads(json.dumps(returned)), want["returned"], name)
    assert screen(printed, False) == screen(want["printed"], False)


def test_layers_round_trip_through_keras_files(tmp_path):
    L = keras.layers
    model = keras.Sequential([L.Rescaling(1 / 127.5, offset=-1.0, input_shape=(28, 28)), L.Flatten(),
                              L.Dense(16), L.LeakyReLU(0.1), L.Dense(12, activation="swish"), L.Dense(8),
                              L.ELU(0.5), L.Dense(6),
                              L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
                              L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28)).astype(np.float32)
    want = model.predict(x, verbose=0)
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        back = keras.models.load_model(tmp_path / name)
        assert [type(a).__name__ for a in back.layers] == [type(b).__name__ for b in model.layers]
        assert back.layers[3].get_config()["negative_slope"] == 0.1
        np.testing.assert_array_equal(back.predict(x, verbose=0), want)
    model.save_weights(tmp_path / "w.weights.h5")
    twin = keras.models.load_model(tmp_path / "m.keras")
    twin.set_weights([np.zeros_like(w) for w in twin.get_weights()])
    twin.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(twin.predict(x, verbose=0), want)


def test_a_leaky_model_trains_in_the_engine():
    """The activation is compiled into the training step: a leaky model learns (a toy problem
    with labels from the sign of one input), and its spec names the slope."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(512, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.LeakyReLU(0.1),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    assert model.spec.hidden_activations == ("leaky_relu(negative_slope=0.1)",)
    assert history.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("make, message", [
    (lambda: keras.layers.PReLU(), "PReLU: trainable activations"),
    (lambda: keras.layers.GaussianNoise(0.1), "GaussianNoise: noise layers are not supported"),
    (lambda: keras.layers.AlphaDropout(0.1), "AlphaDropout: noise layers"),
    (lambda: keras.layers.SpatialDropout2D(0.1), "SpatialDropout2D: spatial dropout layers"),
    (lambda: keras.layers.Rescaling(np.ones(3)), "per-channel arrays are not supported"),
    (lambda: keras.layers.Dense(3, activation="sparsemax"), "activation 'sparsemax' is not supported"),
])
def test_refusals_name_the_feature(make, message):
    with pytest.raises(KerasValueError, match=message):
        make()


def test_rescaling_after_a_dense_layer_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Rescaling(2.0),
                              keras.layers.Dense(2)])
    with pytest.raises(KerasValueError, match="Rescaling layer .* only supported before the first Dense"):
        model.predict(np.zeros((1, 4), np.float32), verbose=0)


def test_activations_module_has_the_new_names():
    np.testing.assert_allclose(np.asarray(keras.activations.swish(V)), V / (1 + np.exp(-V)), rtol=1e-6)
    assert keras.activations.get("hard_swish") is keras.activations.hard_silu


# Files real Keras 3 wrote (scripts/keras_layers_interop.py write DIR keras): Normalization
# (adapted), Rescaling, LeakyReLU, ELU, ReLU with options, swish, regularizers, initializers.
@pytest.mark.parametrize("name", ["layers_more.keras", "layers_more_model.h5", "layers_more.weights.h5"])
def test_reads_files_keras_wrote(name):
    from scripts.keras_layers_interop import X, more_model

    fixtures = Path(__file__).parent / "fixtures/keras"
    if name.endswith(".weights.h5"):
        model = more_model(keras)
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        model.load_weights(fixtures / name)
    else:
        model = keras.models.load_model(fixtures / name)
    assert [type(layer).__name__ for layer in model.layers][:5] == [
        "Normalization", "Rescaling", "Flatten", "Dense", "LeakyReLU"]
    assert model.spec.regularized and model.layers[3].kernel_regularizer.l2 == 0.01
    want = np.load(fixtures / "layers_more.npy")
    np.testing.assert_allclose(model.predict(X.reshape(-1, 28, 28) * 255, verbose=0), want, atol=1e-6)


def test_an_activation_layer_as_a_dense_activation_is_saved_as_keras_saves_it(tmp_path):
    dense = keras.layers.Dense(3, activation=keras.layers.LeakyReLU(negative_slope=0.1))
    assert dense.get_config()["activation"]["class_name"] == "LeakyReLU"  # Keras' form (3.15.1)
    model = keras.Sequential([keras.Input((4,)), dense, keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    assert back.spec.hidden_activations == ("leaky_relu(negative_slope=0.1)",)
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
