"""The floor: the time of one epoch's matrix products alone, for the tutorial's config.

One training step of a 784-64-64-10 MLP at batch 32 is eight matrix products: three forward
(x·W1, h1·W2, h2·W3) and five backward (h2ᵀ·g3, g3·W3ᵀ, h1ᵀ·g2, g2·W2ᵀ, xᵀ·g1; no gradient
for the input). An epoch is 1875 such steps. Anything a trainer does beyond these products
(activations, softmax, the optimizer, shuffling) is overhead above this floor.

Run as `python -m bench.floor [numpy|xla [repeats]]`: prints one JSON line; `python -m
bench.floor products`: each product alone, XLA's against NumPy's (product_table). Threads must be fixed before
NumPy loads its BLAS, so the bench runs this module in a fresh process per thread count.
"""

from __future__ import annotations

import json
import os
import sys
import time

SIZES = (784, 64, 64, 10)
BATCH = 32
STEPS = 1875  # 60000 / 32


def operands(steps: int = STEPS, seed: int = 0):
    """Random float32 operands of the right shapes; the values do not change BLAS timings."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps * BATCH, SIZES[0]), dtype=np.float32)
    w = [rng.standard_normal((a, b), dtype=np.float32) * 0.05 for a, b in zip(SIZES, SIZES[1:], strict=False)]
    return x, w


def numpy_epoch_seconds(repeats: int = 3, steps: int = STEPS,
                        cpu: list[float] | None = None) -> list[float]:
    """Seconds per epoch (of `steps` steps) of the eight products through NumPy's BLAS, into
    preallocated outputs; process CPU seconds per epoch are appended to `cpu` if given."""
    import numpy as np

    x, (w1, w2, w3) = operands(steps)
    d0, d1, d2, d3 = SIZES
    h1, h2, z = (np.empty((BATCH, d), np.float32) for d in (d1, d2, d3))
    dh2, dh1 = np.empty((BATCH, d2), np.float32), np.empty((BATCH, d1), np.float32)
    dw1, dw2, dw3 = (np.empty_like(w) for w in (w1, w2, w3))
    w2t, w3t = w2.T, w3.T
    out = []
    for i in range(repeats + 1):  # the first pass warms caches and BLAS' thread pool
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(steps):
            xb = x[s * BATCH:(s + 1) * BATCH]
            np.matmul(xb, w1, out=h1)
            np.matmul(h1, w2, out=h2)
            np.matmul(h2, w3, out=z)
            # z, h2 and h1 stand in for the gradients g3, g2, g1: same shapes, same cost.
            np.matmul(h2.T, z, out=dw3)
            np.matmul(z, w3t, out=dh2)
            np.matmul(h1.T, dh2, out=dw2)
            np.matmul(dh2, w2t, out=dh1)
            np.matmul(xb.T, dh1, out=dw1)
        out.append(time.perf_counter() - t0)
        if cpu is not None and i:
            cpu.append(time.process_time() - c0)
    return out[1:]


def xla_epoch_seconds(repeats: int = 3, steps: int = STEPS,
                      cpu: list[float] | None = None, unroll: int = 1) -> list[float]:
    """Seconds per epoch of the same eight products compiled by XLA in one lax.scan, with a
    plain SGD update so that the loop carries a dependence from step to step (else XLA may
    hoist or drop the products)."""
    import jax
    import jax.numpy as jnp

    x, w = operands(steps)
    x = jax.device_put(x)

    @jax.jit
    def epoch(x, w1, w2, w3):
        def step(ws, s):
            w1, w2, w3 = ws
            xb = jax.lax.dynamic_slice_in_dim(x, s * BATCH, BATCH)
            h1 = xb @ w1
            h2 = h1 @ w2
            z = h2 @ w3
            dw3 = h2.T @ z
            dh2 = z @ w3.T
            dw2 = h1.T @ dh2
            dh1 = dh2 @ w2.T
            dw1 = xb.T @ dh1
            return (w1 - 1e-6 * dw1, w2 - 1e-6 * dw2, w3 - 1e-6 * dw3), None

        return jax.lax.scan(step, (w1, w2, w3), jnp.arange(steps), unroll=unroll)[0]

    ws = [jax.device_put(a) for a in w]
    jax.block_until_ready(epoch(x, *ws))
    out = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(epoch(x, *ws))
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return out


def product_table(repeats: int = 7, calls: int = 500) -> dict[str, dict[str, float]]:
    """Per product of a step, CPU µs per call: XLA's (N calls in one compiled loop, each on an
    input that depends on the loop, so none is hoisted) against NumPy's BLAS. The threads are
    the process's: XLA's pool from NPROC, BLAS from OPENBLAS_NUM_THREADS. The best of
    `repeats` runs, as a busy machine only adds time."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0]), dtype=np.float32)
    w = rng.standard_normal(SIZES[:2], dtype=np.float32)
    g = rng.standard_normal((BATCH, SIZES[1]), dtype=np.float32)
    cases = {"x·W1 (forward)": (lambda a, b: a @ b, x, w),
             "xᵀ·g1 (first kernel's gradient)": (lambda a, b: a.T @ b, x, g),
             "g1·W1ᵀ": (lambda a, b: a @ b.T, g, w)}
    out = {}
    for name, (f, a, b) in cases.items():
        def loop(a, b, f=f):
            def body(i, acc):
                return acc + f(a + acc * 0.0, b)[0, 0] * 1e-9
            return jax.lax.fori_loop(0, calls, body, jnp.float32(0))

        compiled, da, db = jax.jit(loop), jnp.asarray(a), jnp.asarray(b)
        compiled(da, db).block_until_ready()
        xla, blas = [], []
        for _ in range(repeats):
            c = time.process_time()
            compiled(da, db).block_until_ready()
            xla.append((time.process_time() - c) / calls * 1e6)
            c = time.process_time()
            for _ in range(calls):
                f(a, b)
            blas.append((time.process_time() - c) / calls * 1e6)
        out[name] = {"xla_us": min(xla), "numpy_us": min(blas), "ratio": min(xla) / min(blas)}
    return out


def main(argv: list[str]) -> None:
    which = argv[0] if argv else "numpy"
    if which == "products":  # python -m bench.floor products (NPROC, OPENBLAS_NUM_THREADS apply)
        print(json.dumps({"nproc": os.environ.get("NPROC"), "products": product_table()}))
        return
    repeats = int(argv[1]) if len(argv) > 1 else 3
    fn = numpy_epoch_seconds if which == "numpy" else xla_epoch_seconds
    cpu: list[float] = []
    wall = fn(repeats, cpu=cpu)
    print(json.dumps({"which": which, "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                      "seconds": wall, "cpu_seconds": cpu}))


if __name__ == "__main__":
    main(sys.argv[1:])
