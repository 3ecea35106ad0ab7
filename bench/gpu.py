"""#4's GPU measurements, in one script sized for one short lease of a GPU machine.

`python -m bench.gpu OUTDIR [--budget SECONDS] [--explore]` runs the parts below one after another, each
in its own process (XLA reads its flags once per process; PyTorch and JAX never share one),
writes OUTDIR/gpu.json and prints a summary. A part that fails or runs out of budget is
recorded as such; the rest still run. `python -m bench` puts gpu.json's numbers into
docs/performance.md when bench/results/gpu.json exists.

Parts, most important first:
- env: the device and the versions.
- engine: digitnet.fit on the tutorial's config (784-64-64-10, Adam 1e-3, batch 32, 5 epochs),
  seeds 1–3, with the shipped loop unrolling (digitnet.train.SCAN_UNROLL) and with none
  (--explore: 1, 5, 25 and 75, and the training chunk's optimised HLO is kept for reading);
  test accuracy and predict time too.
- torch: PyTorch eager on the same GPU — the peer script of the CPU bench (DataLoader, each
  batch moved to the GPU), seeds 1–3; torch-resident: eager PyTorch written for speed.
- floor: the step's eight matrix products for 1875 steps: through XLA (lax.scan, as
  bench/floor.py does on the CPU) and through cuBLAS from PyTorch, launched one by one and
  replayed from a CUDA graph (the fewest launch gaps a GPU allows).
- recipes: `fast` and `best` trained on the GPU.
- cli: `digitnet train` end to end, cold (empty compilation cache), then warm.
- flags: the engine under other XLA GPU flags (autotuning off; --explore: command buffers),
  one process per setting.
- levers (--explore): bench/levers.py's step variants on the GPU, in one process.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNROLLS = (1, 5, 25, 75)  # the tutorial's epoch compiles as 25 chunks of 75 steps
SEEDS = (1, 2, 3)


def steady(epoch_seconds: list[float]) -> float:
    """A run's steady epoch: the median of its epochs after the first (which compiles)."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


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


def part_engine(unrolls: list[int], seeds: list[int], precision: str = "") -> dict:
    """digitnet.fit, the tutorial's config without validation, per unrolling and seed."""
    import jax

    import digitnet
    from digitnet import train
    from digitnet.train import TrainConfig

    backend = jax.default_backend()
    ds = digitnet.load_dataset()
    out: dict = {"backend": backend, "precision": precision or "default", "runs": {}}
    for u in unrolls:
        train.SCAN_UNROLL[backend] = u
        train._cached_engine.cache_clear()  # a fresh engine: traced and compiled with u
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            with jax.default_matmul_precision(precision or None):
                model = digitnet.fit(config=TrainConfig(validation="none", seed=seed),
                                     dataset=ds, verbose=False)
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

    return {name: measure(VARIANTS[name][0]) if name in VARIANTS else
            measure({"unroll": int(name.split("-")[-1])}) for name in names}


def part_recipes(names: list[str], unroll: int) -> dict:
    import jax

    import digitnet
    from digitnet import train

    train.SCAN_UNROLL[jax.default_backend()] = unroll
    ds = digitnet.load_dataset()
    out = {}
    for name in names:
        t0 = time.perf_counter()
        model = digitnet.fit(recipe=name, dataset=ds, verbose=False)
        out[name] = {"train_seconds": time.perf_counter() - t0,
                     "epoch_seconds": [h["seconds"] for h in model.history],
                     "test_accuracy": float((model.predict(ds.x_test) == ds.y_test).mean())}
    return out


def part_cli(unroll: int) -> dict:
    """`digitnet train` as a user runs it, twice, in a fresh digitnet home (so the first run
    compiles and the second finds the persistent compilation cache)."""
    from digitnet.train import SCAN_UNROLL

    home = tempfile.mkdtemp(prefix="digitnet-home-")
    # Only an unrolling other than the shipped one needs digitnet.train patched before main().
    cmd = ["-m", "digitnet"] if unroll == SCAN_UNROLL.get("gpu") else [
        "-c", "import sys; from digitnet import train; "
        f"train.SCAN_UNROLL['gpu'] = {unroll}; "
        "from digitnet.cli import main; sys.exit(main(sys.argv[1:]))"]
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


