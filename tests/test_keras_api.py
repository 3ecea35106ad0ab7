"""The Keras front end's API beyond the tutorial: data, layers, optimizers, losses, callbacks."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from digitnet import mnist
from digitnet.keras import callbacks, layers, optimizers, utils
from digitnet.keras.datasets import mnist as keras_mnist
from digitnet.keras.models import Sequential, load_model
from digitnet.metrics import loss_values

N = 2048  # a slice of MNIST: enough to train on, small enough to be quick


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Keras numbers automatic layer names per process; start each test from 'dense'."""
    from digitnet.keras.utils import clear_session

    clear_session()



FIXTURES = Path(__file__).parent / "fixtures" / "keras"

@pytest.fixture(scope="module")
def data():
    x = ((mnist.train_images()[:N] / 255) - 0.5).reshape(-1, 784)
    return x, mnist.train_labels()[:N]


def mlp(*hidden_layers):
    return Sequential([layers.Dense(32, activation="relu", input_shape=(784,)), *hidden_layers,
                       layers.Dense(10, activation="softmax")])


def test_mnist_modules():
    (x, y), (xt, yt) = keras_mnist.load_data()
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.uint8
    assert xt.shape == (10000, 28, 28) and yt[:5].tolist() == [7, 2, 1, 0, 4]
    a = mnist.train_images()
    a[:] = 0  # a copy: the cached data set is untouched
    assert mnist.train_images().any()


def test_to_categorical():
    np.testing.assert_array_equal(utils.to_categorical([2, 0]), [[0, 0, 1], [1, 0, 0]])
    assert utils.to_categorical(np.array([[1], [3]]), num_classes=5).shape == (2, 5)
    for bad in ([-1], [0.5], [[1, 2], [3, 4]]):
        with pytest.raises(ValueError):
            utils.to_categorical(bad)
    with pytest.raises(ValueError, match="num_classes"):
        utils.to_categorical([9], num_classes=3)


def test_loss_values_match_their_definitions():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
    labels = jnp.array([1, 2])
    onehot = jnp.eye(3)[labels]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.log(p[np.arange(2), labels])
    np.testing.assert_allclose(loss_values(logits, labels), expected, rtol=1e-6)
    np.testing.assert_allclose(loss_values(logits, onehot), expected, rtol=1e-6)
    np.testing.assert_allclose(loss_values(logits, labels, "mse"), ((p - onehot) ** 2).mean(1), rtol=1e-6)


def test_layer_and_model_errors_name_the_problem(data):
    x, y = data
    with pytest.raises(ValueError, match="use_bias must be True or False"):
        layers.Dense(4, use_bias="no")
    with pytest.raises(ValueError, match="activity_regularizer"):
        layers.Dense(4, activity_regularizer="l2")
    with pytest.raises(ValueError, match="activation 'sparsemax'"):
        layers.Dense(4, activation="sparsemax")
    with pytest.raises(ValueError, match="must be a classifier"):
        Sequential([layers.Dense(10, activation="relu", input_shape=(784,))]).predict(x[:1])
    with pytest.raises(ValueError, match="Dropout after the last Dense"):
        Sequential([layers.Dense(10, activation="softmax", input_shape=(784,)),
                    layers.Dropout(0.2)]).predict(x[:1])
    with pytest.raises(ValueError, match="unique"):
        Sequential([layers.Dense(8, name="a", input_shape=(784,)), layers.Dense(10, name="a")])
    model = mlp()
    with pytest.raises(ValueError, match="compile"):
        model.fit(x, y)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"reshape them with x.reshape\(\(-1, 784\)\)"):
        model.predict(x.reshape(-1, 28, 28))
    with pytest.raises(ValueError, match="loss='categorical_crossentropy'"):
        model.evaluate(x, utils.to_categorical(y))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.evaluate(x[:2], np.array([3, 12]))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((1, 784), np.nan))
    with pytest.raises(ValueError, match="built"):
        Sequential([layers.Dense(10, activation="softmax")]).count_params()


