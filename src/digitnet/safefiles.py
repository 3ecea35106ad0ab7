"""Reading files we did not write: regular files only, sized before a byte is read.

A run directory, a dataset folder or an option file may hold a symlink to /dev/zero, a FIFO
(whose open() blocks until a writer comes), a device or a sparse file of gigabytes. Every
loader opens through here: the last path component is never followed as a link, the open
never blocks, the file must be regular, inside `root` when one is given, and no larger than
the caller's limit — all checked on the open descriptor, before anything is read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from digitnet.errors import DigitnetError, ModelFileError

KIND = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
        stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link"}
# The largest JSON file a loader reads (a run's config.json is a few kB).
MAX_JSON_BYTES = 16 << 20


def open_regular(path: str | os.PathLike, max_bytes: int, root: str | os.PathLike | None = None,
                 error: type[DigitnetError] = ModelFileError,
                 follow: bool = False) -> tuple[BinaryIO, int]:
    """(binary file object, size) of a regular file of at most `max_bytes`; `error` otherwise.
    `follow=True` (for a path the user named) lets a symlink lead to a regular file."""
    path = Path(path)
    if root is not None:
        real_root = os.path.realpath(root)
        parent = os.path.realpath(path.parent)
        if os.path.commonpath([real_root, parent]) != real_root:
            raise error(f"{path}: outside {root}; refusing to read it")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        if not follow and path.is_symlink():
            raise error(f"{path}: is a symbolic link; only regular files are read") from None
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise error(f"{path}: is {kind}; only regular files are read")
        if st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} allowed")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, max_bytes: int, root: str | os.PathLike | None = None,
                 error: type[DigitnetError] = ModelFileError, follow: bool = False) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see open_regular)."""
    f, size = open_regular(path, max_bytes, root, error, follow)
    with f:
        try:
            data = f.read(size + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > max_bytes:  # it grew while we read it
        raise error(f"{path}: more than the {max_bytes:,} bytes allowed")
    return data


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file we did not write (a run's config.json), or a ModelFileError."""
    try:
        obj = json.loads(read_regular(path, MAX_JSON_BYTES, Path(path).parent))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelFileError(f"{path}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return obj
