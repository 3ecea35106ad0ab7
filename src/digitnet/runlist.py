"""`digitnet runs`: the run directories under a folder, one line each, read from their
config.json alone (no weights are loaded, so listing hundreds of runs is instant)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitnet import artifacts as art
from digitnet.errors import ConfigError, ModelFileError

FORMAT = "digitnet-run"


@dataclass
class RunInfo:
    name: str  # path relative to the listed folder
    path: Path
    date: str  # when training finished (UTC), or when config.json was last written
    layers: str
    epochs: int | None
    test_accuracy: float | None
    seconds: float | None
    status: str  # complete, training (or killed), …

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "date": self.date,
                "layers": self.layers, "epochs": self.epochs,
                "test_accuracy": self.test_accuracy, "seconds": self.seconds, "status": self.status}


def run_info(run_dir: Path, root: Path) -> RunInfo | None:
    """The listing's line for one run directory, or None when it is not a digitnet run."""
    try:
        cfg = art.read_json(run_dir / art.CONFIG)
    except ModelFileError:
        return None
    if cfg.get("format") != FORMAT:
        return None
    model, metrics = cfg.get("model") or {}, cfg.get("metrics") or {}
    shape, hidden = model.get("input_shape") or [28, 28], model.get("hidden") or []
    inputs = 1
    for d in shape:
        inputs *= int(d)
    outputs = 1 if model.get("output") == "sigmoid" else model.get("num_classes", 10)  # binary: one unit
    layers = "-".join(map(str, [inputs, *hidden, outputs]))
    date = cfg.get("finished") or time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime((run_dir / art.CONFIG).stat().st_mtime))
    epochs = metrics.get("epochs", (cfg.get("train") or {}).get("epochs"))
    return RunInfo(name=str(run_dir.relative_to(root)) if run_dir != root else run_dir.name,
                   path=run_dir, date=date, layers=layers,
                   epochs=int(epochs) if epochs is not None else None,
                   test_accuracy=metrics.get("test_accuracy"),
                   seconds=metrics.get("train_seconds"), status=cfg.get("status", "complete"))


def list_runs(folder: str | os.PathLike = "runs") -> list[RunInfo]:
    """Every run directory under `folder` (sweep trials included), oldest first."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder (runs are saved under runs/ by default; "
                          "give the folder that holds them)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if art.CONFIG in filenames:
            info = run_info(Path(dirpath), root)
            if info is not None:
                found.append(info)
                dirnames.clear()  # a run's report/ folder holds no runs
    # The date has whole seconds; runs finished within one second keep the order they were saved.
    return sorted(found, key=lambda r: (r.date, (r.path / art.CONFIG).stat().st_mtime_ns, r.name))


def table(runs: list[RunInfo]) -> str:
    """The runs as aligned text columns."""
    rows = [["NAME", "DATE (UTC)", "LAYERS", "EPOCHS", "TEST ACC", "SECONDS"]]
    for r in runs:
        acc = f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else r.status
        rows.append([r.name, r.date.replace("T", " ").removesuffix("Z"), r.layers,
                     "" if r.epochs is None else str(r.epochs), acc,
                     "" if r.seconds is None else f"{r.seconds:.1f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {3, 4, 5}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                     for row in rows)
