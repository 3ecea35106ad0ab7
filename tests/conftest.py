"""Shared fixtures: the real embedded MNIST, one model trained on it, a small IDX folder cut from
it (so that sweeps in tests train in seconds), one finished tiny sweep, and a binary ('is it a
5?') run with its server; once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from digitnet.data.datasets import FILES, load_dataset
from digitnet.data.idx import write_idx

SESSION_HOME = "DIGITNET_TESTS_HOME"


def pytest_configure(config):
    """One empty $DIGITNET_HOME for the whole session, this process and every `digitnet` it
    starts: nothing read from or written to the user's cache (a stored `digitnet calibrate`
    choice, downloads), and the persistent compile cache in it shared, so that a program the
    session compiled once (in-process or in a CLI subprocess) is not compiled again. A pytest
    that a test starts (the Ray tests' inner runs) shares its parent session's."""
    inherited = os.environ.get(SESSION_HOME)
    home = inherited or tempfile.mkdtemp(prefix="digitnet-tests-")
    config.digitnet_home = (os.environ.get("DIGITNET_HOME"), home, not inherited)
    os.environ["DIGITNET_HOME"] = os.environ[SESSION_HOME] = home


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true",
                     help="also run the tests marked slow (what CI runs; without it, a few minutes)")


def pytest_collection_modifyitems(config, items):
    """Without --all, the tests marked slow are deselected, unless the command names its tests
    (a node id, or -m): asking for one test by name runs it."""
    named = config.option.markexpr or any("::" in a for a in config.args)
    if config.getoption("--all") or named:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_unconfigure(config):
    before, home, own = config.digitnet_home
    if not own:
        return
    shutil.rmtree(home, ignore_errors=True)
    os.environ.pop(SESSION_HOME, None)
    if before is None:
        os.environ.pop("DIGITNET_HOME", None)
    else:
        os.environ["DIGITNET_HOME"] = before


@pytest.fixture(scope="session")
def mnist():
    from digitnet import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist) -> Path:
    """The tutorial's model after one epoch on full MNIST (about 2 s), saved as a run dir."""
    import digitnet
    from digitnet.train import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "tutorial-1epoch"
    digitnet.fit(config=TrainConfig(epochs=1), dataset=mnist, out=out, verbose=False)
    return out


@pytest.fixture(scope="session")
def trained_model(trained_run):
    import digitnet

    return digitnet.load(trained_run)



TINY_SWEEP = """\
seeds = [1, 2]

[base]
hidden = [16]
epochs = 2
batch_size = 50  # 2,000 = 40 full batches: one compiled step shape per trial
chunks_per_epoch = 4

[grid.learning_rate]
lr = [0.001, 0.01]
"""


def write_subset(folder: Path, n_train: int, n_test: int) -> Path:
    ds = load_dataset("mnist")
    arrays = {"train_images": ds.x_train[:n_train], "train_labels": ds.y_train[:n_train].astype("uint8"),
              "test_images": ds.x_test[:n_test], "test_labels": ds.y_test[:n_test].astype("uint8")}
    for role, stem in FILES.items():
        write_idx(folder / stem, arrays[role])
    return folder


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """The first 2,000 MNIST training and 500 test images as an IDX folder."""
    return write_subset(tmp_path_factory.mktemp("mnist-small"), 2000, 500)


@pytest.fixture(scope="session")
def tiny_sweep_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweepcfg") / "tiny.toml"
    path.write_text(TINY_SWEEP)
    return path


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, small_data, tiny_sweep_file) -> Path:
    """A finished 4-trial sweep (2 learning rates × 2 seeds), run in-process with its progress bar."""
    from digitnet.cli import main

    out = tmp_path_factory.mktemp("sweep") / "tiny"
    assert main(["sweep", str(tiny_sweep_file), "--out", str(out), "--data-dir", str(small_data)]) == 0
    return out


@pytest.fixture(scope="session")
def five(tmp_path_factory, mnist):
    """'Is it a 5?': an IDX folder of 0/1 labels, a digitnet.keras model trained on it for one
    epoch (inputs x / 255, as Keras scripts scale them) and its digitnet run."""
    import numpy as np

    from digitnet import keras
    from digitnet.api import Model

    folder = tmp_path_factory.mktemp("five")
    arrays = {"train_images": mnist.x_train[:4000], "train_labels": (mnist.y_train[:4000] == 5),
              "test_images": mnist.x_test[:500], "test_labels": (mnist.y_test[:500] == 5)}
    for role, stem in FILES.items():
        write_idx(folder / stem, arrays[role].astype(np.uint8))
    keras.utils.set_random_seed(5)
    km = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                           keras.layers.Dense(32, activation="relu"),
                           keras.layers.Dense(1, activation="sigmoid")])
    km.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    km.fit(arrays["train_images"] / 255.0, arrays["train_labels"].astype("float32"), epochs=1,
           batch_size=16, verbose=0)
    model = Model.from_keras(km, preprocess="unit", dataset=folder)
    run = model.save(tmp_path_factory.mktemp("runs") / "five")
    km.save(run.parent / "five.keras")
    return folder, km, run


@pytest.fixture(scope="session")
def binary_server(five, tmp_path_factory):
    """`digitnet serve` on the binary run, in its own process; yields its base URL."""
    import reliability

    with reliability.serving(five[2], tmp_path_factory.mktemp("binary-server")) as url:
        yield url
