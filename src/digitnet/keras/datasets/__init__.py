"""Data sets in Keras' shape: `keras.datasets.mnist.load_data()` (embedded) and
`keras.datasets.fashion_mnist.load_data()` (downloaded through digitnet's dataset registry)."""

from digitnet.keras.datasets import fashion_mnist, mnist

__all__ = ["fashion_mnist", "mnist"]
