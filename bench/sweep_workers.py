"""Claim: a sweep's worker processes run faster with one XLA thread each
(digitnet.runtime.one_xla_thread) than with XLA's default pool of one thread per core.

`python -m bench.sweep_workers [--rounds 3] [--trials 8] [--workers 2]` trains the same sweep
(the tutorial's config, 5 epochs, no validation, one trial per seed) with `digitnet sweep
--workers N`, alternately with digitnet's setting and with XLA's default (NPROC = the core
count, which is what XLA uses when NPROC is unset), and prints a Markdown table of wall and
CPU seconds (medians and min–max over the rounds). Both settings must give the same metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import fmt, summary

SETTINGS = {"one XLA thread per worker (digitnet)": {},
            "XLA's default pool (a thread per core)": {"NPROC": str(os.cpu_count() or 1)}}


def sweep_file(path: Path, trials: int) -> Path:
    path.write_text(f"seeds = {list(range(1, trials + 1))}\n\n[base]\nepochs = 5\n"
                    'validation = "none"\n\n[grid.lr]\nlr = [0.001]\n')
    return path


def run_once(config: Path, out: Path, workers: int, env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "digitnet", "sweep", str(config), "--workers",
                    str(workers), "--out", str(out), "--quiet"],
                   env={**{k: v for k, v in os.environ.items() if k != "NPROC"}, **env},
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    trials = json.loads((out / "results.json").read_text())["trials"]
    metrics = sorted((t["options"]["seed"], t["metrics"]["test_accuracy"]) for t in trials)
    return {"wall": wall, "cpu": cpu, "metrics": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    res: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        config = sweep_file(Path(tmp) / "sweep.toml", args.trials)
        for r in range(args.rounds):
            for i, (name, env) in enumerate(SETTINGS.items()):
                res[name].append(run_once(config, Path(tmp) / f"out-{r}-{i}", args.workers, env))
    metrics = {json.dumps(run["metrics"]) for runs in res.values() for run in runs}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"`python -m bench.sweep_workers --rounds {args.rounds} --trials {args.trials}"
          f" --workers {args.workers}` ({started}; {os.cpu_count()} cores, load"
          f" {os.getloadavg()[0]:.2f} at the end): {args.trials} trials of the tutorial config,"
          f" 5 epochs each, {args.workers} worker processes, {args.rounds} rounds alternating"
          " the settings; median (min–max).\n")
    print("| workers' XLA threads | sweep wall s | CPU s (all processes) |\n|---|---|---|")
    for name, runs in res.items():
        print(f"| {name} | {fmt(summary([r['wall'] for r in runs]), digits=2)} "
              f"| {fmt(summary([r['cpu'] for r in runs]), digits=1)} |")
    print("\nSame test accuracies in every run of both settings:"
          f" {'yes' if len(metrics) == 1 else 'NO'}.")


if __name__ == "__main__":
    main()
