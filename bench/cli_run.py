"""The `digitnet` command as a user meets it: `digitnet train` end to end (process start →
5 epochs → model saved), its peak RSS, the same command again with the persistent
compilation cache warm, and `digitnet --help`."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from bench.proc import Result, run

SRC = str(Path(__file__).resolve().parents[1] / "src")


def digitnet(*args: str, home: str | None = None) -> Result:
    env = {"PYTHONPATH": SRC}
    if home:
        env["DIGITNET_HOME"] = home
    return run([sys.executable, "-m", "digitnet", *args], env=env)


def train_once(home: str, out: Path) -> dict:
    r = digitnet("train", "--quiet", "--out", str(out), home=home)
    if r.returncode != 0:
        raise RuntimeError(f"digitnet train failed: {r.stderr.strip()[-500:]}")
    m = re.search(r"test accuracy ([0-9.]+)", r.stdout)
    return {"wall": r.wall, "rss_mib": r.rss_mib, "test_accuracy": float(m.group(1))}


def measure(n: int, log=print) -> dict:
    """n rounds of: an empty cache dir, `digitnet train` (cold), `digitnet train` (warm)."""
    cold, warm, helps = [], [], []
    for i in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            cold.append(train_once(os.path.join(tmp, "home"), Path(tmp) / "run1"))
            warm.append(train_once(os.path.join(tmp, "home"), Path(tmp) / "run2"))
        helps.append(digitnet("--help").wall)
        log(f"  digitnet train run {i + 1}/{n}: {cold[-1]['wall']:.2f} s (empty cache), "
            f"{warm[-1]['wall']:.2f} s (warm cache), peak RSS {cold[-1]['rss_mib']:.0f} MiB")
    return {"cold": cold, "warm": warm, "help": helps}
