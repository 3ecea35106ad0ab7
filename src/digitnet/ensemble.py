"""Ensembles: several trained MLPs that classify together by averaging their probabilities.

An ensemble is saved like a run directory: config.json (format "digitnet-ensemble", each
member's spec, training config and metrics) and weights.safetensors (member i's tensors under
"member_i."), written together atomically. digitnet.load returns an Ensemble for it, which
answers what a Model answers (predict, predict_proba, evaluate, summary), so evaluate, predict,
report, serve and ONNX export take either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import artifacts as art
from digitnet.errors import ConfigError, ModelFileError
from digitnet.metrics import Evaluation, confusion_matrix

FORMAT = "digitnet-ensemble"
FORMAT_VERSION = 1
# Probabilities are clipped here before the log of the loss: an ensemble that gives the true
# class probability 0 has a finite loss, as Keras' crossentropy clips.
EPS = 1e-7
# Members a saved ensemble may list, checked before any is read: each costs a model's setup at
# load and a forward pass per prediction (a 1.6 MB config.json of 8,000 members took 55 s to load).
MAX_MEMBERS = 1024


class Ensemble:
    """Models averaged: p(class | x) = mean over members of their softmax probabilities."""

    def __init__(self, members: list[Any], config: dict[str, Any] | None = None):
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        flat: list[Any] = []  # digitnet.api.Model
        for m in members:
            flat += m.members if isinstance(m, Ensemble) else [m]
        if len(flat) > MAX_MEMBERS:  # it could be saved, and never loaded
            raise ConfigError(f"an ensemble may have at most {MAX_MEMBERS:,} members, got {len(flat):,}")
        first = flat[0].spec
        for m in flat[1:]:
            if (m.spec.input_shape, m.spec.num_classes) != (first.input_shape, first.num_classes):
                raise ConfigError(
                    f"ensemble members must share input shape and classes: {first.input_shape} and "
                    f"{first.num_classes} classes against {m.spec.input_shape} and {m.spec.num_classes}")
            if m.spec.output != first.output:  # a binary and a 2-class softmax model: say so
                raise ConfigError(f"ensemble members must share their output layer: {first.output} "
                                  f"against {m.spec.output}")
        self.members = flat
        self.spec = first  # input shape and classes (what callers that feed the model need)
        self.config = {"dataset": flat[0].config.get("dataset", {}), **(config or {})}
        self.history: list[dict[str, float]] = []

    def __repr__(self) -> str:
        return f"Ensemble({len(self.members)} members: {self.architecture})"

    def __len__(self) -> int:
        return len(self.members)

    @property
    def architecture(self) -> str:
        shapes = [m.architecture for m in self.members]
        counts = {s: shapes.count(s) for s in dict.fromkeys(shapes)}
        return "ensemble of " + ", ".join(f"{n}× {s}" for s, n in counts.items())

    @property
    def num_params(self) -> int:
        return sum(m.num_params for m in self.members)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Mean of the members' class probabilities (N, classes)."""
        return np.mean([m.predict_proba(x) for m in self.members], axis=0, dtype=np.float64
                       ).astype(np.float32)

    def logits(self, x: Any) -> np.ndarray:
        """log of the averaged probabilities: their softmax is the ensemble's probabilities."""
        return np.log(np.maximum(self.predict_proba(x), np.finfo(np.float32).tiny))

    def predict(self, x: Any) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def evaluate(self, x: Any = None, y: Any = None) -> Evaluation:
        """Cross-entropy of the averaged probabilities, accuracy, confusion matrix; by default
        on the test split of the members' dataset."""
        if x is None:
            from digitnet.data.datasets import load_dataset

            where = self.config.get("dataset") or {}
            ds = load_dataset(where.get("name", "mnist"), where.get("path"))
            x, y = ds.x_test, ds.y_test
        y = np.asarray(y)
        if y.ndim != 1:
            y = y.argmax(axis=1)
        probs = self.predict_proba(x)
        if len(y) != len(probs):
            raise ConfigError(f"{len(probs)} inputs but {len(y)} labels")
        p_true = np.clip(probs[np.arange(len(y)), y.astype(np.int64)], EPS, 1.0)
        pred = probs.argmax(axis=1)
        return Evaluation(loss=float(-np.log(p_true).mean()), accuracy=float((pred == y).mean()),
                          confusion=confusion_matrix(y, pred, self.spec.num_classes))

    def record_test_metrics(self) -> Evaluation:
        """Evaluate on the test split and keep the result in config["metrics"] (saved)."""
        ev = self.evaluate()
        self.config["metrics"] = {"test_accuracy": ev.accuracy, "test_loss": ev.loss}
        return ev

    def summary(self) -> str:
        parts = [f"Ensemble of {len(self.members)} models (probabilities averaged), "
                 f"{self.num_params:,} parameters in all"]
        for i, m in enumerate(self.members):
            acc = m.config.get("metrics", {}).get("test_accuracy")
            seed = m.config.get("train", {}).get("seed")
            parts.append(f"member {i}: {m.architecture}, {m.spec.activation}"
                         + (f", seed {seed}" if seed is not None else "")
                         + (f", test accuracy {acc:.4f}" if acc is not None else ""))
        return "\n".join(parts)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ensemble's config.json and weights.safetensors, staged together."""
        path = Path(path)
        tensors: dict[str, np.ndarray] = {}
        for i, m in enumerate(self.members):
            tensors.update({f"member_{i}.{k}": v for k, v in m.tensors().items()})
        config = {**self.config, "format": FORMAT, "format_version": FORMAT_VERSION,
                  "members": [{"model": m.spec.to_dict(),
                               **{k: m.config[k] for k in ("train", "metrics", "recipe", "source")
                                  if k in m.config}}
                              for m in self.members]}
        art.atomic_write_files(path, {art.WEIGHTS: art.tensors_bytes(tensors, {"format": FORMAT}),
                                      art.CONFIG: art.json_bytes(config)})
        return path


def from_config(config: dict[str, Any], path: Path, member: type) -> Ensemble:
    """The ensemble saved in run directory `path` (config.json already read); each member a
    `member` (digitnet.api.Model)."""

    members = config.get("members")
    if not isinstance(members, list) or not members:
        raise ModelFileError(f"{path / art.CONFIG}: an ensemble without members")
    if len(members) > MAX_MEMBERS:
        raise ModelFileError(f"{path / art.CONFIG}: {len(members):,} members, more than the "
                             f"{MAX_MEMBERS:,} an ensemble may have")
    if not all(isinstance(doc, dict) for doc in members):
        raise ModelFileError(f"{path / art.CONFIG}: a member is not an object")
    specs = [art.spec_from_config(doc, path) for doc in members]
    tensors, _ = art.read_tensors(path / art.WEIGHTS, art.weights_bytes(specs))
    by_member: dict[str, dict[str, np.ndarray]] = {}  # "member_i" -> its tensors, in one pass
    for key, value in tensors.items():
        head, _, name = key.partition(".")
        by_member.setdefault(head, {})[name] = value
    models = []
    for i, (doc, spec) in enumerate(zip(members, specs, strict=True)):
        mine = by_member.get(f"member_{i}", {})
        params = art.tensors_to_params(mine, spec, path / art.WEIGHTS)
        stats = art.read_stats(mine, spec, path / art.WEIGHTS)
        models.append(member(spec, params, stats, {"dataset": config.get("dataset", {}), **doc}))
    rest = {k: v for k, v in config.items() if k not in ("members", "format", "format_version")}
    try:
        return Ensemble(models, rest)
    except ConfigError as exc:
        raise ModelFileError(f"{path / art.CONFIG}: {exc}") from None
