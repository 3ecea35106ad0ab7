"""A bounded load test of `digitnet serve` on 127.0.0.1.

    python bench/load_serve.py RUN [--requests 10000] [--concurrency 32] [--time-limit 300]
    python bench/load_serve.py --url http://127.0.0.1:8000 ...   (a server already running)

Starts the server (unless --url), warms it up, then sends the requests from `concurrency`
concurrent clients (httpx, asyncio, keep-alive), stopping at the count or the time limit.
The payloads alternate between a 280×280 PNG drawing (what the page sends) and JSON pixels,
made from MNIST test digits; every answer's label is checked against the first answer for the
same payload. Prints throughput, latency percentiles, errors and the server's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import digitnet


def payloads(n: int) -> list[dict]:
    ds = digitnet.load_dataset()
    out = []
    for i in range(n):
        digit = ds.x_test[i]
        if i % 2:
            out.append({"json": {"pixels": digit.reshape(-1).tolist()}})
        else:
            page = Image.new("L", (280, 280), 255)
            page.paste(Image.fromarray(255 - digit).resize((200, 200)), (40, 40))
            buf = io.BytesIO()
            page.save(buf, "PNG")
            out.append({"content": buf.getvalue(), "headers": {"content-type": "image/png"}})
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(digitnet.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    proc = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", run, "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(url + "/health", timeout=2).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("the server did not start")


async def load(url: str, items: list[dict], expected: list[int], total: int, concurrency: int,
               time_limit: float, pid: int | None = None
               ) -> tuple[list[float], dict[str, int], float, list[float]]:
    """Latencies, errors by kind, elapsed seconds, and the server's RSS after each tenth."""
    latencies: list[float] = []
    rss: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        deadline = t0 + time_limit

        async def worker() -> None:
            nonlocal sent
            while sent < total and time.perf_counter() < deadline:
                k = sent % len(items)
                sent += 1
                start = time.perf_counter()
                try:
                    r = await client.post("/predict", **items[k])
                    ok = r.status_code == 200 and r.json()["label"] == expected[k]
                    why = "ok" if ok else f"status {r.status_code}" if r.status_code != 200 else "label"
                except httpx.HTTPError as exc:
                    why = type(exc).__name__
                latencies.append(time.perf_counter() - start)
                if pid and len(latencies) % max(1, total // 10) == 0:
                    rss.append(rss_mib(pid))
                if why != "ok":
                    errors[why] = errors.get(why, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - t0, rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", help="run directory to serve (or --url)")
    p.add_argument("--url")
    p.add_argument("--pid", type=int, help="the server's process id, for RSS (with --url)")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--time-limit", type=float, default=300, help="seconds")
    p.add_argument("--warmup", type=int, default=2000, help="requests before measuring")
    args = p.parse_args()
    if not (args.run or args.url):
        p.error("give RUN or --url")
    proc, url = start_server(args.run) if not args.url else (None, args.url)
    pid = proc.pid if proc else args.pid
    try:
        items = payloads(64)
        with httpx.Client(base_url=url, timeout=30) as c:
            expected = [c.post("/predict", **it).json()["label"] for it in items]
        # Warm-up: every thread of the server's pool has run, its memory arenas exist.
        asyncio.run(load(url, items, expected, args.warmup, args.concurrency, args.time_limit))
        rss0 = rss_mib(pid) if pid else float("nan")
        lat, errors, elapsed, rss = asyncio.run(
            load(url, items, expected, args.requests, args.concurrency, args.time_limit, pid))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    ms = np.asarray(lat) * 1000
    print(f"{len(lat)} requests ({args.concurrency} concurrent, half PNG drawings, half JSON pixels) "
          f"in {elapsed:.1f} s on {os.cpu_count()} CPUs")
    print(f"throughput {len(lat) / elapsed:.0f} req/s; latency p50 {np.percentile(ms, 50):.1f} ms, "
          f"p90 {np.percentile(ms, 90):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms")
    print(f"errors {sum(errors.values())} {errors or ''}".rstrip())
    print(f"server RSS (MiB) after {args.warmup} warm-up requests {rss0:.0f}; after each tenth of "
          f"the run {' '.join(f'{r:.0f}' for r in rss)}")


if __name__ == "__main__":
    main()
