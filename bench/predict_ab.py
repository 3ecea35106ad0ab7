"""Predict on the 10k test images: digitnet's Model.predict against PyTorch's, alternating.

    python -m bench.predict_ab [rounds] [calls]

Each round runs one PyTorch process (the peer's environment, bench/peers/setup.sh; the
tutorial's 784-64-64-10 nn.Sequential in eval mode under no_grad, float32 inputs already scaled,
as the peer script predicts) and one digitnet process (Model.predict on the uint8 images,
its preprocessing inside), each timing `calls` calls after a warm-up; the order alternates round
by round, so that load from other processes hits both alike. The weights are random: the time of
a forward pass does not depend on them. Prints one JSON line: per side, each round's median wall
and CPU milliseconds per call, and the paired ratio digitnet ÷ PyTorch.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from bench.peer_runner import peer_python
from bench.proc import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TIMER = """
import json, statistics, sys, time
def timed(predict, x, calls):
    predict(x)
    wall, cpu = [], []
    for _ in range(calls):
        w, c = time.perf_counter(), time.process_time()
        predict(x)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    print(json.dumps({"wall_ms": statistics.median(wall) * 1e3, "cpu_ms": statistics.median(cpu) * 1e3}))
"""

TORCH = TIMER + """
import numpy as np, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (10000, 784)).astype(np.float32) / 255 - 0.5)
def predict(x):
    with torch.no_grad():
        return model(x).argmax(1).cpu()
timed(predict, x, int(sys.argv[1]))
"""

DIGITNET = TIMER + """
from digitnet.runtime import set_cpu_threading
set_cpu_threading()
import jax, numpy as np
from digitnet.api import Model
from digitnet.model import MLPSpec, init_params
spec = MLPSpec()
stats = {"shift": np.full(784, 127.5, np.float32), "scale": np.full(784, 1 / 255, np.float32)}
model = Model(spec, init_params(spec, jax.random.key(0)), stats)
x = np.random.default_rng(0).integers(0, 256, (10000, 28, 28), dtype=np.uint8)
timed(model.predict, x, int(sys.argv[1]))
"""


def main(rounds: int = 5, calls: int = 20) -> dict:
    torch_py = peer_python("torch")
    if torch_py is None:
        raise SystemExit("no PyTorch environment: run `bash bench/peers/setup.sh torch` first")
    sides = {"digitnet": [sys.executable, "-c", DIGITNET, str(calls)],
             "torch": [str(torch_py), "-c", TORCH, str(calls)]}
    env = {"PYTHONPATH": os.path.join(ROOT, "src")}
    res: dict[str, list[dict]] = {"digitnet": [], "torch": []}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            res[name].append(run(sides[name], env=env if name == "digitnet" else {}).json())
            print(f"  round {r + 1}: {name} {res[name][-1]['wall_ms']:.1f} ms wall, "
                  f"{res[name][-1]['cpu_ms']:.1f} ms CPU", file=sys.stderr, flush=True)
    ratio = {clock: statistics.median(d[clock] / t[clock] for d, t in zip(res["digitnet"], res["torch"],
                                                                          strict=True))
             for clock in ("wall_ms", "cpu_ms")}
    from digitnet.tuning import machine, machine_key

    m = machine()
    return {"rounds": res, "digitnet_over_torch": ratio, "load": os.getloadavg(),
            "machine": {"key": machine_key(m), "cpu": m["cpu"], "cpu_id": m["cpu_id"],
                        "cores": m["cores"]},
            "started": started}


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:3]))))
