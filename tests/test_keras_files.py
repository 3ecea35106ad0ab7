"""Keras weight and model files: the fixtures real Keras wrote, files we write, hostile files."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from digitnet import mnist
from digitnet.keras.errors import KerasFileError
from digitnet.keras.layers import Dense, Dropout
from digitnet.keras.models import Sequential, load_model
from digitnet.keras.utils import set_random_seed
from scripts.keras_layers_interop import X as X_INTEROP
from scripts.keras_layers_interop import models

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
FILES = ("seed_legacy.h5", "seed.weights.h5")


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Keras numbers automatic layer names per process; start each test from 'dense'."""
    from digitnet.keras.utils import clear_session

    clear_session()



@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    return ((mnist.test_images()[:5] / 255) - 0.5).reshape(-1, 784)


def recorded(name: str) -> np.ndarray:
    return np.array(json.loads((FIXTURES / f"{name}.json").read_text())["first5_probabilities"])


def tutorial_model(input_shape=(784,)) -> Sequential:
    first = Dense(64, activation="relu", **({"input_shape": input_shape} if input_shape else {}))
    return Sequential([first, Dense(64, activation="relu"), Dense(10, activation="softmax")])


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("declared", [True, False], ids=["input_shape", "deferred"])
def test_fixture_reproduces_recorded_predictions(name, declared, probe):
    model = tutorial_model((784,) if declared else None)
    model.load_weights(FIXTURES / name)  # an unbuilt model takes its input size from the file
    p = model.predict(probe)
    np.testing.assert_allclose(p, recorded(name), atol=1e-5)
    assert p.argmax(axis=1).tolist() == [7, 2, 1, 0, 4]


def h5_signature(path: Path, skip: str | None = None) -> set[tuple]:
    """Groups, datasets (shape, dtype) and attribute names and kinds of an HDF5 file."""
    out: set[tuple] = set()

    def kind(value) -> str:
        a = np.asarray(value)
        if a.dtype.kind in "OSU":
            return f"str{list(a.shape)}"
        return f"{a.dtype}{list(a.shape)}"

    def visit(name, obj):
        if skip and (name == skip or name.startswith(skip + "/")):
            return
        if isinstance(obj, h5py.Dataset):
            out.add(("dataset", name, obj.shape, str(obj.dtype)))
        else:
            out.add(("group", name))
        out.update(("attr", name, k, kind(v)) for k, v in obj.attrs.items())

    with h5py.File(path) as f:
        out.update(("attr", "/", k, kind(v)) for k, v in f.attrs.items())
        f.visititems(visit)
    return out


@pytest.mark.parametrize("name", FILES)
def test_written_files_have_the_fixture_structure(name, tmp_path):
    model = tutorial_model()
    model.load_weights(FIXTURES / name)
    model.save_weights(tmp_path / name)
    # We do not write optimizer state; everything else is laid out as Keras laid it out.
    assert h5_signature(tmp_path / name) == h5_signature(FIXTURES / name, skip="optimizer")
    with h5py.File(tmp_path / name) as ours, h5py.File(FIXTURES / name) as theirs:
        def same(n, obj):
            if isinstance(obj, h5py.Dataset) and not n.startswith("optimizer"):
                np.testing.assert_array_equal(ours[n][()], obj[()])
        theirs.visititems(same)
        if "layer_names" in theirs.attrs:
            assert list(ours.attrs["layer_names"]) == list(theirs.attrs["layer_names"])


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_save_load_weights_round_trip(suffix, tmp_path, probe):
    set_random_seed(3)
    a = Sequential([Dense(32, activation="tanh", input_shape=(784,)), Dropout(0.3),
                    Dense(16, activation="elu"), Dense(10, activation="softmax")])
    b = Sequential([Dense(32, activation="tanh", input_shape=(784,)), Dropout(0.3),
                    Dense(16, activation="elu"), Dense(10, activation="softmax")])
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])
    a.save_weights(tmp_path / f"w{suffix}")
    b.load_weights(tmp_path / f"w{suffix}")
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.predict(probe), b.predict(probe))


