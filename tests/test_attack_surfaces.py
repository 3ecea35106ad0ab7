"""Bytes written by an attacker who reads our source, on surfaces tests/attacks.py does not
generate: checkpoint metadata, sweep files that expand to huge plans, gzip streams with data
after their end, .keras archives with huge central directories (the service's side:
tests/serving/test_attack_requests.py). Each must end in one clear line, a DigitnetError,
before anything large is allocated."""

from __future__ import annotations

import gzip
import json
import resource
import shutil
import struct
import time

import numpy as np
import pytest

import digitnet
from digitnet import artifacts as art
from digitnet import sweep
from digitnet.data import idx, images
from digitnet.errors import ConfigError, DataError, DigitnetError, ModelFileError
from digitnet.train import TrainConfig


def bounded(fn, error: type[Exception], match: str, mib: int = 64, cpu: float = 1.0) -> None:
    """fn() raises `error` (one line matching `match`) within `cpu` seconds and `mib` of peak RSS."""
    rss, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
    with pytest.raises(error, match=match) as exc:
        fn()
    assert "\n" not in str(exc.value)
    assert time.process_time() - t0 < cpu
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < mib << 10


@pytest.fixture(scope="module")
def checkpoint(trained_run):
    """The tensors and metadata of a trained run's checkpoint, and the run's spec."""
    from safetensors.numpy import load

    data = (trained_run / art.CHECKPOINT).read_bytes()
    n = int.from_bytes(data[:8], "little")
    return load(data), json.loads(data[8 : 8 + n])["__metadata__"], digitnet.load(trained_run).spec


class TestCheckpointMetadata:
    """`train --resume` reads epoch and history from checkpoint.safetensors' __metadata__: JSON
    in a string that safetensors' own depth limit never sees. Before: RecursionError or
    AttributeError tracebacks, and a negative or huge epoch, junk or NaN rows accepted."""

    BAD = {
        "history nested 100000 deep": {"history": "[" * 100_000 + "]" * 100_000},
        "history a string": {"history": '"abc"'},
        "history of numbers": {"history": "[1, 2, 3]"},
        "history row of wrong types": {"history": '[{"epoch": "x", "loss": [1]}]'},
        "history row with NaN": {"history": '[{"epoch": 1, "loss": NaN}]'},
        "history row with an unknown field": {"history": '[{"epoch": 1, "evil": 1}]'},
        "history longer than its epochs": {"epoch": "1", "history": '[{"epoch": 1}, {"epoch": 2}]'},
        "epoch negative": {"epoch": "-5"},
        "epoch beyond any run": {"epoch": "1000000000000"},
        "epoch of 5000 digits": {"epoch": "9" * 5000},
        "epoch a float": {"epoch": "1e3"},
        "no epoch": {"epoch": None},
    }

    def resume(self, run, checkpoint, meta):
        from safetensors.numpy import save

        tensors, _, spec = checkpoint
        (run / art.CHECKPOINT).write_bytes(save(tensors, metadata={k: v for k, v in meta.items()
                                                                   if v is not None}))
        return art.load_checkpoint(run, spec, TrainConfig(epochs=1), 1000)

    @pytest.mark.parametrize("label", BAD)
    def test_bad_metadata_is_one_line(self, label, checkpoint, trained_run, tmp_path):
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        meta = {**checkpoint[1], **self.BAD[label]}
        self.resume(run, checkpoint, checkpoint[1])  # compiled and loaded once, outside the bounds
        bounded(lambda: self.resume(run, checkpoint, meta), ModelFileError,
                "bad checkpoint metadata")

    def test_the_checkpoint_as_written_resumes(self, checkpoint, trained_run, tmp_path):
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        state = self.resume(run, checkpoint, checkpoint[1])
        assert state.epoch == 1 and [r["epoch"] for r in state.history] == [1]


