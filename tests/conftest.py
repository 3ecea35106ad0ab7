"""Shared fixtures: the real embedded MNIST and one model trained on it, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


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
