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
    ("Keras files (1)", "`Dense(units=10**7)` in a 40 KB .keras aborted the process (XLA) when the "
     "model was built; an HDF5 dataset listed many times was charged per array, not per file",
     "attack", "`digitnet.budget`: layer sizes and total parameters checked before anything is "
     "built (MLPSpec and the Keras loader); an HDF5 file's datasets summed over every path to them"),
    ("images (1, 3)", "a 4096² RGBA PNG built full-size float64 arrays (~640 MiB); decodes in "
     "flight were bounded only by the thread pool; a progressive JPEG of thousands of scans cost "
     "seconds of CPU", "attack", "decoded in uint8, reduced to 512 px before any float work; "
     "JPEGs drafted by libjpeg; a byte-counted gate on decodes in flight; at most 64 scans and "
     "4×10⁸ pixel-scans per JPEG"),
    ("service (2)", "100,000-deep JSON (RecursionError), a pixel of 10⁴⁰⁰ (OverflowError), a LAB "
     "TIFF (converted outside the error handling): plain-text 500s", "attack",
     "400/422 JSON: the parser's depth guard caught, integers over 32 digits refused, every mode "
     "conversion inside the decoder's error handling"),
    ("files (5)", "HDF5 external links, external storage and virtual datasets followed (a FIFO "
     "hung the loader); history.csv → /dev/zero or a FIFO: MemoryError or a hang; a sparse 3 GiB "
     "weights file read whole", "attack", "`digitnet.safefiles`: no symlinks in a run dir, "
     "regular files only, opened non-blocking, size checked on the descriptor; every HDF5 link "
     "walked before a byte is read"),
    ("CLI (6)", "`--seed 2**70`, `--hidden 1000000000`, `serve --port 99999`, `lr = true`, "
     "`export --opset 1000000`, a FIFO as TOML file, an empty split, encrypted or bzip2 members, "
     "deep configs, 1-D or mismatched IDX to predict: tracebacks, hangs or accepted", "attack",
     "strict types and bounds in MLPSpec/TrainConfig, port and opset checked, TOML through "
     "safefiles, zip members' flags and methods checked, predict's IDX headers checked against "
     "the model first"),
    ("run dirs (7)", "NaN kernels, an infinite preprocessing scale, a negative input_shape, "
     "`\"deskew\": \"false\"` loaded, then predicted NaN", "attack",
     "weights and preprocessing checked finite at load; every model field strictly typed"),
    ('Keras files (1)',
     'a config declaring `Dense(20000…150000)` (within the parameter limit) over small weights '
     'built the whole model before comparing shapes: 4–5 s of CPU and ~1.5 GiB, or out of '
     'memory; `load_weights` read every dataset before comparing shapes; a small dataset '
     'stored in one huge compressed chunk was inflated whole; any HDF5 filter id was tried '
     '(HDF5 looks for a plugin library)',
     'attack (b21bba9)',
     '`keras.saving.check_declared_weights`: the Dense shapes a config declares against the '
     "weight datasets' shapes before any model is built or array read; `load_weights` compares "
     'shapes before reading; `h5weights.check_storage`: numeric types of ≤ 8 bytes, chunks ≤ '
     '64 MiB, filters deflate/shuffle/fletcher32/LZF only'),
    ('run dirs (1)',
     'a weights.safetensors larger than its config needs (an extra 160 MB tensor) was read '
     'whole and loaded',
     'attack (b21bba9)',
     "`artifacts.weights_bytes`: a run's (an ensemble's, a checkpoint's) weights file may hold "
     'its parameters, preprocessing and a header, nothing more; the size is checked before '
     'reading'),
    ('Keras files',
     'h5py\'s RuntimeError on a corrupt HDF5 structure ("bad symbol table node version", '
     '"invalid datatype size") escaped `load_model` as a traceback; found when the fuzzer\'s '
     'seed files had other layer names (dense_2, … after another test built models in the same '
     'process)',
     'fuzz (on b21bba9 too)',
     'KerasFileError'),
    ("HTTP (8)", "the Host header was never checked (DNS rebinding)", "attack",
     "`serve.guard.HostGuard`: localhost names only when bound to loopback (`--allowed-hosts`), "
     "a 400 JSON answer otherwise"),
    ('checkpoints',
     '`train --resume` over a checkpoint whose `__metadata__` history was JSON nested 100,000 '
     'deep, or not a list of rows: RecursionError / AttributeError tracebacks; an epoch of -5 '
     'or 10¹², rows of strings, NaN or unknown fields were accepted and written back',
     'probe (attack branch)',
     '`artifacts.checkpoint_progress`: epoch 0…100,000, at most that many rows of known fields '
     'holding finite numbers'),
    ('sweeps',
     'a 21-byte sweep file `repeats = 1000000000`, or a grid of 6 axes × 199 values: '
     'MemoryError tracebacks; `samples = 10**9`, 100,000 seeds over 999 points: over 60 s',
     'probe',
     '`sweep.MAX_TRIALS` (10,000) counted before any list of trials is built'),
    ('sweeps',
     'a results.json of `trials: [1]`, no `groups`, a metric `"x"`: KeyError/TypeError '
     'tracebacks in `digitnet report`; a `run_dir` of `/etc` or `../x` was followed out of the '
     'sweep folder',
     'probe',
     '`sweep.read_results` checks every field the report and `--resume` read; `run_dir` must '
     'be `trials/ID`'),
    ('IDX',
     'bytes after the end of a .gz (junk, or a second gzip member of any size) were ignored',
     'reading',
     'refused, as extra bytes after a raw IDX file are'),
    ('Keras files',
     'zipfile parses a .keras central directory whole (one object per entry) before the '
     '64-member check: 10⁶ entries in 47 MB cost 15 s of CPU',
     'probe',
     "the end record's member count and directory size checked first "
     '(`saving.check_directory`)'),
    ('images',
     "decoders work row by row: a 31 kB PNG of 1×16,000,000 px (within serve's pixel limit) "
     'cost 1.2 s of CPU per request; a 42 kB TIFF of 1×30,000,000 px 0.8 s and 186 MB',
     'probe',
     '`images.MAX_SIDE` (32,768 px a side), before decoding'),
    ('run dirs, service',
     'a 13 MB history.csv of 500,000 rows loaded; GET /model rendered it each time: 1.5 s of '
     'CPU and 340 MB of peak RSS per request (a 45 MB answer); `report` 21 s more CPU',
     'probe',
     'at most 100,000 rows (one per epoch); /model rendered once at start'),
    ('ensembles',
     'members matched to tensors by scanning every tensor name per member: a 1.6 MB '
     'config.json of 8,000 one-layer members took 55 s to load (quadratic)',
     'reading, then probe',
     'one pass over the tensors; at most 1,024 members (`ensemble.MAX_MEMBERS`), checked '
     'before reading'),
    ('service',
     'httptools bounds no header: one endless header value grew in memory until the header '
     'deadline, on every connection',
     'probe',
     'request line and headers at most 64 KiB (`server.MAX_HEAD_BYTES`): 431 JSON, connection '
     'closed'),
    ('service',
     'a 16 kB blank 4096² PNG fits 256 times in the 8 MiB body: one `/predict/batch` cost ~28 '
     's of CPU',
     'probe',
     'the images of one request may declare at most 4 × `--max-image-pixels`, summed from '
     'their headers before any decode (413 `images_too_large`)'),
    ('service',
     'JSON pixels as 29 ragged rows (28 of 27 values, one of 28), or 27 rows then 28 bare '
     'numbers, were flattened and classified (200)',
     'probe',
     'rows must all be lists of one length (422 `invalid_pixels`)'),
]


