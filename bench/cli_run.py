"""The `digitnet` command as a user meets it: `digitnet train` end to end (process start →
5 epochs → model saved), its peak RSS, the same command again with the persistent
compilation cache warm, and `digitnet --help`."""

from __future__ import annotations

import os
import re
import shutil
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
    return {"wall": r.wall, "cpu": r.cpu, "rss_mib": r.rss_mib, "test_accuracy": float(m.group(1))}


def new_home(path: str) -> str:
    """A fresh digitnet home that holds only this machine's `digitnet calibrate` choice, if one
    is stored in the bench's own home: a setting of the machine, as the user's runs have it,
    not a cache (no data, no compiled programs)."""
    from digitnet import tuning

    os.makedirs(path, exist_ok=True)
    if tuning.store_path().is_file():
        shutil.copy(tuning.store_path(), os.path.join(path, tuning.FILE))
    return path


def measure(n: int, log=print) -> dict:
    """n rounds of, each with a fresh home: `digitnet train` with nothing cached (cold), again
    (warm: compiled programs and the unpacked data cached), and again with only the compile
    cache emptied (cold_compile: what a first run is once the data is cached, e.g. after an
    upgrade)."""
    cold, warm, cold_compile, helps = [], [], [], []
    for i in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            home = new_home(os.path.join(tmp, "home"))
            cold.append(train_once(home, Path(tmp) / "run1"))
            warm.append(train_once(home, Path(tmp) / "run2"))
            shutil.rmtree(os.path.join(home, "jax-cache"))
            cold_compile.append(train_once(home, Path(tmp) / "run3"))
        helps.append(digitnet("--help").wall)
        log(f"  digitnet train run {i + 1}/{n}: {cold[-1]['wall']:.2f} s (empty home), "
            f"{warm[-1]['wall']:.2f} s (warm), {cold_compile[-1]['wall']:.2f} s (empty compile "
            f"cache), peak RSS {cold[-1]['rss_mib']:.0f} MiB")
    return {"cold": cold, "warm": warm, "cold_compile": cold_compile, "help": helps}
