"""Download one file with a pinned SHA-256 from a list of mirrors, safely, into a cache folder.

Each mirror is tried in order. A dropped connection, a timeout or a server error is retried on
the same mirror with exponential backoff; a wrong checksum, a wrong size, an HTML page or a
4xx answer moves on to the next mirror at once (asking again would get the same bytes). The
body streams into a temporary file next to the destination while it is hashed, and is renamed
into place only when its SHA-256 matches, so the cache never holds a partial or corrupt file.
A lock on the folder makes concurrent fetches of one cache wait for each other instead of
downloading twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from digitnet import __version__
from digitnet.errors import DataError
from digitnet.files import UMASK, fsync_dir

try:
    import fcntl
except ImportError:  # Windows: no flock; the atomic rename alone still keeps the cache sound
    fcntl = None  # type: ignore[assignment]

# Read at call time, so that tests (and impatient users) can shorten them.
TIMEOUT = 20.0  # seconds without a byte before a connection counts as dropped
ATTEMPTS = 3  # tries per mirror for transient failures
BACKOFF = 1.0  # seconds before the first retry; doubles each time
CHUNK = 1 << 16
USER_AGENT = f"digitnet/{__version__} (Python urllib)"


class DownloadError(DataError):
    """No mirror served the pinned file. `failures` holds one 'URL (reason)' per mirror."""

    def __init__(self, target: str, failures: list[str]):
        self.failures = failures
        super().__init__(f"could not download {target}: " + "; ".join(failures))


class Transient(Exception):
    """Worth asking the same mirror again after a pause."""


class Rejected(Exception):
    """This mirror will not serve the right bytes: try the next one."""


def progress_bar(console: Console | None = None) -> Progress:
    """A rich progress bar on stderr while a file downloads, in a terminal or Jupyter only
    (a log gets the one line per file that `fetch` prints instead)."""
    console = console or Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=console, transient=True,
        disable=not (console.is_interactive or console.is_jupyter),
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def is_valid(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def download(urls: Sequence[str], dest: Path, sha256: str, size: int | None = None, *,
             progress: Progress | None = None) -> str | None:
    """Make `dest` hold the file whose SHA-256 is `sha256`, from the first mirror that serves it.

    Returns the URL it came from, or None when `dest` already held the right bytes.
    Raises DownloadError (one line, every mirror's reason) when all mirrors fail.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with locked(dest.parent):
        if is_valid(dest, sha256):
            return None
        for stale in dest.parent.glob(f".{dest.name}.*.part"):  # a killed run's leftovers
            stale.unlink(missing_ok=True)
        failures = []
        for url in urls:
            reason = try_mirror(url, dest, sha256, size, progress)
            if reason is None:
                return url
            failures.append(f"{url} ({reason})")
        raise DownloadError(dest.name, failures)


def try_mirror(url: str, dest: Path, sha256: str, size: int | None,
               progress: Progress | None) -> str | None:
    """None on success, else why this mirror failed (after retries of transient failures)."""
    attempt = 1
    while True:
        try:
            fetch_to(url, dest, sha256, size, progress)
            return None
        except Rejected as exc:
            return str(exc)
        except Transient as exc:
            if attempt == ATTEMPTS:
                return f"{exc}; gave up after {ATTEMPTS} tries"
            time.sleep(BACKOFF * 2 ** (attempt - 1))
            attempt += 1


def fetch_to(url: str, dest: Path, sha256: str, size: int | None,
             progress: Progress | None) -> None:
    """One attempt: stream `url` into a temporary file, check it, rename it to `dest`."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a cache may be shared
    task: TaskID | None = None
    try:
        with os.fdopen(fd, "wb") as out, open_url(request) as response:
            announced = check_headers(response, size)
            if progress is not None:
                task = progress.add_task(dest.name, total=announced or size)
            digest, got, head = hashlib.sha256(), 0, b""
            while block := read_block(response):
                got += len(block)
                if size is not None and got > size:
                    raise Rejected(f"sent more than the expected {size} bytes")
                head = head or block[:64]
                digest.update(block)
                out.write(block)
                if progress is not None and task is not None:
                    progress.update(task, completed=got)
            if announced is not None and got < announced:
                raise Transient(f"connection dropped after {got} of {announced} bytes")
            if digest.hexdigest() != sha256:
                what = "an HTML page" if head.lstrip()[:1] == b"<" else "a different file"
                raise Rejected(f"{pin_mismatch(digest.hexdigest(), sha256)} ({what})")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)
        if progress is not None and task is not None:
            progress.remove_task(task)


@contextlib.contextmanager
def open_url(request: urllib.request.Request) -> Iterator[http.client.HTTPResponse]:
    """urlopen, with its many failure types sorted into Transient and Rejected."""
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (408, 429) or exc.code >= 500:
            raise Transient(f"HTTP {exc.code}") from None
        raise Rejected(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        # No connection at all (offline, no such host, refused, unreachable): retrying would
        # only make an offline user wait longer, so go on to the next mirror.
        if isinstance(exc.reason, ConnectionResetError):
            raise Transient(describe(exc.reason)) from None
        raise Rejected(describe(exc.reason)) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise Transient(describe(exc)) from None
    with response:
        yield response


def read_block(response: http.client.HTTPResponse) -> bytes:
    try:
        return response.read(CHUNK)
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise Transient(describe(exc)) from None


def check_headers(response: http.client.HTTPResponse, size: int | None) -> int | None:
    """The announced length, if any; rejects an HTML page or a wrong length before reading the body."""
    kind = response.headers.get_content_type()
    if kind == "text/html":
        raise Rejected("served an HTML page instead of the file")
    length = response.headers.get("Content-Length")
    announced = int(length) if length and length.isdigit() else None
    if announced is not None and size is not None and announced != size:
        raise Rejected(f"announced {announced} bytes, expected {size}")
    return announced


def pin_mismatch(got: str, want: str) -> str:
    return f"SHA-256 {got[:12]}… is not the pinned {want[:12]}…"


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on the directory itself: no lock files)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
