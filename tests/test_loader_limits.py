"""Sizes a file declares are checked against what it holds before anything is allocated:
Keras configs against their weight datasets, HDF5 storage (chunks, filters, types), and run
directories' weights files against their config."""

from __future__ import annotations

import resource
import time

import attacks
import pytest

import digitnet
from digitnet import keras
from digitnet.errors import DigitnetError, ModelFileError


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    import reliability

    return reliability.keras_seeds(tmp_path_factory.mktemp("seeds"))


def widened(c, units=100_000):
    [e for e in c["config"]["layers"] if e["class_name"] == "Dense"][0]["config"]["units"] = units


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_declared_dense_over_small_weights_is_refused_before_building(suffix, seeds, tmp_path):
    data = (attacks.keras_with_config(seeds[".keras"], widened) if suffix == ".keras"
            else attacks.legacy_with_config(seeds[".h5"], widened))
    path = tmp_path / f"m{suffix}"
    path.write_bytes(data)
    rss, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
    with pytest.raises(DigitnetError, match=r"holds weights of shapes \[\(784, 8\), \(8,\)\]; the "
                       r"config's .* declares \[\(784, 100000\), \(100000,\)\]"):
        keras.models.load_model(path)
    # A built Dense(100000) would hold 300+ MiB of kernel; nothing like it was allocated.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 64 << 10
    assert time.process_time() - t0 < 1.0


@pytest.mark.parametrize("kind", attacks.WEIGHT_STORAGE)
def test_load_weights_checks_storage_before_reading(kind, tmp_path):
    import random

    what, data = attacks.weights_h5(random.Random(0), kind)
    path = tmp_path / "w.weights.h5"
    path.write_bytes(data)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(DigitnetError) as err:
        model.load_weights(path)
    assert "\n" not in str(err.value), what
    assert any(w in str(err.value) for w in ("shapes", "chunks", "filter", "type", ":1")), str(err.value)


def test_run_weights_file_larger_than_its_config_needs(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    attacks.safetensors_with_extra(run, 8)
    with pytest.raises(ModelFileError, match="bytes, more than the .* allowed"):
        digitnet.load(run)
    assert digitnet.load(trained_run).spec.sizes == [784, 64, 64, 10]  # the file as written loads


def test_unbuilt_model_is_not_sized_by_a_barely_written_kernel(tmp_path):
    """A 20 KB file whose first kernel declares (2000000, 64), one chunk written: an unbuilt
    model would take its input size from it and build and read a 512 MB layer."""
    import h5py
    import numpy as np

    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        first = f.create_group("layers").create_group("dense").create_group("vars")
        kernel = first.create_dataset("0", shape=(2_000_000, 64), dtype="f4", chunks=(1024, 64),
                                      compression="gzip")
        kernel[:1024] = 0.1
        first.create_dataset("1", data=np.zeros(64, np.float32))
        last = f["layers"].create_group("dense_1").create_group("vars")
        last.create_dataset("0", data=np.zeros((64, 10), np.float32))
        last.create_dataset("1", data=np.zeros(10, np.float32))
        f.create_group("vars")
    model = keras.Sequential([keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    rss, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
    with pytest.raises(DigitnetError, match="refusing more than 200:1"):
        model.load_weights(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 64 << 10
    assert time.process_time() - t0 < 1.0
