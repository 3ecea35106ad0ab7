"""Engine levers, each measured against the same baseline in the same run.

A lever is a variant of the training step (loss form, optimizer-state layout, matmul layout,
chunk length) or of XLA's settings (threads, fusion flags). `python -m bench.levers NAME`
trains the tutorial's config with that variant in this process and prints one JSON line;
`run_levers` runs every variant in its own process (XLA reads its flags once, at start-up),
round-robin, so that a busy spell on the machine hits all variants alike.

The step here is a compact re-statement of digitnet.train.Engine._train_chunk, so that the
variants can sit side by side; `engine` is the real engine, as shipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from digitnet.runtime import CPU_FLAGS

# digitnet's CLI adds both to XLA_FLAGS; each is also a lever of its own below.
SINGLE_THREAD, NO_CONCURRENT_SCHEDULER = CPU_FLAGS
DIGITNET_FLAGS = " ".join(CPU_FLAGS)

# name: (code options, XLA_FLAGS). "base" is the engine as the core issue left it.
VARIANTS: dict[str, tuple[dict, str]] = {
    "base": ({}, ""),
    "single-thread": ({}, SINGLE_THREAD),
    "sequential-scheduler": ({}, NO_CONCURRENT_SCHEDULER),
    "onehot-loss": ({"loss": "onehot"}, ""),
    "fused-adam": ({"opt": "fused"}, ""),
    "flat-adam": ({"opt": "flat"}, ""),
    "out-in-layout": ({"layout": "out_in"}, ""),
    "one-chunk-per-epoch": ({"chunks": 1}, ""),
    "no-donation": ({"donate": False}, ""),
    "scan-unroll-4": ({"unroll": 4}, ""),
    "read-loss-once-per-epoch": ({"sync": "epoch"}, ""),
    "engine": ({"engine": True}, DIGITNET_FLAGS),
    "engine-one-xla-thread": ({"engine": True}, DIGITNET_FLAGS),
    "engine-unroll-1": ({"engine": True, "unroll": 1}, DIGITNET_FLAGS),
}
# Environment beyond XLA_FLAGS, per variant.
VARIANT_ENV: dict[str, dict[str, str]] = {"engine-one-xla-thread": {"NPROC": "1"}}

DESCRIPTIONS = [
    "- `base`: the engine as the core issue wrote it: optax.adam over the params pytree, loss by"
    " gather (take_along_axis), Keras' (in, out) kernels, 20 compiled chunks per epoch, params"
    " and optimizer state donated, the loss read back after each chunk; XLA's default threads.",
    "- `single-thread`: XLA's dots on the calling thread (`--xla_cpu_multi_thread_eigen=false`).",
    "- `sequential-scheduler`: XLA schedules the step's ops for a short sequence rather than"
    " for running independent ops at once (`--xla_cpu_enable_concurrency_optimized_scheduler"
    "=false`).",
    "- `onehot-loss`: cross-entropy as −Σ one_hot·log_softmax (its gradient is a fused"
    " elementwise op instead of a scatter).",
    "- `fused-adam`: Adam written as one elementwise expression per leaf (same arithmetic).",
    "- `flat-adam`: the optimizer state as one flat buffer (ravel_pytree), Adam on it.",
    "- `out-in-layout`: kernels stored (out, in) as PyTorch does, x·Wᵀ in the forward pass.",
    "- `one-chunk-per-epoch`: the whole epoch in one compiled call (no progress updates).",
    "- `scan-unroll-4`: lax.scan(unroll=4), four steps per loop iteration.",
    "- `no-donation`: params and optimizer state not donated to the compiled call.",
    "- `read-loss-once-per-epoch`: no host read between chunks.",
    "- `engine`: digitnet.train as shipped, with the XLA flags digitnet's CLI sets; its epochs"
    " also include what the variants above leave out of the timed region: the shuffle (two"
    " sorts of 60000 random keys; XLA took about 20 ms, so the keys come from JAX and the sorts"
    " run in NumPy in a thread, one epoch ahead, beside training), the"
    " accuracy count, per-step dropout keys and a check that the weights are finite (one"
    " compiled call; op by op it took about 15 ms an epoch).",
    "- `engine-one-xla-thread`: the engine with XLA's CPU client pool cut to one thread"
    " (`NPROC=1`; by default it has a thread per core and runs independent parts of a step side"
    " by side). What a sweep's worker processes use (digitnet.runtime.one_xla_thread).",
    "- `engine-unroll-1`: the engine with one training step per loop iteration (it runs two on a"
    " CPU: digitnet.train.SCAN_UNROLL).",
]

BATCH, EPOCH_STEPS = 32, 1875


def make_chunk(loss: str = "gather", opt: str = "optax", layout: str = "in_out",
               donate: bool = True, unroll: int = 1) -> Callable:
    """A jitted train_chunk(params, opt_state, x, y, order, start, *, steps) -> (params,
    opt_state, loss_sum) for the tutorial's 784-64-64-10 ReLU MLP with Adam 1e-3."""
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-7)

    def forward(params, xb):
        h = (xb.reshape(xb.shape[0], -1).astype(jnp.float32) - 127.5) * (1 / 255)
        for i, layer in enumerate(params):
            w = layer["kernel"]
            h = (h @ w if layout == "in_out" else h @ w.T) + layer["bias"]
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return h

    def loss_fn(params, xb, yb):
        logp = jax.nn.log_softmax(forward(params, xb))
        if loss == "onehot":
            per = -jnp.sum(logp * jax.nn.one_hot(yb, logp.shape[-1], dtype=logp.dtype), axis=-1)
        else:
            per = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        return per.mean(), per.sum()

    def adam_leaf(p, g, m, v, t):
        # The same arithmetic as optax.adam, written as one elementwise expression per leaf.
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mhat = m / (1 - 0.9**t)
        vhat = v / (1 - 0.999**t)
        return p - 1e-3 * mhat / (jnp.sqrt(vhat) + 1e-7), m, v

    def update(params, grads, state):
        if opt == "optax":
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        t, m, v = state
        t = t + 1
        tf = t.astype(jnp.float32)
        if opt == "flat":
            flat_p, unravel = jax.flatten_util.ravel_pytree(params)
            flat_g, _ = jax.flatten_util.ravel_pytree(grads)
            p, m, v = adam_leaf(flat_p, flat_g, m, v, tf)
            return unravel(p), (t, m, v)
        out = jax.tree.map(lambda p, g, m, v: adam_leaf(p, g, m, v, tf), params, grads, m, v)
        is_triple = lambda o: isinstance(o, tuple)  # noqa: E731
        pick = lambda k: jax.tree.map(lambda o: o[k], out, is_leaf=is_triple)  # noqa: E731
        return pick(0), (t, pick(1), pick(2))

    def init_state(params):
        if opt == "optax":
            return tx.init(params)
        # m and v must be distinct buffers: both are donated.
        zeros = [jax.tree.map(jnp.zeros_like, params) for _ in range(2)]
        if opt == "flat":
            zeros = [jax.flatten_util.ravel_pytree(z)[0] for z in zeros]
        return jnp.zeros((), jnp.int32), *zeros

    def chunk(params, state, x, y, order, start, *, steps):
        def step(carry, i):
            p, s, total = carry
            idx = jax.lax.dynamic_slice(order, (start + i * BATCH,), (BATCH,))
            (_, lsum), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, x[idx], y[idx])
            p, s = update(p, grads, s)
            return (p, s, total + lsum), None

        (params, state, total), _ = jax.lax.scan(
            step, (params, state, jnp.zeros((), jnp.float32)), jnp.arange(steps), unroll=unroll)
        return params, state, total

    import jax.flatten_util  # noqa: F401  (used by the flat variant)

    fn = jax.jit(chunk, static_argnames=("steps",), donate_argnums=(0, 1) if donate else ())
    fn.init_state = init_state
    return fn


