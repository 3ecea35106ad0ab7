"""How digitnet sets up JAX before its first computation: XLA's CPU threading and the
persistent compilation cache. See docs/performance.md for the measurements behind both.

Opt-outs (environment):
  DIGITNET_COMPILE_CACHE=0   no persistent compilation cache
  DIGITNET_XLA_THREADS=auto  leave XLA's CPU threading at JAX's default
  DIGITNET_FUSED_STEP=0      train with XLA's step on a GPU too (see fused_step)
  DIGITNET_POPULATION_DEVICES=1  populations on one CPU device (see population_devices)
  DIGITNET_SEED_PROCESSES=1  `train --seeds` in one process (see digitnet.cli.seed_workers)
  XLA_FLAGS                  flags given here are kept; ours are only added when absent
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from digitnet import tuning
from digitnet.tuning import CPU_FLAGS, ONE_XLA_THREAD  # noqa: F401 - re-exported here

# CPU_FLAGS, defined in digitnet.tuning beside `digitnet calibrate`'s other candidates:
# The tutorial's GEMMs (batch 32 × ≤784 × 64) are too small to split across cores: Eigen's
# thread pool spends more on hand-offs and work stealing than it saves, and on a shared
# machine a step that waits for a second, busy core stalls. For the same reason XLA's
# scheduler does better ordering the step's small ops as one short sequence than arranging
# them to run side by side. Both are levers of bench/levers.py (docs/performance.md).


def set_cpu_threading(sizes: Sequence[int] | None = None, batch: int | None = None) -> bool:
    """Set up XLA's CPU client for this machine, if JAX has not started yet: for a process that
    trains layer `sizes` at `batch`, the threading that `digitnet calibrate` chose and stored for
    this CPU, these versions and these shapes (digitnet.tuning.threading_env), else digitnet's
    default, CPU_FLAGS (also when the shapes are not known). Flags are added to XLA_FLAGS where
    absent; an NPROC the user set is kept.

    XLA reads XLA_FLAGS once, when its CPU backend starts, so this only works before
    `import jax`; returns whether the settings were applied. GPU backends ignore these flags.
    """
    if "jax" in sys.modules or os.environ.get("DIGITNET_XLA_THREADS", "").lower() == "auto":
        return False
    flags, env = tuning.threading_env(sizes, batch)
    given = os.environ.get("XLA_FLAGS", "")
    extra = [f for f in flags if f.split("=")[0] not in given]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([given, *extra]).strip()
    for name, value in env.items():
        os.environ.setdefault(name, value)
    return True


def one_xla_thread() -> None:
    """Give XLA's CPU client a pool of one thread, in a worker process that shares the machine's
    cores with other workers (a sweep's). The pool runs independent parts of a step side by
    side: alone that saves some wall time for much more CPU time, which workers filling every
    core cannot spare (bench/sweep_workers.py, docs/sweeps.md). XLA sizes the pool from NPROC,
    else the core count, when its CPU backend starts, so this must run before the worker's
    first computation; an NPROC the user set is kept."""
    for name, value in ONE_XLA_THREAD.items():
        os.environ.setdefault(name, value)


def gpu_backend_possible() -> bool:
    """Whether JAX may start on something other than the CPU, told before it starts: JAX_PLATFORMS
    names another platform first, or (unset) a GPU plugin is installed (jax_plugins, or the
    jax_cuda/jax_rocm packages)."""
    import importlib.util
    import pkgutil

    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0].strip() != "cpu"
    if any(importlib.util.find_spec(name) is not None for name in
           ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin")):
        return True
    try:
        spec = importlib.util.find_spec("jax_plugins")
    except (ImportError, ValueError):
        return False
    return spec is not None and any(True for _ in pkgutil.iter_modules(spec.submodule_search_locations))


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def per_core(members: int, *caps: str) -> int:
    """Into how many single-threaded parts, one per core, a population of `members` splits:
    at most one per member, capped by DIGITNET_POPULATION_DEVICES and the other environment
    variables named in `caps` (N: at most N; 1: not split)."""
    limits = [os.environ.get(name, "").strip() for name in ("DIGITNET_POPULATION_DEVICES", *caps)]
    return max(1, min(cpu_cores(), members, *(int(c) for c in limits if c.isdigit())))


def population_devices(members: int) -> int:
    """Split XLA's CPU client into one single-threaded device per core (at most `members`), in
    a process about to train populations (train --ensemble, train --seeds kept in one process:
    cli.seed_workers, an in-process sweep): a population's
    members are then sharded over the devices, each core running whole members, which costs
    less CPU than one device's pool running a step's small ops side by side
    (docs/population.md). Must run before JAX starts; XLA_FLAGS or an NPROC the user set win.
    A lone model in such a process trains on one device, with the one-thread pool's bits (as
    in a sweep's worker). DIGITNET_POPULATION_DEVICES=N caps the devices (1: off). Returns the
    number of devices asked for (1: nothing changed)."""
    n = per_core(members)
    given = os.environ.get("XLA_FLAGS", "")
    if n < 2 or "jax" in sys.modules or "xla_force_host_platform_device_count" in given:
        return 1
    os.environ["XLA_FLAGS"] = f"{given} --xla_force_host_platform_device_count={n}".strip()
    one_xla_thread()
    return n


def compile_cache_dir() -> Path | None:
    """Where compiled programs are kept across runs: home()/jax-cache, or None when off."""
    if os.environ.get("DIGITNET_COMPILE_CACHE", "1").lower() in ("0", "false", "no", "off"):
        return None
    from digitnet.data.datasets import home

    return home() / "jax-cache"


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in digitnet's cache dir (idempotent).

    JAX by default only persists programs that took ≥ 1 s to compile; digitnet's each take
    less, yet together they are most of a short run's start-up, so every program is kept.
    A cache the user configured themselves (jax_compilation_cache_dir) is left alone.
    """
    path = compile_cache_dir()
    if path is None:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: run without the cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def fused_step() -> str | None:
    """How training steps that digitnet.fused covers run: "gpu" (its Triton kernels; the
    default on an NVIDIA GPU from Ampere on, compute capability ≥ 8.0), None (XLA's step:
    CPUs, other GPUs, DIGITNET_FUSED_STEP=0), or "interpret" (DIGITNET_FUSED_STEP=interpret:
    the kernels in Pallas' interpreter, on any backend; slow, for tests)."""
    env = os.environ.get("DIGITNET_FUSED_STEP", "").lower()
    if env == "interpret":
        return "interpret"
    import jax

    if env in ("0", "off", "false", "no") or jax.default_backend() != "gpu":
        return None
    # A GPU without a CUDA compute capability of 8.0 or more gets XLA's step.
    major = str(getattr(jax.devices()[0], "compute_capability", "0")).split(".")[0]
    if not (major.isdigit() and int(major) >= 8):
        return None
    try:
        import digitnet.fused  # noqa: F401 - a JAX without this Pallas API trains with XLA's step
    except (ImportError, AttributeError):
        return None
    return "gpu"
