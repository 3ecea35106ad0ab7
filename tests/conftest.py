"""Shared fixtures: the real embedded MNIST and one model trained on it, once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist():
    from digitnet import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist) -> Path:
    """The tutorial's model after one epoch on full MNIST (about 2 s), saved as a run dir."""
    import digitnet
    from digitnet.train import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "tutorial-1epoch"
    digitnet.fit(config=TrainConfig(epochs=1), dataset=mnist, out=out, verbose=False)
    return out


@pytest.fixture(scope="session")
def trained_model(trained_run):
    import digitnet

    return digitnet.load(trained_run)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`digitnet ARGS…` in a fresh process, with this checkout's sources first on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "digitnet", *args], capture_output=True,
                          text=True, cwd=cwd, env=full_env, timeout=timeout)
