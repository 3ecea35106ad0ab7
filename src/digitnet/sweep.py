"""Sweeps: a base config plus axes → trials; each trial a run directory; results after each trial.

A sweep file (TOML):

    seeds = [1, 2, 3]              # every point is trained once per seed (or: repeats = 3)

    [base]                         # flat options, as `digitnet train --config` takes
    epochs = 5
    hidden = [64, 64]

    [grid.learning_rate]           # a grid: the product of its axes
    lr = [0.001, 0.005]

    [grid.batch_and_epochs]        # `points`: values that change together
    points = [{epochs = 5, batch_size = 32}, {epochs = 10, batch_size = 64}]

    [random.search]                # random sampling (reproducible: `seed`, default 0)
    samples = 8
    lr = {loguniform = [1e-4, 1e-2]}
    dropout = {uniform = [0.0, 0.5]}
    hidden = [[64], [128, 128]]    # a list: choose one

A trial is identified by a hash of its full, normalized config, so a rerun skips every finished
trial, and a point shared by several groups (the base, typically) is trained once.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitnet import artifacts as art
from digitnet.config import read_toml, split_options
from digitnet.errors import ConfigError, DigitnetError

FORMAT = "digitnet-sweep"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
TRIALS = "trials"
TOP_KEYS = {"base", "grid", "random", "seeds", "repeats"}
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "accuracy", "loss", "epochs",
           "train_seconds")
# results.csv has one column per option too, so the metric `epochs` (how many ran) is renamed.
CSV_METRICS = {k: "epochs_trained" if k == "epochs" else k for k in METRICS}


@dataclass
class Trial:
    id: str
    options: dict[str, Any]  # full flat options: base + point + seed
    groups: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The trials of a sweep, in a fixed order, and which axes each group varies."""

    trials: list[Trial]
    groups: dict[str, dict[str, Any]]  # name -> {"kind": "grid"|"random", "axes": [...]}


def normalized(options: dict[str, Any]) -> dict[str, Any]:
    """Every option a trial trains with, defaults filled in and values in canonical form."""
    spec, cfg, run = split_options(options)
    model = {k: v for k, v in spec.to_dict().items() if k not in ("input_shape", "num_classes")}
    return {**model, **cfg.to_dict(), "dataset": run.get("dataset", "mnist"),
            "data_dir": str(Path(run["data_dir"]).resolve()) if run.get("data_dir") else None}


def trial_id(options: dict[str, Any]) -> str:
    """A stable hash of what the trial trains, so that `lr = 0.001` and leaving lr at its
    default are the same trial."""
    text = json.dumps(normalized(options), sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sample(dist: Any, rng: random.Random, where: str) -> Any:
    if isinstance(dist, list):
        if not dist:
            raise ConfigError(f"{where}: empty list of choices")
        return dist[rng.randrange(len(dist))]
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: expected a list of choices or one of "
                          f"{{{' | '.join(f'{d} = [...]' for d in DISTRIBUTIONS)}}}, got {dist!r}")
    (kind, args), = dist.items()
    if kind == "choice":
        return sample(args, rng, where)
    if not (isinstance(args, list) and len(args) == 2
            and all(isinstance(a, int | float) for a in args) and args[0] <= args[1]):
        raise ConfigError(f"{where}: {kind} needs [low, high] with low <= high, got {args!r}")
    lo, hi = args
    if kind == "int":
        return rng.randint(int(lo), int(hi))
    if kind == "uniform":
        return rng.uniform(lo, hi)
    if lo <= 0:
        raise ConfigError(f"{where}: loguniform bounds must be positive, got {args!r}")
    return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.6g}")


def grid_points(name: str, table: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    axes, choices = [], []
    for key, values in table.items():
        if key == "points":
            if not (isinstance(values, list) and values and all(isinstance(v, dict) for v in values)):
                raise ConfigError(f"grid.{name}.points: expected a list of tables")
            axes.append(", ".join(dict.fromkeys(k for v in values for k in v)))
            choices.append(values)
        else:
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid.{name}.{key}: expected a non-empty list of values")
            axes.append(key)
            choices.append([{key: v} for v in values])
    if not choices:
        raise ConfigError(f"grid.{name}: no axes")
    points = [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*choices)]
    return axes, points


