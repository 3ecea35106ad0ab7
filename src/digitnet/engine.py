"""The compiled engine: one jitted call trains a chunk of an epoch with `lax.scan`, so Python
only runs between chunks. The training set lives on the device, as given (uint8 pixels stay
uint8; the model's preprocessing runs inside the compiled step). On a GPU, the steps that
digitnet.fused covers (the tutorial's: a ReLU MLP, Adam, cross-entropy) run as its two
hand-written kernels instead of XLA's step.

How the engine runs (EngineSettings) is separate from what it trains (TrainConfig): settings
change speed, never the steps, and are part of the engine's cache key.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from digitnet import augment, hostrandom, runtime
from digitnet.errors import TrainingDiverged
from digitnet.knobs import SPEC_KNOBS, active
from digitnet.metrics import class_weighted, hits, loss_values
from digitnet.model import (
    MLPSpec,
    Params,
    dropout_layers,
    dropout_masks,
    forward,
    host_init_params,
    init_params,
    update_moving_stats,
)
from digitnet.optimizers import make_optimizer
from digitnet.regularize import keras_max_norm, penalty
from digitnet.trainconfig import HOST_ONLY, class_weight_values

if TYPE_CHECKING:
    from digitnet.trainconfig import TrainConfig

# Training steps per iteration of the compiled loop, by JAX backend: more amortises the loop's
# fixed cost per iteration, at the price of a longer compilation (docs/performance.md).
DEFAULT_UNROLL = MappingProxyType({"cpu": 2, "gpu": 5})
# A block of steps' dropout masks (EngineSettings.mask_block) stays within this many bytes per
# model: cache-sized, and small beside the chunk's data.
MASK_BLOCK_BYTES = 4 << 20

# Folded into a batch's key for its augmentation draws; dropout uses small layer indices.
AUGMENT_STREAM = 0x6A09E667



@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs steps: the same steps whatever the settings, up to float rounding
    of a differently fused program.

    unroll: training steps per iteration of the compiled loop (a step with random draws keeps
    one: its threefry hashing makes an unrolled body large and slow to compile).
    fused: digitnet.fused's kernels: "gpu", "interpret" (Pallas' interpreter, for tests) or None
    (XLA's step); runtime.fused_step() gives the machine's default.
    kernels: overrides of the fused kernels' geometry, as (name, value) pairs of
    digitnet.fused.train_chunk's keywords tile, num_warps and num_warps_q.
    split_rows: when > 0, the first kernel's gradient is computed as two products, over its
    rows below and from split_rows (split_grad_matmul): XLA's CPU dot on one thread then
    gives the bits that a two-thread pool gives for the whole product, so `digitnet
    calibrate` can choose one thread without changing a result (0: one product).
    host_gather: the caller gathers each chunk's examples, in training order, on the host
    (Engine.chunk_data: NumPy) and passes the chunk's rows instead of the whole training set;
    the default on a CPU, where the device's memory is the host's and XLA's gather of uint8
    rows costs several times NumPy's. The same examples, so the same bits.
    mask_block: with dropout, the steps whose keep masks are drawn together, in one batched
    draw before they run (at most MASK_BLOCK_BYTES of masks): the same masks from the same
    keys, drawn by one large vectorised op instead of many small ones, and steps without draws
    in them unroll as others do. 0: each step draws its own.
    """

    unroll: int = 1
    fused: str | None = None
    kernels: tuple[tuple[str, int], ...] = ()
    split_rows: int = 0
    host_gather: bool = False
    mask_block: int = 64

    def __post_init__(self) -> None:
        if (self.unroll < 1 or self.split_rows < 0 or self.mask_block < 0
                or self.fused not in (None, "gpu", "interpret")):
            raise ValueError(f"bad engine settings {self}")

    @classmethod
    def default(cls, sizes: list[int] | None = None, batch: int | None = None) -> EngineSettings:
        """This process's defaults: on a CPU, the unroll that `digitnet calibrate` chose for
        these layer sizes and batch on this machine (digitnet.tuning), else DEFAULT_UNROLL
        for JAX's backend; runtime.fused_step()."""
        backend = jax.default_backend()
        unroll, split = DEFAULT_UNROLL.get(backend, 1), 0
        if backend == "cpu" and sizes is not None and batch is not None:
            from digitnet.tuning import chosen_settings

            unroll, split = chosen_settings(sizes, batch) or (unroll, split)
        return cls(unroll=unroll, fused=runtime.fused_step(), split_rows=split,
                   host_gather=backend == "cpu")

    def mask_block_steps(self, steps: int, mask_bytes: int) -> int:
        """Steps per block of drawn-together dropout masks (0: each step draws its own)."""
        if not self.mask_block or not mask_bytes:
            return 0
        return max(1, min(steps, self.mask_block, MASK_BLOCK_BYTES // mask_bytes))

    def scan_unroll(self, steps: int, draws: bool = False) -> int:
        """Steps per loop iteration for a chunk of `steps`."""
        return 1 if draws else max(1, min(steps, self.unroll))


def mask_elements(spec: MLPSpec, batch: int) -> int:
    """How many dropout keep-mask entries (one byte each) a training step of `batch` draws."""
    return batch * sum(width for rate, width in dropout_layers(spec) if active(rate))


def split_grad_matmul(rows: int) -> Any:
    """x @ w whose gradient for w is computed as two products, over rows [0, rows) and
    [rows, fan_in) of w, concatenated: the same sums as one product, but XLA's CPU dot
    then runs each block through the kernels that a two-thread pool's split runs them with
    (EngineSettings.split_rows)."""
    @jax.custom_vjp
    def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
        return x @ w

    def fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return x @ w, (x, w)

    def bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, w = res
        return g @ w.T, jnp.concatenate([x[:, :rows].T @ g, x[:, rows:].T @ g])

    matmul.defvjp(fwd, bwd)
    return matmul


def chunk_length(steps: int, chunks: int) -> int:
    """Steps per compiled call: a divisor of `steps` near steps/chunks, so that one shape
    (one compilation) covers the whole epoch; else that target, plus a shorter last chunk."""
    target = max(1, steps // max(chunks, 1))
    best = max(d for d in range(1, target + 1) if steps % d == 0)
    return best if best * 2 >= target else target


def epoch_chunks(n: int, batch: int, chunks_per_epoch: int) -> list[tuple[int, int, int]]:
    """(first example, steps, batch size) for each compiled call of one epoch. A last partial
    batch is trained on its own, not dropped, as Keras does."""
    batch = min(batch, n)
    full, tail = divmod(n, batch)
    k = chunk_length(full, chunks_per_epoch)
    out = [(s * batch, min(k, full - s), batch) for s in range(0, full, k)]
    if tail:
        out.append((full * batch, 1, tail))
    return out


def steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    """Training steps in an epoch of n examples (what the optimizer's schedule counts)."""
    return sum(steps for _, steps, _ in epoch_chunks(n, cfg.batch_size, cfg.chunks_per_epoch))


def shuffle_rounds(n: int) -> int:
    """How many sorts jax.random.permutation uses for n items (jax/_src/random: _shuffle)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


class Engine:
    """Compiled training and inference for one model spec, training config and settings.

    A chunk returns (params, opt_state, loss sum, hits, per-step values); the per-step values,
    (loss sums, hits) of shape (steps,), are only computed when asked for (per_batch=True),
    else None: the default program stays the plain loop. outputs=True adds each step's logits
    (steps, batch, units) and example indices (steps, batch), for metrics computed on the host
    from the training step's own outputs."""

    def __init__(self, spec: MLPSpec, cfg: TrainConfig, steps_per_epoch: int,
                 settings: EngineSettings | None = None):
        self.spec, self.cfg = spec, cfg
        self.settings = (settings if settings is not None
                         else EngineSettings.default(spec.sizes, cfg.batch_size))
        self.total_steps = steps_per_epoch * cfg.epochs
        self.tx = make_optimizer(cfg, self.total_steps)
        self.augment = augment.make_augment(cfg, spec.input_shape)
        self.train_chunk = self._jit_train_chunk()
        # Where digitnet.hostrandom does not mirror JAX's draws: once per epoch, in a thread
        # ahead of training: without LLVM's optimisations it compiles in two thirds of the
        # time, for the same bits (integer hashing).
        self.epoch_bits = jax.jit(self._epoch_bits, static_argnames=("n",),
                                  compiler_options={"xla_backend_optimization_level": 0})
        # Run once per fit, so compile them cheaply: LLVM's optimisations save nothing here (the
        # same bits come out; it is integer hashing and one affine map, or zeros).
        self.init_on_device = jax.jit(self._init_state,
                                      compiler_options={"xla_backend_optimization_level": 0})
        self.init_optimizer = jax.jit(self.tx.init,
                                      compiler_options={"xla_backend_optimization_level": 0})

    def _jit_train_chunk(self) -> Any:
        # The settings are bound here, not read from self while tracing: JAX keeps traces per
        # function, and a bound method is the same function however often it is jitted.
        return jax.jit(partial(self._train_chunk, settings=self.settings),
                       static_argnames=("steps", "batch", "per_batch", "outputs"), donate_argnums=(0, 1))

    def run_chunk(self, *args: Any, steps: int, batch: int, per_batch: bool = False,
                  outputs: bool = False) -> tuple:
        """train_chunk, except that a fused step that fails to compile (on a GPU or a JAX that
        its Triton kernels do not suit) gives way to XLA's step, with a warning, for the rest of
        this engine's life."""
        try:
            return self.train_chunk(*args, steps=steps, batch=batch, per_batch=per_batch, outputs=outputs)
        except Exception as exc:
            # Inputs already donated to a run that failed cannot be trained on again.
            donated = [a for a in jax.tree.leaves(args[:2]) if isinstance(a, jax.Array)]
            if not self.settings.fused or any(a.is_deleted() for a in donated):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"digitnet: the fused GPU training step failed ({type(exc).__name__}:"
                          f" {first}); training with XLA's step instead (DIGITNET_FUSED_STEP=0"
                          " skips the attempt)", RuntimeWarning, stacklevel=2)
            self.settings = replace(self.settings, fused=None)
            self.train_chunk = self._jit_train_chunk()
            return self.train_chunk(*args, steps=steps, batch=batch, per_batch=per_batch,
                                    outputs=outputs)

    def chunk_data(self, x: Any, y: Any, order: Any, start: int, steps: int,
                   batch: int) -> tuple[Any, Any, Any]:
        """(x, y, order) to pass train_chunk for the chunk of `steps` batches from `start` of
        an epoch in `order`: with settings.host_gather, the chunk's examples in training order
        and their indices, gathered by NumPy from host arrays x, y; else x, y, order as given."""
        if not self.settings.host_gather:
            return x, y, order
        rows = np.asarray(order)[start:start + steps * batch]
        return np.take(x, rows, axis=0), jax.tree.map(lambda a: np.take(a, rows, axis=0), y), rows

    def precompile(self, stats: Any, x: Any, y: Any,
                   chunks: list[tuple[int, int, int]], per_batch: bool = False,
                   outputs: bool = False) -> None:
        """Compile train_chunk for an epoch's chunk shapes ahead of their first call, which then
        finds the compiled program; anything that fails here is left for that call to raise."""
        try:
            params, opt_state, key = self.state_shapes()
            for steps, batch in dict.fromkeys((steps, batch) for _, steps, batch in chunks):
                rows = steps * batch if self.settings.host_gather else len(x)
                xs, ys = (jax.tree.map(partial(rows_of, rows), a) for a in (x, y))
                order = jax.ShapeDtypeStruct((rows,), jnp.int32)
                self.train_chunk.lower(params, opt_state, stats, xs, ys, order, 0, key,
                                       steps=steps, batch=batch, per_batch=per_batch,
                                       outputs=outputs).compile()
        except Exception:  # noqa: BLE001 - run_chunk meets the same error and handles it
            pass

    def state_shapes(self) -> tuple[Params, Any, jax.ShapeDtypeStruct]:
        """The shapes of init_state's params, optimizer state and keys, without tracing its
        random draws (that trace would delay the training step's compilation)."""
        params = [{"kernel": jax.ShapeDtypeStruct((a, b), jnp.float32),
                   "bias": jax.ShapeDtypeStruct((b,), jnp.float32)}
                  for a, b in zip(self.spec.sizes[:-1], self.spec.sizes[1:], strict=True)]
        return params, jax.eval_shape(self.tx.init, params), jax.eval_shape(jax.random.key, 0)

    def init_state(self, seed: int) -> tuple[Params, Any, jax.Array, jax.Array]:
        """(params, optimizer state, shuffle key, dropout key) for a seed: _init_state's, with
        the random draws made by NumPy (digitnet.hostrandom: the same bits, and only the
        optimizer's state left to compile, a far smaller program) where it mirrors JAX."""
        if not (isinstance(seed, int) and 0 <= seed < 2**31 and hostrandom.available()):
            return self.init_on_device(seed)
        init_key, order_key, dropout_key = hostrandom.split(hostrandom.key(seed), 3)
        params = jax.device_put(host_init_params(self.spec, init_key))
        return (params, self.init_optimizer(params), jax.random.wrap_key_data(order_key),
                jax.random.wrap_key_data(dropout_key))

    def _init_state(self, seed: jax.Array) -> tuple[Params, Any, jax.Array, jax.Array]:
        """(params, optimizer state, shuffle key, dropout key) for a seed, in one compiled call:
        run op by op, the same random draws and zeros would each compile on their own, which
        costs more start-up time than compiling the training step. Same bits either way."""
        init_key, order_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
        params = init_params(self.spec, init_key)
        return params, self.tx.init(params), order_key, dropout_key

    def _epoch_bits(self, key: jax.Array, dropout_key: jax.Array, epoch: jax.Array,
                    n: int) -> tuple[list[jax.Array], jax.Array]:
        """(the random sort keys of the epoch's shuffle, one array per round; its dropout key)."""
        epoch_key = jax.random.fold_in(dropout_key, epoch)
        if not self.cfg.shuffle:
            return [], epoch_key
        key, rounds = jax.random.fold_in(key, epoch), []
        for _ in range(shuffle_rounds(n)):
            key, sub = jax.random.split(key)
            rounds.append(jax.random.bits(sub, (n,), jnp.uint32))
        return rounds, epoch_key

    def epoch_order(self, key: jax.Array, dropout_key: jax.Array, epoch: int,
                    n: int) -> tuple[jax.Array, jax.Array]:
        """(the epoch's example order, its dropout key). The order is exactly
        jax.random.permutation(fold_in(key, epoch), n): its sort keys are JAX's (drawn by
        digitnet.hostrandom where it mirrors JAX, else by a compiled program), and the stable
        sorts run in NumPy, which is faster than XLA's on a CPU and can run in a thread beside
        training (fit_arrays does so)."""
        if hostrandom.available() and 0 <= epoch < 2**32:  # no program to compile
            k, dk = (np.asarray(jax.random.key_data(a)) for a in (key, dropout_key))
            epoch_key = jax.random.wrap_key_data(hostrandom.fold_in(dk, epoch))
            rounds, k = [], hostrandom.fold_in(k, epoch)
            for _ in range(shuffle_rounds(n) if self.cfg.shuffle else 0):
                k, sub = hostrandom.split(k, 2)
                rounds.append(hostrandom.bits(sub, (n,)))
        else:
            rounds, epoch_key = self.epoch_bits(key, dropout_key, epoch, n=n)
        order = np.arange(n, dtype=np.int32)
        for bits in rounds:
            order = order[np.argsort(np.asarray(bits), kind="stable")]
        return jax.device_put(order), epoch_key  # once, not at each of the epoch's chunks

    def with_knobs(self, knobs: dict[str, Any]) -> tuple[MLPSpec, TrainConfig, Any, Any]:
        """The training step's (spec, config, optimizer, augmentation), with some scalar
        settings replaced by traced values: one member's of a population (digitnet.knobs). The
        spec does not deskew: fit_arrays hands the step data already deskewed."""
        if not knobs:
            return replace(self.spec, deskew=False), self.cfg, self.tx, self.augment
        spec, cfg = copy.copy(self.spec), copy.copy(self.cfg)  # no validation of traced values
        object.__setattr__(spec, "deskew", False)
        for name, value in knobs.items():
            if name == "dropout":  # one rate per hidden layer; layers without dropout keep 0
                value = tuple(value[i] if r else 0.0 for i, r in enumerate(self.spec.dropout))
            object.__setattr__(spec, name, value) if name in SPEC_KNOBS else setattr(cfg, name, value)
        return spec, cfg, make_optimizer(cfg, self.total_steps), augment.make_augment(
            cfg, spec.input_shape)

    def _train_chunk(self, params, opt_state, stats, x, y, order, start, key, knobs=None, *,
                     steps, batch, settings, per_batch=False, outputs=False):
        """One chunk of training steps; `knobs`: a population member's traced settings. `y`:
        the targets, or (targets, per-example loss weights) (fit_arrays' sample_weight)."""
        spec, cfg, tx, aug = self.with_knobs(knobs or {})
        loss, smoothing = cfg.loss, cfg.label_smoothing
        use_dropout = bool(self.spec.dropout) or bool(self.spec.input_dropout)
        weighted = isinstance(y, tuple)
        if settings.fused and not knobs and not outputs and not weighted:
            from digitnet import fused  # Pallas: only where the fused step may run

            if fused.applies(spec, self.cfg, batch, soft_labels=y.ndim == 2,
                             augmented=aug is not None):
                out = fused.train_chunk(params, opt_state, stats, x, y, order, start,
                                        steps=steps, batch=batch, lr=self.cfg.lr,
                                        unroll=settings.scan_unroll(steps),
                                        interpret=settings.fused == "interpret",
                                        **dict(settings.kernels))
                return out if per_batch else (*out[:4], None)

        weights = class_weight_values(cfg.class_weight)
        class_weights = None if weights is None else jnp.asarray(weights, jnp.float32)
        first_matmul = (split_grad_matmul(settings.split_rows)
                        if 0 < settings.split_rows < spec.sizes[0] else None)

        def loss_fn(p, xb, targets, k, masks):
            yb, wb = targets if weighted else (targets, None)
            if aug is not None:
                xb = aug(jax.random.fold_in(k, AUGMENT_STREAM), xb)
            batch_stats: list | None = [] if spec.batchnorm or spec.input_batchnorm else None
            logits = forward(p, stats, xb, spec, k if use_dropout else None, first_matmul, masks,
                             batch_stats)
            losses = loss_values(logits, yb, loss, smoothing)
            if class_weights is not None:  # Keras' class_weight: before the layers' penalties
                losses = class_weighted(losses, yb, class_weights)
            if wb is not None:  # Keras' sample_weight, likewise
                losses = losses * wb
            if spec.regularized:  # Keras' kernel/bias penalties: part of the loss, per example
                losses = losses + penalty(p, spec)
            return losses.mean(), (losses.sum(), hits(logits, yb), logits if outputs else None,
                                   batch_stats)

        # The chunk's examples, gathered in training order once: a step then reads its batch as
        # one contiguous slice, which XLA fuses into the input's conversion, instead of a gather
        # of 32 rows whose index arithmetic runs per element. The same values, so the same bits.
        # (With settings.host_gather, the caller passed them gathered: Engine.chunk_data.)
        if settings.host_gather:
            rows, xs, ys = order, x, y
        else:
            rows = jax.lax.dynamic_slice(order, (start,), (steps * batch,))
            xs, ys = x[rows], jax.tree.map(lambda v: v[rows], y)

        def step_key(i):
            return jax.random.fold_in(key, start + i * batch)

        def step(carry, i_masks):
            i, masks = i_masks
            p, s, loss_sum, correct = carry
            xb = jax.lax.dynamic_slice_in_dim(xs, i * batch, batch)
            yb = jax.tree.map(lambda v: jax.lax.dynamic_slice_in_dim(v, i * batch, batch), ys)
            k = step_key(i)
            # Loss and accuracy come from the same forward pass as the gradient, as in Keras.
            (_, (batch_loss, batch_hits, logits, batch_stats)), grads = jax.value_and_grad(
                loss_fn, has_aux=True)(p, xb, yb, k, masks)
            updates, s = tx.update(grads, s, p)
            new = optax.apply_updates(p, updates)
            if batch_stats:  # Keras' BatchNormalization: its moving averages follow the batches
                new = update_moving_stats(spec, new, p, batch_stats)
            if spec.kernel_max_norm:  # Keras' MaxNorm kernel constraints, after the update
                new = keras_max_norm(new, spec.kernel_max_norm)
            carry = (new, s, loss_sum + batch_loss, correct + batch_hits)
            if outputs:
                idx = jax.lax.dynamic_slice_in_dim(rows, i * batch, batch)
                return carry, (batch_loss, batch_hits, logits, idx)
            return carry, (batch_loss, batch_hits) if per_batch else None

        zero = jnp.zeros((), jnp.float32)
        carry = (params, opt_state, zero, jnp.zeros((), jnp.int32))
        block = settings.mask_block_steps(steps, mask_elements(spec, batch))
        unroll = settings.scan_unroll(steps, draws=aug is not None or (use_dropout and not block))
        if not block:
            carry, per_step = jax.lax.scan(step, carry, (jnp.arange(steps), None), unroll=unroll)
        else:
            # Each block's masks in one draw (vmap of the step's own draw: the same masks).
            def run(carry, first, n):
                i = first + jnp.arange(n)
                masks = jax.vmap(lambda j: dropout_masks(spec, step_key(j), batch))(i)
                return jax.lax.scan(step, carry, (i, masks), unroll=min(unroll, n))

            blocks, rest = divmod(steps, block)
            carry, per_step = jax.lax.scan(lambda c, b: run(c, b * block, block), carry,
                                           jnp.arange(blocks))
            per_step = jax.tree.map(lambda v: v.reshape(-1, *v.shape[2:]), per_step)
            if rest:
                carry, tail = run(carry, blocks * block, rest)
                per_step = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), per_step, tail)
        params, opt_state, loss_sum, correct = carry
        return params, opt_state, loss_sum, correct, per_step


