"""Where `digitnet serve`'s latency tail and PNG CPU go: the server as shipped against the same
server with the start-up settings of the previous stop undone, and the framework's floor, in
one run with interleaved rounds (wrk, as bench/load_serve.py drives it).

    python -m bench.serve_tail RUN [--payload json|png] [--rounds 3] [--duration 8]

Variants: `now` (as shipped), `before` (no gc.freeze, default malloc, Starlette's 40-thread
pool for decodes), `floor` and `floor, orjson` (bench/serve_floor.py). Each digitnet variant
runs with a probe in its event loop: the lag of a 1 ms timer (how long the loop was held, and
how much of that the loop thread spent on the CPU rather than waiting for a core), and every
cyclic-GC pause by generation. Also the server's CPU per request split between the event-loop
thread and the others (decodes). Prints one line per round and variant, then the probes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import load_serve as ls

VARIANTS = ("now", "before")


def serve(run: str, port: int, variant: str, probe_file: str) -> None:
    """The server process of one digitnet variant, probes on; writes them to probe_file when stopped."""
    import numpy as np
    import uvicorn

    from digitnet.serve import app as appmod
    from digitnet.serve import server as srv
    from digitnet.serve.limits import Limits

    if variant == "before":
        from starlette.concurrency import run_in_threadpool

        srv.settle_heap = lambda: None
        appmod.off_loop = run_in_threadpool
    app = srv.build_app({"model_dir": run, "limits": Limits().to_dict()})
    pauses: list[tuple[int, float]] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pauses.append((info["generation"], (time.perf_counter() - started[0]) * 1e3))

    gc.callbacks.append(on_gc)
    lags: list[tuple[float, float]] = []

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(0.001)
            lags.append(((loop.time() - t - 0.001) * 1e3, (time.thread_time() - cpu) * 1e3))

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            self.probe = asyncio.get_running_loop().create_task(probe())

    def report() -> None:
        lag = np.array(lags or [(0.0, 0.0)])
        held = lag[lag[:, 0] > 10]
        on_cpu = held[:, 1].sum() / max(held[:, 0].sum(), 1e-9)
        out = {"heap_objects_tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count(),
               "loop_lag_ms": {"p99": round(float(np.percentile(lag[:, 0], 99)), 1),
                               "max": round(float(lag[:, 0].max()), 1),
                               "over_10ms": len(held), "over_30ms": int((lag[:, 0] > 30).sum()),
                               "over_10ms_on_cpu_share": round(float(on_cpu), 2)}}
        for g in range(3):
            ms = [p for gen, p in pauses if gen == g]
            out[f"gc_gen{g}"] = {"n": len(ms), "max_ms": round(max(ms, default=0), 1),
                                 "total_ms": round(sum(ms), 1)}
        Path(probe_file).write_text(json.dumps(out))

    sock = srv.bind("127.0.0.1", port)
    config = srv.uvicorn_config(app, srv.ServerOptions(port=port, access_log=False), sock)
    try:
        Server(config).run(sockets=[sock])
    finally:
        report()


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the process's main (event-loop) thread and of all its other threads."""
    out = {"loop": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out["loop" if int(tid) == pid else "other"] += seconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--payload", choices=("json", "png"), default="json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--serve", nargs=3, metavar=("PORT", "VARIANT", "PROBE_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.run, int(args.serve[0]), args.serve[1], args.serve[2])
        return
    work = Path(tempfile.mkdtemp(prefix="serve-tail-"))
    lua = work / "post.lua"
    lua.write_text(ls.WRK_LUA)
    items = ls.payloads(args.run, work)
    root = Path(__file__).resolve().parents[1]
    made: dict[str, ls.Server] = {}
    try:
        for variant in VARIANTS:
            port = ls.free_port()
            made[variant] = ls.Server(variant, [sys.executable, "-m", "bench.serve_tail", args.run, "--serve",
                                                str(port), variant, str(work / f"{variant}.json")],
                                      {"PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}, port)
        for name, orjson in (("floor", False), ("floor, orjson", True)):
            made[name] = ls.floor_server(name, orjson)
        for server in made.values():
            server.wait()
        for name, server in made.items():
            if name in VARIANTS:
                ls.check_answers(server.url, items)
            ls.wrk(server.url, "/predict", items["json"], args.connections, 2, 2, lua)  # warm-up
        print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        for rnd in range(args.rounds):
            for name, server in made.items():
                before = thread_cpu(server.proc.pid)
                r = ls.wrk(server.url, "/predict", items[args.payload], args.connections, 2, args.duration,
                           lua, server.proc.pid)
                after = thread_cpu(server.proc.pid)
                split = {k: round((after[k] - before[k]) / max(1, r["requests"]) * 1e6) for k in after}
                print(f"round {rnd + 1} {args.payload} {name:>14}: {r['req_per_s']:7.0f} req/s  p50 "
                      f"{r['latency_ms']['p50']:6.1f} ms  p99 {r['latency_ms']['p99']:6.1f} ms  CPU µs/req "
                      f"{r['server_cpu_us_per_request']:5.0f} (loop thread {split['loop']}, others "
                      f"{split['other']})  status {r['status']}  load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for name, server in made.items():
            server.proc.send_signal(signal.SIGINT if name in VARIANTS else signal.SIGTERM)
            server.proc.wait(timeout=60)
    for variant in VARIANTS:
        probe = work / f"{variant}.json"
        print(f"probe {variant}: {probe.read_text() if probe.exists() else '(none)'}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