def test_flatten_and_input_layers(data):
    x, _ = data
    images = x.reshape(-1, 28, 28)
    a = Sequential([layers.Flatten(input_shape=(28, 28)), layers.Dense(10, activation="softmax")])
    b = Sequential([layers.Input((784,)), layers.Dense(10, activation="softmax")])
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a.predict(images[:3]), b.predict(x[:3]), rtol=1e-6)
    assert b.input_shape == (None, 784) and b.output_shape == (None, 10)


def test_kernel_initializers():
    model = Sequential([layers.Dense(256, kernel_initializer="he_normal", input_shape=(784,)),
                        layers.Dense(10, activation="softmax", kernel_initializer="zeros")])
    k0, b0, k1, _ = model.get_weights()
    assert abs(k0.std() - np.sqrt(2 / 784)) < 0.1 * np.sqrt(2 / 784) and not b0.any() and not k1.any()
    with pytest.raises(ValueError, match="initializer 'orthogonal' is not supported"):
        layers.Dense(4, kernel_initializer="orthogonal")


def test_optimizers():
    assert optimizers.Adam(lr=0.005).learning_rate == 0.005
    assert optimizers.get("sgd").learning_rate == 0.01  # Keras' defaults
    assert optimizers.get("rmsprop").train_options() == {"optimizer": "rmsprop", "lr": 0.001}
    assert optimizers.SGD(0.1, momentum=0.9, nesterov=True).train_options() == {
        "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}
    # Options beyond the engine's own Adam/SGD/RMSprop run Keras' update (digitnet.kerasopt).
    assert optimizers.Adam(clipnorm=1.0).train_options() == {
        "optimizer": "adam", "lr": 0.001, "optimizer_options": '{"amsgrad": false, "beta_1": 0.9, '
        '"beta_2": 0.999, "clipnorm": 1.0, "epsilon": 1e-07}'}
    assert type(optimizers.get("adagrad")).__name__ == "Adagrad"
    with pytest.raises(ValueError, match=r"Adam\(use_ema=True\) is not supported"):
        optimizers.Adam(use_ema=True)
    with pytest.raises(ValueError, match="unknown argument"):
        optimizers.Adam(momentum=0.9)
    with pytest.raises(ValueError, match="not supported"):
        optimizers.get("adafactor")


def test_fit_with_callbacks_and_validation_split(data, tmp_path):
    x, y = data
    utils.set_random_seed(5)
    seen = []

    class Recorder(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs), self.model is model))

    model = mlp(layers.Dropout(0.1))
    model.compile(optimizer=optimizers.Adam(learning_rate=0.003), loss="sparse_categorical_crossentropy",
                  metrics=["acc"])
    history = model.fit(x, y, epochs=4, batch_size=64, validation_split=0.25, verbose=0, callbacks=[
        Recorder(),
        callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.keras")),
        callbacks.ModelCheckpoint(str(tmp_path / "best.weights.h5"), monitor="val_acc",
                                  save_best_only=True, save_weights_only=True),
        callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
    ])
    assert list(history.history) == ["acc", "loss", "val_acc", "val_loss"]
    epochs = len(history.epoch)
    assert seen == [(e, ["acc", "loss", "val_acc", "val_loss"], True) for e in range(epochs)]
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == [
        f"ckpt-{e:02d}.keras" for e in range(1, epochs + 1)]
    assert history.history["loss"][-1] < history.history["loss"][0]
    # The last checkpoint holds the weights after the last epoch; with restore_best_weights the
    # model ends on its best val_loss epoch instead.
    best = int(np.argmin(history.history["val_loss"]))
    val_x, val_y = x[int(N * 0.75):], y[int(N * 0.75):]
    assert model.evaluate(val_x, val_y)[0] == pytest.approx(history.history["val_loss"][best], rel=1e-5)
    last = load_model(tmp_path / f"ckpt-{epochs:02d}.keras")
    assert last.evaluate(val_x, val_y)[0] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    restored = mlp(layers.Dropout(0.1))
    restored.load_weights(tmp_path / "best.weights.h5")
    best_acc = int(np.argmax(history.history["val_acc"]))
    restored.compile(loss="sparse_categorical_crossentropy", metrics=["acc"])
    assert restored.evaluate(val_x, val_y)[1] == pytest.approx(history.history["val_acc"][best_acc])


