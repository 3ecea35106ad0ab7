"""What every peer script shares: the data file, the tutorial's preprocessing, the report.

Peer scripts run inside each peer's own virtual environment (bench/peers/setup.sh), where
digitnet is not installed, so this module needs nothing but NumPy and the standard library.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def load(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tutorial's inputs: pixels / 255 - 0.5, flattened to 784, float32; integer labels."""
    d = np.load(path)
    prep = lambda x: (x.reshape(len(x), -1).astype(np.float32) / 255.0 - 0.5)  # noqa: E731
    return prep(d["x_train"]), d["y_train"].astype(np.int64), prep(d["x_test"]), d["y_test"].astype(np.int64)


def timed_predict(predict, x: np.ndarray, repeats: int = 3) -> list[float]:
    """Seconds per call of predict(x) after one warm-up call."""
    predict(x)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(x)
        out.append(time.perf_counter() - t0)
    return out


def report(**fields) -> None:
    """One JSON line on stdout, the last line the bench reads."""
    print(json.dumps(fields), flush=True)


def args() -> tuple[str, int, int, int]:
    """data.npz, epochs, batch size and seed from the command line (a fifth argument, the
    device, is read by the peers that can use one)."""
    return sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


class EpochClock:
    """Wall and process-CPU seconds of each epoch (CPU time is steadier on a busy machine)."""

    def __init__(self):
        self.wall, self.cpu = [], []

    def start(self):
        self._t = (time.perf_counter(), time.process_time())

    def stop(self):
        self.wall.append(time.perf_counter() - self._t[0])
        self.cpu.append(time.process_time() - self._t[1])
