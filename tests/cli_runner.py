"""Run the `digitnet` command as a user would, in a fresh process, on this checkout's sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`digitnet ARGS…` in a fresh process, with this checkout's sources first on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "digitnet", *args], capture_output=True,
                          text=True, cwd=cwd, env=full_env, timeout=timeout)
