"""Seeds: parsing `--seeds`, and the summary of one model per seed (DIR/summary.json: the test
accuracy's mean ± std and range). digitnet.api.fit(..., seeds=...) trains them."""

from __future__ import annotations

import statistics
from typing import Any

from digitnet.errors import ConfigError

SUMMARY = "summary.json"
FORMAT = "digitnet-seeds"


def parse_seeds(text: str) -> list[int]:
    """'0-7' → 0..7; '1,2,5' → those; '3' → [3]; ranges and lists mix: '0-3,10'."""
    out: list[int] = []
    try:
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
            if sep:
                a, b = int(lo), int(hi)
                if b < a or b - a >= 100_000:
                    raise ValueError
                out += range(a, b + 1)
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds expects seeds such as 0-7 or 1,2,5, got {text!r}") from None
    if not out:
        raise ConfigError(f"--seeds expects seeds such as 0-7 or 1,2,5, got {text!r}")
    if len(set(out)) != len(out):
        raise ConfigError(f"--seeds lists a seed twice: {text!r}")
    return out


def stats_of(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


class SeedRuns(list):
    """The models of fit(..., seeds=...), in seed order, with `summary` (what summary.json
    holds)."""

    summary: dict[str, Any]

    def describe(self) -> str:
        return describe(self.summary)


def describe(summary: dict[str, Any]) -> str:
    acc = summary["test_accuracy"]
    return (f"test accuracy {acc['mean']:.4f} ± {acc['std']:.4f} (min {acc['min']:.4f}, "
            f"max {acc['max']:.4f}) over {len(acc['values'])} seeds")


def summarize(configs: list[dict[str, Any]], seeds: list[int], wall_seconds: float) -> dict[str, Any]:
    """summary.json of the runs of `seeds`, from their config.json documents."""
    accs = [c["metrics"]["test_accuracy"] for c in configs]
    losses = [c["metrics"]["test_loss"] for c in configs]
    return {"format": FORMAT, "seeds": seeds, "runs": [f"seed-{s}" for s in seeds],
            "test_accuracy": {**stats_of(accs), "values": accs},
            "test_loss": {**stats_of(losses), "values": losses},
            "wall_seconds": round(wall_seconds, 3)}
