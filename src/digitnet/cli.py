"""The `digitnet` command: one sub-command per verb.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr, no traceback), 1 a bug.
Heavy modules (JAX, the engine) are imported inside each verb, so `digitnet --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from digitnet.errors import DigitnetError


class UsageError(DigitnetError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from digitnet.config import ALIASES, FIELDS
        from digitnet.options import explain_usage, flag_name

        prefix = "" if self.prog == "digitnet" else f"{self.prog}: "
        aliases = {a: flag_name(FIELDS[name]) for a, name in ALIASES.items()}
        raise UsageError(prefix + explain_usage(self, message, aliases))


def add_train_options(p: argparse.ArgumentParser) -> None:
    from digitnet.config import OPTION_CLASSES
    from digitnet.options import add_flags
    from digitnet.recipes import recipe_names

    run = add_flags(p, zip(("model", "training", "run"), [c for _, c in OPTION_CLASSES], strict=True),
                    {"model": "model (defaults: the tutorial's 784-64-64-10 ReLU MLP)",
                     "training": "training (defaults: Adam 1e-3, 5 epochs, batch 32)",
                     "regularisation": "regularisation and augmentation (0 = off)",
                     "run": "data, output and recipes (precedence: recipe < --config < flags)"})["run"]
    run.add_argument("--recipe", help=f"start from a shipped recipe: {', '.join(recipe_names())}")
    run.add_argument("--config", help="a TOML file of options (see docs/options.md)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--tensorboard", metavar="DIR",
                     help="also write TensorBoard event files here (needs tensorboardX)")
    run.add_argument("--seeds", help="train one model per seed, together: 0-7 or 1,2,5 "
                     "(OUT/seed-N run directories and OUT/summary.json)")
    run.add_argument("--ensemble", type=int, metavar="K",
                     help="train K models (seeds SEED..SEED+K-1, or --seeds) together and save the "
                     "ensemble averaging their probabilities in OUT (members in OUT/members)")


def build_parser() -> argparse.ArgumentParser:
    from digitnet import __version__

    p = Parser(prog="digitnet", description=__doc__.split("\n")[0].strip())
    p.add_argument("--version", action="version", version=f"digitnet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    json_help = "print JSON instead of a table"

    add_train_options(sub.add_parser(
        "train", help="train an MLP (default: the tutorial's model on MNIST)"))

    verbs = {"evaluate": "test loss, accuracy and per-class precision/recall/F1",
             "predict": "classify image files, IDX files or test images",
             "summary": "the model's layers and parameter counts",
             "serve": "serve a model over HTTP, with a page to draw digits",
             "export": "export a model (ONNX: uint8 [N,28,28] in, probabilities out)"}
    e, pr, sm, sv, ex = (sub.add_parser(name, help=text) for name, text in verbs.items())
    for verb in (e, pr, sm, sv, ex):
        verb.add_argument("run", help="run directory")
    e.add_argument("--json", action="store_true", help=json_help + " (adds the confusion matrix)")
    pr.add_argument("files", nargs="*", help="images (PNG, JPEG, …) or IDX files")
    pr.add_argument("--indices", help="test-set indices: 0:5, or 3,14,15")
    pr.add_argument("--json", action="store_true", help=json_help + " (with all probabilities)")
    pr.add_argument("--explain", action="store_true",
                    help="also show which pixels pushed each answer (gradient × input)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    sv.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    sv.add_argument("--max-batch", type=int, help="most images per request (default 256)")
    sv.add_argument("--max-image-pixels", type=int, help="largest image, width×height (default 4096²)")
    sv.add_argument("--max-queue", type=int, default=64,
                    help="prediction requests in progress per process before 429 (default 64)")
    sv.add_argument("--batch-wait-ms", type=float, default=1.0,
                    help="longest a request waits to share a forward pass (default 1 ms)")
    sv.add_argument("--workers", type=int, default=1, help="server processes on one port (default 1)")
    sv.add_argument("--max-connections", type=int, default=1000,
                    help="open connections per process; the longest-stalled is closed past it (default 1000)")
    sv.add_argument("--header-timeout", type=float, default=10.0,
                    help="seconds a client has to send its request headers (default 10)")
    sv.add_argument("--body-timeout", type=float, default=30.0,
                    help="seconds a client has to send its body after the headers (default 30)")
    sv.add_argument("--no-access-log", dest="access_log", action="store_false",
                    help="do not print a line per request")
    sv.add_argument("--ray", action="store_true",
                    help="run as a Ray Serve deployment (RAY_ADDRESS or a new local Ray)")
    sv.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (with --ray; default 1)")
    sv.add_argument("--allowed-hosts", help="comma-separated Host names to answer, or * for any "
                    "(default: localhost names when bound to a loopback address, else any)")

    ex.add_argument("--format", default="onnx", help="onnx (the only one so far)")
    ex.add_argument("--out", help="output file (default RUN/model.onnx)")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset, at least 17")

    sw = sub.add_parser("sweep", help="train every trial of a sweep file; results.csv/json")
    sw.add_argument("config", help="sweep TOML: [base] options plus [grid.NAME]/[random.NAME] axes")
    sw.add_argument("--out", help="sweep directory (default runs/sweeps/<config name>)")
    sw.add_argument("--backend", default="local", choices=("local", "ray"))
    sw.add_argument("--workers", type=int, default=1, help="local worker processes")
    sw.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a new local Ray)")
    sw.add_argument("--data-dir", help="a folder holding the four standard IDX files")
    sw.add_argument("--list", action="store_true", help="print the trials and exit")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")

    en = sub.add_parser("ensemble", help="combine trained runs into one model that averages "
                        "their probabilities")
    en.add_argument("runs", nargs="+", help="run directories (or ensembles)")
    en.add_argument("--out", required=True, help="directory for the ensemble")

    rp = sub.add_parser("report", help="an HTML page and PNG plots of a run, a sweep, or runs compared")
    rp.add_argument("path", nargs="+", help="a run directory or a sweep directory; several runs: "
                    "a comparison (as compare --html)")
    rp.add_argument("--out", help="folder for report.html and the PNGs (default PATH/report; "
                    "for several runs compare-report)")
    rp.add_argument("--markdown", help="also write a markdown page linking the PNGs")

    cal = sub.add_parser("calibrate", help="time the engine's settings on this machine and keep "
                         "the fastest (used by later runs)")
    cal.add_argument("--hidden", default="64,64", help="hidden layer sizes (default 64,64)")
    cal.add_argument("--batch-size", type=int, default=32)
    cal.add_argument("--rounds", type=int, default=7, help="timed epochs per candidate (default 7)")
    cal.add_argument("--show", action="store_true", help="print this machine's stored choice and exit")

    rs = sub.add_parser("runs", help="the runs under a folder: date, layers, epochs, accuracy, time")
    rs.add_argument("folder", nargs="?", default="runs", help="where to look (default runs/)")
    rs.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cp = sub.add_parser("compare", help="is one run better? accuracy, McNemar's exact test, per class")
    cp.add_argument("runs", nargs="+", metavar="RUN", help="two or more run directories")
    cp.add_argument("--json", action="store_true", help="print JSON instead of text")
    cp.add_argument("--html", action="store_true",
                    help="also write an HTML page with the curves overlaid and the disputed images")
    cp.add_argument("--out", default="compare-report", help="folder for --html (default compare-report)")

    ds = sub.add_parser("datasets", help="list, fetch, verify or show datasets")
    ds_sub = ds.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    ds_sub.required = True
    ds_sub.add_parser("list", help="known datasets and whether they are here")
    ds_sub.add_parser("fetch", help="download a dataset into the cache").add_argument("name")
    ds_sub.add_parser("verify", help="re-hash a dataset's files against their pinned SHA-256"
                      ).add_argument("name")
    sh = ds_sub.add_parser("show", help="draw sample images with their labels into a PNG")
    sh.add_argument("name", nargs="?", default="mnist")
    sh.add_argument("--data-dir", help="a folder holding the four standard IDX files")
    sh.add_argument("--split", choices=("train", "test"), default="test")
    sh.add_argument("--count", type=int, default=40, help="number of images (default 40)")
    sh.add_argument("--out", help="PNG file (default NAME-SPLIT.png)")
    return p


def cmd_train(args: argparse.Namespace) -> int:
    if not any(getattr(args, k, None) for k in ("data_dir", "config", "resume", "recipe")):
        from digitnet.data.datasets import prefetch

        prefetch(getattr(args, "dataset", None) or "mnist")  # read while JAX imports
    from digitnet import artifacts as art
    from digitnet.api import dataset_from_config, fit
    from digitnet.config import FIELDS, resolve

    base: dict[str, Any] = {}
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR (the run to continue)")
        base = art.resumed_options(args.out)
        if not base and args.seeds is None and args.ensemble is None:
            # killed before its first write: nothing to continue, so start it
            print(f"digitnet: nothing to resume in {args.out}; starting a new run", file=sys.stderr)
    flags = {k: v for k, v in vars(args).items() if k in FIELDS}
    spec, cfg, run = resolve(flags, recipe=args.recipe, config=args.config, base=base)
    out = Path(run.get("out") or f"runs/{run.get('dataset', 'mnist')}-{time.strftime('%Y%m%d-%H%M%S')}")
    history = out / art.HISTORY
    before = len(art.read_history(history)) if args.resume and history.exists() else 0
    if args.seeds is not None or args.ensemble is not None:
        return train_many(args, spec, cfg, run, out)
    callbacks = []
    if args.tensorboard:
        from digitnet.tracking import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard, {"model": spec.to_dict(), "train": cfg.to_dict()}))
    model = fit(spec, cfg, run.get("dataset", "mnist"), data_dir=run.get("data_dir"), out=out,
                resume=args.resume, verbose=not args.quiet, callbacks=callbacks, recipe=args.recipe)
    m = model.config["metrics"]
    ran = m["epochs"] - before
    what = f"{ran} epoch{'s' * (ran != 1)}" + (f" after the {before} resumed" if before else "")
    print(f"test accuracy {m['test_accuracy']:.4f}  test loss {m['test_loss']:.4f}  "
          f"({what}, {m['train_seconds']:.1f} s)")
    # All 10k through the program the evaluation compiled, rather than compile one for 5 rows.
    first = model.predict(dataset_from_config(model.config).x_test)[:5].tolist()
    smoothing = model.config["train"].get("label_smoothing")
    if smoothing:
        print(f"(test loss: plain cross-entropy; loss and val_loss above include label smoothing "
              f"ε = {smoothing:g})")
    print(f"first five test predictions {first}")
    print(f"saved to {out}")
    return 0


def train_many(args: argparse.Namespace, spec: Any, cfg: Any, run: dict[str, Any], out: Path) -> int:
    """train --seeds / --ensemble: one model per seed, trained together."""
    from digitnet.api import fit
    from digitnet.seeds import parse_seeds

    if args.tensorboard:
        raise UsageError("--tensorboard follows one run; it does not combine with --seeds or --ensemble")
    if args.ensemble is not None and args.ensemble < 1:
        raise UsageError("--ensemble must be at least 1")
    seeds = (parse_seeds(args.seeds) if args.seeds is not None
             else list(range(cfg.seed, cfg.seed + args.ensemble)))
    if args.ensemble is not None and args.seeds is not None and len(seeds) != args.ensemble:
        raise UsageError(f"--ensemble {args.ensemble} but --seeds lists {len(seeds)} seeds")
    where = out / "members" if args.ensemble is not None else out
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
        ev = ens.config["metrics"]
        print(f"ensemble of {len(seeds)}: test accuracy {ev['test_accuracy']:.4f}  "
              f"test loss {ev['test_loss']:.4f}")
    print(f"saved to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from digitnet.api import load

    ev = load(args.run).evaluate()
    print(json.dumps(ev.to_dict()) if args.json else ev.table())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from digitnet.api import dataset_from_config, load
    from digitnet.data.inputs import read_inputs, select_indices

    if not args.files and not args.indices:
        raise UsageError("predict: give image/IDX files or --indices")
    model = load(args.run)
    names, x = read_inputs(args.files, model.spec.input_shape)
    truth: list[int | None] = [None] * len(names)
    if args.indices:
        ds = dataset_from_config(model.config)
        idx = select_indices(args.indices, len(ds.y_test))
        names += [f"test[{i}]" for i in idx]
        truth += [int(ds.y_test[i]) for i in idx]
        x = np.concatenate([x.reshape(len(x), *ds.image_shape), ds.x_test[idx]])
    probs = model.predict_proba(x)
    labels = probs.argmax(axis=1)
    why: list[Any] = [None] * len(names)
    if args.explain:
        from digitnet.explain import gradient_x_input, normalized

        why = list(normalized(gradient_x_input(model, x, labels)[1]))
    rows = zip(names, labels, probs, truth, why, strict=True)
    if args.json:
        print(json.dumps([{"input": n, "label": int(lab), "probabilities": [round(float(p), 6) for p in row],
                           **({"true": t} if t is not None else {}),
                           **({"explanation": w.round(3).tolist()} if w is not None else {})}
                          for n, lab, row, t, w in rows]))
    for n, lab, row, t, w in [] if args.json else rows:
        print(f"{n}: {lab}  p={row[lab]:.4f}" + (f"  (true {t})" if t is not None else ""))
        if w is not None:
            from digitnet.explain import text_map

            print(f"  pixels that pushed {lab}: # + towards it (strongly, weakly), = - away")
            print(text_map(w))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from digitnet.api import load

    model = load(args.run)
    print(model.summary())
    metrics = model.config.get("metrics")
    if metrics:
        after = f" after {metrics['epochs']} epochs" if "epochs" in metrics else ""
        print(f"test accuracy {metrics['test_accuracy']:.4f}{after}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from digitnet.data import manage

    lines = (manage.listing() if args.action == "list" else
             manage.show(args.name, args.data_dir, args.split, args.count, args.out)
             if args.action == "show" else getattr(manage, args.action)(args.name))
    print("\n".join(lines))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from digitnet.serve import Limits
        from digitnet.serve.server import ServerOptions, run
    except ImportError as exc:
        raise UsageError(f"serve needs the serve extra ({exc.name} is missing): "
                         "pip install 'digitnet[serve]'") from None
    given = {k: getattr(args, k) for k in ("max_body_bytes", "max_batch", "max_image_pixels")
             if getattr(args, k) is not None}
    from digitnet.serve.guard import default_hosts, parse_hosts
    from digitnet.serve.limits import check_port

    try:
        limits = Limits(**given)
        check_port(args.port)
        hosts = parse_hosts(args.allowed_hosts) if args.allowed_hosts else default_hosts(args.host)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_queue < 1 or not 0 <= args.batch_wait_ms <= 1000:
        raise UsageError("--max-queue must be at least 1 and --batch-wait-ms within 0–1000")
    options = ServerOptions(host=args.host, port=args.port, workers=args.workers,
                            max_connections=args.max_connections, header_timeout=args.header_timeout,
                            body_timeout=args.body_timeout, access_log=args.access_log)
    app_args = {"model_dir": str(args.run), "limits": limits.to_dict(), "max_queue": args.max_queue,
                "batch_wait_ms": args.batch_wait_ms, "allowed_hosts": hosts}
    if args.ray:
        try:
            from digitnet.serve.ray import serve_on_ray
        except ImportError as exc:
            raise UsageError(f"serve --ray needs Ray Serve ({exc.name} is missing): "
                             "pip install 'digitnet[ray]'") from None
        return serve_on_ray(app_args, options, args.replicas)
    from digitnet import artifacts as art

    art.check_run_dir(Path(args.run))
    run(app_args, options, str(args.run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from digitnet.export import export

    print(f"wrote {export(args.run, args.format, args.out, args.opset)}")
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


def cmd_ensemble(args: argparse.Namespace) -> int:
    from digitnet.api import combine

    ens = combine(args.runs, args.out)
    for m in ens.members:
        acc = m.config.get("metrics", {}).get("test_accuracy")
        print(f"{m.config.get('source', '?')}: test accuracy "
              + (f"{acc:.4f}" if acc is not None else "?"))
    metrics = ens.config["metrics"]
    print(f"ensemble of {len(ens)}: test accuracy {metrics['test_accuracy']:.4f}  "
          f"test loss {metrics['test_loss']:.4f}")
    print(f"saved to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import shlex

    from digitnet.report import write_report

    if len(args.path) > 1:
        if args.markdown:
            raise UsageError("report: --markdown is for one run or sweep, not a comparison")
        return write_comparison(args.path, args.out or "compare-report")
    page = write_report(args.path[0], args.out, markdown=args.markdown,
                        command=shlex.join(["digitnet", *args.argv]))
    print(f"wrote {page}" + (f" and {args.markdown}" if args.markdown else ""))
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
    print(f"chosen: XLA threading {entry['threading']}, {entry['unroll']} steps per loop "
          f"iteration; stored in {entry['path']}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from digitnet.runlist import list_runs, table

    runs = list_runs(args.folder)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs]))
    else:
        print(table(runs) if runs else f"no runs under {args.folder}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from digitnet.compare import compare_runs, text

    cmp = compare_runs(args.runs)
    print(json.dumps(cmp.to_dict()) if args.json else text(cmp))
    if args.html:
        write_comparison(cmp, args.out, quiet=args.json)
    return 0


def write_comparison(runs: Any, out: str, quiet: bool = False) -> int:
    """The comparison's report page; runs: run directories, or a Comparison already made."""
    from digitnet.compare import compare_report, compare_runs
    from digitnet.report import save

    cmp = compare_runs(runs) if isinstance(runs, list) else runs
    page = save(compare_report(cmp), Path(out))
    if not quiet:
        print(f"wrote {page}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "summary": cmd_summary, "datasets": cmd_datasets, "serve": cmd_serve,
            "export": cmd_export, "sweep": cmd_sweep, "report": cmd_report, "calibrate": cmd_calibrate,
            "runs": cmd_runs, "compare": cmd_compare,
            "ensemble": cmd_ensemble}


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            print(parser.format_help(), end="", file=sys.stderr)
            return 2
        args.argv = argv  # sweeps and reports record the command that made them
        if args.command in ("train", "evaluate", "predict", "serve", "sweep", "compare", "ensemble"):
            from digitnet.runtime import set_cpu_threading

            set_cpu_threading()  # before JAX starts; see digitnet/runtime.py
        return COMMANDS[args.command](args)
    except DigitnetError as exc:
        print(f"digitnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitnet: interrupted", file=sys.stderr)
        return 130
