"""Claims: training K models of the same shapes as one population (digitnet.population) costs
less per model than training them one by one; 8 tutorial seeds take at most 3× the wall time
of one `digitnet train`; the tutorial's sweep runs at least 2× faster than before populations.

`python -m bench.population [--parts kscan,seeds,sweep] [--ks 1,2,4,8,16] [--rounds 2]
[--baseline-src DIR]` writes bench/results/population.json (merging the parts it ran) and
prints Markdown for docs/performance.md.

- kscan: in this process, the tutorial's model (784-64-64-10, Adam, batch 32, full MNIST) as a
  population of K members, two epochs; the second epoch's wall and CPU seconds per model-epoch
  (the first one compiles).
- seeds: `digitnet train --quiet` against `digitnet train --seeds 1-8 --quiet`, process start to
  saved model, after one warm-up of each (the compilation cache is warm), alternating.
- sweep: examples/sweeps/tutorial.toml (35 trials) in one process and with --workers 2, with
  this code and with the code in --baseline-src (before populations), alternating; test
  accuracy mean ± std per point must agree within noise.
The load average is recorded with each measurement: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "population.json"
SWEEP = ROOT / "examples" / "sweeps" / "tutorial.toml"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def kscan(ks: list[int]) -> list[dict]:
    from digitnet.runtime import enable_compile_cache, set_cpu_threading

    set_cpu_threading()
    import jax

    from digitnet.callbacks import Callback
    from digitnet.data.datasets import load_dataset
    from digitnet.model import MLPSpec, preprocess_stats
    from digitnet.population import Member, fit_population
    from digitnet.train import TrainConfig

    enable_compile_cache()
    ds = load_dataset("mnist")
    spec = MLPSpec()
    stats = preprocess_stats(spec, ds.x_train)

    class Clock(Callback):
        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch: int) -> None:
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_epoch_end(self, state, logs) -> None:
            self.marks.append((time.perf_counter(), time.process_time()))

    rows = []
    for k in ks:
        clock = Clock()
        members = [Member(spec, TrainConfig(epochs=2, validation="none", seed=s), stats,
                          callbacks=[clock] if s == 0 else ()) for s in range(k)]
        start_load = load()
        t0 = time.perf_counter()
        fit_population(members, ds.x_train, ds.y_train, parts=k)
        total = time.perf_counter() - t0
        (w0, c0), (w1, c1), (w2, c2), (w3, c3) = clock.marks
        rows.append({"k": k, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                     "epoch_wall": round(w3 - w2, 3), "epoch_cpu": round(c3 - c2, 3),
                     "model_epoch_wall": round((w3 - w2) / k, 4),
                     "model_epoch_cpu": round((c3 - c2) / k, 4),
                     "first_epoch_wall": round(w1 - w0, 3), "total_wall": round(total, 3),
                     "load": [start_load, load()]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def timed(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start_load = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": round(wall, 3), "cpu": round(cpu, 3), "load": [start_load, load()],
            "stdout": proc.stdout[-600:]}


def seeds(rounds: int) -> dict:
    dn = [sys.executable, "-m", "digitnet", "train", "--quiet"]
    runs: dict[str, list[dict]] = {"one train": [], "train --seeds 1-8": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):  # round 0 warms the compilation cache
            for name, extra in (("one train", []), ("train --seeds 1-8", ["--seeds", "1-8"])):
                got = timed([*dn, *extra, "--out", f"{tmp}/{r}-{len(extra)}"])
                print(name, r, {k: v for k, v in got.items() if k != "stdout"}, flush=True)
                if r:
                    runs[name].append(got)
    one = statistics.median(x["wall"] for x in runs["one train"])
    eight = statistics.median(x["wall"] for x in runs["train --seeds 1-8"])
    return {"runs": runs, "median_wall": {"one train": one, "train --seeds 1-8": eight},
            "ratio": round(eight / one, 3)}


def point_stats(out: Path) -> dict[str, list[float]]:
    trials = json.loads((out / "results.json").read_text())["trials"]
    points: dict[str, list[float]] = {}
    for t in trials:
        key = json.dumps({k: v for k, v in t["options"].items() if k != "seed"}, sort_keys=True)
        points.setdefault(key, []).append(t["metrics"]["test_accuracy"])
    return {k: [round(statistics.fmean(v), 5), round(statistics.stdev(v), 5)]
            for k, v in sorted(points.items())}


def sweep(rounds: int, baseline_src: str | None) -> dict:
    ways = {"populations, one process": (str(ROOT / "src"), 1),
            "populations, --workers 2": (str(ROOT / "src"), 2)}
    if baseline_src:
        ways = {"before, one process": (baseline_src, 1),
                "before, --workers 2": (baseline_src, 2), **ways}
    res: dict[str, list[dict]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for src in dict.fromkeys(src for src, _ in ways.values()):  # warm the compilation cache
            timed([sys.executable, "-m", "digitnet", "sweep", str(SWEEP), "--out", f"{tmp}/warm",
                   "--quiet"], {"PYTHONPATH": src})
            shutil.rmtree(f"{tmp}/warm")
        for r in range(rounds):
            for i, (name, (src, workers)) in enumerate(ways.items()):
                out = Path(tmp) / f"{r}-{i}"
                got = timed([sys.executable, "-m", "digitnet", "sweep", str(SWEEP), "--out", str(out),
                             "--workers", str(workers), "--quiet"], {"PYTHONPATH": src})
                got["points"] = point_stats(out)
                print(name, r, got["wall"], got["cpu"], got["load"], flush=True)
                res[name].append(got)
    med = {w: statistics.median(x["wall"] for x in runs) for w, runs in res.items()}
    out = {"runs": res, "median_wall": med}
    before = [v for w, v in med.items() if w.startswith("before")]
    if before:
        out["speedup_vs_faster_before"] = round(min(before) / min(
            v for w, v in med.items() if w.startswith("populations")), 3)
    return out


def render(doc: dict) -> str:
    """The Markdown of docs/performance.md's population section, from population.json."""
    out = ["## Populations: many models in one program (bench/population.py)", ""]
    if "kscan" in doc:
        ks = doc["kscan"]
        out += [f"`{ks['command']}` ({ks['started']}, {ks['cores']} cores): the tutorial's model "
                "as a population of K members on full MNIST; the second of two epochs (the first "
                "compiles); load = 1-minute load average before and after each K.", "",
                "| K | s per model-epoch | CPU s per model-epoch | population epoch s | first epoch s "
                "(compiles) | load |", "|---|---|---|---|---|---|"]
        out += [f"| {r['k']} | {r['model_epoch_wall']:.3f} | {r['model_epoch_cpu']:.3f} | "
                f"{r['epoch_wall']:.2f} | {r['first_epoch_wall']:.1f} | {r['load'][0]}–{r['load'][1]} |"
                for r in ks["rows"]]
        out.append("")
    if "seeds" in doc:
        sd = doc["seeds"]
        out += [f"`{sd['command']}` ({sd['started']}): process start to saved model, warm "
                "compilation cache; each command once to warm up, then alternating.", "",
                "| command | wall s | CPU s | load |", "|---|---|---|---|"]
        for name, runs in sd["runs"].items():
            for r in runs:
                cmd = "train" if name == "one train" else name
                out.append(f"| `digitnet {cmd} --quiet` | {r['wall']:.1f} | {r['cpu']:.1f} | "
                           f"{r['load'][0]}–{r['load'][1]} |")
        out += ["", f"8 seeds ÷ one run, wall (medians): **{sd['ratio']:.2f}×** (target ≤ 3×).", ""]
    if "sweep" in doc:
        sw = doc["sweep"]
        out += [f"`{sw['command']}` ({sw['started']}): examples/sweeps/tutorial.toml, 35 trials, "
                "warm compilation cache; 'before' is the code before populations (--baseline-src), "
                "each trial its own run.", "",
                "| way | wall s | CPU s (all processes) | load |", "|---|---|---|---|"]
        for name, runs in sw["runs"].items():
            for r in runs:
                out.append(f"| {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['load'][0]}–{r['load'][1]} |")
        if "speedup_vs_faster_before" in sw:
            out += ["", "Faster way before ÷ faster way with populations, wall (medians): "
                    f"**{sw['speedup_vs_faster_before']:.2f}×** (target ≥ 2×).", ""]
        if "note" in sw:
            out += ["", f"Note: {sw['note']}.", ""]
        first = {name: runs[0]["points"] for name, runs in sw["runs"].items() if "points" in runs[0]}
        names = list(first)
        if not names:
            return "\n".join(out)
        out += ["Test accuracy mean ± std over the 5 seeds of each point:", "",
                "| point | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for key in first[names[0]]:
            opts = json.loads(key)
            label = ", ".join(f"{k}={opts[k]}" for k in ("lr", "epochs", "batch_size", "hidden",
                                                          "activation", "dropout") if k in opts)
            out.append(f"| {label} | " + " | ".join(
                f"{first[n][key][0]:.4f} ± {first[n][key][1]:.4f}" if key in first[n] else "—"
                for n in names) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="kscan,seeds,sweep")
    ap.add_argument("--ks", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline-src", help="src/ of digitnet before populations (for sweep)")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the Markdown section and exit")
    args = ap.parse_args()
    path = Path(args.results)
    doc = json.loads(path.read_text()) if path.exists() else {}
    if args.render:
        print(render(doc))
        return
    meta = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
            "command": " ".join(["python -m bench.population", *sys.argv[1:]])}
    parts = args.parts.split(",")
    if "kscan" in parts:
        doc["kscan"] = {**meta, "rows": kscan([int(k) for k in args.ks.split(",")])}
    if "seeds" in parts:
        doc["seeds"] = {**meta, **seeds(args.rounds)}
    if "sweep" in parts:
        doc["sweep"] = {**meta, **sweep(args.rounds, args.baseline_src)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