def random_points(name: str, table: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    table = dict(table)
    samples = table.pop("samples", None)
    rng = random.Random(table.pop("seed", 0))
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"random.{name}: `samples` must be a positive integer")
    if not table:
        raise ConfigError(f"random.{name}: no axes")
    points = [{k: sample(d, rng, f"random.{name}.{k}") for k, d in table.items()}
              for _ in range(samples)]
    return list(table), points


def make_plan(doc: dict[str, Any], data_dir: str | None = None) -> Plan:
    """Expand a sweep document into trials; every trial's options are validated here, so a
    bad value fails before anything trains."""
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown sweep key(s): {', '.join(sorted(unknown))} "
                          f"(expected {', '.join(sorted(TOP_KEYS))})")
    base = dict(doc.get("base", {}))
    if data_dir is not None:
        base["data_dir"] = data_dir
    base.pop("out", None)  # every trial has its own run directory
    if "seeds" in doc and "repeats" in doc:
        raise ConfigError("give either seeds or repeats, not both")
    seeds = doc.get("seeds") or list(range(1, int(doc.get("repeats", 1)) + 1))
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError("seeds must be a list of integers")

    groups: dict[str, dict[str, Any]] = {}
    pointsets: list[tuple[str, list[dict[str, Any]]]] = []
    for kind, expand in (("grid", grid_points), ("random", random_points)):
        tables = doc.get(kind, {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            raise ConfigError(f"[{kind}.NAME] sections expected, e.g. [{kind}.learning_rate]")
        for name, table in tables.items():
            if name in groups:
                raise ConfigError(f"group name {name!r} is used twice")
            axes, points = expand(name, table)
            groups[name] = {"kind": kind, "axes": axes}
            pointsets.append((name, points))
    if not pointsets:
        groups["base"] = {"kind": "grid", "axes": []}
        pointsets.append(("base", [{}]))

    trials: dict[str, Trial] = {}
    for name, points in pointsets:
        for point in points:
            for seed in seeds:
                options = {**base, "seed": seed, **point}
                try:
                    tid = trial_id(options)
                except DigitnetError as exc:
                    raise ConfigError(f"group {name!r}, point {point}: {exc}") from None
                trial = trials.setdefault(tid, Trial(tid, options))
                if name not in trial.groups:
                    trial.groups.append(name)
    return Plan(list(trials.values()), groups)


def load_plan(path: str | Path, data_dir: str | None = None) -> Plan:
    return make_plan(read_toml(path), data_dir)


# ---- running one trial (in this process, a worker process, or a Ray task) ----------------

def execute(options: dict[str, Any]) -> dict[str, Any]:
    """Train one trial in a temporary run directory; return its metrics and the run
    directory's files as bytes, for the driver to write into the sweep directory. Errors the
    user can cause (a diverging learning rate) are a result, not a crash."""
    from digitnet.api import fit

    spec, cfg, run = split_options(options)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="digitnet-trial-") as tmp:
        run_dir = Path(tmp) / "run"
        try:
            model = fit(spec, cfg, run.get("dataset", "mnist"), data_dir=run.get("data_dir"),
                        out=run_dir, verbose=False)
        except DigitnetError as exc:
            return {"status": "failed", "error": str(exc), "metrics": {}, "files": {},
                    "wall_seconds": time.perf_counter() - t0}
        files = {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())
                 if p.is_file() and p.name != art.CHECKPOINT}
    return {"status": "complete", "metrics": model.config["metrics"], "files": files,
            "wall_seconds": time.perf_counter() - t0}


Outcome = tuple[Trial, dict[str, Any]]


def run_local(trials: list[Trial]) -> Iterator[Outcome]:
    for trial in trials:
        yield trial, execute(trial.options)


def run_processes(trials: list[Trial], workers: int) -> Iterator[Outcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: JAX's runtime threads do not survive a fork.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(execute, t.options): t for t in trials}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
    except BaseException:
        # Ctrl-C reaches the workers too; do not wait for trials that will never finish.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_ray(trials: list[Trial], address: str | None) -> Iterator[Outcome]:
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
        remote = ray.remote(num_cpus=1, max_retries=1)(execute)
        pending.update((remote.remote(t.options), t) for t in trials)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref)
        ray.shutdown()


# ---- the sweep directory --------------------------------------------------------------------

