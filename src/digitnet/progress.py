"""A live progress bar for training (terminal and Jupyter), and a Keras-like line per epoch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from digitnet.callbacks import Callback, TrainState


class ProgressBar(Callback):
    def __init__(self, console: Console | None = None, label_smoothing: float = 0.0):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        # The training objective, so loss and val_loss include the smoothing; say so once.
        self.smoothing = label_smoothing

    def on_train_begin(self, state: TrainState, steps_per_epoch: int, epochs: int) -> None:
        self.steps, self.epochs = steps_per_epoch, epochs
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"), TimeRemainingColumn(),
            console=self.console, transient=True, refresh_per_second=8,
        )
        self.progress.start()
        if self.smoothing:
            self.progress.console.print(
                f"loss and val_loss include label smoothing (ε = {self.smoothing:g}); "
                "the test loss is plain cross-entropy", highlight=False, soft_wrap=True)

    def on_epoch_begin(self, epoch: int) -> None:
        assert self.progress is not None
        self.task = self.progress.add_task(f"Epoch {epoch + 1}/{self.epochs}",
                                           total=self.steps, metrics="")

    def on_chunk_end(self, steps_done: int, loss: float, accuracy: float) -> None:
        assert self.progress is not None
        self.progress.update(self.task, completed=steps_done,
                             metrics=f"loss {loss:.4f}  accuracy {accuracy:.4f}")

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        assert self.progress is not None
        self.progress.remove_task(self.task)
        parts = [f"Epoch {int(logs['epoch'])}/{self.epochs}", f"{self.steps}/{self.steps}"]
        parts += [f"{k} {logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                  if k in logs]
        parts.append(f"{logs['seconds']:.2f}s")
        self.progress.console.print("  ".join(parts), highlight=False, soft_wrap=True)

    def on_train_end(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.stop()


class SweepProgress:
    """A progress bar over a sweep's trials, showing the last finished trial's result."""

    def __init__(self, console: Console | None = None):
        self.progress = Progress(
            TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
            console=console or Console(stderr=True), refresh_per_second=4,
        )
        self.task = None

    def __enter__(self) -> SweepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()

    def update(self, record: dict, finished: int, total: int) -> None:
        if self.task is None:  # started on the first report, so a config error prints alone
            self.progress.start()
            self.task = self.progress.add_task("trials", total=total, last="")
        last = ""
        if record:
            acc = record["metrics"].get("test_accuracy")
            last = (f"{record['id']} test accuracy {acc:.4f}" if acc is not None
                    else f"{record['id']} {record['status']}")
        self.progress.update(self.task, total=total, completed=finished, last=last)
