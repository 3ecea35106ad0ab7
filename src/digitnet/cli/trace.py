"""DIGITNET_TRACE_PHASES=1: a timeline of one command on stderr, for finding where a cold start's
seconds go (bench/cold_start.py `timeline` reads it). Off by default, and then it costs one
environment lookup at start; on, it also starts XLA's CPU backend on its own, to time it apart.

Each line is `digitnet-trace {json}`: a mark {"mark", "t", "cpu", "thread"} (t: wall-clock
time.time(), cpu: the process' CPU seconds, all threads) or one of JAX's compile steps as a span
{"span", "fun", "t0", "t", "thread"} (tracing, lowering, XLA compilation or a cache hit).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from typing import Any

ON = os.environ.get("DIGITNET_TRACE_PHASES", "0").lower() not in ("", "0", "false", "no", "off")


def emit(record: dict[str, Any]) -> None:
    record["thread"] = threading.current_thread().name
    sys.stderr.write("digitnet-trace " + json.dumps(record) + "\n")
    sys.stderr.flush()


def mark(name: str) -> None:
    """The end of a phase: what the process has done since the mark before."""
    if ON:
        emit({"mark": name, "t": time.time(), "cpu": time.process_time()})


def start() -> None:
    """The first mark (the command's modules imported), and the last one, at exit: after it
    only the interpreter's own teardown is left."""
    if ON:
        mark("cli imported")
        atexit.register(mark, "atexit")  # registered first, so it runs after JAX's handlers


def watch_jax() -> None:
    """After `import jax`: one span per JAX compile step, and the backend's start timed."""
    if not ON:
        return
    import jax

    mark("jax and digitnet imported")

    def span(event: str, t0: float, t1: float, **kw: Any) -> None:
        if "/compile" in event or "cache" in event:
            emit({"span": event.rsplit("/", 1)[-1], "fun": str(kw.get("fun_name", "")), "t0": t0, "t": t1})

    jax.monitoring.register_event_time_span_listener(span)
    jax.devices()
    mark("xla backend started")


def data_ready(name: str) -> None:
    """When the dataset read in a thread (datasets.prefetch) is in memory."""
    if not ON:
        return
    from digitnet.data.datasets import _prefetched

    if name in _prefetched:
        _prefetched[name].result()
        mark("data loaded and verified")


def callback() -> Any:
    """A training callback that marks the start of training and each epoch's end."""
    from digitnet.callbacks import Callback

    class Marks(Callback):
        def on_train_begin(self, state: Any, steps_per_epoch: int, epochs: int) -> None:
            mark("run set up, initial weights")

        def on_epoch_begin(self, epoch: int) -> None:
            if epoch == 0:
                mark("training step compiled")

        def on_epoch_end(self, state: Any, logs: dict[str, float]) -> None:
            mark(f"epoch {state.epoch}")

        def on_train_end(self, state: Any) -> None:
            mark("training ended")

    return Marks()
