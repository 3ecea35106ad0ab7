"""The server around the app (digitnet.serve.server, batching, metrics), against real
`digitnet serve` processes on 127.0.0.1: deadlines, the connection limit under a slowloris,
back-pressure, JSON 400s from the HTTP layer, the busy port, request logs, /metrics, workers;
and the micro-batcher and the NumPy forward on their own."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import reliability

ROOT = Path(__file__).resolve().parents[2]
PIXELS = json.dumps({"pixels": [0] * 784}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(run_dir: Path, log: Path, *flags: str, nofile: int | None = None, env: dict | None = None):
    """`digitnet serve RUN FLAGS…` (optionally under `ulimit -n NOFILE`); yields (url, process)."""
    port = free_port()
    cmd = [sys.executable, "-m", "digitnet", "serve", str(run_dir), "--port", str(port), *flags]
    if nofile:
        cmd = ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *cmd]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        reliability.wait_for_health(url, proc, log)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def answer(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def strict(run_dir, tmp_path_factory):
    """A server with short deadlines (headers 1 s, body 3 s) and a queue of 2."""
    log = tmp_path_factory.mktemp("strict") / "serve.log"
    with serve(run_dir, log, "--header-timeout=1", "--body-timeout=3", "--max-queue=2") as (url, _):
        yield url, log


def test_slow_headers_and_bodies_get_408_and_are_closed(strict):
    url, _ = strict
    with connect(url) as slow_head, connect(url) as slow_body:
        slow_head.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow_body.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 3000\r\n\r\n{")
        start = time.monotonic()
        for sock in (slow_head, slow_body):
            status, doc = answer(sock)
            assert status == 408 and doc["error"] == "request_timeout"
            assert sock.recv(100) == b""  # closed
        assert time.monotonic() - start < 8


def test_a_full_queue_answers_429_with_retry_after(strict):
    url, _ = strict
    with ExitStack() as stack:
        for _ in range(2):  # two requests in progress, their bodies still on the way
            sock = stack.enter_context(connect(url))
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 3000\r\n\r\n{")
        deadline = time.monotonic() + 2.5  # until the server has read both requests' headers
        while True:
            r = httpx.post(url + "/predict", content=PIXELS, headers={"content-type": "application/json"})
            if r.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"] == "busy"
        assert httpx.get(url + "/health").status_code == 200
    time.sleep(3.5)  # the stalled ones hit their body deadline
    assert httpx.post(url + "/predict", content=PIXELS,
                      headers={"content-type": "application/json"}).status_code == 200


@pytest.mark.parametrize("raw", [
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
    b"GET /\r\n\r\n",
])
def test_unparseable_requests_get_a_json_400(strict, raw):
    with connect(strict[0]) as sock:
        sock.sendall(raw)
        status, doc = answer(sock)
    assert status == 400 and doc["error"] == "bad_request"


def test_request_log_metrics_and_ctrl_c_line(strict):
    url, log = strict
    assert httpx.post(url + "/predict", content=PIXELS, headers={"content-type": "application/json"}
                      ).status_code == 200
    text = log.read_text()
    assert "serving" in text and "(Ctrl-C to stop)" in text
    assert '"POST /predict HTTP/1.1" 200' in text
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    body = r.text
    for name in ("digitnet_requests_total", "digitnet_request_seconds_bucket", "digitnet_batch_rows_bucket",
                 "digitnet_queue_depth", "digitnet_model_info"):
        assert name in body
    count = next(float(line.split()[-1]) for line in body.splitlines()
                 if line.startswith('digitnet_requests_total{path="/predict",status="200"}'))
    assert count >= 1
    model_id = httpx.get(url + "/health").json()["model"]["id"]
    assert f'id="{model_id}"' in body


def test_a_busy_port_is_one_line_and_exit_2_before_serving(run_dir, strict):
    port = strict[0].rsplit(":", 1)[1]
    r = subprocess.run([sys.executable, "-m", "digitnet", "serve", str(run_dir), "--port", port],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 2 and "serving" not in r.stdout
    assert r.stderr.count("\n") == 1 and "already in use" in r.stderr
    r = subprocess.run([sys.executable, "-m", "digitnet", "serve", str(run_dir), "--port", "99999"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--port" in r.stderr


def test_health_answers_under_a_slowloris_past_the_descriptor_limit(run_dir, tmp_path):
    """1,100 stalled connections to a server under `ulimit -n 1024`: each new connection past
    its limit closes the longest-stalled one, so /health still gets in."""
    stalled = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < stalled + 100:
        if hard != resource.RLIM_INFINITY and hard < stalled + 100:
            pytest.skip(f"the test itself needs {stalled + 100} file descriptors (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (stalled + 100, hard))
    try:
        with serve(run_dir, tmp_path / "serve.log", "--header-timeout=60", "--no-access-log",
                   nofile=1024) as (url, proc), ExitStack() as stack:
            for _ in range(stalled):
                sock = stack.enter_context(connect(url))
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            r = httpx.get(url + "/health", timeout=20)
            assert r.status_code == 200
            assert len(os.listdir(f"/proc/{proc.pid}/fd")) < 1024
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
def test_workers_share_the_port_and_the_metrics_and_dead_workers_leave_them(run_dir, tmp_path):
    from prometheus_client.mmap_dict import MmapedDict

    with serve(run_dir, tmp_path / "serve.log", "--workers=2", "--no-access-log",
               env={"TMPDIR": str(tmp_path)}) as (url, proc):
        for _ in range(6):
            with httpx.Client() as client:  # new connections, spread over the workers
                r = client.post(url + "/predict", content=PIXELS,
                                headers={"content-type": "application/json"})
                assert r.status_code == 200
        body = httpx.get(url + "/metrics").text
        count = sum(float(line.split()[-1]) for line in body.splitlines()
                    if line.startswith('digitnet_requests_total{path="/predict",status="200"}'))
        assert count == 6
        workers = worker_pids(proc.pid)
        assert len(workers) == 2  # (the other child is multiprocessing's resource tracker)

        # A request stalled mid-body is in progress in one worker, which is then killed.
        stalled = connect(url)
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 3000\r\n\r\n" + PIXELS[:100])
        deadline = time.monotonic() + 10
        while queue_depth(url) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue_depth(url) == 1
        [metrics_dir] = tmp_path.glob("digitnet-metrics-*")
        holder = [pid for pid in workers if (metrics_dir / f"gauge_livesum_{pid}.db").exists() and any(
            value == 1 for _, value, _ in MmapedDict(str(metrics_dir / f"gauge_livesum_{pid}.db"),
                                                     read_mode=True).read_all_values())]
        assert len(holder) == 1
        os.kill(holder[0], signal.SIGKILL)
        # The supervisor replaces it and drops its gauge: the depth, summed over the live
        # workers, goes back to 0 (the other worker answers meanwhile); the requests stay counted.
        deadline = time.monotonic() + 30
        while queue_depth(url) != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        stalled.close()
        assert queue_depth(url) == 0
        assert not (metrics_dir / f"gauge_livesum_{holder[0]}.db").exists()
        body = httpx.get(url + "/metrics").text
        assert sum(float(line.split()[-1]) for line in body.splitlines()
                   if line.startswith('digitnet_requests_total{path="/predict",status="200"}')) == 6
        deadline = time.monotonic() + 120
        while len(set(worker_pids(proc.pid)) - {holder[0]}) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(set(worker_pids(proc.pid)) - {holder[0]}) == 2  # a new worker in its place


def worker_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def queue_depth(url: str) -> float:
    body = httpx.get(url + "/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith("digitnet_queue_depth"))


def test_micro_batcher_batches_concurrent_requests_and_does_not_hold_a_lone_one():
    from digitnet.serve.batching import MicroBatcher

    calls: list[int] = []

    def forward(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x * 2

    async def main() -> None:
        batcher = MicroBatcher(forward, max_rows=4, max_wait_s=10.0)
        xs = [np.full((1, 3), i, np.float32) for i in range(10)]
        outs = await asyncio.gather(*(batcher(x) for x in xs))
        for x, out in zip(xs, outs, strict=True):
            np.testing.assert_array_equal(out, x * 2)
        assert calls == [4, 4, 2]
        calls.clear()
        start = time.monotonic()
        out = await batcher(np.ones((2, 3), np.float32))  # alone: not held for the 10 s timer
        assert time.monotonic() - start < 1 and calls == [2] and out.shape == (2, 3)

    asyncio.run(main())


def test_the_numpy_forward_equals_the_compiled_one(run_dir, model, mnist):
    from digitnet.serve.predictor import AGREEMENT_ATOL, Predictor

    lean, compiled = Predictor(run_dir, 256), Predictor(run_dir, 256, lean=False)
    assert lean.path == "numpy" and compiled.path == "jax"
    x = mnist.x_test[:256].reshape(256, -1).astype(np.float32)
    want = model.predict_proba(x)
    for n in (1, 3, 256):  # BLAS may add up a long row in another order than XLA: float32 rounding
        np.testing.assert_allclose(lean(x[:n]), want[:n], rtol=0, atol=AGREEMENT_ATOL)
        np.testing.assert_allclose(compiled(x[:n]), want[:n], rtol=0, atol=1e-6)
    assert (lean(x).argmax(1) == want.argmax(1)).all()
