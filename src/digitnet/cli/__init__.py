"""The `digitnet` command: one sub-command per verb.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr, no traceback), 1 a bug.
Heavy modules (JAX, the engine) are imported inside each verb, so `digitnet --help` is instant.
The parser lives in cli/parser.py; the verbs, grouped by job, in cli/{train,inspect,serve,data}.py.
"""

from __future__ import annotations

import argparse
import sys

from digitnet.cli import trace
from digitnet.cli.data import cmd_datasets
from digitnet.cli.inspect import cmd_compare, cmd_evaluate, cmd_predict, cmd_report, cmd_runs, cmd_summary
from digitnet.cli.parser import Parser, UsageError, add_train_options, build_parser
from digitnet.cli.serve import cmd_export, cmd_serve
from digitnet.cli.train import cmd_calibrate, cmd_ensemble, cmd_sweep, cmd_train, training_shapes
from digitnet.errors import DigitnetError

__all__ = ["COMMANDS", "Parser", "UsageError", "add_train_options", "build_parser", "main", "run"]

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "summary": cmd_summary, "datasets": cmd_datasets, "serve": cmd_serve,
            "export": cmd_export, "sweep": cmd_sweep, "report": cmd_report, "calibrate": cmd_calibrate,
            "runs": cmd_runs, "compare": cmd_compare,
            "ensemble": cmd_ensemble}


# Per-example multiply-adds of a model's layers above which `train --seeds/--ensemble` keeps one
# XLA device with its thread pool instead of one single-threaded device per core: such a step is
# a few large matrix products that the pool already splits over the cores, and sharded members
# took 1.5-2x the CPU time per member (the ceiling recipe's 2048-2048; docs/population.md, "Cores").
SHARD_MAX_MACS = 1_000_000


def population_size(args: argparse.Namespace) -> int:
    """How many models this command trains at once, for XLA's devices (a sweep in this process:
    any number; a population of large models: 1, see SHARD_MAX_MACS)."""
    if args.command == "train" and (args.seeds is not None or args.ensemble is not None):
        from digitnet.seeds import parse_seeds

        if (model_macs(args) or 0) > SHARD_MAX_MACS:
            return 1
        return len(parse_seeds(args.seeds)) if args.seeds is not None else max(1, args.ensemble)
    if args.command == "sweep" and args.backend == "local" and args.workers == 1 and not args.list:
        return 1 << 16
    return 1


def model_macs(args: argparse.Namespace) -> int | None:
    """Multiply-adds per example of the dense layers `train` will build (the options' input
    shape: MNIST's unless they say otherwise), over a resumed run's saved options as cmd_train
    resolves them; None when the options do not resolve (cmd_train says why)."""
    from digitnet.cli.train import resolved_options, resumed_options

    try:
        base = resumed_options(args.out) if args.resume and args.out else None
        sizes = resolved_options(args, base)[0].sizes
    except DigitnetError:
        return None
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def setup_xla(args: argparse.Namespace) -> None:
    """XLA's CPU client for this command, before JAX starts (see digitnet/runtime.py): devices
    for a population, then the threading (a calibrated one only for the shapes it was
    calibrated on: training_shapes)."""
    from digitnet.cli.seed_workers import workers_for
    from digitnet.runtime import population_devices, set_cpu_threading

    members = population_size(args)
    if workers_for(args, members) > 1:
        return  # this process starts no JAX: its workers set theirs up (cli.seed_workers)
    population_devices(members)
    set_cpu_threading(*(training_shapes(args) or (None, None)))


def main(argv: list[str] | None = None) -> int:
    trace.start()
    try:
        argv = sys.argv[1:] if argv is None else argv
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            print(parser.format_help(), end="", file=sys.stderr)
            return 2
        args.argv = argv  # sweeps and reports record the command that made them
        global _ran
        _ran = args.command
        if args.command in ("train", "evaluate", "predict", "serve", "sweep", "compare", "ensemble"):
            setup_xla(args)
            trace.mark("arguments parsed, xla set up")
        return COMMANDS[args.command](args)
    except DigitnetError as exc:
        print(f"digitnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Whoever read the output stopped (`digitnet train | head -1`); what the command writes
        # to disk was written before it printed. Quietly, as `head`'s other writers end.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run() -> None:
    """The `digitnet` executable: main(), then exit. After `digitnet train` the process ends
    without the interpreter's teardown (it frees every module and XLA's client, a sizeable part
    of a short run): the run's files are written atomically and closed before main returns,
    and exit_now first runs what a normal exit runs that can matter (the joins of non-daemon
    threads, atexit handlers) and flushes stdout and stderr."""
    code = main()
    if _ran in FAST_EXIT:
        exit_now(code)
    raise SystemExit(code)


# The commands whose process run() ends without the interpreter's teardown; and the last
# command main() ran.
FAST_EXIT = frozenset({"train"})
_ran: str | None = None


def exit_now(code: int) -> None:
    """End the process with `code` now, after the thread joins and atexit handlers a normal
    exit runs, and with stdout and stderr flushed; only the interpreter's teardown is skipped."""
    import atexit
    import os
    import threading

    threading._shutdown()  # type: ignore[attr-defined] - what Py_FinalizeEx runs first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