@pytest.mark.parametrize("loss", ["mse", "categorical_crossentropy"])
def test_target_rows_train(loss, data):
    """mse, and cross-entropy on soft labels (rows that are not one-hot) run on the engine."""
    x, y = data
    targets = utils.to_categorical(y, 10) * 0.9 + 0.01  # label smoothing
    model = mlp()
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    history = model.fit(x, targets, epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    assert model.evaluate(x, targets)[1] > 0.5


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_label_smoothing_is_keras_categorical_crossentropy_option(suffix, data, tmp_path):
    """CategoricalCrossentropy(label_smoothing=ε): trained on, reported in loss, val_loss and
    evaluate as Keras does (targets (1 - ε)·t + ε/K), and kept in saved models."""
    from digitnet.keras import losses

    x, y = data
    t = utils.to_categorical(y, 10)
    model = mlp()
    model.compile(optimizer="adam", loss=losses.CategoricalCrossentropy(label_smoothing=0.2),
                  metrics=["accuracy"])
    history = model.fit(x[:1536], t[:1536], epochs=2, batch_size=64, verbose=0,
                        validation_data=(x[1536:], t[1536:]))
    loss, acc = model.evaluate(x[1536:], t[1536:])
    p = model.predict(x[1536:])
    smoothed = -((0.8 * t[1536:] + 0.02) * np.log(p)).sum(1).mean()
    assert loss == pytest.approx(smoothed, rel=1e-4) and acc > 0.5
    assert history.history["val_loss"][-1] == pytest.approx(loss, rel=1e-5)
    plain = -(t[1536:] * np.log(p)).sum(1).mean()
    assert smoothed > plain + 0.1  # the smoothing term is really there
    path = tmp_path / f"m{suffix}"
    model.save(path)
    again = load_model(path)
    assert again.label_smoothing == 0.2
    assert again.evaluate(x[1536:], t[1536:])[0] == pytest.approx(loss, rel=1e-6)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.SparseCategoricalCrossentropy(label_smoothing=0.1)  # not a Keras option there


def test_outside_an_mlp_is_refused_by_name(data):
    from digitnet import keras

    x, y = data
    for make, says in [(lambda: keras.layers.Conv2D(8, 3), "Conv2D: convolution layers are not supported"),
                       (lambda: keras.layers.LSTM(8), "LSTM: recurrent layers are not supported"),
                       (lambda: keras.layers.LayerNormalization(), "LayerNormalization: normalization")]:
        with pytest.raises(ValueError, match=says):
            make()
    inputs = keras.Input((784,))
    a, b = keras.layers.Dense(8)(inputs), keras.layers.Dense(8)(inputs)
    with pytest.raises(ValueError, match="branching graph"):
        keras.layers.Dense(10)([a, b])
    with pytest.raises(ValueError, match="several inputs"):
        keras.Model([inputs, keras.Input((3,))], a)

    class Doubling(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, inputs):
            return self.dense(inputs) * 2

    with pytest.raises(ValueError, match="chain of layer calls"):
        Doubling().predict(x[:2])
    logits = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    logits.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"from_logits=True\), or give the last layer activation='softmax'"):
        logits.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="binary_crossentropy is trained on a one-unit output"):
        logits.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
        logits.fit(x, y, verbose=0)
    binary = keras.Sequential([keras.Input((784,)), keras.layers.Dense(1, activation="sigmoid")])
    for loss, message in [("sparse_categorical_crossentropy", "has one unit .a binary classifier.: use "
                           "loss='binary_crossentropy'"),
                          (keras.losses.BinaryCrossentropy(from_logits=True), "drop from_logits=True")]:
        binary.compile(optimizer="adam", loss=loss)
        with pytest.raises(ValueError, match=message):
            binary.fit(x, y, verbose=0)
    binary.compile(optimizer="adam", loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"expects targets of shape \(N,\) or \(N, 1\)"):
        binary.fit(x, np.eye(10)[y], verbose=0)
    with pytest.raises(ValueError, match="custom loss functions are not compiled"):
        logits.compile(optimizer="adam", loss=lambda t, p: (t - p) ** 2)


