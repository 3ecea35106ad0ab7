"""Engine variants A/B, in one process, interleaved: steady epochs of the tutorial's model on full
MNIST, each variant an EngineSettings (and optionally other TrainConfig fields).

    python -m bench.step_ab [--rounds N] VARIANT VARIANT ...
    VARIANT = name[:field=value,...]   fields of EngineSettings (unroll, split_rows, host_gather,
                                       mask_block; default unroll=2, host_gather=1, split_rows
                                       from --split)
                                       or of TrainConfig (optimizer, momentum, ...)

    NPROC=1 python -m bench.step_ab --split 740 xla-gather:host_gather=0 host-gather:host_gather=1
    python -m bench.step_ab --dropout 0.2 per-step:mask_block=0 blocks:mask_block=64

Every variant first trains one epoch (compiling) and reports whether its weights equal the first
variant's bit for bit; then each round trains one epoch of every variant, the order rotated
round by round so that load from other processes hits all alike. Printed: each variant's median
and best epoch (wall and process CPU seconds) and the first variant's time over its, paired by
round (median of the per-round ratios). XLA's flags are digitnet's CLI defaults (runtime.
set_cpu_threading without a stored choice) unless XLA_FLAGS or NPROC say otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import fields
from typing import Any


def parse_variant(text: str, split: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    from digitnet.engine import EngineSettings

    name, _, spec = text.partition(":")
    engine_fields = {f.name for f in fields(EngineSettings)}
    settings: dict[str, Any] = {"unroll": 2, "split_rows": split, "host_gather": True}
    config: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        parsed: Any = value
        for kind in (int, float):
            try:
                parsed = kind(value)
                break
            except ValueError:
                continue
        (settings if key in engine_fields else config)[key] = parsed
    for f in fields(EngineSettings):
        if isinstance(f.default, bool) and f.name in settings:
            settings[f.name] = bool(settings[f.name])
    return name, settings, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--split", type=int, default=0, help="split_rows for every variant (default 0)")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer")
    ap.add_argument("--input-dropout", type=float, default=0.0, help="dropout on the inputs")
    args = ap.parse_args()

    from digitnet.runtime import set_cpu_threading

    set_cpu_threading()
    import jax
    import numpy as np

    import digitnet
    from digitnet.engine import EngineSettings
    from digitnet.model import MLPSpec, preprocess_stats
    from digitnet.train import TrainConfig, fit_arrays

    ds = digitnet.load_dataset()
    spec = MLPSpec(dropout=args.dropout, input_dropout=args.input_dropout)
    stats = preprocess_stats(spec, ds.x_train)
    variants = [parse_variant(v, args.split) for v in args.variants]

    def epoch(settings: dict[str, Any], config: dict[str, Any]) -> tuple[float, float, Any]:
        cfg = TrainConfig(epochs=1, validation="none", **config)
        wall, cpu = time.perf_counter(), time.process_time()
        state = fit_arrays(spec, cfg, ds.x_train, ds.y_train, stats, settings=EngineSettings(**settings))
        jax.block_until_ready(state.params)
        return time.perf_counter() - wall, time.process_time() - cpu, state.params

    print(f"# {jax.devices()[0].device_kind}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"NPROC={os.environ.get('NPROC', 'unset')}; load average {os.getloadavg()[0]:.2f} at the start")
    first = None
    for name, settings, config in variants:
        params = [np.asarray(v) for v in jax.tree.leaves(epoch(settings, config)[2])]
        first = first if first is not None else params
        same = all(np.array_equal(a, b) for a, b in zip(first, params, strict=True))
        print(f"{name}: {settings} {config}: weights after one epoch "
              f"{'identical to' if same else 'DIFFER from'} {variants[0][0]}'s")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        k = r % len(variants)
        for name, settings, config in variants[k:] + variants[:k]:
            wall, cpu, _ = epoch(settings, config)
            times[name].append((wall, cpu))
    base = variants[0][0]
    print(f"\n{args.rounds} rounds; load average {os.getloadavg()[0]:.2f} at the end\n")
    print(f"| variant | median epoch s | best epoch s | median CPU s | {base} ÷ this, wall (paired) "
          f"| {base} ÷ this, CPU (paired) |\n|---|---|---|---|---|---|")
    for name, runs in times.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        ratio_w = statistics.median(b[0] / t[0] for b, t in zip(times[base], runs, strict=True))
        ratio_c = statistics.median(b[1] / t[1] for b, t in zip(times[base], runs, strict=True))
        print(f"| {name} | {statistics.median(walls):.3f} | {min(walls):.3f} | "
              f"{statistics.median(cpus):.3f} | {ratio_w:.3f} | {ratio_c:.3f} |")


if __name__ == "__main__":
    main()
