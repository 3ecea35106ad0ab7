"""Request payloads → model inputs (N, 784) float32, with a ClientError for every mistake.

Accepted forms of one image: 784 pixel values (flat, or 28 rows of 28) in MNIST form (white
ink on black, 0–255); a base64 image file (PNG, JPEG, …; a data: URL is fine); an uploaded file.
Image files go through digitnet.data.images, which turns a photo or drawing into MNIST form.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np
import orjson

from digitnet.data.images import FORMATS, DecoderBusy, ImageTooLarge, load_digit
from digitnet.errors import DataError
from digitnet.serve.limits import ClientError

# The pixels all images of one request may declare, in images of --max-image-pixels: decoding
# costs CPU per pixel, and a 16 kB blank 4096² PNG fits 256 times in the default body limit
# (28 s of CPU for one batch request before this bound).
REQUEST_PIXELS_IN_IMAGES = 4


def parse_json(body: bytes) -> dict[str, Any]:
    """orjson: strict JSON (no NaN or Infinity literals, nesting at most 1024 deep)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "infinity" in str(exc):  # valid JSON, but a number no pixel can be (1e999)
            raise ClientError(422, "invalid_pixels", f"a number is out of range: {exc}") from None
        raise ClientError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:  # the C parser's depth guard; the stack unwound cleanly
        raise ClientError(400, "malformed_json", "body is JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ClientError(422, "invalid_input", "the JSON body must be an object")
    return doc


def pixels(value: Any, shape: tuple[int, ...], where: str = "pixels") -> np.ndarray:
    """One image's pixel values, flat, checked: numbers, finite, within 0–255, as many as the
    model's input `shape` holds; given in rows, as many rows of as many numbers as its 2-D
    `shape` (16 rows of 49 are 784 numbers, but not a 28×28 image)."""
    dim = math.prod(shape)
    flat: list[Any] = []

    def walk(v: Any, depth: int) -> None:
        if isinstance(v, list) and depth < 2:
            for item in v:
                walk(item, depth + 1)
        else:
            flat.append(v)

    if not isinstance(value, list):
        raise ClientError(422, "invalid_pixels", f"{where} must be a list of {dim} numbers")
    rows = [len(v) for v in value if isinstance(v, list)]
    if rows and (len(rows) != len(value) or min(rows) != max(rows)):  # 27 rows of 28 + 28 numbers
        raise ClientError(422, "invalid_pixels", f"{where} must be {dim} numbers, or rows of "
                                                 "numbers all of one length")
    walk(value, 0)
    for v in flat:
        if type(v) not in (int, float):  # bool is an int subclass but never a pixel
            raise ClientError(422, "invalid_pixels", f"{where} must contain only numbers, found {v!r}")
    if rows and len(shape) == 2 and (len(value), rows[0]) != tuple(shape):
        raise ClientError(422, "wrong_pixel_count", f"{where} in rows must be {shape[0]} rows of "
                                                    f"{shape[1]} numbers, got {len(value)} rows of {rows[0]}")
    if len(flat) != dim:
        raise ClientError(422, "wrong_pixel_count",
                          f"{where} must have {dim} values ({'×'.join(map(str, shape))}), got {len(flat)}")
    try:
        arr = np.asarray(flat, dtype=np.float64)
    except OverflowError:  # an int beyond float64's range
        raise ClientError(422, "pixel_out_of_range", f"{where} values must be within 0–255") from None
    if not np.isfinite(arr).all():
        raise ClientError(422, "invalid_pixels", f"{where} contains NaN or infinite values")
    if arr.min() < 0 or arr.max() > 255:
        raise ClientError(422, "pixel_out_of_range",
                          f"{where} values must be within 0–255, got {arr.min():g}…{arr.max():g}")
    return arr.astype(np.float32)


def base64_bytes(value: Any, where: str = "image") -> bytes:
    if not isinstance(value, str):
        raise ClientError(422, "invalid_image", f"{where} must be a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(422, "invalid_base64", f"{where} is not valid base64") from None


def image(data: bytes, max_pixels: int, name: str = "image") -> np.ndarray:
    """An image file's bytes → (784,) float32 in MNIST form."""
    if not data:
        raise ClientError(422, "invalid_image", f"{name} is empty")
    try:
        digit = load_digit(data, name, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        raise ClientError(413, "image_too_large", str(exc)) from None
    except DecoderBusy as exc:
        raise ClientError(503, "busy", str(exc)) from None
    except DataError as exc:
        raise ClientError(422, "invalid_image", str(exc)) from None
    return digit.reshape(-1).astype(np.float32)


def declared_pixels(data: bytes) -> int:
    """Width × height from an image file's header (nothing decoded); 0 where there is none
    (the decode says why)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            return img.width * img.height
    except Exception:  # noqa: BLE001 - any failure is reported by the decode itself
        return 0


def images(named: list[tuple[str, bytes]], max_pixels: int) -> np.ndarray:
    """(N, 784) from several image files, refused before any is decoded when together they
    declare more than REQUEST_PIXELS_IN_IMAGES × max_pixels."""
    total, most = 0, REQUEST_PIXELS_IN_IMAGES * max_pixels
    for _, data in named:
        total += declared_pixels(data)
        if total > most:
            raise ClientError(413, "images_too_large",
                              f"the images of this request declare over {most:,} pixels in all "
                              f"({REQUEST_PIXELS_IN_IMAGES} × the per-image limit); send fewer")
    return np.stack([image(data, max_pixels, name) for name, data in named])


def from_json(doc: dict[str, Any], shape: tuple[int, ...], max_pixels: int) -> np.ndarray:
    """{"pixels": [...]} or {"image": "<base64>"} → (1, values of `shape`)."""
    keys = [k for k in ("pixels", "image") if k in doc]
    if len(keys) != 1:
        raise ClientError(422, "invalid_input", f'give exactly one of "pixels" ({math.prod(shape)}'
                                                ' numbers 0–255) or "image" (base64 PNG/JPEG)')
    if keys[0] == "pixels":
        return pixels(doc["pixels"], shape)[None]
    return image(base64_bytes(doc["image"]), max_pixels)[None]


def batch_from_json(doc: dict[str, Any], shape: tuple[int, ...], max_pixels: int,
                    max_batch: int) -> np.ndarray:
    """{"pixels": [[...], ...]} or {"images": ["<base64>", ...]} → (N, values of `shape`)."""
    keys = [k for k in ("pixels", "images") if k in doc]
    if len(keys) != 1:
        raise ClientError(422, "invalid_input",
                          f'give exactly one of "pixels" (a list of images, each {math.prod(shape)}'
                          ' numbers) or "images" (a list of base64 image files)')
    items = doc[keys[0]]
    if not isinstance(items, list) or not items:
        raise ClientError(422, "invalid_input", f'"{keys[0]}" must be a non-empty list')
    if keys[0] == "pixels" and not all(isinstance(v, list) for v in items):
        raise ClientError(422, "invalid_pixels", '"pixels" must be a list of images, each a list of numbers')
    check_batch(len(items), max_batch)
    if keys[0] == "pixels":
        return np.stack([pixels(v, shape, f"pixels[{i}]") for i, v in enumerate(items)])
    return images([(f"images[{i}]", base64_bytes(v, f"images[{i}]")) for i, v in enumerate(items)],
                  max_pixels)


def check_batch(n: int, max_batch: int) -> None:
    if n > max_batch:
        raise ClientError(413, "batch_too_large", f"batch of {n} exceeds the limit of {max_batch}")



def plain_pixels(doc: dict[str, Any], body: bytes, shape: tuple[int, ...],
                 max_batch: int | None = None) -> np.ndarray | None:
    """(n, values of `shape`) float32 for the common request, {"pixels": [784 numbers within
    0–255]} (flat or in the rows of a 2-D `shape`; with max_batch, a list of up to max_batch
    such images), in one NumPy conversion;
    None for anything else, which from_json / batch_from_json then check (and explain) value by
    value. JSON true/false/null anywhere sends it the slow way, since NumPy would read them as
    numbers."""
    value, dim = doc.get("pixels"), math.prod(shape)
    if len(doc) != 1 or type(value) is not list or b"true" in body or b"false" in body or b"null" in body:
        return None
    try:
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    most = 1 if max_batch is None else max_batch
    if max_batch is None:
        arr = arr[None]
    if arr.dtype.kind not in "iuf" or not 2 <= arr.ndim <= 3 or not 1 <= len(arr) <= most:
        return None
    if arr[0].size != dim or arr.ndim == 3 and len(shape) == 2 and arr.shape[1:] != tuple(shape):
        return None
    if not (arr.min() >= 0 and arr.max() <= 255):  # also False for NaN
        return None
    return arr.reshape(len(arr), dim).astype(np.float32)

