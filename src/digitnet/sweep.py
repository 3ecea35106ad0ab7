"""Sweeps: a base config plus axes → trials; each trial a run directory; results after each trial.

A sweep file (TOML):

    seeds = [1, 2, 3]              # every point is trained once per seed (or: repeats = 3)

    [base]                         # flat options, as `digitnet train --config` takes
    epochs = 5
    hidden = [64, 64]

    [grid.learning_rate]           # a grid: the product of its axes
    description = "What if the learning rate is higher?"   # shown in the report
    lr = [0.001, 0.005]

    [grid.batch_and_epochs]        # `points`: values that change together
    points = [{epochs = 5, batch_size = 32}, {epochs = 10, batch_size = 64}]

    [random.search]                # random sampling (reproducible: `seed`, default 0)
    samples = 8
    lr = {loguniform = [1e-4, 1e-2]}
    dropout = {uniform = [0.0, 0.5]}
    hidden = [[64], [128, 128]]    # a list: choose one

    [halving]                      # optional successive halving over epochs
    min_epochs = 1
    eta = 3

A trial is identified by a hash of its full, normalized config, so a rerun skips every finished
trial, and a point shared by several groups (the base, typically) is trained once. Where trials
train (this process, worker processes, a Ray cluster) is digitnet.executors' job.
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
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitnet import artifacts as art
from digitnet.config import check_keys, read_toml, resolve
from digitnet.errors import ConfigError, DigitnetError
from digitnet.executors import Files, Job, Trial, run_local, run_processes, run_ray
from digitnet.metrics import higher_is_better

FORMAT = "digitnet-sweep"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
TRIALS = "trials"
TOP_KEYS = {"base", "grid", "random", "seeds", "repeats", "halving"}
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "accuracy", "loss", "epochs",
           "train_seconds")
# results.csv has one column per option too, so the metric `epochs` (how many ran) is renamed.
CSV_METRICS = {k: "epochs_trained" if k == "epochs" else k for k in METRICS}
# Trials one sweep file may expand to (points of all groups × seeds), counted before any list of
# them is built: a 60-byte file asking for 10**9 repeats or samples, or a grid of a few long
# axes, would otherwise fill memory or take hours to list.
MAX_TRIALS = 10_000


def check_trials(n: int, what: str) -> None:
    if n > MAX_TRIALS:
        raise ConfigError(f"{what} makes {n:,} trials, more than a sweep may have ({MAX_TRIALS:,})")


@dataclass
class Plan:
    """The trials of a sweep, in a fixed order, and which axes each group varies."""

    trials: list[Trial]
    groups: dict[str, dict[str, Any]]  # name -> {"kind": "grid"|"random", "axes": [...]}
    halving: dict[str, Any] | None = None  # successive halving: min_epochs, eta, metric


def normalized(options: dict[str, Any]) -> dict[str, Any]:
    """Every option a trial trains with, defaults filled in and values in canonical form."""
    spec, cfg, run = resolve(options)
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
            check_keys([k for v in values for k in v], f"grid.{name}.points")
            axes.append(", ".join(dict.fromkeys(k for v in values for k in v)))
            choices.append(values)
        else:
            check_keys([key], f"grid.{name}")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid.{name}.{key}: expected a non-empty list of values")
            axes.append(key)
            choices.append([{key: v} for v in values])
    if not choices:
        raise ConfigError(f"grid.{name}: no axes")
    check_trials(math.prod(map(len, choices)), f"grid.{name}")
    points = [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*choices)]
    return axes, points


def random_points(name: str, table: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    table = dict(table)
    samples = table.pop("samples", None)
    rng = random.Random(table.pop("seed", 0))
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"random.{name}: `samples` must be a positive integer")
    check_trials(samples, f"random.{name}")
    if not table:
        raise ConfigError(f"random.{name}: no axes")
    check_keys(table, f"random.{name}")
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
    if not isinstance(doc.get("base", {}), dict):
        raise ConfigError("[base] must be a table of options")
    base = dict(doc.get("base", {}))
    check_keys(base, "[base]")
    if data_dir is not None:
        base["data_dir"] = data_dir
    base.pop("out", None)  # every trial has its own run directory
    if "seeds" in doc and "repeats" in doc:
        raise ConfigError("give either seeds or repeats, not both")
    repeats = doc.get("repeats", 1)
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError("repeats must be a positive integer")
    check_trials(repeats, "repeats")
    seeds = doc.get("seeds", list(range(1, repeats + 1)))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError("seeds must be a non-empty list of integers")

    groups: dict[str, dict[str, Any]] = {}
    pointsets: list[tuple[str, list[dict[str, Any]]]] = []
    for kind, expand in (("grid", grid_points), ("random", random_points)):
        tables = doc.get(kind, {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            raise ConfigError(f"[{kind}.NAME] sections expected, e.g. [{kind}.learning_rate]")
        for name, table in tables.items():
            if name in groups:
                raise ConfigError(f"group name {name!r} is used twice")
            table = dict(table)
            description = table.pop("description", "")
            if not isinstance(description, str):
                raise ConfigError(f"{kind}.{name}.description must be a string")
            axes, points = expand(name, table)
            groups[name] = {"kind": kind, "axes": axes, "description": description}
            pointsets.append((name, points))
    if not pointsets:
        groups["base"] = {"kind": "grid", "axes": [], "description": ""}
        pointsets.append(("base", [{}]))
    check_trials(sum(len(points) for _, points in pointsets) * len(seeds), "the sweep")

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
    halving = parse_halving(doc.get("halving"))
    if halving and any(t.options.get("schedule", "constant") != "constant" for t in trials.values()):
        # a rung continues from the last one's checkpoint; a decaying schedule would differ
        # from training the whole length at once
        raise ConfigError("[halving] needs the constant learning-rate schedule")
    return Plan(list(trials.values()), groups, halving)


def load_plan(path: str | Path, data_dir: str | None = None) -> Plan:
    return make_plan(read_toml(path), data_dir)


# ---- the sweep directory --------------------------------------------------------------------

def trial_record(trial: Trial, result: dict[str, Any]) -> dict[str, Any]:
    metrics = result.get("metrics", {})
    return {"id": trial.id, "groups": trial.groups, "status": result["status"],
            "error": result.get("error"), "run_dir": f"{TRIALS}/{trial.id}",
            "options": trial.options,
            "metrics": {k: metrics[k] for k in METRICS if k in metrics},
            "wall_seconds": round(result.get("wall_seconds", 0.0), 3)}


def read_results(sweep_dir: Path) -> dict[str, Any]:
    """results.json, with every field that the report and a resumed sweep read checked: a file
    in a folder someone else made must fail in one line, not in a KeyError deep in a report."""
    path = Path(sweep_dir) / RESULTS_JSON
    doc = art.read_json(path)
    if doc.get("format") != FORMAT or not isinstance(doc.get("trials"), list):
        raise ConfigError(f"{path}: not a digitnet sweep results file")
    problem = results_problem(doc)
    if problem:
        raise ConfigError(f"{path}: not a valid sweep results file ({problem})")
    return doc


def results_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with a results document's structure, or None."""
    def number(v: Any) -> bool:
        return type(v) in (int, float) and math.isfinite(v)

    trials, groups = doc["trials"], doc.get("groups")
    if len(trials) > MAX_TRIALS:
        return f"{len(trials):,} trials, more than a sweep may have ({MAX_TRIALS:,})"
    if not (type(doc.get("planned")) is int and type(doc.get("finished")) is int):
        return "planned and finished must be integers"
    if not isinstance(groups, dict) or not all(
            isinstance(g, dict) and g.get("kind") in ("grid", "random")
            and isinstance(g.get("axes"), list) and all(isinstance(a, str) for a in g["axes"])
            and isinstance(g.get("description", ""), str) for g in groups.values()):
        return "groups must map names to {kind, axes, description}"
    for i, r in enumerate(trials):
        ok = (isinstance(r, dict) and isinstance(r.get("id"), str)
              and r.get("run_dir") == f"{TRIALS}/{r['id']}" and r["id"].isalnum()
              and r.get("status") in ("complete", "failed", "promoted", "stopped")
              and isinstance(r.get("options"), dict)
              and isinstance(r.get("groups"), list) and all(isinstance(g, str) for g in r["groups"])
              and isinstance(r.get("metrics"), dict) and r["metrics"].keys() <= set(METRICS)
              and all(number(v) for v in r["metrics"].values())
              and (r.get("status") == "failed" or {"test_accuracy", "train_seconds"} <= r["metrics"].keys())
              and isinstance(r.get("error"), str | None) and number(r.get("wall_seconds")))
        if not ok:
            return f"trial {i} is not a record this sweep writes"
    return None