def test_functional_logits_model_saves_and_reloads_compiled(data, tmp_path):
    from digitnet import keras

    x, y = data
    inputs = keras.Input((784,))
    outputs = keras.layers.Dense(10)(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), rtol=1e-6)
    assert again.loss_object.from_logits and again.output_kind == "logits"
    again.fit(x[:64], y[:64], epochs=1, verbose=0)  # compiled as saved: trains on its logits


def test_custom_training_logic_is_refused_by_name():
    from digitnet import keras

    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, inputs):
            return self.dense(inputs)

        def train_step(self, data):
            return {}

    model = Custom()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((4, 784), np.float32), np.zeros(4, int)
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0)):
        with pytest.raises(ValueError, match="Custom overrides train_step: custom training logic"):
            call()


def test_refused_arguments_and_callbacks_are_named_one_at_a_time(data):
    from digitnet import keras

    x, y = data[0][:64], data[1][:64]
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.get_weights()
    for call, says in [
        (lambda: model.fit(x, y, class_weight=[1.0, 2.0]), "`class_weight` must be a dict-like mapping"),
        (lambda: model.fit(x, y, class_weight={"three": 2.0}),
         "`class_weight` must be a dictionary with integer keys"),
        (lambda: model.fit(x, y, class_weight={3: -1.0}), "class_weight: the weight of class 3 must be"),
        (lambda: model.fit(x, y, class_weight={0: 1.0}, sample_weight=np.ones(64)),
         "You cannot `class_weight` and `sample_weight` at the same time"),
        (lambda: model.fit(x, y, sample_weight=np.ones(63)),
         "sample_weight must hold one weight per example: 64 examples"),
        (lambda: model.fit(x, y, sample_weight=np.full(64, np.nan)), "sample_weight contains NaN"),
        (lambda: model.fit(x, y, steps_per_epoch=2), "fit: steps_per_epoch is not supported"),
        (lambda: model.fit(x, y, validation_split=0.5, validation_steps=1),
         "fit: validation_steps is not supported"),
        (lambda: model.fit(x, y, validation_split=0.5, validation_freq=0),
         "validation_freq must be at least 1"),
        (lambda: model.fit(x, y, validation_split=0.5, validation_freq="2"),
         "Expected `validation_freq` to be a list or int"),
        (lambda: model.evaluate(x, y, sample_weight=np.ones((64, 2))),
         "sample_weight must hold one weight per example"),
        (lambda: model.evaluate(x, y, steps=1), "evaluate: steps is not supported"),
        (lambda: model.predict(x, steps=1), "predict: steps is not supported"),
        (lambda: model.fit(x), "no targets: give y"),
        (lambda: model.evaluate(x), "no targets: give y"),
        (lambda: keras.callbacks.TensorBoard(log_dir="logs", write_images=True),
         "TensorBoard: write_images is not supported"),
        (lambda: keras.callbacks.BackupAndRestore("backup"), "BackupAndRestore: "),
        (lambda: keras.callbacks.RemoteMonitor(), "RemoteMonitor: "),
        (lambda: keras.callbacks.SwapEMAWeights(), "SwapEMAWeights: "),
        (lambda: setattr(model.layers[0], "trainable", False),
         "Dense: trainable=False \\(frozen layers\\) is not supported"),
        (lambda: setattr(model, "trainable", False), "Sequential: trainable=False"),
    ]:
        with pytest.raises(ValueError, match=f"^{says}") as err:
            call()
        assert "\n" not in str(err.value)
    assert model.trainable and all(layer.trainable for layer in model.layers)
    # Nothing was trained by the refused calls, and validation_freq=1 (Keras' default) runs.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    history = model.fit(x, y, validation_split=0.5, validation_freq=1, verbose=0)
    assert set(history.history) == {"accuracy", "loss", "val_accuracy", "val_loss"}


