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
    """One file in `style` (see STYLES and PHOTO_STYLES) made from one MNIST digit."""
    from PIL import Image

    if style in PHOTO_STYLES:
        return photo_upload(digit, style, rng)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(ALL_STYLES)}")
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


# Photographs of a digit written on paper (or a board): what a phone's camera adds to the pen.
# They are kept apart from STYLES, whose files (and the serving tests' sample) stay as they were.
PHOTO_STYLES = ("shadow", "texture", "colour", "marker", "fine_pen", "perspective", "ruled",
                "squared", "dark", "tight", "desk", "phone")
ALL_STYLES = STYLES + PHOTO_STYLES
# Where EXIF says to turn the stored pixels (the Orientation tag), the inverse turn that stores
# an upright picture that way.
EXIF_STORE = {3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270"}


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Zero-mean, unit-scale smooth noise of `shape` (H, W): `cells` random values across the
    long side, bicubically upsampled (paper's fibres, a board's smudges)."""
    from PIL import Image

    h, w = shape
    ch, cw = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    small = Image.fromarray(rng.normal(0, 1, (ch, cw)).astype(np.float32), "F")
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def lighting(rng: np.random.Generator, shape: tuple[int, int], falloff: float, shadow: float) -> np.ndarray:
    """A multiplicative light field: a linear fall-off in a random direction, a vignette, and
    optionally a soft-edged shadow (a hand's or the phone's) across part of the page."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys, xs = ys / max(h, w), xs / max(h, w)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * xs + np.sin(theta) * ys
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    field = 1 - falloff * ramp
    r2 = (xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2
    field *= 1 - rng.uniform(0.05, 0.25) * r2 / r2.max()
    if shadow:
        # A straight edge through a random point, softened over a few percent of the image.
        phi = rng.uniform(0, 2 * np.pi)
        px, py = rng.uniform(0.2, 0.8) * xs.max(), rng.uniform(0.2, 0.8) * ys.max()
        d = np.cos(phi) * (xs - px) + np.sin(phi) * (ys - py)
        soft = rng.uniform(0.005, 0.04)
        field *= 1 - shadow / (1 + np.exp(-np.clip(d / soft, -40, 40)))
    return field


def perspective_coeffs(size: tuple[int, int], rng: np.random.Generator, amount: float) -> list[float]:
    """Pillow's PERSPECTIVE coefficients mapping the output rectangle onto a quadrilateral inside
    the input (each corner moved inwards by up to `amount` of the side): a page seen at a slant,
    with no empty corners."""
    w, h = size
    out = [(0, 0), (w, 0), (w, h), (0, h)]
    dx, dy = rng.uniform(0, amount * w, 4), rng.uniform(0, amount * h, 4)
    src = [(dx[0], dy[0]), (w - dx[1], dy[1]), (w - dx[2], h - dy[2]), (dx[3], h - dy[3])]
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out, src, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return [float(c) for c in np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float))]


def rule_mask(shape: tuple[int, int], rng: np.random.Generator, gap: float, squared: bool):
    """Printed lines of ruled (or squared) paper as a mask in [0, 1], `gap` px apart."""
    from PIL import Image, ImageDraw

    h, w = shape
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    width = int(rng.integers(1, 3 if squared else 4))
    level = int(rng.integers(110, 230))
    y = rng.uniform(0, gap)
    while y < h:
        draw.line([(0, round(y)), (w, round(y))], fill=level, width=width)
        y += gap
    if squared:
        x = rng.uniform(0, gap)
        while x < w:
            draw.line([(round(x), 0), (round(x), h)], fill=level, width=width)
            x += gap
    elif rng.random() < 0.5:  # a red margin line
        x = round(rng.uniform(0.05, 0.2) * w)
        draw.line([(x, 0), (x, h)], fill=level, width=width + 1)
    return np.asarray(img, np.float32) / 255.0


