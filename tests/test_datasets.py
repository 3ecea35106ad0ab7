"""Datasets: the embedded MNIST is the real set; any folder of IDX files trains; datasets CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import digitnet
from digitnet.cli import main
from digitnet.data import datasets
from digitnet.data.datasets import FILES, load_dataset
from digitnet.data.idx import write_idx
from digitnet.errors import DataError
from digitnet.train import TrainConfig

# From /work/shared/data/mnist/README.md (the provenance of the embedded copy).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
UNCOMPRESSED_SHA256 = {
    "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def test_embedded_mnist_is_the_real_set(mnist):
    ds = mnist
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == TEST_COUNTS
    assert ds.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert ds.sha256 == UNCOMPRESSED_SHA256
    assert ds.describe()["num_classes"] == 10 and datasets.status("mnist") == "embedded"


def test_embedded_files_match_their_shipped_sha256sums():
    sums = (datasets.embedded_dir() / "SHA256SUMS").read_text().split()
    shipped = dict(zip(sums[1::2], sums[0::2], strict=True))
    pinned = {f.name: f.sha256 for f in datasets.REGISTRY["mnist"].files.values()}
    assert pinned == shipped
    assert all(problem is None for problem in datasets.verify("mnist").values())


def test_every_registered_set_pins_four_files_and_real_mirrors():
    for name, entry in datasets.REGISTRY.items():
        assert set(entry.files) == set(FILES), name
        for f in entry.files.values():
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0 and f.size > 1000
        assert all(m.startswith(("http://", "https://")) and m.endswith("/") for m in entry.mirrors)
        assert entry.embedded == (name == "mnist") and len(entry.classes) == 10
    assert len(datasets.REGISTRY["fashion-mnist"].mirrors) >= 2


def test_a_corrupt_copy_of_pinned_files_fails_to_load_naming_the_file(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(datasets.embedded_dir(), folder)
    victim = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match="is not the pinned") as err:
        datasets.read_folder(folder, "mnist", pins=datasets.REGISTRY["mnist"].files)
    assert str(victim) in str(err.value)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match="known: mnist, fashion-mnist, kmnist .*--data-dir"):
        load_dataset("emnist-letters")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A synthetic MNIST-format set unlike MNIST: 12×12 images, 3 classes (a bar's position)."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("tiny")

    def make(n: int):
        y = rng.integers(0, 3, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 12, 12)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, :, 4 * label : 4 * label + 4] = 230  # a vertical bar in third `label`
        return x, y

    # Whole batches of 32 only: a last partial batch would cost one more XLA compile per fit.
    (xtr, ytr), (xte, yte) = make(640), make(96)
    for role, array in {"train_images": xtr, "train_labels": ytr,
                        "test_images": xte, "test_labels": yte}.items():
        write_idx(folder / FILES[role], array)  # raw, uncompressed IDX
    return folder


def test_data_dir_with_other_size_and_classes_trains_from_python(tiny_dir):
    ds = load_dataset(path=tiny_dir)
    assert ds.image_shape == (12, 12) and ds.num_classes == 3 and ds.name == tiny_dir.name
    model = digitnet.fit(config=TrainConfig(epochs=1), data_dir=tiny_dir, verbose=False)
    assert model.spec.input_shape == (12, 12) and model.spec.num_classes == 3
    assert model.config["metrics"]["test_accuracy"] >= 0.9
    proba = model.predict_proba(ds.x_test[:4])
    assert proba.shape == (4, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (model.predict(ds.x_test) == ds.y_test).mean() >= 0.9


def test_data_dir_trains_and_predicts_from_the_cli(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(tiny_dir), "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["predict", str(out), "--indices", "0:6", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and all(len(r["probabilities"]) == 3 for r in rows)
    assert sum(r["label"] == r["true"] for r in rows) >= 5
    write_idx(tmp_path / "few-idx3-ubyte", load_dataset(path=tiny_dir).x_test[:2])
    assert main(["predict", str(out), str(tmp_path / "few-idx3-ubyte")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_datasets_show_writes_a_png_grid(tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["datasets", "show", "mnist", "--count", "40", "--out", str(png)]) == 0
    assert "40 test images of mnist" in capsys.readouterr().out
    with Image.open(png) as img:
        img.load()
        assert img.format == "PNG" and img.size == (1000, 480)
        # Dark digits on a white page: mostly white, some black ink.
        gray = np.asarray(img.convert("L"))
        assert (gray > 250).mean() > 0.7 and (gray < 50).mean() > 0.02


def test_datasets_show_from_a_data_dir_and_bad_count(tiny_dir, tmp_path, capsys):
    png = tmp_path / "tiny.png"
    assert main(["datasets", "show", "--data-dir", str(tiny_dir), "--split", "train",
                 "--count", "3", "--out", str(png)]) == 0
    with Image.open(png) as img:
        assert img.size == (300, 120)
    assert main(["datasets", "show", "--count", "0"]) == 2
    assert "--count must be at least 1" in capsys.readouterr().err


def test_datasets_list_and_verify_in_an_empty_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path))
    assert main(["datasets", "list"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert rows == {"mnist": "embedded", "fashion-mnist": "missing", "kmnist": "missing"}
    assert main(["datasets", "verify", "mnist"]) == 0
    assert main(["datasets", "verify", "fashion-mnist"]) == 2
    assert "4 of 4 files missing or corrupt" in capsys.readouterr().err


def test_loaded_arrays_are_read_only():
    # load_dataset's result is cached and shared: a write into it would leak into later runs.
    ds = load_dataset("mnist")
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 0


def test_unpacked_cache_is_verified_reused_and_rebuilt(tmp_path, monkeypatch, mnist):
    """A known set is cached gunzipped in the home with a manifest; each load re-hashes it;
    damage, a missing manifest or a changed pin sends the load back to the pinned files."""
    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path))
    pins = datasets.REGISTRY["mnist"].files
    folder = datasets.unpacked_dir("mnist")
    assert datasets.read_unpacked("mnist", pins) is None  # nothing cached yet
    fresh = datasets._load("mnist")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES.values(), "manifest.json"])
    cached = datasets.read_unpacked("mnist", pins)
    assert cached is not None and cached.sha256 == fresh.sha256 == mnist.sha256
    for a, b in [(cached.x_train, mnist.x_train), (cached.y_train, mnist.y_train),
                 (cached.x_test, mnist.x_test), (cached.y_test, mnist.y_test)]:
        assert a.dtype == b.dtype and np.array_equal(a, b)

    images = folder / FILES["train_images"]
    data = bytearray(images.read_bytes())
    data[5000] ^= 1  # one flipped bit
    images.write_bytes(bytes(data))
    assert datasets.read_unpacked("mnist", pins) is None
    assert datasets._load("mnist").sha256 == mnist.sha256  # from the .gz files, and re-cached
    assert datasets.read_unpacked("mnist", pins) is not None

    other = {**pins, "test_labels": datasets.RemoteFile("x.gz", 1, "0" * 64)}
    assert datasets.read_unpacked("mnist", other) is None  # cached from other sources
    (folder / "manifest.json").write_text("{not json")
    assert datasets.read_unpacked("mnist", pins) is None


def test_an_unwritable_home_still_loads(tmp_path, monkeypatch, mnist):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DIGITNET_HOME", str(blocker))  # a file: no folder can be made in it
    assert datasets._load("mnist").sha256 == mnist.sha256


def test_prefetch_hands_its_result_to_load_dataset(tmp_path, monkeypatch, mnist):
    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path))
    load_dataset.cache_clear()
    try:
        datasets.prefetch("mnist")
        pending = datasets._prefetched["mnist"]
        ds = load_dataset("mnist")
        assert "mnist" not in datasets._prefetched and pending.result() is ds
        assert ds.sha256 == mnist.sha256
        datasets.prefetch("fashion-mnist")  # not here: a download is never started in a thread
        assert "fashion-mnist" not in datasets._prefetched
    finally:
        load_dataset.cache_clear()
