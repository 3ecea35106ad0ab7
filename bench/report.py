"""Turn one bench run's measurements into docs/performance.md: the table, ratios, targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

NA = "—"


def summary(values: Sequence[float]) -> dict | None:
    """Mean ± standard deviation, median and min–max of a sample, or None for an empty one."""
    vals = [float(v) for v in values]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def center(s: dict) -> float:
    """The figure a summary is compared by: its mean (the median of older results files)."""
    return s["mean"] if "mean" in s else s["median"]


def fmt_mean(s: dict | None, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    """'mean ± std' of a summary, scaled (e.g. 1000 for ms); the bare value when n = 1."""
    if s is None:
        return NA
    if "mean" not in s:
        return fmt(s, scale, digits, unit)
    if s["n"] == 1:
        return f"{s['mean'] * scale:.{digits}f}{unit}"
    return f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}{unit}"


def fmt(s: dict | None, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    """'median (min–max)' of a summary, scaled (e.g. 1000 for ms)."""
    if s is None:
        return NA
    med, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    if s["n"] == 1 or lo == hi:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"


def steady(epoch_seconds: Sequence[float]) -> float:
    """One run's steady-state epoch: the median of its epochs after the first (which
    includes compilation for JAX-based trainers), or its only epoch."""
    rest = list(epoch_seconds[1:]) or list(epoch_seconds)
    return statistics.median(rest)


def trainer_row(runs: list[dict]) -> dict:
    """The table's numbers for one trainer (digitnet or a peer) from its n runs; a measurement
    the runs do not report is None."""
    return {
        "epoch": summary([steady(r["epoch_seconds"]) for r in runs]),
        "cpu": summary([steady(r["epoch_cpu_seconds"]) for r in runs if "epoch_cpu_seconds" in r]),
        "train": summary([r["train_seconds"] for r in runs if "train_seconds" in r]),
        "acc": summary([r["test_accuracy"] for r in runs]),
        "predict": summary([min(r["predict_seconds"]) for r in runs if "predict_seconds" in r]),
        "rss": summary([r["rss_mib"] for r in runs if "rss_mib" in r]),
    }


def ratio(a: dict | None, b: dict | None) -> float | None:
    return center(a) / center(b) if a and b and center(b) else None


def table(rows: list[tuple[str, dict | None, str]], floor: dict, ours: dict) -> list[str]:
    """Markdown rows: name, numbers, × floor, and digitnet's speed-up over it (wall; CPU)."""
    out = ["| trainer | steady s/epoch | CPU s/epoch | 5-epoch training s | test acc "
           "| predict 10k ms | peak RSS MiB | epoch ÷ floor | digitnet is × faster (wall; CPU) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, row, note in rows:
        if row is None:
            out.append(f"| {name} | skipped: {note} | | | | | | | |")
            continue
        vs_floor = ratio(row["epoch"], floor)
        speedup = ratio(row["epoch"], ours["epoch"])
        cpu_speedup = ratio(row["cpu"], ours["cpu"])
        faster = "" if row is ours else f"{speedup:.1f}×" + (
            f"; {cpu_speedup:.1f}×" if cpu_speedup else "")
        out.append(
            f"| {name} | {fmt_mean(row['epoch'])} | {fmt_mean(row['cpu'])} "
            f"| {fmt_mean(row['train'], digits=2)} | {fmt_mean(row['acc'], 100, 2, '%')} "
            f"| {fmt_mean(row['predict'], 1000, 1)} | {fmt_mean(row['rss'], digits=0)} "
            f"| {vs_floor:.2f}× | {faster} |")
    return out


def target_line(name: str, target: str, measured: str, ok: bool | str | None) -> str:
    """A row of the targets table; `ok` may be a partial verdict such as 'met on CPU time only'."""
    mark = f"**{ok}**" if isinstance(ok, str) else {True: "met", False: "**not met**",
                                                     None: "not measured"}[ok]
    return f"| {name} | {target} | {measured} | {mark} |"