def trial_record(trial: Trial, result: dict[str, Any]) -> dict[str, Any]:
    metrics = result.get("metrics", {})
    return {"id": trial.id, "groups": trial.groups, "status": result["status"],
            "error": result.get("error"), "run_dir": f"{TRIALS}/{trial.id}",
            "options": trial.options,
            "metrics": {k: metrics[k] for k in METRICS if k in metrics},
            "wall_seconds": round(result.get("wall_seconds", 0.0), 3)}


def read_results(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / RESULTS_JSON
    doc = art.read_json(path)
    if doc.get("format") != FORMAT or not isinstance(doc.get("trials"), list):
        raise ConfigError(f"{path}: not a digitnet sweep results file")
    return doc


def finished_records(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Records of trials already finished in `sweep_dir`: failed ones, and complete ones whose
    run directory is intact."""
    if not (sweep_dir / RESULTS_JSON).exists():
        return {}
    out = {}
    for rec in read_results(sweep_dir)["trials"]:
        run_dir = sweep_dir / rec["run_dir"]
        if rec["status"] == "failed" or (run_dir / art.WEIGHTS).is_file():
            out[rec["id"]] = rec
    return out


def csv_rows(records: list[dict[str, Any]]) -> str:
    option_keys = list(dict.fromkeys(k for r in records for k in r["options"]))
    fields = ["id", "groups", "status", *option_keys, *CSV_METRICS.values(), "wall_seconds",
              "run_dir", "error"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = {k: json.dumps(v) if isinstance(v, list) else v for k, v in r["options"].items()}
        row.update({CSV_METRICS[k]: v for k, v in r["metrics"].items()})
        row.update(id=r["id"], groups=";".join(r["groups"]), status=r["status"],
                   wall_seconds=r["wall_seconds"], run_dir=r["run_dir"], error=r["error"] or "")
        w.writerow(row)
    return buf.getvalue()


def write_results(sweep_dir: Path, plan: Plan, done: dict[str, dict[str, Any]],
                  meta: dict[str, Any]) -> None:
    records = [done[t.id] for t in plan.trials if t.id in done]
    doc = {"format": FORMAT, **meta, "groups": plan.groups, "planned": len(plan.trials),
           "finished": len(records), "trials": records}
    art.write_json(sweep_dir / RESULTS_JSON, doc)
    art.atomic_write_bytes(sweep_dir / RESULTS_CSV, csv_rows(records).encode())


def store(sweep_dir: Path, trial: Trial, result: dict[str, Any]) -> dict[str, Any]:
    run_dir = sweep_dir / TRIALS / trial.id
    # config.json last: it is what says the run is complete.
    for name in sorted(result["files"], key=lambda n: n == art.CONFIG):
        art.atomic_write_bytes(run_dir / name, result["files"][name])
    return trial_record(trial, result)


def run_sweep(plan: Plan, sweep_dir: str | Path, *, backend: str = "local", workers: int = 1,
              address: str | None = None, meta: dict[str, Any] | None = None,
              on_trial: Callable[[dict[str, Any], int, int], None] | None = None
              ) -> list[dict[str, Any]]:
    """Run every unfinished trial of `plan`, writing results after each one; return the
    records of all finished trials in plan order. Interrupting (Ctrl-C) loses only the trials
    in flight."""
    sweep_dir = Path(sweep_dir)
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    done = {k: v for k, v in finished_records(sweep_dir).items()
            if k in {t.id for t in plan.trials}}
    meta = {"machine": f"{platform.platform()}, {os.cpu_count()} CPUs", **(meta or {})}
    todo = [t for t in plan.trials if t.id not in done]
    for t in plan.trials:  # groups may have changed since the trial ran
        if t.id in done:
            done[t.id]["groups"] = t.groups
    write_results(sweep_dir, plan, done, meta)
    if on_trial is not None:
        on_trial({}, len(done), len(plan.trials))
    if backend == "ray":
        outcomes = run_ray(todo, address)
    elif workers > 1:
        outcomes = run_processes(todo, workers)
    else:
        outcomes = run_local(todo)
    with contextlib.closing(outcomes):  # on Ctrl-C, stop the backend's work in flight now
        for trial, result in outcomes:
            done[trial.id] = store(sweep_dir, trial, result)
            write_results(sweep_dir, plan, done, meta)
            if on_trial is not None:
                on_trial(done[trial.id], len(done), len(plan.trials))
    return [done[t.id] for t in plan.trials]
