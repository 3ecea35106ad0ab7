"""The tutorial's `mnist` package, on the embedded data set: `from digitnet import mnist`.

    >>> mnist.train_images().shape, mnist.test_labels()[:5].tolist()
    ((60000, 28, 28), [7, 2, 1, 0, 4])

Each call returns a fresh uint8 copy, so changing it in place cannot alter the cached data set.
"""

from __future__ import annotations

import numpy as np

from digitnet.data.datasets import load_dataset


def train_images() -> np.ndarray:
    """(60000, 28, 28) uint8 pixels."""
    return load_dataset("mnist").x_train.copy()


def train_labels() -> np.ndarray:
    """(60000,) uint8 digits."""
    return load_dataset("mnist").y_train.astype(np.uint8)


def test_images() -> np.ndarray:
    """(10000, 28, 28) uint8 pixels."""
    return load_dataset("mnist").x_test.copy()


def test_labels() -> np.ndarray:
    """(10000,) uint8 digits."""
    return load_dataset("mnist").y_test.astype(np.uint8)