def run_peer(data: Path, seeds, deadline: float, device: str = "cuda") -> dict:
    runs = []
    for seed in seeds:
        left = deadline - time.monotonic()
        if left < 5:
            break
        try:
            r = subprocess.run([sys.executable, str(ROOT / "bench/peers/torch_mlp.py"), str(data),
                                "5", "32", str(seed), device],
                               env={**os.environ, "PYTHONPATH": str(ROOT / "bench/peers")},
                               capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            break
        if r.returncode:
            return {"error": (r.stdout + r.stderr)[-3000:], "runs": runs}
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"runs": runs}


def summarize(res: dict) -> list[str]:
    lines = [f"device: {res.get('env', {}).get('device_kind')}  "
             f"jax {res.get('env', {}).get('jax')}  torch {res.get('env', {}).get('torch')}"]
    eng = res.get("engine", {}).get("runs", {})
    for u, runs in eng.items():
        st = [steady(r["epoch_seconds"]) for r in runs]
        lines.append(f"digitnet unroll {u:>3}: steady epoch median {statistics.median(st):.4f} s "
                     f"(min {min(st):.4f}, max {max(st):.4f}); epoch 1 {runs[0]['epoch_seconds'][0]:.2f} s; "
                     f"acc {[round(r['test_accuracy'], 4) for r in runs]}; "
                     f"predict {min(runs[0]['predict_seconds']) * 1e3:.2f} ms; {runs[0]['first_five']}")
    for key in ("engine-highest",):
        for u, runs in res.get(key, {}).get("runs", {}).items():
            st = [steady(r["epoch_seconds"]) for r in runs]
            lines.append(f"{key} unroll {u}: {statistics.median(st):.4f} s; acc "
                         f"{[round(r['test_accuracy'], 4) for r in runs]}")
    for name, r in res.get("flags", {}).items():
        for u, runs in r.get("runs", {}).items():
            st = [steady(x["epoch_seconds"]) for x in runs]
            lines.append(f"flags {name} unroll {u}: {statistics.median(st):.4f} s; "
                         f"epoch 1 {runs[0]['epoch_seconds'][0]:.2f} s")
        if "error" in r or "skipped" in r:
            lines.append(f"flags {name}: {str(r.get('error') or r.get('skipped'))[-300:]}")
    peer = res.get("torch", {}).get("runs", [])
    if peer:
        st = [steady(r["epoch_seconds"]) for r in peer]
        lines.append(f"PyTorch eager cuda: steady epoch median {statistics.median(st):.4f} s "
                     f"(min {min(st):.4f}, max {max(st):.4f}); "
                     f"acc {[round(r['test_accuracy'], 4) for r in peer]}")
    fast = res.get("torch-resident", {}).get("runs", [])
    if fast:
        st = [steady(r["epoch_seconds"]) for r in fast]
        lines.append(f"PyTorch eager, data on the GPU: steady epoch median {statistics.median(st):.4f} s "
                     f"(min {min(st):.4f}, max {max(st):.4f}); "
                     f"acc {[round(r['test_accuracy'], 4) for r in fast]}")
    fl = res.get("floor", {}).get("xla_scan", {})
    for u, t in fl.items():
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
            lines.append(f"recipe {name}: {r['train_seconds']:.1f} s, acc {r['test_accuracy']:.4f}, "
                         f"steady epoch {steady(r['epoch_seconds']):.4f} s")
    for name, r in res.get("cli", {}).items():
        if isinstance(r, dict) and "seconds" in r:
            lines.append(f"cli {name}: {r['seconds']:.2f} s rc {r['returncode']}")
    for name, r in res.items():
        if isinstance(r, dict) and ("error" in r or "skipped" in r):
            lines.append(f"PART {name}: {str(r.get('error') or r.get('skipped'))[-800:]}")
    return lines


