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
        return
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
