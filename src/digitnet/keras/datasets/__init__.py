"""Data sets in Keras' shape: `from digitnet.keras.datasets import mnist`."""
