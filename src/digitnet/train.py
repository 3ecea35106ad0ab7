"""Training: optimizers, the compiled epoch loop, callbacks and history.

The training set lives on the device, as given (uint8 pixels stay uint8; the model's
preprocessing runs inside the compiled step). One jitted call trains a chunk of an epoch with
`lax.scan`, so Python only runs between chunks: to move the progress bar and read the loss.
On a GPU, the steps that digitnet.fused covers (the tutorial's: a ReLU MLP, Adam, cross-entropy)
run as its two hand-written kernels instead of XLA's step (runtime.fused_step).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from digitnet import augment, regularize, runtime
from digitnet.deskew import deskew_dataset
from digitnet.errors import ConfigError, TrainingDiverged
from digitnet.metrics import LOSSES, loss_values, target_labels
from digitnet.model import MLPSpec, Params, forward, init_params

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7  # Keras' Adam (digitnet.fused runs the same)
SCHEDULES = ("constant", "cosine", "onecycle", "step")


@dataclass
class TrainConfig:
    """How to train. The defaults are the tutorial's: Adam 1e-3, 5 epochs at batch 32."""

    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    schedule: str = "constant"
    weight_decay: float = 0.0  # L2 on kernels; decoupled for adamw
    validation: str = "test"  # "test", "none", or a held-out fraction of train such as "0.1"
    seed: int = 1
    shuffle: bool = True
    patience: int = 0  # early stopping on val_loss after this many epochs without progress
    chunks_per_epoch: int = 20  # how often per epoch the progress bar moves
    loss: str = "cross_entropy"  # or "mse" (of the softmax probabilities)
    # Schedules: cosine warms up linearly over `warmup` epochs; step multiplies the rate by
    # step_gamma every step_epochs epochs (0: a third of the run).
    warmup: float = 0.0
    step_epochs: int = 0
    step_gamma: float = 0.1
    # Regularisation (see digitnet.regularize); 0 = off.
    label_smoothing: float = 0.0
    max_norm: float = 0.0  # bound on the L2 norm of each unit's incoming weights
    ema: float = 0.0  # decay of an average of the weights, used for evaluation and saving
    # Augmentation on the device (see digitnet.augment); 0 = off. Bounds of uniform draws.
    aug_shift: float = 0.0  # pixels, per axis
    aug_rotate: float = 0.0  # degrees
    aug_scale: float = 0.0  # fraction: zoom in [1 - s, 1 + s]
    aug_shear: float = 0.0  # degrees
    elastic_alpha: float = 0.0  # Simard's α (pixels); 0 = no elastic distortion
    elastic_sigma: float = 4.0  # Simard's σ (pixels)

    def __post_init__(self) -> None:
        self.validation = str(self.validation)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if self.validation not in ("test", "none"):
            try:
                frac = float(self.validation)
            except ValueError:
                frac = -1.0
            if not 0 < frac < 1:
                raise ConfigError(
                    f"validation must be 'test', 'none' or a fraction in (0, 1), got {self.validation!r}"
                )
        if not (0 <= self.label_smoothing < 1 and 0 <= self.ema < 1):
            raise ConfigError("label_smoothing and ema must be in [0, 1)")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ConfigError(f"label smoothing applies to the cross-entropy loss, not {self.loss}")
        if self.max_norm < 0 or self.warmup < 0 or self.step_epochs < 0 or not 0 < self.step_gamma <= 1:
            raise ConfigError("max_norm, warmup and step_epochs must be ≥ 0, step_gamma in (0, 1]")
        augment.validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer, then the max-norm projection and the weight average if asked for."""
    tx = base_optimizer(cfg, total_steps)
    if cfg.max_norm:
        tx = optax.chain(tx, regularize.max_norm(cfg.max_norm))
    if cfg.ema:
        tx = optax.chain(tx, regularize.weight_ema(cfg.ema))
    return tx


def base_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer with Keras' defaults (eps=1e-7 for Adam and RMSprop, rho=0.9)."""
    steps_per_epoch = max(total_steps, 1) / cfg.epochs
    if cfg.schedule == "cosine" and cfg.warmup:
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, round(cfg.warmup * steps_per_epoch),
                                                max(total_steps, 1))
    elif cfg.schedule == "cosine":
        lr = optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
    elif cfg.schedule == "step":
        every = cfg.step_epochs or max(1, cfg.epochs // 3)
        lr = optax.exponential_decay(cfg.lr, max(1, round(every * steps_per_epoch)), cfg.step_gamma,
                                     staircase=True)
    elif cfg.schedule == "onecycle":
        lr = optax.cosine_onecycle_schedule(max(total_steps, 1), cfg.lr)
    else:
        lr = cfg.lr
    if cfg.optimizer == "adam":
        tx = optax.adam(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
    elif cfg.optimizer == "adamw":
        return optax.adamw(lr, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS, weight_decay=cfg.weight_decay,
                           mask=kernel_mask)
    elif cfg.optimizer == "sgd":
        tx = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
    else:
        tx = optax.rmsprop(lr, decay=0.9, eps=1e-7)
    if cfg.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay, mask=kernel_mask), tx)
    return tx


