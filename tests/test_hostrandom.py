"""digitnet.hostrandom against JAX itself: every draw the engine makes on the host must be JAX's,
bit for bit (the default run's weights depend on it)."""

import jax
import numpy as np
import pytest

from digitnet import hostrandom as hr
from digitnet.engine import Engine
from digitnet.spec import MLPSpec
from digitnet.trainconfig import TrainConfig


def data(k: jax.Array) -> np.ndarray:
    return np.asarray(jax.random.key_data(k))


@pytest.mark.parametrize("seed", [0, 1, 42, 123456, 2**31 - 1])
def test_keys_splits_folds_and_bits_are_jax_s(seed):
    k, kh = jax.random.key(seed), hr.key(seed)
    assert (data(k) == kh).all()
    for a, b in zip(jax.random.split(k, 3), hr.split(kh, 3), strict=True):
        assert (data(a) == b).all()
    for epoch in (0, 1, 4, 2**32 - 1):
        assert (data(jax.random.fold_in(k, epoch)) == hr.fold_in(kh, epoch)).all()
    for n in (1, 2, 7, 60000):
        assert (np.asarray(jax.random.bits(k, (n,), np.uint32)) == hr.bits(kh, (n,))).all()


@pytest.mark.parametrize("shape", [(784, 64), (64, 10), (3, 5), (1, 1)])
def test_glorot_uniform_is_jax_s_bit_for_bit(shape):
    for seed in (0, 7):
        w = np.asarray(jax.nn.initializers.glorot_uniform()(jax.random.key(seed), shape, np.float32))
        h = hr.glorot_uniform(hr.key(seed), *shape)
        assert w.dtype == h.dtype == np.float32 and w.tobytes() == h.tobytes()


def test_the_engine_s_host_start_is_its_compiled_one():
    """Engine.init_state (NumPy draws, the optimizer's state compiled) against the one compiled
    program it replaces, leaf by leaf, for an optimizer with a state that is not all zeros."""
    spec, cfg = MLPSpec(hidden=(32, 16)), TrainConfig(optimizer="sgd", momentum=0.9, ema=0.99, seed=3)
    engine = Engine(spec, cfg, 10)
    host, device = engine.init_state(cfg.seed), engine.init_on_device(cfg.seed)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(device), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    with pytest.raises(ValueError):
        hr.key(-1)


def test_state_shapes_are_init_state_s():
    for spec in (MLPSpec(), MLPSpec(hidden=(8,), input_shape=(5,), num_classes=3)):
        engine = Engine(spec, TrainConfig(), 10)
        params, opt_state, key, _ = jax.eval_shape(engine._init_state, 0)
        assert engine.state_shapes() == (params, opt_state, key)
