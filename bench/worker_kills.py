"""How fast `digitnet serve --workers 2` replaces a worker killed at a random moment.

    python -m bench.worker_kills RUN [--kills 12]

Starts the server on 127.0.0.1, then --kills times: SIGKILL to one worker (chosen at random,
after a random pause of up to 0.5 s, so some kills land while the supervisor's health-check ping
is on its way), and the seconds until a new worker process stands in its place. Then the time
the server takes to stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.load_serve import ROOT, free_port


def workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--kills", type=int, default=12)
    args = ap.parse_args()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", args.run, "--port", str(port),
                             "--workers=2", "--no-access-log"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        took = []
        for _ in range(args.kills):
            victim = random.choice(workers(proc.pid))
            time.sleep(random.uniform(0, 0.5))
            os.kill(victim, signal.SIGKILL)
            start = time.monotonic()
            while victim in workers(proc.pid) or len(workers(proc.pid)) < 2:
                if time.monotonic() - start > 150:
                    break
                time.sleep(0.05)
            took.append(round(time.monotonic() - start, 2))
        print(f"kill -> replacement, seconds: {took}")
        start = time.monotonic()
        proc.terminate()
        proc.wait(timeout=150)
        print(f"stopped on SIGTERM in {time.monotonic() - start:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
