"""Sweeps: planning (grid, points, random, dedup, validation), results files, resume after an
interrupt, failed trials, and worker processes giving the same results as in-process."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from digitnet import api
from digitnet.cli import main
from digitnet.errors import ConfigError
from digitnet.sweep import Plan, make_plan, read_results, run_sweep, trial_id


def test_grid_points_and_seeds_expand_and_share_the_base_point():
    doc = {"seeds": [1, 2], "base": {"hidden": [64, 64], "epochs": 5},
           "grid": {"lr": {"lr": [0.001, 0.005], "description": "higher?"},
                    "be": {"points": [{"epochs": 5, "batch_size": 32}, {"epochs": 10, "batch_size": 64}]},
                    "two": {"activation": ["relu", "sigmoid"], "dropout": [0.0, 0.5]}}}
    plan = make_plan(doc)
    assert {k: g["axes"] for k, g in plan.groups.items()} == {
        "lr": ["lr"], "be": ["epochs, batch_size"], "two": ["activation", "dropout"]}
    assert plan.groups["lr"]["description"] == "higher?"
    # 2 + 2 + 4 points, the base point shared by all three groups: 6 distinct points × 2 seeds
    assert len(plan.trials) == 12
    base = [t for t in plan.trials if set(t.groups) == {"lr", "be", "two"}]
    assert sorted(t.options["seed"] for t in base) == [1, 2]
    assert len({t.id for t in plan.trials}) == 12


def test_trial_id_is_stable_and_ignores_how_a_value_is_spelled():
    assert trial_id({"lr": 0.001, "hidden": [64, 64]}) == trial_id({"hidden": "64,64"})
    assert trial_id({"lr": 0.001}) != trial_id({"lr": 0.002})
    assert make_plan({"base": {"epochs": 2}}).trials[0].id == make_plan({"base": {"epochs": 2}}).trials[0].id


def test_random_sampling_is_reproducible_and_within_bounds():
    doc = {"repeats": 1, "random": {"s": {"samples": 20, "seed": 7,
                                          "lr": {"loguniform": [1e-4, 1e-2]},
                                          "dropout": {"uniform": [0.0, 0.5]},
                                          "batch_size": {"int": [16, 128]},
                                          "hidden": [[32], [64, 64]]}}}
    a, b = make_plan(doc), make_plan(doc)
    assert [t.id for t in a.trials] == [t.id for t in b.trials]
    opts = [t.options for t in a.trials]
    assert all(1e-4 <= o["lr"] <= 1e-2 and 0 <= o["dropout"] <= 0.5 and 16 <= o["batch_size"] <= 128
               for o in opts)
    assert {tuple(o["hidden"]) for o in opts} == {(32,), (64, 64)}
    assert len({o["lr"] for o in opts}) > 10
    other = make_plan({**doc, "random": {"s": {**doc["random"]["s"], "seed": 8}}})
    assert [t.id for t in other.trials] != [t.id for t in a.trials]


@pytest.mark.parametrize("doc, message", [
    ({"bogus": 1}, "unknown sweep key"),
    ({"grid": {"g": {"lr": []}}}, "non-empty list"),
    ({"grid": {"g": {"activation": ["relu", "swoosh"]}}}, "group 'g'"),
    ({"random": {"r": {"lr": {"loguniform": [0, 1]}, "samples": 2}}}, "positive"),
    ({"random": {"r": {"lr": {"normal": [0, 1]}, "samples": 2}}}, "loguniform"),
    ({"random": {"r": {"lr": [0.1]}}}, "samples"),
    ({"base": {"learning_rate": 0.1}}, "unknown option"),
    ({"seeds": [1], "repeats": 2}, "either"),
    ({"repeats": "3"}, "positive integer"),
    ({"seeds": []}, "non-empty"),
    ({"base": [1]}, "table"),
])
def test_bad_sweep_files_fail_before_training(doc, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(doc)


def test_cli_rejects_bad_input_with_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid.g]\nactivation = ['relu', 'nope']\n")
    assert main(["sweep", str(bad)]) == 2
    assert main(["sweep", str(bad), "--backend", "spark"]) == 2
    good = tmp_path / "good.toml"
    good.write_text("[base]\nepochs = 1\n")
    assert main(["sweep", str(good), "--address", "127.0.0.1:1"]) == 2
    assert main(["sweep", str(good), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("digitnet: error:") for line in err)
    assert main(["report", str(tmp_path)]) == 2


def test_sweep_writes_run_dirs_and_results(tiny_sweep, tiny_sweep_file, small_data, capsys):
    doc = read_results(tiny_sweep)
    assert main(["sweep", str(tiny_sweep_file), "--data-dir", str(small_data), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1] == "4 trials" and [line.split()[0] for line in listed[:-1]] == [
        r["id"] for r in doc["trials"]]
    assert doc["planned"] == doc["finished"] == 4
    assert doc["command"].startswith("digitnet sweep ")
    rows = list(csv.DictReader((tiny_sweep / "results.csv").open()))
    assert [r["id"] for r in rows] == [r["id"] for r in doc["trials"]]
    for rec, row in zip(doc["trials"], rows, strict=True):
        assert rec["status"] == "complete"
        model = api.load(tiny_sweep / rec["run_dir"])
        assert model.spec.hidden == (16,)
        assert model.config["train"]["lr"] == rec["options"]["lr"]
        assert model.config["metrics"]["test_accuracy"] == rec["metrics"]["test_accuracy"]
        assert float(row["test_accuracy"]) == rec["metrics"]["test_accuracy"]
        assert rec["metrics"]["test_accuracy"] > 0.2  # better than chance after 2 epochs
        assert len(model.history) == 2 and "val_accuracy" in model.history[-1]


def metrics_by_id(sweep_dir):
    return {r["id"]: {k: v for k, v in r["metrics"].items() if k != "train_seconds"}
            for r in read_results(sweep_dir)["trials"]}


def test_interrupted_sweep_keeps_finished_trials_and_resumes(tiny_sweep, tiny_sweep_file, small_data,
                                                             tmp_path):
    from digitnet.sweep import load_plan

    plan = load_plan(tiny_sweep_file, str(small_data))
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    doc = json.loads((sweep / "results.json").read_text())
    for rec in doc["trials"][2:]:  # as if the last two trials had never run
        shutil.rmtree(sweep / rec["run_dir"])
    kept = {r["id"]: (sweep / r["run_dir"] / "weights.safetensors").stat().st_mtime_ns
            for r in doc["trials"][:2]}

    def interrupt_after_one(record, finished, total):
        if record:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, sweep, on_trial=interrupt_after_one)
    assert read_results(sweep)["finished"] == 3
    calls = []
    run_sweep(plan, sweep, on_trial=lambda r, f, t: calls.append(f))
    assert calls == [3, 4]  # one trial left to train
    # It trains alone, not in the population of four it first trained in: the same up to the
    # order of floating-point sums (digitnet.population).
    got, want = metrics_by_id(sweep), metrics_by_id(tiny_sweep)
    assert got.keys() == want.keys()
    for tid in want:
        assert got[tid] == pytest.approx(want[tid], rel=1e-4, abs=1e-5)
    for tid, mtime in kept.items():
        assert (sweep / "trials" / tid / "weights.safetensors").stat().st_mtime_ns == mtime


def test_diverging_trial_is_recorded_as_failed(small_data, tmp_path):
    plan = make_plan({"base": {"hidden": [8], "epochs": 1, "optimizer": "sgd", "lr": 1e30}},
                     str(small_data))
    [rec] = run_sweep(plan, tmp_path)
    assert rec["status"] == "failed" and "loss became" in rec["error"]
    assert run_sweep(plan, tmp_path) == [rec]  # finished: not retried on resume


def test_worker_processes_match_in_process(tiny_sweep, tiny_sweep_file, small_data, tmp_path):
    from digitnet.sweep import load_plan

    plan = load_plan(tiny_sweep_file, str(small_data))
    plan = Plan([t for t in plan.trials if t.options["lr"] == 0.01], plan.groups)
    run_sweep(plan, tmp_path, workers=2)
    expected = metrics_by_id(tiny_sweep)
    got = metrics_by_id(tmp_path)
    assert len(got) == 2 and got == {k: expected[k] for k in got}
    for tid in got:
        assert ((tmp_path / "trials" / tid / "weights.safetensors").read_bytes()
                == (tiny_sweep / "trials" / tid / "weights.safetensors").read_bytes())


@pytest.mark.slow
def test_successive_halving_continues_the_best_point_to_the_same_result(tiny_sweep, small_data,
                                                                       tiny_sweep_file, tmp_path):
    import tomllib

    doc = tomllib.loads(tiny_sweep_file.read_text()) | {"seeds": [1], "halving": {"min_epochs": 1, "eta": 2}}
    plan = make_plan(doc, str(small_data))
    records = run_sweep(plan, tmp_path)
    assert sorted((r["options"]["epochs"], r["status"]) for r in records) == [
        (1, "promoted"), (1, "stopped"), (2, "complete")]
    first = {r["options"]["lr"]: r["metrics"]["val_accuracy"] for r in records[:2]}
    final = records[2]
    assert first[final["options"]["lr"]] == max(first.values())
    # 1 epoch, then 1 more from the checkpoint == 2 epochs at once (the tiny sweep's trial), up
    # to the order of floating-point sums: the rungs and the tiny sweep trained in populations
    # of different sizes (digitnet.population)
    assert final["id"] in {r["id"] for r in read_results(tiny_sweep)["trials"]}
    a, b = api.load(tmp_path / final["run_dir"]), api.load(tiny_sweep / final["run_dir"])
    for la, lb in zip(a.params, b.params, strict=True):
        for name in la:
            np.testing.assert_allclose(la[name], lb[name], atol=1e-5)
    assert run_sweep(plan, tmp_path) == records  # resumes with nothing left to do


def test_halving_rejects_bad_settings():
    with pytest.raises(ConfigError, match="eta"):
        make_plan({"halving": {"eta": 1}})
    with pytest.raises(ConfigError, match="constant"):
        make_plan({"base": {"schedule": "cosine"}, "halving": {}})


@pytest.mark.slow
def test_groups_side_by_side_on_devices_match_one_device(small_data, tmp_path):
    """A sweep in one process with two CPU devices trains each shape group whole on one device,
    two at a time (executors.run_on_devices): the same bits as one group after the other on one
    device, and the results in the planned order."""
    from tests.cli_runner import run_cli

    sweep_file = tmp_path / "two.toml"
    sweep_file.write_text('seeds = [1, 2]\n[base]\nhidden = [16]\nepochs = 1\nbatch_size = 50\n'
                          'chunks_per_epoch = 2\n[grid.act]\nactivation = ["relu", "sigmoid"]\n'
                          '[grid.depth]\nhidden = [[16], [8, 8]]\n')
    proc = run_cli("sweep", str(sweep_file), "--data-dir", str(small_data), "--out",
                   str(tmp_path / "devices"), "--quiet",
                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "NPROC": "1"})
    assert proc.returncode == 0, proc.stderr
    from digitnet.sweep import load_plan

    plan = load_plan(sweep_file, str(small_data))
    run_sweep(plan, tmp_path / "one")  # this process: one device
    got, want = read_results(tmp_path / "devices"), read_results(tmp_path / "one")
    planned = [t.id for t in plan.trials]
    assert [r["id"] for r in got["trials"]] == [r["id"] for r in want["trials"]] == planned
    assert metrics_by_id(tmp_path / "devices") == metrics_by_id(tmp_path / "one")
    for rec in want["trials"]:
        assert ((tmp_path / "devices" / rec["run_dir"] / "weights.safetensors").read_bytes()
                == (tmp_path / "one" / rec["run_dir"] / "weights.safetensors").read_bytes())
