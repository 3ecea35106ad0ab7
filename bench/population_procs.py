"""Claim probed: on a CPU, a population's members train faster per model in one process per
core (each one XLA device) than in one process split into one XLA device per core (what
`digitnet train --seeds` does: runtime.population_devices).

    python -m bench.population_procs [K [epochs]]

Runs the tutorial's model as a population of K members (default 8) three ways, one after the
other: one process with one XLA device per core; one process with one device; and one process
per core at once, each training K / cores members on one device. Each prints the last epoch's
seconds per model-epoch (the first epoch compiles); the concurrent processes' figure is the
slowest process' epoch divided by all K members. Prints JSON lines, then a summary line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.population import load

WORKER = """
import json, os, sys, time
k, epochs = int(sys.argv[1]), int(sys.argv[2])
from digitnet.runtime import population_devices, set_cpu_threading
from digitnet.spec import MLPSpec
from digitnet.trainconfig import TrainConfig
population_devices(k)
set_cpu_threading(MLPSpec().sizes, TrainConfig().batch_size)
import jax
from digitnet.callbacks import Callback
from digitnet.data.datasets import load_dataset
from digitnet.model import preprocess_stats
from digitnet.population import Member, fit_population
ds = load_dataset("mnist")
spec = MLPSpec()
stats = preprocess_stats(spec, ds.x_train)
class Clock(Callback):
    marks = []
    def on_epoch_begin(self, epoch): self.marks.append(time.perf_counter())
    def on_epoch_end(self, state, logs): self.marks.append(time.perf_counter())
clock = Clock()
members = [Member(spec, TrainConfig(epochs=epochs, validation="none", seed=s), stats,
                  callbacks=[clock] if s == 0 else ()) for s in range(k)]
fit_population(members, ds.x_train, ds.y_train, parts=k)
print(json.dumps({"k": k, "devices": min(k, len(jax.devices())),
                  "last_epoch": clock.marks[-1] - clock.marks[-2]}))
"""


def run(k: int, epochs: int, procs: int, env: dict[str, str]) -> dict:
    start_load = load()
    children = [subprocess.Popen([sys.executable, "-c", WORKER, str(k // procs), str(epochs)],
                                 env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
                for _ in range(procs)]
    outs = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    if any(c.returncode for c in children):
        raise RuntimeError("a worker failed")
    slowest = max(o["last_epoch"] for o in outs)
    return {"processes": procs, "members_each": k // procs, "devices_each": outs[0]["devices"],
            "s_per_model_epoch": round(slowest / k, 4), "load": [start_load, load()]}


def main(k: int = 8, epochs: int = 3) -> None:
    from digitnet.runtime import cpu_cores

    cores = cpu_cores()
    rows = {"one process, a device per core": run(k, epochs, 1, {}),
            "one process, one device": run(k, epochs, 1, {"DIGITNET_POPULATION_DEVICES": "1"}),
            f"{cores} processes at once, one device each": run(
                k, epochs, cores, {"DIGITNET_POPULATION_DEVICES": "1"})}
    for name, row in rows.items():
        print(json.dumps({"way": name, **row}), flush=True)
    print(json.dumps({"k": k, "epochs": epochs, "cores": cores,
                      "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
