"""`digitnet train --seeds` on a CPU of several cores: one worker process per core, each training
its share of the seeds as one population on one single-threaded XLA device, instead of one
process split into a device per core.

Why: XLA's CPU client with several devices runs them from one shared thread pool, and a device's
work moves between its threads (and the cores' caches); on two cores a population of 8 tutorial
models trained 10–14% slower per model that way than as two processes of 4
(bench/population_procs.py, docs/population.md). The workers are `digitnet train` itself,
with the seeds they train in WORKER_ENV; each writes its seeds' run directories, and this
process, which never starts JAX, then writes DIR/summary.json from their config.json files and
prints what `train --seeds` prints.
The first worker shows its training progress (unless --quiet); a worker's error is printed by the
worker and ends the others.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Set in a worker's environment: the seeds it trains ("1,2,3,4").
WORKER_ENV = "DIGITNET_SEEDS_WORKER"


def worker_seeds() -> list[int] | None:
    """This process' share of the seeds, when it is one of these workers."""
    part = os.environ.get(WORKER_ENV)
    return [int(s) for s in part.split(",")] if part else None


def workers_for(args: argparse.Namespace, members: int) -> int:
    """How many processes `train --seeds` trains its `members` seeds in: one per core (at most
    one per seed; DIGITNET_POPULATION_DEVICES caps it, 1: this process on one device) for a population that
    would otherwise split this process into a device per core (members > 1: the CLI's
    population_size), on a CPU, before JAX starts; else 1. DIGITNET_SEED_PROCESSES=N caps the
    processes (1: this process, split into devices)."""
    from digitnet.runtime import gpu_backend_possible, per_core

    if args.command != "train" or args.seeds is None or args.ensemble is not None:
        return 1
    if worker_seeds() is not None or "jax" in sys.modules or gpu_backend_possible():
        return 1
    return per_core(members, "DIGITNET_SEED_PROCESSES")


def train_in_workers(args: argparse.Namespace, seeds: list[int], out: Path, workers: int) -> int:
    from digitnet.files import atomic_write_bytes, json_bytes
    from digitnet.safefiles import read_json
    from digitnet.seeds import SUMMARY, describe, summarize

    t0 = time.perf_counter()
    parts = [seeds[i * len(seeds) // workers:(i + 1) * len(seeds) // workers] for i in range(workers)]
    procs: list[subprocess.Popen] = []
    # The first worker shows its progress (on stderr) as it trains, unless --quiet; the others'
    # stderr goes to files, to be shown at the end: a failure's own lines (not the same error
    # from every worker), or the warnings that the shown worker has not printed.
    logs = [tempfile.TemporaryFile() for _ in parts]
    try:
        for i, part in enumerate(parts):
            shown = i == 0 and not args.quiet
            # The parent's choice of run directory (a default one is named by the time).
            argv = [*args.argv, "--out", str(out), *([] if shown else ["--quiet"])]
            env = {**os.environ, WORKER_ENV: ",".join(map(str, part)),
                   "DIGITNET_POPULATION_DEVICES": "1"}
            env.setdefault("NPROC", "1")  # one core each: XLA's pool of one thread
            procs.append(subprocess.Popen([sys.executable, "-m", "digitnet", *argv], env=env,
                                          stdout=None if shown else subprocess.DEVNULL,
                                          stderr=None if shown else logs[i]))
        codes = wait_all(procs)
    finally:
        for p in procs:  # Ctrl-C or a failed start: no worker outlives this process
            if p.poll() is None:
                p.terminate()
                p.wait()
    failed = next((i for i, c in enumerate(codes) if c != 0), None)
    quiet_fail = failed is not None and (failed > 0 or args.quiet)  # its lines are in its file
    seen: set[bytes] = set()
    for i, log in enumerate(logs):
        log.seek(0)
        for line in log.read().splitlines(keepends=True):
            if (i == failed if quiet_fail else failed is None) and line not in seen:
                seen.add(line)
                sys.stderr.buffer.write(line)
        log.close()
    sys.stderr.flush()
    if failed is not None:
        return codes[failed] if codes[failed] > 0 else 1
    configs = [read_json(out / f"seed-{s}" / "config.json") for s in seeds]
    summary = summarize(configs, seeds, time.perf_counter() - t0)
    atomic_write_bytes(out / SUMMARY, json_bytes(summary))
    for s, config in zip(seeds, configs, strict=True):
        print(f"seed {s}: test accuracy {config['metrics']['test_accuracy']:.4f}")
    print(describe(summary) + f"  ({summary['wall_seconds']:.1f} s, {workers} processes)")
    print(f"saved to {out}")
    return 0


def wait_all(procs: list[subprocess.Popen]) -> list[int]:
    """Each process' exit code, once all have ended; the first to fail ends the others."""
    while any(p.poll() is None for p in procs):
        if any(p.returncode not in (None, 0) for p in procs):
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            break
        time.sleep(0.05)
    return [p.wait() for p in procs]
