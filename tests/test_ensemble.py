"""Ensembles as the ensemble recipe builds them: members of one population that really differ
(each member's initialisation, shuffle, dropout and augmentation draws come from its own seed),
and committees whose members differ in preprocessing (deskewed and plain inputs).

Oracles: each member trained alone by the ordinary engine; NumPy's mean of the members'
probabilities; onnxruntime for the exported committee."""

from __future__ import annotations

import itertools
from dataclasses import replace

import jax
import numpy as np
import pytest

from digitnet import api
from digitnet.data.datasets import load_dataset
from digitnet.engine import EngineSettings
from digitnet.model import MLPSpec, preprocess_stats
from digitnet.population import Member, fit_members
from digitnet.train import TrainConfig, fit_arrays

# The ceiling recipe's features at a toy size: deskewed inputs, dropout, every augmentation
# (elastic distortions included), label smoothing, one-cycle Adam and an EMA of the weights.
SPEC = MLPSpec(hidden=(32,), dropout=0.2, preprocess="unit", deskew=True)
CFG = TrainConfig(epochs=1, batch_size=50, chunks_per_epoch=4, validation="none", schedule="onecycle",
                  label_smoothing=0.1, ema=0.99, aug_shift=1.0, aug_rotate=10.0, aug_scale=0.1,
                  aug_shear=8.0, elastic_alpha=34.0, elastic_sigma=5.0)
FAST = EngineSettings(unroll=1)


@pytest.fixture(scope="module")
def small(small_data):
    return load_dataset("mnist", small_data)


def leaves(params):
    return [np.asarray(v) for v in jax.tree.leaves(params)]


@pytest.mark.slow
def test_ceiling_like_members_train_as_alone_and_differ(small):
    stats = preprocess_stats(SPEC, small.x_train)
    members = [Member(SPEC, replace(CFG, seed=s), stats) for s in (1, 2, 3)]
    fit_members(members, small.x_train, small.y_train, settings=FAST)
    assert all(m.error is None and m.together == 3 for m in members)
    for m in members:
        # Alone, a seed draws its own augmentation and dropout: a member matching it draws them too.
        alone = fit_arrays(SPEC, m.cfg, small.x_train, small.y_train, stats, settings=FAST)
        for a, b in zip(leaves(m.state.params), leaves(alone.params), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)
        assert m.state.history[-1]["loss"] == pytest.approx(alone.history[-1]["loss"], rel=1e-4)
    for a, b in itertools.combinations(members, 2):
        assert a.state.history[-1]["loss"] != b.state.history[-1]["loss"]
        assert all(np.abs(x - y).max() > 1e-2 for x, y in zip(leaves(a.state.params),
                                                              leaves(b.state.params), strict=True)
                   if x.ndim == 2)


@pytest.mark.slow
def test_a_population_member_is_its_seed_whatever_its_place(small):
    # Member i's draws come from its seed, not from its position in the population.
    stats = preprocess_stats(SPEC, small.x_train)
    first = [Member(SPEC, replace(CFG, seed=s), stats) for s in (4, 5)]
    second = [Member(SPEC, replace(CFG, seed=s), stats) for s in (5, 4)]
    for group in (first, second):
        fit_members(group, small.x_train, small.y_train, settings=FAST)
    for a, b in ((first[0], second[1]), (first[1], second[0])):
        for x, y in zip(leaves(a.state.params), leaves(b.state.params), strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.fixture(scope="module")
def committee(small_data, tmp_path_factory):
    """A deskewed and a plain model of the same shape, trained by the CLI and combined."""
    from digitnet.cli import main

    root = tmp_path_factory.mktemp("committee")
    common = ["--hidden", "16", "--epochs", "1", "--batch-size", "50", "--preprocess", "unit",
              "--data-dir", str(small_data), "--quiet"]
    assert main(["train", *common, "--deskew", "--ensemble", "2", "--out", str(root / "deskew")]) == 0
    assert main(["train", *common, "--no-deskew", "--seed", "3", "--out", str(root / "plain")]) == 0
    assert main(["ensemble", str(root / "deskew"), str(root / "plain"), "--out", str(root / "all")]) == 0
    return root


def test_a_committee_of_deskewed_and_plain_members_averages_their_probabilities(committee, small):
    ens = api.load(committee / "all")
    assert [m.spec.deskew for m in ens.members] == [True, True, False]
    assert [m.config["train"]["seed"] for m in ens.members] == [1, 2, 3]
    parts = [api.load(committee / "deskew" / "members" / f"seed-{s}") for s in (1, 2)]
    parts.append(api.load(committee / "plain"))
    expected = np.mean([m.predict_proba(small.x_test) for m in parts], axis=0)
    np.testing.assert_allclose(ens.predict_proba(small.x_test), expected, atol=1e-6)
    assert ens.config["metrics"]["test_accuracy"] == pytest.approx(
        float((expected.argmax(1) == small.y_test).mean()))


def test_a_mixed_committee_exports_to_onnx(committee, small):
    ort = pytest.importorskip("onnxruntime")
    from digitnet.export import export

    path = export(committee / "all")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probs,) = sess.run(["probabilities"], {"images": small.x_test})
    expected = api.load(committee / "all").predict_proba(small.x_test)
    # As for one deskewed model (tests/serving/test_onnx_export.py): the two samplers' rounding
    # may move a deskewed pixel one step in about one image in 100.
    np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))
    row_err = np.abs(probs - expected).max(1)
    assert (row_err <= 1e-5).mean() >= 0.98 and row_err.max() < 0.02


@pytest.mark.parametrize(("argv", "devices"), [
    (["train", "--recipe", "ceiling", "--ensemble", "4"], 1),  # large products: one device's pool
    (["train", "--recipe", "ceiling", "--seeds", "1-3", "--hidden", "256,256"], 3),
    (["train", "--seeds", "1-8"], 8),  # the tutorial's small ops: a single-threaded device per core
    (["train", "--recipe", "ceiling"], 1),
])
def test_populations_of_large_models_keep_one_xla_device(argv, devices):
    from digitnet.cli import SHARD_MAX_MACS, build_parser, model_macs, population_size

    args = build_parser().parse_args(argv)
    assert population_size(args) == devices
    assert (model_macs(args) > SHARD_MAX_MACS) == (devices == 1)


@pytest.mark.parametrize(("argv", "saved", "devices"), [
    (["--recipe", "ceiling", "--ensemble", "4"], None, 1),  # nothing saved yet: the flags' model
    (["--seeds", "1-3"], None, 3),
    (["--seeds", "1-3"], {"hidden": [2048, 2048]}, 1),  # the saved run's model, not the default
    (["--seeds", "1-3"], {"hidden": [64, 64]}, 3),
])
def test_a_resumed_population_keeps_the_fresh_runs_xla_devices(tmp_path, argv, saved, devices):
    """--resume resolves the model over the saved run's options before JAX starts, as
    cmd_train does, so a population of large models keeps one device there too."""
    import json

    from digitnet.cli import SHARD_MAX_MACS, build_parser, model_macs, population_size
    from digitnet.cli.train import resolved_options, resumed_options

    if saved is not None:
        (tmp_path / "config.json").write_text(json.dumps({"model": saved, "train": {},
                                                          "dataset": {"name": "mnist"}}))
    args = build_parser().parse_args(["train", *argv, "--out", str(tmp_path), "--resume"])
    assert population_size(args) == devices
    assert (model_macs(args) > SHARD_MAX_MACS) == (devices == 1)
    # cmd_train's resolution over the same base is the one the XLA setup made
    assert resolved_options(args, resumed_options(tmp_path)) is args.resolved
