"""`digitnet train`'s cold start, measured: where its seconds go, and A/B between two source
trees on a shared machine.

    python -m bench.cold_start phases            # one cold run in-process, phase by phase (JSON)
    python -m bench.cold_start timeline [SRC]    # the CLI cold, then warm: a table of its phases
    python -m bench.cold_start ab SRC_A SRC_B 5  # the CLI, cold, alternating A and B, 5 pairs

"Cold" means an empty compilation cache; the unpacked dataset cache (digitnet.data.datasets)
is kept, as after any earlier run, and so is this machine's `digitnet calibrate` choice.
`phases` mirrors cmd_train: import (digitnet.api: JAX,
Optax; the CPU backend started), data (load + verification), fit (compiling and training; the
compile seconds are JAX's own backend-compile events, summed over threads, so they may overlap
training), evaluation, save. `ab` reports each side's wall and CPU seconds per run: pairs run
back to back, so that load from other processes hits both alike. `timeline` runs the CLI with
DIGITNET_TRACE_PHASES=1 (digitnet/cli/trace.py): wall and CPU seconds from one mark to the
next, from the process' start (the Popen call) to its exit as this process sees it; "exit" is
the interpreter's teardown after the last atexit handler. JAX's compile steps are listed below
the phases with the thread that ran them (they overlap the phases they fall in).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import Result, run


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
        traced(src_a, home, Path(home) / "unpack")  # the data unpacked once, for both sides
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


def traced(src: str, home: str, out: Path) -> tuple[Result, float, list[dict]]:
    """One `digitnet train --quiet` with its trace: (result, spawn time, trace records)."""
    t_spawn = time.time()
    r = run([sys.executable, "-m", "digitnet", "train", "--quiet", "--out", str(out)],
            env={"PYTHONPATH": src, "DIGITNET_HOME": home, "DIGITNET_TRACE_PHASES": "1"})
    if r.returncode:
        raise RuntimeError(r.stderr[-1000:])
    records = [json.loads(line.split(" ", 1)[1]) for line in r.stderr.splitlines()
               if line.startswith("digitnet-trace ")]
    return r, t_spawn, records


def timeline_rows(r: Result, t_spawn: float, records: list[dict]) -> list[tuple[str, float, float, float]]:
    """(phase, ends at s, wall s, CPU s) from the process' start to its exit."""
    rows, t, cpu = [], t_spawn, 0.0
    for rec in records:
        if "mark" in rec:
            rows.append((rec["mark"], rec["t"] - t_spawn, rec["t"] - t, rec["cpu"] - cpu))
            t, cpu = rec["t"], rec["cpu"]
    rows.append(("exit (interpreter teardown)", r.wall, t_spawn + r.wall - t, r.cpu - cpu))
    return rows


def timeline(src: str) -> dict:
    """The CLI cold (empty compile cache; data cached by a first, untimed run), then warm."""
    from bench.cli_run import new_home

    home = new_home(tempfile.mkdtemp(prefix="digitnet-timeline-"))
    result: dict[str, dict] = {}
    try:
        traced(src, home, Path(home) / "run-0")  # unpacks the data into the home
        for i, kind in enumerate(("cold", "warm"), 1):
            if kind == "cold":
                import shutil

                shutil.rmtree(Path(home) / "jax-cache", ignore_errors=True)
            r, t_spawn, records = traced(src, home, Path(home) / f"run-{i}")
            rows = timeline_rows(r, t_spawn, records)
            spans = [(rec["span"], rec["fun"], rec["t0"] - t_spawn, rec["t"] - rec["t0"], rec["thread"])
                     for rec in records if "span" in rec]
            result[kind] = {"wall": r.wall, "cpu": r.cpu, "phases": rows, "compile_steps": spans}
            print(f"\n{kind}: {r.wall:.2f} s wall, {r.cpu:.2f} s CPU ({r.stdout.splitlines()[0]})",
                  file=sys.stderr)
            print(f"  {'phase':36s} {'ends at':>8s} {'wall':>7s} {'CPU':>7s}", file=sys.stderr)
            for name, end, wall, cpu in rows:
                print(f"  {name:36s} {end:8.3f} {wall:7.3f} {cpu:7.3f}", file=sys.stderr)
            for step, fun, start, secs, thread in spans:
                if secs >= 0.005:
                    print(f"    {step:28s} {fun:28s} at {start:6.3f} {secs:6.3f} s  ({thread})",
                          file=sys.stderr)
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    result["load"] = os.getloadavg()
    return result


if __name__ == "__main__":
    if sys.argv[1] == "phases":
        print(json.dumps(phases()))
    elif sys.argv[1] == "timeline":
        default = str(Path(__file__).resolve().parents[1] / "src")
        print(json.dumps(timeline(sys.argv[2] if len(sys.argv) > 2 else default)))
    else:
        print(json.dumps(ab(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
