"""Realistic user uploads made from MNIST digits, to test and measure the image pipeline.

Each style turns a 28×28 MNIST digit (white on black) into the kind of file a person sends:
a pen drawing photographed or scanned on paper, a drawing exported from an app. The digit's
label is known, so the accuracy of model ∘ images.load_digit on these files can be measured.
"""

from __future__ import annotations

import io

import numpy as np

STYLES = ("paper", "offcentre", "rotated", "blur_noise", "jpeg", "rgba", "thick", "thin", "photo")


def ink_map(digit: np.ndarray, height: int, stroke: int = 0):
    """The digit upscaled to `height` px as an ink mask (PIL "L", 255 = ink). stroke > 0
    thickens the pen, < 0 thins it (max/min filter at 4× resolution, before the final size)."""
    from PIL import Image, ImageFilter

    big = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    if stroke:
        size = 2 * abs(stroke) + 1
        big = big.filter(ImageFilter.MaxFilter(size) if stroke > 0 else ImageFilter.MinFilter(size))
    return big.resize((height, height), Image.Resampling.BICUBIC)


def compose(ink, canvas: tuple[int, int], at: tuple[int, int], paper: float, pen: float,
            rng: np.random.Generator, blur: float = 0.0, noise: float = 0.0,
            shading: float = 0.0) -> np.ndarray:
    """Ink laid on paper: a float (H, W) gray image; optional blur, sensor noise, uneven light."""
    from PIL import Image, ImageFilter

    mask = Image.new("L", canvas, 0)
    mask.paste(ink, at)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(mask, np.float64) / 255.0
    gray = paper * (1 - a) + pen * a
    if shading:  # light falling off across the page
        ramp = np.linspace(0, 1, canvas[0])[None, :] * np.linspace(0.5, 1, canvas[1])[:, None]
        gray = gray * (1 - shading * ramp)
    if noise:
        gray = gray + rng.normal(0, noise, gray.shape)
    return np.clip(gray, 0, 255)


def encode(gray: np.ndarray, fmt: str = "PNG", quality: int = 90, color=None) -> bytes:
    """Gray image → file bytes; `color` tints the ink (a blue ballpoint) in an RGB file."""
    from PIL import Image

    img = Image.fromarray(np.rint(gray).astype(np.uint8), "L")
    if color is not None:
        t = np.asarray(img, np.float64)[..., None] / 255.0
        rgb = t * 255 + (1 - t) * np.asarray(color, np.float64)
        img = Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_upload(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """One file in `style` (see STYLES) made from one MNIST digit."""
    from PIL import Image

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    paper, pen = rng.uniform(200, 250), rng.uniform(10, 70)
    height = int(rng.integers(90, 160))
    stroke = {"thick": 2, "thin": -1}.get(style, 0)
    ink = ink_map(digit, height, stroke)
    if style in ("rotated", "photo"):
        ink = ink.rotate(rng.uniform(-15, 15), Image.Resampling.BICUBIC, expand=True)
    if style in ("offcentre", "photo"):
        canvas = (int(rng.integers(500, 900)), int(rng.integers(400, 700)))
    else:
        canvas = (ink.width + 2 * int(rng.integers(20, 60)), ink.height + 2 * int(rng.integers(20, 60)))
    at = (int(rng.integers(0, canvas[0] - ink.width)), int(rng.integers(0, canvas[1] - ink.height)))
    if style not in ("offcentre", "photo"):
        at = ((canvas[0] - ink.width) // 2, (canvas[1] - ink.height) // 2)
    if style == "rgba":  # an app's export: black strokes on a transparent background
        rgba = np.zeros((canvas[1], canvas[0], 4), np.uint8)
        mask = Image.new("L", canvas, 0)
        mask.paste(ink, at)
        rgba[..., 3] = np.asarray(mask)
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
        return buf.getvalue()
    noisy = style in ("blur_noise", "photo")
    gray = compose(ink, canvas, at, paper, pen, rng,
                   blur=rng.uniform(1.0, 2.5) if noisy else 0.0,
                   noise=rng.uniform(4, 12) if noisy else 0.0,
                   shading=rng.uniform(0.1, 0.3) if style == "photo" else 0.0)
    if style in ("jpeg", "photo"):
        return encode(gray, "JPEG", int(rng.integers(40, 85)), color=(20, 40, 160))
    return encode(gray)
