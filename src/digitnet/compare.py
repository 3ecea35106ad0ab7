"""`digitnet compare A B …`: is one run better than another on the same test images?

Accuracy and loss per run; for each pair, McNemar's exact test on the paired predictions (only
the images where exactly one of the two is right carry information: under "equally good",
each such image is a fair coin, so the count one way is Binomial(n, 1/2)); per-class recall
differences; and the test images one run gets right and the other wrong. `compare_report`
draws the same as a report page, with the training curves overlaid.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from digitnet.errors import ConfigError


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (exact integer sums)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass
class RunResult:
    name: str
    path: Path
    pred: np.ndarray  # predicted labels on the test set
    accuracy: float
    loss: float  # plain cross-entropy on the test set
    recall: np.ndarray  # per class
    history: list[dict[str, float]]
    smoothing: float = 0.0  # label smoothing in its training and validation losses


@dataclass
class Pair:
    a: str
    b: str
    a_only: np.ndarray  # test indices A gets right and B wrong
    b_only: np.ndarray
    p_value: float

    @property
    def verdict(self) -> str:
        if self.p_value >= 0.05:
            return "no significant difference (p ≥ 0.05)"
        better = self.a if len(self.a_only) > len(self.b_only) else self.b
        return f"{better} is better (p < 0.05)"


@dataclass
class Comparison:
    runs: list[RunResult]
    pairs: list[Pair]
    dataset: str
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)

    def run(self, name: str) -> RunResult:
        return next(r for r in self.runs if r.name == name)

    def to_dict(self, max_images: int = 50) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "runs": [{"name": r.name, "path": str(r.path), "test_accuracy": r.accuracy,
                      "test_loss": r.loss, "recall": [round(float(v), 6) for v in r.recall]}
                     for r in self.runs],
            "pairs": [{"a": p.a, "b": p.b, "a_right_b_wrong": len(p.a_only),
                       "b_right_a_wrong": len(p.b_only), "mcnemar_exact_p": p.p_value,
                       "a_right_b_wrong_indices": p.a_only[:max_images].tolist(),
                       "b_right_a_wrong_indices": p.b_only[:max_images].tolist()}
                      for p in self.pairs],
        }


def run_names(paths: list[Path]) -> list[str]:
    """Short unique names: the folder names, with their parents where two are alike."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return names


def compare_runs(paths: list[str | os.PathLike]) -> Comparison:
    from digitnet import artifacts as art
    from digitnet.api import dataset_from_config, load

    if len(paths) < 2:
        raise ConfigError("compare needs at least two run directories")
    dirs = [art.check_run_dir(Path(p)) for p in paths]
    models = [load(d) for d in dirs]
    sigs = [(m.config.get("dataset") or {}).get("sha256") or (m.config.get("dataset") or {}).get("name")
            for m in models]
    for d, s in zip(dirs[1:], sigs[1:], strict=True):
        if s != sigs[0]:
            raise ConfigError(f"{d} was tested on other data than {dirs[0]}; "
                              "only runs on the same test images can be compared")
    ds = dataset_from_config(models[0].config)
    runs = []
    for name, d, m in zip(run_names(dirs), dirs, models, strict=True):
        ev = m.evaluate(ds.x_test, ds.y_test)
        pred = m.predict(ds.x_test)
        runs.append(RunResult(name, d, pred, ev.accuracy, ev.loss, np.asarray(ev.recall),
                              m.history, float(m.config.get("train", {}).get("label_smoothing") or 0)))
    pairs = []
    for ra, rb in combinations(runs, 2):
        a_right, b_right = ra.pred == ds.y_test, rb.pred == ds.y_test
        a_only, b_only = np.flatnonzero(a_right & ~b_right), np.flatnonzero(b_right & ~a_right)
        pairs.append(Pair(ra.name, rb.name, a_only, b_only, mcnemar_exact(len(a_only), len(b_only))))
    return Comparison(runs, pairs, ds.name, ds.x_test, ds.y_test)


