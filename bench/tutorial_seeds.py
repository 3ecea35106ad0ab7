"""The tutorial's recipe over 10 seeds: test accuracy mean ± std, as the README reports it.

    python bench/tutorial_seeds.py [--seeds 10]

Each seed runs `digitnet train --seed S` in a fresh process, exactly as a user would.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    accs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            out = subprocess.run(
                [sys.executable, "-m", "digitnet", "train", "--quiet", "--seed", str(seed),
                 "--out", f"{tmp}/s{seed}"], capture_output=True, text=True, check=True).stdout
            acc = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
            first = re.search(r"first five test predictions (\[.*\])", out).group(1)
            accs.append(acc)
            print(f"seed {seed}: test accuracy {acc:.4f}  first five {first}", flush=True)
    print(f"{len(accs)} seeds: mean {statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f} "
          f"(min {min(accs):.4f}, max {max(accs):.4f})")


if __name__ == "__main__":
    main()
