"""Dynamic micro-batching and back-pressure: many requests, one forward call, a bounded queue.

The forward pass of a small MLP costs microseconds, less than handing work to a thread, so it
runs in the event loop itself. Requests that reach the model in the same turn of the loop (or
within `max_wait_s` of the first, while more keep arriving) go through it as one batch and each
gets its own rows back; a lone request is answered in the next turn, never held for the timer.

Admission bounds the work in progress: past `max_queue` requests being answered, a prediction
request gets 429 with Retry-After at once, before its body is read, so that overload costs no
memory and the requests already admitted keep their latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

Forward = Callable[[np.ndarray], np.ndarray]


class MicroBatcher:
    def __init__(self, forward: Forward, max_rows: int, max_wait_s: float,
                 on_batch: Callable[[int], None] | None = None):
        self.forward, self.max_rows, self.max_wait_s = forward, max_rows, max_wait_s
        self.on_batch = on_batch
        self.pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self.rows = 0
        self.scheduled = False
        self.first = 0.0
        self.seen = 0

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        """The forward pass's rows for x (n, dim), computed together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self.pending.append((x, future))
        self.rows += len(x)
        if self.rows >= self.max_rows:
            self._flush()
        elif not self.scheduled:
            self.scheduled, self.first, self.seen = True, time.monotonic(), len(self.pending)
            loop.call_soon(self._check)
        return await future

    def _check(self) -> None:
        """Flush now, unless requests are still arriving and the first has waited < max_wait_s."""
        if not self.pending:
            self.scheduled = False
            return
        if len(self.pending) > self.seen and time.monotonic() - self.first < self.max_wait_s:
            self.seen = len(self.pending)
            asyncio.get_running_loop().call_soon(self._check)
            return
        self.scheduled = False
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            take, rows = 1, len(self.pending[0][0])
            while take < len(self.pending) and rows + len(self.pending[take][0]) <= self.max_rows:
                rows += len(self.pending[take][0])
                take += 1
            batch, self.pending = self.pending[:take], self.pending[take:]
            self.rows -= rows
            xs = [x for x, _ in batch]
            try:
                out = self.forward(xs[0] if len(xs) == 1 else np.concatenate(xs))
            except Exception as exc:  # every waiting request learns of it, the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(rows)
            start = 0
            for x, future in batch:
                if not future.done():
                    future.set_result(out[start:start + len(x)])
                start += len(x)


class Admission:
    """ASGI middleware: at most `max_queue` prediction requests in progress; the rest get 429."""

    def __init__(self, app: ASGIApp, max_queue: int, paths: frozenset[str],
                 on_depth: Callable[[int], None] | None = None):
        self.app, self.max_queue, self.paths, self.on_depth = app, max_queue, paths, on_depth
        self.depth = 0
        self.busy = orjson.dumps({"error": "busy", "detail": f"the server is answering {max_queue} "
                                  "prediction requests already; retry after a second"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.depth >= self.max_queue:
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                    (b"content-length", str(len(self.busy)).encode())]})
            await send({"type": "http.response.body", "body": self.busy})
            return
        self.depth += 1
        if self.on_depth is not None:
            self.on_depth(self.depth)
        try:
            await self.app(scope, receive, send)
        finally:
            self.depth -= 1
            if self.on_depth is not None:
                self.on_depth(self.depth)
