"""What one file or one request may make digitnet allocate, checked before it allocates.

Limits are totals: a file that lists one array eight times is charged eight times, and a request
of 256 images is charged for all of them. Decoders that run concurrently share a `Gate`, so the
number of decodes in flight is bounded by memory, not by the size of a thread pool.
`DIGITNET_MEMORY_BUDGET` (bytes) raises or lowers the per-file budget.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from digitnet.errors import ConfigError, DigitnetError


def env_bytes(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of bytes, got {value!r}") from None
    if n < 1 << 20:
        raise ConfigError(f"{name} must be at least 1 MiB, got {n}")
    return n


MEMORY_BUDGET = env_bytes("DIGITNET_MEMORY_BUDGET", 1 << 30)
# Parameters of one model (float32): 2 × 2048 hidden units hold 6 M; 128 M is far beyond any MLP
# on MNIST-sized images, and its weights (512 MiB) still fit the budget.
MAX_PARAMS = 1 << 27
MAX_UNITS = 1 << 20  # units of one layer; also bounds the output of a single matrix product
MAX_INPUT_DIM = 1 << 22  # values per input image (a 2048×2048 image)


def check_layer_sizes(sizes: list[int] | tuple[int, ...], where: str,
                      error: type[DigitnetError] = ConfigError) -> int:
    """Parameters of an MLP with these layer sizes (input first), refused when any is not a
    positive int within bounds or their total exceeds MAX_PARAMS. Python ints: no overflow."""
    for i, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise error(f"{where}: layer sizes must be positive integers, got {n!r}")
        bound = MAX_INPUT_DIM if i == 0 else MAX_UNITS
        if n > bound:
            raise error(f"{where}: {n:,} {'inputs' if i == 0 else 'units'} in one layer, more "
                        f"than the {bound:,} allowed")
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    if params > MAX_PARAMS:
        raise error(f"{where}: {params:,} parameters, more than the {MAX_PARAMS:,} allowed")
    return params


class Budget:
    """Bytes one file or request may allocate in all; `charge` before each allocation."""

    def __init__(self, limit: int, what: str, error: type[DigitnetError]):
        self.limit, self.what, self.error, self.used = limit, what, error, 0

    def charge(self, nbytes: int, item: str = "") -> None:
        self.used += int(nbytes)
        if self.used > self.limit:
            raise self.error(f"{self.what}: {item + ' brings ' if item else ''}the total to "
                             f"{self.used:,} bytes, over the budget of {self.limit:,}")


def nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(int(d) for d in shape) * int(itemsize)


class Gate:
    """A semaphore counted in bytes: at most `capacity` bytes held by decodes in flight.
    A request that alone exceeds the capacity is refused at once; others wait their turn
    (up to `timeout` seconds, then refused as busy)."""

    def __init__(self, capacity: int):
        self.capacity, self.held = capacity, 0
        self.cond = threading.Condition()

    @contextmanager
    def hold(self, amount: int, error: Exception, busy: Exception,
             timeout: float = 30.0) -> Iterator[None]:
        if amount > self.capacity:
            raise error
        with self.cond:
            if not self.cond.wait_for(lambda: self.held + amount <= self.capacity, timeout):
                raise busy
            self.held += amount
        try:
            yield
        finally:
            with self.cond:
                self.held -= amount
                self.cond.notify_all()
