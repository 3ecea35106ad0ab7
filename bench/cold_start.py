"""`digitnet train`'s cold start, measured: where its seconds go, and A/B between two source
trees on a shared machine.

    python -m bench.cold_start phases            # one cold run in-process, phase by phase (JSON)
    python -m bench.cold_start ab SRC_A SRC_B 5  # the CLI, cold, alternating A and B, 5 pairs

"Cold" means an empty compilation cache; the unpacked dataset cache (digitnet.data.datasets)
is kept, as after any earlier run, and so is this machine's `digitnet calibrate` choice.
`phases` mirrors cmd_train: import (digitnet.api: JAX,
Optax; the CPU backend started), data (load + verification), fit (compiling and training; the
compile seconds are JAX's own backend-compile events, summed over threads, so they may overlap
training), evaluation, save. `ab` reports each side's wall and CPU seconds per run: pairs run
back to back, so that load from other processes hits both alike.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import run


def phases() -> dict:
    from digitnet.runtime import set_cpu_threading
    from digitnet.spec import MLPSpec
    from digitnet.trainconfig import TrainConfig

    set_cpu_threading(MLPSpec().sizes, TrainConfig().batch_size)  # as `digitnet train` does
    out: dict[str, float] = {}
    clock = {"wall": time.perf_counter(), "cpu": time.process_time()}

    def mark(name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        out[name] = wall - clock["wall"]
        out[name + "_cpu"] = cpu - clock["cpu"]
        clock.update(wall=wall, cpu=cpu)

    from digitnet.data.datasets import prefetch

    prefetch("mnist")  # as cmd_train does
    import jax

    import digitnet.api as api

    jax.numpy.zeros(1).block_until_ready()
    compile_s: list[float] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compile_s.append(secs) if event.endswith("backend_compile_duration")
        else None)
    mark("import")
    ds = api.load_dataset("mnist")
    mark("data")
    with tempfile.TemporaryDirectory() as tmp:
        model = api.fit(dataset=ds, out=None, verbose=False)
        mark("fit")
        model.predict(ds.x_test)[:5]
        mark("first_five")
        model.save(Path(tmp) / "run")
        mark("save")
    out["compile_sum"] = sum(compile_s)
    out["test_accuracy"] = model.config["metrics"]["test_accuracy"]
    return out


def ab(src_a: str, src_b: str, pairs: int) -> dict:
    from bench.cli_run import new_home

    home = new_home(tempfile.mkdtemp(prefix="digitnet-cold-"))
    res: dict[str, list] = {"a": [], "b": []}
    try:
        for i in range(pairs):
            for side, src in (("a", src_a), ("b", src_b))[:: 1 if i % 2 == 0 else -1]:
                cache = Path(home) / "jax-cache"
                if cache.exists():
                    for f in cache.iterdir():
                        f.unlink()
                r = run([sys.executable, "-m", "digitnet", "train", "--quiet", "--out",
                         str(Path(home) / f"run-{side}-{i}")],
                        env={"PYTHONPATH": src, "DIGITNET_HOME": home})
                if r.returncode:
                    raise RuntimeError(r.stderr[-1000:])
                res[side].append({"wall": r.wall, "cpu": r.cpu, "out": r.stdout.splitlines()[0]})
                print(f"  {side} {r.wall:.2f} s wall {r.cpu:.2f} s CPU  {res[side][-1]['out']}",
                      file=sys.stderr, flush=True)
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    summary = {side: {k: statistics.median(r[k] for r in runs) for k in ("wall", "cpu")}
               for side, runs in res.items()}
    summary["b_over_a_paired_wall"] = statistics.median(
        b["wall"] / a["wall"] for a, b in zip(res["a"], res["b"], strict=True))
    summary["b_over_a_paired_cpu"] = statistics.median(
        b["cpu"] / a["cpu"] for a, b in zip(res["a"], res["b"], strict=True))
    return {"runs": res, "median": summary, "load": os.getloadavg()}


if __name__ == "__main__":
    if sys.argv[1] == "phases":
        print(json.dumps(phases()))
    else:
        print(json.dumps(ab(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
