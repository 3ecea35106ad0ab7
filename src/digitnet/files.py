"""Atomic file writes: a temporary file in the same folder, fsync, rename; so a crash leaves
either the old file or the new one, never half of one. Failures raise StorageError."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from digitnet.errors import StorageError

UMASK = os.umask(0o022)
os.umask(UMASK)
TMP_SUFFIX = ".tmp"


def json_bytes(obj: Any) -> bytes:
    """A JSON file's bytes, as digitnet writes config.json, summary.json and the like."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    atomic_write_files(path.parent, {path.name: data})


def atomic_write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write several files of one folder, each atomically. All are staged (written and synced
    to temporary files) before any is renamed, so a full disk or a failed write changes
    nothing: the folder keeps its previous files. Failures raise StorageError."""
    folder = Path(folder)
    staged: list[tuple[str, Path]] = []
    target = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = folder / name
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=TMP_SUFFIX)
            staged.append((tmp, folder / name))
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a model file is for sharing
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        while staged:
            tmp, target = staged[0]
            os.replace(tmp, target)
            staged.pop(0)
        target = folder
        fsync_dir(folder)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry itself is flushed)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
