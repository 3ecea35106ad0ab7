"""Figures as PNG bytes: training curves, confusion matrix, mistakes, per-class F1, sweep axes.

matplotlib is imported inside each function, with the Agg backend, so that importing digitnet
(or running on a machine without a display) never needs it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def pyplot():
    try:
        import matplotlib
    except ImportError:
        from digitnet.errors import ConfigError

        raise ConfigError("plots need matplotlib: pip install 'digitnet[plots]'"
                          " (or 'digitnet[all]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def curves(history: Sequence[dict[str, float]], title: str = "", loss_label: str = "loss") -> bytes:
    """Loss and accuracy per epoch, train and validation side by side."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] for h in history]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "-s")):
            pts = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if key in h]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=label, markersize=4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss_label if metric == "loss" else metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return png(fig)


def overlaid_curves(runs: Sequence[tuple[str, Sequence[dict[str, float]]]]) -> bytes:
    """Loss and accuracy per epoch of several runs on shared axes: one colour per run, solid
    for the training batches, dashed for validation."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for n, (name, history) in enumerate(runs):
        colour = f"C{n % 10}"
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            for key, style, label in ((metric, "-o", name), (f"val_{metric}", "--s", None)):
                pts = [(h["epoch"], h[key]) for h in history if key in h]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, color=colour, markersize=3, label=label)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return png(fig)


def confusion(counts: np.ndarray) -> bytes:
    plt = pyplot()
    k = len(counts)
    fig, ax = plt.subplots(figsize=(0.55 * k + 2, 0.5 * k + 1.5))
    im = ax.imshow(np.log1p(counts), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > counts.max() / 3 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test set; colour: log count)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return png(fig)


def gallery(images: np.ndarray, captions: Sequence[str], title: str, cols: int = 8) -> bytes:
    """A grid of grayscale images, one caption each."""
    plt = pyplot()
    rows = max(1, math.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions, strict=False):
        ax.imshow(img.reshape(img.shape[0], -1), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=8)
    fig.suptitle(title)
    return png(fig)


def f1_bars(f1: np.ndarray) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(f1)), f1, color="#4c72b0")
    ax.set_ylim(0.0, 1.08)  # bars from zero: their heights compare honestly; labels give the digits
    for i, v in enumerate(f1):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(f1)))
    ax.set_xlabel("class")
    ax.set_ylabel("F1")
    ax.set_title("per-class F1 (test set)")
    return png(fig)


def axis_plot(title: str, points: list[dict[str, Any]], numeric: bool, log: bool) -> bytes:
    """Mean test accuracy (± std over seeds) against one axis. points: label, x, mean, std, n."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    xs = [p["x"] for p in points] if numeric else list(range(len(points)))
    ax.errorbar(xs, [p["mean"] for p in points], yerr=[p["std"] for p in points], fmt="o",
                capsize=4, markersize=6)
    if numeric and log:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs)
        ax.set_xticklabels([p["label"] for p in points], rotation=15 if len(points) > 3 else 0)
        ax.set_xlim(-0.5, len(points) - 0.5)
    ax.set_xlabel(title)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(f"test accuracy vs {title} (mean ± std over seeds)")
    return png(fig)


def val_curves(title: str, series: list[tuple[str, list[float], list[float]]]) -> bytes:
    """Validation accuracy per epoch, one line per point: (label, mean per epoch, std)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, mean, std in series:
        e = np.arange(1, len(mean) + 1)
        ax.plot(e, mean, "-o", markersize=3, label=label)
        ax.fill_between(e, np.subtract(mean, std), np.add(mean, std), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: validation accuracy per epoch")
    return png(fig)


def weight_images(w: np.ndarray, cols: int = 16) -> bytes:
    """One small image per unit's incoming weights (units, H, W), red + / blue −, each unit
    scaled to its own largest magnitude."""
    plt = pyplot()
    rows = max(1, math.ceil(len(w) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols, 0.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, (ax, img) in enumerate(zip(axes.flat, w, strict=False)):
        m = float(np.abs(img).max()) or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-m, vmax=m)
        ax.set_title(str(n), fontsize=6, pad=1)
    fig.suptitle("first-layer weights, one image per unit")
    return png(fig)


def activation_maps(means: Sequence[np.ndarray]) -> bytes:
    """Mean activation of each hidden unit (columns) for each class (rows), one panel a layer."""
    plt = pyplot()
    fig, axes = plt.subplots(len(means), 1, figsize=(10, 1.2 + 2.6 * len(means)), squeeze=False)
    for n, (ax, m) in enumerate(zip(axes[:, 0], means, strict=True)):
        im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(m)))
        ax.set_ylabel("class")
        ax.set_xlabel(f"unit of hidden layer {n + 1}")
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    fig.suptitle("mean hidden activation per class (test set)")
    return png(fig)
