"""#4's GPU measurements, in one script sized for one short lease of a GPU machine.

`python -m bench.gpu OUTDIR [--budget SECONDS] [--explore]` runs the parts below one after another, each
in its own process (XLA reads its flags once per process; PyTorch and JAX never share one),
writes OUTDIR/gpu.json and prints a summary. A part that fails or runs out of budget is
recorded as such; the rest still run. Copy gpu.json (gpu-explore.json for an --explore run)
into bench/results: `python -m bench` then writes docs/performance.md's GPU section from it
(bench/gpu_report.py).

Parts, most important first:
- env: the device and the versions.
- fused-tiles: the tutorial's config under other tilings of digitnet.fused's kernels and loop
  unrollings (3 epochs each); the fastest settings are what the parts below measure.
- engine: digitnet.fit on the tutorial's config (784-64-64-10, Adam 1e-3, batch 32, 5 epochs),
  seeds 1–3, with those settings (--explore: at 1, 5, 25 and 75 steps per loop iteration, and
  the training chunk's optimised HLO is kept for reading); test accuracy and predict time too.
  engine-xla-step: the same with XLA's step (DIGITNET_FUSED_STEP=0).
- fused-check: one chunk of 40 steps through the fused kernels and through XLA's step, from the
  same start, for several layer widths and batch sizes.
- torch: PyTorch eager on the same GPU — the peer script of the CPU bench (DataLoader, each
  batch moved to the GPU), seeds 1–3; torch-resident: eager PyTorch written for speed.
- floor: the step's eight matrix products for 1875 steps: through XLA (lax.scan, as
  bench/floor.py does on the CPU) and through cuBLAS from PyTorch, launched one by one and
  replayed from a CUDA graph (the fewest launch gaps a GPU allows).
- recipes: `fast` and `best` trained on the GPU.
- cli: `digitnet train` end to end, cold (empty compilation cache), then warm.
- flags: the engine under other XLA GPU flags (autotuning off; --explore: command buffers),
  one process per setting.
- levers (--explore): bench/levers.py's engine settings on the GPU, in one process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import steady

if TYPE_CHECKING:
    from digitnet.engine import EngineSettings

ROOT = Path(__file__).resolve().parents[1]
UNROLLS = (1, 5, 25, 75)  # the tutorial's epoch compiles as 25 chunks of 75 steps
SEEDS = (1, 2, 3)


# --- parts (each runs in its own process and prints one JSON line) ---------------------------

def part_env() -> dict:
    out: dict = {"python": sys.version.split()[0]}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                              "clocks.max.sm", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        out["nvidia_smi"] = f"unavailable: {exc}"
    import jax
    import jaxlib
    import optax

    out |= {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def part_engine(unrolls: list[int], seeds: list[int], precision: str = "",
                fused_settings: dict | None = None) -> dict:
    """digitnet.fit, the tutorial's config without validation, per unrolling and seed."""
    import jax

    import digitnet
    from digitnet.train import TrainConfig

    backend = jax.default_backend()
    ds = digitnet.load_dataset()
    base = engine_settings(fused_settings)
    from digitnet import fused

    knobs = {k: getattr(fused, k) for k in FUSED_KNOBS} | {
        k: v for k, v in (fused_settings or {}).items() if k in FUSED_KNOBS}
    out: dict = {"backend": backend, "precision": precision or "default", "runs": {},
                 "fused_step": base.fused, "fused_settings": knobs}
    for u in unrolls:
        settings = replace(base, unroll=u)
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            with jax.default_matmul_precision(precision or None):
                model = digitnet.fit(config=TrainConfig(validation="none", seed=seed),
                                     dataset=ds, verbose=False, settings=settings)
            train_seconds = time.perf_counter() - t0
            pred = model.predict(ds.x_test)
            predict = []
            for _ in range(5):
                t = time.perf_counter()
                model.predict(ds.x_test)
                predict.append(time.perf_counter() - t)
            runs.append({"seed": seed, "epoch_seconds": [h["seconds"] for h in model.history],
                         "train_seconds": train_seconds,
                         "test_accuracy": float((pred == ds.y_test).mean()),
                         "first_five": [int(v) for v in pred[:5]],
                         "predict_seconds": predict})
        out["runs"][str(u)] = runs
    return out


# (hidden widths, batch size) checked fused against XLA's step: the tutorial, then the edges of
# what digitnet.fused takes (widths padded to powers of two, one to three hidden layers).
FUSED_SHAPES = [((64, 64), 32), ((128, 128), 128), ((32,), 16), ((100, 50, 30), 64),
                ((128,), 64), ((64, 64), 16)]


