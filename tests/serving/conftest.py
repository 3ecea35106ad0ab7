"""One real server on the session's trained model (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

# Small limits, so that the limit tests need no large payloads.
# Short client deadlines, so that the stalled-client test sees them act within its wait.
LIMITS = {"max_body_bytes": 256 * 1024, "max_batch": 8, "max_image_pixels": 1_000_000,
          "header_timeout": 3, "body_timeout": 5}


@pytest.fixture(scope="session")
def run_dir(trained_run) -> Path:
    return trained_run


@pytest.fixture(scope="session")
def model(trained_model):
    return trained_model


@pytest.fixture(scope="session")
def server(run_dir, tmp_path_factory):
    """`digitnet serve` as a user starts it, in its own process; yields its base URL."""
    import reliability

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    with reliability.serving(run_dir, tmp_path_factory.mktemp("server"), *flags) as url:
        yield url


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c
