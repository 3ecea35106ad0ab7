"""Augmentation: each warp does what it claims, on real MNIST digits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from digitnet.augment import elastic_field, gaussian_matrix, make_augment, warp
from digitnet.data.datasets import load_dataset
from digitnet.errors import ConfigError
from digitnet.train import TrainConfig


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Eight training digits with a blank margin of 4 pixels, so that shifts and zooms of up to
    that much move no ink out of the frame."""
    x = load_dataset().x_train[:200]
    inside = x[:, 4:24, 4:24].reshape(len(x), -1).sum(1) == x.reshape(len(x), -1).sum(1)
    return x[inside][:8].astype(np.float32)


def centre_of_mass(images) -> np.ndarray:
    images = np.asarray(images, np.float64)
    rows, cols = np.indices(images.shape[1:])
    mass = images.sum(axis=(1, 2))
    return np.stack([(images * rows).sum(axis=(1, 2)) / mass,
                     (images * cols).sum(axis=(1, 2)) / mass], 1)


def no_warp(n: int):
    return dict(angle=jnp.zeros(n), scale=jnp.ones(n), shear=jnp.zeros(n))


@pytest.mark.parametrize("shift", [(2.0, -3.0), (1.5, 0.25), (-2.25, 1.0)])
def test_shift_moves_centre_of_mass_by_the_set_amount(digits, shift):
    n = len(digits)
    out = warp(jnp.asarray(digits), jnp.tile(jnp.asarray(shift), (n, 1)), **no_warp(n))
    np.testing.assert_allclose(centre_of_mass(out) - centre_of_mass(digits),
                               np.tile(shift, (n, 1)), atol=1e-3)


def test_rotation_zero_and_scale_one_are_the_identity(digits):
    n = len(digits)
    out = warp(jnp.asarray(digits), jnp.zeros((n, 2)), **no_warp(n))
    np.testing.assert_array_equal(np.asarray(out), digits)


def test_quarter_turn_is_rot90(digits):
    n = len(digits)
    out = warp(jnp.asarray(digits), jnp.zeros((n, 2)), angle=jnp.full(n, np.pi / 2),
               scale=jnp.ones(n), shear=jnp.zeros(n))
    np.testing.assert_allclose(np.asarray(out), np.rot90(digits, k=1, axes=(1, 2)), atol=1e-3)


def test_zoom_spreads_the_digit_about_the_centre(digits):
    n = len(digits)
    big = warp(jnp.asarray(digits), jnp.zeros((n, 2)), angle=jnp.zeros(n),
               scale=jnp.full(n, 1.2), shear=jnp.zeros(n))
    rows = np.arange(28)[None, :, None]
    def spread(im):
        return (np.asarray(im) * (rows - 13.5) ** 2).sum((1, 2)) / np.asarray(im).sum((1, 2))
    np.testing.assert_allclose(spread(big) / spread(digits), 1.2**2, rtol=0.05)


def test_gaussian_matrix_is_scipys_filter():
    v = np.random.default_rng(0).uniform(-1, 1, 28)
    for sigma in (1.0, 4.0, 6.0):
        np.testing.assert_allclose(gaussian_matrix(28, sigma) @ v,
                                   gaussian_filter1d(v, sigma, mode="constant"), atol=1e-6)


def test_elastic_alpha_zero_is_the_identity(digits):
    n = len(digits)
    field = elastic_field(jax.random.key(0), n, (28, 28), alpha=0.0, sigma=4.0)
    out = warp(jnp.asarray(digits), jnp.zeros((n, 2)), **no_warp(n), displacement=field)
    np.testing.assert_array_equal(np.asarray(out), digits)


def test_elastic_distortion_is_smooth_and_scaled_by_alpha(digits):
    f1 = np.asarray(elastic_field(jax.random.key(3), 4, (28, 28), alpha=1.0, sigma=4.0))
    f34 = np.asarray(elastic_field(jax.random.key(3), 4, (28, 28), alpha=34.0, sigma=4.0))
    np.testing.assert_allclose(f34, 34 * f1, rtol=1e-5, atol=1e-6)
    # Smoothing: neighbouring displacements are close, unlike the raw uniform noise.
    assert np.abs(np.diff(f34, axis=-1)).mean() < 0.2 * np.abs(f34).mean()
    out = warp(jnp.asarray(digits[:4]), jnp.zeros((4, 2)), **no_warp(4), displacement=jnp.asarray(f34))
    assert not np.allclose(np.asarray(out), digits[:4])


def test_random_shifts_stay_within_bounds(digits):
    aug = make_augment(TrainConfig(aug_shift=2.0), (28, 28))
    x = jnp.asarray(np.repeat(digits[:1], 64, 0).astype(np.uint8))
    moved = centre_of_mass(aug(jax.random.key(1), x)) - centre_of_mass(x)
    assert np.abs(moved).max() <= 2.0 + 1e-3
    assert moved.std(axis=0).min() > 0.5  # the draws spread over the range


def test_augment_off_or_bad():
    assert make_augment(TrainConfig(), (28, 28)) is None
    with pytest.raises(ConfigError):
        make_augment(TrainConfig(aug_rotate=10), (784,))
    with pytest.raises(ConfigError):
        TrainConfig(aug_scale=1.5)
    with pytest.raises(ConfigError):
        TrainConfig(aug_shift=-1)
