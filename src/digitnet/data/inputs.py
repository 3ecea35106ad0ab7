"""Images to classify, from the files a user names: image files (PNG, JPEG, …) and IDX files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from digitnet.data.idx import peek_header, read_idx
from digitnet.data.images import load_digit
from digitnet.errors import ConfigError, DataError


def read_inputs(paths: list[str], image_shape: tuple[int, ...] = (28, 28),
                max_bytes: int = 1 << 30) -> tuple[list[str], np.ndarray]:
    """Names and images (N, *image_shape) from image files and IDX files, for `predict`.

    An IDX file must hold images of the model's shape (its header is read first, so a file of
    3000×3000 images or a 1-D array is refused before its data is), and all inputs together
    may hold at most `max_bytes`."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    total = 0
    for path in paths:
        if "idx" in Path(path).name or "ubyte" in Path(path).name:
            dtype, shape = peek_header(path)
            if tuple(shape[1:]) != tuple(image_shape) or dtype.kind not in "uif":
                raise DataError(f"{path}: holds {dtype.name} of shape {shape}; the model takes "
                                f"images of shape (N, {', '.join(map(str, image_shape))})")
            total += math.prod(shape) * 4  # as float32 for the model
            if total > max_bytes:
                raise DataError(f"{path}: the inputs hold more than {max_bytes:,} bytes in all")
            arr = read_idx(path)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DataError(f"{path}: holds NaN or infinite values")
            names += [f"{path}[{i}]" for i in range(len(arr))]
            parts.append(arr.astype(np.float32))
        else:
            digit = load_digit(path)
            if digit.shape != tuple(image_shape):
                raise DataError(f"{path}: image files become 28×28 digits; the model takes "
                                f"{image_shape}")
            names.append(path)
            parts.append(digit[None].astype(np.float32))
    x = np.concatenate(parts) if parts else np.zeros((0, *image_shape), np.float32)
    return names, x


def select_indices(text: str, n: int) -> list[int]:
    """Test-set indices from START:STOP[:STEP] or a comma list, checked against n images."""
    try:
        if ":" in text:
            parts = [int(p) if p else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            idx = list(range(n))[slice(*parts)]
            if not idx:
                raise ConfigError(f"--indices {text} selects no test images "
                                  f"(START:STOP needs START < STOP ≤ {n})")
            return idx
        idx = [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--indices expects START:STOP or a comma list, got {text!r}") from None
    bad = [i for i in idx if not -n <= i < n]
    if bad:
        raise ConfigError(f"--indices: {bad[0]} is out of range for {n} test images")
    return idx
