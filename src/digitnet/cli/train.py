"""The verbs that train or combine models: train, ensemble, sweep, calibrate."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from digitnet.cli import seed_workers, trace
from digitnet.cli.parser import UsageError


def training_shapes(args: argparse.Namespace) -> tuple[list[int], int] | None:
    """(layer sizes, batch size) that this `digitnet train` will train, from its resolved
    options, before JAX starts (runtime.set_cpu_threading applies a calibrated threading only
    for the shapes it was calibrated on); None when that needs the data or a saved run
    (--data-dir, --resume), for a population (--seeds, --ensemble: `digitnet calibrate` timed
    one model, and one XLA thread would serve the population's devices in turn) or another
    command: the default threading then."""
    if args.command != "train" or args.resume or getattr(args, "data_dir", None):
        return None
    if args.seeds is not None or args.ensemble is not None:
        return None
    from digitnet.data.datasets import REGISTRY
    from digitnet.errors import DigitnetError

    try:
        spec, cfg, run = resolved_options(args)
    except DigitnetError:
        return None  # cmd_train reports it
    name = run.get("dataset", "mnist")
    if run.get("data_dir") or name not in REGISTRY:
        return None
    # digitnet's named datasets are MNIST-format 28×28 images.
    spec = spec.for_data((28, 28), len(REGISTRY[name].classes))
    return list(spec.sizes), cfg.batch_size


def resolved_options(args: argparse.Namespace, base: dict[str, Any] | None = None) -> tuple[Any, Any, dict]:
    """(spec, config, run options) of this `digitnet train`: recipe < --config < flags, over
    `base` (a resumed run's options: resumed_options). Resolved once per command line and base,
    by its first caller (training_shapes or population_size, before JAX starts, or cmd_train),
    and kept on `args`."""
    base = base or {}
    if getattr(args, "resolved", None) is None or args.resolved_base != base:
        from digitnet.config import FIELDS, resolve

        flags = {k: v for k, v in vars(args).items() if k in FIELDS}
        args.resolved = resolve(flags, recipe=args.recipe, config=args.config, base=base)
        args.resolved_base = dict(base)
    return args.resolved


def resumed_options(run_dir: str | Path) -> dict[str, Any]:
    """The options a run directory was started with ({} when it holds no config yet): the
    lowest layer of digitnet.config.resolve when a run is resumed. Read without JAX, so that
    the XLA setup sees a resumed run's model (population_size)."""
    from digitnet.config import FIELDS
    from digitnet.safefiles import read_json

    path = Path(run_dir) / "config.json"  # artifacts.CONFIG, whose module starts JAX
    if not path.exists():
        return {}
    saved = read_json(path)
    model = {k: v for k, v in saved.get("model", {}).items() if k in FIELDS and FIELDS[k].metadata["cli"]}
    ds = saved.get("dataset", {})
    return {**model, **saved.get("train", {}), "dataset": ds.get("name"), "data_dir": ds.get("path")}


def cmd_train(args: argparse.Namespace) -> int:
    if args.seeds is not None:
        from digitnet.cli import population_size

        workers = seed_workers.workers_for(args, population_size(args))
        if workers > 1:  # before JAX: this process only starts the workers and sums them up
            from digitnet.seeds import parse_seeds

            check_many(args)
            run = resolved_options(args, resumed_options(args.out) if args.resume and args.out
                                   else {})[2]
            return seed_workers.train_in_workers(args, parse_seeds(args.seeds), default_out(run),
                                                 workers)
    if not any(getattr(args, k, None) for k in ("data_dir", "config", "resume", "recipe")):
        from digitnet.data.datasets import prefetch

        prefetch(getattr(args, "dataset", None) or "mnist")  # read while JAX imports
    from digitnet import artifacts as art
    from digitnet.api import dataset_from_config, fit

    trace.watch_jax()
    base: dict[str, Any] = {}
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR (the run to continue)")
        base = resumed_options(args.out)
        if not base and args.seeds is None and args.ensemble is None:
            # killed before its first write: nothing to continue, so start it
            print(f"digitnet: nothing to resume in {args.out}; starting a new run", file=sys.stderr)
    spec, cfg, run = resolved_options(args, base)
    out = default_out(run)
    history = out / art.HISTORY
    before = len(art.read_history(history)) if args.resume and history.exists() else 0
    if args.seeds is not None or args.ensemble is not None:
        return train_many(args, spec, cfg, run, out)
    callbacks = [trace.callback()] if trace.ON else []
    trace.data_ready(run.get("dataset", "mnist"))
    if args.tensorboard:
        from digitnet.tracking import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard, {"model": spec.to_dict(), "train": cfg.to_dict()}))
    model = fit(spec, cfg, run.get("dataset", "mnist"), data_dir=run.get("data_dir"), out=out,
                resume=args.resume, verbose=not args.quiet, callbacks=callbacks, recipe=args.recipe)
    trace.mark("tested and saved")
    m = model.config["metrics"]
    ran = m["epochs"] - before
    what = f"{ran} epoch{'s' * (ran != 1)}" + (f" after the {before} resumed" if before else "")
    print(f"test accuracy {m['test_accuracy']:.4f}  test loss {m['test_loss']:.4f}  "
          f"({what}, {m['train_seconds']:.1f} s)")
    # All 10k through the program the evaluation compiled, rather than compile one for 5 rows.
    first = model.predict(dataset_from_config(model.config).x_test)[:5].tolist()
    trace.mark("first five predicted")
    smoothing = model.config["train"].get("label_smoothing")
    if smoothing:
        print(f"(test loss: plain cross-entropy; loss and val_loss above include label smoothing "
              f"ε = {smoothing:g})")
    print(f"first five test predictions {first}")
    print(f"saved to {out}")
    trace.mark("printed")
    return 0


