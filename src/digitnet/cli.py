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

from digitnet.errors import DataError, DigitnetError


class UsageError(DigitnetError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def add_train_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model (defaults: the tutorial's 784-64-64-10 ReLU MLP)")
    m.add_argument("--hidden", help="hidden layer sizes, e.g. 64,64")
    m.add_argument("--activation", help="relu, sigmoid, tanh, gelu, elu, leaky_relu, selu")
    m.add_argument("--dropout", help="one rate, or one per hidden layer: 0.5 or 0.2,0.5")
    m.add_argument("--preprocess", help="center (x/255-0.5), unit (x/255), standardize")
    m.add_argument("--deskew", action=argparse.BooleanOptionalAction, default=None,
                   help="straighten and centre each image by its moments before the network")
    t = p.add_argument_group("training (defaults: Adam 1e-3, 5 epochs, batch 32)")
    t.add_argument("--optimizer", help="adam, adamw, sgd, rmsprop")
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--momentum", type=float, help="SGD momentum")
    t.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    t.add_argument("--schedule", help="constant, cosine, onecycle, step")
    t.add_argument("--weight-decay", type=float, help="L2 weight decay on kernels")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--validation", help="test, none, or a held-out fraction of train (0.1)")
    t.add_argument("--patience", type=int, help="early stopping patience (epochs); 0 = off")
    t.add_argument("--seed", type=int)
    add_recipe_options(p)
    d = p.add_argument_group("data and output")
    d.add_argument("--dataset", help="dataset name (default mnist, embedded)")
    d.add_argument("--data-dir", help="a folder holding the four standard IDX files")
    d.add_argument("--config", help="a TOML file of options (command-line flags win)")
    d.add_argument("--out", help="run directory (default runs/<dataset>-<time>)")
    d.add_argument("--resume", action="store_true", help="continue the run in --out")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard event files here (needs tensorboardX)")


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    from digitnet.recipes import recipe_names

    r = p.add_argument_group("recipes, regularisation and augmentation (0 = off)")
    r.add_argument("--recipe", help=f"start from a shipped recipe: {', '.join(recipe_names())}")
    r.add_argument("--input-dropout", type=float, help="dropout rate on the inputs")
    r.add_argument("--max-norm", type=float, help="max L2 norm of each unit's incoming weights")
    r.add_argument("--label-smoothing", type=float, help="label smoothing ε")
    r.add_argument("--ema", type=float, help="EMA decay of the weights (0.999), used for evaluation")
    r.add_argument("--warmup", type=float, help="epochs of linear warm-up (cosine schedule)")
    r.add_argument("--step-epochs", type=int, help="step schedule: decay every N epochs")
    r.add_argument("--step-gamma", type=float, help="step schedule: decay factor (0.1)")
    r.add_argument("--aug-shift", type=float, help="random shift bound, pixels")
    r.add_argument("--aug-rotate", type=float, help="random rotation bound, degrees")
    r.add_argument("--aug-scale", type=float, help="random zoom bound: 0.1 = 0.9–1.1")
    r.add_argument("--aug-shear", type=float, help="random shear bound, degrees")
    r.add_argument("--elastic-alpha", type=float, help="elastic distortion α (Simard: 34)")
    r.add_argument("--elastic-sigma", type=float, help="elastic distortion σ in pixels (4)")


def build_parser() -> argparse.ArgumentParser:
    from digitnet import __version__

    p = Parser(prog="digitnet", description=__doc__.split("\n")[0].strip())
    p.add_argument("--version", action="version", version=f"digitnet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    t = sub.add_parser("train", help="train an MLP (default: the tutorial's model on MNIST)")
    add_train_options(t)

    e = sub.add_parser("evaluate", help="loss, accuracy, confusion matrix, per-class scores")
    e.add_argument("run", help="run directory")
    e.add_argument("--json", action="store_true")

    pr = sub.add_parser("predict", help="classify image files, IDX files or test images")
    pr.add_argument("run", help="run directory")
    pr.add_argument("files", nargs="*", help="images (PNG, JPEG, …) or IDX files")
    pr.add_argument("--indices", help="test-set indices: 0:5, or 3,14,15")
    pr.add_argument("--json", action="store_true")

    s = sub.add_parser("summary", help="the model's layers and parameter counts")
    s.add_argument("run", help="run directory")

    sv = sub.add_parser("serve", help="serve a model over HTTP, with a page to draw digits")
    sv.add_argument("run", help="run directory")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    sv.add_argument("--max-batch", type=int, help="most images per request (default 256)")
    sv.add_argument("--max-image-pixels", type=int, help="largest image, width×height (default 4096²)")

    ex = sub.add_parser("export", help="export a model (ONNX: uint8 [N,28,28] in, probabilities out)")
    ex.add_argument("run", help="run directory")
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
    sw.set_defaults(argv=[])

    rp = sub.add_parser("report", help="an HTML page and PNG plots of a run or a sweep")
    rp.add_argument("path", help="a run directory or a sweep directory")
    rp.add_argument("--out", help="folder for report.html and the PNGs (default PATH/report)")
    rp.add_argument("--markdown", help="also write a markdown page linking the PNGs")
    rp.set_defaults(argv=[])

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
    from digitnet.api import fit
    from digitnet.config import read_toml, split_options
    from digitnet.recipes import recipe_options

    options: dict[str, Any] = recipe_options(args.recipe) if args.recipe else {}
    options.update(read_toml(args.config) if args.config else {})
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR (the run to continue)")
        from digitnet import artifacts as art

        saved: dict[str, Any] = {}
        if (Path(args.out) / art.CONFIG).exists():
            saved = art.read_json(Path(args.out) / art.CONFIG)
        else:  # killed before its first write: nothing to continue, so start it
            print(f"digitnet: nothing to resume in {args.out}; starting a new run",
                  file=sys.stderr)
        model = {k: v for k, v in saved.get("model", {}).items()
                 if k not in ("input_shape", "num_classes")}
        options = {**model, **saved.get("train", {}), **options}
        ds = saved.get("dataset", {})
        options.setdefault("dataset", ds.get("name"))
        options.setdefault("data_dir", ds.get("path"))
    flags = {k: v for k, v in vars(args).items()
             if k not in ("command", "config", "resume", "quiet", "func", "tensorboard", "recipe")
             and v is not None}
    spec, cfg, run = split_options({**options, **flags})
    dataset = run.get("dataset", "mnist")
    out = Path(run.get("out") or f"runs/{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    callbacks = []
    if args.tensorboard:
        from digitnet.tracking import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard, {"model": spec.to_dict(), "train": cfg.to_dict()}))
    model = fit(spec, cfg, dataset, data_dir=run.get("data_dir"), out=out, resume=args.resume,
                verbose=not args.quiet, callbacks=callbacks, recipe=args.recipe)
    metrics = model.config["metrics"]
    first = model.predict(model_test_images(model)[:5]).tolist()
    print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
          f"({metrics['epochs']} epochs, {metrics['train_seconds']:.1f} s)")
    print(f"first five test predictions {first}")
    print(f"saved to {out}")
    return 0


def model_test_images(model) -> Any:
    from digitnet.api import dataset_from_config

    return dataset_from_config(model.config).x_test


def cmd_evaluate(args: argparse.Namespace) -> int:
    from digitnet.api import load

    ev = load(args.run).evaluate()
    print(json.dumps(ev.to_dict()) if args.json else ev.table())
    return 0


def parse_indices(text: str, n: int) -> list[int]:
    try:
        if ":" in text:
            parts = [int(p) if p else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            return list(range(n))[slice(*parts)]
        idx = [int(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--indices expects START:STOP or a comma list, got {text!r}") from None
    bad = [i for i in idx if not -n <= i < n]
    if bad:
        raise UsageError(f"--indices: {bad[0]} is out of range for {n} test images")
    return idx


def read_inputs(paths: list[str]) -> tuple[list[str], Any]:
    """Names and images (N, 28, 28) from image files and IDX files."""
    import numpy as np

    from digitnet.data.idx import read_idx
    from digitnet.data.images import load_digit

    names, images = [], []
    for path in paths:
        if "idx" in Path(path).name or "ubyte" in Path(path).name:
            arr = read_idx(path)
            names += [f"{path}[{i}]" for i in range(len(arr))]
            images += list(arr)
        else:
            names.append(path)
            images.append(load_digit(path))
    return names, np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)


def cmd_predict(args: argparse.Namespace) -> int:
    from digitnet.api import dataset_from_config, load

    if not args.files and not args.indices:
        raise UsageError("predict: give image/IDX files or --indices")
    model = load(args.run)
    names, x = read_inputs(args.files)
    truth: list[int | None] = [None] * len(names)
    if args.indices:
        ds = dataset_from_config(model.config)
        idx = parse_indices(args.indices, len(ds.y_test))
        names += [f"test[{i}]" for i in idx]
        truth += [int(ds.y_test[i]) for i in idx]
        import numpy as np

        x = np.concatenate([x.reshape(len(x), *ds.image_shape), ds.x_test[idx]])
    probs = model.predict_proba(x)
    labels = probs.argmax(axis=1)
    if args.json:
        print(json.dumps([
            {"input": n, "label": int(lab), "probabilities": [round(float(p), 6) for p in row],
             **({"true": t} if t is not None else {})}
            for n, lab, row, t in zip(names, labels, probs, truth, strict=True)]))
    else:
        for n, lab, row, t in zip(names, labels, probs, truth, strict=True):
            extra = f"  (true {t})" if t is not None else ""
            print(f"{n}: {lab}  p={row[lab]:.4f}{extra}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from digitnet.api import load

    model = load(args.run)
    print(model.summary())
    metrics = model.config.get("metrics")
    if metrics:
        print(f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from digitnet.data import datasets

    if args.action == "list":
        print(f"{'NAME':<14} {'STATUS':<19} {'SIZE':>9}  {'LICENCE':<13} DESCRIPTION")
        for name, e in datasets.REGISTRY.items():
            print(f"{name:<14} {datasets.status(name):<19} {e.download_size / 1e6:>6.1f} MB  "
                  f"{e.licence:<13} {e.description}")
        print(f"cache: {datasets.home()} (set $DIGITNET_HOME to move it)")
        return 0
    if args.action == "verify":
        report = datasets.verify(args.name)
        for path, problem in report.items():
            print(f"ok   {path}" if problem is None else f"BAD  {path}: {problem}")
        bad = sum(p is not None for p in report.values())
        if bad:
            fix = ("reinstall digitnet" if datasets.entry(args.name).embedded
                   else f"`digitnet datasets fetch {args.name}` downloads them again")
            raise DataError(f"{args.name}: {bad} of {len(report)} files missing or corrupt; {fix}")
        print(f"{args.name}: all {len(report)} files match their pinned SHA-256")
        return 0
    if args.action == "show":
        return show_samples(args)
    datasets.fetch(args.name)  # downloads what is missing or corrupt
    ds = datasets.load_dataset(args.name)
    print(f"{args.name}: {len(ds.y_train)} train + {len(ds.y_test)} test images "
          f"{'×'.join(map(str, ds.image_shape))}, {ds.num_classes} classes in "
          f"{datasets.location(args.name)}; checksums OK")
    return 0


def show_samples(args: argparse.Namespace) -> int:
    from digitnet.artifacts import atomic_write_bytes
    from digitnet.data import datasets
    from digitnet.data.preview import sample_grid

    if args.count < 1:
        raise UsageError("--count must be at least 1")
    ds = datasets.load_dataset(args.name, args.data_dir)
    x, y = (ds.x_train, ds.y_train) if args.split == "train" else (ds.x_test, ds.y_test)
    classes = datasets.REGISTRY[args.name].classes if args.name in datasets.REGISTRY else ()
    n = min(args.count, len(y))
    png = sample_grid(x[:n], y[:n], classes, title=f"{ds.name} {args.split}: first {n} images")
    out = Path(args.out or f"{ds.name}-{args.split}.png")
    atomic_write_bytes(out, png)
    print(f"wrote {out} ({n} {args.split} images of {ds.name})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from digitnet.serve import Limits, create_app
    except ImportError as exc:
        raise UsageError(f"serve needs the serve extra ({exc.name} is missing): "
                         "pip install 'digitnet[serve]'") from None
    given = {k: getattr(args, k) for k in ("max_body_bytes", "max_batch", "max_image_pixels")
             if getattr(args, k) is not None}
    try:
        limits = Limits(**given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    app = create_app(args.run, limits)
    print(f"digitnet: serving {args.run} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from digitnet.export import export

    print(f"wrote {export(args.run, args.format, args.out, args.opset)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import shlex

    from digitnet.sweep import load_plan, run_sweep

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
    failed = [r for r in records if r["status"] == "failed"]
    stopped = sum(r["status"] == "stopped" for r in records)
    print(f"{len(records)} trials finished ({len(failed)} failed"
          + (f", {stopped} stopped early by successive halving" if stopped else "")
          + f"); results in {out / 'results.csv'} and {out / 'results.json'}")
    for r in failed:
        print(f"  {r['id']} failed: {r['error']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import shlex

    from digitnet.report import write_report

    page = write_report(args.path, args.out, markdown=args.markdown,
                        command=shlex.join(["digitnet", *args.argv]))
    print(f"wrote {page}" + (f" and {args.markdown}" if args.markdown else ""))
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "summary": cmd_summary, "datasets": cmd_datasets, "serve": cmd_serve,
            "export": cmd_export, "sweep": cmd_sweep, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser().parse_args(argv)
        if "argv" in args:  # sweeps and reports record the command that made them
            args.argv = argv
        if args.command in ("train", "evaluate", "predict", "serve", "sweep"):
            from digitnet.runtime import set_cpu_threading

            set_cpu_threading()  # before JAX starts; see digitnet/runtime.py
        return COMMANDS[args.command](args)
    except DigitnetError as exc:
        print(f"digitnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitnet: interrupted", file=sys.stderr)
        return 130