def rows_of(rows: int, a: Any) -> jax.ShapeDtypeStruct:
    """The shape of `rows` rows of array a."""
    return jax.ShapeDtypeStruct((rows, *a.shape[1:]), a.dtype)


def engine_for(spec: MLPSpec, cfg: TrainConfig, steps_per_epoch: int,
               settings: EngineSettings | None = None) -> Engine:
    """The engine for a run, shared by runs that differ only in HOST_ONLY fields.
    settings: EngineSettings.default() when None."""
    compiled = tuple((k, v) for k, v in cfg.to_dict().items() if k not in HOST_ONLY)
    if settings is None:
        settings = EngineSettings.default(spec.sizes, cfg.batch_size)
    return _cached_engine(type(cfg), spec, compiled, steps_per_epoch, settings)


@lru_cache(maxsize=8)
def _cached_engine(config_type: type, spec: MLPSpec, compiled: tuple, steps_per_epoch: int,
                   settings: EngineSettings) -> Engine:
    return Engine(spec, config_type(**dict(compiled)), steps_per_epoch, settings)


@jax.jit
def all_finite(params: Params) -> jax.Array:
    # One compiled call: op by op, each leaf's check would be a dispatch of its own.
    return jnp.all(jnp.stack([jnp.isfinite(v).all() for v in jax.tree.leaves(params)]))


def check_finite(params: Params, epoch: int, lr: float) -> None:
    """The last step of an epoch can blow the weights up after its loss was read; such
    weights must not reach a checkpoint."""
    if jax.default_backend() == "cpu":
        # The weights already live in host memory: NumPy reads them in place, and a cold start
        # saves compiling all_finite.
        finite = all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(params))
    else:
        finite = bool(all_finite(params))
    if not finite:
        raise TrainingDiverged(
            f"the weights became NaN or infinite in epoch {epoch + 1}; training stopped "
            f"(lower the learning rate, now {lr:g})"
        )