def measure(options: dict, epochs: int = 3) -> dict:
    """Train the tutorial's config: one warm-up epoch (compiles), then `epochs` timed ones."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from digitnet.data.datasets import load_dataset
    from digitnet.model import MLPSpec, init_params

    ds = load_dataset()
    if options.get("engine"):
        return measure_engine(ds, epochs, options.get("unroll"))
    layout = options.get("layout", "in_out")
    fn = make_chunk(options.get("loss", "gather"), options.get("opt", "optax"), layout,
                    options.get("donate", True), options.get("unroll", 1))
    per_chunk_sync = options.get("sync", "chunk") == "chunk"
    params = init_params(MLPSpec(), jax.random.key(1))
    if layout == "out_in":
        params = [{"kernel": lyr["kernel"].T, "bias": lyr["bias"]} for lyr in params]
    state = fn.init_state(params)
    x, y = jax.device_put(ds.x_train), jax.device_put(ds.y_train)
    chunks = options.get("chunks", 20)
    per = EPOCH_STEPS // chunks
    key = jax.random.key(2)
    times, cpu, losses = [], [], []
    for epoch in range(epochs + 1):
        order = jax.random.permutation(jax.random.fold_in(key, epoch), len(ds.y_train))
        order = order.astype(jnp.int32)
        jax.block_until_ready(order)
        t0, c0 = time.perf_counter(), time.process_time()
        parts = []
        for c in range(chunks):
            params, state, loss = fn(params, state, x, y, order, c * per * BATCH, steps=per)
            parts.append(float(loss) if per_chunk_sync else loss)
        total = float(sum(parts))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        losses.append(total / (chunks * per * BATCH))
    return {"epoch_seconds": times[1:], "epoch_cpu_seconds": cpu[1:], "loss": losses[-1],
            "checksum": float(np.asarray(params[0]["kernel"]).sum())}


def measure_engine(ds, epochs: int, unroll: int | None = None) -> dict:
    """The real engine: digitnet.train.fit_arrays without validation, per-epoch seconds;
    `unroll` overrides its steps per loop iteration."""
    import jax
    import numpy as np

    from bench.digitnet_run import cpu_clock
    from digitnet import train
    from digitnet.model import MLPSpec, preprocess_stats
    from digitnet.train import TrainConfig, fit_arrays

    if unroll:
        train.SCAN_UNROLL[jax.default_backend()] = unroll
    spec = MLPSpec()
    cfg = TrainConfig(epochs=epochs + 1, validation="none")
    clock = cpu_clock()
    state = fit_arrays(spec, cfg, ds.x_train, ds.y_train, preprocess_stats(spec, ds.x_train),
                       callbacks=[clock])
    return {"epoch_seconds": [h["seconds"] for h in state.history[1:]],
            "epoch_cpu_seconds": clock.cpu[1:],
            "loss": state.history[-1]["loss"],
            "checksum": float(np.asarray(state.params[0]["kernel"]).sum())}


def run_levers(names: list[str] | None = None, rounds: int = 3, python: str = sys.executable,
               env: dict | None = None) -> dict[str, dict]:
    """Each variant in its own process, `rounds` times round-robin. Returns per variant the
    steady epoch seconds (the best of each process' timed epochs, one per round)."""
    names = names or list(VARIANTS)
    out: dict[str, dict] = {n: {"epoch_seconds": [], "epoch_cpu_seconds": [],
                                "flags": VARIANTS[n][1]} for n in names}
    for _ in range(rounds):
        for name in names:
            flags = VARIANTS[name][1]
            e = {**os.environ, **(env or {})}
            e["XLA_FLAGS"] = (e.get("XLA_FLAGS", "") + " " + flags).strip()
            e.update(VARIANT_ENV.get(name, {}))
            res = subprocess.run([python, "-m", "bench.levers", name], env=e, check=True,
                                 capture_output=True, text=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            out[name]["epoch_seconds"].append(min(r["epoch_seconds"]))
            out[name]["epoch_cpu_seconds"].append(min(r.get("epoch_cpu_seconds", [float("nan")])))
            out[name]["loss"] = r["loss"]
    return out


if __name__ == "__main__":
    print(json.dumps(measure(VARIANTS[sys.argv[1]][0])))