def text(cmp: Comparison, max_images: int = 20) -> str:
    """The comparison as plain text for the terminal."""
    width = max(len(r.name) for r in cmp.runs)
    out = [f"test set: {cmp.dataset}, {len(cmp.y_test):,} images",
           f"{'RUN':<{width}}  TEST ACC  TEST LOSS"]
    out += [f"{r.name:<{width}}  {r.accuracy:8.4f}  {r.loss:9.4f}" for r in cmp.runs]
    for p in cmp.pairs:
        out += ["", f"{p.a} vs {p.b}: McNemar exact p = {p.p_value:.3g}: {p.verdict}",
                f"  {len(p.a_only)} images only {p.a} gets right, {len(p.b_only)} only {p.b}"]
        diff = cmp.run(p.b).recall - cmp.run(p.a).recall
        out.append("  recall per class, B − A: " + "  ".join(
            f"{k}:{d:+.3f}" for k, d in enumerate(diff)))
        for who, idx in ((p.a, p.a_only), (p.b, p.b_only)):
            if len(idx):
                more = f" … ({len(idx)} in all)" if len(idx) > max_images else ""
                out.append(f"  right only for {who}: test "
                           + ", ".join(map(str, idx[:max_images].tolist())) + more)
    return "\n".join(out)


def compare_report(cmp: Comparison, images: int = 16):
    """The comparison as a report.Report: tables, overlaid curves, the disputed images."""
    from digitnet import plots
    from digitnet.report import Image, Report, Section, Table

    sections = [Section("Runs", [
        f"Test set: {cmp.dataset}, {len(cmp.y_test):,} images. Test loss is plain cross-entropy.",
        Table(["run", "test accuracy", "test loss", "path"],
              [[r.name, r.accuracy, r.loss, str(r.path)] for r in cmp.runs])])]
    if any(r.history for r in cmp.runs):
        sections.append(Section("Training curves", [
            "Each run's loss and accuracy per epoch, overlaid (solid: training, dashed: validation). "
            "A run trained with label smoothing has it in both its losses (marked ε), which puts "
            "them higher than plain cross-entropy.",
            Image("compare-curves.png", "training curves of every run, overlaid",
                  plots.overlaid_curves([(r.name + (f" (ε = {r.smoothing:g})" if r.smoothing else ""),
                                          r.history) for r in cmp.runs]))]))
    sections.append(Section("Pairs: McNemar's exact test", [
        "Only the test images that exactly one run of a pair gets right tell the runs apart; "
        "p is the two-sided exact binomial probability of a split at least this uneven if both "
        "runs were equally good.",
        Table(["A", "B", "right only for A", "right only for B", "p", "verdict"],
              [[p.a, p.b, len(p.a_only), len(p.b_only), f"{p.p_value:.3g}", p.verdict]
               for p in cmp.pairs])]))
    recall = {r.name: r.recall for r in cmp.runs}
    sections.append(Section("Recall per class", [Table(
        ["class", *recall, *(f"{p.b} − {p.a}" for p in cmp.pairs)],
        [[c, *(float(v[c]) for v in recall.values()),
          *(f"{recall[p.b][c] - recall[p.a][c]:+.4f}" for p in cmp.pairs)]
         for c in range(len(cmp.runs[0].recall))])]))
    preds = {r.name: r.pred for r in cmp.runs}
    for n, p in enumerate(cmp.pairs):
        for who, other, idx in ((p.a, p.b, p.a_only), (p.b, p.a, p.b_only)):
            if len(idx):
                shown = idx[:images]
                captions = [f"#{i} true {cmp.y_test[i]}\n{other}: {preds[other][i]}" for i in shown]
                sections.append(Section(f"Right for {who}, wrong for {other}", [
                    f"{len(idx)} test images; the first {len(shown)}, with {other}'s answer.",
                    Image(f"compare-{n}-{who == p.b:d}.png", f"right for {who}, wrong for {other}",
                          plots.gallery(cmp.x_test[shown], captions, f"right only for {who}"))]))
    return Report("digitnet comparison: " + " vs ".join(r.name for r in cmp.runs), sections)
