"""How much do the members of an ensemble differ? Trains K models of a recipe as one population
(in this process: one XLA device) and prints each member's test accuracy, their pairwise
disagreement, the errors they share, and the ensemble's accuracy (mean of probabilities).

    PYTHONPATH=src python bench/ensemble_diversity.py fast 1,2,3,4
    PYTHONPATH=src python bench/ensemble_diversity.py ceiling 1,2,3,4 hidden=512:512 epochs=6 deskew=false

Options are KEY=VALUE recipe overrides (a list as 512:512; true/false for switches). With
--save FILE the members' test probabilities (K, 10000, 10) are kept for combining committees.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def option(value: str) -> object:
    if value in ("true", "false"):
        return value == "true"
    if ":" in value:
        return tuple(int(v) for v in value.split(":"))
    return float(value) if "." in value else int(value)


def main() -> None:
    import digitnet
    from digitnet.data.datasets import load_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe")
    p.add_argument("seeds", help="comma-separated seeds, one member each")
    p.add_argument("options", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--save", help="write the members' test probabilities here (.npy)")
    args = p.parse_args()
    opts = {k: option(v) for k, v in (o.split("=", 1) for o in args.options)}
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset("mnist")
    x, y = ds.x_test, ds.y_test
    t0 = time.perf_counter()
    models = digitnet.fit(recipe=args.recipe, seeds=seeds, verbose=False, **opts)
    print(f"{args.recipe} {' '.join(args.options)}: population of {len(seeds)} trained in "
          f"{time.perf_counter() - t0:.0f} s")
    probs = np.stack([m.predict_proba(x) for m in models])
    preds = probs.argmax(-1)
    accs = (preds == y).mean(1)
    print("members %:", " ".join(f"{100 * a:.2f}" for a in accs), f"(mean {100 * accs.mean():.2f})")
    pairs = [100 * float((a != b).mean()) for a, b in itertools.combinations(preds, 2)]
    print(f"pairwise disagreement %: mean {np.mean(pairs):.2f} (min {min(pairs):.2f}, max {max(pairs):.2f})")
    errors = [set(np.flatnonzero(p != y)) for p in preds]
    print(f"test errors: per member {[len(e) for e in errors]}, "
          f"made by all {len(set.intersection(*errors))}, by any {len(set.union(*errors))}")
    print(f"ensemble (mean of probabilities) %: {100 * float((probs.mean(0).argmax(-1) == y).mean()):.2f}")
    if args.save:
        np.save(args.save, probs)


if __name__ == "__main__":
    main()
