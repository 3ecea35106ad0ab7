"""Short versions of the reliability checks in tests/reliability.py (the full counts run with
`python -m tests.reliability --full`; see docs/reliability.md)."""

from __future__ import annotations

import errno
import os

import attacks
import numpy as np
import pytest
import reliability as rel

import digitnet
from digitnet import artifacts as art
from digitnet.errors import StorageError


@pytest.mark.parametrize("name", rel.FUZZ_NAMES)
def test_readers_give_only_clear_errors_on_hostile_bytes(name, tmp_path):
    result = rel.fuzz(name, cases=100, workdir=tmp_path)
    assert result.failure is None, result.failure
    assert result.cases >= 100 and result.rejected > 0


@pytest.mark.parametrize("which", ["idx", "images"])
def test_decompression_bombs_are_refused_within_1_gib(which, tmp_path):
    out = rel.worker("bombs", which, 0, tmp_path, 1 << 30)
    assert "failure" not in out, out.get("failure")
    for label, outcome in out["results"].items():
        if "under the limit" in label:
            assert outcome == "accepted" or "no digit" in outcome, (label, outcome)
        else:
            assert outcome.startswith("DigitnetError"), (label, outcome)


@pytest.mark.slow
def test_kill_9_during_training_then_resume_loses_nothing(tmp_path):
    report = rel.kill_resume(tmp_path, kills=2, epochs=8)
    assert len(report.kills) >= 2 and report.completions >= 1
    assert report.identical == report.completions


def test_a_full_disk_fails_clearly_and_keeps_the_previous_model(tmp_path, trained_run):
    out = rel.full_disk(tmp_path, trained_run)
    if "skipped" in out:
        pytest.skip(out["skipped"])
    assert out["api"].startswith("StorageError: cannot write") and out["api_unchanged"]
    assert out["cli_exit"] == 2 and "No space left on device" in out["cli_stderr"]
    assert len(out["cli_stderr"].splitlines()) == 1 and out["model_kept"]
    assert not [f for f in out["files_after"] if f.endswith(".tmp")]


def test_enospc_while_staging_leaves_every_file_of_the_model(tmp_path, trained_model,
                                                             monkeypatch):
    trained_model.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # the second staged file finds the disk full
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError, match="history.csv: No space left"):
        trained_model.save(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_stale_temporary_files_are_removed_and_never_loaded(tmp_path, trained_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    stale = run / ".weights.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    (run / "notes.tmp").write_text("not ours")
    assert digitnet.load(run).spec.hidden == (64, 64)
    assert art.remove_stale_temps(run) == [stale]
    assert (run / "notes.tmp").exists()


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(tmp_path):
    out = rel.diverge(tmp_path)
    assert out["exit"] == 2 and len(out["stderr"].splitlines()) == 1
    assert "NaN or infinite" in out["stderr"] or "loss became" in out["stderr"]
    assert out["checkpoint_epoch"] == 1 and out["checkpoint_finite"] and out["weights_kept"]


def test_weights_that_blew_up_after_the_last_loss_never_reach_a_checkpoint():
    from digitnet.engine import check_finite
    from digitnet.errors import TrainingDiverged

    check_finite([{"kernel": np.ones((2, 2), np.float32)}], 0, 0.1)
    with pytest.raises(TrainingDiverged, match="weights became NaN or infinite in epoch 3"):
        check_finite([{"kernel": np.array([[1.0, np.inf]], np.float32)}], 2, 0.1)


@pytest.mark.slow
def test_downloads_killed_or_run_twice_at_once_never_corrupt_the_cache(tmp_path):
    out = rel.download_faults(tmp_path, kills=1)
    assert out["kills"] == 1 and out["corrupt"] == 0
    assert set(out["concurrent"]["cache"].values()) == {"good"}
    assert out["concurrent"]["requests"] == 4  # the second process waited, then found them



@pytest.mark.parametrize("cls", attacks.WORKER_CLASSES)
@pytest.mark.slow
def test_hostile_files_and_options_of_each_class_end_in_one_line(cls, tmp_path):
    """Issue 16, library and CLI side: a few generated cases of each class (the full suite runs
    hundreds: `python -m tests.reliability --full --parts attack`)."""
    n = attacks.counts(1)[cls]["library"]  # class 1: one case of each of its 9 kinds
    out = attacks.run_worker(cls, n, tmp_path, seed=cls, src=attacks.ROOT / "src")
    assert out.cases >= n and out.failed == 0, out.failures
