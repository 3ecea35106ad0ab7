"""Run public Keras MLP scripts (tests/fixtures/keras/scripts/*.py) on real Keras 3 or on
digitnet.keras, changing only their import lines, and record what they print and reach.

    # Keras' side (its own environment; Keras is never a digitnet dependency):
    KERAS_BACKEND=jax /work/peers/keras-jax/bin/python scripts/keras_scripts.py keras OUT.json \\
        --mnist /work/shared/data/mnist --fashion DIR [--quick]
    # digitnet's side:
    PYTHONPATH=src python scripts/keras_scripts.py digitnet OUT.json [--quick]

On Keras' side, `keras.datasets.{mnist,fashion_mnist}.load_data` read local IDX files (there is
no network here); on digitnet's they are digitnet's own (MNIST embedded, Fashion-MNIST through
the dataset registry). --quick trains every `fit` for one epoch (what the tests compare);
--small gives the scripts a fifth of each dataset (12,000 training and 2,000 test images), to
keep the tests short.
`from tensorflow import keras` / `from tensorflow.keras… import` lines become digitnet.keras
imports on digitnet's side and Keras 3 ones on Keras' (tf.keras is Keras 3 from TensorFlow 2.16).
Each script's entry holds its printed lines, the test accuracy it reached, and any error;
keras_lines() picks the lines Keras itself prints.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parents[1] / "tests/fixtures/keras/scripts"
# The test accuracy each script ends with, read from its variables when it is done.
ACCURACY = {
    "tf_quickstart_beginner": "model.evaluate(x_test, y_test, verbose=0)[1]",
    "tf_basic_classification": "test_acc",
    "chollet_ch2_mnist": "test_acc",
    "keras_io_functional_api": "model.evaluate(x_test, y_test, verbose=0)[1]",
    "keras_io_training_builtin": "results[1]",
    "keras_mnist_mlp": "score[1]",
    "tf_save_and_load": "acc",
    "chollet_ch5_fundamentals": "history_large_model.history['val_accuracy'][-1]",
    "chollet_ch7_keras_deep_dive": "model.evaluate(test_images, test_labels, verbose=0)[1]",
    "geron_homl3_ch10_fashion": "test_results[1]",
    "geron_homl3_ch10_mnist_exercise": "test_results[1]",
    "gulli_keras_mnist_v4": "score[1]",
    "brownlee_baseline_mlp": "scores[1]",
    "sentdex_basics": "val_acc",
    "optimizers_compare": "final_acc",
    "kaggle_mlp_callbacks": "test_acc",
    "keras_io_serialization": "test_acc",
    "tf_quickstart_saved": "acc",
    "tf_keras_import_mlp": "test_acc",
    "subclassed_mlp": "acc",
    "functional_rescaling": "results['sparse_categorical_accuracy']",
    "normalization_adapt": "test_acc",
    "callbacks_logging": "accuracy",
    "exponential_decay_onehot": "score[1]",
    "save_h5_reload": "acc",
    "keras2_style_np_utils": "score[1]",
    "regularized_initializers": "test_acc",
    "binary_even_odd": "test_acc",
    "class_weight_imbalanced": "test_acc",
    "keras_io_imbalanced_binary": "recall_3",
    "tf_imbalanced_data": "test_acc",
    "keras_io_sample_weighting": "results[1]",
    "tf_tensorboard_get_started": "model.evaluate(x_test, y_test, verbose=0)[1]",
    "batchnorm_mlp": "test_acc",
    "kaggle_batchnorm_dropout": "score[1]",
    "geron_homl3_ch11_batchnorm": "test_acc",
}
# The lines Keras itself prints (progress, summaries, callbacks' messages), as opposed to the
# scripts' own prints of arrays, whose layout depends on the values.
KERAS_LINE = re.compile(r"^(Epoch \d+|\s*\d+/\d+ |Model: |[┏┃┡│├└]| (Total|Trainable|Non-trainable) "
                        r"params|Fit model|Evaluate on|Generate pred|predictions shape|test loss|"
                        r"Test (loss|accuracy))")


def keras_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if KERAS_LINE.match(line)]


def digitnet_source(text: str) -> str:
    """The script with its Keras imports pointed at digitnet.keras; nothing else changes."""
    text = re.sub(r"^(\s*)from tensorflow import keras\b", r"\1from digitnet import keras", text, flags=re.M)
    text = re.sub(r"^(\s*)from tensorflow\.keras([. ])", r"\1from keras\2", text, flags=re.M)
    text = re.sub(r"^(\s*)import keras(\s+as\s+\w+)?(\s*#.*)?$", r"\1from digitnet import keras\2\3", text,
                  flags=re.M)
    return re.sub(r"^(\s*)from keras([. ])", r"\1from digitnet.keras\2", text, flags=re.M)


def keras_source(text: str) -> str:
    """The script as Keras 3 runs it without TensorFlow: `from tensorflow import keras` and
    `from tensorflow.keras… import` name Keras 3 itself (tf.keras is Keras 3 from TensorFlow
    2.16 on), so they become `import keras` / `from keras… import`."""
    text = re.sub(r"^(\s*)from tensorflow import keras\b", r"\1import keras", text, flags=re.M)
    return re.sub(r"^(\s*)from tensorflow\.keras([. ])", r"\1from keras\2", text, flags=re.M)


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_loader(folder: Path):
    def load_data(*_, **__):
        def part(stem: str) -> np.ndarray:
            return read_idx(next(folder.glob(stem + "*")))
        return ((part("train-images"), part("train-labels")), (part("t10k-images"), part("t10k-labels")))
    return load_data


def screen(text: str) -> list[str]:
    """Lines as a terminal ends up showing them (the last redraw of each progress bar), without
    colours."""
    lines = [line.split("\r")[-1].replace("\b", "").rstrip() for line in text.split("\n")]
    return [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]


SMALL = (12000, 2000)  # --small: training and test images each dataset gives


def small_loader(load_data):
    def load(*args, **kwargs):
        (x, y), (xt, yt) = load_data(*args, **kwargs)
        return (x[:SMALL[0]], y[:SMALL[0]]), (xt[:SMALL[1]], yt[:SMALL[1]])
    return load


@contextlib.contextmanager
def small_datasets(keras):
    """keras.datasets.{mnist,fashion_mnist}.load_data giving a fifth of the data, meanwhile."""
    modules = (keras.datasets.mnist, keras.datasets.fashion_mnist)
    saved = [m.load_data for m in modules]
    for m, load in zip(modules, saved, strict=True):
        m.load_data = small_loader(load)
    try:
        yield
    finally:
        for m, load in zip(modules, saved, strict=True):
            m.load_data = load


def run_script(path: Path, keras, source: str, quick: bool, small: bool = False) -> dict:
    if small:
        # Scripts that spell out the dataset's size in a reshape get -1 there instead.
        source = re.sub(r"reshape\((\(?)(60000|10000), ", r"reshape(\1-1, ", source)
        with small_datasets(keras):
            return run_script(path, keras, source, quick)
    if quick:
        source = re.sub(r"\b(epochs|EPOCHS|NB_EPOCH|nb_epoch)( ?= ?)\d+", r"\1\g<2>1", source)
    namespace: dict = {"__name__": "__main__"}
    out = io.StringIO()
    result: dict = {}
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(out):
                keras.utils.set_random_seed(0)
                exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the script under test
                result["accuracy"] = float(eval(ACCURACY[path.stem], namespace))  # noqa: S307
        except Exception as exc:  # noqa: BLE001
            result["error"] = [type(exc).__name__, str(exc)[:500]]
            result["traceback"] = traceback.format_exc()[-3000:]
        finally:
            os.chdir(cwd)
    result["seconds"] = round(time.time() - start, 1)
    result["lines"] = screen(out.getvalue())
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=("keras", "digitnet"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--mnist", type=Path)
    parser.add_argument("--fashion", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    if args.side == "keras":
        import keras

        if args.mnist:
            keras.datasets.mnist.load_data = idx_loader(args.mnist)
        if args.fashion:
            keras.datasets.fashion_mnist.load_data = idx_loader(args.fashion)
        version = f"keras {keras.__version__} ({keras.backend.backend()})"
    else:
        from digitnet import keras

        version = "digitnet.keras"
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for path in sorted(SCRIPTS.glob("*.py")):
        if args.only and path.stem not in args.only:
            continue
        source = path.read_text()
        source = digitnet_source(source) if args.side == "digitnet" else keras_source(source)
        result = run_script(path, keras, source, args.quick, args.small)
        result["by"] = version
        results[path.stem] = result
        print(path.stem, result.get("accuracy"), result.get("error"), f"{result['seconds']}s",
              file=sys.stderr)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
