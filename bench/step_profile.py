"""Where a training step's time goes on this CPU: a per-op profile of the compiled step.

    python -m bench.step_profile [unroll [split_rows]] > bench/results/cpu-step-profile.txt

Without arguments, the settings `digitnet train` runs with on this machine: its XLA threading,
unroll and gradient split (`digitnet calibrate`'s choice, else the defaults), each chunk's
examples gathered on the host.

Trains one tutorial epoch (784-64-64-10, Adam, batch 32) under jax.profiler with XLA's per-thunk
trace events on (`--xla_cpu_enable_xprof_traceme=true`, on top of digitnet's own XLA flags), reads
the trace back (jaxlib's ProfileData) and sums each compiled op's time: the products (dots, the
floor's work), XLA's element-wise fusions (bias, ReLU, softmax, Adam) and the rest. The profiler's
buffer keeps only part of an epoch's ~200k events, so shares are what to read here, not totals;
the tracing itself slows each op down, more so for small ones.
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile
import time
from dataclasses import replace


def category(name: str) -> str:
    if name.startswith("dot"):
        return "matrix products (dot)"
    if name.startswith("ynn_fusion"):
        return "YNNPACK fusions (small products + element-wise)"
    if "fusion" in name:
        return "XLA element-wise fusions"
    return "other (" + name.split(".")[0] + ")"


def main(unroll: int | None = None, split_rows: int | None = None) -> None:
    from digitnet.runtime import set_cpu_threading
    from digitnet.spec import MLPSpec
    from digitnet.trainconfig import TrainConfig

    spec, cfg = MLPSpec(), TrainConfig(epochs=1, validation="none")
    # The threading `digitnet train` gets on this machine (its calibrated choice, if any).
    set_cpu_threading(spec.sizes, cfg.batch_size)
    os.environ["XLA_FLAGS"] += " --xla_cpu_enable_xprof_traceme=true"
    import jax
    from jax._src.lib import _profile_data

    import digitnet
    from digitnet.engine import EngineSettings
    from digitnet.model import preprocess_stats
    from digitnet.train import fit_arrays

    ds = digitnet.load_dataset()
    stats = preprocess_stats(spec, ds.x_train)
    # The engine's settings for this machine (as fit uses them: on a CPU, each chunk's examples
    # gathered on the host), with the unroll and split asked for.
    settings = EngineSettings.default(spec.sizes, cfg.batch_size)
    settings = replace(settings, unroll=unroll or settings.unroll,
                       split_rows=settings.split_rows if split_rows is None else split_rows)
    unroll, split_rows = settings.unroll, settings.split_rows
    fit_arrays(spec, cfg, ds.x_train, ds.y_train, stats, settings=settings)  # compiles
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            fit_arrays(spec, cfg, ds.x_train, ds.y_train, stats, settings=settings)
        path = sorted(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True))[-1]
        profile = _profile_data.ProfileData.from_file(path)
    total: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name and "PjRtCpuClient" not in line.name:
                continue
            for ev in line.events:
                if ev.name.startswith(("ThunkExecutor", "while", "end: ", "ThreadpoolListener")):
                    continue
                total[ev.name] += ev.duration_ns
                count[ev.name] += 1
    everything = sum(total.values())
    shares: collections.Counter[str] = collections.Counter()
    for name, ns in total.items():
        shares[category(name)] += ns
    from digitnet.tuning import machine, simd_flags

    m = machine()
    print(f"# python -m bench.step_profile {' '.join(sys.argv[1:])} "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}), {m['cpu']} "
          f"({m.get('cpu_id')}), {m['cores']} cores, flags: {' '.join(simd_flags(m))}")
    print(f"# one tutorial epoch, {unroll} steps per loop iteration, gradient split {split_rows}, "
          f"NPROC={os.environ.get('NPROC', 'unset')}; load average "
          f"{os.getloadavg()[0]:.1f}; {sum(count.values())} op events traced")
    print("\n| share of traced op time | % |\n|---|---|")
    for name, ns in shares.most_common():
        print(f"| {name} | {100 * ns / everything:.1f} |")
    print("\n| op (XLA's name) | % | events | mean µs |\n|---|---|---|---|")
    for name, ns in total.most_common(25):
        print(f"| {name} | {100 * ns / everything:.1f} | {count[name]} | {ns / count[name] / 1e3:.1f} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