def test_per_layer_activations_match_a_numpy_forward(probe):
    set_random_seed(4)
    model = Sequential([Dense(16, activation="tanh", input_shape=(784,)),
                        Dense(12, activation="sigmoid"), Dense(10, activation="softmax")])
    k0, b0, k1, b1, k2, b2 = model.get_weights()
    h = 1 / (1 + np.exp(-(np.tanh(probe @ k0 + b0) @ k1 + b1)))
    z = h @ k2 + b2
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict(probe), want / want.sum(1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_and_load_model(suffix, tmp_path, probe):
    from digitnet.keras.optimizers import SGD

    model = tutorial_model()
    model.load_weights(FIXTURES / "seed.weights.h5")
    model.compile(optimizer=SGD(learning_rate=0.05, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.save(tmp_path / f"m{suffix}")
    loaded = load_model(tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))
    assert loaded.loss == "categorical_crossentropy" and loaded.metric_names == ["accuracy"]
    assert type(loaded.optimizer).__name__ == "SGD" and loaded.optimizer.learning_rate == 0.05
    assert loaded.optimizer.options["momentum"] == 0.9
    if suffix == ".keras":
        with zipfile.ZipFile(tmp_path / "m.keras") as z:
            assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
            config = json.loads(z.read("config.json"))
        assert config["class_name"] == "Sequential" and config["module"] == "keras"
        assert [e["class_name"] for e in config["config"]["layers"]] == ["InputLayer", *["Dense"] * 3]


# Keras 3.15.1's config.json for the tutorial's model, as model.save('m.keras') writes it
# (recorded from keras 3.15.1; shortened only by building the repeated Dense entries in code).
def keras_dense(name: str, units: int, activation: str, fan_in: int) -> dict:
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None}
    return {"module": "keras.layers", "class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": policy, "units": units, "activation": activation,
        "use_bias": True,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                               "config": {"seed": None, "input_axes": None, "output_axes": None},
                               "registered_name": None},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                             "registered_name": None},
        "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None, "quantization_config": None},
        "registered_name": None, "build_config": {"input_shape": [None, fan_in]}}


def keras_config(layers: list[dict] | None = None) -> dict:
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None, "shared_object_id": 139739198031696}
    inp = {"module": "keras.layers", "class_name": "InputLayer", "config": {
        "batch_shape": [None, 784], "dtype": "float32", "sparse": False, "ragged": False,
        "name": "input_layer", "optional": False}, "registered_name": None}
    layers = layers if layers is not None else [
        inp, keras_dense("dense", 64, "relu", 784), keras_dense("dense_1", 64, "relu", 64),
        keras_dense("dense_2", 10, "softmax", 64)]
    return {"module": "keras", "class_name": "Sequential", "config": {
        "name": "sequential", "trainable": True, "dtype": policy, "layers": layers,
        "build_input_shape": [None, 784]}, "registered_name": None,
        "build_config": {"input_shape": [None, 784]},
        "compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {
            "name": "adam", "learning_rate": 0.0010000000474974513, "weight_decay": None,
            "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
            "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
            "gradient_accumulation_steps": None, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
            "amsgrad": False}, "registered_name": None}, "loss": "categorical_crossentropy",
            "loss_weights": None, "metrics": ["accuracy"], "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": True}}


def write_archive(path: Path, config: dict, members: dict[str, bytes] | None = None,
                  compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "x"}))
        z.writestr("config.json", json.dumps(config))
        # Keras' own weights file (with its Adam state) as model.weights.h5.
        z.writestr("model.weights.h5", (FIXTURES / "seed.weights.h5").read_bytes())
        for name, data in (members or {}).items():
            z.writestr(name, data)
    return path


def test_load_model_reads_a_keras_archive(tmp_path, probe):
    model = load_model(write_archive(tmp_path / "k.keras", keras_config()))
    np.testing.assert_allclose(model.predict(probe), recorded("seed.weights.h5"), atol=1e-5)
    assert type(model.optimizer).__name__ == "Adam" and model.loss == "categorical_crossentropy"


