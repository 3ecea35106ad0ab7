"""docs/performance.md's GPU section, from the GPU runs saved in bench/results: gpu.json and
gpu-explore.json (written by `python -m bench.gpu` on a lent GPU machine), the training
chunk's optimised HLO and the cold-start compile profile (bench/gpu_compile_profile.py)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from bench.report import fmt, steady, summary, trainer_row

RESULTS = Path(__file__).resolve().parent / "results"
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


def gpu_section(run: dict | None, explore: dict | None) -> tuple[list[str], dict | None]:
    """Markdown lines for docs/performance.md and digitnet's shipped steady epoch (a summary),
    or ([...no GPU...], None) when no GPU run is saved."""
    if not run:
        return (["- GPU: no `python -m bench.gpu` run is saved in bench/results, so the GPU"
                 " target (≤ 0.03 s/epoch on an H100) is not measured."], None)
    env, shipped = run["env"], str(run["shipped_unroll"])
    ours = trainer_row(run["engine"]["runs"][shipped])
    one = trainer_row(run["engine"]["runs"]["1"])
    highest = trainer_row(run["engine-highest"]["runs"][str(run["best_unroll"])])
    peer, resident = trainer_row(run["torch"]["runs"]), trainer_row(run["torch-resident"]["runs"])
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
            lines.append(f"| {u} step(s) per loop iteration | {fmt(trainer_row(runs)['epoch'], digits=4)}"
                         f" | {runs[0]['epoch_seconds'][0]:.1f} |")
        for name, r in explore.get("flags", {}).items():
            for u, runs in r.get("runs", {}).items():
                lines.append(f"| XLA flags `{name}`, {u} step(s) per iteration "
                             f"| {fmt(trainer_row(runs)['epoch'], digits=4)} "
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