def test_subclassed_summary_shows_the_shapes_its_layers_were_built_on():
    """Keras 3.15.1 (JAX) printed these: a subclassed model's layers are built on the first
    batch they see (its size included), and layers without weights to build show '?'."""
    import contextlib
    import io

    from digitnet import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat, self.hidden = keras.layers.Flatten(), keras.layers.Dense(8)
            self.act, self.drop = keras.layers.ReLU(), keras.layers.Dropout(0.1)
            self.out = keras.layers.Dense(10, activation="softmax")

        def call(self, x, training=False):
            return self.out(self.drop(self.act(self.hidden(self.flat(x)))))

    x, y = np.random.default_rng(0).random((50, 4, 4), np.float32), np.arange(50) % 10
    runs = {"call": (lambda m: m(x[:5]), 5), "predict": (lambda m: m.predict(x, verbose=0), 32),
            "fit": (lambda m: m.fit(x, y, batch_size=16, validation_split=0.5, verbose=0), 16),
            "evaluate": (lambda m: m.evaluate(x, y, batch_size=64, verbose=0), 50)}
    for how, (run, batch) in runs.items():
        model = Net()
        model.compile("sgd", "sparse_categorical_crossentropy")
        run(model)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            model.summary()
        shapes = [line.split("│")[2].strip() for line in out.getvalue().splitlines() if line.startswith("│")]
        assert shapes == [f"({batch}, 16)", f"({batch}, 8)", "?", "?", f"({batch}, 10)"], how


def test_iterations_activation_functions_and_export_as_keras(data):
    """Keras 3.15.1 (JAX): `optimizer.iterations` counts the steps of every fit (200 examples
    at batch 32 with validation_split=0.2: 5 a epoch) and apply; a layer's activation is a
    function with Keras' name; export (a TensorFlow SavedModel) is refused in one line."""
    from digitnet import keras

    x, y = data[0][:200], data[1][:200]
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    assert int(model.optimizer.iterations) == 0
    model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    assert int(model.optimizer.iterations) == 10 and model.optimizer.iterations.numpy().dtype == np.int64
    model.fit(x, y, verbose=0)
    assert int(model.optimizer.iterations) == 17
    model.optimizer.apply([np.zeros_like(w) for w in model.get_weights()], model.trainable_weights)
    assert int(model.optimizer.iterations) == 18

    dense = keras.layers.Dense(3, activation="swish")
    assert dense.activation.__name__ == "silu" and dense.get_config()["activation"] == "silu"
    np.testing.assert_allclose(dense.activation(np.array([[-1.0, 0.0, 2.0]])),
                               [[-0.26894143, 0.0, 1.761594]], rtol=1e-6)
    assert [layer.activation.__name__ for layer in model.layers] == ["relu", "softmax"]
    with pytest.raises(ValueError, match=r"^export: exporting a model \(format='tf_saved_model'\)"):
        model.export("exported")