def tf_keras_config() -> dict:
    """The tutorial's model as tf.keras 2.x describes it (batch_input_shape, plain dtypes)."""
    def dense(name, units, activation, first=False):
        return {"class_name": "Dense", "config": {
            "name": name, "trainable": True, "dtype": "float32", "units": units,
            **({"batch_input_shape": [None, 784]} if first else {}), "activation": activation,
            "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}}
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 784], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "dense_input"}},
        dense("dense", 64, "relu", first=True), dense("dense_1", 64, "relu"),
        dense("dense_2", 10, "softmax")]}}


def keras3_legacy_config() -> dict:
    """The tutorial's model as Keras 3 writes it into a legacy .h5 (no module at layer level)."""
    config = keras_config()
    return {"class_name": "Sequential", "config": {**config["config"], "layers": [
        {"class_name": e["class_name"], "config": e["config"]} for e in config["config"]["layers"]]}}


@pytest.mark.parametrize("config", [keras3_legacy_config, tf_keras_config])
def test_load_model_reads_a_legacy_full_model_h5(config, tmp_path, probe):
    path = tmp_path / "legacy_model.h5"
    with h5py.File(path, "w") as f, h5py.File(FIXTURES / "seed_legacy.h5") as weights:
        f.attrs["backend"], f.attrs["keras_version"] = "tensorflow", "2.21.0"
        f.attrs["model_config"] = json.dumps(config())
        f.attrs["training_config"] = json.dumps({"loss": "categorical_crossentropy", "metrics": [["acc"]],
                                                 "optimizer_config": {"class_name": "Adam",
                                                                      "config": {"lr": 0.002, "decay": 0.0}}})
        group = f.create_group("model_weights")
        for k, v in weights.attrs.items():
            group.attrs[k] = v
        for k in weights:
            weights.copy(weights[k], group, name=k)
    model = load_model(path)
    np.testing.assert_allclose(model.predict(probe), recorded("seed_legacy.h5"), atol=1e-5)
    assert model.optimizer.learning_rate == 0.002 and model.metric_names == ["acc"]


def lambda_layer() -> dict:
    return {"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "lambda", "function": {"class_name": "__lambda__", "config": {
            "code": "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMEAAAAfABTAKkBTqkAKQHaAXhyAgAAAHICAAAA"}}},
        "registered_name": None}


