"""Where a sweep's trials train: in this process, in worker processes, or as Ray tasks.

Every backend runs the same function, `execute`, which trains in a temporary run directory and
returns the directory's files as bytes; the driver writes them into the sweep directory. So a
trial's result does not depend on where it ran, and a Ray worker needs no shared filesystem.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitnet import artifacts as art
from digitnet.config import resolve
from digitnet.errors import ConfigError, DigitnetError

Files = dict[str, bytes]


@dataclass
class Trial:
    """One run of a sweep: its id, its full flat options (base + point + seed), its groups."""

    id: str
    options: dict[str, Any]
    groups: list[str] = field(default_factory=list)


def execute(options: dict[str, Any], start: Files | None = None) -> dict[str, Any]:
    """Train one trial in a temporary run directory; return its metrics and the run
    directory's files as bytes, for the driver to write into the sweep directory. `start` is
    an earlier run directory's files (with its checkpoint) to continue from. Errors the user
    can cause (a diverging learning rate) are a result, not a crash."""
    from digitnet.api import fit

    spec, cfg, run = resolve(options)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="digitnet-trial-") as tmp:
        run_dir = Path(tmp) / "run"
        for name, data in (start or {}).items():
            art.atomic_write_bytes(run_dir / name, data)
        try:
            model = fit(spec, cfg, run.get("dataset", "mnist"), data_dir=run.get("data_dir"),
                        out=run_dir, resume=bool(start), verbose=False)
        except DigitnetError as exc:
            return {"status": "failed", "error": str(exc), "metrics": {}, "files": {},
                    "wall_seconds": time.perf_counter() - t0}
        files = {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}
    return {"status": "complete", "metrics": model.config["metrics"], "files": files,
            "wall_seconds": time.perf_counter() - t0}


Job = tuple[Trial, Files | None]
Outcome = tuple[Trial, dict[str, Any]]


def run_local(jobs: list[Job]) -> Iterator[Outcome]:
    for trial, start in jobs:
        yield trial, execute(trial.options, start)


def run_processes(jobs: list[Job], workers: int) -> Iterator[Outcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from digitnet.runtime import one_xla_thread

    # spawn, not fork: JAX's runtime threads do not survive a fork.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=one_xla_thread)
    try:
        pending = {pool.submit(execute, t.options, start): t for t, start in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                trial = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:
                    raise DigitnetError(f"a worker process died running trial {trial.id} ({exc}); "
                                        "finished trials are saved, rerun to resume") from None
                yield trial, result
    except BaseException:
        # Ctrl-C reaches the workers too; do not wait for trials that will never finish.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_ray(jobs: list[Job], address: str | None) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'digitnet[ray]'") from None
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    pending: dict[Any, Trial] = {}
    try:
        from digitnet.runtime import ONE_XLA_THREAD

        # A trial holds one CPU, so its XLA gets one thread (see runtime.one_xla_thread).
        remote = ray.remote(num_cpus=1, max_retries=1,
                            runtime_env={"env_vars": ONE_XLA_THREAD})(execute)
        pending.update((remote.remote(t.options, start), t) for t, start in jobs)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                trial = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise DigitnetError(f"trial {trial.id} failed on Ray ({first}); finished "
                                        "trials are saved, rerun to resume") from None
                yield trial, result
    finally:
        for ref in pending:
            ray.cancel(ref)
        ray.shutdown()
