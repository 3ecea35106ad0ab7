"""Engine levers, each measured against the same baseline in the same run.

A lever is a setting of the shipped engine (digitnet.engine: steps per loop iteration, chunks
per epoch) or of XLA's (threads, scheduler flags). `python -m bench.levers NAME` trains the
tutorial's config with that variant in this process and prints one JSON line; `run_levers`
runs every variant in its own process (XLA reads its flags once, at start-up), round-robin, so
that a busy spell on the machine hits all variants alike. Earlier re-statements of the step
(loss forms, Adam layouts) and their results are in bench/results and docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from digitnet.runtime import CPU_FLAGS

# digitnet's CLI adds both to XLA_FLAGS; leaving each out is a lever of its own below.
SINGLE_THREAD, NO_CONCURRENT_SCHEDULER = CPU_FLAGS
DIGITNET_FLAGS = " ".join(CPU_FLAGS)

# name: (engine options, XLA_FLAGS). "base" is the engine as the CLI runs it.
VARIANTS: dict[str, tuple[dict, str]] = {
    "base": ({}, DIGITNET_FLAGS),
    "xla-default-flags": ({}, ""),
    "multi-thread-eigen": ({}, NO_CONCURRENT_SCHEDULER),
    "concurrent-scheduler": ({}, SINGLE_THREAD),
    "one-xla-thread": ({}, DIGITNET_FLAGS),
    "unroll-1": ({"unroll": 1}, DIGITNET_FLAGS),
    "unroll-4": ({"unroll": 4}, DIGITNET_FLAGS),
    "one-chunk-per-epoch": ({"chunks": 1}, DIGITNET_FLAGS),
}
# Environment beyond XLA_FLAGS, per variant.
VARIANT_ENV: dict[str, dict[str, str]] = {"one-xla-thread": {"NPROC": "1"}}

DESCRIPTIONS = [
    "- `base`: digitnet.engine as shipped, with the XLA flags digitnet's CLI sets"
    " (single-threaded dots, the sequential scheduler); an epoch includes the shuffle, the"
    " accuracy count and the check that the weights are finite.",
    "- `xla-default-flags`: the engine with neither of digitnet's XLA CPU flags.",
    "- `multi-thread-eigen`: without `--xla_cpu_multi_thread_eigen=false` (XLA's dots may use"
    " Eigen's thread pool).",
    "- `concurrent-scheduler`: without `--xla_cpu_enable_concurrency_optimized_scheduler=false`.",
    "- `one-xla-thread`: XLA's CPU client pool cut to one thread (`NPROC=1`), what a sweep's"
    " worker processes use (digitnet.runtime.one_xla_thread).",
    "- `unroll-1`, `unroll-4`: EngineSettings(unroll=1 or 4) steps per loop iteration (the CPU"
    " default is digitnet.engine.DEFAULT_UNROLL's).",
    "- `one-chunk-per-epoch`: the whole epoch in one compiled call (no progress updates).",
]


def measure(options: dict, epochs: int = 3) -> dict:
    """The shipped engine (digitnet.train.fit_arrays, no validation) on the tutorial's config:
    one warm-up epoch (compiles), then `epochs` timed ones. options: "unroll" (engine
    settings), "chunks" (chunks per epoch)."""
    from dataclasses import replace

    import numpy as np

    from bench.digitnet_run import cpu_clock
    from digitnet.data.datasets import load_dataset
    from digitnet.engine import EngineSettings
    from digitnet.model import MLPSpec, preprocess_stats
    from digitnet.train import TrainConfig, fit_arrays

    ds = load_dataset()
    settings = EngineSettings.default()
    if "unroll" in options:
        settings = replace(settings, unroll=options["unroll"])
    spec = MLPSpec()
    cfg = TrainConfig(epochs=epochs + 1, validation="none",
                      chunks_per_epoch=options.get("chunks", TrainConfig.chunks_per_epoch))
    clock = cpu_clock()
    state = fit_arrays(spec, cfg, ds.x_train, ds.y_train, preprocess_stats(spec, ds.x_train),
                       callbacks=[clock], settings=settings)
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
