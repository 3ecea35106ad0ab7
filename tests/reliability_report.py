"""docs/reliability.md from the results of `python -m tests.reliability --full`."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

# Bugs found in digitnet and their fixes, kept by hand: (area, failure, how it was found, fix).
# "fuzz" means the fuzzer of tests/reliability.py, run against the code before the fix,
# reproduced it; "probe" a hand-made input; "reading" that it was found by reading the code.
FIXED = [
    ("IDX", "a header of rank > 64 crashed NumPy's reshape (ValueError)", "fuzz",
     "refuse rank > 32 (`MAX_DIMS`)"),
    ("IDX", "dims (65536,)×4 wrapped the uint64 size product to 0, so a 20-byte file passed the "
     "size check and crashed in reshape", "reading, then probe", "sizes computed with Python "
     "integers"),
    ("IDX", "a header (0, 2³²−1, 2³²−1) passed the size check and crashed NumPy "
     "(\"array is too big\")", "fuzz", "zero dimensions left out of the size bound"),
    ("IDX", "a gzip bomb was inflated up to 4 GiB before the header was checked", "reading",
     "inflate the header first, then at most the size it declares + 1 MiB; the bound is now "
     "1 GiB (EMNIST ByClass, the largest MNIST-format set, is 547 MB)"),
    ("images", "Pillow tried every format it knows on untrusted bytes, EPS (which runs "
     "Ghostscript) included", "reading", "decode PNG, JPEG, GIF, BMP, TIFF, WebP and PPM only; "
     "any decoder exception becomes a DataError naming the file"),
    ("images", "a 6000×6000 PNG (under the 40 Mpx limit) peaked at 870 MB RSS in the float "
     "transform", "bomb check", "reduced to a few hundred px on its long side before the float work "
     "(now `WORK_SIZE` = 512, as the serve branch also did)"),
    ("images", "`mnist_form` on an array holding NaN crashed (ValueError: empty reduction)",
     "probe", "non-finite pixels are a DataError"),
    ("run dirs", "a history.csv with a bad number or bad UTF-8 crashed `load` (ValueError, "
     "UnicodeDecodeError)", "fuzz", "ModelFileError"),
    ("run dirs", "model fields of the wrong type (`\"hidden\": \"\"`, `[\"a\"]`, Infinity) "
     "crashed `load` with ValueError/OverflowError", "fuzz", "ModelFileError"),
    ("run dirs", "a deeply nested config.json crashed with RecursionError", "probe",
     "ModelFileError"),
    ("full disk", "an OSError while saving surfaced as a traceback (exit 1), and `Model.save` "
     "could replace weights.safetensors and then fail on config.json", "reading, then tmpfs",
     "`StorageError` (one line, exit 2); a model's files are all staged before any is renamed"),
    ("divergence", "only the loss was checked: the last step of an epoch can make the weights "
     "NaN after its loss was read, and they would be checkpointed", "reading",
     "weights checked finite before every checkpoint"),
    ("kill -9, full disk", "a fresh `train --out DIR` over a finished model rewrote "
     "config.json at once: killed or out of disk, DIR paired the new config with the old "
     "weights and loaded as neither", "full-disk check", "refused with a one-line error (use "
     "--resume, or another --out)"),
    ("Keras files", "a layer whose `config` is a list crashed `load_model` (TypeError)",
     "fuzz", "KerasFileError"),
    ("Keras files", "a corrupt legacy .h5 made h5py raise KeyError out of `load_model`",
     "fuzz", "KerasFileError"),
    ("all errors", "a config.json model key holding a newline gave a two-line error message",
     "fuzz", "`DigitnetError` escapes CR and LF: every message is one line"),
    ("kill -9", "`--resume` of a run killed before its first write failed (no config.json)",
     "reading", "it starts the run; stale `.NAME.*.tmp` files are removed when a run starts"),
]


def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_report(results: dict[str, Any], path: Path, command: str) -> None:
    lines = [
        "# Reliability",
        "",
        "What we did to break digitnet, and what happened. Every number below was produced by",
        "",
        f"    {command}",
        "",
        f"on {platform.machine()} / Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())} (2 shared cores; wall time of each part's "
        f"last run: {', '.join(f'{k} {v:.0f} s' for k, v in results['seconds'].items())}; "
        "`--parts a,b` reruns some parts and keeps the others' results). "
        "The default test suite runs a short version of each check (`tests/test_reliability.py`, "
        "`tests/serving/test_reliability_service.py`).",
        "",
        "## Hostile and broken inputs (hypothesis)",
        "",
        "Each case must end in a model/array or in a one-line `DigitnetError`; any other "
        "exception fails. Each case is time-bounded (20 s, then the process dies with a "
        "traceback) and each reader runs in a process limited to 3 GiB of address space. "
        "Peak RSS is the whole worker's: MNIST (for seeds), JAX for the run loader, and "
        "hypothesis' own record of every case it generated (a 30-case run peaks at 160 MB "
        "for IDX).",
        "",
        row("reader", "inputs", "cases", "read", "clear error", "other", "slowest case",
            "peak RSS"),
        row(*["---"] * 8),
    ]
    inputs = {"idx": "`read_idx`: mutated IDX (6 dtypes), gzip of those, mutated gzip, "
                     "arbitrary headers (rank 0–255, dims to 2³²−1), random bytes",
              "images": "`load_digit`: mutated PNG/JPEG/GIF/BMP/TIFF/WebP/PPM, PNG/GIF/BMP "
                        "headers declaring up to 2³¹ px a side, random bytes",
              "run": "`digitnet.load`: mutated weights.safetensors, safetensors headers with "
                     "any dtype/shape/offsets/header length, config.json with fields replaced "
                     "by arbitrary JSON, mutated history.csv",
              "keras": "`digitnet.keras.load_model`: mutated .keras and legacy .h5 models; "
                       ".keras zips with `../`, absolute and `C:` member names, symlink members, "
                       "Lambda/TFOpLambda/unknown layers, modules `os`/`builtins`/`__main__`, "
                       "custom registered names, a 256 MiB zip bomb; random bytes. Nothing may "
                       "be written beside the file"}
    for name, what in inputs.items():
        r = results["fuzz"][name]
        if "cases" not in r:
            lines.append(row(name, what, "—", "—", "—", r.get("failure", "?")[:200], "—", "—"))
            continue
        other = r["failure"] or 0
        lines.append(row(name, what, f"{r['cases']:,}", f"{r['accepted']:,}",
                         f"{r['rejected']:,}", other, f"{r['slowest_s']:.2f} s",
                         f"{r['peak_rss_mb']:.0f} MB"))
    lines += ["", "Decompression bombs, each in a process limited to 1 GiB of address space:", "",
              row("bomb", "outcome"), row("---", "---")]
    for which in ("idx", "images"):
        for label, outcome in results["bombs"][which].get("results", {}).items():
            lines.append(row(f"{which}: {label}", outcome.replace("|", "/")))
    lines += ["", "Peak RSS of the bomb processes: " + ", ".join(
        f"{which} {results['bombs'][which].get('peak_rss_mb', 0):.0f} MB"
        for which in ("idx", "images")) + "."]
    k = results["kills"]
    at: dict[int, int] = {}
    for kill in k["kills"]:
        at[kill["checkpoint_after"]] = at.get(kill["checkpoint_after"], 0) + 1
    temps = sum(1 for kill in k["kills"] if kill["temps"])
    startup = sum(1 for kill in k["kills"] if kill["aim"] == "start-up")
    lines += [
        "",
        "## kill -9 during `digitnet train`",
        "",
        f"{len(k['kills'])} SIGKILLs over {k['processes']} processes of `digitnet train "
        f"--data-dir SUBSET --hidden 32 --epochs {k['epochs']} --seed 7 --out DIR --resume` "
        "(2,000 MNIST training images; a checkpoint after every epoch), each aimed at a random "
        f"point: {startup} in start-up, the others inside a random epoch or the final save. "
        "Checkpoint epoch on disk right after each kill (epoch: kills): "
        + ", ".join(f"{e}: {n}" for e, n in sorted(at.items())) + ".",
        "",
        "- After every kill each file in the run directory loaded (config.json, the "
        "checkpoint with finite tensors, history.csv, and the whole model when weights were "
        f"there); temporary `.NAME.*.tmp` files were left by {temps} kills, never read, and "
        "removed by the next run.",
        "- The checkpoint epoch never went back: a kill lost at most the epoch in progress.",
        f"- {k['completions']} runs were resumed to the end; {k['identical']} of "
        f"{k['completions']} have weights equal bit for bit to an uninterrupted run "
        f"({k['seconds']:.0f} s in all).",
        "",
    ]
    if "downloads" in results:
        dl = results["downloads"]
        lines += [
            "## Downloads (two processes at once; kill -9 mid-download)",
            "",
            "`datasets.fetch` in real child processes against a slow server on 127.0.0.1 "
            "(synthetic kmnist files pinned by SHA-256; `tests/test_download.py` covers stalls, "
            "drops, HTML pages served with 200 and wrong bytes against the same kind of server):",
            "",
            f"- Two processes fetching into one empty cache: both succeeded; the cache holds "
            f"{len(dl['concurrent']['cache'])} files, "
            f"{sum(v == 'good' for v in dl['concurrent']['cache'].values())} matching their "
            f"pins, after {dl['concurrent']['requests']} requests (the second process waited "
            "on the folder lock, then found the files).",
            f"- {dl['kills']} SIGKILLs at random moments of a fetch (complete files in the cache "
            f"at each kill: {', '.join(map(str, dl['files_at_kill']))}), each followed by a "
            f"fetch that succeeded: {dl['corrupt']} corrupt or partial files ever seen under a "
            "real name.",
            "",
        ]
    if "service" in results:
        sv = results["service"]
        lines += [
            "## The service (schemathesis)",
            "",
            "`digitnet serve` in its own process on 127.0.0.1; every operation of its OpenAPI "
            f"schema fuzzed with valid and invalid requests: {sv['cases']:,} requests, "
            f"{sv['server_errors']} operations with a 5xx. (Schema-valid image bodies are "
            "refused with 422 when their pixels do not make an image: the schema cannot say "
            "that; `tests/serving/` checks real images.)",
            "",
            row("operation (generation)", "status codes"), row("---", "---"),
            *[row(op, ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())) or "none possible")
              for op, codes in sv["operations"].items()],
            "",
            f"- A POST declaring {sv['oversized']['declared']:,} bytes (10 × the limit): "
            f"`{sv['oversized']['status']}` after {sv['oversized']['seconds']} s, before any "
            "body byte was sent.",
            f"- {sv['slow_clients']['stalled']} clients stalled mid-headers: /health still "
            f"answered {sv['slow_clients']['health']} in {sv['slow_clients']['seconds']} s.",
            "",
        ]
    if "load" in results:
        ld = results["load"]
        growth = 100 * (ld["rss_end_mb"] - ld["rss_start_mb"]) / ld["rss_start_mb"]
        lines += [
            "## The service under load",
            "",
            f"{ld['clients']} concurrent clients (httpx, one process) POSTing an 84×84 PNG of an "
            f"MNIST digit to /predict for {ld['seconds']:.0f} s, then {ld['burst']} requests "
            "at once, against `digitnet serve` on the same 2 shared cores:",
            "",
            row("requests", "req/s", "p50", "p99", "burst", "burst p99", "errors",
                "server RSS start → end"),
            row(*["---"] * 8),
            row(f"{ld['requests']:,}", ld["req_per_s"], f"{ld['p50_ms']} ms",
                f"{ld['p99_ms']} ms", f"{ld['burst']} in {ld['burst_s']} s",
                f"{ld['burst_p99_ms']} ms", ld["errors"],
                f"{ld['rss_start_mb']} → {ld['rss_end_mb']} MB ({growth:+.1f} %)"),
            "",
        ]
    d = results["diverge"]
    lines += [
        "## NaN / Inf loss",
        "",
        "One SGD epoch at lr 0.01, then `--resume --epochs 3 --lr 1e12`: exit "
        f"{d['exit']}, stderr `{d['stderr']}`; the checkpoint stays at epoch "
        f"{d['checkpoint_epoch']} (finite: {d['checkpoint_finite']}), weights.safetensors "
        f"unchanged: {d['weights_kept']}.",
        "",
    ]
    f = results["full_disk"]
    lines += ["## Full disk", ""]
    if "skipped" in f:
        lines.append(f"Skipped: {f['skipped']}.")
    else:
        lines += [
            f"A tmpfs of {f['tmpfs_bytes']:,} bytes holding a saved model (1.5 × its size):",
            "",
            f"- `Model.save` over it: {f['api']}; files unchanged: {f['api_unchanged']}.",
            f"- `digitnet train --out NEW` beside it: exit {f['cli_exit']}, stderr "
            f"`{f['cli_stderr']}`; previous model unchanged: {f['model_kept']}; files after: "
            f"{', '.join(f['files_after'])}.",
        ]
    lines += ["", "## Failures found and fixed", "",
              "Found by: *fuzz* = the fuzzer above reproduced it on the code before the fix; "
              "*probe* = a hand-made input; *reading* = found reading the code.", "",
              row("area", "failure", "found by", "fix"), row("---", "---", "---", "---")]
    lines += [row(*item) for item in FIXED]
    if "load" not in results:
        lines += ["", "## Not covered here", "", "The load test (`--parts load`) has not run.",
                  ""]
    path.write_text("\n".join(lines))
