"""The MNIST-form pipeline (digitnet.data.images) on realistic uploads made from MNIST test
digits: paper and pens, off-centre on large canvases, rotation, blur and noise, JPEG, RGBA,
thick and thin strokes, uneven light."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.uploads import STYLES, make_upload
from digitnet.data.images import ImageTooLarge, load_digit

N = 30  # digits per style; the full measurement is bench/user_images.py


@pytest.fixture(scope="module")
def uploads(mnist):
    rng = np.random.default_rng(2024)
    idx = rng.choice(len(mnist.y_test), N, replace=False)
    return idx, {s: [make_upload(mnist.x_test[i], s, rng) for i in idx] for s in STYLES}


@pytest.fixture(scope="module")
def seen(uploads):
    return {s: np.stack([load_digit(f) for f in files]) for s, files in uploads[1].items()}


def test_files_are_what_users_send(uploads):
    formats = {s: {Image.open(io.BytesIO(f)).format for f in files} for s, files in uploads[1].items()}
    modes = {s: {Image.open(io.BytesIO(f)).mode for f in files} for s, files in uploads[1].items()}
    assert formats["jpeg"] == formats["photo"] == {"JPEG"} and formats["paper"] == {"PNG"}
    assert modes["rgba"] == {"RGBA"} and modes["jpeg"] == {"RGB"}
    sizes = [Image.open(io.BytesIO(f)).size for f in uploads[1]["offcentre"]]
    assert min(w for w, _ in sizes) >= 500


def test_output_is_in_mnist_form(seen):
    for style, x in seen.items():
        assert x.shape == (N, 28, 28) and x.dtype == np.uint8, style
        for img in x:
            rows, cols = np.nonzero(img)
            assert max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20, 21), style  # fit to a 20×20 box
            mass = img.astype(float) / img.sum()
            ys, xs = np.indices(img.shape)
            assert abs((ys * mass).sum() - 14) < 0.75 and abs((xs * mass).sum() - 14) < 0.75, style
            assert img.max() > 200 and (img == 0).mean() > 0.5, style  # white on black, like MNIST


def test_model_reads_realistic_uploads(model, mnist, uploads, seen):
    idx, _ = uploads
    truth = mnist.y_test[idx]
    clean = (model.predict(mnist.x_test[idx]) == truth).mean()
    accuracy = {s: float((model.predict(x) == truth).mean()) for s, x in seen.items()}
    overall = np.mean(list(accuracy.values()))
    assert overall >= clean - 0.05, accuracy
    assert min(accuracy.values()) >= 0.8, accuracy


def test_placement_does_not_matter(mnist):
    """The same drawing anywhere on a page, on uneven light, gives the same 28×28 image."""
    digit = Image.fromarray(255 - mnist.x_test[0]).resize((120, 120), Image.Resampling.BICUBIC)
    outs = []
    for at in [(20, 30), (400, 250), (250, 40)]:
        page = Image.new("L", (640, 480), 235)
        light = np.linspace(1.0, 0.7, 640)[None, :] * np.ones((480, 1))
        page.paste(digit, at)
        arr = np.asarray(page, float) * light
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8)).save(buf, "PNG")
        outs.append(load_digit(buf.getvalue()).astype(int))
    assert max(np.abs(outs[0] - o).mean() for o in outs[1:]) < 8


def test_light_ink_on_transparent_background(mnist):
    """White strokes on a transparent canvas: the transparency becomes black, not white."""
    rgba = np.zeros((112, 112, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = np.asarray(Image.fromarray(mnist.x_test[0]).resize((112, 112)))
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    dark = rgba.copy()
    dark[..., :3] = 0
    buf2 = io.BytesIO()
    Image.fromarray(dark, "RGBA").save(buf2, "PNG")
    np.testing.assert_array_equal(load_digit(buf.getvalue()), load_digit(buf2.getvalue()))


def test_pixel_limit_is_checked_before_decoding():
    buf = io.BytesIO()
    Image.new("L", (3000, 2000), 255).save(buf, "PNG")
    with pytest.raises(ImageTooLarge, match="3000×2000"):
        load_digit(buf.getvalue(), max_pixels=5_000_000)
