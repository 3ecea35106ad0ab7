"""Images to classify, from the files a user names: image files (PNG, JPEG, …) and IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitnet.data.idx import read_idx
from digitnet.data.images import load_digit
from digitnet.errors import ConfigError


def read_inputs(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """Names and images (N, 28, 28): every image of an IDX file, each image file in MNIST form."""
    names, images = [], []
    for path in paths:
        if "idx" in Path(path).name or "ubyte" in Path(path).name:
            arr = read_idx(path)
            names += [f"{path}[{i}]" for i in range(len(arr))]
            images += list(arr)
        else:
            names.append(path)
            images.append(load_digit(path))
    return names, np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)


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
