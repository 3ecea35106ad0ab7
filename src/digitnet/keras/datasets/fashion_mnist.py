"""`keras.datasets.fashion_mnist`, from digitnet's dataset registry: downloaded once from its
pinned mirrors (SHA-256 checked), then read from the cache; offline, a one-line error says so."""

from __future__ import annotations

import numpy as np

from digitnet.data.datasets import load_dataset


def load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays of shapes (60000, 28, 28),
    (60000,), (10000, 28, 28), (10000,), like Keras."""
    ds = load_dataset("fashion-mnist")
    return ((ds.x_train.copy(), ds.y_train.copy()), (ds.x_test.copy(), ds.y_test.copy()))
