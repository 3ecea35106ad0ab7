"""A Keras-compatible front end: run Keras MLP code (the tutorial's) on digitnet's engine.

    from digitnet import keras, mnist
    from digitnet.keras.models import Sequential
    from digitnet.keras.layers import Dense
    from digitnet.keras.utils import to_categorical

Reads and writes Keras' weight and model files (.weights.h5, legacy .h5, .keras); see
docs/keras.md for what is supported.
"""

from digitnet.keras import callbacks, datasets, layers, losses, models, optimizers, utils
from digitnet.keras.layers import Input
from digitnet.keras.models import Sequential, load_model

__all__ = ["Input", "Sequential", "callbacks", "datasets", "layers", "load_model", "losses", "models",
           "optimizers", "utils"]
