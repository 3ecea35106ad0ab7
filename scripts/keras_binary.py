"""A binary classifier, "is it a 5?", on MNIST, the same code on real Keras 3 or digitnet.keras:
Dense(64, relu) → Dense(1, sigmoid), binary cross-entropy, Adam, 5 epochs at batch 32.

    PYTHONPATH=src python scripts/keras_binary.py digitnet
    KERAS_BACKEND=jax /work/venvs/keras/bin/python scripts/keras_binary.py keras /work/shared/data/mnist

Prints the test loss and accuracy, and the first three predicted probabilities.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    if sys.argv[1] == "keras":
        import keras
        from keras_scripts import idx_loader

        (x, y), (xt, yt) = idx_loader(Path(sys.argv[2]))()
    else:
        from digitnet import keras

        (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    x, xt = x.reshape(-1, 784).astype("float32") / 255, xt.reshape(-1, 784).astype("float32") / 255
    y, yt = (y == 5).astype("float32"), (yt == 5).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=32, validation_split=0.1, verbose=2)
    loss, acc = model.evaluate(xt, yt, verbose=0)
    first = model.predict(xt[:3], verbose=0).ravel()
    print(f"test loss {loss:.4f}  test accuracy {acc:.4f}  first three {first}")


if __name__ == "__main__":
    main()
