"""Prometheus metrics for GET /metrics: requests by path and status, latency, batch sizes,
queue depth and the model's identity (prometheus-client's text format).

With several worker processes (`digitnet serve --workers N`) the launcher sets
PROMETHEUS_MULTIPROC_DIR before any worker starts; each worker then writes its values to files
there and /metrics, in whichever worker answers it, adds up all of them; the supervisor drops
the live gauges of a worker that dies (digitnet.serve.server.Supervisor).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as mp
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def forget_process(pid: int) -> None:
    """A worker process is gone: its live gauges (queue depth) leave the shared directory; its
    counters and histograms stay, as the requests it answered did happen."""
    if multiprocess():
        mp.mark_process_dead(pid)


class Metrics:
    def __init__(self, model: dict[str, str], max_batch: int, paths: frozenset[str]):
        self.paths = paths
        self.children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("digitnet_requests", "HTTP requests answered, by path and status",
                                ("path", "status"), registry=r)
        self.latency = Histogram("digitnet_request_seconds", "time from request to answer, by path",
                                 ("path",), buckets=LATENCY_BUCKETS, registry=r)
        sizes, b = [], 1
        while b < max_batch:
            sizes.append(b)
            b *= 2
        self.batch = Histogram("digitnet_batch_rows", "rows per forward call (micro-batches)",
                               buckets=(*sizes, max_batch), registry=r)
        self.depth = Gauge("digitnet_queue_depth", "prediction requests in progress",
                           registry=r, multiprocess_mode="livesum")
        info = Gauge("digitnet_model_info", "the model being served (value 1)",
                     ("name", "id", "architecture"), registry=r, multiprocess_mode="max")
        info.labels(model["name"], model["id"], model["architecture"]).set(1)

    def render(self) -> bytes:
        if multiprocess():
            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        label = path if path in self.paths else "other"
        key = (label, status)
        children = self.children.get(key)
        if children is None:  # labels() takes a lock and builds a key: once per path and status
            children = self.children[key] = (self.requests.labels(label, str(status)),
                                             self.latency.labels(label))
        children[0].inc()
        children[1].observe(seconds)


class Instrument:
    """ASGI middleware: every HTTP answer counted by path and status, and timed."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: Any = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - start)
