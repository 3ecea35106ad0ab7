"""Populations (several models in one compiled program), seeds and ensembles.

Oracles: each member trained alone by the ordinary engine (a population member must match it up
to floating-point reassociation), NumPy for the ensemble's averaged probabilities, onnxruntime
for its ONNX graph."""

from __future__ import annotations

import json
from dataclasses import replace

import jax
import numpy as np
import pytest

from digitnet import api
from digitnet.cli import main
from digitnet.data.datasets import load_dataset
from digitnet.engine import EngineSettings
from digitnet.errors import ConfigError
from digitnet.model import MLPSpec, preprocess_stats
from digitnet.population import Member, fit_members, group_key, knob_values, max_members, member_bytes
from digitnet.seeds import parse_seeds
from digitnet.train import TrainConfig, fit_arrays

SPEC = MLPSpec(hidden=(32,))
CFG = TrainConfig(epochs=1, batch_size=50, chunks_per_epoch=4, validation="none")
# One step per loop iteration: the programs compile in less time (the same for both sides).
FAST = EngineSettings(unroll=1)


@pytest.fixture(scope="module")
def small(small_data):
    return load_dataset("mnist", small_data)


def train_alone(spec, cfg, ds):
    stats = preprocess_stats(spec, ds.x_train)
    return fit_arrays(spec, cfg, ds.x_train, ds.y_train, stats, settings=FAST)


def accuracy(spec, params, ds):
    from digitnet.metrics import evaluate_arrays

    return evaluate_arrays(spec, params, preprocess_stats(spec, ds.x_train), ds.x_test,
                           ds.y_test).accuracy


def assert_close(a, b, atol=1e-4):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


@pytest.mark.parametrize("knobs", [
    [{"seed": 1, "lr": 1e-3, "schedule": "cosine", "warmup": 0.5},
     {"seed": 2, "lr": 3e-3, "schedule": "cosine", "warmup": 0.5},
     {"seed": 1, "lr": 5e-4, "schedule": "cosine", "warmup": 0.5}],
    [{"seed": 1, "dropout": 0.2, "weight_decay": 1e-4, "label_smoothing": 0.1, "aug_shift": 1.0},
     {"seed": 2, "dropout": 0.4, "weight_decay": 1e-3, "label_smoothing": 0.05, "aug_shift": 2.0}],
    [{"seed": 3, "optimizer": "sgd", "momentum": 0.9, "lr": 0.05},
     {"seed": 4, "optimizer": "sgd", "momentum": 0.5, "lr": 0.1}],
])
@pytest.mark.slow
def test_members_match_training_alone(small, knobs):
    members = []
    for k in knobs:
        spec = MLPSpec(hidden=(32,), dropout=k.get("dropout", 0.0))
        cfg = replace(CFG, **{n: v for n, v in k.items() if n != "dropout"})
        members.append(Member(spec, cfg, preprocess_stats(spec, small.x_train)))
    assert len({group_key(m.spec, m.cfg) for m in members}) == 1
    fit_members(members, small.x_train, small.y_train, settings=FAST)
    for m in members:
        assert m.error is None and m.together == len(knobs)
        alone = train_alone(m.spec, m.cfg, small)
        assert_close(m.state.params, alone.params)
        assert abs(accuracy(m.spec, m.state.params, small)
                   - accuracy(m.spec, alone.params, small)) <= 0.003
        assert m.state.history[-1]["loss"] == pytest.approx(alone.history[-1]["loss"], rel=1e-4)


