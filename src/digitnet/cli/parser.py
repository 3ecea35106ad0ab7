"""The `digitnet` command line: its parser, flags and help text (no verb runs here)."""

from __future__ import annotations

import argparse

from digitnet.errors import DigitnetError

# The first line of `digitnet --help`.
DESCRIPTION = "The `digitnet` command: one sub-command per verb."


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

    p = Parser(prog="digitnet", description=DESCRIPTION)
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

