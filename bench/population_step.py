"""Paired CPU cost of a recipe's training step: one model against a population of K members.

    PYTHONPATH=src python bench/population_step.py ceiling --k 2 --steps 10 --rounds 3
    SHARD=1 PYTHONPATH=src python bench/population_step.py ceiling --k 2   # one device per core

Compiles one chunk of STEPS batches of the recipe's training step for one model
(digitnet.engine) and for K members (digitnet.population, on one XLA device, or with SHARD=1
sharded over one single-threaded device per core as `train --seeds` used to for every model),
then times the two alternately, ROUNDS times, on random pixels (the cost of a step does not
depend on them). Prints wall and CPU milliseconds per step and the population's ratio to one
model (K is proportional cost).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if os.environ.get("SHARD"):
        from digitnet.runtime import population_devices

        population_devices(args.k)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from digitnet import config
    from digitnet.engine import engine_for
    from digitnet.model import preprocess_stats
    from digitnet.population import Placement, population_engine, stack

    spec, cfg, _ = config.recipe(args.recipe)
    k, steps, batch = args.k, args.steps, cfg.batch_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (steps * batch, *spec.input_shape), dtype=np.uint8)
    y = rng.integers(0, spec.num_classes, steps * batch).astype(np.int32)
    rows = np.arange(steps * batch, dtype=np.int32)
    stats = preprocess_stats(spec, x.reshape(len(x), -1))
    engine = engine_for(spec, cfg, 469)
    pop = population_engine(engine)
    place = Placement(k)
    params, opt, _, key = engine.init_state(1)
    pk, ok, _, keys = pop.init_state(jnp.arange(1, k + 1, dtype=jnp.int32))
    pk, ok, statsk, keys = place.members((pk, ok, stack([stats] * k), keys))
    data = [np.stack([a] * k) for a in (x, y, rows)]
    state = {"one": (params, opt), "pop": (pk, ok)}

    def one() -> None:
        out = engine.train_chunk(*state["one"], stats, x, y, rows, 0, key, steps=steps, batch=batch)
        state["one"] = out[:2]
        jax.block_until_ready(out[2])

    def population() -> None:
        out = pop.train_chunk(*state["pop"], statsk, *place.members(tuple(data)), 0, keys, {},
                              steps=steps, batch=batch)
        state["pop"] = out[:2]
        jax.block_until_ready(out[2])

    def cpu() -> float:
        t = os.times()
        return t.user + t.system

    print(f"{args.recipe}, K = {k}, {place.ways} device(s), load {os.getloadavg()[0]:.1f}")
    for f in (one, population):
        f()  # compiles
    seen: dict[str, list[tuple[float, float]]] = {"one": [], "pop": []}
    for _ in range(args.rounds):
        for name, f in (("one", one), ("pop", population)):
            t, c = time.perf_counter(), cpu()
            f()
            seen[name].append((time.perf_counter() - t, cpu() - c))
    for name, runs in seen.items():
        wall, cpus = (float(np.median([r[i] for r in runs])) / steps * 1e3 for i in (0, 1))
        print(f"{name}: {wall:.1f} ms wall, {cpus:.1f} ms CPU per step (medians of {args.rounds})")
    ratio = [float(np.median([r[i] for r in seen["pop"]]) / np.median([r[i] for r in seen["one"]]))
             for i in (0, 1)]
    print(f"population / one model: {ratio[0]:.2f}x wall, {ratio[1]:.2f}x CPU (K = {k}); "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