# --- docs/performance.md's GPU section (python -m bench calls this) -------------------------

RESULTS = ROOT / "bench" / "results"
TARGET_EPOCH = 0.03  # #4: the tutorial's config on an H100, seconds per epoch


def load_results(results: Path = RESULTS) -> tuple[dict | None, dict | None]:
    """(the last plain run, the last --explore run), from bench/results, or None."""
    def read(name: str) -> dict | None:
        path = results / name
        return json.loads(path.read_text()) if path.exists() else None

    return read("gpu.json"), read("gpu-explore.json")


def step_kernels(hlo: str) -> dict[str, int]:
    """Kernels per training step in XLA's optimised HLO of the training chunk (one step per
    loop iteration): fusions and library calls in the while loop's body, split into GEMMs
    (Triton GEMM fusions, kind=kCustom, which include split-K reductions) and the rest."""
    body = re.search(r"body=%([\w.\-]+)", hlo).group(1)
    block = hlo.split(f"%{body} ", 1)[1].split("\n}", 1)[0]
    calls = [ln for ln in block.splitlines() if " fusion(" in ln or " custom-call(" in ln]
    gemms = sum("kind=kCustom" in ln or "custom-call(" in ln for ln in calls)
    return {"kernels": len(calls), "gemm": gemms, "other": len(calls) - gemms}


def trainer(runs: list[dict]) -> dict:
    from bench.report import summary

    return {"epoch": summary([steady(r["epoch_seconds"]) for r in runs]),
            "acc": summary([r["test_accuracy"] for r in runs])}