def part_fused_check(shapes: list, steps: int, fused_settings: dict) -> dict:
    """One chunk of training through digitnet.fused's kernels and through XLA's step, from the
    same start on the same real batches: the largest difference in any parameter or moment."""
    import jax
    import numpy as np

    import digitnet
    from digitnet.engine import Engine
    from digitnet.model import MLPSpec, preprocess_stats
    from digitnet.train import TrainConfig

    base = engine_settings(fused_settings)
    ds = digitnet.load_dataset()
    x, y = jax.device_put(ds.x_train), jax.device_put(ds.y_train.astype(np.int32))
    order = jax.device_put(np.random.default_rng(0).permutation(len(ds.x_train)).astype(np.int32))
    out = {}
    for hidden, batch in shapes:
        spec, cfg = MLPSpec(hidden=tuple(hidden)), TrainConfig(batch_size=batch, validation="none")
        stats = jax.device_put(preprocess_stats(spec, ds.x_train))
        res = {}
        try:
            for name, engine_mode in (("fused", "gpu"), ("xla", None)):
                engine = Engine(spec, cfg, steps, replace(base, fused=engine_mode))
                params, opt_state, _, key = engine.init_state(1)
                t0 = time.perf_counter()
                got = engine.train_chunk(params, opt_state, stats, x, y, order, 0, key,
                                         steps=steps, batch=batch)
                jax.block_until_ready(got)
                res[name] = (time.perf_counter() - t0, got)
            (_, a), (_, b) = res["fused"], res["xla"]
            diffs = [float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v))))
                     for u, v in zip(jax.tree.leaves(a[:2]), jax.tree.leaves(b[:2]), strict=True)]
            out[f"{hidden} batch {batch}"] = {
                "max_param_diff": max(diffs), "loss": [float(a[2]), float(b[2])],
                "hits": [int(a[3]), int(b[3])],
                "first_call_seconds": [res["fused"][0], res["xla"][0]]}
        except Exception as exc:  # noqa: BLE001 - recorded for the reader, the next shape runs
            out[f"{hidden} batch {batch}"] = {"error": f"{type(exc).__name__}: {exc}"[-2500:]}
    return out


# digitnet.fused's kernel geometry: its constant -> digitnet.fused.train_chunk's keyword.
FUSED_KNOBS = {"TILE": "tile", "NUM_WARPS": "num_warps", "NUM_WARPS_Q": "num_warps_q"}


def engine_settings(variant: dict | None = None) -> EngineSettings:
    """This machine's shipped engine settings with a variant's loop unrolling ("unroll") and
    fused kernel geometry (FUSED_KNOBS' names) in their place."""
    from digitnet.engine import EngineSettings

    variant = dict(variant or {})
    base = EngineSettings.default()
    unroll = variant.pop("unroll", base.unroll)
    return replace(base, unroll=unroll,
                   kernels=tuple(sorted((FUSED_KNOBS[k], v) for k, v in variant.items())))


def part_fused_tiles(variants: list[dict]) -> dict:
    """The tutorial's config (seed 1, 3 epochs) under other tilings of digitnet.fused's kernels
    and loop unrollings; each variant starts from the shipped settings, and its result records
    the settings it ran with in full."""
    import digitnet
    from digitnet import fused
    from digitnet.engine import EngineSettings
    from digitnet.train import TrainConfig

    shipped = {k: getattr(fused, k) for k in FUSED_KNOBS}
    shipped["unroll"] = EngineSettings.default().unroll
    ds = digitnet.load_dataset()
    out = {}
    for v in variants:
        settings = {**shipped, **v}
        try:
            model = digitnet.fit(config=TrainConfig(validation="none", epochs=3), dataset=ds,
                                 verbose=False, settings=engine_settings(settings))
            out[json.dumps(v)] = {"settings": settings,
                                  "epoch_seconds": [h["seconds"] for h in model.history]}
        except Exception as exc:  # noqa: BLE001
            out[json.dumps(v)] = {"settings": settings, "error": f"{type(exc).__name__}: {exc}"[-1500:]}
    return out


FUSED_TILES = [{}, {"TILE": 64}, {"TILE": 16}, {"NUM_WARPS": 8}, {"NUM_WARPS_Q": 4},
               {"unroll": 1}, {"unroll": 25}]


