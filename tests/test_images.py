"""User images → MNIST form, on synthetic drawings and on MNIST digits re-drawn as uploads."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from digitnet.data.images import load_digit, mnist_form
from digitnet.errors import DataError


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def upload_from_mnist(digit: np.ndarray, size: int = 300, offset=(40, 90), angle: float = 0,
                      fmt: str = "PNG") -> bytes:
    """An MNIST digit as a user would photograph it: dark ink on light paper, off-centre."""
    ink = Image.fromarray(255 - digit).resize((140, 140), Image.Resampling.BICUBIC)
    ink = ink.rotate(angle, fillcolor=255)
    paper = Image.new("L", (size, size), 235)
    paper.paste(ink, offset)
    return png_bytes(paper.filter(ImageFilter.GaussianBlur(1)), fmt)


def test_a_drawn_stroke_is_cropped_scaled_and_centred():
    img = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(img).line([(60, 40), (80, 240)], fill=0, width=12)  # a "1", off-centre
    out = load_digit(png_bytes(img))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    rows, cols = np.nonzero(out > 50)
    assert rows.max() - rows.min() + 1 <= 21  # the longer side fits 20 px
    ys, xs = np.indices(out.shape)
    cy, cx = (ys * out).sum() / out.sum(), (xs * out).sum() / out.sum()
    # MNIST's own digits have their centre of mass at (14.0, 14.0) on average; an integer
    # shift can miss that by half a pixel.
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert out[0].max() == 0 and out[:, 0].max() == 0  # background is black


def test_transparent_rgba_is_composited_on_white():
    img = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # fully transparent "black"
    ImageDraw.Draw(img).ellipse([50, 40, 150, 160], outline=(0, 0, 0, 255), width=14)
    out = load_digit(png_bytes(img))
    assert out[14, 14] < 60  # the hole of the "0" stays dark
    assert out.max() == 255


def test_uploads_of_mnist_digits_are_recognised(trained_model, mnist):
    hits, n = 0, 40
    for i in range(n):
        data = upload_from_mnist(mnist.x_test[i], angle=(i % 5) - 2,
                                 fmt="JPEG" if i % 2 else "PNG")
        hits += int(trained_model.predict(load_digit(data))[0] == mnist.y_test[i])
    assert hits / n >= 0.85, hits


def test_mnist_digits_survive_the_transform_unchanged_in_class(trained_model, mnist):
    redone = np.stack([mnist_form(d.astype(float)) for d in mnist.x_test[:200]])
    acc = (trained_model.predict(redone) == mnist.y_test[:200]).mean()
    assert acc >= 0.9


@pytest.mark.parametrize("data,message", [
    (b"not an image", "not a readable image"),
    (png_bytes(Image.new("L", (50, 50), 255)), "no digit found"),
    (png_bytes(Image.new("L", (50, 50), 255))[:60], "corrupt image|not a readable"),
])
def test_bad_images_give_clear_errors(data, message):
    with pytest.raises(DataError, match=message):
        load_digit(data)