def test_early_stopping_follows_keras_rules():
    """baseline, start_from_epoch, min_delta, mode and patience on given val_loss sequences:
    the epoch each run stops at and its best epoch, as Keras 3.15.1's EarlyStopping gave them
    (driven the same way, epoch by epoch, with a stand-in model)."""
    seqs = [[0.5, 0.4, 0.45, 0.46, 0.3, 0.31, 0.32], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            [0.5, 0.6, 0.7, 0.4, 0.8, 0.9, 1.0], [0.3, 0.3, 0.3, 0.3],
            [0.9, 0.5, 0.49, 0.48, 0.2, 0.6, 0.7, 0.8]]
    configs = [{"patience": 1}, {"patience": 2, "baseline": 0.45}, {"patience": 1, "start_from_epoch": 2},
               {"patience": 0}, {"patience": 1, "min_delta": 0.05},
               {"patience": 2, "baseline": 0.1, "start_from_epoch": 1}, {"patience": 1, "mode": "max"},
               {"patience": 1, "baseline": 0.6, "mode": "max"}]
    keras_gave = [  # one row a config, one entry a sequence: [stop epoch, best epoch]
        [2, 1], [None, 5], [1, 0], [1, 0], [5, 4],
        [3, 1], [None, 5], [1, 0], [2, 0], [6, 4],
        [3, 2], [None, 5], [4, 3], [3, 2], [5, 4],
        [2, 1], [None, 5], [1, 0], [1, 0], [5, 4],
        [2, 1], [None, 5], [1, 0], [1, 0], [2, 1],
        [2, 1], [None, 5], [2, 1], [2, 1], [5, 4],
        [1, 0], [1, 0], [3, 2], [1, 0], [1, 0],
        [1, 0], [1, 0], [3, 2], [1, 0], [1, 0],
    ]
    got = []

    class State:
        stop = False

    for config in configs:
        for seq in seqs:
            cb = callbacks.EarlyStopping(monitor="val_loss", **config)
            cb.reset()
            state, stop = State(), None
            for epoch, value in enumerate(seq):
                state.epoch = epoch + 1
                cb.on_epoch_end(state, {"val_loss": value})
                if state.stop:
                    stop = epoch
                    break
            got.append([stop, cb.best_epoch])
    assert got == keras_gave


def test_csv_logger_writes_keras_columns_and_lines(data, tmp_path):
    """As Keras 3.15.1 wrote them: without validation the val_ columns are there, NA; lines end
    in \\r\\n (csv's excel dialect); append adds rows under the first header."""
    x, y = data[0][:200], data[1][:200]
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(path, separator=";", append=True)])
    model.fit(x, y, validation_split=0.2, verbose=0,
              callbacks=[callbacks.CSVLogger(path, separator=";", append=True)])
    lines = path.read_bytes().split(b"\r\n")
    assert lines[0] == b"epoch;accuracy;loss;val_accuracy;val_loss" and lines[-1] == b""
    assert [line.split(b";")[0] for line in lines[1:-1]] == [b"0", b"1", b"0"]
    assert lines[1].endswith(b";NA;NA") and lines[2].endswith(b";NA;NA") and b"NA" not in lines[3]


class ArrayLike:
    """What a pandas DataFrame or Series is to NumPy (shape and __array__, no dtype attribute):
    Keras 3 reads any such object with np.asarray."""

    def __init__(self, values: np.ndarray):
        self.values, self.shape = values, values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self) -> int:
        return len(self.values)


def test_array_likes_such_as_dataframes_are_read_as_arrays(data):
    x, y = data[0][:128], data[1][:128]
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ArrayLike(x), ArrayLike(y), validation_data=(ArrayLike(x), ArrayLike(y)), verbose=0)
    assert set(history.history) == {"accuracy", "loss", "val_accuracy", "val_loss"}
    np.testing.assert_array_equal(model.predict(ArrayLike(x), verbose=0), model.predict(x, verbose=0))
    assert model.evaluate(ArrayLike(x), ArrayLike(y), verbose=0) == model.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match="expected a batch of inputs"):
        model.predict(ArrayLike(np.array([["a"] * 784], dtype=object)), verbose=0)


def test_summary_show_trainable_and_wrapped_cells_as_keras(capsys):
    """tests/fixtures/keras/summary_trainable_wrap.txt is what Keras 3.15.1 (JAX, not a
    terminal: 80 columns) printed for these calls, colours stripped: the Trainable column, cells
    wrapped at spaces, words wider than their column cut with '…'."""
    from pathlib import Path

    from digitnet import keras

    m = keras.Sequential([keras.Input((784,)), keras.layers.Normalization(mean=0.5, variance=0.1),
                          keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.2),
                          keras.layers.Dense(10, activation="softmax")], name="s")
    m.summary(show_trainable=True)
    keras.Sequential([keras.layers.Dense(16), keras.layers.Dense(10)], name="u").summary(show_trainable=True)
    m.summary()
    m = keras.Sequential([keras.Input((784,)),
                          keras.layers.Dense(16, name="a_very_long_layer_name_for_testing_the_wrap"),
                          keras.layers.Dense(10, activation="softmax", name="hidden_layer_number_two")],
                         name="s")
    m.summary()
    m.summary(show_trainable=True)
    want = (Path(__file__).parent / "fixtures/keras/summary_trainable_wrap.txt").read_text()
    assert capsys.readouterr().out == want


