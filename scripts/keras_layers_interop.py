"""Keras files of models with Activation/ReLU/Softmax layers, of functional (binary) chains, of
the scaling layers and options (layers_more) and of BatchNormalization (layers_bn), both ways:
written by one side (digitnet.keras or real Keras 3), read by the other.

    PYTHONPATH=src python scripts/keras_layers_interop.py write DIR digitnet
    KERAS_BACKEND=jax /work/venvs/keras/bin/python scripts/keras_layers_interop.py write DIR2 keras
    KERAS_BACKEND=jax /work/venvs/keras/bin/python scripts/keras_layers_interop.py read DIR keras
    PYTHONPATH=src python scripts/keras_layers_interop.py read DIR2 digitnet

`read` prints, per file, ok and the largest |Δ| of predictions on 20 inputs against what the
writer predicted. tests/fixtures/keras/layers_* are files Keras wrote this way.
"""

from __future__ import annotations

import sys

import numpy as np

X = np.random.default_rng(0).random((20, 784), dtype=np.float32)


def models(keras):
    keras.utils.set_random_seed(0)
    act = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16), keras.layers.Activation("relu"),
                            keras.layers.Dropout(0.1), keras.layers.Dense(8), keras.layers.ReLU(),
                            keras.layers.Dense(10), keras.layers.Softmax()])
    act.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    inputs = keras.Input((784,))
    hidden = keras.layers.Activation("tanh")(keras.layers.Dense(16)(inputs))
    binary = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    binary.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return act, binary


def more_model(keras):
    """The layers and options of tests/test_keras_layers.py: scaling layers first, activation
    layers, Keras' other activation names, regularizers and initializers."""
    keras.utils.set_random_seed(0)
    L, R, init = keras.layers, keras.regularizers, keras.initializers
    norm = L.Normalization()
    norm.adapt(X.reshape(-1, 28, 28) * 255)
    model = keras.Sequential([keras.Input((28, 28)), norm, L.Rescaling(0.5, offset=0.1), L.Flatten(),
                              L.Dense(16, kernel_regularizer=R.l2(0.01), bias_regularizer=R.l1(0.001),
                                      kernel_initializer="he_normal", bias_initializer=init.Constant(0.1)),
                              L.LeakyReLU(0.1), L.Dense(12, activation="swish",
                                                        kernel_initializer=init.RandomNormal(stddev=0.1)),
                              L.Dense(8), L.ELU(0.5), L.Dense(6),
                              L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
                              L.Dense(10, activation="softmax", kernel_regularizer=R.L1L2(0.001, 0.002))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


MORE = [("layers_more.keras", "layers_more"), ("layers_more_model.h5", "layers_more"),
        ("layers_more.weights.h5", "layers_more")]


def batchnorm_model(keras):
    """BatchNormalization of the inputs, of a bias-free layer's pre-activations and of another's
    outputs (its own momentum and epsilon), before a Dropout, as public MLP scripts write it."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((784,)), L.BatchNormalization(momentum=0.8),
                              L.Dense(32, use_bias=False), L.BatchNormalization(),
                              L.Activation("relu"), L.Dense(16, activation="relu"),
                              L.BatchNormalization(momentum=0.9, epsilon=0.01), L.Dropout(0.2),
                              L.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


BATCHNORM = [("layers_bn.keras", "layers_bn"), ("layers_bn_model.h5", "layers_bn"),
             ("layers_bn.weights.h5", "layers_bn")]


def main() -> None:
    what, folder, side = sys.argv[1:4]
    if side == "digitnet":
        from digitnet import keras
    else:
        import keras
    act, binary = models(keras)
    if what == "write":
        act.save(f"{folder}/layers_act.keras")
        act.save_weights(f"{folder}/layers_act.weights.h5")
        act.save(f"{folder}/layers_act_model.h5")
        binary.save(f"{folder}/layers_binary.keras")
        np.save(f"{folder}/layers_act.npy", act.predict(X, verbose=0))
        np.save(f"{folder}/layers_binary.npy", binary.predict(X, verbose=0))
        more = more_model(keras)
        more.save(f"{folder}/layers_more.keras")
        more.save(f"{folder}/layers_more_model.h5")
        more.save_weights(f"{folder}/layers_more.weights.h5")
        np.save(f"{folder}/layers_more.npy", more.predict(X.reshape(-1, 28, 28) * 255, verbose=0))
        bn = batchnorm_model(keras)  # trained a little: moving averages away from their start
        bn.fit(X, np.arange(len(X)) % 10, epochs=3, batch_size=5, shuffle=False, verbose=0)
        bn.save(f"{folder}/layers_bn.keras")
        bn.save(f"{folder}/layers_bn_model.h5")
        bn.save_weights(f"{folder}/layers_bn.weights.h5")
        np.save(f"{folder}/layers_bn.npy", bn.predict(X, verbose=0))
        return
    def fresh_more():
        model = more_model(keras)
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        return model

    read_back(keras, side, folder, BATCHNORM, lambda: batchnorm_model(keras), X)
    read_back(keras, side, folder, MORE, fresh_more, X.reshape(-1, 28, 28) * 255)
    read_back(keras, side, folder, [("layers_act.keras", "layers_act"), ("layers_act_model.h5", "layers_act"),
                                    ("layers_binary.keras", "layers_binary"),
                                    ("layers_act.weights.h5", "layers_act")], lambda: act, X)


def read_back(keras, side: str, folder: str, files: list[tuple[str, str]], model_for_weights,
              inputs: np.ndarray) -> None:
    """Load each file (a .weights.h5 into model_for_weights()) and print the largest |Δ| of its
    predictions on `inputs` against what the writer predicted."""
    for name, pred in files:
        try:
            if name.endswith(".weights.h5"):
                model = model_for_weights()
                model.load_weights(f"{folder}/{name}")
            else:
                model = keras.models.load_model(f"{folder}/{name}")
            delta = np.abs(model.predict(inputs, verbose=0) - np.load(f"{folder}/{pred}.npy")).max()
            print(side, "reads", name, "ok", f"max |Δp| {delta:.2e}",
                  [type(layer).__name__ for layer in model.layers])
        except Exception as exc:  # noqa: BLE001 - reported, for each file
            print(side, "reads", name, "FAILED", type(exc).__name__, str(exc)[:300])

if __name__ == "__main__":
    main()
