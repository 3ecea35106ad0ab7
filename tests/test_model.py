import jax
import numpy as np
import pytest

from digitnet.errors import ConfigError
from digitnet.model import MLPSpec, forward, init_params, preprocess_stats


def test_tutorial_model_has_55050_parameters():
    spec = MLPSpec()
    assert spec.sizes == [784, 64, 64, 10]
    assert spec.num_params == 55_050
    params = init_params(spec, jax.random.key(0))
    assert sum(v.size for layer in params for v in layer.values()) == 55_050
    assert "Total params: 55,050" in spec.summary()


def test_glorot_uniform_kernels_and_zero_biases():
    params = init_params(MLPSpec(), jax.random.key(0))
    k = np.asarray(params[0]["kernel"])
    limit = np.sqrt(6 / (784 + 64))
    assert np.abs(k).max() <= limit
    assert np.abs(k).max() > 0.95 * limit  # uniform over the whole range, not a narrower one
    assert abs(k.std() - limit / np.sqrt(3)) < 0.01 * limit * 3
    assert all(np.all(np.asarray(layer["bias"]) == 0) for layer in params)


def test_center_preprocessing_is_the_tutorials():
    spec = MLPSpec(hidden=(3,), activation="linear")
    x = np.array([[0, 255, 128] + [51] * 781], np.uint8)
    stats = preprocess_stats(spec, x)
    # A one-layer-wide identity-like net is awkward; compare the transform directly instead.
    pre = (x.astype(np.float32) - stats["shift"]) * stats["scale"]
    np.testing.assert_allclose(pre, x / 255 - 0.5, atol=1e-6)


def test_standardize_uses_per_pixel_statistics():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (500, 4, 4)).astype(np.uint8)
    stats = preprocess_stats(MLPSpec(input_shape=(4, 4), preprocess="standardize"), x)
    pre = (x.reshape(500, -1) - stats["shift"]) * stats["scale"]
    np.testing.assert_allclose(pre.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(pre.std(0), 1, atol=1e-3)


def test_forward_matches_a_numpy_reference():
    spec = MLPSpec(input_shape=(5,), hidden=(4, 3), num_classes=2, activation="tanh",
                   preprocess="none")
    params = init_params(spec, jax.random.key(1))
    stats = preprocess_stats(spec, np.zeros((1, 5)))
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    h = x
    for layer in params[:-1]:
        h = np.tanh(h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"]))
    ref = h @ np.asarray(params[-1]["kernel"]) + np.asarray(params[-1]["bias"])
    np.testing.assert_allclose(np.asarray(forward(params, stats, x, spec)), ref, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"activation": "swish?"}, {"preprocess": "nope"}, {"dropout": (0.5, 0.5, 0.5)},
    {"dropout": 1.0}, {"hidden": (0,)}, {"num_classes": 1},
])
def test_bad_specs_raise_config_errors(kwargs):
    with pytest.raises(ConfigError):
        MLPSpec(**kwargs)


def test_one_dropout_rate_applies_to_every_hidden_layer():
    assert MLPSpec(hidden=(8, 8, 8), dropout=0.5).dropout == (0.5, 0.5, 0.5)
    assert MLPSpec(dropout=0.0).dropout == ()


def overflowing_model():
    """A one-hidden-layer exponential model whose first layer overflows exp on some 0-255
    images (its kernel scaled up), and such images: rows 2 and 4 overflow, the rest do not."""
    from digitnet.api import Model
    from digitnet.model import host_init_params

    spec = MLPSpec(hidden=(16,), activation="exponential", preprocess="unit")
    params = host_init_params(spec, np.array([0, 1], np.uint32))
    params[0]["kernel"] = params[0]["kernel"] * 50
    model = Model(spec, params, preprocess_stats(spec, np.zeros((0, 784))), {})
    x = np.zeros((5, 28, 28), np.uint8)
    unit = np.flatnonzero(params[0]["kernel"][:, 0] > 0)  # pixels that push unit 0 up
    x[2].reshape(-1)[unit] = 255
    x[4].reshape(-1)[unit] = 255
    return model, x


NON_FINITE = r"NaN or infinite for 2 of 5 input\(s\) \(the first: row 2\): hidden layer 1 \(exponential\)"


def test_overflowing_exponential_layer_is_an_error_not_nan_probabilities():
    from digitnet.errors import DigitnetError

    model, x = overflowing_model()
    assert np.isfinite(model.predict_proba(x[[0, 1, 3]])).all()  # rows that do not overflow
    for call in (model.predict_proba, model.predict, model.logits):
        with pytest.raises(DigitnetError, match=NON_FINITE):
            call(x)
    with pytest.raises(DigitnetError, match=NON_FINITE):
        model.evaluate(x, np.arange(5))
    with pytest.raises(DigitnetError) as err:
        model.predict(x)
    assert "\n" not in str(err.value) and "exp(x) overflows" in str(err.value)


def test_overflowing_model_is_refused_by_serve_and_cli_predict(tmp_path):
    """The service answers a 422 with the one-line error (not probabilities of NaN, which are
    not even JSON); `digitnet predict` exits 2 with it."""
    from cli_runner import run_cli

    from digitnet.data.idx import write_idx
    from digitnet.errors import DigitnetError
    from digitnet.serve.app import error_response
    from digitnet.serve.predictor import Predictor

    model, x = overflowing_model()
    model.save(tmp_path / "run")
    predictor = Predictor(tmp_path / "run", max_batch=8)
    with pytest.raises(DigitnetError, match=r"hidden layer 1 \(exponential\)") as err:
        predictor(x.reshape(5, -1).astype(np.float32))
    answer = error_response(err.value)
    assert answer.status_code == 422 and b"hidden layer 1 (exponential)" in answer.body
    write_idx(tmp_path / "x.idx", x)
    out = run_cli("predict", str(tmp_path / "run"), str(tmp_path / "x.idx"))
    assert out.returncode == 2, out.stderr
    assert "hidden layer 1 (exponential)" in out.stderr and "nan" not in out.stdout.lower()
