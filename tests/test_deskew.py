"""Deskewing (digitnet.deskew) against scipy.ndimage as an independent reference, and what it
claims: a slanted stroke comes out upright and centred, and training sees the same pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

import digitnet
from digitnet.deskew import deskew, deskew_dataset
from digitnet.errors import ConfigError
from digitnet.model import MLPSpec


def moments(img: np.ndarray) -> tuple[float, float, float]:
    """(row centre, column centre, slant cov/var_r) of an image, in float64."""
    r, c = np.mgrid[: img.shape[0], : img.shape[1]]
    m = img.sum()
    rm, cm = (img * r).sum() / m, (img * c).sum() / m
    var_r = (img * (r - rm) ** 2).sum() / m
    return rm, cm, (img * (r - rm) * (c - cm)).sum() / m / var_r


def scipy_deskew(img: np.ndarray) -> np.ndarray:
    """The textbook recipe: output[o] = input[A·o + offset] with A = [[1, 0], [α, 1]], mapping
    the image centre onto the centre of mass."""
    rm, cm, alpha = moments(img.astype(np.float64))
    a = np.array([[1.0, 0.0], [alpha, 1.0]])
    centre = (np.array(img.shape) - 1) / 2
    offset = np.array([rm, cm]) - a @ centre
    # grid-constant: outside the image reads 0 and is interpolated with the edge pixels
    out = ndimage.affine_transform(img.astype(np.float64), a, offset=offset, order=1,
                                   mode="grid-constant", cval=0.0)
    return np.round(np.clip(out, 0, 255))


def test_matches_scipy_on_real_digits(mnist):
    x = mnist.x_test[:200]
    ours = np.asarray(deskew(x))
    ref = np.stack([scipy_deskew(img) for img in x])
    # float32 vs float64 moments: a rounded pixel may land one step apart, rarely.
    assert np.abs(ours - ref).max() <= 1
    assert (ours != ref).mean() < 1e-3


def test_a_slanted_bar_comes_out_upright_and_centred():
    img = np.zeros((28, 28), np.uint8)
    for row in range(4, 22):  # a stroke leaning right by 0.4 columns per row, off-centre
        col = 6 + 0.4 * (row - 4)
        img[row, int(col) : int(col) + 3] = 255
    assert abs(moments(img.astype(float))[2]) > 0.3
    rm, cm, slant = moments(np.asarray(deskew(img[None]))[0])
    assert abs(slant) < 0.05
    assert abs(rm - 13.5) < 0.5 and abs(cm - 13.5) < 0.5


def test_upright_centred_image_is_unchanged_and_blank_stays_blank():
    img = np.zeros((28, 28), np.uint8)
    img[9:19, 12:16] = 200  # symmetric: centre (13.5, 13.5), no slant
    np.testing.assert_array_equal(np.asarray(deskew(img[None]))[0], img)
    assert np.asarray(deskew(np.zeros((2, 28, 28), np.uint8))).sum() == 0


def test_dataset_blocks_equal_one_call(mnist):
    x = mnist.x_test[:10_500]  # crosses a block boundary
    whole = np.asarray(deskew(x))
    blocks = np.asarray(deskew_dataset(x))
    assert blocks.dtype == np.uint8
    # Separately compiled programs sum the moments in different orders: a pixel on the edge
    # of .5 may round the other way, nothing more.
    assert np.abs(blocks - whole).max() <= 1 and (blocks != whole).mean() < 1e-4


@pytest.mark.slow
def test_deskewed_model_trains_saves_and_loads(mnist, tmp_path):
    small = dataclasses.replace(mnist, x_train=mnist.x_train[:3000], y_train=mnist.y_train[:3000])
    cfg = digitnet.TrainConfig(epochs=1, batch_size=256, validation="none")
    model = digitnet.fit(MLPSpec(hidden=(32,), deskew=True, preprocess="unit"), cfg,
                         dataset=small, out=tmp_path / "run", verbose=False)
    loaded = digitnet.load(tmp_path / "run")
    assert loaded.spec.deskew and "deskew" in loaded.summary()
    np.testing.assert_array_equal(loaded.logits(mnist.x_test[:500]), model.logits(mnist.x_test[:500]))
    # Training deskews its data once, up front: the same weights as a plain model trained on
    # images deskewed beforehand.
    pre = dataclasses.replace(small, x_train=np.asarray(deskew_dataset(small.x_train)))
    plain = digitnet.fit(MLPSpec(hidden=(32,), preprocess="unit"), cfg, dataset=pre, verbose=False)
    for a, b in zip(model.params, plain.params, strict=True):
        np.testing.assert_array_equal(np.asarray(a["kernel"]), np.asarray(b["kernel"]))


def test_needs_2d_raw_pixels():
    with pytest.raises(ConfigError, match="deskew needs 2-D images"):
        MLPSpec(input_shape=(784,), deskew=True)
    with pytest.raises(ConfigError, match="deskew needs 2-D images"):
        MLPSpec(deskew=True, preprocess="none")