class TestSweepPlanSize:
    """A sweep file is expanded into trials before anything trains. Before: `repeats = 10**9`
    and a 6-axis grid raised MemoryError; `samples = 10**9` and 100,000 seeds over a 999-point
    grid ran past 60 s, all from files of a few bytes to 700 kB."""

    DOCS = {
        "repeats 10**9": {"repeats": 10**9},
        "random samples 10**9": {"random": {"a": {"samples": 10**9, "lr": {"uniform": [1e-3, 0.1]}}}},
        "grid of 6 axes × 199": {"grid": {"g": {k: list(range(1, 200)) for k in (
            "epochs", "batch_size", "seed", "patience", "step_epochs", "chunks_per_epoch")}}},
        "100,000 seeds × 999 points": {"seeds": list(range(100_000)),
                                       "grid": {"g": {"epochs": list(range(1, 1000))}}},
        "grid points × 3 groups": {"grid": {f"g{i}": {"epochs": list(range(1, 5000))}
                                            for i in range(3)}},
    }

    @pytest.mark.parametrize("label", DOCS)
    def test_plans_beyond_the_trial_limit_are_refused_before_expansion(self, label):
        bounded(lambda: sweep.make_plan(self.DOCS[label]), ConfigError,
                f"trials, more than a sweep may have \\({sweep.MAX_TRIALS:,}\\)")

    def test_a_tiny_file_asking_for_a_billion_repeats(self, tmp_path):
        path = tmp_path / "s.toml"
        path.write_text("repeats = 1000000000\n")
        bounded(lambda: sweep.load_plan(path), ConfigError, "repeats makes 1,000,000,000 trials")

    def test_a_plan_at_the_limit_is_listed(self):
        plan = sweep.make_plan({"seeds": list(range(1, 11)),
                                "grid": {"g": {"epochs": list(range(1, sweep.MAX_TRIALS // 10 + 1))}}})
        assert len(plan.trials) == sweep.MAX_TRIALS


class TestGzipTrailingData:
    """An IDX .gz is one gzip member. Before: bytes after its end (junk, or a second member of
    any size) were silently ignored, while a raw IDX file with extra bytes is refused."""

    IDX = idx.encode_idx(np.arange(300 * 40, dtype=np.uint8).reshape(300, 40))
    TAILS = {
        "junk": gzip.compress(IDX) + b"JUNK" * 1000,
        "a second member": gzip.compress(IDX) + gzip.compress(b"\0" * (1 << 20)),
        "a small file, then junk": gzip.compress(IDX[:20]) + b"x",
    }

    @pytest.mark.parametrize("label", TAILS)
    def test_data_after_the_gzip_stream_is_refused(self, label, tmp_path):
        path = tmp_path / "x-idx.gz"
        path.write_bytes(self.TAILS[label])
        bounded(lambda: idx.read_idx(path), DataError, "after the end of the gzip stream")

    def test_one_member_reads(self, tmp_path):
        path = tmp_path / "x-idx.gz"
        path.write_bytes(gzip.compress(self.IDX))
        assert idx.read_idx(path).shape == (300, 40)


def zip_directory(entries: int, declared: int | None = None) -> bytes:
    """A zip whose central directory holds `entries` copies of one entry (all pointing at one
    local header), its end record (zip64) declaring `declared` members."""
    name = b"a"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + name
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
                        0, 0) + name
    cd, n = entry * entries, entries if declared is None else declared
    z64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(cd), len(local))
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(local) + len(cd), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + cd + z64 + locator + end


class TestKerasArchiveDirectory:
    """zipfile.ZipFile builds one object per central-directory entry before MAX_MEMBERS can be
    checked. Before: a 47 MB .keras of a million entries cost 15 s of CPU and ~370 MB of RSS."""

    CASES = {"200,000 entries": zip_directory(200_000),
             "2 declared over 200,000 entries": zip_directory(200_000, declared=2),
             "10**9 declared": zip_directory(1, declared=10**9)}

    @pytest.mark.parametrize("label", CASES)
    @pytest.mark.parametrize("how", ["load_model", "load_weights"])
    def test_huge_directories_are_refused_before_parsing(self, label, how, tmp_path):
        from digitnet import keras

        path = tmp_path / "m.keras"
        path.write_bytes(self.CASES[label])
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
        load = (lambda: keras.models.load_model(path)) if how == "load_model" else (
            lambda: model.load_weights(path))
        bounded(load, DigitnetError, "zip directory of .* members in .* bytes", cpu=0.5)


class TestThinImages:
    """Decoders work row by row: a 31 kB PNG of 1×16,000,000 px (within the pixel limits) cost
    1.2 s of CPU, a 42 kB TIFF of 1×30,000,000 px 0.8 s and 186 MB. Sides are now limited."""

    SIZES = [(1, images.MAX_SIDE + 1), (images.MAX_SIDE + 1, 1), (40_000, 1000)]

    @pytest.mark.parametrize("fmt", ["PNG", "TIFF", "GIF", "BMP"])
    @pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
    def test_a_side_over_the_limit_is_refused_before_decoding(self, size, fmt):
        data = encoded(size, fmt)
        bounded(lambda: images.load_digit(data, "thin"), images.ImageTooLarge,
                f"more than {images.MAX_SIDE:,} px on a side", cpu=0.2)

    def test_a_side_at_the_limit_is_decoded(self):
        with pytest.raises(DataError, match="no digit found"):
            images.load_digit(encoded((1, images.MAX_SIDE), "PNG"), "thin")


def encoded(size: tuple[int, int], fmt: str) -> bytes:
    """A blank image of `size` in `fmt`, written with Pillow."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", size).save(buf, fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))
    return buf.getvalue()


class TestHistoryRows:
    """history.csv holds one row per epoch. Before: a 13 MB file of 500,000 rows (under the 16 MiB
    limit) loaded, and cost `digitnet summary` 4 s and `report` 21 s of CPU more, and `serve`
    1.5 s of CPU and 340 MB of peak RSS per GET /model."""

    def write(self, run, rows: int) -> None:
        lines = ["epoch,loss,accuracy"] + [f"{i},0.5,0.9" for i in range(1, rows + 1)]
        (run / art.HISTORY).write_text("\n".join(lines) + "\n")

    def test_more_rows_than_a_run_has_epochs_are_refused(self, trained_run, tmp_path):
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        self.write(run, art.MAX_HISTORY_ROWS + 1)
        with pytest.raises(ModelFileError, match="more than 100,000 rows; a run has one per epoch"):
            digitnet.load(run)

    def test_a_history_of_the_most_epochs_loads(self, trained_run, tmp_path):
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        self.write(run, art.MAX_HISTORY_ROWS)
        assert len(art.read_history(run / art.HISTORY)) == art.MAX_HISTORY_ROWS


class TestEnsembleMembers:
    """A saved ensemble's members were matched to their tensors by scanning every tensor name
    for every member: a 1.6 MB config.json listing 8,000 one-layer members (a 3 MB weights file)
    took 55 s to load; 80,000 would fit in config.json's 16 MiB."""

    def ensemble(self, folder, n: int):
        from safetensors.numpy import save

        from digitnet.model import MLPSpec

        spec = MLPSpec(input_shape=(1,), hidden=(), num_classes=2)
        tensors = {f"member_{i}.{k}": v for i in range(n) for k, v in (
            ("dense_0.kernel", np.zeros((1, 2), np.float32)), ("dense_0.bias", np.zeros(2, np.float32)),
            ("preprocess.shift", np.zeros(1, np.float32)), ("preprocess.scale", np.ones(1, np.float32)))}
        folder.mkdir()
        (folder / art.WEIGHTS).write_bytes(save(tensors))
        (folder / art.CONFIG).write_text(json.dumps({
            "format": "digitnet-ensemble", "format_version": 1,
            "members": [{"model": spec.to_dict()} for _ in range(n)]}))
        return folder

    def test_more_members_than_allowed_are_refused_before_reading(self, tmp_path):
        from digitnet.ensemble import MAX_MEMBERS

        run = self.ensemble(tmp_path / "ens", MAX_MEMBERS + 1)
        bounded(lambda: digitnet.load(run), ModelFileError,
                "1,025 members, more than the 1,024 an ensemble may have")

    def test_an_ensemble_of_the_most_members_loads(self, tmp_path):
        from digitnet.ensemble import MAX_MEMBERS

        assert len(digitnet.load(self.ensemble(tmp_path / "ens", MAX_MEMBERS)).members) == MAX_MEMBERS


def results_doc(**trial: object) -> dict:
    """A sweep's results.json of one complete trial, its record updated with `trial`."""
    record = {"id": "0123456789ab", "groups": ["g"], "status": "complete", "error": None,
              "run_dir": "trials/0123456789ab", "options": {"epochs": 1},
              "metrics": {"test_accuracy": 0.9, "train_seconds": 1.0}, "wall_seconds": 1.0}
    return {"format": sweep.FORMAT, "groups": {"g": {"kind": "grid", "axes": [], "description": ""}},
            "halving": None, "planned": 1, "finished": 1, "trials": [{**record, **trial}]}


class TestSweepResults:
    """`digitnet report SWEEP` and `sweep --resume` index results.json's records directly.
    Before: KeyError, TypeError tracebacks (`trials: [1]`, no `groups`, a metric "x"), and a
    run_dir of "/etc" or "../x" was followed out of the sweep folder."""

    BAD = {
        "a trial that is a number": {"trials": [1]},
        "no groups": {"groups": None},
        "a group without kind": {"groups": {"g": {"axes": []}}},
        "planned as a string": {"planned": "1"},
        "too many trials": {"trials": [{}] * (sweep.MAX_TRIALS + 1)},
    }
    BAD_TRIALS = {
        "metric a string": {"metrics": {"test_accuracy": "x", "train_seconds": 1}},
        "metric NaN": {"metrics": {"test_accuracy": float("nan"), "train_seconds": 1}},
        "complete without accuracy": {"metrics": {"train_seconds": 1}},
        "run_dir absolute": {"run_dir": "/etc"},
        "run_dir escaping": {"run_dir": "../../x"},
        "id with a slash": {"id": "../x", "run_dir": "trials/../x"},
        "status unknown": {"status": "pwned"},
        "options a list": {"options": [1]},
        "groups a string": {"groups": "g"},
        "no wall_seconds": {"wall_seconds": None},
    }

    @pytest.mark.parametrize("label", [*BAD, *BAD_TRIALS])
    def test_bad_results_are_one_line(self, label, tmp_path):
        from digitnet.report import sweep_report

        doc = ({**results_doc(), **self.BAD[label]} if label in self.BAD
               else results_doc(**self.BAD_TRIALS[label]))
        (tmp_path / sweep.RESULTS_JSON).write_text(json.dumps(doc))
        bounded(lambda: sweep_report(tmp_path), ConfigError, "not a valid sweep results file")
        with pytest.raises(ConfigError, match="not a valid sweep results file"):
            sweep.finished_records(tmp_path)

    def test_the_record_a_sweep_writes_is_read(self, tmp_path):
        (tmp_path / sweep.RESULTS_JSON).write_text(json.dumps(results_doc()))
        assert sweep.read_results(tmp_path)["trials"][0]["id"] == "0123456789ab"
