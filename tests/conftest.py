"""Shared fixtures: the real embedded MNIST, one model trained on it, a small IDX folder cut from
it (so that sweeps in tests train in seconds) and one finished tiny sweep; once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitnet.data.datasets import FILES, load_dataset
from digitnet.data.idx import write_idx


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
