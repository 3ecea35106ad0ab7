"""One real server on the session's trained model (tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import digitnet

# Small limits, so that the limit tests need no large payloads.
LIMITS = {"max_body_bytes": 256 * 1024, "max_batch": 8, "max_image_pixels": 1_000_000}


@pytest.fixture(scope="session")
def run_dir(trained_run) -> Path:
    return trained_run


@pytest.fixture(scope="session")
def model(trained_model):
    return trained_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(run_dir, tmp_path_factory):
    """`digitnet serve` as a user starts it, in its own process; yields its base URL."""
    port = free_port()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    src = str(Path(digitnet.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(run_dir),
                                 "--port", str(port), *flags], stdout=out, stderr=out, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"digitnet serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c
