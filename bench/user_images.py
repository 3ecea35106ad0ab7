"""Accuracy of a trained model on realistic user uploads made from MNIST test digits.

    python bench/user_images.py RUN [--n 1000] [--seed 0] [--styles a,b] [--against REV]

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
import sys
import time
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=1000, help="test digits per style")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--styles", default=",".join(ALL_STYLES), help="comma-separated, in this order")
    p.add_argument("--against", metavar="REV", help="also measure images.py as at this git revision")
    args = p.parse_args()
    styles = args.styles.split(",")
    if unknown := set(styles) - set(ALL_STYLES):
        p.error(f"unknown styles {sorted(unknown)}; choose from {', '.join(ALL_STYLES)}")
    loaders = {"now": images.load_digit}
    if args.against:
        loaders = {args.against: old_module(args.against).load_digit, **loaders}
    model = digitnet.load(args.run)
    ds = digitnet.load_dataset()
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(ds.y_test), args.n, replace=False)
    truth = ds.y_test[idx]
    clean = (model.predict(ds.x_test[idx]) == truth).mean()
    print(f"model {args.run}: {args.n} MNIST test digits per style, seed {args.seed}")
    print(f"{'style':<12}" + "".join(f"{k[:9]:>10}{'ms/image':>10}" for k in loaders))
    print(f"{'(clean)':<12}" + f"{clean:>10.4f}{'':>10}" * len(loaders))
    scores: dict[str, list[float]] = {k: [] for k in loaders}
    for style in styles:
        # A generator per style: a style's files do not depend on which others are measured.
        style_rng = np.random.default_rng([args.seed, ALL_STYLES.index(style)])
        files = [make_upload(ds.x_test[i], style, style_rng) for i in idx]
        row = f"{style:<12}"
        for name, load in loaders.items():
            t0 = time.process_time()
            x = [read(load, f) for f in files]
            ms = 1000 * (time.process_time() - t0) / len(files)
            ok = np.array([a is not None for a in x])  # "no digit found" counts as a wrong answer
            blank = np.zeros((28, 28), np.uint8)
            guess = model.predict(np.stack([blank if a is None else a for a in x]))
            scores[name].append(((guess == truth) & ok).mean())
            row += f"{scores[name][-1]:>10.4f}{ms:>10.1f}"
        print(row, flush=True)
    print(f"{'all styles':<12}" + "".join(f"{np.mean(v):>10.4f}{'':>10}" for v in scores.values()))


if __name__ == "__main__":
    main()