def default_out(run: dict[str, Any]) -> Path:
    """The run directory: --out, else runs/<dataset>-<time>."""
    data_name = Path(run["data_dir"]).expanduser().resolve().name if run.get("data_dir") else None
    name = data_name or run.get("dataset", "mnist")
    return Path(run.get("out") or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_many(args: argparse.Namespace) -> None:
    if args.tensorboard:
        raise UsageError("--tensorboard follows one run; it does not combine with --seeds or --ensemble")
    if args.ensemble is not None and args.ensemble < 1:
        raise UsageError("--ensemble must be at least 1")


def train_many(args: argparse.Namespace, spec: Any, cfg: Any, run: dict[str, Any], out: Path) -> int:
    """train --seeds / --ensemble: one model per seed, trained together."""
    from digitnet.api import fit
    from digitnet.seeds import parse_seeds

    check_many(args)
    share = seed_workers.worker_seeds()  # this process' seeds, when it is one of them
    seeds = share or (parse_seeds(args.seeds) if args.seeds is not None
                      else list(range(cfg.seed, cfg.seed + args.ensemble)))
    if args.ensemble is not None and args.seeds is not None and len(seeds) != args.ensemble:
        raise UsageError(f"--ensemble {args.ensemble} but --seeds lists {len(seeds)} seeds")
    where = out / "members" if args.ensemble is not None else out
    if share is not None:  # the parent sums up all the workers' seeds
        from digitnet.api import fit_seeds

        fit_seeds(spec, cfg, run.get("dataset", "mnist"), seeds, data_dir=run.get("data_dir"),
                  out=where, resume=args.resume, verbose=not args.quiet, recipe=args.recipe,
                  summary=False)
        return 0
    models = fit(spec, cfg, run.get("dataset", "mnist"), data_dir=run.get("data_dir"), out=where,
                 resume=args.resume, verbose=not args.quiet, recipe=args.recipe, seeds=seeds)
    for s, m in zip(seeds, models, strict=True):
        print(f"seed {s}: test accuracy {m.config['metrics']['test_accuracy']:.4f}")
    print(models.describe() + f"  ({models.summary['wall_seconds']:.1f} s)")
    if args.ensemble is not None:
        from digitnet.api import ensemble_of

        for s, m in zip(seeds, models, strict=True):
            m.config["source"] = f"members/seed-{s}"
        ens = ensemble_of(list(models))
        ens.config["metrics"].update(
            epochs=max(m.config["metrics"]["epochs"] for m in models),
            train_seconds=round(sum(m.config["metrics"]["train_seconds"] for m in models), 3))
        ens.save(out)
        print(ensemble_line(ens))
    print(f"saved to {out}")
    return 0


def ensemble_line(ens: Any) -> str:
    metrics = ens.config["metrics"]
    return (f"ensemble of {len(ens)}: test accuracy {metrics['test_accuracy']:.4f}  "
            f"test loss {metrics['test_loss']:.4f}")


def cmd_ensemble(args: argparse.Namespace) -> int:
    from digitnet.api import combine

    ens = combine(args.runs, args.out)
    for m in ens.members:
        acc = m.config.get("metrics", {}).get("test_accuracy")
        print(f"{m.config.get('source', '?')}: test accuracy "
              + (f"{acc:.4f}" if acc is not None else "?"))
    print(ensemble_line(ens))
    print(f"saved to {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import shlex

    from digitnet.sweep import load_plan, outcome_lines, run_sweep

    plan = load_plan(args.config, args.data_dir)
    if args.list:
        for t in plan.trials:
            print(f"{t.id}  {','.join(t.groups):<20} {json.dumps(t.options)}")
        print(f"{len(plan.trials)} trials")
        return 0
    out = Path(args.out or f"runs/sweeps/{Path(args.config).stem}")
    meta = {"config": str(args.config), "command": shlex.join(["digitnet", *args.argv]),
            "backend": args.backend}
    if args.quiet:
        records = run_sweep(plan, out, backend=args.backend, workers=args.workers,
                            address=args.address, meta=meta)
    else:
        from digitnet.progress import SweepProgress

        with SweepProgress() as bar:
            records = run_sweep(plan, out, backend=args.backend, workers=args.workers,
                                address=args.address, meta=meta, on_trial=bar.update)
    print("\n".join(outcome_lines(records, out)))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from digitnet import calibrate, tuning

    if args.show:
        entry = tuning.chosen()
        if entry is None:
            print(f"no stored choice for this machine (key {tuning.machine_key()}); "
                  "the defaults apply")
        else:
            print(json.dumps({k: v for k, v in entry.items() if k != "measured"}, indent=1))
        return 0
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    except ValueError:
        raise UsageError(f"--hidden must be comma-separated sizes, got {args.hidden!r}") from None
    if not hidden or min(hidden) < 1 or args.batch_size < 1 or args.rounds < 1:
        raise UsageError("--hidden sizes, --batch-size and --rounds must be positive")
    entry = calibrate.calibrate(hidden, args.batch_size, args.rounds)
    m = entry["measured"]
    for name in sorted(m, key=lambda k: m[k]["ratio_to_default"]):
        print(f"  {name:24s} best {m[name]['best_seconds']:.3f} s/epoch  "
              f"× {m[name]['ratio_to_default']:.2f} of the default"
              + ("" if m[name]["same_bits"] else "  (other bits: not eligible)"))
    split = entry.get("split_rows", 0)
    print(f"chosen: XLA threading {entry['threading']}, {entry['unroll']} steps per loop "
          f"iteration" + (f", the first kernel's gradient split at row {split}" if split else "")
          + f"; stored in {entry['path']}")
    return 0

