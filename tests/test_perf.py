"""Performance plumbing: lazy start-up, XLA settings, the compile and data caches, and the
bench's own code paths (speed itself is measured by `python -m bench`, never asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def py(code: str, **env: str) -> subprocess.CompletedProcess:
    """Python code in a fresh process with this checkout's src and bench importable."""
    full = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", **env}
    full.pop("XLA_FLAGS", None) if "XLA_FLAGS" not in env else None
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=120, check=True)


def test_cli_and_help_do_not_import_jax():
    out = py("import sys, digitnet.cli\n"
             "try:\n    digitnet.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('jax', 'numpy', 'optax') if m in sys.modules))").stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_cli_sets_single_threaded_xla_before_jax_starts(tmp_path):
    code = ("import os, sys\nfrom digitnet.runtime import set_cpu_threading\n"
            "print(set_cpu_threading(), os.environ.get('XLA_FLAGS'))")
    home = str(tmp_path)  # no `digitnet calibrate` choice: the defaults
    sequential = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
    assert py(code, DIGITNET_HOME=home).stdout.split() == [
        "True", "--xla_cpu_multi_thread_eigen=false", sequential]
    # the user's own value of a flag wins, other flags are kept
    mine = "--xla_cpu_multi_thread_eigen=true --xla_force_host_platform_device_count=2"
    assert py(code, XLA_FLAGS=mine, DIGITNET_HOME=home).stdout.strip() == f"True {mine} {sequential}"
    assert py(code, DIGITNET_XLA_THREADS="auto").stdout.split() == ["False", "None"]
    # once JAX is imported its flags are read already: nothing is set (a stand-in module
    # marks it imported here, so that the test need not pay for importing JAX)
    late = "import sys\nsys.modules['jax'] = sys\n" + code
    assert py(late).stdout.split() == ["False", "None"]


def test_compile_cache_lives_in_digitnet_home_and_is_reused(tmp_path):
    code = ("import jax, jax.numpy as jnp\nfrom digitnet.runtime import enable_compile_cache\n"
            "p = enable_compile_cache()\n"
            "jax.jit(lambda x: x * 2 + 1)(jnp.arange(3.0)).block_until_ready()\n"
            "print(p, jax.config.jax_compilation_cache_dir)")
    out = py(code, DIGITNET_HOME=str(tmp_path)).stdout.split()
    assert out == [str(tmp_path / "jax-cache")] * 2
    entries = sorted(os.listdir(tmp_path / "jax-cache"))
    assert entries, "the compiled program was not written to the cache"
    py(code, DIGITNET_HOME=str(tmp_path))  # a second process finds it and adds nothing
    assert sorted(os.listdir(tmp_path / "jax-cache")) == entries



@pytest.mark.slow
def test_keras_front_end_uses_the_compile_cache(tmp_path):
    # A notebook that only uses digitnet.keras keeps its compiled programs as digitnet.fit does:
    # predict alone (a loaded model, no compile()) writes them, a second process adds nothing.
    code = ("import numpy as np\nfrom digitnet import keras\n"
            "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation='softmax')])\n"
            "m.predict(np.ones((2, 4), np.float32), verbose=0)\n")
    py(code, DIGITNET_HOME=str(tmp_path))
    entries = sorted(os.listdir(tmp_path / "jax-cache"))
    assert entries, "digitnet.keras' predict compiled nothing into the cache"
    py(code, DIGITNET_HOME=str(tmp_path))
    assert sorted(os.listdir(tmp_path / "jax-cache")) == entries


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="XLA's pool has one thread anyway")
@pytest.mark.slow
def test_sweep_workers_give_xla_one_thread():
    # A sweep's worker processes call one_xla_thread before their first computation; XLA's CPU
    # client then runs a pool of one thread (named XLAEigen) instead of one per core.
    code = ("import os, sys\n{}import jax\njax.numpy.ones(3).sum().block_until_ready()\n"
            "names = [open(f'/proc/self/task/{{t}}/comm').read() for t in os.listdir('/proc/self/task')]\n"
            "print(sum('XLAEigen' in n for n in names))")
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    default = subprocess.run([sys.executable, "-c", code.format("")], env=env, check=True,
                             capture_output=True, text=True, timeout=120)
    one = subprocess.run([sys.executable, "-c", code.format(
        "from digitnet.runtime import one_xla_thread\none_xla_thread()\n")], env=env,
        check=True, capture_output=True, text=True, timeout=120)
    assert int(default.stdout) >= 2 and int(one.stdout) == 1
    # an NPROC the user chose is kept
    kept = py("import os\nfrom digitnet.runtime import one_xla_thread\none_xla_thread()\n"
              "print(os.environ['NPROC'])", NPROC="2")
    assert kept.stdout.strip() == "2"