def gpu_section(run: dict | None, explore: dict | None) -> tuple[list[str], dict | None]:
    """Markdown lines for docs/performance.md and digitnet's shipped steady epoch (a summary),
    or ([...no GPU...], None) when no GPU run is saved."""
    from bench.report import fmt, summary

    if not run:
        return (["- GPU: no `python -m bench.gpu` run is saved in bench/results, so the GPU"
                 " target (≤ 0.03 s/epoch on an H100) is not measured."], None)
    env, shipped = run["env"], str(run["shipped_unroll"])
    ours = trainer(run["engine"]["runs"][shipped])
    one = trainer(run["engine"]["runs"]["1"])
    highest = trainer(run["engine-highest"]["runs"][str(run["best_unroll"])])
    peer, resident = trainer(run["torch"]["runs"]), trainer(run["torch-resident"]["runs"])
    xla = {u: summary(v) for u, v in run["floor"]["xla_scan"].items()}
    cublas = {p: {k: summary(v) for k, v in r.items()} for p, r in run["torch-floor"].items()
              if isinstance(r, dict)}
    x = lambda row: f"{row['epoch']['median'] / ours['epoch']['median']:.1f}×"  # noqa: E731
    pct = lambda row: fmt(row["acc"], 100, 2, "%")  # noqa: E731
    lines = [
        f"## GPU: {env['device_kind']}", "",
        f"Written from bench/results/gpu.json: `python -m bench.gpu OUT` on a lent GPU machine"
        f" ({env['nvidia_smi']}; 16 CPU cores), run started {run['started']}; Python"
        f" {env['python']}, JAX {env['jax']} (the machine's own CUDA build), PyTorch"
        f" {env['torch']}. n = {len(run['engine']['runs'][shipped])} runs (seeds 1–3) of each"
        " trainer; cells show the median and (min–max) of the runs' steady epochs (epochs 2–5)."
        " JAX's default matmul precision lets this GPU use TF32 for float32 products (the"
        " \"highest\" row is full float32); PyTorch's default does not.", "",
        "| tutorial config, 5 epochs at batch 32 | steady s/epoch | test acc "
        "| digitnet is × faster |",
        "|---|---|---|---|",
        f"| **digitnet** (as shipped: {shipped} steps per loop iteration) "
        f"| **{fmt(ours['epoch'], digits=4)}** | {pct(ours)} | |",
        f"| digitnet, 1 step per loop iteration | {fmt(one['epoch'], digits=4)} | {pct(one)} "
        f"| {x(one)} |",
        f"| digitnet, float32 products at \"highest\" precision (no TF32; n=1) "
        f"| {fmt(highest['epoch'], digits=4)} | {pct(highest)} | {x(highest)} |",
        f"| PyTorch eager, the peer script (bench/peers/torch_mlp.py: DataLoader, each batch"
        f" moved to the GPU) | {fmt(peer['epoch'])} | {pct(peer)} | **{x(peer)}** |",
        f"| PyTorch eager written for speed (data on the GPU, randperm batches, fused Adam)"
        f" | {fmt(resident['epoch'])} | {pct(resident)} | {x(resident)} |",
        "| floor: the eight products of each step, alone, XLA `lax.scan` (1 / 25 steps per "
        f"iteration) | {fmt(xla['1'], digits=4)} / {fmt(xla['25'], digits=4)} | | |",
        "| the same eight through cuBLAS (PyTorch), replayed from a CUDA graph (fp32 / tf32) "
        f"| {fmt(cublas['fp32']['cuda_graph'], digits=4)} / "
        f"{fmt(cublas['tf32']['cuda_graph'], digits=4)} | | |",
        "| the same, launched one by one from Python (fp32 / tf32) "
        f"| {fmt(cublas['fp32']['eager'])} / {fmt(cublas['tf32']['eager'])} | | |",
        "",
    ]
    pred = summary([min(r["predict_seconds"]) for r in run["engine"]["runs"][shipped]])
    rec, cli = run.get("recipes", {}), run.get("cli", {})
    fives = {tuple(r["first_five"]) for r in run["engine"]["runs"][shipped]}
    lines += [f"- predict on the 10k test images after warm-up: {fmt(pred, 1000, 2, ' ms')};"
              " first five test predictions " + (f"{list(fives.pop())} in every run" if len(fives) == 1
                                                  else f"per run: {sorted(fives)}") + "."]
    if "fast" in rec:
        lines.append(
            "- recipes on the GPU (one run each, compilation included): " + "; ".join(
                f"`{k}` {v['test_accuracy'] * 100:.2f}% in {v['train_seconds']:.1f} s"
                f" (first epoch, which compiles, {v['epoch_seconds'][0]:.1f} s)"
                for k, v in rec.items() if isinstance(v, dict) and "train_seconds" in v) + ".")
    profile = RESULTS / "gpu-compile-profile.txt"
    if profile.exists():
        default, no_autotune = (compile_profile(part) for part in
                                profile.read_text().split("== XLA_FLAGS=")[1:3])
        lines.append(
            "- Cold start: the recipes' first epochs are compilation, mostly of the training loop"
            " (bench/results/gpu-compile-profile.txt, from bench/gpu_compile_profile.py):"
            f" `fast`'s loop of five steps per iteration compiled in {default['fast'][0]:.1f} s"
            f" and the same step alone (its epoch's last, partial batch) in"
            f" {default['fast'][1]:.1f} s; `best`'s in {default['best'][0]:.1f} s and"
            f" {default['best'][1]:.1f} s. Without GEMM autotuning they compiled only a little"
            f" faster ({no_autotune['fast'][0]:.1f} s, {no_autotune['best'][0]:.1f} s) and"
            f" `best`'s epochs took {no_autotune['best_epoch']:.3f} s instead of"
            f" {default['best_epoch']:.3f} s. So digitnet now runs a step with random draws"
            " (dropout, augmentation: `fast`, `best` and `ceiling` have them) one per loop"
            " iteration on a GPU."
            " The recipe timings above were taken before that change; they are not re-measured"
            " (this session's GPU time was spent).")
    if "cold" in cli:
        lines.append(f"- `digitnet train` end to end on this machine: {cli['cold']['seconds']:.1f} s"
                     f" with an empty cache, {cli['warm']['seconds']:.1f} s with the persistent"
                     " compilation cache (CUDA's start-up and the GPU's compilation and GEMM"
                     " autotuning are most of the difference from the CPU machine's figures).")
    auto = run.get("flags", {}).get("autotune-level-0", {}).get("runs", {}).get(shipped)
    if auto:
        lines.append(f"- XLA's GEMM autotuning off (`--xla_gpu_autotune_level=0`): first epoch"
                     f" {auto[0]['epoch_seconds'][0]:.2f} s against"
                     f" {run['engine']['runs'][shipped][0]['epoch_seconds'][0]:.2f} s, steady"
                     f" epoch {steady(auto[0]['epoch_seconds']):.4f} s: left at XLA's default.")
    if explore:
        lines += ["", "Choosing the loop unrolling (bench/results/gpu-explore.json, `python -m"
                  f" bench.gpu OUT --explore`, an earlier lease of the same kind, started"
                  f" {explore['started']}):", "",
                  "| setting | steady s/epoch | first epoch (compiles) s |", "|---|---|---|"]
        for u, runs in explore["engine"]["runs"].items():
            lines.append(f"| {u} step(s) per loop iteration | {fmt(trainer(runs)['epoch'], digits=4)}"
                         f" | {runs[0]['epoch_seconds'][0]:.1f} |")
        for name, r in explore.get("flags", {}).items():
            for u, runs in r.get("runs", {}).items():
                lines.append(f"| XLA flags `{name}`, {u} step(s) per iteration "
                             f"| {fmt(trainer(runs)['epoch'], digits=4)} "
                             f"| {runs[0]['epoch_seconds'][0]:.1f} |")
        lev = {k: v for k, v in explore.get("levers", {}).items() if isinstance(v, dict)}
        if lev:
            lines += ["", "bench/levers.py's step variants on the GPU (one process, 3 timed"
                      " epochs each; their loop reads the loss after every chunk): " + ", ".join(
                          f"`{k}` {statistics.median(v['epoch_seconds']):.4f} s"
                          for k, v in lev.items()) + "."]
    hlo = RESULTS / "gpu-train-chunk-hlo.txt"
    if hlo.exists():
        k = step_kernels(hlo.read_text())
        per_step = ours["epoch"]["median"] / 1875 * 1e6
        lines += ["", f"Where the time goes: a step takes {per_step:.1f} µs. XLA's optimised HLO"
                  " of the training chunk (bench/results/gpu-train-chunk-hlo.txt, one step per"
                  f" iteration) runs {k['kernels']} kernels per step: {k['gemm']} for the eight"
                  f" products (two are split-K, with a reduction kernel each) and {k['other']}"
                  " for the rest (gathering and normalising the batch, bias + ReLU, softmax"
                  " cross-entropy and the scatter of its gradient, bias-gradient reductions,"
                  " Adam's updates, counters). XLA already launches them from CUDA graphs"
                  " (command buffers; without them an epoch takes over four times as long, see"
                  " the table above), so each kernel costs about"
                  f" {per_step / k['kernels']:.1f} µs."]
    lines.append("")
    return lines, ours["epoch"]


