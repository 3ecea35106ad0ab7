"""What training hands its callbacks: the training state and the hooks between compiled chunks.

No JAX import here, so that progress bars and trackers can subclass Callback without loading
JAX and Optax; the arrays in a state are whatever the engine keeps (JAX arrays while training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    params: Any  # digitnet.model.Params
    opt_state: Any
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False

    def weights(self) -> Any:
        """The weights to evaluate and save: the EMA when one is tracked, else the parameters."""
        from digitnet import regularize  # an optimizer state exists only once JAX runs

        ema = regularize.ema_params(self.opt_state)
        return self.params if ema is None else ema


class Callback:
    """Hooks called between compiled chunks; never inside the per-step path."""

    # Set True (on the class or an instance) to be handed each step's outputs through
    # on_batch_outputs: the compiled step then returns its logits, which costs a little.
    needs_outputs = False

    def on_train_begin(self, state: TrainState, steps_per_epoch: int, epochs: int) -> None: ...
    def on_epoch_begin(self, epoch: int) -> None: ...
    def on_chunk_end(self, steps_done: int, loss: float, accuracy: float) -> None: ...

    def on_batches_end(self, first_step: int, losses: Sequence[float],
                       accuracies: Sequence[float]) -> None:
        """Each batch of the chunk just read: its mean loss and accuracy, for the epoch's steps
        first_step, first_step + 1, .... Only fetched from the device when a callback
        overrides this hook."""

    def on_batch_outputs(self, first_step: int, logits: Any, indices: Any) -> None:
        """The chunk just run, step by step: the training step's logits (steps, batch, units),
        from the forward pass its gradient came from, and the examples' indices (steps, batch).
        Called before on_batches_end, only when a callback has needs_outputs."""

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


def wants_batches(callbacks: Sequence[Callback]) -> bool:
    """Whether any callback overrides on_batches_end (then per-batch values are fetched)."""
    return any(type(cb).on_batches_end is not Callback.on_batches_end for cb in callbacks)


def wants_outputs(callbacks: Sequence[Callback]) -> bool:
    """Whether any callback asks for each step's outputs (then the step returns its logits)."""
    return any(cb.needs_outputs for cb in callbacks)
