"""What a user passes to Model.predict / Model.evaluate: arrays, already-scaled arrays, image
file paths, dataset names; the wrong things get a one-line error that says what to do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from digitnet.errors import ConfigError


def test_scaled_pixels_warn_and_raw_pixels_do_not(trained_model, mnist):
    x = mnist.x_test[:50]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained_model.predict(x)
        trained_model.predict(x.astype(np.float32))  # raw pixels as floats: fine
        trained_model.predict(np.zeros((2, 28, 28), np.float32))  # blank: nothing to judge
    with pytest.warns(UserWarning, match=r"already scaled.*pass x, not x / 255") as rec:
        trained_model.predict(x / 255)
    assert rec[0].filename == __file__  # points at the user's line, not digitnet's
    with pytest.warns(UserWarning, match="already scaled"):
        trained_model.evaluate(x / 255 - 0.5, mnist.y_test[:50])


def test_predict_accepts_image_paths(trained_model, mnist, tmp_path):
    paths = []
    for i in range(3):  # dark ink on white paper, larger than 28×28: what a user photographs
        p = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - mnist.x_test[i]).resize((112, 112)).save(p)
        paths.append(p)
    from digitnet.data.images import load_digit

    expected = trained_model.predict(np.stack([load_digit(p) for p in paths]))
    assert trained_model.predict(str(paths[0])).tolist() == expected[:1].tolist()
    assert trained_model.predict(paths).tolist() == expected.tolist()
    assert trained_model.predict_proba([str(p) for p in paths]).shape == (3, 10)
    assert expected.tolist() == mnist.y_test[:3].tolist()


def test_predict_explains_what_is_wrong(trained_model, tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.png: no such image file"):
        trained_model.predict(str(tmp_path / "nope.png"))
    with pytest.raises(ConfigError, match=r"is a dataset: use model.evaluate\('fashion-mnist'\)"):
        trained_model.predict("fashion-mnist")
    with pytest.raises(ConfigError, match="pixel values .* or image file paths"):
        trained_model.predict(np.array([{"a": 1}]))


def test_evaluate_accepts_a_dataset_name_folder_or_dataset(trained_model, mnist, small_data):
    from digitnet import load_dataset

    default = trained_model.evaluate()
    assert trained_model.evaluate("mnist").accuracy == default.accuracy
    assert trained_model.evaluate(mnist).accuracy == default.accuracy
    small = trained_model.evaluate(small_data)  # the first 500 test images as an IDX folder
    ref = trained_model.evaluate(mnist.x_test[:500], mnist.y_test[:500])
    assert small.accuracy == ref.accuracy and int(small.confusion.sum()) == 500
    assert load_dataset(path=small_data).x_test.shape == (500, 28, 28)


def test_evaluate_explains_what_is_wrong(trained_model, mnist):
    with pytest.raises(ConfigError, match="not a dataset name .*mnist.* nor a folder"):
        trained_model.evaluate("minst")
    with pytest.raises(ConfigError, match="needs labels"):
        trained_model.evaluate(mnist.x_test[:10])
    with pytest.raises(ConfigError, match="one per image"):
        trained_model.evaluate(mnist.x_test[:10], mnist.y_test[:9])