HOSTILE = {
    "path traversal": ({"../../evil.py": b"print('owned')"}, None, "unsafe path"),
    "absolute path": ({"/etc/cron.d/evil": b"x"}, None, "unsafe path"),
    "zip bomb": ({"assets/zeros.bin": bytes(4 << 20)}, None, "zip bomb"),
    "Lambda layer": (None, lambda c: c["config"]["layers"].insert(1, lambda_layer()), "'Lambda'"),
    "module path": (None, lambda c: c["config"]["layers"][1].update(module="os"), "module 'os'"),
    "custom object": (None, lambda c: c["config"]["layers"][1].update(registered_name="evil>Dense"),
                      "custom object"),
    "functional model, not a chain": (None, lambda c: c.update(class_name="Functional"),
                                      "Functional models that are chains of layers"),
    "unsupported activation": (None, lambda c: c["config"]["layers"][1]["config"].update(
        activation="sparsemax"),
                               "sparsemax"),
    "regularizer": (None, lambda c: c["config"]["layers"][2]["config"].update(
        kernel_regularizer={"class_name": "OrthogonalRegularizer"}), "OrthogonalRegularizer"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_or_unsupported_archives_are_refused(case, tmp_path):
    members, edit, message = HOSTILE[case]
    config = keras_config()
    if edit:
        edit(config)
    path = write_archive(tmp_path / "bad.keras", config, members, zipfile.ZIP_DEFLATED)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(KerasFileError, match=message):
        load_model(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing extracted


def test_bad_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(KerasFileError, match="no such file"):
        tutorial_model().load_weights(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(KerasFileError, match="not a readable HDF5"):
        tutorial_model().load_weights(tmp_path / "junk.h5")
    small = Sequential([Dense(10, activation="softmax", input_shape=(784,))])
    with pytest.raises(KerasFileError, match="3 layers, the model has 1 Dense"):
        small.load_weights(FIXTURES / "seed.weights.h5")
    wide = Sequential([Dense(32, activation="relu", input_shape=(784,)), Dense(64, activation="relu"),
                       Dense(10, activation="softmax")])
    with pytest.raises(KerasFileError, match=r"\(784, 64\)"):
        wide.load_weights(FIXTURES / "seed_legacy.h5")
    shutil.copy(FIXTURES / "seed_legacy.h5", tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "r+") as f:
        del f["dense_1/dense_1/kernel:0"]
    with pytest.raises(KerasFileError, match="kernel:0 is missing"):
        tutorial_model().load_weights(tmp_path / "w.h5")
    with pytest.raises(KerasFileError, match="no model_config"):
        load_model(FIXTURES / "seed_legacy.h5")


def test_load_weights_from_a_keras_archive(tmp_path, probe):
    model = tutorial_model()
    model.load_weights(write_archive(tmp_path / "k.keras", keras_config()))
    np.testing.assert_allclose(model.predict(probe), recorded("seed.weights.h5"), atol=1e-5)


def test_a_keras_file_compiled_with_label_smoothing_keeps_it(tmp_path):
    # Written by real Keras 3 (see fixtures/keras/README.md): the loss is an object config.
    model = load_model(FIXTURES / "label_smoothing.keras")
    assert (model.loss, model.label_smoothing) == ("categorical_crossentropy", 0.2)
    with zipfile.ZipFile(FIXTURES / "label_smoothing.keras") as z:
        theirs = json.loads(z.read("config.json"))["compile_config"]["loss"]
    model.save(tmp_path / "again.keras")
    with zipfile.ZipFile(tmp_path / "again.keras") as z:
        ours = json.loads(z.read("config.json"))["compile_config"]["loss"]
    assert ours == theirs  # written back the way Keras writes it


# Files real Keras 3 wrote (scripts/keras_layers_interop.py): Activation/ReLU/Softmax layers,
# and a functional binary classifier; with the predictions Keras made on LAYERS_X.
LAYERS_X = X_INTEROP


@pytest.mark.parametrize("name", ["layers_act.keras", "layers_act_model.h5", "layers_binary.keras",
                                  "layers_act.weights.h5"])
def test_keras_files_with_activation_layers_and_functional_chains_load(name, tmp_path):
    from digitnet import keras

    stem = "layers_binary" if "binary" in name else "layers_act"
    if name.endswith(".weights.h5"):
        model = models(keras)[0]  # the model the file's weights belong to
        model.load_weights(FIXTURES / name)
    else:
        model = load_model(FIXTURES / name)
    want = np.load(FIXTURES / f"{stem}.npy")
    np.testing.assert_allclose(model.predict(LAYERS_X, verbose=0), want, atol=1e-6)
    if "binary" in name:
        kinds = [type(layer).__name__ for layer in model.layers]
        assert kinds == ["InputLayer", "Dense", "Activation", "Dense"]
        assert model.loss == "binary_crossentropy"
    # Written back, the file reads again with the same outputs and, for .keras, Keras' layout of
    # weight groups (what real Keras reads: checked by scripts/keras_layers_interop.py).
    out = tmp_path / name
    if name.endswith(".weights.h5"):
        model.save_weights(out)
        with h5py.File(out) as ours, h5py.File(FIXTURES / name) as theirs:
            assert sorted(ours["layers"]) == sorted(theirs["layers"])
    else:
        model.save(out)
        again = load_model(out)
        np.testing.assert_allclose(again.predict(LAYERS_X, verbose=0), want, atol=1e-6)


def test_a_compile_config_listing_thousands_of_metrics_is_refused(tmp_path):
    """Each metric a saved compile config lists is built at load (an AUC holds four arrays of
    200 thresholds): a config of 100,000 'auc' strings (0.8 MB) is refused before any is."""
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["auc"])
    good = tmp_path / "good.keras"
    model.save(good)
    assert load_model(good).metric_names == ["auc"]
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["compile_config"]["metrics"] = ["auc"] * 100_000
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(KerasFileError, match="lists over 64 metrics") as err:
        load_model(bad)
    assert "\n" not in str(err.value)