def finished_records(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Records of trials already finished in `sweep_dir`: failed ones, and the others whose
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


class SweepRun:
    """Runs jobs on a backend, storing each finished trial and rewriting the results files
    after every one, in the order the trials were scheduled."""

    def __init__(self, plan: Plan, sweep_dir: Path, backend: str, workers: int,
                 address: str | None, meta: dict[str, Any],
                 on_trial: Callable[[dict[str, Any], int, int], None] | None):
        self.plan, self.dir, self.backend = plan, sweep_dir, backend
        self.workers, self.address, self.meta, self.on_trial = workers, address, meta, on_trial
        self.known = finished_records(sweep_dir)
        self.order: list[str] = []  # trial ids, as scheduled
        self.records: dict[str, dict[str, Any]] = {}

    def write(self) -> None:
        records = [self.records[i] for i in self.order if i in self.records]
        doc = {"format": FORMAT, **self.meta, "groups": self.plan.groups,
               "halving": self.plan.halving, "planned": len(self.order),
               "finished": len(records), "trials": records}
        art.write_json(self.dir / RESULTS_JSON, doc)
        art.atomic_write_bytes(self.dir / RESULTS_CSV, csv_rows(records).encode())

    def run(self, jobs: list[Job]) -> None:
        for trial, _ in jobs:
            self.order.append(trial.id)
            if trial.id in self.known:
                # groups may have changed since the trial ran
                self.records[trial.id] = {**self.known[trial.id], "groups": trial.groups}
        todo = [(t, start) for t, start in jobs if t.id not in self.records]
        self.write()
        self.report({})
        if not todo:
            return
        if self.backend == "ray":
            outcomes = run_ray(todo, self.address)
        elif self.workers > 1:
            outcomes = run_processes(todo, self.workers)
        else:
            outcomes = run_local(todo)
        with contextlib.closing(outcomes):  # on Ctrl-C, stop the backend's work in flight now
            for trial, result in outcomes:
                self.records[trial.id] = store(self.dir, trial, result)
                self.write()
                self.report(self.records[trial.id])

    def report(self, record: dict[str, Any]) -> None:
        if self.on_trial is not None:
            self.on_trial(record, sum(i in self.records for i in self.order), len(self.order))

    def run_dir_files(self, trial_id: str) -> Files:
        folder = self.dir / TRIALS / trial_id
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


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
    records of all finished trials in the order they were scheduled. Interrupting (Ctrl-C)
    loses only the trials in flight."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; choose local or ray")
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if backend == "ray" and workers > 1:
        raise ConfigError("--workers is for the local backend; Ray runs one trial per CPU it has")
    if backend != "ray" and address:
        raise ConfigError("--address is for --backend ray")
    meta = {"machine": f"{platform.platform()}, {os.cpu_count()} CPUs", **(meta or {})}
    sweep = SweepRun(plan, Path(sweep_dir), backend, workers, address, meta, on_trial)
    if plan.halving:
        successive_halving(sweep, plan.halving)
    else:
        sweep.run([(t, None) for t in plan.trials])
    return [sweep.records[i] for i in sweep.order if i in sweep.records]