def part_floor() -> dict:
    """The eight products per step, 1875 steps, through XLA and through cuBLAS (PyTorch)."""
    from bench.floor import xla_epoch_seconds

    out: dict = {"xla_scan": {str(u): xla_epoch_seconds(repeats=5, unroll=u) for u in (1, 25)}}
    return out


def part_torch_floor(device: str = "cuda") -> dict:
    import torch

    from bench.floor import BATCH, SIZES, STEPS

    chunk = 75
    torch.manual_seed(0)
    x = torch.randn(STEPS * BATCH, SIZES[0], device=device)
    w1, w2, w3 = (torch.randn(a, b, device=device) * 0.05 for a, b in zip(SIZES, SIZES[1:], strict=False))
    h1, h2, z = (torch.empty(BATCH, d, device=device) for d in SIZES[1:])
    dh2, dh1 = torch.empty(BATCH, SIZES[2], device=device), torch.empty(BATCH, SIZES[1], device=device)
    dw1, dw2, dw3 = (torch.empty_like(w) for w in (w1, w2, w3))

    def step(s: int) -> None:
        xb = x[s * BATCH:(s + 1) * BATCH]
        torch.mm(xb, w1, out=h1)
        torch.mm(h1, w2, out=h2)
        torch.mm(h2, w3, out=z)
        torch.mm(h2.t(), z, out=dw3)
        torch.mm(z, w3.t(), out=dh2)
        torch.mm(h1.t(), dh2, out=dw2)
        torch.mm(dh2, w2.t(), out=dh1)
        torch.mm(xb.t(), dh1, out=dw1)

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    out: dict = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        eager = []
        for _ in range(4):
            sync()
            t0 = time.perf_counter()
            for s in range(STEPS):
                step(s)
            sync()
            eager.append(time.perf_counter() - t0)
        res = {"eager": eager[1:]}
        if device != "cpu":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for s in range(chunk):
                    step(s)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for s in range(chunk):
                    step(s)
            graphed = []
            for _ in range(6):
                sync()
                t0 = time.perf_counter()
                for _ in range(STEPS // chunk):
                    graph.replay()
                sync()
                graphed.append(time.perf_counter() - t0)
            res["cuda_graph"] = graphed[1:]
        out["tf32" if tf32 else "fp32"] = res
    return out


def part_torch_resident(data: str, seeds: list[int], device: str = "cuda") -> dict:
    """PyTorch eager written for speed rather than from the tutorials: the data on the GPU
    (uint8, normalised per batch, as digitnet does), batches by slicing a torch.randperm
    order, Adam's fused CUDA kernel. The stronger PyTorch baseline on a GPU: the peer script's
    DataLoader spends most of its epoch collating batches on the host."""
    import numpy as np
    import torch
    from torch import nn

    d = np.load(data)  # written by bench.peer_runner.write_data: uint8 pixels, int labels
    x = torch.from_numpy(d["x_train"].reshape(len(d["x_train"]), -1)).to(device)
    y = torch.from_numpy(d["y_train"].astype("int64")).to(device)
    xt = torch.from_numpy(d["x_test"].reshape(len(d["x_test"]), -1)).to(device)
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 10)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device != "cpu")
        loss_fn = nn.CrossEntropyLoss()
        epochs = []
        for _ in range(5):
            t0 = time.perf_counter()
            order = torch.randperm(len(y), device=device)
            for i in range(0, len(y), 32):
                idx = order[i:i + 32]
                xb = x[idx].float() / 255 - 0.5
                loss = loss_fn(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if device != "cpu":
                torch.cuda.synchronize()
            epochs.append(time.perf_counter() - t0)
        with torch.no_grad():
            pred = model(xt.float() / 255 - 0.5).argmax(1).cpu().numpy()
        runs.append({"seed": seed, "epoch_seconds": epochs,
                     "test_accuracy": float((pred == d["y_test"]).mean())})
    return {"version": torch.__version__, "runs": runs}


def part_levers(names: list[str]) -> dict:
    from bench.levers import VARIANTS, measure

    return {name: measure(VARIANTS[name][0]) for name in names}


def part_recipes(names: list[str], unroll: int) -> dict:
    import digitnet

    settings = engine_settings({"unroll": unroll})
    ds = digitnet.load_dataset()
    out = {}
    for name in names:
        t0 = time.perf_counter()
        model = digitnet.fit(recipe=name, dataset=ds, verbose=False, settings=settings)
        out[name] = {"train_seconds": time.perf_counter() - t0,
                     "epoch_seconds": [h["seconds"] for h in model.history],
                     "test_accuracy": float((model.predict(ds.x_test) == ds.y_test).mean())}
    return out


def part_cli() -> dict:
    """`digitnet train` as a user runs it (shipped settings), twice, in a fresh digitnet home
    (so the first run compiles and the second finds the persistent compilation cache)."""
    home = tempfile.mkdtemp(prefix="digitnet-home-")
    cmd = ["-m", "digitnet"]
    out = {}
    for name in ("cold", "warm"):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, *cmd, "train", "--out", f"{home}/run-{name}"],
                           env={**os.environ, "DIGITNET_HOME": home}, capture_output=True,
                           text=True, timeout=300)
        out[name] = {"seconds": time.perf_counter() - t0, "returncode": r.returncode,
                     "tail": (r.stdout + r.stderr)[-1500:]}
    return out