def test_class_weight_keys_read_as_keras_does_and_all_ones_trains_the_same_bits(data):
    """Keras (class_weight_to_sample_weights) reads keys with int(), gives a class left out the
    weight 1 and ignores keys of no class: {0: 1, "1": 1.0, 12: 5} weighs every digit alike,
    so it trains exactly the weights of no class_weight at all."""
    from digitnet import keras

    x, y = data[0][:256], data[1][:256]
    runs = []
    for class_weight in (None, {0: 1, "1": 1.0, 12: 5.0}, {"1": 0.0}):
        keras.utils.set_random_seed(3)
        model = mlp()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        h = model.fit(x, y, epochs=1, batch_size=32, verbose=0, class_weight=class_weight)
        runs.append((h.history["loss"][0], model.get_weights()))
    (loss0, w0), (loss1, w1), (loss2, w2) = runs
    assert loss1 == loss0 and all(np.array_equal(a, b) for a, b in zip(w0, w1, strict=True))
    assert loss2 != loss0  # the string key "1" does reach class 1


def test_auc_counts_each_threshold_and_reads_the_curve():
    """AUC's confusion counts against a plain loop over its thresholds (a prediction above one is
    positive); a perfect ranking scores 1, a reversed one 0 (Keras' own values: scenario auc)."""
    from digitnet import keras

    rng = np.random.default_rng(5)
    pred, true, weight = rng.random(200), rng.integers(0, 2, 200), rng.integers(0, 3, 200)
    auc = keras.metrics.AUC(num_thresholds=9)
    auc.update_state(true, pred, sample_weight=weight)
    for i, t in enumerate(np.float32(auc.thresholds)):
        above = pred.astype(np.float32) > t
        assert float(auc.true_positives.numpy()[i]) == pytest.approx(np.sum(weight * (above & (true == 1))))
        assert float(auc.true_negatives.numpy()[i]) == pytest.approx(np.sum(weight * (~above & (true == 0))))
    ranked = np.linspace(0.01, 0.99, 50)
    for curve in ("ROC", "PR"):
        perfect = keras.metrics.AUC(curve=curve)
        perfect.update_state(ranked > 0.5, ranked)
        assert float(perfect.result()) == pytest.approx(1.0, abs=0.02)
    backwards = keras.metrics.AUC()
    backwards.update_state(ranked < 0.5, ranked)
    assert float(backwards.result()) == pytest.approx(0.0, abs=0.02)
    with pytest.raises(ValueError, match="multi_label"):
        keras.metrics.AUC(multi_label=True)


def test_output_bias_from_an_array_and_the_bias_variable():
    """TensorFlow's imbalanced-data tutorial: Dense(bias_initializer=Constant(np.log([p/n]))),
    then `layer.bias.assign([0.0])` on a model whose bias_initializer is None (Keras draws that
    bias with glorot_uniform and saves None)."""
    from digitnet import keras

    bias = np.log([0.02])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid",
                                                 bias_initializer=keras.initializers.Constant(bias))])
    assert model.get_weights()[3].tolist() == pytest.approx(bias.tolist())
    config = model.layers[-1].get_config()["bias_initializer"]["config"]["value"]
    assert config == {"class_name": "__numpy__", "config": {"value": bias.tolist(), "dtype": "float64"}}
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, bias_initializer=None)])
    drawn = plain.get_weights()[1]
    assert np.all(drawn != 0) and np.all(np.abs(drawn) <= np.sqrt(6 / 4))  # glorot over (2,)
    assert plain.layers[-1].get_config()["bias_initializer"] is None
    plain.layers[-1].bias.assign([0.0, 0.0])
    assert plain.get_weights()[1].tolist() == [0.0, 0.0]
    assert plain.layers[-1].kernel.numpy().shape == (4, 2)
    with pytest.raises(ValueError, match="Constant: a value of shape"):
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(
            3, bias_initializer=keras.initializers.Constant([1.0, 2.0]))])


