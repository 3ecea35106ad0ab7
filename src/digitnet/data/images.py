"""A user's photo or drawing of one digit → a 28×28 uint8 image in MNIST form.

MNIST's digits are white on black, their bounding box scaled to fit 20×20 keeping the aspect
ratio, then placed in 28×28 so that their centre of mass is at the centre.
"""

from __future__ import annotations

import io
import os

import numpy as np

from digitnet.budget import Gate
from digitnet.errors import DataError
from digitnet.safefiles import read_regular

MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)
# Longest side: decoders work row by row, so a 1×16,000,000 PNG of 31 kB (within MAX_PIXELS)
# cost 1.2 s of CPU to decode; cameras and scanners stay far below this.
MAX_SIDE = 1 << 15
MAX_FILE_BYTES = 64 << 20  # an image file read from disk; the service has its own body limit
WORK_SIZE = 512  # larger images are reduced to this many pixels on their long side first
# The formats a photo or drawing comes in. Pillow would otherwise also try EPS (which runs
# Ghostscript), PSD, ICNS, FITS, … on untrusted bytes.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
# Decoding work: a progressive JPEG's decoder passes over every block once per scan, so a file
# of thousands of tiny scans costs seconds. Cameras and encoders write at most a few dozen.
MAX_SCANS = 64
MAX_PIXEL_WORK = 400_000_000  # pixels × scans of one decode
# Bytes that decodes in flight may hold at once (all threads together): a decode waits for room
# rather than adding its full-size buffers to everyone else's.
DECODE_BUDGET = 384 << 20


class ImageTooLarge(DataError):
    """The image's declared dimensions exceed the pixel limit; nothing was decoded."""


class DecoderBusy(DataError):
    """Decodes in flight hold the whole decode budget; try again."""


DECODES = Gate(DECODE_BUDGET)


def jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers in JPEG bytes. Inside entropy-coded data 0xFF is always followed by
    0x00 or a restart marker, so 0xFFDA is a scan (or one of an embedded thumbnail's)."""
    return data.count(b"\xff\xda")


def decode_cost(img, full_pixels: int) -> int:
    """Bytes a decode of `img` at its (drafted) size holds at its peak: Pillow's image and a
    converted or resampled copy of it, the grey result, and a progressive JPEG's coefficients
    (2 bytes each, at full size whatever the draft)."""
    bands = len(img.getbands())
    coefficients = 2 * bands * full_pixels if img.info.get("progressive") else 0
    return img.width * img.height * (2 * bands + 1) + coefficients


def open_image(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int = MAX_PIXELS):
    """Decode an image file (PNG, JPEG, GIF, BMP, TIFF, WebP, PPM) into a Pillow image of mode
    "L" (grey) or "LA" (grey + alpha), at most WORK_SIZE px on its long side, within the size,
    work and memory limits above; a clear DataError otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name or (str(source) if not isinstance(source, bytes) else "<image>")
    if not isinstance(source, bytes):
        source = read_regular(source, MAX_FILE_BYTES, error=DataError, follow=True)
    try:
        img = Image.open(io.BytesIO(source), formats=FORMATS)
        if img.width * img.height > max_pixels:
            raise ImageTooLarge(f"{name}: image is {img.width}×{img.height}, more than "
                                f"{max_pixels:,} pixels")
        if max(img.size) > MAX_SIDE:
            raise ImageTooLarge(f"{name}: image is {img.width}×{img.height}, more than "
                                f"{MAX_SIDE:,} px on a side")
        full_pixels = img.width * img.height
        if img.format == "JPEG":
            scans = jpeg_scans(source)
            if scans > MAX_SCANS or scans * img.width * img.height > MAX_PIXEL_WORK:
                raise DataError(f"{name}: a JPEG of {scans} scans at {img.width}×{img.height} "
                                f"is more decoding work than allowed ({MAX_SCANS} scans, "
                                f"{MAX_PIXEL_WORK:,} pixel-scans)")
            # Let libjpeg scale by 1/2…1/8 while decoding, keeping at least WORK_SIZE px.
            img.draft("L" if img.mode in ("L", "RGB", "YCbCr") else None, (WORK_SIZE, WORK_SIZE))
        busy = DecoderBusy(f"{name}: the server is decoding other images; try again")
        with DECODES.hold(decode_cost(img, full_pixels), ImageTooLarge(
                f"{name}: decoding {img.width}×{img.height} px would need more memory than allowed"),
                busy):
            img.load()
            return working_image(ImageOps.exif_transpose(img))
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    except DataError:
        raise
    except Exception as exc:
        # Pillow's plugins raise many types on malformed bytes (OSError, SyntaxError,
        # ValueError, struct.error, …) or odd modes (LAB, CMYK, I;16, …): all mean the same
        # to the user.
        raise DataError(f"{name}: corrupt image or unsupported mode ({exc.__class__.__name__}: "
                        f"{exc})") from None


def working_image(img):
    """A decoded image → mode "L" or "LA" (when it has transparency), reduced in uint8 to at
    most WORK_SIZE px on its long side, so that later float work is bounded."""
    from PIL import Image

    alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if alpha else "L") if img.mode not in ("L", "LA") else img
    if max(img.size) > WORK_SIZE:  # a digit needs no more; keeps the work per upload bounded
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return img.convert("LA") if img.mode == "RGBA" else img


def to_grayscale(img) -> np.ndarray:
    """Float array in [0, 255] from open_image's image. Transparent areas become the background
    that contrasts with the ink: white under dark strokes, black under light ones (a drawing
    app's export)."""
    if img.mode == "LA":
        alpha = np.asarray(img.getchannel("A"), np.float64) / 255.0
        lum = np.asarray(img.getchannel("L"), np.float64)  # the colour, ignoring alpha
        ink_lum = (lum * alpha).sum() / max(alpha.sum(), 1e-9)
        paper = 255.0 if ink_lum < 128 else 0.0
        return np.rint(lum * alpha + paper * (1 - alpha))
    return np.asarray(img if img.mode == "L" else img.convert("L"), dtype=np.float64)


def median(a: np.ndarray) -> float:
    """np.median of finite values, the same number, from one partition around the two middle
    positions (np.median adds a third, to look for NaN)."""
    flat = a.ravel()
    k = flat.size // 2
    if k == 0:
        return float(flat[0])
    part = np.partition(flat, (k - 1, k))
    return float(part[k]) if flat.size % 2 else float((part[k - 1] + part[k]) / 2)


def dark_ink(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the paper.

    Ink is a minority wherever it is: in each of about 8×8 blocks the median is the local paper
    and the ink lies out on one tail, so each block votes with how far its middle (the 2nd and
    98th percentiles' mean) lies from its median. A block votes in full where its bulk (25th to
    75th percentile) is one level with a thin tail, and not at all where two levels share it
    half and half (a shadow's edge, a marker's stroke wider than the block). Unlike the
    border's brightness, this holds for a page in a shadow or in dim light and a sheet on a
    darker desk. With no clear vote, the border decides: against the middle of the image's range (a
    page in dim light is darker than 128 and still paper), or of 0–255 in MNIST-sized images.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    h, w = gray.shape
    if min(h, w) >= 64:
        b = max(h, w) // 8
        hb, wb = h // b, w // b
        blocks = gray[: hb * b, : wb * b].reshape(hb, b, wb, b).transpose(0, 2, 1, 3).reshape(hb * wb, -1)
        q2, q25, q50, q75, q98 = np.percentile(blocks[:, ::2], (2, 25, 50, 75, 98), axis=1)
        weight = np.clip(1 - (q75 - q25) / np.maximum(q98 - q2, 1e-9), 0, 1)
        votes = ((q2 + q98) / 2 - q50) * weight
        vote = float(votes.sum())
        # A split vote (a marker's strokes fill many blocks) leaves it to the border.
        if abs(vote) >= max(1.0, 0.15 * float(np.abs(votes).sum())):
            return vote < 0
        lo, hi = np.percentile(gray[::2, ::2], (1, 99))  # the border against the image's range
        return bool(median(border) >= (lo + hi) / 2)
    return bool(median(border) >= 128)


def background(v: np.ndarray) -> np.ndarray | float:
    """The paper under bright ink: a grey opening (erosion, then dilation) with a square a
    quarter of the short side wide, at full resolution. It removes every stroke, and keeps
    light fall-off and the sharp edge of a shadow where they are (a coarse estimate smears the
    edge into a band that reads as ink)."""
    from scipy import ndimage

    h, w = v.shape
    b = max(h, w) // 24
    hb, wb = h // b, w // b
    # A coarse look first: minima of blocks 1/24 of the image wide (rows of blocks, then
    # columns), eroded over 5×5 blocks. Where that is one level everywhere (a drawing on a white
    # page), the paper is flat at that level, and the full opening is skipped.
    low = v[: hb * b, : wb * b].reshape(hb, b, wb * b).min(axis=1).reshape(hb, wb, b).min(axis=2)
    low = ndimage.minimum_filter(low, size=5, mode="nearest")
    rest = min(v[hb * b :].min(initial=255), v[:, wb * b :].min(initial=255))  # the edge strips
    if low.min() == low.max() and rest >= low.min():
        return float(low.min())
    k = max(3, min(h, w) // 4)
    return ndimage.grey_opening(v, size=(k, k), mode="nearest")


def ink_image(gray: np.ndarray) -> np.ndarray:
    """How much ink each pixel holds (0 = background), for dark-on-light or light-on-dark images.

    The background is estimated locally (a morphological opening wider than any stroke), so a
    photo's uneven lighting and shadows are not taken for ink; dark ink is measured relative to
    the local paper's brightness (a stroke in a shadow is as dark, relatively, as in the light).
    Whole-image passes work in place on one buffer.
    """
    dark = dark_ink(gray)
    v = 255.0 - gray if dark else gray  # now the ink is bright
    h, w = v.shape
    if min(h, w) < 64:  # small images (MNIST-sized) are evenly lit and too coarse to smooth
        return np.clip(v - median(np.concatenate([v[0], v[-1], v[:, 0], v[:, -1]])), 0, 255)
    bg = background(v)
    # v - background with its edge rows and columns repeated once (np.pad's "edge").
    padded = np.empty((h + 2, w + 2))
    np.subtract(v, bg, out=padded[1:-1, 1:-1])
    if dark:  # divided by the paper's light, ×255: the same where the paper is white
        padded[1:-1, 1:-1] *= 255.0 / np.maximum(255.0 - bg, 32.0)
    padded[0, 1:-1], padded[-1, 1:-1] = padded[1, 1:-1], padded[-2, 1:-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    # A 3×3 mean: sensor noise and JPEG specks fall below the floor, strokes do not. (The
    # nine terms are added in the same order as before, so the sums are the same bits.)
    resid = padded[:h, :w].copy()
    for i, j in ((0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)):
        resid += padded[i : i + h, j : j + w]
    resid /= 9
    # The erosion follows the noise's lows; most pixels are paper, so their median is the zero.
    resid -= median(resid)
    return np.clip(resid, 0, 255, out=resid)


def digit_mask(strong: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The strong strokes that make the digit: connected components (8-neighbours) of `strong`
    less specks (dust, JPEG blocks, a pen's dot: under 4% of the largest part's ink and not at
    its edge, or farther than its own size) and lines or edges that run from one side of the
    image to the other (ruled lines, a shadow's edge, a desk's), when something else is left."""
    from scipy import ndimage

    labels, n = ndimage.label(strong, structure=np.ones((3, 3), bool))
    if n <= 1:
        return strong
    idx = np.arange(1, n + 1)
    mass = ndimage.sum_labels(ink, labels, idx)
    boxes = ndimage.find_objects(labels)
    h, w = strong.shape
    spans = np.array([(b[0].start == 0 and b[0].stop == h) or (b[1].start == 0 and b[1].stop == w)
                      for b in boxes])
    keep = ~spans if (~spans).any() else np.ones(n, bool)
    main = int(np.argmax(np.where(keep, mass, -1)))
    # Parts of the digit lie within its own size of the largest part; specks are small or far.
    y0, y1, x0, x1 = boxes[main][0].start, boxes[main][0].stop, boxes[main][1].start, boxes[main][1].stop
    reach = max(y1 - y0, x1 - x0)

    def within(b, r: int) -> bool:
        return b[0].stop > y0 - r and b[0].start < y1 + r and b[1].stop > x0 - r and b[1].start < x1 + r

    for i, b in enumerate(boxes):
        # A pen's broken tip touches the largest part's box; a part of the digit is not small.
        keep[i] &= within(b, 2 + reach // 16) or (within(b, reach) and mass[i] >= 0.04 * mass[main])
    if keep.all():
        return strong
    return np.isin(labels, idx[keep])


def extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(first row, last row, first column, last column) where `mask` is true: a bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def mnist_form(gray: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """Light ink on dark, cropped to the ink, fit to box×box, centred by mass in size×size."""
    from PIL import Image

    if gray.ndim != 2 or min(gray.shape) < 1:
        raise DataError(f"expected a 2-D image, got shape {gray.shape}")
    if not np.isfinite(gray).all():
        raise DataError("the image holds NaN or infinite pixel values")
    ink = ink_image(gray)
    peak = ink.max()
    if peak < 16:  # nothing stands out from the background
        raise DataError("no digit found: the image is blank or has no contrast")
    # Faint residue (shadows, noise, JPEG halos) goes to 0; the stroke cores saturate, as in MNIST.
    floor = 0.2 * peak
    strong = ink > 0.5 * peak
    digit = digit_mask(strong, ink)
    if digit is not strong:  # what is not the digit goes, with the faint residue around it
        from scipy import ndimage

        near = ndimage.maximum_filter(digit, size=4 * max(1, max(gray.shape) // 100) + 1)
        ink[~near] = 0
        strong = digit
        peak = ink.max()
        floor = 0.2 * peak
    core = np.percentile(ink[strong], 40)
    ink -= floor
    ink *= 255.0 / max(core - floor, 1.0)
    np.clip(ink, 0, 255, out=ink)
    # The digit's extent is where its strokes are strong, plus their soft edges: faint residue
    # far away (a shadowed corner, a smudge) must not shrink the digit.
    top, bottom, left, right = extent(strong)
    m = max(2, round(0.01 * max(gray.shape)))
    crop = ink[max(top - m, 0) : bottom + m + 1, max(left - m, 0) : right + m + 1]
    top, bottom, left, right = extent(crop != 0)
    crop = crop[top : bottom + 1, left : right + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = Image.fromarray(crop.astype(np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.LANCZOS)
    small = np.clip(np.asarray(small), 0, 255)
    total = small.sum()
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / total, (xs * small).sum() / total
    # MNIST's centre of mass sits at (14, 14) in pixel indices (measured on its test set).
    top = int(round(size / 2 - cy))
    left = int(round(size / 2 - cx))
    top = min(max(top, 0), size - new_h)
    left = min(max(left, 0), size - new_w)
    out = np.zeros((size, size), np.float64)
    out[top : top + new_h, left : left + new_w] = small
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_digit(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file of one digit and return it in MNIST form (28×28 uint8)."""
    return mnist_form(to_grayscale(open_image(source, name, max_pixels)))

