"""The HTTP server behind `digitnet serve`: uvicorn (httptools), with what a public service needs
that uvicorn leaves out.

- Header and body deadlines: a connection must deliver its request line and headers within
  `header_timeout` seconds of connecting (or of starting its next request), and its body within
  `body_timeout` of its headers; a slow client gets 408 and is closed.
- A connection limit below the file-descriptor limit: when a new connection would pass it, the
  connection that has waited longest on its client (stalled mid-request, or idle between
  requests) is closed to make room, so a slowloris cannot lock out /health.
- uvicorn's own answers to unparseable requests (bad Content-Length, bad chunk sizes, null
  bytes) are JSON like every other error; HTTP/0.9 requests, which httptools would let
  through, get the same 400.
- The port is bound before anything is printed, so a busy port is a one-line error (exit 2).
- `workers` > 1 runs that many processes on the one socket, each with all of the above.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import json
import os
import resource
import socket
import tempfile
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from digitnet.errors import ConfigError
from digitnet.serve.metrics import forget_process

# File descriptors kept free for the process itself (the model, logs, Python's own).
RESERVED_FDS = 64
# Bytes of a request line and headers. httptools sets no bound: one endless header value grew
# in memory (by quadratic concatenation) until the header deadline.
MAX_HEAD_BYTES = 64 * 1024
APP_ENV = "DIGITNET_SERVE_APP"  # how a worker process learns which app to build
# How long a worker may take to load the model before uvicorn's supervisor gives up on it (its
# default, 5 s, restarts workers forever on a busy machine while JAX is still importing).
WORKER_START_S = 120
# glibc mallopt(): freed memory kept for reuse, and the size above which blocks are mmapped
# (those go back to the kernel at once: a large photo's full-size decode).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_KEEP_BYTES, MALLOC_MMAP_BYTES = 64 << 20, 8 << 20


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_connections: int = 1000
    access_log: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be within 0–65535, got {self.port}")
        if self.workers < 1 or self.max_connections < 1:
            raise ConfigError("--workers and --max-connections must be at least 1")
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(f"--{name.replace('_', '-')} must be within (0, 3600] seconds")


def error_bytes(status: int, reason: bytes, code: str, detail: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": code, "detail": detail})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n" % (status, reason, len(body), extra) + body)


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus deadlines, a connection limit and JSON 400s. Its
    settings travel on uvicorn's Config (`config.digitnet`), which reaches worker processes."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self.options: ServerOptions = config.digitnet  # type: ignore[attr-defined]
        self.max_connections: int = config.digitnet_max_connections  # type: ignore[attr-defined]
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting_since: float | None = None  # on the client: mid-request or idle
        self.partial = False  # bytes of a request have arrived, its headers have not
        self.refused = False  # answered 400 and closing: the parser's later callbacks are ignored
        self.head_bytes = 0  # received since this request began, until its headers are complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        self._arm(self.options.header_timeout)
        if len(self.connections) > self.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        waiting = [c for c in self.connections
                   if c is not self and getattr(c, "waiting_since", None) is not None]
        if waiting:
            victim = min(waiting, key=lambda c: c.waiting_since)
            victim._drop(408, b"Request Timeout", "request_timeout",
                         "closed to make room: the server is at its connection limit")
        else:
            self._drop(503, b"Service Unavailable", "busy",
                       "the server is at its connection limit; retry after a second", b"retry-after: 1\r\n")

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.cycle is not None and self.cycle.response_started:
            return
        self._drop(408, b"Request Timeout", "request_timeout",
                   "the request did not arrive in time (header or body deadline)")

    def _drop(self, status: int, reason: bytes, code: str, detail: str, extra: bytes = b"") -> None:
        """Answer with one JSON error where a request is underway, then close."""
        if self.transport.is_closing():
            return
        self._disarm()
        self.waiting_since = None
        underway = self.partial or (self.cycle is not None and not self.cycle.response_complete)
        if underway or status == 503:
            self.transport.write(error_bytes(status, reason, code, detail, extra))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.partial = True
        if self.partial:
            self.head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a read that completes the headers may carry body bytes too.
        if self.partial and self.head_bytes > MAX_HEAD_BYTES:
            self.refused = True
            self._drop(431, b"Request Header Fields Too Large", "headers_too_large",
                       f"the request line and headers exceed {MAX_HEAD_BYTES:,} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.partial = True
        if self.deadline is None:
            self._arm(self.options.header_timeout)

    def on_headers_complete(self) -> None:
        self.partial = False
        self.head_bytes = 0
        if self.parser.get_http_version() not in ("1.0", "1.1"):  # HTTP/0.9's bare "GET /"
            self.refused = True
            self.send_400_response("")
            return
        self._arm(self.options.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self.waiting_since = None
        if not self.refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self.waiting_since = self.loop.time()
        self.partial = False
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.waiting_since = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(error_bytes(400, b"Bad Request", "bad_request",
                                         "invalid HTTP request: the request line, headers or "
                                         "chunked body could not be parsed"))
        self.transport.close()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-line UsageError (busy port, unknown host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use (another server?); "
                             "choose another with --port") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def connection_budget(wanted: int) -> int:
    """At most `wanted` connections, and never more than the descriptors this process may open
    (its soft limit is raised to the hard one first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - in_use - RESERVED_FDS))