# ---- successive halving ---------------------------------------------------------------------

def point_key(trial: Trial) -> str:
    """What the seeds of one point share: the trial's config without its seed."""
    return trial_id({k: v for k, v in trial.options.items() if k != "seed"} | {"seed": 0})


def successive_halving(sweep: SweepRun, halving: dict[str, Any]) -> None:
    """Train every point for min_epochs, keep the best 1/eta of the points (by the mean of
    `metric` over seeds), train those eta times longer, continuing from their checkpoints, and
    so on until the survivors reach their full epochs. Each rung is a trial of its own."""
    eta, metric = halving["eta"], halving["metric"]
    sign = 1.0 if higher_is_better(metric) else -1.0
    points: dict[str, list[Trial]] = {}
    for t in sweep.plan.trials:
        points.setdefault(point_key(t), []).append(t)
    full = {key: normalized(ts[0].options)["epochs"] for key, ts in points.items()}
    alive, previous = list(points), {t.id: t for t in sweep.plan.trials}
    epochs = halving["min_epochs"]
    while alive:
        jobs: list[Job] = []
        rung: dict[str, list[Trial]] = {}
        for key in alive:
            for t in points[key]:
                opts = {**t.options, "epochs": epochs} if epochs < full[key] else t.options
                step = Trial(trial_id(opts), opts, t.groups)
                before = previous[t.id]
                resumes = before.id != t.id and step.id not in sweep.known
                start = sweep.run_dir_files(before.id) if resumes else None
                jobs.append((step, start))
                rung.setdefault(key, []).append(step)
                previous[t.id] = step
        sweep.run(jobs)
        scores = {}
        for key in alive:
            recs = [sweep.records[s.id] for s in rung[key]]
            if full[key] > epochs and all(r["status"] != "failed" for r in recs):
                scores[key] = sign * statistics.fmean(r["metrics"][metric] for r in recs)
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        keep = ranked[: math.ceil(len(ranked) / eta)]
        for key in ranked:
            for s in rung[key]:
                sweep.records[s.id]["status"] = "promoted" if key in keep else "stopped"
        sweep.write()
        alive, epochs = keep, epochs * eta


