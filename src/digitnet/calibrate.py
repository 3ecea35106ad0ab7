"""Engine settings chosen per machine, by measurement: `digitnet calibrate`.

Which settings train fastest depends on the CPU (its vector width, caches, core count) and on
the library versions, so digitnet does not guess: `digitnet calibrate` trains the shapes at hand
with each candidate, interleaved round by round so that a load spike from other processes hits
every candidate alike, and keeps the fastest in $DIGITNET_HOME/calibration.json under a key made
of the CPU's model and flags, the cores this process may use, and the versions of Python, JAX,
jaxlib, NumPy and digitnet. A machine or version that changes gets no stored choice (and the
defaults) until it is calibrated again.

Rules: the default settings are always a candidate, and another one is only chosen when it trains
the very same bits as the default and beats it clearly (its wall time per epoch, paired with the
default's of the same round, is lower in most rounds and by MARGIN best to best), or matches it
with a shorter loop body, which compiles faster (as fast best to best, and no slower in at least
half the rounds); so a stored
choice is never slower than the default, as far as measurement can tell, and never changes a
result. Explicit switches still win: DIGITNET_XLA_THREADS=auto, XLA_FLAGS or NPROC set by the
user, and settings passed to fit.

Calibration runs on demand, not at first use: it takes tens of seconds (one process per
threading candidate, each compiling the training step once per unroll), which would triple the
first `digitnet train`, and timing it while the user's own work runs would measure that work.

This module imports neither JAX nor NumPy, except in the measuring worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from digitnet.tuning import DEFAULT, THREADING, machine, save, simd_flags

# Candidate steps per iteration of the compiled training loop; the default (2 on a CPU) among them.
UNROLLS = (1, 2, 4)
MARGIN = 0.03  # how much faster (best epoch to best epoch) a candidate must be to replace the default


def decide(rounds: list[dict[str, float]], same_bits: Mapping[str, bool],
           default: str) -> tuple[str, dict[str, float]]:
    """The candidate to keep, from per-round wall seconds per candidate ({name: seconds} per
    round), and each candidate's ratio to the default.

    A busy machine only ever adds time, so a candidate's best round is its truest figure: the
    ratio is best round to best round. To be chosen, a candidate must train the default's bits,
    have a ratio of at most 1 - MARGIN, and also beat the default in most rounds, paired (the
    same round, back to back), so that one lucky round cannot elect it. Failing that, a
    candidate with the default's bits and fewer steps per loop iteration that is as fast (ratio
    at most 1, no slower in at least half the rounds) is chosen: it compiles faster."""
    ratios = {name: min(r[name] for r in rounds) / min(r[default] for r in rounds)
              for name in rounds[0]}
    eligible = [name for name, ratio in ratios.items()
                if name != default and same_bits.get(name) and ratio <= 1 - MARGIN
                and 2 * sum(r[name] < r[default] for r in rounds) > len(rounds)]
    if not eligible:
        # As fast as the default (best round no slower, and no slower in at least half the
        # rounds) with fewer steps per loop iteration: the same epochs, and a loop body that
        # compiles in about half the time on every cold start.
        unroll = parse_name(default)[1]
        lean = [name for name, ratio in ratios.items()
                if same_bits.get(name) and parse_name(name)[1] < unroll and ratio <= 1
                and 2 * sum(r[name] <= r[default] for r in rounds) >= len(rounds)]
        if not lean:
            return default, ratios
        return min(lean, key=lambda name: (parse_name(name)[1], ratios[name])), ratios
    # Within MARGIN of the fastest, the fewest steps per loop iteration: a longer loop body
    # costs compile time on every cold start (about twice as much at 4 steps as at 2).
    best = min(ratios[name] for name in eligible)
    close = [name for name in eligible if ratios[name] <= best * (1 + MARGIN)]
    return min(close, key=lambda name: (parse_name(name)[1], ratios[name])), ratios


def candidate_name(threading: str, unroll: int, split: int = 0) -> str:
    return f"{threading}/unroll-{unroll}" + (f"/split-{split}" if split else "")


def parse_name(name: str) -> tuple[str, int, int]:
    """(threading, unroll, split rows) of a candidate_name."""
    threading, *rest = name.split("/")
    fields = dict(part.split("-", 1) for part in rest)
    return threading, int(fields["unroll"]), int(fields.get("split", 0))


def calibrate(hidden: tuple[int, ...] = (64, 64), batch: int = 32, rounds: int = 7,
              examples: int = 60000, threadings: tuple[str, ...] = tuple(THREADING),
              unrolls: tuple[int, ...] = UNROLLS, log: Callable[[str], None] = print,
              store: bool = True) -> dict[str, Any]:
    """Measure every (threading, unroll) candidate on a 784-…-10 MLP of `hidden` layers at
    `batch` (one epoch of `examples` images per candidate and round), choose, and store."""
    threadings = ("default", *[t for t in threadings if t != "default"])
    unrolls = tuple(sorted({DEFAULT["unroll"], *unrolls}))
    job = {"hidden": list(hidden), "batch": batch, "examples": examples, "unrolls": list(unrolls)}
    default = candidate_name("default", DEFAULT["unroll"])
    workers: dict[str, subprocess.Popen] = {}
    bits: dict[str, str] = {}
    per_round: list[dict[str, float]] = []
    cpu: dict[str, list[float]] = {}
    m = machine()
    log(f"calibrating on {m['cpu']} ({m['cpu_id']}; {m['cores']} cores; "
        f"{' '.join(simd_flags(m))}) for 784-{'-'.join(map(str, hidden))}-10 at batch {batch}")
    load = [os.getloadavg()[0]]
    if load[0] > m["cores"]:
        log(f"  note: the machine is busy (load average {load[0]:.1f} on {m['cores']} cores); "
            "its timings are noisy, and a quieter moment gives a surer choice")
    try:
        # Workers start one at a time (compiling side by side would slow each other down) and
        # then take turns: one epoch per candidate per round, the order rotated each round.
        for name in threadings:
            # The default's worker starts first: the others look for the split of the first
            # kernel's gradient that gives its product's bits (EngineSettings.split_rows).
            workers[name] = start_worker(name, job)
            ready = read_line(workers[name])
            job.setdefault("product_bits", ready["product_bits"])
            bits.update({f"{name}/{key}": h for key, h in ready["bits"].items()})
            log(f"  {name}: ready (compiled in {ready['compile_seconds']:.1f} s"
                + (f"; gradient split at row {ready['split']}" if ready["split"] else "") + ")")
        for r in range(rounds):
            row: dict[str, float] = {}
            order = list(workers)
            for name in order[r % len(order):] + order[:r % len(order)]:
                workers[name].stdin.write("go\n")
                workers[name].stdin.flush()
                for key, (wall, cpu_s) in read_line(workers[name])["seconds"].items():
                    row[f"{name}/{key}"] = wall
                    cpu.setdefault(f"{name}/{key}", []).append(cpu_s)
            per_round.append(row)
            log(f"  round {r + 1}/{rounds}: default {row[default]:.3f} s/epoch, best "
                f"{min(row, key=row.get)} {min(row.values()):.3f}")
    finally:
        for w in workers.values():
            if w.poll() is None:
                w.stdin.close()
                try:
                    w.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    w.kill()
    load.append(os.getloadavg()[0])
    same_bits = {name: h == bits[default] for name, h in bits.items()}
    best, ratios = decide(per_round, same_bits, default)
    threading, unroll, split = parse_name(best)
    entry = {
        "threading": threading, "unroll": unroll, "split_rows": split, "sizes": [784, *hidden, 10],
        "batch": batch,
        "machine": {k: v for k, v in m.items() if k != "flags"} | {"simd": simd_flags(m)},
        "measured": {name: {"best_seconds": min(r[name] for r in per_round),
                            "median_seconds": statistics.median(r[name] for r in per_round),
                            "median_cpu_seconds": statistics.median(cpu[name]),
                            "ratio_to_default": ratios[name], "same_bits": same_bits[name]}
                     for name in per_round[0]},
        "rounds": rounds, "load_average": load, "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    if store:
        entry["path"] = str(save(entry))
    return entry


def start_worker(threading: str, job: Mapping[str, Any]) -> subprocess.Popen:
    flags, env_extra = THREADING[threading]
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "NPROC")}
    env.update(env_extra, XLA_FLAGS=" ".join(flags), DIGITNET_XLA_THREADS="auto",
               DIGITNET_COMPILE_CACHE="0", JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "digitnet.calibrate", json.dumps(job)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def read_line(worker: subprocess.Popen) -> dict[str, Any]:
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"a calibration worker stopped (exit status {worker.wait()})")
    return json.loads(line)


def product_bits(x: Any, g: Any, split: int = 0) -> str:
    """The hash of the first kernel's gradient product x.T @ g as the engine computes it with
    EngineSettings.split_rows = split, on this process's XLA threading."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    def grad(x: Any, g: Any) -> Any:
        if not split:
            return x.T @ g
        return jnp.concatenate([x[:, :split].T @ g, x[:, split:].T @ g])

    return hashlib.sha256(np.asarray(jax.jit(grad)(x, g)).tobytes()).hexdigest()


