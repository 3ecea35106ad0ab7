"""Where a sweep's trials train: in this process, in worker processes, or as Ray tasks.

Trials of the same shapes are grouped (group_jobs) and each group trains as one population
(digitnet.population). Every backend runs the same function, `execute_group`, which trains a
group in temporary run directories and returns each directory's files as bytes; the driver
writes them into the sweep directory. So a trial's result does not depend on where it ran,
and a Ray worker needs no shared filesystem.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """Train one trial (see execute_group)."""
    return execute_group([(options, start)])[0]


def execute_group(items: list[tuple[dict[str, Any], Files | None]],
                  devices: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Train trials of one shape group together (digitnet.population), each in a temporary run
    directory; return, per trial, its metrics and its run directory's files as bytes, for the
    driver to write into the sweep directory. `start` is an earlier run directory's files (with
    its checkpoint) to continue from. Errors the user can cause (a diverging learning rate)
    are a result, not a crash, and fail only their trial. `devices`: where the group trains
    (digitnet.population.fit_population; default: every device of JAX's default backend)."""
    import jax

    from digitnet.api import finish_run, setup_run
    from digitnet.data.datasets import load_dataset
    from digitnet.population import fit_members, member_of, population_doc

    t0 = time.perf_counter()
    results: list[dict[str, Any] | None] = [None] * len(items)

    def failed(exc: Exception) -> dict[str, Any]:
        return {"status": "failed", "error": str(exc), "metrics": {}, "files": {},
                "wall_seconds": time.perf_counter() - t0}

    def finish(setup: Any, m: Any) -> dict[str, Any]:
        """A trained member's run directory, saved and read back as bytes."""
        if m.error is not None:
            return failed(m.error)
        try:
            # on this group's device, not the default one (another group may train there)
            with jax.default_device(devices[0]) if devices else contextlib.nullcontext():
                model = finish_run(setup, m.state, m.seconds / m.together, population_doc(m))
        except DigitnetError as exc:
            return failed(exc)
        files = {p.name: p.read_bytes() for p in sorted(setup.run_dir.iterdir()) if p.is_file()}
        return {"status": "complete", "metrics": model.config["metrics"], "files": files,
                "wall_seconds": m.seconds / m.together}

    with tempfile.TemporaryDirectory(prefix="digitnet-trials-") as tmp:
        setups, datasets, cache = {}, {}, {}
        for i, (options, start) in enumerate(items):
            run_dir = Path(tmp) / f"run-{i}"
            for name, data in (start or {}).items():
                art.atomic_write_bytes(run_dir / name, data)
            try:
                spec, cfg, run = resolve(options)
                where = (run.get("dataset", "mnist"), run.get("data_dir"))
                if where not in datasets:
                    datasets[where] = load_dataset(*where)
                setups[i] = setup_run(spec, cfg, datasets[where], data_dir=run.get("data_dir"),
                                      out=run_dir, resume=bool(start), verbose=False,
                                      callbacks=None, recipe=None, stats_cache=cache)
            except DigitnetError as exc:
                results[i] = failed(exc)
        by_data: dict[int, list[int]] = {}
        for i, s in setups.items():
            by_data.setdefault(id(s.ds), []).append(i)
        for idx in by_data.values():
            members = {i: member_of(setups[i]) for i in idx}
            ds = setups[idx[0]].ds
            try:
                fit_members(list(members.values()), ds.x_train, ds.y_train, devices=devices)
            except DigitnetError as exc:
                for i in idx:
                    results[i] = failed(exc)
                continue
            # Each run directory's files are fsynced: saved side by side, the waits overlap.
            with ThreadPoolExecutor(max_workers=min(8, len(members)),
                                    thread_name_prefix="digitnet-save") as pool:
                for i, result in zip(members, pool.map(finish, [setups[i] for i in members],
                                                       members.values()), strict=True):
                    results[i] = result
    return [r for r in results if r is not None]


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that can train as one population (digitnet.population.group_key, the same data and
    both resuming or both not), in the order of their first job. The groups do not depend on
    the backend or the number of workers, so neither does any trial's result."""
    from digitnet.population import group_key

    groups: dict[Any, list[Job]] = {}
    for job in jobs:
        trial, start = job
        try:
            spec, cfg, run = resolve(trial.options)
            key: Any = (group_key(spec, cfg), run.get("dataset", "mnist"), run.get("data_dir"),
                        start is not None)
        except DigitnetError:
            key = ("alone", trial.id)  # execute reports its error
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def execute_jobs(group: list[Job], devices: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    return execute_group([(t.options, start) for t, start in group], devices)


def group_cost(group: list[Job]) -> float:
    """A group's training work, for ordering: members × epochs × parameters (each an example's
    multiply-adds)."""
    cost = 0.0
    for trial, _ in group:
        try:
            spec, cfg, _ = resolve(trial.options)
            cost += cfg.epochs * spec.num_params
        except DigitnetError:
            pass
    return cost


Job = tuple[Trial, Files | None]
Outcome = tuple[Trial, dict[str, Any]]


def run_local(jobs: list[Job]) -> Iterator[Outcome]:
    """Every group in this process: with several devices (runtime.population_devices: one
    single-threaded CPU device per core) and several groups, each group trains whole on one
    device, a thread per device taking the largest group left (run_on_devices); else one group
    after the other, each spread over the devices."""
    groups = group_jobs(jobs)
    import jax

    devices = jax.local_devices()
    if len(groups) > 1 and len(devices) > 1:
        yield from run_on_devices(groups, devices[: len(groups)])
        return
    for group in groups:
        yield from zip([t for t, _ in group], execute_jobs(group), strict=True)


def run_on_devices(groups: list[list[Job]], devices: Sequence[Any]) -> Iterator[Outcome]:
    """The groups trained side by side, one per device, largest first (each device then takes
    the largest one left), as they finish. A group on one device trains as in a worker process
    (one thread), so its results are those of `--workers`, bit for bit; the devices run their
    groups with no hand-offs between them, and no member is padded. A failure other than a
    trial's own error stops the others from starting a new group and is raised here."""
    import queue
    import threading

    import jax

    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in sorted(range(len(groups)), key=lambda i: -group_cost(groups[i])):
        todo.put(i)
    done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def work(device: Any) -> None:
        with jax.default_device(device):
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((i, execute_jobs(groups[i], [device])))
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    done.put((i, exc))
                    return

    threads = [threading.Thread(target=work, args=(d,), name=f"digitnet-device-{d.id}", daemon=True)
               for d in devices]
    for t in threads:
        t.start()
    try:
        for _ in groups:
            i, results = done.get()
            if isinstance(results, BaseException):
                raise results
            yield from zip([t for t, _ in groups[i]], results, strict=True)
    finally:
        # Ctrl-C or a failure: no new group starts; one in flight cannot be stopped and its
        # result is dropped (the threads are daemons: they end with the process).
        stop.set()
    for t in threads:
        t.join()


def run_processes(jobs: list[Job], workers: int) -> Iterator[Outcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from digitnet.runtime import one_xla_thread

    # spawn, not fork: JAX's runtime threads do not survive a fork.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=one_xla_thread)
    try:
        pending = {pool.submit(execute_jobs, group): group for group in group_jobs(jobs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                group = pending.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool as exc:
                    raise DigitnetError(f"a worker process died running trial {group[0][0].id} "
                                        f"and {len(group) - 1} more ({exc}); finished trials are "
                                        "saved, rerun to resume") from None
                yield from zip([t for t, _ in group], results, strict=True)
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
    pending: dict[Any, list[Job]] = {}
    try:
        from digitnet.runtime import ONE_XLA_THREAD

        # A task (a group of trials trained together) holds one CPU, so its XLA gets one
        # thread (see runtime.one_xla_thread).
        remote = ray.remote(num_cpus=1, max_retries=1,
                            runtime_env={"env_vars": ONE_XLA_THREAD})(execute_group)
        pending.update((remote.remote([(t.options, start) for t, start in group]), group)
                       for group in group_jobs(jobs))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                group = pending.pop(ref)
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise DigitnetError(f"trial {group[0][0].id} and {len(group) - 1} more failed "
                                        f"on Ray ({first}); finished trials are saved, rerun to "
                                        "resume") from None
                yield from zip([t for t, _ in group], results, strict=True)
    finally:
        for ref in pending:
            ray.cancel(ref)
        ray.shutdown()
