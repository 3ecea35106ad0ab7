"""Check that Keras files written by digitnet load in real Keras, and the other way round.

Three steps, in two Python environments (Keras never enters digitnet's dependencies):

    python scripts/keras_interop.py write DIR          # digitnet's env: train, write files
    KERAS_BACKEND=jax /path/keras-env/bin/python scripts/keras_interop.py keras DIR
                                                        # Keras' env: load ours, write its own
    python scripts/keras_interop.py read DIR            # digitnet's env: load Keras' files

Each step prints one line per file and exits 1 if any prediction differs by more than 1e-5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

OURS = ("ours_legacy.h5", "ours.weights.h5", "ours.keras", "ours_model.h5")
THEIRS = ("keras.weights.h5", "keras.keras", "keras_model.h5")
TOL = 1e-5


def report(name: str, got: np.ndarray, want: np.ndarray) -> bool:
    err = float(np.abs(got - want).max())
    ok = err <= TOL and (got.argmax(1) == want.argmax(1)).all()
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |Δp| {err:.2e}, argmax {got.argmax(1).tolist()}")
    return ok


def write(out: Path) -> bool:
    from digitnet import mnist
    from digitnet.keras.layers import Dense, Dropout
    from digitnet.keras.models import Sequential
    from digitnet.keras.utils import set_random_seed, to_categorical

    set_random_seed(0)
    x = (mnist.train_images()[:6000] / 255 - 0.5).reshape(-1, 784)
    model = Sequential([Dense(64, activation="relu", input_shape=(784,)), Dropout(0.2),
                        Dense(32, activation="tanh"), Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, to_categorical(mnist.train_labels()[:6000]), epochs=1, verbose=0)
    probe = (mnist.test_images()[:20] / 255 - 0.5).reshape(-1, 784).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "probe.npy", probe)
    np.save(out / "ours_probs.npy", model.predict(probe))
    model.save_weights(out / "ours_legacy.h5")
    model.save_weights(out / "ours.weights.h5")
    model.save(out / "ours.keras")
    model.save(out / "ours_model.h5")
    print(f"wrote {', '.join(OURS)} to {out}")
    return True


def keras_side(out: Path) -> bool:
    import keras

    probe, want = np.load(out / "probe.npy"), np.load(out / "ours_probs.npy")

    def same_architecture():
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                                 keras.layers.Dropout(0.2), keras.layers.Dense(32, activation="tanh"),
                                 keras.layers.Dense(10, activation="softmax")])

    ok = True
    for name in ("ours_legacy.h5", "ours.weights.h5"):
        model = same_architecture()
        model.load_weights(out / name)
        ok &= report(f"keras {keras.__version__} load_weights({name})", model.predict(probe, verbose=0), want)
    for name in ("ours.keras", "ours_model.h5"):
        model = keras.models.load_model(out / name)
        ok &= report(f"keras {keras.__version__} load_model({name})", model.predict(probe, verbose=0), want)
    # Keras' own files, for digitnet to read: weights of the model Keras just loaded, retrained
    # one step so they differ from ours.
    model = keras.models.load_model(out / "ours.keras")
    model.fit(probe, keras.utils.to_categorical(np.arange(20) % 10, 10), epochs=1, verbose=0)
    np.save(out / "keras_probs.npy", model.predict(probe, verbose=0))
    model.save_weights(out / "keras.weights.h5")
    model.save(out / "keras.keras")
    model.save(out / "keras_model.h5")
    return ok


def read(out: Path) -> bool:
    from digitnet.keras.layers import Dense, Dropout
    from digitnet.keras.models import Sequential, load_model

    probe, want = np.load(out / "probe.npy"), np.load(out / "keras_probs.npy")
    model = Sequential([Dense(64, activation="relu", input_shape=(784,)), Dropout(0.2),
                        Dense(32, activation="tanh"), Dense(10, activation="softmax")])
    model.load_weights(out / "keras.weights.h5")
    ok = report("digitnet load_weights(keras.weights.h5)", model.predict(probe), want)
    for name in ("keras.keras", "keras_model.h5"):
        loaded = load_model(out / name)
        ok &= report(f"digitnet load_model({name}) [{loaded.optimizer!r}, {loaded.loss}]",
                     loaded.predict(probe), want)
    print(json.dumps({"checked": 3}))
    return ok


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    sys.exit(0 if {"write": write, "keras": keras_side, "read": read}[step](folder) else 1)