def compile_profile(text: str) -> dict:
    """Per recipe in one section of gpu-compile-profile.txt: the compile seconds of its
    training-chunk programs, and its steady epoch ('<recipe>_epoch')."""
    out: dict = {}
    chunks: list[float] = []
    for line in text.splitlines():
        if line.startswith("compiled jit(_train_chunk)"):
            chunks.append(float(line.split()[-2]))
        elif line.startswith("recipe "):
            name = line.split()[1].rstrip(":")
            epochs = json.loads(line.split("epochs ", 1)[1])
            out[name], out[f"{name}_epoch"], chunks = chunks, steady(epochs), []
    return out


def gpu_target(run: dict | None, epoch: dict | None) -> tuple[str, bool | None, str]:
    """(measured, verdict, note) for the targets table."""
    if epoch is None:
        return "no GPU run saved", None, ""
    from bench.report import summary

    xla = summary(run["floor"]["xla_scan"]["25"])
    measured = (f"{epoch['median']:.4f} s/epoch on an {run['env']['device_kind']}"
                f" ({epoch['median'] / xla['median']:.2f}× XLA's eight-product floor)")
    hlo = RESULTS / "gpu-train-chunk-hlo.txt"
    rest = (f"{step_kernels(hlo.read_text())['other']} further kernels" if hlo.exists()
            else "further kernels")
    spare = (TARGET_EPOCH - xla["median"]) / 1875 * 1e6
    note = (f"{TARGET_EPOCH} s/epoch is {TARGET_EPOCH / xla['median']:.2f}× the time of the step's"
            f" eight matrix products alone in an XLA loop ({xla['median']:.4f} s/epoch): it leaves"
            f" {spare:.1f} µs a step for everything else, which XLA runs as {rest}"
            " (see the GPU section). Tried: steps per loop iteration (1, 5, 25, 75; 5"
            " kept), XLA command buffers on, off and with the loop itself inside the graph, GEMM"
            " autotuning off, TF32 against full float32, the levers (one-hot loss, flat Adam, one"
            " chunk per epoch). What would reach it: a hand-written kernel that runs the whole"
            " step (forward, backward and Adam) in one or two launches, e.g. with Pallas; not"
            " attempted. digitnet is still the fastest trainer measured on the GPU by a wide"
            " margin (see the GPU section).")
    return measured, epoch["median"] <= TARGET_EPOCH, note


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--part":
        print(json.dumps(PARTS[argv[1]](*json.loads(argv[2]))))
        return
    out_dir = Path(argv[0] if argv else "bench/results")
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else 600.0
    explore = "--explore" in argv
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # digitnet need not be installed
    from bench.peer_runner import write_data
    from digitnet.train import SCAN_UNROLL

    shipped = SCAN_UNROLL.get("gpu", 1)
    unrolls = list(UNROLLS) if explore else sorted({shipped, 1})
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                 "budget_seconds": budget, "shipped_unroll": shipped}

    def save() -> None:
        (out_dir / "gpu.json").write_text(json.dumps(res, indent=1))

    res["env"] = run_part("env", [], deadline)
    save()
    dump = Path(tempfile.mkdtemp(prefix="xla-dump-"))
    res["engine"] = run_part("engine", [unrolls, list(SEEDS)], deadline, env={
        "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*train_chunk.*"}
        if explore else None)
    save()
    for f in sorted(dump.glob("*after_optimizations.txt"))[:5]:
        (out_dir / f"hlo-{f.name[-60:]}").write_text(f.read_text())
    best = shipped
    if explore:
        best = min((statistics.median(steady(r["epoch_seconds"]) for r in runs), int(u))
                   for u, runs in res["engine"].get("runs", {str(shipped): [{"epoch_seconds": [0]}]})
                   .items())[1]
    res["best_unroll"] = best
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "mnist.npz")
        res["torch"] = run_peer(data, SEEDS, deadline)
        save()
        res["torch-resident"] = run_part("torch-resident", [str(data), list(SEEDS)], deadline)
    save()
    res["floor"] = run_part("floor", [], deadline)
    res["torch-floor"] = run_part("torch-floor", [], deadline)
    save()
    res["engine-highest"] = run_part("engine", [[best], [1], "highest"], deadline)
    save()
    res["recipes"] = run_part("recipes", [["fast", "best"], best], deadline)
    save()
    res["cli"] = run_part("cli", [best], deadline)
    save()
    flags = {"autotune-level-0": "--xla_gpu_autotune_level=0"}
    if explore:
        res["levers"] = run_part("levers", [["base", "flat-adam", "onehot-loss",
                                             "one-chunk-per-epoch", "scan-unroll-4"]], deadline)
        save()
        flags |= {"no-command-buffers": "--xla_gpu_enable_command_buffer=",
                  "while-in-command-buffers": "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,"
                                              "CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"}
    res["flags"] = {}
    for name, value in flags.items():
        res["flags"][name] = run_part("engine", [sorted({1, best}), [1]], deadline,
                                      env={"XLA_FLAGS": value})
        save()
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    save()
    print("\n".join(summarize(res)))


if __name__ == "__main__":
    main(sys.argv[1:])
