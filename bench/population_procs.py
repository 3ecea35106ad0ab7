"""Claim probed: on a CPU, a population's members train faster per model in one process per
core (each one XLA device) than in one process split into one XLA device per core
(runtime.population_devices: what `digitnet.fit(seeds=...)` and an in-process sweep do, and what
`digitnet train --seeds` did before digitnet.cli.seed_workers).

    python -m bench.population_procs [K [epochs]]

Runs the tutorial's model as a population of K members (default 8) three ways, one after the
other: one process with one XLA device per core; one process with one device; and one process
per core at once, each training K / cores members on one device. Each times its last epoch (the
first compiles; bench.population's K scan); the concurrent processes' figure is the
slowest process' epoch divided by all K members. Prints JSON lines, then a summary line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.population import ROOT, load

# One process' population: bench.population's K scan for that K (it sets up XLA's devices as
# `digitnet train --seeds` does, then times each epoch).
WORKER = ("import json, sys; from bench.population import kscan; "
          "print(json.dumps(kscan([int(sys.argv[1])], epochs=int(sys.argv[2]))[-1]))")


def run(k: int, epochs: int, procs: int, env: dict[str, str]) -> dict:
    start_load = load()
    children = [subprocess.Popen([sys.executable, "-c", WORKER, str(k // procs), str(epochs)],
                                 env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
                                 cwd=ROOT)
                for _ in range(procs)]
    outs = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    if any(c.returncode for c in children):
        raise RuntimeError("a worker failed")
    slowest = max(o["epoch_wall"] for o in outs)
    return {"processes": procs, "members_each": k // procs, "devices_each": outs[0]["devices"],
            "s_per_model_epoch": round(slowest / k, 4), "load": [start_load, load()]}


def main(k: int = 8, epochs: int = 3) -> None:
    from digitnet.runtime import cpu_cores

    cores, started = cpu_cores(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = {"one process, a device per core": run(k, epochs, 1, {}),
            "one process, one device": run(k, epochs, 1, {"DIGITNET_POPULATION_DEVICES": "1"}),
            f"{cores} processes at once, one device each": run(
                k, epochs, cores, {"DIGITNET_POPULATION_DEVICES": "1"})}
    for name, row in rows.items():
        print(json.dumps({"way": name, **row}), flush=True)
    print(json.dumps({"k": k, "epochs": epochs, "cores": cores,
                      "started": started}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
