"""Accuracy of a trained model on realistic user uploads made from MNIST test digits.

    python bench/user_images.py RUN [--n 1000] [--seed 0] [--styles a,b] [--against REV] [--jobs 1]

Each style (bench/uploads.py: STYLES, then PHOTO_STYLES) turns the same n test digits into files
a user would send (PNG, JPEG, RGBA; on paper, off-centre, rotated, blurred, noisy, thick or thin
pens, a photo with uneven light; then phone photos: shadows, paper texture and specks, colour
casts, markers and fine pens, slanted views, ruled and squared paper, a light digit on a dark
board, tight crops, a sheet on a desk, a 3024×4032 JPEG with EXIF orientation); they go through
digitnet.data.images.load_digit and the model. --against REV also runs load_digit as it was at
git revision REV on the same files, in the same run, and prints both (ms: CPU time of
load_digit per file).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import digitnet
from digitnet.data import images
from digitnet.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: bench/ importable
from bench.images_ab import old_module  # noqa: E402
from bench.uploads import ALL_STYLES, make_upload  # noqa: E402


def read(load, data: bytes) -> np.ndarray | None:
    try:
        return load(data)
    except DataError:
        return None


def measure(run: str, seed: int, n: int, style: str, against: str | None) -> list[tuple[float, float]]:
    """(accuracy, CPU ms per file) of each loader ([REV,] now) on n files of one style."""
    loaders = [images.load_digit]
    if against:
        loaders.insert(0, old_module(against).load_digit)
    model = digitnet.load(run)
    ds = digitnet.load_dataset()
    idx = np.random.default_rng(seed).choice(len(ds.y_test), n, replace=False)
    truth = ds.y_test[idx]
    # A generator per style: a style's files do not depend on which others are measured.
    rng = np.random.default_rng([seed, ALL_STYLES.index(style)])
    files = [make_upload(ds.x_test[i], style, rng) for i in idx]
    out = []
    for load in loaders:
        read(load, files[0])  # imports and first-call set-up are not per-file time
        t0 = time.process_time()
        x = [read(load, f) for f in files]
        ms = 1000 * (time.process_time() - t0) / len(files)
        ok = np.array([a is not None for a in x])  # "no digit found" counts as a wrong answer
        blank = np.zeros((28, 28), np.uint8)
        guess = model.predict(np.stack([blank if a is None else a for a in x]))
        out.append((float(((guess == truth) & ok).mean()), ms))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=1000, help="test digits per style")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--styles", default=",".join(ALL_STYLES), help="comma-separated, in this order")
    p.add_argument("--against", metavar="REV", help="also measure images.py as at this git revision")
    p.add_argument("--jobs", type=int, default=1, help="styles measured at once, in processes")
    args = p.parse_args()
    styles = args.styles.split(",")
    if unknown := set(styles) - set(ALL_STYLES):
        p.error(f"unknown styles {sorted(unknown)}; choose from {', '.join(ALL_STYLES)}")
    names = ([args.against] if args.against else []) + ["now"]
    model = digitnet.load(args.run)
    ds = digitnet.load_dataset()
    idx = np.random.default_rng(args.seed).choice(len(ds.y_test), args.n, replace=False)
    clean = (model.predict(ds.x_test[idx]) == ds.y_test[idx]).mean()
    print(f"model {args.run}: {args.n} MNIST test digits per style, seed {args.seed}")
    print(f"{'style':<12}" + "".join(f"{k[:9]:>10}{'ms/image':>10}" for k in names))
    print(f"{'(clean)':<12}" + f"{clean:>10.4f}{'':>10}" * len(names))
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = pool.map(measure, *zip(*[(args.run, args.seed, args.n, s, args.against) for s in styles],
                                      strict=True))
        scores: list[list[float]] = [[] for _ in names]
        for style, row in zip(styles, rows, strict=True):
            for k, (acc, _) in enumerate(row):
                scores[k].append(acc)
            print(f"{style:<12}" + "".join(f"{acc:>10.4f}{ms:>10.1f}" for acc, ms in row), flush=True)
    print(f"{'all styles':<12}" + "".join(f"{np.mean(v):>10.4f}{'':>10}" for v in scores))


if __name__ == "__main__":
    main()
