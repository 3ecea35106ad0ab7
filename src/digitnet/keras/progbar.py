"""Keras' progress output, character for character: the bar of verbose=1 and the one-line summary
of verbose=2, for fit (one per epoch), evaluate and predict. Values are shown as Keras shows them
(4 decimals, or 4 significant digits in e-notation for |v| ≤ 1e-3)."""

from __future__ import annotations

import sys
import time
from typing import Any

WIDTH = 20
INTERVAL = 0.05  # seconds between redraws of a live bar


def number(value: float, signed: bool = True) -> str:
    """Keras' metric format: the bar tests |v| > 1e-3, the verbose=2 line tests v > 1e-3."""
    big = abs(value) > 1e-3 if signed else value > 1e-3
    return f"{value:.4f}" if big else f"{value:.4e}"


def per_step(seconds: float, unit: str = "step") -> str:
    if seconds >= 1 or seconds == 0:
        return f" {seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f" {seconds * 1e3:.0f}ms/{unit}"
    return f" {seconds * 1e6:.0f}us/{unit}"


class Progbar:
    """One bar for `target` steps; `update(current, logs)` redraws it (at most every 50 ms, and
    always at the end)."""

    def __init__(self, target: int, verbose: int = 1):
        self.target, self.verbose = target, verbose
        self.start = time.time()
        self.first_step_done: float | None = None  # when the first update before the end came
        self.first_step = 0
        self.last_draw = 0.0
        self.width = 0

    def step_time(self, current: int, now: float) -> float:
        if not current:
            return 0.0
        if self.first_step_done is not None and current > self.first_step:
            return (now - self.first_step_done) / (current - self.first_step)
        return (now - self.start) / current

    def update(self, current: int, logs: dict[str, float] | None = None,
               finalize: bool | None = None) -> None:
        """finalize=False: a batch's update, even the last one (fit ends the line at the epoch's
        end, with the validation values), as Keras' ProgbarLogger does."""
        now = time.time()
        final = current >= self.target if finalize is None else finalize
        if current >= 1 and self.first_step_done is None and not final:
            self.first_step_done, self.first_step = now, current
        logs = logs or {}
        seconds = self.step_time(current, now)
        if self.verbose == 2:
            if final:
                line = f"{current:>{len(str(self.target))}}/{self.target} - {now - self.start:.0f}s -"
                line += per_step(seconds) + "".join(f" - {k}: {number(v, False)}" for k, v in logs.items())
                write(line + "\n")
            return
        if self.verbose != 1 or (now - self.last_draw < INTERVAL and not final):
            return
        self.last_draw = now
        filled = int(WIDTH * current / self.target)
        bar = f"\x1b[1m{current:>{len(str(self.target))}}/{self.target}\x1b[0m "
        visible = len(f"{current:>{len(str(self.target))}}/{self.target} ") + WIDTH
        if filled:
            bar += f"\x1b[32m{'━' * filled}\x1b[0m"
        bar += f"\x1b[37m{'━' * (WIDTH - filled)}\x1b[0m"
        if final:
            info = f" \x1b[1m{now - self.start:.0f}s\x1b[0m"
            visible += len(f" {now - self.start:.0f}s")
        else:
            eta = seconds * (self.target - current)
            text = (f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}" if eta > 3600
                    else f"{int(eta // 60)}:{int(eta % 60):02d}" if eta > 60 else f"{int(eta)}s")
            info = f" \x1b[1m{text}\x1b[0m"
            visible += len(f" {text}")
        tail = per_step(seconds) + "".join(f" - {k}: {number(v)}" for k, v in logs.items())
        visible += len(tail)
        message = "\b" * self.width + "\r" + bar + info + tail
        if self.width > visible:
            message += " " * (self.width - visible)
        self.width = visible
        write(message + ("\n" if final else ""))


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def resolve(verbose: Any) -> int:
    """Keras' verbose='auto': 1."""
    return 1 if verbose == "auto" else int(verbose)