def test_sample_weight_of_two_is_plain_sgd_at_twice_the_rate(data):
    """A loss weighted by 2 has gradients of twice the size: plain SGD at rate r with every
    sample weight 2 takes exactly the steps of rate 2r unweighted (doubling is exact in floats);
    the reported loss is doubled and the accuracy is not."""
    from digitnet import keras

    x, y = data[0][:256], data[1][:256]
    runs = []
    for rate, weights in ((0.1, np.full(256, 2.0)), (0.2, None)):
        keras.utils.set_random_seed(4)
        model = mlp()
        model.compile(keras.optimizers.SGD(learning_rate=rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        h = model.fit(x, y, epochs=1, batch_size=32, verbose=0, sample_weight=weights)
        runs.append((h.history, model.get_weights(),
                     model.evaluate(x, y, verbose=0, sample_weight=weights)))
    (h2, w2, e2), (h1, w1, e1) = runs
    assert all(np.array_equal(a, b) for a, b in zip(w2, w1, strict=True))
    assert h2["accuracy"] == h1["accuracy"] and h2["loss"][0] == pytest.approx(2 * h1["loss"][0])
    assert e2[0] == pytest.approx(2 * e1[0]) and e2[1] == e1[1]


def tensorboard_events(root) -> dict:
    """{split: {tag: {step: value or None}}} from the event files under root/train, root/validation."""
    from tests.test_tracking import read_events

    out: dict = {}
    for split in ("train", "validation"):
        tags: dict = {}
        for path in sorted((root / split).glob("events*")):
            for event in read_events(path):
                for v in event.summary.value:
                    value = v.simple_value if v.HasField("simple_value") else None
                    tags.setdefault(v.tag, {})[event.step] = value
        out[split] = tags
    return out


@pytest.mark.parametrize("update_freq", ["epoch", 40])
def test_tensorboard_writes_keras_tags_and_the_history(tmp_path, update_freq):
    """TensorBoard(log_dir, histogram_freq=1) writes the tags and steps real Keras 3.15.1 writes
    for the same fit and evaluate (tests/fixtures/keras/tensorboard_tags.json), with the
    history's values. With an integer update_freq Keras also skips the epoch logs unless the
    epoch's last batch count divides by it (a quirk of its record_if): digitnet writes them."""
    pytest.importorskip("tensorboardX")
    from digitnet import keras

    want = json.loads((FIXTURES / "tensorboard_tags.json").read_text())[str(update_freq)]
    x, y = mnist.train_images()[:3000] / 255.0, mnist.train_labels()[:3000]  # as Keras' run
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    tb = keras.callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=1, update_freq=update_freq)
    h = model.fit(x, y, epochs=2, batch_size=32, validation_data=(x[:500], y[:500]),
                  callbacks=[tb], verbose=0)
    ev = model.evaluate(x[:500], y[:500], callbacks=[tb], verbose=0, return_dict=True)
    got = tensorboard_events(tmp_path)
    for split, tags in want.items():
        for tag, steps in tags.items():
            assert sorted(got[split][tag]) == steps, (split, tag)
    train, val = got["train"], got["validation"]
    for epoch in (0, 1):
        assert train["epoch_loss"][epoch] == pytest.approx(h.history["loss"][epoch], rel=1e-6)
        assert val["epoch_accuracy"][epoch] == pytest.approx(h.history["val_accuracy"][epoch])
        assert train["epoch_learning_rate"][epoch] == pytest.approx(0.001)
    assert val["evaluation_loss_vs_iterations"][188] == pytest.approx(ev["loss"], rel=1e-6)
    assert "sequential/dense/kernel/histogram" in train and "keras" in train
