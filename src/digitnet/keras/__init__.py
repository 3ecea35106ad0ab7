"""A Keras-compatible front end: run Keras MLP code on digitnet's engine.

    from digitnet import keras        # instead of `import keras`
    keras.datasets.mnist.load_data(), keras.Sequential, keras.Model, keras.Input, keras.layers,
    keras.losses, keras.metrics, keras.optimizers, keras.callbacks, keras.ops, keras.utils,
    keras.initializers, keras.regularizers

Reads and writes Keras' weight and model files (.weights.h5, legacy .h5, .keras); see
docs/keras.md for what is supported and what is refused.
"""

from digitnet.keras import (
    activations,
    backend,
    callbacks,
    constraints,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    regularizers,
    saving,
    utils,
)
from digitnet.keras.layers import Input, InputLayer, KerasTensor, Layer
from digitnet.keras.models import Model, Sequential, load_model

# keras.saving.load_model / save_model: the models module's (saving.py reads and writes files
# and does not import the models it describes).
saving.load_model, saving.save_model = models.load_model, models.save_model  # type: ignore[attr-defined]

__version__ = "3.15.1"  # the Keras API this front end follows

__all__ = ["Input", "InputLayer", "KerasTensor", "Layer", "Model", "Sequential", "activations", "backend",
           "callbacks", "constraints", "datasets", "initializers", "layers", "load_model", "losses",
           "metrics", "models", "ops", "optimizers", "regularizers", "saving", "utils"]
