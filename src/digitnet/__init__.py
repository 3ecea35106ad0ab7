"""digitnet: train, inspect, compare and serve MLP classifiers of MNIST-format images.

    >>> import digitnet
    >>> model = digitnet.fit()                     # the tutorial's 784-64-64-10, 5 epochs
    >>> model.predict(digitnet.load_dataset().x_test[:5])
    array([7, 2, 1, 0, 4])

The public names load lazily, so `import digitnet` (and `digitnet --help`) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": "digitnet.data.datasets",
    "Dataset": "digitnet.data.datasets",
    "MLP": "digitnet.spec",
    "MLPSpec": "digitnet.spec",
    "TrainConfig": "digitnet.trainconfig",
    "fit": "digitnet.api",
    "load": "digitnet.api",
    "Model": "digitnet.api",
    "DigitnetError": "digitnet.errors",
}

__all__ = ["DigitnetError", "Dataset", "MLP", "MLPSpec", "Model", "TrainConfig", "__version__",
           "fit", "load", "load_dataset"]

if TYPE_CHECKING:
    from digitnet.api import Model, fit, load
    from digitnet.data.datasets import Dataset, load_dataset
    from digitnet.errors import DigitnetError
    from digitnet.spec import MLP, MLPSpec
    from digitnet.trainconfig import TrainConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'digitnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
