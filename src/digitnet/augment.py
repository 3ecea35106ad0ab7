"""Data augmentation on the device: random affine warps and elastic distortions.

Each training batch is warped afresh inside the compiled step (so every epoch sees new images),
from a key derived from (seed, epoch, batch): runs are reproducible. Images are warped in their
2-D form with bilinear sampling; pixels from outside the image read as 0 (MNIST's background).

The elastic distortion is Simard et al. (2003): a displacement field of uniform(-1, 1) noise,
smoothed by a Gaussian of std `elastic_sigma` pixels and scaled by `elastic_alpha`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from digitnet.errors import ConfigError
from digitnet.knobs import active
from digitnet.trainconfig import AUG_KEYS

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def warp(images: jax.Array, shift: jax.Array, angle: jax.Array, scale: jax.Array,
         shear: jax.Array, displacement: jax.Array | None = None) -> jax.Array:
    """Warp images (n, H, W) about their centre: output(p) = input(T⁻¹(p + d(p))), where
    T = translate(shift) · rotate(angle) · shear(shear) · scale(scale) and d is the optional
    displacement field (n, 2, H, W). shift is (n, 2) in pixels as (rows, cols); angle and shear
    are (n,) radians; scale is (n,). Content moves by +shift."""
    n, h, w = images.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                              indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y = rows[None] - cy - shift[:, 0, None, None]
    x = cols[None] - cx - shift[:, 1, None, None]
    if displacement is not None:
        y, x = y + displacement[:, 0], x + displacement[:, 1]
    cos, sin = jnp.cos(angle)[:, None, None], jnp.sin(angle)[:, None, None]
    y, x = cos * y + sin * x, cos * x - sin * y  # undo the rotation
    y = y - jnp.tan(shear)[:, None, None] * x  # undo the shear (rows sheared along columns)
    inv = 1.0 / scale[:, None, None]
    return sample_bilinear(images, y * inv + cy, x * inv + cx)


def sample_bilinear(images: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """out[k, i, j] = images[k] at the fractional position (rows[k, i, j], cols[k, i, j]),
    interpolated bilinearly; positions outside the image read 0 (MNIST's background)."""
    sample = jax.vmap(lambda img, rr, cc: map_coordinates(img, [rr, cc], order=1, mode="constant",
                                                          cval=0.0))
    return sample(images.astype(jnp.float32), rows, cols)


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix G with G @ v = v convolved with a normalised Gaussian of std `sigma`,
    truncated at 4σ, zero outside (scipy.ndimage.gaussian_filter with mode='constant')."""
    radius = int(4 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    return np.where(np.abs(d) <= radius, kernel[np.clip(d + radius, 0, 2 * radius)], 0.0).astype(
        np.float32)


def elastic_field(key: jax.Array, n: int, shape: tuple[int, int], alpha: float,
                  sigma: float) -> jax.Array:
    """Simard's displacement fields (n, 2, H, W): α · Gaussian_σ * uniform(-1, 1)."""
    h, w = shape
    noise = jax.random.uniform(key, (n, 2, h, w), minval=-1.0, maxval=1.0)
    gh, gw = jnp.asarray(gaussian_matrix(h, sigma)), jnp.asarray(gaussian_matrix(w, sigma))
    return alpha * jnp.einsum("ij,bcjk,lk->bcil", gh, noise, gw)


def uniform(key: jax.Array, n: int, bound: float, centre: float = 0.0) -> jax.Array:
    """n draws from centre ± bound; a constant when bound is 0 (nothing to compile)."""
    if not active(bound):
        return jnp.full((n,), centre, jnp.float32)
    return jax.random.uniform(key, (n,), minval=centre - bound, maxval=centre + bound)


def make_augment(cfg: Any, image_shape: tuple[int, ...]) -> Augment | None:
    """augment(key, batch) -> warped float batch of the same shape, from a TrainConfig's aug_*
    and elastic_* fields; None when augmentation is off."""
    if not any(active(getattr(cfg, k)) for k in AUG_KEYS):
        return None
    if len(image_shape) != 2:
        raise ConfigError(f"augmentation needs 2-D images, but the inputs have shape {image_shape}")
    shape = (int(image_shape[0]), int(image_shape[1]))
    rad = np.pi / 180

    def augment(key: jax.Array, x: jax.Array) -> jax.Array:
        n = x.shape[0]
        ks = jax.random.split(key, 6)
        shift = jnp.stack([uniform(ks[0], n, cfg.aug_shift), uniform(ks[1], n, cfg.aug_shift)], 1)
        disp = (elastic_field(ks[5], n, shape, cfg.elastic_alpha, cfg.elastic_sigma)
                if active(cfg.elastic_alpha) else None)
        out = warp(x.reshape(n, *shape), shift, uniform(ks[2], n, cfg.aug_rotate * rad),
                   uniform(ks[3], n, cfg.aug_scale, 1.0), uniform(ks[4], n, cfg.aug_shear * rad),
                   disp)
        return out.reshape(x.shape)

    return augment