PARTS = {"env": part_env, "engine": part_engine, "floor": part_floor,
         "fused-check": part_fused_check, "fused-tiles": part_fused_tiles,
         "torch-floor": part_torch_floor, "torch-resident": part_torch_resident,
         "levers": part_levers, "recipes": part_recipes, "cli": part_cli}


# --- the orchestrator ------------------------------------------------------------------------

def run_part(name: str, args: list, deadline: float, env: dict | None = None,
             python: str = sys.executable) -> dict:
    left = deadline - time.monotonic()
    if left < 5:
        return {"skipped": "out of budget"}
    t0 = time.monotonic()
    try:
        r = subprocess.run([python, "-m", "bench.gpu", "--part", name, json.dumps(args)],
                           env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", **(env or {})},
                           cwd=ROOT, capture_output=True, text=True, timeout=left)
    except subprocess.TimeoutExpired:
        return {"skipped": f"killed at the budget after {time.monotonic() - t0:.0f} s"}
    took = time.monotonic() - t0
    if r.returncode:
        return {"error": (r.stdout + r.stderr)[-3000:], "seconds": took}
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["_seconds"] = took
    return result


def trainer_line(label: str, runs: list[dict]) -> str:
    st = [steady(r["epoch_seconds"]) for r in runs]
    return (f"{label}: steady epoch median {statistics.median(st):.4f} s (min {min(st):.4f},"
            f" max {max(st):.4f}); epoch 1 {runs[0]['epoch_seconds'][0]:.2f} s;"
            f" acc {[round(r['test_accuracy'], 4) for r in runs]}")