def kernel_mask(params: Params) -> list[dict[str, bool]]:
    return [{name: name == "kernel" for name in layer} for layer in params]


def chunk_length(steps: int, chunks: int) -> int:
    """Steps per compiled call: a divisor of `steps` near steps/chunks, so that one shape
    (one compilation) covers the whole epoch; else that target, plus a shorter last chunk."""
    target = max(1, steps // max(chunks, 1))
    best = max(d for d in range(1, target + 1) if steps % d == 0)
    return best if best * 2 >= target else target


@dataclass
class TrainState:
    params: Params
    opt_state: Any
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False

    def weights(self) -> Params:
        """The weights to evaluate and save: the EMA when one is tracked, else the parameters."""
        ema = regularize.ema_params(self.opt_state)
        return self.params if ema is None else ema


class Callback:
    """Hooks called between compiled chunks; never inside the per-step path."""

    def on_train_begin(self, state: TrainState, steps_per_epoch: int, epochs: int) -> None: ...
    def on_epoch_begin(self, epoch: int) -> None: ...
    def on_chunk_end(self, steps_done: int, loss: float, accuracy: float) -> None: ...
    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; restore the best weights."""

    def __init__(self, patience: int, monitor: str = "val_loss", restore_best: bool = True,
                 min_delta: float = 0.0):
        self.patience, self.monitor, self.restore_best = patience, monitor, restore_best
        self.min_delta = min_delta
        self.mode = -1.0 if "acc" in monitor else 1.0  # lower loss / higher accuracy is better
        self.best, self.best_params, self.wait = math.inf, None, 0

    def on_epoch_end(self, state: TrainState, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            return
        if self.mode * value < self.best - self.min_delta:
            self.best, self.wait = self.mode * value, 0
            if self.restore_best:
                self.best_params = jax.tree.map(np.array, state.weights())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_params is not None:
            state.params = jax.tree.map(jnp.asarray, self.best_params)
            state.opt_state = regularize.replace_ema(state.opt_state, state.params)


def shuffle_rounds(n: int) -> int:
    """How many sorts jax.random.permutation uses for n items (jax/_src/random: _shuffle)."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


# Folded into a batch's key for its augmentation draws; dropout uses small layer indices.
AUGMENT_STREAM = 0x6A09E667

# Training steps per iteration of the compiled loop, by JAX backend (jax.default_backend()).
# CPU: two. A tutorial epoch takes ~9% less wall and CPU time than at one step per iteration
# (same weights, bit for bit), for ~0.25 s more compilation on a cold run; four compiled ~0.6 s
# longer for no further gain (bench/levers.py: engine vs engine-unroll-1).
# GPU: five. Each iteration of XLA's loop costs the GPU a fixed overhead beyond its kernels;
# on an H100 a tutorial epoch with XLA's step took 0.061 s at one step per iteration, 0.050 s
# at five, 0.051 s at 25 and 0.074 s at 75 (the whole chunk, which also compiled for 27 s;
# five compiled fastest, in 2 s). digitnet.fused's step: 0.076 s at one, 0.065 s at five and
# at 25 (with 128 rows per program of P).
# Measured by bench/gpu.py; see docs/performance.md.
SCAN_UNROLL: dict[str, int] = {"cpu": 2, "gpu": 5}


def scan_unroll(steps: int, draws: bool = False) -> int:
    """Steps per loop iteration for a chunk of `steps`. A step with random draws (dropout,
    augmentation) stays one per iteration: its threefry hashing makes the unrolled body large.
    On an H100 the `fast` recipe's five-step loop compiled in 9.6 s, and the same step alone
    (its epoch's last, partial batch) in 3.0 s (bench/results/gpu-compile-profile.txt), while
    unrolling saved about 6 µs a step on the tutorial: 3 ms a recipe epoch of 469 steps."""
    if draws:
        return 1
    return max(1, min(steps, SCAN_UNROLL.get(jax.default_backend(), 1)))


class Engine:
    """Compiled training and inference for one model spec and one training config.
    fused_mode: runtime.fused_step()'s answer, fixed when the engine is made."""

    def __init__(self, spec: MLPSpec, cfg: TrainConfig, steps_per_epoch: int,
                 fused_mode: str | None = None):
        self.spec, self.cfg, self.fused_mode = spec, cfg, fused_mode
        self.tx = make_optimizer(cfg, steps_per_epoch * cfg.epochs)
        self.augment = augment.make_augment(cfg, spec.input_shape)
        self.train_chunk = self._jit_train_chunk()
        self.epoch_bits = jax.jit(self._epoch_bits, static_argnames=("n",))
        # Run once per fit, so compile it cheaply: LLVM's optimisations cost ~1 s here and save
        # nothing (the same bits come out; it is integer hashing and one affine map).
        self.init_state = jax.jit(self._init_state,
                                  compiler_options={"xla_backend_optimization_level": 0})

    def _jit_train_chunk(self) -> Any:
        # The mode is bound here, not read from self while tracing: JAX keeps traces per
        # function, and a bound method is the same function however often it is jitted.
        return jax.jit(partial(self._train_chunk, fused_mode=self.fused_mode),
                       static_argnames=("steps", "batch"), donate_argnums=(0, 1))

    def run_chunk(self, *args: Any, steps: int, batch: int) -> tuple:
        """train_chunk, except that a fused step that fails to compile (on a GPU or a JAX that
        its Triton kernels do not suit) gives way to XLA's step, with a warning, for the rest of
        the process."""
        try:
            return self.train_chunk(*args, steps=steps, batch=batch)
        except Exception as exc:
            # Inputs already donated to a run that failed cannot be trained on again.
            donated = [a for a in jax.tree.leaves(args[:2]) if isinstance(a, jax.Array)]
            if not self.fused_mode or any(a.is_deleted() for a in donated):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"digitnet: the fused GPU training step failed ({type(exc).__name__}:"
                          f" {first}); training with XLA's step instead (DIGITNET_FUSED_STEP=0"
                          " skips the attempt)", RuntimeWarning, stacklevel=2)
            self.fused_mode = None
            self.train_chunk = self._jit_train_chunk()
            return self.train_chunk(*args, steps=steps, batch=batch)

    def _init_state(self, seed: jax.Array) -> tuple[Params, Any, jax.Array, jax.Array]:
        """(params, optimizer state, shuffle key, dropout key) for a seed, in one compiled call:
        run op by op, the same random draws and zeros would each compile on their own, which
        cost more start-up time than compiling the training step (jax_log_compiles). The
        values are the same bits either way."""
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
        jax.random.permutation(fold_in(key, epoch), n): its sort keys come from JAX, but the
        stable sorts run in NumPy, which takes a quarter of XLA's time on the CPU and can run
        in a thread beside training (fit_arrays does so)."""
        rounds, epoch_key = self.epoch_bits(key, dropout_key, epoch, n=n)
        order = np.arange(n, dtype=np.int32)
        for bits in rounds:
            order = order[np.argsort(np.asarray(bits), kind="stable")]
        return jax.device_put(order), epoch_key  # once, not at each of the epoch's chunks

    def _train_chunk(self, params, opt_state, stats, x, y, order, start, key, *, steps, batch,
                     fused_mode):
        # fit_arrays hands the step data that is already deskewed (see digitnet.deskew).
        spec, tx, loss = replace(self.spec, deskew=False), self.tx, self.cfg.loss
        aug, smoothing = self.augment, self.cfg.label_smoothing
        use_dropout = bool(spec.dropout) or bool(spec.input_dropout)
        if fused_mode:
            from digitnet import fused  # Pallas: only where the fused step may run

            if fused.applies(spec, self.cfg, batch, soft_labels=y.ndim == 2,
                             augmented=aug is not None):
                return fused.train_chunk(params, opt_state, stats, x, y, order, start,
                                         steps=steps, batch=batch, lr=self.cfg.lr,
                                         unroll=scan_unroll(steps),
                                         interpret=fused_mode == "interpret")

        def loss_fn(p, xb, yb, k):
            if aug is not None:
                xb = aug(jax.random.fold_in(k, AUGMENT_STREAM), xb)
            logits = forward(p, stats, xb, spec, k if use_dropout else None)
            losses = loss_values(logits, yb, loss, smoothing)
            return losses.mean(), (losses.sum(), jnp.sum(jnp.argmax(logits, -1) == target_labels(yb)))

        def step(carry, i):
            p, s, loss_sum, correct = carry
            idx = jax.lax.dynamic_slice(order, (start + i * batch,), (batch,))
            k = jax.random.fold_in(key, start + i * batch)
            # Loss and accuracy come from the same forward pass as the gradient, as in Keras.
            (_, (batch_loss, hits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                p, x[idx], y[idx], k)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s, loss_sum + batch_loss, correct + hits), None

        zero = jnp.zeros((), jnp.float32)
        (params, opt_state, loss_sum, correct), _ = jax.lax.scan(
            step, (params, opt_state, zero, jnp.zeros((), jnp.int32)), jnp.arange(steps),
            unroll=scan_unroll(steps, draws=use_dropout or aug is not None))
        return params, opt_state, loss_sum, correct


# TrainConfig fields that never reach the compiled functions. Runs that differ only in these
# (the seeds of a sweep, say) share one Engine, so its programs are traced and compiled once
# per process instead of once per run.
HOST_ONLY = ("seed", "validation", "patience", "chunks_per_epoch")


def engine_for(spec: MLPSpec, cfg: TrainConfig, steps_per_epoch: int) -> Engine:
    compiled = tuple((k, v) for k, v in cfg.to_dict().items() if k not in HOST_ONLY)
    return _cached_engine(spec, compiled, steps_per_epoch, runtime.fused_step())


@lru_cache(maxsize=8)
def _cached_engine(spec: MLPSpec, compiled: tuple, steps_per_epoch: int,
                   fused_mode: str | None) -> Engine:
    return Engine(spec, TrainConfig(**dict(compiled)), steps_per_epoch, fused_mode)


class EpochMeter:
    """Running loss and accuracy of one epoch, fed chunk by chunk; stops on a NaN/Inf loss."""

    def __init__(self, epoch: int, lr: float, callbacks: Sequence[Callback]):
        self.epoch, self.lr, self.callbacks = epoch, lr, callbacks
        self.loss, self.correct, self.seen, self.steps = 0.0, 0, 0, 0

    def add(self, loss_sum: jax.Array, correct: jax.Array, steps: int, batch: int) -> None:
        value = float(loss_sum)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the loss became {value} in epoch {self.epoch + 1}; training stopped "
                f"(lower the learning rate, now {self.lr:g})"
            )
        self.loss += value
        self.correct += int(correct)
        self.seen += steps * batch
        self.steps += steps
        for cb in self.callbacks:
            cb.on_chunk_end(self.steps, self.loss / self.seen, self.correct / self.seen)


@jax.jit
def all_finite(params: Params) -> jax.Array:
    # One compiled call: op by op, the checks cost ~15 ms an epoch (a tenth of a tutorial epoch).
    return jnp.all(jnp.stack([jnp.isfinite(v).all() for v in jax.tree.leaves(params)]))


def check_finite(params: Params, epoch: int, lr: float) -> None:
    """The last step of an epoch can blow the weights up after its loss was read; such
    weights must not reach a checkpoint."""
    if not bool(all_finite(params)):
        raise TrainingDiverged(
            f"the weights became NaN or infinite in epoch {epoch + 1}; training stopped "
            f"(lower the learning rate, now {lr:g})"
        )


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


def fit_arrays(
    spec: MLPSpec,
    cfg: TrainConfig,
    x: np.ndarray,
    y: np.ndarray,
    stats: dict[str, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    state: TrainState | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainState:
    """Train on arrays x (N, ...) of raw inputs and y (N,) of integer labels, or (N, classes)
    of target rows (soft labels).

    Pass `state` (from a checkpoint) to resume: epochs before `state.epoch` are skipped, and
    since every epoch's shuffle and dropout masks derive from (seed, epoch), the result is the
    same as an uninterrupted run.
    """
    from digitnet.metrics import evaluate_arrays

    n = len(x)
    if n == 0:
        raise ConfigError("no training examples")
    chunks = epoch_chunks(n, cfg.batch_size, cfg.chunks_per_epoch)
    steps_per_epoch = sum(steps for _, steps, _ in chunks)
    engine = engine_for(spec, cfg, steps_per_epoch)
    params, opt_state, order_key, dropout_key = engine.init_state(cfg.seed)
    if state is None:
        state = TrainState(params=params, opt_state=opt_state)
    else:
        state.params = jax.tree.map(jnp.asarray, state.params)
        state.opt_state = jax.tree.map(jnp.asarray, state.opt_state)
    y = np.asarray(y, np.float32 if np.ndim(y) == 2 else np.int32)
    # Deskewing is deterministic: done once here, not in every step (it rounds to uint8, so
    # the step sees the same pixels either way).
    xd = deskew_dataset(x.reshape(n, *spec.input_shape)) if spec.deskew else jax.device_put(x)
    yd = jax.device_put(y)
    statsd = jax.device_put(stats)
    for cb in callbacks:
        cb.on_train_begin(state, steps_per_epoch, cfg.epochs)

    # Each epoch's shuffle is worked out in a thread while the epoch before it trains.
    shuffler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitnet-shuffle")
    upcoming = shuffler.submit(engine.epoch_order, order_key, dropout_key, state.epoch, n)
    try:
        for epoch in range(state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            order, epoch_key = upcoming.result()
            if epoch + 1 < cfg.epochs:
                upcoming = shuffler.submit(engine.epoch_order, order_key, dropout_key, epoch + 1, n)
            meter = EpochMeter(epoch, cfg.lr, callbacks)
            # Read each chunk's loss only after the next chunk is queued, so that the device
            # never waits for Python.
            pending = None
            for start, steps, batch in chunks:
                state.params, state.opt_state, loss_sum, correct = engine.run_chunk(
                    state.params, state.opt_state, statsd, xd, yd, order, start, epoch_key,
                    steps=steps, batch=batch)
                if pending is not None:
                    meter.add(*pending)
                pending = (loss_sum, correct, steps, batch)
            meter.add(*pending)
            check_finite(state.params, epoch, cfg.lr)

            logs: dict[str, float] = {
                "epoch": epoch + 1,
                "loss": meter.loss / meter.seen,
                "accuracy": meter.correct / meter.seen,
            }
            if validation is not None:
                # val_loss is the training objective (label smoothing included), as in Keras.
                ev = evaluate_arrays(spec, state.weights(), statsd, *validation, loss=cfg.loss,
                                     smoothing=cfg.label_smoothing)
                logs["val_loss"], logs["val_accuracy"] = ev.loss, ev.accuracy
            logs["seconds"] = time.perf_counter() - t0
            state.epoch = epoch + 1
            state.history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(state, logs)
            if state.stop:
                break
    finally:
        shuffler.shutdown(wait=False, cancel_futures=True)
    for cb in callbacks:
        cb.on_train_end(state)
    return state

