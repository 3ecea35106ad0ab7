"""Knobs: the scalar settings that may differ between the members of a population
(digitnet.population) without changing the compiled program's shapes or structure.

Inside a population's program a knob is a traced array, one value per member, where training
alone it is a Python number. Code that switches a part of the step on or off by a setting asks
`active(value)`: a traced knob is on (its group was formed so that every member has it
non-zero), a number is on when non-zero. Members with the setting at zero and members with it
non-zero train in separate groups, so a member computes exactly what it would alone.
"""

from __future__ import annotations

from typing import Any

import jax

# TrainConfig fields that may vary within a population.
TRAIN_KNOBS = ("lr", "momentum", "weight_decay", "label_smoothing", "max_norm", "ema",
               "aug_shift", "aug_rotate", "aug_scale", "aug_shear", "elastic_alpha")
# MLPSpec fields that may vary within a population (rates; which layers have dropout may not).
SPEC_KNOBS = ("dropout", "input_dropout")


def active(value: Any) -> bool:
    """Whether a setting is on: a traced knob always is, a number when it is non-zero."""
    return isinstance(value, jax.Array) or bool(value)


def nonzero_pattern(value: Any) -> Any:
    """What of a knob's value fixes the program: which of its entries are non-zero."""
    if isinstance(value, tuple | list):
        return tuple(bool(v) for v in value)
    return bool(value)