def summarize(res: dict) -> list[str]:
    """The console summary of a run (the reply of the device tool shows the end of it)."""
    env = res.get("env", {})
    lines = [f"device: {env.get('device_kind')}  jax {env.get('jax')}  torch {env.get('torch')}"]
    for key in ("engine", "engine-xla-step", "engine-highest"):
        for u, runs in res.get(key, {}).get("runs", {}).items():
            lines.append(trainer_line(f"{key} unroll {u}", runs) +
                         f"; predict {min(runs[0]['predict_seconds']) * 1e3:.2f} ms;"
                         f" {runs[0]['first_five']}")
    lines.append(f"best fused settings: {res.get('best_fused')}")
    for shape, r in res.get("fused-check", {}).items():
        if isinstance(r, dict):
            lines.append(f"fused-check {shape}: {r.get('error') or r}"[:1500])
    for v, r in res.get("fused-tiles", {}).items():
        if isinstance(r, dict):
            lines.append(f"fused-tiles {v}: {r.get('epoch_seconds') or r.get('error')}"[:600])
    for name, r in res.get("flags", {}).items():
        for u, runs in r.get("runs", {}).items():
            lines.append(trainer_line(f"flags {name} unroll {u}", runs))
    for key in ("torch", "torch-resident"):
        if res.get(key, {}).get("runs"):
            lines.append(trainer_line(f"PyTorch {key}", res[key]["runs"]))
    for u, t in res.get("floor", {}).get("xla_scan", {}).items():
        lines.append(f"floor XLA scan unroll {u}: {statistics.median(t):.4f} s")
    for prec, r in res.get("torch-floor", {}).items():
        if isinstance(r, dict):
            lines.append(f"floor cuBLAS {prec}: " + ", ".join(
                f"{k} {statistics.median(v):.4f} s" for k, v in r.items()))
    for name, r in res.get("levers", {}).items():
        if isinstance(r, dict) and "epoch_seconds" in r:
            lines.append(f"lever {name}: {statistics.median(r['epoch_seconds']):.4f} s")
    for name, r in res.get("recipes", {}).items():
        if isinstance(r, dict) and "test_accuracy" in r:
            lines.append(f"recipe {name}: {r['train_seconds']:.1f} s, acc {r['test_accuracy']:.4f},"
                         f" steady epoch {steady(r['epoch_seconds']):.4f} s")
    for name, r in res.get("cli", {}).items():
        if isinstance(r, dict) and "seconds" in r:
            lines.append(f"cli {name}: {r['seconds']:.2f} s rc {r['returncode']}")
    parts = {**res, **{f"flags {k}": v for k, v in res.get("flags", {}).items()}}
    for name, r in parts.items():
        if isinstance(r, dict) and ("error" in r or "skipped" in r):
            lines.append(f"PART {name}: {str(r.get('error') or r.get('skipped'))[-800:]}")
    return lines


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--part":
        print(json.dumps(PARTS[argv[1]](*json.loads(argv[2]))))
        return
    out_dir = Path(argv[0] if argv else "bench/results")
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else 600.0
    explore = "--explore" in argv
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # digitnet need not be installed
    from bench.peer_runner import run_peer, write_data
    from digitnet.engine import DEFAULT_UNROLL

    shipped = DEFAULT_UNROLL["gpu"]
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                 "budget_seconds": budget, "shipped_unroll": shipped}

    def save() -> None:
        (out_dir / "gpu.json").write_text(json.dumps(res, indent=1))

    res["env"] = run_part("env", [], deadline)
    save()
    # digitnet.fused's variants first: the fastest is what the rest measures as digitnet.
    res["fused-tiles"] = run_part("fused-tiles", [FUSED_TILES], deadline)
    save()
    timed = {v: statistics.median(t["epoch_seconds"][1:]) for v, t in res["fused-tiles"].items()
             if isinstance(t, dict) and "epoch_seconds" in t}
    best_fused = json.loads(min(timed, key=timed.get)) if timed else {}
    res["best_fused"] = best_fused
    unrolls = list(UNROLLS) if explore else [best_fused.get("unroll", shipped)]
    dump = Path(tempfile.mkdtemp(prefix="xla-dump-"))
    res["engine"] = run_part("engine", [unrolls, list(SEEDS), "", best_fused], deadline, env={
        "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*train_chunk.*"}
        if explore else None)
    save()
    for f in sorted(dump.glob("*after_optimizations.txt"))[:5]:
        (out_dir / f"hlo-{f.name[-60:]}").write_text(f.read_text())
    best = best_fused.get("unroll", shipped)
    if explore:
        best = min((statistics.median(steady(r["epoch_seconds"]) for r in runs), int(u))
                   for u, runs in res["engine"].get("runs", {str(shipped): [{"epoch_seconds": [0]}]})
                   .items())[1]
    res["best_unroll"] = best
    res["engine-xla-step"] = run_part("engine", [[best], list(SEEDS)], deadline,
                                      env={"DIGITNET_FUSED_STEP": "0"})
    save()
    res["fused-check"] = run_part("fused-check", [FUSED_SHAPES, 40, best_fused], deadline)
    save()
    res["cli"] = run_part("cli", [], deadline)
    save()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "mnist.npz")
        res["torch"] = run_peer("torch", data, len(SEEDS), python=sys.executable, device="cuda",
                                budget=max(deadline - time.monotonic(), 1), log=lambda m: None)
        save()
        res["torch-resident"] = run_part("torch-resident", [str(data), list(SEEDS)], deadline)
    save()
    res["floor"] = run_part("floor", [], deadline)
    res["torch-floor"] = run_part("torch-floor", [], deadline)
    save()
    res["engine-highest"] = run_part("engine", [[best], [1], "highest", best_fused], deadline)
    save()
    res["recipes"] = run_part("recipes", [["fast", "best"], best], deadline)
    save()
    flags = {"autotune-level-0": "--xla_gpu_autotune_level=0"}
    if explore:
        res["levers"] = run_part("levers", [["base", "one-chunk-per-epoch", "unroll-1",
                                             "unroll-4"]], deadline)
        save()
        flags |= {"no-command-buffers": "--xla_gpu_enable_command_buffer=",
                  "while-in-command-buffers": "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,"
                                              "CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"}
    res["flags"] = {}
    for name, value in flags.items():
        res["flags"][name] = run_part("engine", [sorted({1, best}), [1], "", best_fused], deadline,
                                      env={"XLA_FLAGS": value})
        save()
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    save()
    print("\n".join(summarize(res)))


if __name__ == "__main__":
    main(sys.argv[1:])
