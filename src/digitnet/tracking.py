"""Run tracking for users who keep their runs in TensorBoard: event files with the per-epoch
loss and accuracy (train and validation) and the run's config as text.

Needs the optional extra `pip install 'digitnet[tensorboard]'` (tensorboardX; no TensorFlow).
"""

from __future__ import annotations

import json
import os
from typing import Any

from digitnet.callbacks import Callback, TrainState
from digitnet.errors import ConfigError

SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy")


class TensorBoard(Callback):
    def __init__(self, logdir: str | os.PathLike, config: dict[str, Any] | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs tensorboardX: pip install 'digitnet[tensorboard]'"
                          " (or 'digitnet[all]')") from None
        self.writer = SummaryWriter(logdir=str(logdir))
        if config:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        step = int(logs["epoch"])
        for key in SCALARS:
            if key in logs:
                split = "validation" if key.startswith("val_") else "train"
                self.writer.add_scalar(f"{key.removeprefix('val_')}/{split}", logs[key], step)
        self.writer.flush()

    def on_train_end(self, state: TrainState) -> None:
        self.writer.close()