def find_split(x: Any, g: Any, reference: str | None, tries: int = 64) -> int:
    """The split rows (0: none) under which this process computes the first kernel's gradient
    with the bits `reference` (the default threading's, for the whole product): 0 when they
    already agree, else the first of the multiples of 4 below the fan-in, from the top, that
    agrees; 0 when none of `tries` does (the candidate's bits then differ, and it is refused)."""
    if reference is None or product_bits(x, g) == reference:
        return 0
    fan_in = x.shape[1]
    for split in range(fan_in - fan_in % 4 - 4, 0, -4)[:tries]:
        if product_bits(x, g, split) == reference:
            return split
    return 0


def worker(job: Mapping[str, Any]) -> None:
    """One threading candidate: find the gradient split that gives the default threading's
    product bits (find_split), compile the tutorial-style step for every unroll, report each
    one's result bits, then train one timed epoch per unroll for every "go" on stdin."""
    import jax
    import numpy as np

    from digitnet.engine import EngineSettings
    from digitnet.model import MLPSpec
    from digitnet.train import TrainConfig, fit_arrays

    spec = MLPSpec(hidden=tuple(job["hidden"]))
    probe = np.random.default_rng(1)
    px = probe.standard_normal((job["batch"], spec.input_dim)).astype(np.float32)
    pg = probe.standard_normal((job["batch"], spec.hidden[0] if spec.hidden else
                                spec.num_classes)).astype(np.float32)
    split = find_split(px, pg, job.get("product_bits"))
    cfg = TrainConfig(epochs=1, batch_size=job["batch"], validation="none")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (job["examples"], *spec.input_shape), dtype=np.uint8)
    y = rng.integers(0, spec.num_classes, job["examples"]).astype(np.int32)
    stats = {"shift": np.full(spec.input_dim, 127.5, np.float32),
             "scale": np.full(spec.input_dim, 1 / 255, np.float32)}
    # Each chunk's examples gathered on the host, as training on a CPU runs
    # (EngineSettings.default): an in-program gather would time a step training never takes.
    settings = {candidate_name("", u, split)[1:]: EngineSettings(unroll=u, split_rows=split,
                                                                 host_gather=True)
                for u in job["unrolls"]}

    def epoch(key: str) -> Any:
        return fit_arrays(spec, cfg, x, y, stats, settings=settings[key]).params

    t0 = time.perf_counter()
    bits = {}
    for key in settings:
        leaves = [np.asarray(a) for a in jax.tree.leaves(epoch(key))]
        bits[key] = hashlib.sha256(b"".join(a.tobytes() for a in leaves)).hexdigest()
    print(json.dumps({"bits": bits, "compile_seconds": time.perf_counter() - t0, "split": split,
                      "product_bits": product_bits(px, pg)}), flush=True)
    for r, _ in enumerate(sys.stdin):
        seconds = {}
        order = list(settings)
        for key in order[r % len(order):] + order[:r % len(order)]:
            w, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(epoch(key))
            seconds[key] = (time.perf_counter() - w, time.process_time() - c)
        print(json.dumps({"seconds": seconds}), flush=True)


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
