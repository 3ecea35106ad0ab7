"""`digitnet train --seeds` on a CPU of several cores trains its seeds in one worker process per
core (digitnet.cli.seed_workers). The command is run as a user runs it, in a fresh process (in
this test process JAX has started, and `main()` keeps the seeds in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from digitnet import api
from digitnet.cli.seed_workers import workers_for
from digitnet.runtime import cpu_cores

pytestmark = pytest.mark.skipif(cpu_cores() < 2, reason="one worker per core needs two cores")


def digitnet(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGITNET_POPULATION_DEVICES", "NPROC")}
    return subprocess.run([sys.executable, "-m", "digitnet", *argv], capture_output=True, text=True,
                          env={**env, "JAX_PLATFORMS": "cpu", **(env or {})}, timeout=300)


def test_seeds_train_in_a_process_per_core(small_data, tmp_path):
    out = tmp_path / "seeds"
    args = ("train", "--seeds", "1-3", "--hidden", "32", "--epochs", "1", "--batch-size", "50",
            "--data-dir", str(small_data), "--out", str(out))
    run = digitnet(*args)
    assert run.returncode == 0, run.stderr
    # the first worker's progress, then the parent's lines for all the seeds
    assert "Epoch 1/1" in run.stderr and ", 2 processes)" in run.stdout
    assert [line.split(":")[0] for line in run.stdout.splitlines() if line.startswith("seed ")] == \
        ["seed 1", "seed 2", "seed 3"]
    summary = json.loads((out / "summary.json").read_text())
    configs = [api.load(out / f"seed-{s}").config for s in (1, 2, 3)]
    assert summary["seeds"] == [1, 2, 3]
    assert summary["test_accuracy"]["values"] == [c["metrics"]["test_accuracy"] for c in configs]
    assert summary["test_accuracy"]["std"] == pytest.approx(
        np.std(summary["test_accuracy"]["values"], ddof=1))
    # seed 1 trained alone in the first worker; seeds 2 and 3 together in the second
    assert [c["population"]["size"] for c in configs] == [1, 2, 2]
    assert [c["train"]["seed"] for c in configs] == [1, 2, 3]
    assert run.stderr.count("Epoch 1/1") == 1  # the first worker's progress only


def test_a_workers_error_is_shown_once_and_ends_the_command(tmp_path):
    run = digitnet("train", "--seeds", "1-4", "--data-dir", str(tmp_path / "nothing"),
                   "--out", str(tmp_path / "out"), "--quiet")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("digitnet: error:") == 1 and "nothing" in run.stderr
    assert not (tmp_path / "out" / "summary.json").exists()
    # refused before any worker starts
    run = digitnet("train", "--seeds", "1-4", "--tensorboard", str(tmp_path / "tb"),
                   "--out", str(tmp_path / "out"))
    assert run.returncode == 2
    assert run.stderr.strip() == ("digitnet: error: --tensorboard follows one run; it does not "
                                  "combine with --seeds or --ensemble")


@pytest.mark.parametrize(("argv", "env", "workers"), [
    (["train", "--seeds", "1-8"], {}, 2),
    (["train", "--seeds", "1-8"], {"DIGITNET_POPULATION_DEVICES": "1"}, 1),
    (["train", "--ensemble", "4"], {}, 1),  # an ensemble is combined in one process
    (["train"], {}, 1),
])
def test_how_many_workers(monkeypatch, argv, env, workers):
    """Decided before JAX starts; in this process (JAX started) the seeds stay in-process."""
    from digitnet.cli import build_parser

    args = build_parser().parse_args(argv)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "modules", {k: v for k, v in sys.modules.items() if k != "jax"})
    monkeypatch.setattr("digitnet.runtime.cpu_cores", lambda: 2)
    monkeypatch.setattr("digitnet.runtime.gpu_backend_possible", lambda: False)
    assert workers_for(args, 8) == workers
    monkeypatch.setattr("digitnet.runtime.gpu_backend_possible", lambda: True)
    assert workers_for(args, 8) == 1
