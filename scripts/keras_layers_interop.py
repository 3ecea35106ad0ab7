"""Keras files of models with Activation/ReLU/Softmax layers and of functional (binary) chains,
both ways: written by one side (digitnet.keras or real Keras 3), read by the other.

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
        return
    more = more_model(keras)
    for name, pred in MORE:
        try:
            if name.endswith(".weights.h5"):
                model = more
                model.set_weights([np.zeros_like(w) for w in model.get_weights()])
                model.load_weights(f"{folder}/{name}")
            else:
                model = keras.models.load_model(f"{folder}/{name}")
            delta = np.abs(model.predict(X.reshape(-1, 28, 28) * 255, verbose=0)
                           - np.load(f"{folder}/{pred}.npy")).max()
            print(side, "reads", name, "ok", f"max |Δp| {delta:.2e}",
                  [type(layer).__name__ for layer in model.layers])
        except Exception as exc:  # noqa: BLE001 - reported, for each file
            print(side, "reads", name, "FAILED", type(exc).__name__, str(exc)[:300])
    for name, pred in [("layers_act.keras", "layers_act"), ("layers_act_model.h5", "layers_act"),
                       ("layers_binary.keras", "layers_binary"), ("layers_act.weights.h5", "layers_act")]:
        try:
            if name.endswith(".weights.h5"):
                model = act
                model.load_weights(f"{folder}/{name}")
            else:
                model = keras.models.load_model(f"{folder}/{name}")
            delta = np.abs(model.predict(X, verbose=0) - np.load(f"{folder}/{pred}.npy")).max()
            print(side, "reads", name, "ok", f"max |Δp| {delta:.2e}",
                  [type(layer).__name__ for layer in model.layers])
        except Exception as exc:  # noqa: BLE001 - reported, for each file
            print(side, "reads", name, "FAILED", type(exc).__name__, str(exc)[:300])


if __name__ == "__main__":
    main()