def test_compile_cache_opt_out(monkeypatch, tmp_path):
    from digitnet.runtime import compile_cache_dir, enable_compile_cache

    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path))
    assert compile_cache_dir() == tmp_path / "jax-cache"
    monkeypatch.setenv("DIGITNET_COMPILE_CACHE", "0")
    assert compile_cache_dir() is None and enable_compile_cache() is None


def test_floor_and_peer_runner(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.floor import numpy_epoch_seconds
    from bench.peer_runner import run_peer
    from bench.proc import run

    times = numpy_epoch_seconds(repeats=2, steps=20)
    assert len(times) == 2 and all(t > 0 for t in times)
    skipped = run_peer("torch", tmp_path / "data.npz", n=1, root=tmp_path, log=lambda m: None)
    assert "skipped" in skipped and str(tmp_path / "torch") in skipped["skipped"]
    r = run([sys.executable, "-c", "b = bytearray(200 << 20); print('{\"ok\": 1}')"])
    assert r.json() == {"ok": 1} and r.rss_mib >= 200


def test_report_marks_skipped_peers_and_unmet_targets():
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import render

    run = {"epoch_seconds": [1.0, 0.3, 0.3, 0.3, 0.3], "train_seconds": 2.2,
           "test_accuracy": 0.9664, "predict_seconds": [0.004, 0.005]}
    cli = {"wall": 4.0, "rss_mib": 400.0, "test_accuracy": 0.9664}
    peer = {**run, "epoch_seconds": [3.0] * 5, "rss_mib": 800.0, "peer": "PyTorch (eager)",
            "version": "2.13.0", "wall": 20.0}
    res = {"n": 1, "started": "now", "minutes": 1.0, "load_before": (3.0, 0, 0),
           "load_after": (0.5, 0, 0),
           "machine": {"cpu": "AMD EPYC", "cores": 2, "isa": "avx2", "python": "3.11",
                       "versions": {"jax": "0.10"}, "os": "Linux"},
           "floor": {"numpy BLAS, 1 thread": {"median": 0.1, "min": 0.1, "max": 0.1, "n": 1}},
           "digitnet": [run], "digitnet_one_core": [{**run, "epoch_seconds": [1.0] + [0.12] * 4}],
           "cli": {"cold": [cli], "warm": [{**cli, "wall": 3.0}], "help": [0.05]},
           "peers": [{"name": "keras-tf", "skipped": "no environment at /x"},
                     {"name": "torch", "label": "PyTorch (eager)", "version": "2.13.0",
                      "runs": [peer]}]}
    doc = render(res, gpu_results=(None, None))
    assert "| keras-tf (default threads) | skipped: no environment at /x |" in doc
    assert "| steady epoch vs floor | ≤ 1.3× | 3.00× | **not met** |" in doc
    assert "| digitnet pinned to one core (`taskset`) | 0.120 |" in doc
    assert "1-thread BLAS) | ≤ 1.3× | 1.20× | met |" in doc
    assert "| predict 10k after warm-up | ≤ PyTorch's | 4.0 ms vs 4.0 ms | met |" in doc
    assert "| faster than torch | ≥ 6× | 10.0× | met |" in doc
    assert "| faster than keras-tf | ≥ 15× | peer skipped | not measured |" in doc
    assert "other jobs were using the cores" in doc and "no `python -m bench.gpu` run" in doc
    assert "| GPU: tutorial config on an H100 | ≤ 0.03 s/epoch | no GPU run saved |" in doc
    json.dumps(res)  # what --json writes

    # A run records the machine in full: the document names it, its vector extensions and key.
    res["machine"] = {**res["machine"], "cpu_id": "AuthenticAMD/25/1/1", "simd": ["avx2", "fma"],
                      "key": "0123abcd", "calibration": None}
    doc = render(res, gpu_results=(None, None))
    assert "(vendor/family/model/stepping AuthenticAMD/25/1/1), 2 cores; vector extensions: avx2 fma" in doc
    assert "machine key `0123abcd`" in doc and "digitnet's defaults (no `digitnet calibrate`" in doc


def test_summaries_show_mean_and_standard_deviation():
    sys.path.insert(0, str(ROOT))
    from bench.report import fmt_mean, summary

    s = summary([0.1, 0.2, 0.3])
    assert s["n"] == 3 and fmt_mean(s, digits=2) == "0.20 ± 0.10"
    assert fmt_mean(s, 1000, 1, " ms") == "200.0 ± 100.0 ms" and fmt_mean(summary([0.5])) == "0.500"


def test_gpu_section_renders_from_the_results_json(tmp_path, monkeypatch):
    # docs/performance.md's GPU section and target line are computed from bench.gpu's JSON,
    # never typed in: rendered here from a small synthetic run.
    sys.path.insert(0, str(ROOT))
    from bench import gpu_report as gpu

    def runs(epoch: float, n: int = 3) -> list[dict]:
        return [{"seed": s + 1, "epoch_seconds": [2.0] + [epoch + 0.001 * s] * 4,
                 "test_accuracy": 0.96, "train_seconds": 3.0, "predict_seconds": [0.002],
                 "first_five": [7, 2, 1, 0, 4]} for s in range(n)]

    run = {"started": "2026-01-01 00:00:00 UTC", "best_unroll": 5, "shipped_unroll": 5,
           "env": {"device_kind": "Test GPU", "nvidia_smi": "smi", "python": "3.11", "jax": "0.0",
                   "torch": "0.0"},
           "engine": {"runs": {"5": runs(0.04)}, "fused_settings": {"TILE": 32}},
           "engine-xla-step": {"runs": {"5": runs(0.05)}},
           "engine-highest": {"runs": {"5": runs(0.06, 1)}},
           "torch": {"runs": runs(0.4)}, "torch-resident": {"runs": runs(0.2)},
           "floor": {"xla_scan": {"1": [0.03] * 3, "25": [0.025] * 3}},
           "torch-floor": {"fp32": {"cuda_graph": [0.02], "eager": [0.1]},
                           "tf32": {"cuda_graph": [0.015], "eager": [0.09]}},
           "cli": {"cold": {"seconds": 9.0}, "warm": {"seconds": 4.0}}}
    (tmp_path / "gpu.json").write_text(json.dumps(run))
    monkeypatch.setattr(gpu, "RESULTS", tmp_path)  # no HLO or earlier runs beside it
    loaded, explore = gpu.load_results(tmp_path)
    assert loaded == run and explore is None
    lines, epoch = gpu.gpu_section(loaded, explore)
    assert epoch["n"] == 3 and epoch["median"] == 0.041  # the middle seed's steady epoch
    text = "\n".join(lines)
    assert "## GPU: Test GPU" in text and "[7, 2, 1, 0, 4] in every run" in text
    assert "| **0.0410 (0.0400–0.0420)** |" in text
    assert "| 1.2× |" in text  # XLA's step against the fused one: 0.051 / 0.041
    measured, ok, note = gpu.gpu_target(loaded, epoch)
    assert measured == "0.0410 s/epoch on an Test GPU (1.64× XLA's eight-product floor)"
    assert ok is False and "many small kernels" in note
    assert gpu.gpu_section(None, None)[1] is None


def test_step_kernels_counts_the_loop_body_only():
    sys.path.insert(0, str(ROOT))
    from bench.gpu_report import step_kernels

    hlo = ("%body.1 (p: f32[]) -> f32[] {\n"
           "  %a = f32[32,64]{1,0} fusion(%x), kind=kCustom, calls=%gemm_fusion_dot\n"
           "  %b = f32[32,64]{1,0} fusion(%a), kind=kLoop, calls=%fused_add\n"
           "  %c = f32[32,64]{1,0} custom-call(%b), custom_call_target=\"__cublas$gemm\"\n"
           "}\n\nENTRY %main {\n"
           "  %f = f32[] fusion(%p), kind=kLoop, calls=%outside\n"
           "  %w = (s32[]) while(%t), condition=%cond.1, body=%body.1\n}\n")
    assert step_kernels(hlo) == {"kernels": 3, "gemm": 2, "other": 1}


def test_a_bench_rewrite_keeps_sections_other_benches_own(tmp_path):
    from bench.__main__ import keep_sections

    doc = tmp_path / "performance.md"
    doc.write_text("# old\n\n<!-- population: begin (x) -->\n## Populations\n<!-- population: end -->\n")
    new = keep_sections(str(doc), "# new\n")
    assert new.startswith("# new\n") and new.count("## Populations") == 1
    assert keep_sections(str(doc), new) == new  # a block already in the new text is not doubled
    assert keep_sections(str(tmp_path / "missing.md"), "# new\n") == "# new\n"
