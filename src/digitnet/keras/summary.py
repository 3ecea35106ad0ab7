"""model.summary() as Keras 3 prints it: a table of layers, output shapes and parameter counts,
then the totals."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from digitnet.keras.layers import Activation, BatchNormalization, Dense, Dropout, InputLayer

COLUMNS = (31, 22, 13)  # the text width of Keras' three columns (each padded by one space)
# With show_trainable=True Keras adds a fourth column, "Trainable" (shown "Trai…"), centred.
COLUMNS_TRAINABLE = (27, 21, 10, 5)
ALIGN = ("<", "<", ">", "^")


def size_text(count: int) -> str:
    """Keras' readable size of `count` float32 values: 49.73 KB, 0.00 B."""
    size, units = count * 4.0, ["B", "KB", "MB", "GB", "TB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.2f} {units[i]}"


def rule(left: str, fill: str, middle: str, right: str, widths: tuple[int, ...] = COLUMNS) -> str:
    return left + middle.join(fill * (w + 2) for w in widths) + right


def row(edge: str, cells: tuple[str, ...], widths: tuple[int, ...] = COLUMNS) -> str:
    """One table row; a cell wider than its column wraps at spaces onto more lines, and a word
    wider than it is cut short with '…', as rich (which draws Keras' table) does."""
    wrapped = [[line if len(line) <= w else line[:w - 1] + "…"  # a word wider than its column
                for line in textwrap.wrap(cell, w, break_long_words=False)] or [""]
               for cell, w in zip(cells, widths, strict=False)]
    height = max(len(lines) for lines in wrapped)
    return "\n".join(
        edge + edge.join(f" {(lines[i] if i < len(lines) else ''):{align}{w}} "
                         for lines, align, w in zip(wrapped, ALIGN, widths, strict=False)) + edge
        for i in range(height))


def shape_text(shape: Any) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def summary_text(model: Any, show_trainable: bool = False) -> str:
    rows: list[tuple[str, ...]] = []
    total = fixed = 0  # fixed: parameters not trained (Normalization's statistics)
    built = model.built or model._declared_input_shape() is not None
    if built:
        model._require_built()
        # A subclassed model's layers show the shapes they were built on, the batch included;
        # layers Keras builds when made (no weights to build) have none to show: "?".
        subclassed = model.subclassed
        shape: tuple[Any, ...] = (model.built_batch if subclassed else None, *model.input_shape[1:])
        for layer in model.layers:
            shape = layer.output_shape_for(shape)
            shown = "?" if subclassed and isinstance(layer, Dropout | Activation) else shape_text(shape)
            nested = hasattr(layer, "_atoms")  # a model inside the model
            count = (layer.count_params() if nested else
                     sum(np.size(w) for w in layer.trainable_weights)
                     if isinstance(layer, Dense | BatchNormalization) else 0)
            frozen = sum(np.size(w) for w in layer.non_trainable_weights) if not nested else 0
            count += frozen
            fixed += frozen
            total += count
            rows.append((f"{layer.name} ({layer.class_name})", shown, f"{count:,}",
                         "Y" if layer.weights else "-"))
    else:
        for layer in model.layers:
            if isinstance(layer, InputLayer):
                continue
            rows.append((f"{layer.name} ({layer.class_name})", "?", "0 (unbuilt)", "-"))
    widths = COLUMNS_TRAINABLE if show_trainable else COLUMNS
    header = ("Layer (type)", "Output Shape", "Param #", "Trai…")
    out = [f'Model: "{model.name}"', rule("┏", "━", "┳", "┓", widths),
           row("┃", header, widths), rule("┡", "━", "╇", "┩", widths)]
    for i, cells in enumerate(rows):
        if i:
            out.append(rule("├", "─", "┼", "┤", widths))
        out.append(row("│", cells, widths))
    out.append(rule("└", "─", "┴", "┘", widths))
    optimizer = getattr(model, "optimizer", None)
    extra = optimizer.variable_count(total - fixed) if built and optimizer is not None else None
    out += [f" Total params: {total + (extra or 0):,} ({size_text(total + (extra or 0))})",
            f" Trainable params: {total - fixed:,} ({size_text(total - fixed)})",
            f" Non-trainable params: {fixed:,} ({size_text(fixed)})"]
    if extra is not None:
        out.append(f" Optimizer params: {extra:,} ({size_text(extra)})")
    return "\n".join(out)
