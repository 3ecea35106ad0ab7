"""`from digitnet.keras import tf` for scripts that spell `import tensorflow as tf` … `tf.keras.…`:
the script below is such a script with only its import line changed, and it must train the very
model that the same script spelt with keras and activation names trains."""

from __future__ import annotations

import numpy as np
import pytest

N = 1024

TF_SCRIPT = """
tf.random.set_seed(7)
(x_train, y_train), (x_test, y_test) = tf.keras.datasets.mnist.load_data()
x_train, y_train, x_test, y_test = x_train[:N] / 255.0, y_train[:N], x_test[:N] / 255.0, y_test[:N]
model = tf.keras.models.Sequential([
    tf.keras.layers.Flatten(input_shape=(28, 28)),
    tf.keras.layers.Dense(64, activation=tf.nn.relu),
    tf.keras.layers.Dense(10, activation=tf.nn.softmax),
])
model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
loss, acc = model.evaluate(x_test, y_test, verbose=0)
probs = model.predict(x_test[:5], verbose=0)
"""

KERAS_SCRIPT = (TF_SCRIPT.replace("tf.random.set_seed", "keras.utils.set_random_seed")
                .replace("tf.nn.relu", '"relu"').replace("tf.nn.softmax", '"softmax"')
                .replace("tf.keras.", "keras."))


def run(script: str) -> dict:
    from digitnet import keras
    from digitnet.keras import tf

    scope = {"tf": tf, "keras": keras, "N": N}
    exec(script, scope)  # noqa: S102 - the test's own script
    return scope


def test_a_tf_spelt_script_trains_what_its_keras_spelling_trains():
    a, b = run(TF_SCRIPT), run(KERAS_SCRIPT)
    for wa, wb in zip(a["model"].get_weights(), b["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a["acc"] == b["acc"] > 0.5  # 32 steps of Adam: it learns
    np.testing.assert_array_equal(a["probs"], b["probs"])


def test_the_rest_of_tensorflow_is_refused_by_name():
    from digitnet.keras import tf

    for name in ("data", "GradientTape", "function"):
        with pytest.raises(AttributeError, match=f"no tf.{name}: it covers tf.keras"):
            getattr(tf, name)
    assert tf.config.list_physical_devices("GPU") == []
    assert [d.device_type for d in tf.config.list_physical_devices()] == ["CPU"]
    np.testing.assert_array_equal(tf.one_hot(np.array([2, 0]), 3), np.eye(3)[[2, 0]])
    assert np.asarray(tf.cast(np.array([1.7]), tf.int32)).dtype == np.int32
    assert tf.keras.__version__.startswith("3.") and tf.version.VERSION == tf.__version__


# TensorFlow's own beginner quickstart (tensorflow.org/tutorials/quickstart/beginner), its import
# line changed and one epoch instead of five.
QUICKSTART = """
print("TensorFlow version:", tf.__version__)
mnist = tf.keras.datasets.mnist
(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train, x_test = x_train / 255.0, x_test / 255.0
model = tf.keras.models.Sequential([
  tf.keras.layers.Flatten(input_shape=(28, 28)),
  tf.keras.layers.Dense(128, activation='relu'),
  tf.keras.layers.Dropout(0.2),
  tf.keras.layers.Dense(10)
])
predictions = model(x_train[:1]).numpy()
probs = tf.nn.softmax(predictions).numpy()
loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
first_loss = loss_fn(y_train[:1], predictions).numpy()
model.compile(optimizer='adam', loss=loss_fn, metrics=['accuracy'])
model.fit(x_train, y_train, epochs=1, verbose=0)
loss, acc = model.evaluate(x_test,  y_test, verbose=2)
probability_model = tf.keras.Sequential([model, tf.keras.layers.Softmax()])
five = probability_model(x_test[:5])
"""


def test_tensorflows_quickstart_runs_with_its_import_line_changed(capsys):
    scope = run(QUICKSTART)
    assert scope["predictions"].shape == (1, 10)
    np.testing.assert_allclose(scope["probs"].sum(), 1.0, rtol=1e-6)
    # the untrained model's loss on one image: -log of its softmax at the label
    assert float(scope["first_loss"]) == pytest.approx(-np.log(scope["probs"][0, scope["y_train"][0]]),
                                                       rel=1e-5)
    assert scope["acc"] > 0.9
    five = np.asarray(scope["five"])
    np.testing.assert_allclose(five.sum(1), 1.0, rtol=1e-5)
    assert five.argmax(1).tolist() == [7, 2, 1, 0, 4]
    assert "TensorFlow version: 2.16.1" in capsys.readouterr().out
