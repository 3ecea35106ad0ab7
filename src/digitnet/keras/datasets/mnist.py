"""`keras.datasets.mnist`, served from the embedded copy: nothing is downloaded."""

from __future__ import annotations

import numpy as np

from digitnet import mnist


def load_data(path: str = "mnist.npz") -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays, like Keras. `path` (Keras' cache
    file name) is accepted for compatibility and unused."""
    del path
    return ((mnist.train_images(), mnist.train_labels()),
            (mnist.test_images(), mnist.test_labels()))
