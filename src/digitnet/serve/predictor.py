"""The model behind the service: loaded once, called with fixed batch shapes.

jax.jit compiles once per input shape, so a request of n images is padded up to the next
power of two (up to the batch limit): a handful of shapes, all compiled at start-up, so no
request ever waits for a compilation.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import artifacts as art
from digitnet.api import load


def bucket_sizes(max_batch: int) -> list[int]:
    sizes = [1]
    while sizes[-1] < max_batch:
        sizes.append(min(sizes[-1] * 2, max_batch))
    return sizes


class Predictor:
    def __init__(self, run_dir: str | os.PathLike, max_batch: int):
        self.run_dir = art.check_run_dir(Path(run_dir)).resolve()
        self.model = load(self.run_dir)
        digest = hashlib.sha256((self.run_dir / art.WEIGHTS).read_bytes()).hexdigest()
        spec = self.model.spec
        self.info = {"name": self.run_dir.name, "id": f"sha256:{digest[:16]}",
                     "architecture": "-".join(map(str, spec.sizes)), "activation": spec.activation}
        self.buckets = bucket_sizes(max_batch)
        for size in self.buckets:
            self.model.predict_proba(np.zeros((size, spec.input_dim), np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n, classes) for raw pixels x (n, input_dim), n ≤ the batch limit."""
        n = len(x)
        size = next(b for b in self.buckets if b >= n)
        padded = np.zeros((size, x.shape[1]), np.float32)
        padded[:n] = x
        return self.model.predict_proba(padded)[:n]

    def describe(self) -> dict[str, Any]:
        """Everything GET /model shows: identity, layers, training config and metrics."""
        cfg = self.model.config
        return {**self.info, "spec": self.model.spec.to_dict(),
                "num_params": self.model.spec.num_params, "summary": self.model.summary(),
                "metrics": cfg.get("metrics", {}), "train": cfg.get("train", {}),
                "dataset": cfg.get("dataset", {}), "versions": cfg.get("versions", {}),
                "history": self.model.history}