def photo_upload(digit: np.ndarray, style: str, rng: np.random.Generator) -> bytes:
    """One photo-like file in `style` (see PHOTO_STYLES) made from one MNIST digit: ink of a pen
    colour on textured paper of a paper colour, lines, light fall-off and shadows, a colour cast,
    sensor grain, a slanted view, JPEG; "phone" at a phone camera's size with EXIF orientation."""
    from PIL import Image

    dark = style == "dark"
    if dark:  # chalk or a white marker on a board or black paper
        paper = np.array([rng.uniform(15, 60), rng.uniform(20, 70), rng.uniform(15, 60)])
        pen = np.full(3, rng.uniform(170, 240))
    else:  # white to cream paper; a blue ballpoint or a black pen
        paper = rng.uniform(205, 250) - np.array([0.0, rng.uniform(0, 10), rng.uniform(0, 25)])
        pen = (np.array([rng.uniform(10, 40), rng.uniform(20, 60), rng.uniform(110, 180)])
               if rng.random() < 0.5 else np.full(3, rng.uniform(10, 60)))
    paper, pen = paper.astype(np.float32), pen.astype(np.float32)
    stroke = {"marker": int(rng.integers(3, 5)), "fine_pen": -1}.get(style, int(rng.integers(0, 2)))
    phone = style == "phone"
    height = int(rng.integers(300, 500)) if style == "fine_pen" else int(rng.integers(90, 180))
    ink = ink_map(digit, height, stroke)
    angle = rng.uniform(-20, 20) if style in ("perspective", "phone") else rng.uniform(-6, 6)
    ink = ink.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    if style == "tight":
        pad = (int(rng.integers(2, 10)), int(rng.integers(2, 10)))
        canvas = (ink.width + 2 * pad[0], ink.height + 2 * pad[1])
    elif phone:  # the scene at a quarter of 3024×4032, enlarged below; the digit 8-25% of it
        canvas = (756, 1008)
        f = rng.uniform(80, 250) / ink.height
        ink = ink.resize((round(ink.width * f), round(ink.height * f)), Image.Resampling.BICUBIC)
    else:
        canvas = (int(rng.integers(2, 5) * ink.width // 1.5), int(rng.integers(2, 5) * ink.height // 1.5))
        canvas = (max(canvas[0], ink.width + 40), max(canvas[1], ink.height + 40))
    slant = style in ("perspective", "phone", "desk")
    if slant:  # the slanted view crops up to 15% of each side: the digit stays inside
        canvas = (max(canvas[0], round(ink.width / 0.65)), max(canvas[1], round(ink.height / 0.65)))
    lo = (round(0.16 * canvas[0]), round(0.16 * canvas[1])) if slant else (0, 0)
    at = (int(rng.integers(lo[0], canvas[0] - ink.width - lo[0] + 1)),
          int(rng.integers(lo[1], canvas[1] - ink.height - lo[1] + 1)))
    mask = Image.new("L", canvas, 0)
    mask.paste(ink, at)
    a = np.asarray(mask, np.float32)[..., None] / 255.0
    h, w = canvas[1], canvas[0]
    texture = {"texture": 0.06, "dark": 0.1}.get(style, 0.02) * rng.uniform(0.5, 1.5)
    page = paper * (1 + texture * smooth_field(rng, (h, w), int(rng.integers(20, 80))))[..., None]
    if style in ("ruled", "squared"):
        lines = rule_mask((h, w), rng, rng.uniform(0.25, 0.5) * height, style == "squared")[..., None]
        colour = np.array([rng.uniform(90, 160), rng.uniform(120, 190), rng.uniform(200, 240)], np.float32)
        page = page * (1 - lines) + colour * lines * (page / paper)
    if style == "texture":  # dust and specks on the paper
        for _ in range(int(rng.integers(3, 15))):
            y, x, r = rng.integers(0, h), rng.integers(0, w), rng.uniform(0.5, 2.5)
            sl = np.s_[max(0, int(y - r)): int(y + r) + 1, max(0, int(x - r)): int(x + r) + 1]
            page[sl] *= rng.uniform(0.3, 0.8)
    rgb = page * (1 - a) + pen * a
    falloff = {"shadow": 0.3, "dark": 0.3, "tight": 0.15}.get(style, 0.4) * rng.uniform(0.3, 1)
    shadow = rng.uniform(0.3, 0.6) if style in ("shadow", "desk") else 0.0
    rgb *= lighting(rng, (h, w), falloff, shadow)[..., None]
    if style in ("colour", "phone", "desk"):  # white balance: a warm or a cool cast
        rgb *= 1 + rng.uniform(-0.15, 0.15) * np.array([1.0, 0.2, -1.0])
    grain = {"texture": 10.0, "dark": 8.0}.get(style, 4.0) * rng.uniform(0.5, 1.5)
    rgb += rng.normal(0, grain, (h, w, 1)).astype(np.float32)
    rgb += rng.normal(0, grain / 3, (h, w, 3)).astype(np.float32)
    img = Image.fromarray(np.rint(np.clip(rgb, 0, 255)).astype(np.uint8), "RGB")
    if slant:
        img = img.transform(img.size, Image.Transform.PERSPECTIVE,
                            perspective_coeffs(img.size, rng, 0.15), Image.Resampling.BICUBIC)
    if style == "desk":  # the sheet lies on a darker desk that fills the rest of the frame
        fw, fh = int(w * rng.uniform(1.3, 1.8)), int(h * rng.uniform(1.3, 1.8))
        desk = np.array([rng.uniform(60, 130), rng.uniform(40, 100), rng.uniform(20, 70)])
        frame = desk * (1 + 0.15 * smooth_field(rng, (fh, fw), 12))[..., None]
        frame += rng.normal(0, grain, (fh, fw, 1))
        out = Image.fromarray(np.rint(np.clip(frame, 0, 255)).astype(np.uint8), "RGB")
        out.paste(img, (int(rng.integers(0, fw - w + 1)), int(rng.integers(0, fh - h + 1))))
        img = out
    quality = int(rng.integers(60, 95))
    if not phone:
        return encode_rgb(img, quality)
    orientation = int(rng.choice([1, 3, 6, 8], p=[0.2, 0.1, 0.6, 0.1]))
    if orientation != 1:
        img = img.transpose(getattr(Image.Transpose, EXIF_STORE[orientation]))
    # Nearest-neighbour 4×: a phone's file size and layout at a fraction of a smooth resize's time
    # (load_digit reduces it to 512 px; what survives is the scene and the JPEG's blocks).
    img = img.resize((img.width * 4, img.height * 4), Image.Resampling.NEAREST)
    return encode_rgb(img, quality, orientation)


def encode_rgb(img, quality: int, orientation: int = 1) -> bytes:
    """An RGB image as a camera's JPEG, with an EXIF Orientation tag when it is not 1."""
    from PIL import Image

    buf = io.BytesIO()
    kwargs = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()