def logging_config(access_log: bool) -> dict[str, Any]:
    """uvicorn's start-up chatter off (digitnet prints its own line); request lines on."""
    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    return config


def uvicorn_config(app: Any, options: ServerOptions, sock: socket.socket, factory: bool = False
                   ) -> uvicorn.Config:
    config = uvicorn.Config(app, factory=factory, http=Protocol, loop="auto", fd=sock.fileno(),
                            workers=options.workers, access_log=options.access_log,
                            log_config=logging_config(options.access_log), log_level=None,
                            timeout_keep_alive=int(max(1, options.keep_alive)),
                            limit_concurrency=None, timeout_worker_healthcheck=WORKER_START_S)
    config.digitnet = options  # type: ignore[attr-defined]
    config.digitnet_max_connections = connection_budget(options.max_connections)  # type: ignore[attr-defined]
    return config


def run(app_args: dict[str, Any], options: ServerOptions, name: str) -> None:
    """Serve the app that build_app(app_args) makes (JSON-able: run dir, limits as a dict,
    batching). "serving NAME on URL" is printed once the port is bound (and, with one worker,
    the model loaded)."""
    sock = bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    procs = f", {options.workers} workers" if options.workers > 1 else ""
    announce = f"digitnet: serving {name} on http://{host}:{port}/{procs} (Ctrl-C to stop)"
    if options.workers == 1:
        config = uvicorn_config(build_app(app_args), options, sock)
        print(announce, flush=True)
        uvicorn.Server(config).run(sockets=[sock])
        return
    os.environ[APP_ENV] = json.dumps(app_args)
    with tempfile.TemporaryDirectory(prefix="digitnet-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        config = uvicorn_config("digitnet.serve.server:worker_app", options, sock, factory=True)
        print(announce, flush=True)
        Supervisor(config, sockets=[sock]).run()


class Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes, and:

    - a worker that dies (and is replaced) or is retired by a restart (SIGHUP) has its live
      gauges dropped from the shared metrics, so /metrics does not go on adding up the queue
      depth of processes that are gone;
    - the supervisor closes its copy of each worker's end of their health-check pipe once the
      worker has its own, so a worker that dies while a ping is on its way is seen dead at
      once; otherwise the ping waits out the whole health-check timeout (WORKER_START_S),
      during which nothing is restarted and Ctrl-C is not acted on."""

    def init_processes(self) -> None:
        super().init_processes()
        self._detach()

    def keep_subprocess_alive(self) -> None:
        alive = self._pids()
        super().keep_subprocess_alive()
        self._detach()
        self._bury(alive)

    def restart_all(self) -> None:
        alive = self._pids()
        super().restart_all()
        self._detach()
        self._bury(alive)

    def _detach(self) -> None:
        for process in self.processes:
            process.child_conn.close()  # (closing twice is allowed)

    def _pids(self) -> set[int]:
        return {p.pid for p in self.processes if p.pid is not None}

    def _bury(self, before: set[int]) -> None:
        for pid in before - self._pids():
            forget_process(pid)


def build_app(app_args: dict[str, Any]) -> Any:
    from digitnet.serve.app import create_app
    from digitnet.serve.limits import Limits

    app = create_app(**{**app_args, "limits": Limits(**app_args["limits"])})
    settle_heap()
    return app


def settle_heap() -> None:
    """Take what start-up left alive (JAX, NumPy, the model: some 160k objects) out of the
    cyclic GC's reach. Its full collections would otherwise walk all of it, stalling the event
    loop for 100 ms or more now and then: the p99 tail (docs/serving.md).

    And let glibc's malloc keep freed memory below MALLOC_KEEP_BYTES for reuse: by default an
    image's canvas-sized arrays go back to the kernel when freed and come back as fresh pages
    (a page fault each 4 KiB) for the next upload."""
    gc.collect()
    gc.freeze()
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES)
        libc.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES)
    except (OSError, AttributeError):  # not glibc: its allocator's own policy stands
        pass


def worker_app() -> Any:
    """The app in a worker process (uvicorn calls this factory in each one)."""
    return build_app(json.loads(os.environ[APP_ENV]))
