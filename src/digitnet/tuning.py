"""This machine's identity and the engine settings `digitnet calibrate` stored for it.

A stored choice lives in $DIGITNET_HOME/calibration.json under a key made of the CPU's model and
flags, the cores this process may use, and the versions of Python, JAX, jaxlib, NumPy, Optax and
digitnet, so another CPU or an upgrade finds none (and runs the defaults). runtime reads the
XLA threading from here before JAX starts, EngineSettings.default the steps per loop iteration
and the split of the first kernel's gradient;
digitnet.calibrate measures and writes. JAX-free and cheap: one small file and /proc/cpuinfo.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = 1
FILE = "calibration.json"
# digitnet's default XLA flags for the CPU (docs/performance.md, "What digitnet does for speed"):
# the step's products on the calling thread, its ops scheduled as one short sequence.
CPU_FLAGS = ("--xla_cpu_multi_thread_eigen=false",
             "--xla_cpu_enable_concurrency_optimized_scheduler=false")
# The environment that sizes XLA's CPU client pool to one thread (runtime.one_xla_thread).
ONE_XLA_THREAD = {"NPROC": "1"}
# Candidates for XLA's CPU client, each the XLA flags and environment it starts with. "default"
# is what an uncalibrated digitnet runs (runtime.CPU_FLAGS).
THREADING: Mapping[str, tuple[tuple[str, ...], Mapping[str, str]]] = {
    "default": (CPU_FLAGS, {}),
    # The step's ops in sequence on one thread of XLA's pool (what sweep workers use).
    "one-thread": (CPU_FLAGS, ONE_XLA_THREAD),
    # JAX's own defaults: Eigen's threaded products, the concurrency-minded scheduler.
    "jax-default": ((), {}),
}
DEFAULT = {"threading": "default", "unroll": 2, "split_rows": 0}
VERSIONED = ("jax", "jaxlib", "numpy", "optax", "digitnet")


def cpu_info() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (Linux); {} elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def machine() -> dict[str, Any]:
    """What a stored choice depends on: the CPU, the cores this process may use, the versions."""
    info = cpu_info()
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        # Family/model/stepping tell apart CPUs that a hypervisor names alike ("AMD EPYC").
        "cpu_id": "/".join(info.get(k, "?") for k in ("vendor_id", "cpu family", "model", "stepping")),
        "flags": sorted(info.get("flags", "").split()),
        "cores": cores,
        "system": platform.system(),
        "versions": versions,
    }


def machine_key(m: Mapping[str, Any] | None = None) -> str:
    m = machine() if m is None else m
    return hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:16]


def simd_flags(m: Mapping[str, Any]) -> list[str]:
    """The flags that decide XLA's kernels (vector extensions), for people to read."""
    return [f for f in m.get("flags", ()) if f.startswith(("avx", "amx", "fma", "f16c", "sse4"))]


def store_path() -> Path:
    from digitnet.data.datasets import home

    return home() / FILE


def read_store() -> dict[str, Any]:
    try:
        store = json.loads(store_path().read_bytes())
    except (OSError, ValueError):
        return {"format": FORMAT, "choices": {}}
    if not isinstance(store, dict) or store.get("format") != FORMAT or \
            not isinstance(store.get("choices"), dict):
        return {"format": FORMAT, "choices": {}}
    return store


@lru_cache(maxsize=1)
def chosen() -> dict[str, Any] | None:
    """This machine's stored choice ({"threading": name, "unroll": n, ...}), or None; read once
    per process."""
    entry = read_store()["choices"].get(machine_key())
    if not isinstance(entry, dict) or entry.get("threading") not in THREADING or \
            not isinstance(entry.get("unroll"), int) or entry["unroll"] < 1 or \
            not isinstance(entry.get("split_rows", 0), int) or entry.get("split_rows", 0) < 0:
        return None
    return entry


def chosen_for(sizes: Sequence[int] | None, batch: int | None) -> dict[str, Any] | None:
    """The stored choice when it was measured on these layer sizes and batch size, else None
    (also when the shapes are not known: None)."""
    entry = chosen()
    if entry and sizes is not None and list(entry.get("sizes", ())) == list(sizes) and \
            entry.get("batch") == batch:
        return entry
    return None


def threading_env(sizes: Sequence[int] | None = None,
                  batch: int | None = None) -> tuple[tuple[str, ...], dict[str, str]]:
    """(XLA flags, environment) for XLA's CPU client, for a process that trains these layer
    sizes at this batch size: the stored choice's when it was calibrated on them, else the
    default's. The threading holds for the whole process, and a one-thread pool trains other
    last bits than the default's unless the first kernel's gradient is split for the shapes at
    hand (calibrate.find_split); so a model of other shapes, or a process whose shapes are not
    known, gets the default's threading and trains the bits of an uncalibrated run."""
    entry = chosen_for(sizes, batch)
    flags, env = THREADING[entry["threading"] if entry else "default"]
    return flags, dict(env)


def active_threading(environ: Mapping[str, str] | None = None) -> str | None:
    """The THREADING candidate that this process's environment sets up for XLA (XLA_FLAGS,
    NPROC), or None when it matches none (the user's own flags or pool size)."""
    environ = os.environ if environ is None else environ
    given = set(environ.get("XLA_FLAGS", "").split())
    ours = {f for flags, _ in THREADING.values() for f in flags}
    for name, (flags, env) in THREADING.items():
        if given & ours == set(flags) and environ.get("NPROC") == env.get("NPROC"):
            return name
    return None


def chosen_settings(sizes: list[int] | tuple[int, ...], batch: int) -> tuple[int, int] | None:
    """The stored choice's (steps per loop iteration, split rows of the first kernel's gradient:
    digitnet.engine.EngineSettings), when it was measured on these layer sizes and batch size
    and this process runs the XLA threading it was measured with (the split gives the default's
    bits only on its own threading); None otherwise (the engine's defaults then)."""
    entry = chosen_for(sizes, batch)
    if entry and active_threading() == entry["threading"]:
        return int(entry["unroll"]), int(entry.get("split_rows", 0))
    return None


def chosen_unroll(sizes: list[int] | tuple[int, ...], batch: int) -> int | None:
    """The stored choice's steps per loop iteration for these layer sizes and batch, or None."""
    found = chosen_settings(sizes, batch)
    return found[0] if found else None


def save(entry: Mapping[str, Any], key: str | None = None) -> Path:
    """Store a choice for this machine (or `key`), keeping other machines' choices."""
    from digitnet.files import atomic_write_bytes

    store = read_store()
    store["choices"][key or machine_key()] = dict(entry)
    path = store_path()
    atomic_write_bytes(path, json.dumps(store, indent=1).encode())
    chosen.cache_clear()
    return path