def parse_halving(table: Any) -> dict[str, Any] | None:
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) - {"min_epochs", "eta", "metric"}:
        raise ConfigError("[halving] takes min_epochs, eta and metric")
    h = {"min_epochs": table.get("min_epochs", 1), "eta": table.get("eta", 3),
         "metric": table.get("metric", "val_accuracy")}
    if not (isinstance(h["min_epochs"], int) and h["min_epochs"] >= 1
            and isinstance(h["eta"], int) and h["eta"] >= 2):
        raise ConfigError("[halving] needs integers min_epochs >= 1 and eta >= 2")
    if h["metric"] not in ("val_accuracy", "val_loss", "accuracy", "loss"):
        raise ConfigError("[halving] metric must be val_accuracy, val_loss, accuracy or loss")
    return h


def outcome_lines(records: list[dict[str, Any]], sweep_dir: Path) -> list[str]:
    """What a finished sweep tells the terminal: counts, where the results are, what failed."""
    failed = [r for r in records if r["status"] == "failed"]
    stopped = sum(r["status"] == "stopped" for r in records)
    return [f"{len(records)} trials finished ({len(failed)} failed"
            + (f", {stopped} stopped early by successive halving" if stopped else "")
            + f"); results in {sweep_dir / RESULTS_CSV} and {sweep_dir / RESULTS_JSON}",
            *(f"  {r['id']} failed: {r['error']}" for r in failed)]
