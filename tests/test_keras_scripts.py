"""Public Keras MLP scripts (tests/fixtures/keras/scripts/) run on digitnet.keras with only their
import lines changed, against what real Keras 3 printed running them
(tests/fixtures/keras/scripts_keras_quick.json, from scripts/keras_scripts.py --quick: every
fit trained for one epoch, on a fifth of MNIST: --small).

Compared: the script runs to the end; the lines Keras itself prints (progress bars and lines,
summaries, callbacks' messages), numbers masked, in the same order; and the test accuracy
reached, within six points (the random draws differ). Fashion-MNIST comes through digitnet's
dataset registry from a mirror on 127.0.0.1 serving small synthetic IDX files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from digitnet import keras
from digitnet.data import datasets
from digitnet.data.datasets import FILES, RemoteFile
from digitnet.data.idx import encode_idx
from scripts.keras_scripts import SCRIPTS, digitnet_source, keras_lines, run_script
from tests.test_download import MirrorServer

KERAS = json.loads((Path(__file__).parent / "fixtures/keras/scripts_keras_quick.json").read_text())


BAR_COUNT = re.compile(r"^( *)(\d+)/(\d+) ")


def bar_count(line: str) -> str:
    """A bar's `current/total`, right-aligned to the total's width, as `#/#`. Which step a bar
    that a callback's message interrupts last showed depends on timing (it redraws at most every
    50 ms), and with it the padding (` 1/25`, `12/25`); a misaligned count is marked, so that it
    still fails the comparison."""
    m = BAR_COUNT.match(line)
    if not m:
        return line
    if len(m[1] + m[2]) == len(m[3]) and int(m[2]) <= int(m[3]):
        return "#/# " + line[m.end():]
    return "misaligned: " + line


def masked(lines: list[str]) -> list[str]:
    lines = [bar_count(line) for line in lines]
    lines = [re.sub(r"\b([a-z]+(?:_[a-z]+)*)_\d+\b", r"\1", line) for line in lines]
    lines = [re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", line) for line in lines]
    lines = [re.sub(r"#(s|ms|us)/step", "#/step", line) for line in lines]
    lines = [re.sub(r"#(:#)+ ", "#s ", line) for line in lines]  # a bar's time past a minute
    return [re.sub(r" +", " ", line) for line in lines]  # column widths follow the names


@pytest.fixture
def fashion_mirror(tmp_path, monkeypatch):
    """fashion-mnist in the registry, served from 127.0.0.1: 28×28 synthetic images (more
    training images than the 5,000 Géron's chapter 10 holds out for validation)."""
    rng = np.random.default_rng(3)
    arrays = {"train_images": rng.integers(0, 256, (5120, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 5120).astype(np.uint8),
              "test_images": rng.integers(0, 256, (16, 28, 28), dtype=np.uint8),
              "test_labels": np.arange(16, dtype=np.uint8) % 10}
    served = {f"{FILES[r]}.gz": gzip.compress(encode_idx(a), mtime=0) for r, a in arrays.items()}
    server = MirrorServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for name, body in served.items():
        server.plan[f"/m/{name}"] = [("ok", body)]
    pins = {role: RemoteFile(f"{stem}.gz", len(served[f"{stem}.gz"]),
                             hashlib.sha256(served[f"{stem}.gz"]).hexdigest())
            for role, stem in FILES.items()}
    monkeypatch.setenv("DIGITNET_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(datasets.REGISTRY, "fashion-mnist",
                        dataclasses.replace(datasets.REGISTRY["fashion-mnist"], files=pins,
                                            mirrors=(server.url("m"),)))
    datasets.load_dataset.cache_clear()
    yield server
    datasets.load_dataset.cache_clear()
    server.shutdown()
    server.server_close()


def test_bar_counts_mask_the_step_but_not_the_alignment():
    bar = "━━━━━━━━━━━━━━━━━━━━ 2:22 6s/step - loss: 2.3361"
    assert masked([f" 1/25 {bar}"]) == masked([f"12/25 {bar}"]) == masked([f"25/25 {bar}"])
    assert masked([f"1/25 {bar}"]) != masked([f" 1/25 {bar}"])  # unpadded: Keras pads the count
    assert masked([f"  1/25 {bar}"]) != masked([f" 1/25 {bar}"])
    assert masked(["Epoch 1/5"]) == ["Epoch #/#"]


def test_only_import_lines_change():
    for path in SCRIPTS.glob("*.py"):
        before, after = path.read_text().splitlines(), digitnet_source(path.read_text()).splitlines()
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert changed and all("import" in a and "digitnet" in b for a, b in changed), path.name


# Recorded and run by scripts/keras_scripts.py, not here: optimizers_compare trains 19 models
# (each optimizer compiles its own step); tests/keras_oracle's `optimizers` scenario checks each
# optimizer and option against Keras' updates instead, in a fraction of the time.
NOT_HERE = ("optimizers_compare",)
# Fashion-MNIST: synthetic images here, the real ones (or MNIST standing in) for Keras.
SYNTHETIC = ("tf_basic_classification", "geron_homl3_ch10_fashion")


@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.py") if p.stem not in NOT_HERE))
@pytest.mark.slow
def test_public_script_runs_as_on_keras(name, fashion_mirror):
    keras.utils.clear_session()
    want = KERAS[name]
    assert "error" not in want, want.get("traceback")
    path = SCRIPTS / f"{name}.py"
    got = run_script(path, keras, digitnet_source(path.read_text()), quick=True, small=True)
    assert "error" not in got, got.get("traceback")
    assert masked(keras_lines(got["lines"])) == masked(keras_lines(want["lines"]))
    if name not in SYNTHETIC:
        # One epoch on 12,000 images leaves a model early in training, where the random draws
        # move test accuracy by a few points (both sides' runs to the end: docs/keras.md).
        assert got["accuracy"] > want["accuracy"] - 0.06, (got["accuracy"], want["accuracy"])


# Public-style scripts that use what digitnet.keras does not run: each must stop at that line
# with a one-line ValueError naming the feature (Keras runs them; TensorBoard needs TensorFlow).
REFUSED = Path(__file__).parent / "fixtures/keras/refused"
REFUSALS = {
    "steps_per_epoch": "fit: steps_per_epoch is not supported",
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_unsupported_script_is_refused_in_one_line(name):
    keras.utils.clear_session()
    path = REFUSED / f"{name}.py"
    got = run_script(path, keras, digitnet_source(path.read_text()), quick=True, small=True)
    kind, message = got["error"]
    assert issubclass(getattr(keras.errors, kind), ValueError), got["traceback"]
    assert message.startswith(REFUSALS[name]) and "\n" not in message, message
    # The refusal comes at the script's line that uses the feature, before any training.
    assert not any(line.startswith("Epoch") for line in got["lines"]), got["lines"]


def test_refused_scripts_are_all_tested():
    assert sorted(p.stem for p in REFUSED.glob("*.py")) == sorted(REFUSALS)


def test_tensorflow_keras_imports_are_rewritten_on_both_sides():
    from scripts.keras_scripts import keras_source

    source = ("from tensorflow import keras\nfrom tensorflow.keras import layers\n"
              "from tensorflow.keras.models import Sequential\nimport tensorflow as tf\n")
    assert digitnet_source(source).splitlines() == [
        "from digitnet import keras", "from digitnet.keras import layers",
        "from digitnet.keras.models import Sequential", "import tensorflow as tf"]
    assert keras_source(source).splitlines() == [
        "import keras", "from keras import layers", "from keras.models import Sequential",
        "import tensorflow as tf"]