# Where the attacks above live in the default test suite.
TESTS_HOLDING_THEM = (
    '`tests/test_attack_surfaces.py` and `tests/serving/test_attack_requests.py` hold these '
    'attacks (each library case bounded to 1 s of CPU and 64 MiB of peak RSS), with 67 '
    'hostile requests that already got the right 4xx JSON answer (multipart without boundary, '
    'unterminated, 2,000 parts, non-UTF-8 names; odd Content-Types; BOM, UTF-16, lone '
    'surrogates, NaN/Infinity literals, 1e400; method confusion; 5,000-parameter query '
    'strings; traversal under /static).')

TITLES = {1: "memory amplified before any limit", 2: "5xx from the service", 3: "CPU bombs",
          4: "slow clients", 5: "files that point elsewhere", 6: "tracebacks instead of one line",
          7: "bad values accepted at load", 8: "the HTTP layer"}


def attack_section(a: dict[str, Any]) -> list[str]:
    """The eight classes of issue 16: what was generated, failures before the fixes and now,
    and the cost of the worst case."""
    before = a.get("before", {})
    then = before.get("results", {})
    lines = ["", "## Hostile inputs by class (issue 16)", "",
             "`tests/attacks.py` generates each class's cases at random (scale "
             f"{a['scale']}: the default tests run scale 1). Library and CLI cases run in a worker "
             "limited to 3 GiB of address space (a case over 30 s kills it); service cases go to "
             "a fresh `digitnet serve` per class, whose CPU seconds per request and peak RSS "
             "(VmHWM) are read from /proc. Worst case = the case that cost the most CPU seconds "
             "(the worker's, or the server's for service cases); peak RSS = the worker's or the "
             "server's, whichever is larger."
             + (f" *Before the fixes*: the same generators at scale {before['scale']} against "
                f"revision {before['revision']}; a worker that died (an XLA abort, a hang on a "
                "FIFO) counts as one failure for all its cases." if before else ""), "",
             row("class", "cases generated", "cases", "failed before the fixes", "failed now",
                 "worst case", "its CPU s", "peak RSS"),
             row(*["---"] * 8)]
    for cls, r in a["now"].items():
        old = then.get(cls) or then.get(str(cls))
        old_text = f"{old['failed']} of {old['cases']}" if old else "—"
        lines.append(row(f"{cls}. {TITLES[int(cls)]}", a["generators"][cls].replace("|", "/"),
                         f"{r['cases']:,}", old_text, r["failed"],
                         r["worst_case"].replace("|", "/"), f"{r['worst_cpu_s']:.2f}",
                         f"{r['peak_rss_mb']:.0f} MB"))
    failing = {cls: r for cls, r in a["now"].items() if r["failed"]}
    if failing:
        lines += ["", "Failing now (first cases of each class):", ""]
        for cls, r in failing.items():
            lines += [f"- class {cls}: " + "; ".join(f"`{f}`" for f in r["failures"][:3])]
    if then:
        lines += ["", "Examples found before the fixes:", ""]
        for cls, r in then.items():
            if r["failures"]:
                lines += [f"- class {cls}: " + "; ".join(f"`{f[:160]}`" for f in r["failures"][:2])]
    return lines


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
    if "fuzz" in results:
        for name, what in inputs.items():
            r = results["fuzz"][name]
            if "cases" not in r:
                lines.append(row(name, what, "—", "—", "—", r.get("failure", "?")[:200], "—", "—"))
                continue
            other = r["failure"] or 0
            lines.append(row(name, what, f"{r['cases']:,}", f"{r['accepted']:,}",
                             f"{r['rejected']:,}", other, f"{r['slowest_s']:.2f} s",
                             f"{r['peak_rss_mb']:.0f} MB"))
    if "bombs" in results:
        lines += ["", "Decompression bombs, each in a process limited to 1 GiB of address space:", "",
                  row("bomb", "outcome"), row("---", "---")]
        for which in ("idx", "images"):
            for label, outcome in results["bombs"][which].get("results", {}).items():
                lines.append(row(f"{which}: {label}", outcome.replace("|", "/")))
        lines += ["", "Peak RSS of the bomb processes: " + ", ".join(
            f"{which} {results['bombs'][which].get('peak_rss_mb', 0):.0f} MB"
            for which in ("idx", "images")) + "."]
    if "kills" in results:
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
    if "diverge" in results:
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
    if "full_disk" in results:
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
    if "attack" in results:
        lines += attack_section(results["attack"])
    lines += ["", "## Failures found and fixed", "",
              "Found by: *fuzz* = the fuzzer above reproduced it on the code before the fix; "
              "*attack* = tests/attacks.py did, run against the code before the fixes; "
              "*probe* = a hand-made input; *reading* = found reading the code.", "",
              row("area", "failure", "found by", "fix"), row("---", "---", "---", "---")]
    lines += [row(*item) for item in FIXED]
    lines += ["", TESTS_HOLDING_THEM]
    if "load" not in results:
        lines += ["", "## Not covered here", "", "The load test (`--parts load`) has not run.",
                  ""]
    path.write_text("\n".join(lines))
