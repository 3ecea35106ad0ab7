"""Claims: training K models of the same shapes as one population (digitnet.population) costs
less per model than training them one by one; 8 tutorial seeds take at most 3× the wall time
of one `digitnet train`; the tutorial's sweep runs at least 2× faster than before populations.

`python -m bench.population [--parts kscan,seeds,sweep] [--ks 1,2,4,8,16] [--rounds 2]
[--baseline-src DIR]` writes bench/results/population.json (merging the parts it ran on this
machine: parts from another machine are dropped); `--write docs/performance.md` then writes its
section there, between markers that `python -m bench` keeps.

- kscan: in this process, the tutorial's model (784-64-64-10, Adam, batch 32, full MNIST) as a
  population of K members, two epochs; the second epoch's wall and CPU seconds per model-epoch
  (the first one compiles).
- seeds: `digitnet train --quiet` against `digitnet train --seeds 1-8 --quiet` (on a CPU of
  several cores: a worker process per core), on one XLA device, and in one process split into a
  device per core; process start to saved model, after one warm-up of each (the compilation
  cache is warm), alternating.
- sweep: examples/sweeps/tutorial.toml (35 trials) in one process and with --workers 2, with
  this code and with the code in --baseline-src (before populations), alternating; test
  accuracy mean ± std per point must agree within noise.
The load average is recorded with each measurement: the machine may be shared.

Each part's results are written to the results file as soon as that part (or, for the sweep,
each round) ends, and a part that fails or runs past --part-timeout is recorded under "errors"
without losing the others. `--sweep FILE --data-dir DIR --epochs N --ks 1,2` make a small run
that checks the bench itself in a minute or two.
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
ONE_DEVICE = "train --seeds 1-8, one device"
ONE_PROCESS = "train --seeds 1-8, one process"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def kscan(ks: list[int], data_dir: str | None = None, epochs: int = 2) -> list[dict]:
    from digitnet.runtime import enable_compile_cache, population_devices, set_cpu_threading
    from digitnet.spec import MLPSpec
    from digitnet.trainconfig import TrainConfig

    population_devices(max(ks))  # as `digitnet train --seeds` does
    set_cpu_threading(MLPSpec().sizes, TrainConfig().batch_size)  # the tutorial's shapes
    import jax

    from digitnet.callbacks import Callback
    from digitnet.data.datasets import load_dataset
    from digitnet.model import preprocess_stats
    from digitnet.population import Member, fit_population

    enable_compile_cache()
    ds = load_dataset("mnist", data_dir)
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
        members = [Member(spec, TrainConfig(epochs=epochs, validation="none", seed=s), stats,
                          callbacks=[clock] if s == 0 else ()) for s in range(k)]
        start_load = load()
        t0 = time.perf_counter()
        fit_population(members, ds.x_train, ds.y_train, parts=k)
        total = time.perf_counter() - t0
        (w0, c0), (w1, c1), (w2, c2), (w3, c3) = clock.marks[:2] + clock.marks[-2:]
        rows.append({"k": k, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                     "devices": min(k, len(jax.devices())),
                     "epoch_wall": round(w3 - w2, 3), "epoch_cpu": round(c3 - c2, 3),
                     "model_epoch_wall": round((w3 - w2) / k, 4),
                     "model_epoch_cpu": round((c3 - c2) / k, 4),
                     "first_epoch_wall": round(w1 - w0, 3), "total_wall": round(total, 3),
                     "load": [start_load, load()]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def timed(cmd: list[str], env: dict[str, str] | None = None, timeout: float | None = None) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start_load = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": round(wall, 3), "cpu": round(cpu, 3), "load": [start_load, load()],
            "stdout": proc.stdout[-600:]}


def seeds(rounds: int, extra_args: list[str], timeout: float | None) -> dict:
    dn = [sys.executable, "-m", "digitnet", "train", "--quiet", *extra_args]
    commands = {"one train": ([], {}), "train --seeds 1-8": (["--seeds", "1-8"], {}),
                # the same population on one XLA device (runtime.population_devices off)
                ONE_DEVICE: (["--seeds", "1-8"], {"DIGITNET_POPULATION_DEVICES": "1"}),
                # in one process split into a device per core (no worker processes)
                ONE_PROCESS: (["--seeds", "1-8"], {"DIGITNET_SEED_PROCESSES": "1"})}
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):  # round 0 warms the compilation cache
            for i, (name, (extra, env)) in enumerate(commands.items()):
                got = timed([*dn, *extra, "--out", f"{tmp}/{r}-{i}"], env, timeout=timeout)
                print(name, r, {k: v for k, v in got.items() if k != "stdout"}, flush=True)
                if r:
                    runs[name].append(got)
    med = {name: statistics.median(x["wall"] for x in got) for name, got in runs.items()}
    return {"runs": runs, "median_wall": med,
            "ratio": round(med["train --seeds 1-8"] / med["one train"], 3),
            "ratio_one_device": round(med[ONE_DEVICE] / med["one train"], 3),
            "ratio_one_process": round(med[ONE_PROCESS] / med["one train"], 3)}


def point_stats(out: Path) -> dict[str, list[float]]:
    trials = json.loads((out / "results.json").read_text())["trials"]
    points: dict[str, list[float]] = {}
    for t in trials:
        key = json.dumps({k: v for k, v in t["options"].items() if k != "seed"}, sort_keys=True)
        if t.get("status") == "complete":
            points.setdefault(key, []).append(t["metrics"]["test_accuracy"])
    return {k: [round(statistics.fmean(v), 5), round(statistics.stdev(v) if len(v) > 1 else 0.0, 5)]
            for k, v in sorted(points.items())}


def sweep(rounds: int, baseline_src: str | None, sweep_file: Path, extra_args: list[str],
          timeout: float | None, save) -> dict:
    ways = {"populations, one process": (str(ROOT / "src"), 1),
            "populations, --workers 2": (str(ROOT / "src"), 2)}
    if baseline_src:
        ways = {"before, one process": (baseline_src, 1),
                "before, --workers 2": (baseline_src, 2), **ways}
    res: dict[str, list[dict]] = {w: [] for w in ways}
    commit = None
    if baseline_src:  # which code 'before' is, when it is a git checkout
        got = subprocess.run(["git", "-C", baseline_src, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True)
        commit = got.stdout.strip() if got.returncode == 0 else None
    with tempfile.TemporaryDirectory() as tmp:
        for src in dict.fromkeys(src for src, _ in ways.values()):  # warm the compilation cache
            timed([sys.executable, "-m", "digitnet", "sweep", str(sweep_file), "--out", f"{tmp}/warm",
                   "--quiet", *extra_args], {"PYTHONPATH": src}, timeout)
            shutil.rmtree(f"{tmp}/warm")
        for r in range(rounds):
            for i, (name, (src, workers)) in enumerate(ways.items()):
                out = Path(tmp) / f"{r}-{i}"
                got = timed([sys.executable, "-m", "digitnet", "sweep", str(sweep_file), "--out",
                             str(out), "--workers", str(workers), "--quiet", *extra_args],
                            {"PYTHONPATH": src}, timeout)
                got["points"] = point_stats(out)
                got["trials"] = len(json.loads((out / "results.json").read_text())["trials"])
                print(name, r, got["wall"], got["cpu"], got["load"], flush=True)
                res[name].append(got)
            save(sweep_summary(res, sweep_file, r + 1 < rounds, commit))
    return sweep_summary(res, sweep_file, False, commit)


def sweep_summary(res: dict[str, list[dict]], sweep_file: Path, partial: bool,
                  baseline_commit: str | None = None) -> dict:
    med = {w: statistics.median(x["wall"] for x in runs) for w, runs in res.items() if runs}
    where = sweep_file.resolve()
    out: dict = {"file": str(where.relative_to(ROOT) if where.is_relative_to(ROOT) else where),
                 "runs": res, "median_wall": med}
    if partial:
        out["partial"] = True
    if baseline_commit:
        out["baseline_commit"] = baseline_commit
    before = [v for w, v in med.items() if w.startswith("before")]
    if before and any(w.startswith("populations") for w in med):
        out["speedup_vs_faster_before"] = round(min(before) / min(
            v for w, v in med.items() if w.startswith("populations")), 3)
    return out


BEGIN = "<!-- population: begin (python -m bench.population --write docs/performance.md) -->"
END = "<!-- population: end -->"


def this_machine() -> dict:
    from digitnet.tuning import machine, machine_key

    m = machine()
    return {"key": machine_key(m), "cpu": m["cpu"], "cpu_id": m.get("cpu_id"), "cores": m["cores"]}


def same_machine(doc: dict, key: str) -> dict:
    """The parts of `doc` measured on the machine `key`: a part from another machine is dropped
    when this one measures, as figures of two machines are never shown side by side."""
    parts = {name: v for name, v in doc.items() if isinstance(v, dict) and "started" in v}
    gone = [name for name, v in parts.items() if v.get("machine", {}).get("key") != key]
    for name in gone:
        print(f"dropping part {name} of {doc[name]['started']}: measured on another machine",
              file=sys.stderr, flush=True)
    errors = {n: e for n, e in doc.get("errors", {}).items() if e.get("machine", {}).get("key") == key}
    return {**{k: v for k, v in doc.items() if k not in gone and k != "errors"},
            **({"errors": errors} if errors else {})}


def write_section(path: Path, section: str) -> None:
    """Replace the population block of `path` (BEGIN … END), or append it; atomically."""
    import re

    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    pattern = re.compile(r"<!-- population: begin.*?(<!-- population: end -->|\Z)", re.S)
    new = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) else \
        f"{text.rstrip()}\n\n{block}\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new if new.endswith("\n") else new + "\n")
    tmp.replace(path)


def render(doc: dict) -> str:
    """The Markdown of docs/performance.md's population section, from population.json."""
    out = ["## Populations: many models in one program (bench/population.py)", ""]
    machines = {(v["machine"]["cpu"], v["machine"]["cpu_id"], v["machine"]["cores"])
                for v in doc.values() if isinstance(v, dict) and "machine" in v}
    if machines:
        out += ["Measured on " + "; ".join(f"{c} ({i}), {n} cores" for c, i, n in sorted(machines))
                + " (bench/results/population.json: a part measured on another machine replaces"
                " the file's parts from this one).", ""]
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
            cmd = {"one train": "train", ONE_DEVICE: "train --seeds 1-8",
                   ONE_PROCESS: "train --seeds 1-8"}.get(name, name)
            env = {ONE_DEVICE: "DIGITNET_POPULATION_DEVICES=1 ",
                   ONE_PROCESS: "DIGITNET_SEED_PROCESSES=1 "}.get(name, "")
            for r in runs:
                out.append(f"| `{env}digitnet {cmd} --quiet` | {r['wall']:.1f} | {r['cpu']:.1f} | "
                           f"{r['load'][0]}–{r['load'][1]} |")
        out += ["", f"8 seeds ÷ one run, wall (medians): **{sd['ratio']:.2f}×** (target ≤ 3×)"
                + (f"; on one XLA device: {sd['ratio_one_device']:.2f}×" if "ratio_one_device" in sd
                   else "")
                + (f"; in one process split into a device per core (no worker processes):"
                   f" {sd['ratio_one_process']:.2f}×" if "ratio_one_process" in sd else "") + ".", ""]
    if "sweep" in doc:
        sw = doc["sweep"]
        trials = next((runs[0].get("trials") for runs in sw["runs"].values() if runs), None)
        out += [f"`{sw['command']}` ({sw['started']}): {sw.get('file', 'examples/sweeps/tutorial.toml')}"
                f"{f', {trials} trials' if trials else ''}, warm compilation cache; 'before' is the "
                "code before populations (--baseline-src), each trial its own run.", "",
                "| way | wall s | CPU s (all processes) | load |", "|---|---|---|---|"]
        for name, runs in sw["runs"].items():
            for r in runs:
                out.append(f"| {name} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['load'][0]}–{r['load'][1]} |")
        if "speedup_vs_faster_before" in sw:
            out += ["", "Faster way before ÷ faster way with populations, wall (medians): "
                    f"**{sw['speedup_vs_faster_before']:.2f}×** (target ≥ 2×)."]
            if "baseline_commit" in sw:
                out[-1] += f" 'Before' is commit {sw['baseline_commit']}."
            cpu = {w: statistics.median(r["cpu"] for r in runs) for w, runs in sw["runs"].items()
                   if runs}
            busy = ", ".join(f"{w} {cpu[w]:.0f} CPU s over {sw['median_wall'][w]:.0f} s"
                             for w in cpu)
            out += ["", f"CPU seconds of all processes against wall seconds (medians): {busy}. "
                    "Where the cores are busy for the whole sweep, its wall time can fall only as "
                    "far as its CPU time does: a population saves each trial's process start, "
                    "compilation and per-step dispatch, not the arithmetic of its steps.", ""]
        if sw.get("partial"):
            out += ["", "(Partial: the bench stopped before its last round.)", ""]
        if "note" in sw:
            out += ["", f"Note: {sw['note']}.", ""]
        first = {name: runs[0]["points"] for name, runs in sw["runs"].items()
                 if runs and "points" in runs[0]}
        names = list(first)
        if names:
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
    for part, err in doc.get("errors", {}).items():
        out += [f"Part {part} of `{err['command']}` ({err['started']}) failed: "
                f"{err['error'].strip().splitlines()[-1] if err['error'].strip() else '?'}", ""]
    if "bench_seconds" in doc:
        out += [f"The bench's last run took {doc['bench_seconds']:.0f} s in all.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="kscan,seeds,sweep")
    ap.add_argument("--ks", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline-src", help="src/ of digitnet before populations (for sweep)")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--sweep", default=str(SWEEP), help="the sweep file (default: the tutorial's)")
    ap.add_argument("--data-dir", help="an IDX folder instead of MNIST (small checks)")
    ap.add_argument("--epochs", type=int, help="epochs for seeds and kscan instead of the defaults")
    ap.add_argument("--part-timeout", type=float, default=1800,
                    help="seconds any one command may run before its part is given up")
    ap.add_argument("--render", action="store_true", help="print the Markdown section and exit")
    ap.add_argument("--write", metavar="DOC",
                    help="write the section into DOC (docs/performance.md) between its markers, and exit")
    args = ap.parse_args()
    path = Path(args.results)
    doc = json.loads(path.read_text()) if path.exists() else {}
    if args.render:
        print(render(doc))
        return
    if args.write:
        write_section(Path(args.write), render(doc))
        print(f"wrote the population section of {args.write}")
        return
    meta = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
            "command": " ".join(["python -m bench.population", *sys.argv[1:]]),
            "machine": this_machine()}
    doc = same_machine(doc, meta["machine"]["key"])
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    t0 = time.perf_counter()

    def save(part: str, got: dict) -> None:
        doc[part] = {**meta, **got}
        doc.setdefault("errors", {}).pop(part, None)
        write(path, doc)

    for part in args.parts.split(","):
        try:
            if part == "kscan":
                save(part, {"rows": kscan([int(k) for k in args.ks.split(",")], args.data_dir,
                                          args.epochs or 2)})
            elif part == "seeds":
                epochs = ["--epochs", str(args.epochs)] if args.epochs else []
                save(part, seeds(args.rounds, data + epochs, args.part_timeout))
            elif part == "sweep":
                save(part, sweep(args.rounds, args.baseline_src, Path(args.sweep), data,
                                 args.part_timeout, lambda got: save("sweep", got)))
            else:
                raise SystemExit(f"unknown part {part!r}: kscan, seeds or sweep")
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            # Keep what the other parts measured; say what this one could not.
            print(f"part {part} failed: {exc}", file=sys.stderr, flush=True)
            doc.setdefault("errors", {})[part] = {**meta, "error": str(exc)[-2000:]}
            write(path, doc)
    doc["bench_seconds"] = round(time.perf_counter() - t0, 1)
    write(path, doc)
    print(f"wrote {path} ({doc['bench_seconds']:.0f} s)")


def write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
