"""A PNG grid of sample images with their labels, like the MNIST picture atop the tutorial."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from digitnet.errors import ConfigError

COLUMNS = 10
CELL_INCHES = (1.0, 1.2)  # width, height: room for a label above each image
DPI = 100


def grid_size(count: int, columns: int = COLUMNS) -> tuple[int, int]:
    """(width, height) in pixels of the grid for `count` images."""
    cols = min(count, columns)
    rows = math.ceil(count / cols)
    return round(cols * CELL_INCHES[0] * DPI), round(rows * CELL_INCHES[1] * DPI)


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: Sequence[str] = (),
                title: str = "") -> bytes:
    """PNG bytes: `images` (N, H, W) in rows of ten, each under its label (and class name)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("drawing needs matplotlib: pip install 'digitnet[plots]'"
                          " (or 'digitnet[all]')") from None
    count = len(images)
    if count == 0:
        raise ConfigError("no images to draw")
    if images.ndim == 2:  # 1-D samples: draw each as a one-pixel-high strip
        images = images[:, None, :]
    cols = min(count, COLUMNS)
    rows = math.ceil(count / cols)
    # A Figure with its own Agg canvas, not pyplot: no global state, no GUI backend.
    fig = Figure(figsize=(cols * CELL_INCHES[0], rows * CELL_INCHES[1]), dpi=DPI)
    FigureCanvasAgg(fig)
    top = 1 - 0.4 / (rows * CELL_INCHES[1])  # 0.4 inch for the title
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=top, wspace=0.1, hspace=0.35)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i >= count:
            continue
        label = int(labels[i])
        name = classes[label] if label < len(classes) and classes[label] != str(label) else ""
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{label} {name}".strip(), fontsize=8, pad=2)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
