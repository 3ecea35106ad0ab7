"""Deskewing: straighten each digit by its second moments, and centre it by its centre of mass.

A classic MNIST preprocessing (LeCun et al.'s results table lists it beside each classifier):
writers slant their digits, and a slant is a shear that a fully connected network must learn
again at every angle. For an image with pixel mass m(r, c), centre (r̄, c̄) and moments
var_r = E[(r - r̄)²], cov = E[(r - r̄)(c - c̄)], the slant is α = cov / var_r and

    output(r, c) = input(r̄ + (r - r₀), c̄ + (c - c₀) + α·(r - r₀))

with (r₀, c₀) the image centre, sampled bilinearly (outside the image reads 0, the background).
It is deterministic, part of the model (saved in its spec, applied to every input at training,
evaluation, serving and in the ONNX graph), and not an augmentation: every image is seen the
same way every time. It uses the image's 2-D layout, so a deskewed model is no longer
permutation-invariant.

The result is rounded to whole pixel values in [0, 255], so it is again an 8-bit image: training
deskews its data once and keeps it on the device as uint8, and sees what deskewing each batch
would give (but for about one pixel in 100,000 that float rounding puts one step away).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from digitnet.augment import sample_bilinear

# Rows per compiled call when a whole dataset is deskewed.
BLOCK = 10_000


def deskew(images: jax.Array) -> jax.Array:
    """Deskew raw images (n, H, W) with pixel values 0..255; float32 whole numbers out."""
    x = images.astype(jnp.float32)
    n, h, w = x.shape
    r, c = jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32)
    safe = jnp.maximum(x.sum((1, 2)), 1e-6)  # a blank image has moments 0 and stays blank
    r_mean = x.sum(2) @ r / safe
    c_mean = x.sum(1) @ c / safe
    r_var = x.sum(2) @ (r * r) / safe - r_mean**2
    cov = jnp.einsum("nij,i,j->n", x, r, c) / safe - r_mean * c_mean
    alpha = jnp.where(r_var > 1e-3, cov / jnp.maximum(r_var, 1e-3), 0.0)
    dr = r[:, None] - (h - 1) / 2  # (H, 1): row offset from the centre
    dc = c[None, :] - (w - 1) / 2  # (1, W)
    rows = jnp.broadcast_to(r_mean[:, None, None] + dr[None], (n, h, w))
    cols = c_mean[:, None, None] + dc[None] + alpha[:, None, None] * dr[None]
    return jnp.round(jnp.clip(sample_bilinear(x, rows, cols), 0.0, 255.0))


_deskew_uint8 = jax.jit(lambda x: deskew(x).astype(jnp.uint8))


def deskew_dataset(images: np.ndarray) -> jax.Array:
    """A whole uint8 dataset (n, H, W) deskewed on the device, in blocks; uint8 out."""
    parts = [_deskew_uint8(images[i : i + BLOCK]) for i in range(0, len(images), BLOCK)]
    return jnp.concatenate(parts) if len(parts) > 1 else parts[0]
