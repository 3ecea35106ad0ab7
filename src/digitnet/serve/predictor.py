"""The model behind the service: loaded once, called with small batches of raw pixels.

Two forward paths compute the same probabilities. For the batches a service sees (one image up
to the batch limit), NumPy products on the loaded weights beat a call into the jitted JAX
forward at every size (bench/load_serve.py measures both; the figures are in docs/serving.md).
At start-up the NumPy path is checked against the compiled forward on a probe batch and used
only if it agrees. Models NumPy cannot reproduce (deskewing, exact GELU without SciPy) take the
compiled forward, padded up to a power of two so that every shape is compiled before the first
request.

A process that uses the NumPy path runs BLAS on one thread: products this small gain nothing
from a second one, and OpenBLAS's waiting threads cost the server 30–100× the CPU per batch on a
busy machine (docs/serving.md).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import artifacts as art
from digitnet.api import class_logits, load

PROBE_ROWS = 64
# The NumPy path must give these probabilities to within this much, or it is not used.
AGREEMENT_ATOL = 1e-5


def bucket_sizes(max_batch: int) -> list[int]:
    sizes = [1]
    while sizes[-1] < max_batch:
        sizes.append(min(sizes[-1] * 2, max_batch))
    return sizes


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _gelu() -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from scipy.special import erf
    except ImportError:
        return None
    return lambda h: (0.5 * h * (1.0 + erf(h / np.float32(np.sqrt(2.0))))).astype(np.float32)


def _selu(h: np.ndarray) -> np.ndarray:
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return (scale * np.where(h > 0, h, alpha * np.expm1(np.minimum(h, 0)))).astype(np.float32)


NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "relu": lambda h: np.maximum(h, 0, out=h),
    "linear": lambda h: h,
    "tanh": np.tanh,
    "sigmoid": lambda h: (1 / (1 + np.exp(-h))).astype(np.float32),
    "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0))).astype(np.float32),
    "leaky_relu": lambda h: np.where(h > 0, h, np.float32(0.2) * h),
    "selu": _selu,
    "gelu": _gelu(),
}


def numpy_forward(model: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """Logits from float32 pixels (n, dim) with NumPy products, or None where NumPy cannot
    compute what the model's compiled forward does. For an ensemble: the log of the mean of
    its members' probabilities (its softmax is that mean, as the ensemble's compiled path)."""
    if hasattr(model, "members"):
        members = [numpy_forward(m) for m in model.members]
        if any(f is None for f in members):
            return None
        tiny = np.finfo(np.float32).tiny
        return lambda x: np.log(np.maximum(np.mean([softmax(f(x)) for f in members], axis=0), tiny))
    spec = model.spec
    acts = [NUMPY_ACTIVATIONS.get(a) for a in spec.hidden_activations]
    if spec.deskew or spec.batchnorm or spec.input_batchnorm or any(a is None for a in acts):
        return None  # the compiled forward serves these
    shift = np.asarray(model.stats["shift"], np.float32)
    scale = np.asarray(model.stats["scale"], np.float32)
    layers = [(np.asarray(p["kernel"], np.float32), np.asarray(p["bias"], np.float32))
              for p in model.params]

    def forward(x: np.ndarray) -> np.ndarray:
        # The same operations in the same order as digitnet.model.forward, so the same float32
        # rounding (folding the preprocessing into the first layer would change it).
        h = (x - shift) * scale
        for (kernel, bias), act in zip(layers[:-1], acts, strict=True):
            h = act(h @ kernel + bias)
        kernel, bias = layers[-1]
        return class_logits(spec, h @ kernel + bias)

    return forward


class Predictor:
    def __init__(self, run_dir: str | os.PathLike, max_batch: int, lean: bool = True):
        self.run_dir = art.check_run_dir(Path(run_dir)).resolve()
        self.model = load(self.run_dir)
        digest = hashlib.sha256((self.run_dir / art.WEIGHTS).read_bytes()).hexdigest()
        spec = self.model.spec
        self.info = {"name": self.run_dir.name, "id": f"sha256:{digest[:16]}",
                     "architecture": self.model.architecture, "activation": spec.activation}
        self.buckets = bucket_sizes(max_batch)
        self.lean = numpy_forward(self.model) if lean else None
        if self.lean is not None and not self._agrees(self.lean):
            self.lean = None
        self.path = "numpy" if self.lean is not None else "jax"
        if self.lean is not None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="blas")
        if self.lean is None:
            for size in self.buckets:
                self.compiled(np.zeros((size, spec.input_dim), np.float32))

    def _agrees(self, lean: Callable[[np.ndarray], np.ndarray]) -> bool:
        rng = np.random.default_rng(0)
        probe = rng.integers(0, 256, (PROBE_ROWS, self.model.spec.input_dim)).astype(np.float32)
        probe[0] = 0
        expected = self.compiled(probe)
        got = softmax(lean(probe))
        return bool(np.allclose(got, expected, rtol=0, atol=AGREEMENT_ATOL)
                    and (got.argmax(1) == expected.argmax(1)).all())

    def compiled(self, x: np.ndarray) -> np.ndarray:
        """Probabilities from the jitted forward, padded to a compiled batch shape."""
        n = len(x)
        size = next((b for b in self.buckets if b >= n), n)
        if size == n:
            return self.model.predict_proba(x)
        padded = np.zeros((size, x.shape[1]), np.float32)
        padded[:n] = x
        return self.model.predict_proba(padded)[:n]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n, classes) for raw pixels x (n, input_dim) float32, n ≤ the batch limit."""
        if self.lean is not None:
            return softmax(self.lean(x))
        return self.compiled(x)

    def explain(self, x: np.ndarray, label: int) -> list[list[float]]:
        """Gradient × input of class `label` for one image, scaled to [-1, 1], as rows (JAX,
        compiled on the first request that asks)."""
        from digitnet.explain import gradient_x_input, normalized

        _, attr = gradient_x_input(self.model, x[:1], [label])
        return np.round(normalized(attr)[0], 3).tolist()

    def describe(self) -> dict[str, Any]:
        """Everything GET /model shows: identity, layers, training config and metrics."""
        cfg = self.model.config
        return {**self.info, "spec": self.model.spec.to_dict(), "inference": self.path,
                "num_params": self.model.num_params, "summary": self.model.summary(),
                "metrics": cfg.get("metrics", {}), "train": cfg.get("train", {}),
                "dataset": cfg.get("dataset", {}), "versions": cfg.get("versions", {}),
                "history": self.model.history}


def time_paths(predictor: Predictor, sizes: list[int], repeat: int = 200) -> list[dict[str, float]]:
    """Median µs per call of each forward path at each batch size, and their largest difference
    (what bench/load_serve.py records: the evidence for the NumPy path)."""
    rng = np.random.default_rng(1)
    rows = []
    for n in sizes:
        x = rng.integers(0, 256, (n, predictor.model.spec.input_dim)).astype(np.float32)
        row: dict[str, float] = {"batch": n}
        paths = {"jax": predictor.compiled}
        if predictor.lean is not None:
            paths["numpy"] = predictor
        for name, fn in paths.items():
            fn(x)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t0)
            row[f"{name}_us"] = float(np.median(times) * 1e6)
        if "numpy" in paths:
            row["max_abs_diff"] = float(np.abs(paths["numpy"](x) - predictor.compiled(x)).max())
        rows.append(row)
    return rows
