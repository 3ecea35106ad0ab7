"""What `digitnet datasets` does (list, fetch, verify, show), as lines for the terminal."""

from __future__ import annotations

from pathlib import Path

from digitnet.data import datasets
from digitnet.errors import ConfigError, DataError


def listing() -> list[str]:
    """The known datasets, whether they are here, their size and licence."""
    lines = [f"{'NAME':<14} {'STATUS':<19} {'SIZE':>9}  {'LICENCE':<13} DESCRIPTION"]
    lines += [f"{name:<14} {datasets.status(name):<19} {e.download_size / 1e6:>6.1f} MB  "
              f"{e.licence:<13} {e.description}" for name, e in datasets.REGISTRY.items()]
    return [*lines, f"cache: {datasets.home()} (set $DIGITNET_HOME to move it)"]


def verify(name: str) -> list[str]:
    """One line per file; a DataError naming the fix when any is missing or corrupt."""
    report = datasets.verify(name)
    lines = [f"ok   {path}" if problem is None else f"BAD  {path}: {problem}"
             for path, problem in report.items()]
    bad = sum(p is not None for p in report.values())
    if bad:
        print("\n".join(lines))
        fix = ("reinstall digitnet" if datasets.entry(name).embedded
               else f"`digitnet datasets fetch {name}` downloads them again")
        raise DataError(f"{name}: {bad} of {len(report)} files missing or corrupt; {fix}")
    return [*lines, f"{name}: all {len(report)} files match their pinned SHA-256"]


def fetch(name: str) -> list[str]:
    datasets.fetch(name)  # downloads what is missing or corrupt
    ds = datasets.load_dataset(name)
    return [f"{name}: {len(ds.y_train)} train + {len(ds.y_test)} test images "
            f"{'×'.join(map(str, ds.image_shape))}, {ds.num_classes} classes in "
            f"{datasets.location(name)}; checksums OK"]


def show(name: str, data_dir: str | None, split: str, count: int, out: str | None) -> list[str]:
    """Draw the first `count` images of a split with their labels into a PNG."""
    from digitnet.data.preview import sample_grid
    from digitnet.files import atomic_write_bytes

    if count < 1:
        raise ConfigError("--count must be at least 1")
    ds = datasets.load_dataset(name, data_dir)
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    classes = datasets.REGISTRY[name].classes if name in datasets.REGISTRY else ()
    n = min(count, len(y))
    png = sample_grid(x[:n], y[:n], classes, title=f"{ds.name} {split}: first {n} images")
    path = Path(out or f"{ds.name}-{split}.png")
    atomic_write_bytes(path, png)
    return [f"wrote {path} ({n} {split} images of {ds.name})"]
