"""JAX's threefry random draws (jax.random.key, split, fold_in, bits and the Glorot-uniform
initializer) computed by NumPy on the host: the same bits, with no XLA program to compile.

A training run draws its initial weights, its keys and each epoch's shuffle keys once; as XLA
programs those cost more to compile than to run (the threefry hash is twenty rounds of
integer arithmetic), a sizeable part of a cold start (docs/performance.md). The hash is
integer arithmetic, so NumPy's results are JAX's exactly; tests/test_hostrandom.py compares
them draw by draw. Only JAX's default setup is mirrored (threefry2x32, partitionable; see
`available`); callers fall back to JAX otherwise.

A key here is a NumPy uint32 array of shape (2,), jax.random.key_data's layout.
"""

from __future__ import annotations

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def available() -> bool:
    """Whether JAX draws as this module does: its default threefry keys, partitionable."""
    import jax

    return (jax.config.jax_default_prng_impl == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def threefry2x32(key: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash of the count pairs (x1, x2) under `key`: jax's threefry2x32_p."""
    k1, k2 = int(key[0]), int(key[1])
    ks = (k1, k2, k1 ^ k2 ^ 0x1BD11BDA)
    x1 = np.asarray(x1, np.uint32) + np.uint32(ks[0])
    x2 = np.asarray(x2, np.uint32) + np.uint32(ks[1])
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 += x2
            x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
            x2 ^= x1
        x1 += np.uint32(ks[(i + 1) % 3])
        x2 += np.uint32((ks[(i + 2) % 3] + i + 1) & 0xFFFFFFFF)
    return x1, x2


def key(seed: int) -> np.ndarray:
    """jax.random.key(seed)'s data, for 0 <= seed < 2**31 (the seeds digitnet's options allow
    through this path; others go through JAX)."""
    if not 0 <= seed < 2**31:
        raise ValueError(f"host keys take seeds in [0, 2**31), got {seed}")
    return np.array([0, seed], np.uint32)


def _counts(n: int) -> tuple[np.ndarray, np.ndarray]:
    """jax's iota_2x32_shape for n < 2**32: the high words (0) and the low words (0..n-1)."""
    return np.zeros(n, np.uint32), np.arange(n, dtype=np.uint32)


def split(k: np.ndarray, num: int) -> list[np.ndarray]:
    """jax.random.split(k, num)'s keys."""
    b1, b2 = threefry2x32(k, *_counts(num))
    return [np.array([a, b], np.uint32) for a, b in zip(b1, b2, strict=True)]


def fold_in(k: np.ndarray, data: int) -> np.ndarray:
    """jax.random.fold_in(k, data) for 0 <= data < 2**32: the hash of the pair (0, data)."""
    b1, b2 = threefry2x32(k, np.zeros(1, np.uint32), np.array([data], np.uint32))
    return np.array([b1[0], b2[0]], np.uint32)


def bits(k: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """jax.random.bits(k, shape, uint32)."""
    b1, b2 = threefry2x32(k, *_counts(int(np.prod(shape))))
    return (b1 ^ b2).reshape(shape)


def glorot_uniform(k: np.ndarray, fan_in: int, fan_out: int) -> np.ndarray:
    """jax.nn.initializers.glorot_uniform()(k, (fan_in, fan_out), float32): uniform on [-1, 1)
    from the top 23 bits, times sqrt(3 · variance), in float32 as JAX rounds it. Each step is
    one correctly rounded float32 operation (u·2 is exact), so no fused multiply-add can
    change it."""
    one = np.float32(1.0)
    mantissa = (bits(k, (fan_in, fan_out)) >> np.uint32(9)) | one.view(np.uint32)
    floats = mantissa.view(np.float32) - one
    u = np.maximum(np.float32(-1.0), floats * np.float32(2.0) + np.float32(-1.0))
    variance = np.float32(1.0 / ((fan_in + fan_out) / 2))
    return u * np.sqrt(np.float32(3) * variance)
