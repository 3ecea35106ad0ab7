"""`load_digit` against its own code at another git revision: the same output, and the CPU time.

    python -m bench.images_ab REV [--n 60] [--batches 7]

Loads src/digitnet/data/images.py as it was at REV (e.g. f4e2f8b) beside the current one, runs
both on --n MNIST test digits in every style of bench/uploads.py's STYLES, on those digits as
280×280 PNG drawings (what the page sends) and as plain 28×28 PNGs, and on 300 MNIST digits
through `mnist_form`; prints per group how many outputs differ (and by how much: the clean
drawings, PNGs and digits must not), then CPU ms per call on the first drawing, in interleaved
batches of 50 calls (the best batch of each).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def old_module(rev: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/digitnet/data/images.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="images-ab-")) / "images_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("images_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drawing(digit: np.ndarray, size: int = 280) -> bytes:
    from PIL import Image

    page = Image.new("L", (size, size), 255)
    page.paste(Image.fromarray(255 - digit).resize((size * 5 // 7, size * 5 // 7)), (size // 7, size // 7))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rev")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--batches", type=int, default=7)
    args = ap.parse_args()
    from PIL import Image

    import digitnet
    from bench.uploads import STYLES, make_upload
    from digitnet.data import images as new

    old = old_module(args.rev)
    x = digitnet.load_dataset().x_test
    rng = np.random.default_rng(0)
    groups = {"uploads": [make_upload(x[i], style, rng) for i in range(args.n) for style in STYLES],
              "drawings": [drawing(x[i]) for i in range(args.n)], "plain PNGs": []}
    for i in range(args.n):
        buf = io.BytesIO()
        Image.fromarray(x[i]).save(buf, "PNG")
        groups["plain PNGs"].append(buf.getvalue())
    worst = {name: [int(np.abs(old.load_digit(f).astype(int) - new.load_digit(f)).max()) for f in files]
             for name, files in groups.items()}
    worst["mnist_form"] = [int(np.abs(old.mnist_form(d.astype(float)).astype(int)
                                      - new.mnist_form(d.astype(float))).max()) for d in x[:300]]
    for name, w in worst.items():
        print(f"{name}: {len(w)} images, {sum(d > 0 for d in w)} outputs differ, "
              f"by at most {max(w)} grey levels")
    page = drawing(x[0])
    cpu: dict[str, list[float]] = {args.rev: [], "now": []}
    for _ in range(args.batches):
        for name, module in ((args.rev, old), ("now", new)):
            start = time.process_time()
            for _ in range(50):
                module.load_digit(page)
            cpu[name].append((time.process_time() - start) / 50 * 1e3)
    best = {k: min(v) for k, v in cpu.items()}
    print(f"280×280 PNG drawing, CPU ms per load_digit (best of {args.batches} batches of 50): "
          f"{args.rev} {best[args.rev]:.2f}, now {best['now']:.2f} ({best['now'] / best[args.rev]:.2f}×)")


if __name__ == "__main__":
    sys.exit(main())
