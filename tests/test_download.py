"""Downloads against a real HTTP server on 127.0.0.1: mirrors, checksums, drops, HTML, offline.

The registry's `kmnist` entry is pointed at the local server, with small synthetic IDX files and
their SHA-256 pins computed here; everything else (urllib, rich, the cache) is the real thing.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rich.progress import Progress

from digitnet.cli import main
from digitnet.data import datasets, download
from digitnet.data.datasets import FILES, RemoteFile
from digitnet.data.idx import encode_idx
from digitnet.errors import DataError

HTML = b"<!DOCTYPE html><html><body>Moved. Please see our new site.</body></html>\n"


def synthetic_files() -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 40).astype(np.uint8),
        "test_images": rng.integers(0, 256, (10, 8, 8), dtype=np.uint8),
        "test_labels": np.arange(10, dtype=np.uint8),
    }
    files = {f"{FILES[r]}.gz": gzip.compress(encode_idx(a), mtime=0) for r, a in arrays.items()}
    return arrays, files


ARRAYS, SERVED = synthetic_files()


class Mirror(BaseHTTPRequestHandler):
    """Serves server.plan[path]: a list of behaviours, one per request (the last one repeats)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server: MirrorServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.hits[self.path] = server.hits.get(self.path, 0) + 1
            steps = server.plan.get(self.path, [("status", 404)])
            kind, *arg = steps.pop(0) if len(steps) > 1 else steps[0]
        if kind == "status":
            self.send_error(arg[0])
            return
        if kind == "html":
            self.reply(HTML, "text/html")
            return
        body: bytes = arg[0]
        if kind == "ok":
            self.reply(body)
        elif kind == "slow":  # in two halves, so that concurrent clients overlap
            self.reply(body, split=0.15)
        elif kind == "drop":  # announce the whole file, send half, hang up
            self.reply(body[: len(body) // 2], length=len(body))
        elif kind == "stall":  # headers, then silence
            self.reply(b"", length=len(body))
            time.sleep(1.0)
        elif kind == "unannounced":  # no Content-Length: the end of the connection ends the body
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(body)

    def reply(self, body: bytes, kind: str = "application/octet-stream", length: int | None = None,
              split: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if split:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(split)
            body = body[len(body) // 2 :]
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class MirrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Mirror)
        self.lock = threading.Lock()
        self.plan: dict[str, list[tuple]] = {}
        self.hits: dict[str, int] = {}

    def url(self, mirror: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{mirror}/"

    def serve(self, mirror: str, kind: str = "ok", names=tuple(SERVED)) -> None:
        for name in names:
            self.plan[f"/{mirror}/{name}"] = [(kind, SERVED[name])]

    def hits_on(self, mirror: str) -> int:
        return sum(n for path, n in self.hits.items() if path.startswith(f"/{mirror}/"))

    def handle_error(self, request, client_address) -> None:
        pass  # clients that give up on a stalled or dropped reply are part of the tests


@pytest.fixture
def server():
    srv = MirrorServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch, server) -> Path:
    """An empty $DIGITNET_HOME; kmnist pinned to the synthetic files; quick retries."""
    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path / "home"))
    pins = {role: RemoteFile(f"{stem}.gz", len(SERVED[f"{stem}.gz"]),
                             hashlib.sha256(SERVED[f"{stem}.gz"]).hexdigest())
            for role, stem in FILES.items()}
    entry = dataclasses.replace(datasets.REGISTRY["kmnist"], files=pins,
                                mirrors=(server.url("m1"), server.url("m2")))
    monkeypatch.setitem(datasets.REGISTRY, "kmnist", entry)
    monkeypatch.setattr(download, "BACKOFF", 0.01)
    monkeypatch.setattr(download, "TIMEOUT", 5.0)  # generous: the test machine may be busy
    datasets.load_dataset.cache_clear()
    yield tmp_path / "home"
    datasets.load_dataset.cache_clear()


class RecordingBar(Progress):
    """The real rich bar, drawing into a buffer as in a terminal, remembering each update."""

    def __init__(self):
        self.buffer = io.StringIO()
        super().__init__(*download.progress_bar().columns, transient=True,
                         console=Console(file=self.buffer, force_terminal=True, width=120))
        self.seen: dict[str, tuple[float | None, float]] = {}

    def update(self, task_id, **fields) -> None:
        super().update(task_id, **fields)
        task = self._tasks[task_id]
        self.seen[task.description] = (task.total, task.completed)


def quiet_bar() -> RecordingBar:
    return RecordingBar()


def cache_listing(home: Path) -> list[str]:
    folder = home / "kmnist"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_synthetic(ds) -> None:
    for role, array in ARRAYS.items():
        got = getattr(ds, {"train_images": "x_train", "train_labels": "y_train",
                           "test_images": "x_test", "test_labels": "y_test"}[role])
        np.testing.assert_array_equal(got, array)


def test_fetch_downloads_every_file_with_progress_and_checksums(home, server):
    server.serve("m1")
    assert datasets.status("kmnist") == "missing"
    bar = quiet_bar()
    with bar:
        folder = datasets.fetch("kmnist", progress=bar)
    assert folder == home / "kmnist"
    assert cache_listing(home) == sorted(SERVED)  # four files, no temporary left behind
    for name, body in SERVED.items():
        assert (folder / name).read_bytes() == body
    assert bar.seen == {name: (len(body), len(body)) for name, body in SERVED.items()}
    drawn = bar.buffer.getvalue()
    assert "t10k-images-idx3-ubyte.gz" in drawn and "kB" in drawn  # the bar itself, drawn
    assert f"kmnist: t10k-labels-idx1-ubyte.gz (0.0 MB) from {server.url('m1')}" in drawn
    assert datasets.status("kmnist") == "cached"
    assert all(problem is None for problem in datasets.verify("kmnist").values())
    assert_synthetic(datasets.load_dataset("kmnist"))
    hits = dict(server.hits)
    datasets.fetch("kmnist", progress=bar)  # all there and valid: no request at all
    assert server.hits == hits


def test_first_use_downloads_through_load_dataset_and_cli(home, server, capsys):
    server.serve("m2")
    server.serve("m1", "status", names=[])  # m1 knows nothing: 404 for every file
    assert main(["datasets", "fetch", "kmnist"]) == 0
    out = capsys.readouterr().out
    assert "40 train + 10 test images 8×8, 10 classes" in out and "checksums OK" in out
    # A 404 is not retried, and the mirror that served the first file is asked first after.
    assert server.hits_on("m1") == 1 and server.hits_on("m2") == 4
    assert_synthetic(datasets.load_dataset("kmnist"))
    assert main(["datasets", "list"]) == 0
    assert any(line.split()[:2] == ["kmnist", "cached"] for line in capsys.readouterr().out.splitlines())


def test_wrong_checksum_on_first_mirror_falls_back_to_second(home, server):
    server.serve("m1")
    name = "train-images-idx3-ubyte.gz"
    tampered = bytearray(SERVED[name])
    tampered[-9] ^= 0x01  # same length, one bit off
    server.plan[f"/m1/{name}"] = [("ok", bytes(tampered))]
    server.serve("m2", names=[name])
    datasets.fetch("kmnist", progress=quiet_bar())
    assert server.hits[f"/m1/{name}"] == 1  # the same bytes would come back: no retry
    assert server.hits[f"/m2/{name}"] == 1
    assert (home / "kmnist" / name).read_bytes() == SERVED[name]


def test_dropped_connection_is_retried_on_the_same_mirror(home, server):
    server.serve("m1")
    name = "t10k-images-idx3-ubyte.gz"
    server.plan[f"/m1/{name}"] = [("drop", SERVED[name]), ("ok", SERVED[name])]
    datasets.fetch("kmnist", progress=quiet_bar())
    assert server.hits[f"/m1/{name}"] == 2 and server.hits_on("m2") == 0
    assert cache_listing(home) == sorted(SERVED)


@pytest.mark.parametrize("failure", ["drop", "stall"])
def test_mirror_that_keeps_failing_gives_way_to_the_next(home, server, failure, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT", 0.3)  # the stalled mirror says nothing for 1 s
    server.serve("m1", failure)
    server.serve("m2")
    datasets.fetch("kmnist", progress=quiet_bar())
    first, *others = SERVED
    assert server.hits[f"/m1/{first}"] == download.ATTEMPTS
    assert all(f"/m1/{name}" not in server.hits for name in others)  # m2 served first: now first
    assert_synthetic(datasets.load_dataset("kmnist"))


@pytest.mark.parametrize("kind", ["html", "unannounced"])
def test_html_page_served_with_200_is_rejected_and_never_cached(home, server, kind):
    if kind == "html":
        server.serve("m1", "html")
    else:  # an error page that does not say what it is: only its checksum gives it away
        for name in SERVED:
            server.plan[f"/m1/{name}"] = [("unannounced", HTML)]
    server.plan.update({f"/m2/{name}": [("status", 503)] for name in SERVED})
    with pytest.raises(DataError) as err:
        datasets.fetch("kmnist", progress=quiet_bar())
    message = str(err.value)
    reason = "served an HTML page" if kind == "html" else "(an HTML page)"
    assert f"{server.url('m1')}train-images-idx3-ubyte.gz" in message and reason in message
    assert "HTTP 503; gave up after 3 tries" in message
    assert cache_listing(home) == []
    server.serve("m2")
    datasets.fetch("kmnist", progress=quiet_bar())
    assert cache_listing(home) == sorted(SERVED)


def test_all_mirrors_failing_gives_one_clear_offline_line(home, server, capsys, monkeypatch):
    entry = datasets.REGISTRY["kmnist"]
    closed = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused
    monkeypatch.setitem(datasets.REGISTRY, "kmnist",
                        dataclasses.replace(entry, mirrors=(closed, server.url("m2"))))
    assert main(["datasets", "fetch", "kmnist"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("digitnet: error: kmnist: could not download train-images-idx3-ubyte.gz")
    assert f"{closed}train-images-idx3-ubyte.gz (Connection refused)" in err
    assert f"{server.url('m2')}train-images-idx3-ubyte.gz (HTTP 404 Not Found)" in err
    assert "--data-dir DIR" in err and "load_dataset(path=DIR)" in err
    with pytest.raises(DataError, match="Offline"):
        datasets.load_dataset("kmnist")
    assert cache_listing(home) == []


def test_cache_never_holds_a_partial_or_corrupt_file(home, server):
    server.serve("m1", "drop")
    server.serve("m2", "drop")
    with pytest.raises(DataError, match="connection dropped after"):
        datasets.fetch("kmnist", progress=quiet_bar())
    assert cache_listing(home) == []
    # A run killed mid-download leaves its temporary file; the next download clears it.
    folder = home / "kmnist"
    (folder / ".train-images-idx3-ubyte.gz.abc123.part").write_bytes(b"half")
    server.serve("m1")
    datasets.fetch("kmnist", progress=quiet_bar())
    assert cache_listing(home) == sorted(SERVED)


def test_corrupt_cached_file_is_caught_on_load_and_repaired_by_fetch(home, server, capsys):
    server.serve("m1")
    datasets.fetch("kmnist", progress=quiet_bar())
    victim = home / "kmnist" / "train-labels-idx1-ubyte.gz"
    data = bytearray(victim.read_bytes())
    data[20] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match the pinned|is not the pinned") as err:
        datasets.load_dataset("kmnist")
    assert str(victim) in str(err.value)
    assert main(["datasets", "verify", "kmnist"]) == 2
    captured = capsys.readouterr()
    assert f"BAD  {victim}: SHA-256" in captured.out
    assert "1 of 4 files missing or corrupt; `digitnet datasets fetch kmnist`" in captured.err
    assert main(["datasets", "fetch", "kmnist"]) == 0
    assert main(["datasets", "verify", "kmnist"]) == 0
    assert "all 4 files match their pinned SHA-256" in capsys.readouterr().out


def test_concurrent_fetches_into_one_cache_end_with_one_good_copy(home, server):
    server.serve("m1", "slow")
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            datasets.fetch("kmnist", progress=quiet_bar())
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert cache_listing(home) == sorted(SERVED)
    # The folder lock makes the second fetch wait and then find the files there.
    assert all(server.hits[f"/m1/{name}"] == 1 for name in SERVED)
    assert_synthetic(datasets.load_dataset("kmnist"))


def test_unwritable_cache_is_a_one_line_error(home, server, tmp_path, monkeypatch):
    server.serve("m1")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DIGITNET_HOME", str(blocker))
    with pytest.raises(DataError, match="cannot write the download cache .*DIGITNET_HOME"):
        datasets.fetch("kmnist", progress=quiet_bar())
