"""Accuracy of a trained model on realistic user uploads made from MNIST test digits.

    python bench/user_images.py RUN [--n 1000] [--seed 0]

Each style (bench/uploads.py: STYLES) turns the same n test digits into files a user would
send (PNG, JPEG, RGBA; on paper, off-centre, rotated, blurred, noisy, thick or thin pens, a
photo with uneven light); they go through digitnet.data.images.load_digit and the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import digitnet
from digitnet.data.images import load_digit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: bench/ importable
from bench.uploads import STYLES, make_upload  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=1000, help="test digits per style")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model = digitnet.load(args.run)
    ds = digitnet.load_dataset()
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(ds.y_test), args.n, replace=False)
    truth = ds.y_test[idx]
    clean = (model.predict(ds.x_test[idx]) == truth).mean()
    print(f"model {args.run}: {args.n} MNIST test digits per style, seed {args.seed}")
    print(f"{'style':<12}{'accuracy':>9}{'ms/image':>10}")
    print(f"{'(clean)':<12}{clean:>9.4f}")
    scores = []
    for style in STYLES:
        files = [make_upload(ds.x_test[i], style, rng) for i in idx]
        t0 = time.perf_counter()
        x = np.stack([load_digit(f) for f in files])
        ms = 1000 * (time.perf_counter() - t0) / len(files)
        scores.append((model.predict(x) == truth).mean())
        print(f"{style:<12}{scores[-1]:>9.4f}{ms:>10.1f}", flush=True)
    print(f"{'all styles':<12}{np.mean(scores):>9.4f}")


if __name__ == "__main__":
    main()
