"""ONNX export checked with onnxruntime: the same answers as digitnet on the whole test set."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from digitnet.api import Model
from digitnet.cli import main
from digitnet.errors import DigitnetError
from digitnet.export import to_onnx
from digitnet.model import ACTIVATIONS, MLPSpec, preprocess_stats


def session(proto_or_path) -> ort.InferenceSession:
    data = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") \
        else str(proto_or_path)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_cli_export_matches_digitnet_on_the_10k_test_set(run_dir, model, mnist, tmp_path, capsys):
    out = tmp_path / "digits.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    proto = onnx.load(out)
    assert proto.opset_import[0].version >= 17
    (inp,) = proto.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim] == ["N", 28, 28]
    probs, logits = session(out).run(["probabilities", "logits"], {"images": mnist.x_test})
    expected = model.predict_proba(mnist.x_test)
    assert probs.shape == (10_000, 10)
    np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits, model.logits(mnist.x_test), atol=1e-4, rtol=1e-5)


def test_default_path_is_in_the_run(run_dir, tmp_path):
    assert main(["export", str(run_dir)]) == 0
    assert (run_dir / "model.onnx").is_file()


def random_model(spec: MLPSpec, x_train: np.ndarray, scale: float = 1.0) -> Model:
    rng = np.random.default_rng(3)
    params = [{"kernel": rng.normal(0, scale / np.sqrt(a), (a, b)).astype(np.float32),
               "bias": rng.normal(0, 0.1, b).astype(np.float32)}
              for a, b in zip(spec.sizes[:-1], spec.sizes[1:], strict=True)]
    return Model(spec, params, preprocess_stats(spec, x_train))


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation(activation, mnist):
    spec = MLPSpec(hidden=(48, 24), activation=activation, dropout=0.3, preprocess="standardize")
    # Standardized rare pixels reach ~40: two exp layers at full scale overflow float32 (tested below)
    model = random_model(spec, mnist.x_train[:2000], scale=0.2 if activation == "exponential" else 1.0)
    x = mnist.x_test[:512]
    probs, logits = session(to_onnx(model, opset=18)).run(None, {"images": x})
    # exp of these random layers reaches 1e27: a float32 ulp there is far above 1e-5 relative
    np.testing.assert_allclose(logits, model.logits(x), atol=1e-4,
                               rtol=1e-3 if activation == "exponential" else 1e-5)
    np.testing.assert_allclose(probs, model.predict_proba(x), atol=1e-5, rtol=0)


def test_overflowing_rows_are_refused_where_onnxruntime_gives_non_finite(mnist):
    spec = MLPSpec(hidden=(48, 24), activation="exponential", preprocess="standardize")
    model = random_model(spec, mnist.x_train[:2000])
    x = mnist.x_test[:512]
    _, logits = session(to_onnx(model, opset=18)).run(None, {"images": x})
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    assert bad.size > 0
    with pytest.raises(DigitnetError, match=f"for {bad.size} of 512 input.*row {bad[0]}.*hidden layer"):
        model.logits(x)


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--opset", "16"], "opset must be within 17"),
])
def test_bad_export_options(run_dir, args, message, capsys):
    assert main(["export", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("activation", ["leaky_relu(negative_slope=0.3)", "elu(alpha=0.5)",
                                        "celu(alpha=2.0)",
                                        "relu(max_value=6.0, negative_slope=0.0, threshold=0.0)",
                                        "relu(max_value=4.0, negative_slope=0.1, threshold=0.5)",
                                        "relu(max_value=None, negative_slope=0.0, threshold=1.0)"])
def test_activations_with_options(activation, mnist):
    model = random_model(MLPSpec(hidden=(32,), activation=activation, preprocess="standardize"),
                         mnist.x_train[:500])
    x = mnist.x_test[:256]
    (logits,) = session(to_onnx(model)).run(["logits"], {"images": x})
    np.testing.assert_allclose(logits, model.logits(x), atol=1e-4, rtol=1e-5)


def test_per_layer_activations(mnist):
    model = random_model(MLPSpec(hidden=(32, 16), activations=("tanh", "gelu")), mnist.x_train[:100])
    x = mnist.x_test[:256]
    (logits,) = session(to_onnx(model)).run(["logits"], {"images": x})
    np.testing.assert_allclose(logits, model.logits(x), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("opset", [17, 20])  # GridSample's mode is "bilinear" before 20, "linear" from
def test_deskew_in_the_graph(opset, mnist):
    model = random_model(MLPSpec(hidden=(64,), deskew=True, preprocess="standardize"),
                         mnist.x_train[:2000])
    x = mnist.x_test
    probs, logits = session(to_onnx(model, opset=opset)).run(None, {"images": x})
    # Deskewed pixels are rounded to whole values, and float rounding in the two samplers may
    # land a value on the other side of .5: about one image in 100 has a pixel one step apart.
    expected = model.predict_proba(x)
    np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))
    row_err = np.abs(probs - expected).max(1)
    assert (row_err <= 1e-5).mean() >= 0.98 and row_err.max() < 0.02