def test_a_population_of_one_is_todays_path_bit_for_bit(small):
    m = Member(SPEC, CFG, preprocess_stats(SPEC, small.x_train))
    fit_members([m], small.x_train, small.y_train, settings=FAST)
    alone = train_alone(SPEC, CFG, small)
    for x, y in zip(jax.tree.leaves(m.state.params), jax.tree.leaves(alone.params), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_host_gathered_chunks_train_a_population_to_the_same_bits(small):
    # EngineSettings.host_gather (a CPU's default): each member's chunk of examples gathered by
    # NumPy and passed in, instead of gathered in the program from the shared training set.
    runs = []
    for gather in (False, True):
        members = population_of_three(small)
        fit_members(members, small.x_train, small.y_train, settings=replace(FAST, host_gather=gather))
        assert all(m.error is None and m.together == 3 for m in members)
        runs.append(members)
    for a, b in zip(*runs, strict=True):
        for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
            assert np.array_equal(np.asarray(x), np.asarray(y))
        assert {**a.state.history[-1], "seconds": 0} == {**b.state.history[-1], "seconds": 0}


def test_device_shuffles_are_the_engines_orders():
    import jax.numpy as jnp

    from digitnet.engine import engine_for
    from digitnet.population import population_engine

    engine = engine_for(SPEC, CFG, 40)
    pop = population_engine(engine)
    _, _, order_keys, dropout_keys = pop.init_state(jnp.asarray([1, 2, 3], jnp.int32))
    orders, keys = pop.epoch_orders(order_keys, dropout_keys, 2, 2000)
    for i in range(3):
        order, key = engine.epoch_order(order_keys[i], dropout_keys[i], 2, 2000)
        assert np.array_equal(np.asarray(orders[i]), np.asarray(order))
        assert np.array_equal(jax.random.key_data(keys[i]), jax.random.key_data(key))


def test_grouping_by_shape_and_structure():
    def key(spec=SPEC, **cfg):
        return group_key(spec, replace(CFG, **cfg))

    assert key(seed=1) == key(seed=2) == key(lr=0.01) == key(patience=3)
    assert key(weight_decay=1e-4) == key(weight_decay=1e-3) != key()  # on versus off
    assert key(spec=MLPSpec(hidden=(64,))) != key()
    assert key(spec=MLPSpec(hidden=(32,), dropout=0.2)) == key(spec=MLPSpec(hidden=(32,), dropout=0.5))
    assert key(spec=MLPSpec(hidden=(32,), dropout=0.2)) != key()
    assert key(batch_size=64) != key() and key(epochs=2) != key()
    assert key(validation="0.1") != key(validation="0.2")
    members = [Member(SPEC, replace(CFG, seed=s, lr=lr), {}) for s, lr in ((1, 0.1), (2, 0.1))]
    assert knob_values(members) == {}  # equal values stay constants of the program
    members[1].cfg = replace(members[1].cfg, lr=0.2)
    assert list(knob_values(members)) == ["lr"]


def test_a_diverging_member_fails_alone(small):
    cfgs = [replace(CFG, optimizer="sgd", lr=lr, seed=s) for s, lr in ((1, 0.05), (2, 1e30))]
    members = [Member(SPEC, c, preprocess_stats(SPEC, small.x_train)) for c in cfgs]
    fit_members(members, small.x_train, small.y_train, settings=FAST)
    assert members[0].error is None and members[0].state.epoch == 1
    assert members[1].error is not None and "lower the learning rate" in str(members[1].error)
    assert_close(members[0].state.params, train_alone(SPEC, cfgs[0], small).params)


def test_memory_splits_a_population_into_parts(small):
    assert max_members(SPEC, CFG, 2000, memory=1) == 1
    assert max_members(SPEC, CFG, 2000, memory=10**12) > 1000
    # a member with dropout also holds a block of its masks (EngineSettings.mask_block)
    drop = replace(SPEC, dropout=(0.5,) * len(SPEC.hidden), input_dropout=0.2)
    assert member_bytes(drop, CFG, 2000) > member_bytes(SPEC, CFG, 2000) + 64 * CFG.batch_size * 784
    members = [Member(SPEC, replace(CFG, seed=s), preprocess_stats(SPEC, small.x_train))
               for s in (1, 2, 3)]
    fit_members(members, small.x_train, small.y_train, parts=2, settings=FAST)
    assert [m.together for m in members] == [2, 2, 1]
    for m in members:
        assert_close(m.state.params, train_alone(SPEC, m.cfg, small).params)


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,2,5") == [1, 2, 5]
    assert parse_seeds("7") == [7]
    assert parse_seeds("0-1,10") == [0, 1, 10]
    for bad in ("", "a", "3-1", "1,1", "1-"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_train_seeds_writes_runs_and_a_summary(small_data, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "--seeds", "1-3", "--hidden", "32", "--epochs", "1", "--batch-size", "50",
                 "--data-dir", str(small_data), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    accs = [api.load(out / f"seed-{s}").config["metrics"]["test_accuracy"] for s in (1, 2, 3)]
    assert summary["test_accuracy"]["values"] == accs
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["test_accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert "± " in text and "over 3 seeds" in text
    config = api.load(out / "seed-2").config
    assert config["train"]["seed"] == 2 and config["population"]["size"] == 3
    # the same seed trained on its own: the same model up to reassociation
    alone = api.fit(MLPSpec(hidden=(32,)), TrainConfig(epochs=1, batch_size=50, seed=2), "mnist",
                    data_dir=small_data, verbose=False)
    assert_close(api.load(out / "seed-2").params, alone.params)


@pytest.fixture(scope="module")
def two_runs(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "runs"
    models = api.fit(MLPSpec(hidden=(32,)), CFG, "mnist", data_dir=small_data, seeds=[1, 2],
                     out=out, verbose=False)
    assert len(models) == 2 and [m.config["train"]["seed"] for m in models] == [1, 2]
    assert models.summary["seeds"] == [1, 2]
    assert json.loads((out / "summary.json").read_text()) == models.summary
    return [out / "seed-1", out / "seed-2"]


def test_ensemble_averages_probabilities_and_round_trips(two_runs, small, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, two_runs), "--out", str(out)]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    ens = api.load(out)
    members = [api.load(r) for r in two_runs]
    expected = np.mean([m.predict_proba(small.x_test) for m in members], axis=0)
    np.testing.assert_allclose(ens.predict_proba(small.x_test), expected, atol=1e-6)
    assert (ens.predict(small.x_test) == expected.argmax(1)).all()
    ev = ens.evaluate(small.x_test, small.y_test)
    assert ev.accuracy == pytest.approx((expected.argmax(1) == small.y_test).mean())
    assert ev.loss == pytest.approx(-np.log(expected[np.arange(len(small.y_test)), small.y_test]).mean(),
                                    rel=1e-5)
    assert ens.config["metrics"]["test_accuracy"] == pytest.approx(ev.accuracy)
    assert main(["evaluate", str(out)]) == 0 and main(["summary", str(out)]) == 0
    assert main(["predict", str(out), "--indices", "0:3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]


def test_ensemble_exports_to_onnx(two_runs, small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from digitnet.export import export

    ens_dir = tmp_path / "ens"
    from digitnet.api import combine

    ens = combine(two_runs, ens_dir)
    path = export(ens_dir)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, logits = sess.run(["probabilities", "logits"], {"images": small.x_test[:100]})
    np.testing.assert_allclose(probs, ens.predict_proba(small.x_test[:100]), atol=1e-5)
    np.testing.assert_allclose(np.exp(logits), probs, atol=1e-5)


def test_ensemble_serves(two_runs, tmp_path):
    pytest.importorskip("fastapi")
    from digitnet.api import combine
    from digitnet.serve.predictor import Predictor

    combine(two_runs, tmp_path / "ens")
    pred = Predictor(tmp_path / "ens", max_batch=4)
    assert pred.info["architecture"] == "ensemble of 2× 784-32-10"
    assert pred(np.zeros((3, 784), np.float32)).shape == (3, 10)


def test_ensemble_rejects_members_that_do_not_fit(two_runs, tmp_path):
    from digitnet.api import Model
    from digitnet.ensemble import Ensemble

    m = api.load(two_runs[0])
    other = Model(MLPSpec(input_shape=(8, 8), hidden=(4,)), m.params, m.stats)
    with pytest.raises(ConfigError, match="share input shape"):
        Ensemble([m, other])
    with pytest.raises(ConfigError):
        Ensemble([])


def test_train_ensemble_saves_members_and_the_ensemble(small_data, tmp_path):
    out = tmp_path / "ens"
    assert main(["train", "--ensemble", "2", "--hidden", "16", "--epochs", "1", "--batch-size", "50",
                 "--data-dir", str(small_data), "--out", str(out), "--quiet"]) == 0
    ens = api.load(out)
    assert len(ens) == 2 and (out / "members" / "seed-1" / "weights.safetensors").is_file()
    assert [m.config["train"]["seed"] for m in ens.members] == [1, 2]


SHARDED = """
import json, sys
from dataclasses import replace
from digitnet.runtime import population_devices
assert population_devices(3) == 2
import jax, numpy as np
from digitnet.data.datasets import load_dataset
from digitnet.engine import EngineSettings
from tests.test_population import FAST, population_of_three
from digitnet.population import fit_members
ds = load_dataset("mnist", sys.argv[1])
members = population_of_three(ds)
# Each member's examples gathered by NumPy (EngineSettings.host_gather), split over the devices.
fit_members(members, ds.x_train, ds.y_train, settings=replace(FAST, host_gather=True))
assert jax.device_count() == 2 and all(m.error is None for m in members)
np.savez(sys.argv[2], *[np.asarray(a) for m in members for a in jax.tree.leaves(m.state.params)])
print(json.dumps([m.state.history[-1] for m in members]))
"""


def population_of_three(ds):
    """Three members (an odd number: split over two devices, one is padded) with their own
    learning rates and label smoothing, validated on the test set every epoch."""
    return [Member(SPEC, replace(CFG, seed=s, lr=lr, label_smoothing=eps),
                   preprocess_stats(SPEC, ds.x_train), validation=(ds.x_test, ds.y_test))
            for s, lr, eps in ((1, 1e-3, 0.1), (2, 3e-3, 0.05), (3, 2e-3, 0.1))]


@pytest.mark.slow
def test_members_sharded_over_two_devices_match_one_device(small, small_data, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from digitnet.metrics import evaluate_arrays

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", SHARDED, str(small_data), str(tmp_path / "w.npz")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    logs = json.loads(out.stdout.strip().splitlines()[-1])
    members = population_of_three(small)
    fit_members(members, small.x_train, small.y_train, settings=FAST)  # this process: one device
    sharded = np.load(tmp_path / "w.npz")
    leaves = [a for m in members for a in jax.tree.leaves(m.state.params)]
    for i, a in enumerate(leaves):
        np.testing.assert_allclose(sharded[f"arr_{i}"], np.asarray(a), atol=1e-4)
    for m, log in zip(members, logs, strict=True):
        # The population's one-call validation against metrics.evaluate_arrays, member by member.
        ev = evaluate_arrays(SPEC, m.state.weights(), m.stats, small.x_test, small.y_test,
                             smoothing=m.cfg.label_smoothing)
        assert m.state.history[-1]["val_accuracy"] == ev.accuracy
        assert m.state.history[-1]["val_loss"] == pytest.approx(ev.loss, rel=1e-5)
        assert log["val_accuracy"] == pytest.approx(ev.accuracy, abs=0.003)
        assert log["loss"] == pytest.approx(m.state.history[-1]["loss"], rel=1e-4)


def test_population_devices_only_before_jax_and_as_asked():
    import os
    import subprocess
    import sys

    code = ("import os, sys\nfrom digitnet.runtime import population_devices\n"
            "n = population_devices(int(sys.argv[1]))\n"
            "print(n, os.environ.get('XLA_FLAGS', ''), os.environ.get('NPROC', '-'))")

    def run(members, **env):
        base = {k: v for k, v in os.environ.items()
                if k not in ("XLA_FLAGS", "NPROC", "DIGITNET_POPULATION_DEVICES")}
        out = subprocess.run([sys.executable, "-c", code, str(members)], env={**base, **env},
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0], " ".join(out[1:-1]), out[-1]

    cores = len(os.sched_getaffinity(0))
    n, flags, nproc = run(8)
    if cores >= 2:
        assert n == str(min(cores, 8)) and f"device_count={n}" in flags and nproc == "1"
    assert run(1) == ("1", "", "-")  # one model: XLA as a lone run has it
    assert run(8, DIGITNET_POPULATION_DEVICES="1") == ("1", "", "-")
    given = "--xla_force_host_platform_device_count=3"
    assert run(8, XLA_FLAGS=given) == ("1", given, "-")  # the user's choice wins
