"""Populations: K models with the same layer shapes trained together in one compiled program.

The engine's training chunk is mapped over the members with jax.vmap: each member has its own
parameters, optimizer state, seed (initialisation, shuffle, dropout and augmentation keys) and
its own values of the scalar settings in digitnet.knobs (learning rate, weight decay, dropout
rates, ...). The training data is shared. A member computes what it computes alone, up to the
order of floating-point operations that XLA picks for the batched program. Members are grouped
by `group_key`: what must be equal for one program to train them.

Memory: a population is split into parts of at most `max_members` (from the device's memory,
see `fits_in_memory`), trained one after the other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from digitnet.artifacts import Checkpoint
from digitnet.callbacks import Callback, TrainState
from digitnet.deskew import deskew_dataset
from digitnet.engine import Engine, EngineSettings, all_finite, engine_for, epoch_chunks, mask_elements
from digitnet.errors import ConfigError, DigitnetError
from digitnet.knobs import SPEC_KNOBS, TRAIN_KNOBS, nonzero_pattern
from digitnet.model import MLPSpec
from digitnet.train import EpochMeter, fit_arrays
from digitnet.trainconfig import TrainConfig

# TrainConfig fields that never reach the compiled program and may differ between members.
PER_MEMBER = ("seed", "patience", "validation")


def group_key(spec: MLPSpec, cfg: TrainConfig) -> tuple:
    """What members must share to train in one program: everything but their seeds, host-side
    settings and the values (not the non-zero pattern) of their knobs."""
    model = {k: nonzero_pattern(v) if k in SPEC_KNOBS else v for k, v in spec.to_dict().items()}
    train = {k: nonzero_pattern(v) if k in TRAIN_KNOBS else v for k, v in cfg.to_dict().items()
             if k not in PER_MEMBER}
    # A held-out fraction changes how many examples train (the shapes), "test" and "none" do not.
    frac = cfg.validation if cfg.validation not in ("test", "none") else None
    return (tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(model.items())),
            tuple(sorted(train.items())), frac)


@dataclass
class Member:
    """One model of a population: its settings, where it starts, what watches it."""

    spec: MLPSpec
    cfg: TrainConfig
    stats: dict[str, np.ndarray]
    rows: np.ndarray | None = None  # the training rows of the shared data; None: all of them
    validation: tuple[np.ndarray, np.ndarray] | None = None
    state: TrainState | None = None  # to resume from
    callbacks: Sequence[Callback] = ()
    error: DigitnetError | None = None  # set when this member failed (it diverged)
    done: bool = field(default=False, repr=False)
    together: int = 1  # how many members trained in its program, itself included
    seconds: float = 0.0  # that program's training time


def knob_values(members: Sequence[Member]) -> dict[str, np.ndarray]:
    """The knobs whose values differ between members: name -> (K,) or (K, layers) float32.
    Knobs that every member has at the same value stay constants of the program."""
    out = {}
    for name in TRAIN_KNOBS:
        values = [getattr(m.cfg, name) for m in members]
        if len(set(values)) > 1:
            out[name] = np.asarray(values, np.float32)
    for name in SPEC_KNOBS:
        values = [getattr(m.spec, name) for m in members]
        if len(set(values)) > 1:
            out[name] = np.asarray(values, np.float32)
    return out


class PopulationEngine:
    """The Engine's compiled functions, mapped over the members of a population."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # XLA's step: digitnet.fused's kernels train one model at a time.
        self.settings = replace(engine.settings, fused=None)
        self.train_chunk = jax.jit(self._train_chunk, static_argnames=("steps", "batch"),
                                   donate_argnums=(0, 1))
        self.init_state = jax.jit(jax.vmap(engine._init_state),
                                  compiler_options={"xla_backend_optimization_level": 0})
        self.finite = jax.jit(jax.vmap(all_finite))
        self.epoch_orders = jax.jit(jax.vmap(self._epoch_order, in_axes=(0, 0, None, None)),
                                    static_argnums=3)

    def _epoch_order(self, key: jax.Array, dropout_key: jax.Array, epoch: jax.Array,
                     n: int) -> tuple[jax.Array, jax.Array]:
        """Engine.epoch_order on the device: the same permutation, sorted by XLA."""
        epoch_key = jax.random.fold_in(dropout_key, epoch)
        if not self.engine.cfg.shuffle:
            return jnp.arange(n, dtype=jnp.int32), epoch_key
        return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32), epoch_key

    def _train_chunk(self, params, opt_state, stats, x, y, orders, start, keys, knobs, *, steps,
                     batch):
        """With settings.host_gather, x, y and orders are each member's chunk (its examples in
        training order and their indices: member axis first); else the shared training set
        and each member's epoch order."""
        def one(p, s, st, xm, ym, order, key, kn):
            return self.engine._train_chunk(p, s, st, xm, ym, order, start, key, kn, steps=steps,
                                            batch=batch, settings=self.settings)[:4]

        data = 0 if self.settings.host_gather else None
        return jax.vmap(one, in_axes=(0, 0, 0, data, data, 0, 0, 0))(
            params, opt_state, stats, x, y, orders, keys, knobs)


@lru_cache(maxsize=8)
def population_evaluation(spec: MLPSpec, loss: str, smoothing: float | None) -> Any:
    """(params, opt_state, stats, x, y, eps) of K members -> each member's mean loss and hit
    count on x, y: metrics.evaluate_arrays for a whole population in one call, on the weights
    TrainState.weights() gives (the EMA when one is tracked). `smoothing`: the label
    smoothing every member has, or None when each has its own (then eps, one per member)."""
    from digitnet import regularize
    from digitnet.metrics import loss_values, target_labels
    from digitnet.model import blocked_forward

    def one(params, opt_state, stats, x, y, eps):
        ema = regularize.ema_params(opt_state)
        logits = blocked_forward(params if ema is None else ema, stats, x.reshape(len(x), -1), spec)
        ce = loss_values(logits, y, loss=loss, smoothing=smoothing if smoothing is not None else eps)
        return ce.mean(), (logits.argmax(-1) == target_labels(y)).sum()

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, 0)))


@lru_cache(maxsize=8)
def population_engine(engine: Engine) -> PopulationEngine:
    return PopulationEngine(engine)


def member_bytes(spec: MLPSpec, cfg: TrainConfig, n_train: int) -> int:
    """A generous estimate of the device memory one more member takes: parameters, gradients,
    updates and optimizer state (with an EMA), one batch's activations and their gradients
    (more with augmentation), a block of dropout masks with the random bits they are drawn
    from, and its epoch's example order."""
    params = spec.num_params * 4
    width = spec.input_dim + 2 * sum(spec.hidden) + spec.num_classes
    acts = cfg.batch_size * width * 4 * (12 if cfg.aug_shift or cfg.aug_rotate or cfg.aug_scale
                                         or cfg.aug_shear or cfg.elastic_alpha else 3)
    per_step, settings = mask_elements(spec, cfg.batch_size), EngineSettings()
    masks = 9 * per_step * settings.mask_block_steps(settings.mask_block, per_step)
    return 8 * params + 2 * acts + masks + 8 * n_train


def device_memory() -> int:
    """Bytes the device can give a population: a GPU's allocator limit less what is in use,
    or the host's available memory for the CPU."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def max_members(spec: MLPSpec, cfg: TrainConfig, n_train: int, memory: int | None = None) -> int:
    """The largest population that fits in half of the device's free memory (at least 1).
    DIGITNET_MAX_POPULATION caps it."""
    memory = device_memory() if memory is None else memory
    k = max(1, memory // 2 // max(1, member_bytes(spec, cfg, n_train)))
    cap = os.environ.get("DIGITNET_MAX_POPULATION", "")
    if cap:
        try:
            k = min(k, max(1, int(cap)))
        except ValueError:
            raise ConfigError(f"DIGITNET_MAX_POPULATION must be an integer, got {cap!r}") from None
    return int(k)


def stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(v) for v in leaves]), *trees)


def unstack(tree: Any, k: int) -> list[Any]:
    """K member trees of NumPy arrays (one copy from the device)."""
    host = jax.tree.map(np.asarray, tree)
    return [jax.tree.map(lambda a, i=i: a[i], host) for i in range(k)]


class Placement:
    """Where a population's arrays live: one device, or (with several `devices`, by default
    those of the default backend: runtime.population_devices) its members split evenly over
    them, the population padded with copies of its last member to a multiple of the devices
    (their results are dropped). The compiled program is then partitioned by XLA, each device
    training whole members."""

    def __init__(self, k: int, devices: Sequence[Any] | None = None):
        devices = list(devices) if devices is not None else jax.devices()
        self.k = k
        self.ways = min(len(devices), k)
        self.padded = -(-k // self.ways) * self.ways
        self.device = devices[0]
        if self.ways > 1:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.array(devices[: self.ways]), ("members",))
            self.split = NamedSharding(mesh, PartitionSpec("members"))
            self.whole = NamedSharding(mesh, PartitionSpec())

    def pad(self, tree: Any) -> Any:
        """Member-axis arrays padded to `padded` members (copies of the last). NumPy arrays are
        padded by NumPy: an eager JAX op would wait for the device's queue (the training)."""
        def one(a: Any) -> Any:
            extra = self.padded - len(a)
            if extra <= 0:
                return a
            if isinstance(a, np.ndarray):
                return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])
            return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

        return jax.tree.map(one, tree) if self.padded > self.k else tree

    def members(self, tree: Any) -> Any:
        """Padded member-axis arrays, split over the devices."""
        tree = self.pad(tree)
        return jax.device_put(tree, self.split if self.ways > 1 else self.device)

    def shared(self, tree: Any) -> Any:
        """Arrays every member reads (the data), on every device."""
        return jax.device_put(tree, self.whole if self.ways > 1 else self.device)


def fit_population(members: Sequence[Member], x: np.ndarray, y: np.ndarray,
                   parts: int | None = None, settings: EngineSettings | None = None,
                   devices: Sequence[Any] | None = None) -> list[Member]:
    """Train members that share a group_key and a starting epoch, on the shared raw inputs x
    and labels y (each member on its `rows`). Each member's state ends in `member.state`, or
    its error in `member.error`. The population is split into parts of at most `parts`
    members (default: max_members). `settings`: how the engine runs (digitnet.engine).
    `devices`: where its members train (default: every device of the default backend)."""
    if not members:
        return []
    if len({group_key(m.spec, m.cfg) for m in members}) != 1:
        raise ConfigError("a population's members must share their shapes and structure")
    if len({m.state.epoch if m.state else 0 for m in members}) != 1:
        raise ConfigError("a population's members must start at the same epoch")
    m0 = members[0]
    n = len(x) if m0.rows is None else len(m0.rows)
    size = parts or max_members(m0.spec, m0.cfg, n)
    y = np.asarray(y, np.float32 if np.ndim(y) == 2 else np.int32)
    xd = yd = None
    for i in range(0, len(members), size):
        part = members[i : i + size]
        t0 = time.perf_counter()
        if len(part) == 1:
            train_alone(part[0], x, y, settings)  # today's path, bit for bit
            part[0].seconds = time.perf_counter() - t0
            continue
        if xd is None:  # deskewing is deterministic: once for all members (see fit_arrays)
            xd = (deskew_dataset(x.reshape(len(x), *m0.spec.input_shape)) if m0.spec.deskew
                  else jax.device_put(x))
            yd = jax.device_put(y)
        train_part(part, xd, yd, settings, devices)
        for m in part:
            m.together, m.seconds = len(part), time.perf_counter() - t0
    return list(members)


def train_alone(m: Member, x: np.ndarray, y: np.ndarray, settings: EngineSettings | None) -> None:
    if m.rows is not None:
        x, y = x[m.rows], y[m.rows]
    try:
        m.state = fit_arrays(m.spec, m.cfg, x, y, m.stats, m.validation, state=m.state,
                             callbacks=m.callbacks, settings=settings)
    except DigitnetError as exc:
        m.error = exc


def train_part(members: Sequence[Member], xd: jax.Array, yd: jax.Array,
               settings: EngineSettings | None, devices: Sequence[Any] | None = None) -> None:
    from digitnet.metrics import evaluate_arrays

    m0, k = members[0], len(members)
    cfg0 = m0.cfg
    n = len(xd) if m0.rows is None else len(m0.rows)
    if n == 0:
        raise ConfigError("no training examples")
    chunks = epoch_chunks(n, cfg0.batch_size, cfg0.chunks_per_epoch)
    steps_per_epoch = sum(steps for _, steps, _ in chunks)
    engine = engine_for(m0.spec, cfg0, steps_per_epoch, settings)
    pop = population_engine(engine)
    place = Placement(k, devices)
    knobs = place.members({name: jnp.asarray(v) for name, v in knob_values(members).items()})
    params, opt_state, order_keys, dropout_keys = pop.init_state(
        jnp.asarray([m.cfg.seed for m in members], jnp.int32))
    first = m0.state.epoch if m0.state else 0
    if any(m.state for m in members):
        fresh = unstack((params, opt_state), k)
        params, opt_state = stack([(m.state.params, m.state.opt_state) if m.state else fresh[i]
                                   for i, m in enumerate(members)])
    for m, (p, s) in zip(members, unstack((params, opt_state), k), strict=True):
        if m.state is None:
            m.state = TrainState(params=p, opt_state=s)
    params, opt_state = place.members((params, opt_state))
    stats = place.members(stack([m.stats for m in members]))
    host = pop.settings.host_gather  # each chunk's examples gathered by NumPy (a CPU's default)
    if host:
        xh, yh = np.asarray(xd), np.asarray(yd)
    else:
        xd, yd = place.shared((xd, yd))
    rows = [m.rows for m in members]
    validate = shared_validation(members, place)

    def orders(epoch: int) -> tuple[jax.Array, jax.Array]:
        if jax.default_backend() != "cpu" and all(r is None for r in rows):
            # On an accelerator the sorts are cheap and the K orders stay on the device.
            return place.members(pop.epoch_orders(order_keys, dropout_keys, epoch, n=n))
        got = [engine.epoch_order(order_keys[i], dropout_keys[i], epoch, n) for i in range(k)]
        idx = np.stack([np.asarray(o) if r is None else r[np.asarray(o)].astype(np.int32)
                        for (o, _), r in zip(got, rows, strict=True)])
        keys = place.members(jnp.stack([key for _, key in got]))
        return (place.pad(idx) if host else place.members(idx)), keys

    for m in members:
        for cb in m.callbacks:
            cb.on_train_begin(m.state, steps_per_epoch, cfg0.epochs)
    shuffler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitnet-shuffle")
    upcoming = shuffler.submit(orders, first)
    # Checkpoints are written while the next epoch trains (their files are fsynced one by
    # one); an epoch's states change only once the last epoch's writes are done.
    writer = ThreadPoolExecutor(max_workers=min(4, k), thread_name_prefix="digitnet-checkpoint")
    writes: list[Any] = []

    def written() -> None:
        while writes:
            writes.pop(0).result()

    try:
        for epoch in range(first, cfg0.epochs):
            t0 = time.perf_counter()
            live = [m for m in members if not m.done]
            for m in live:
                for cb in m.callbacks:
                    cb.on_epoch_begin(epoch)
            order, epoch_keys = upcoming.result()
            if epoch + 1 < cfg0.epochs:
                upcoming = shuffler.submit(orders, epoch + 1)
            meters = [EpochMeter(epoch, m.cfg.lr, m.callbacks) for m in members]
            pending = None
            for start, steps, batch in chunks:
                if host:
                    ids = order[:, start:start + steps * batch]
                    data = place.members((np.take(xh, ids, axis=0), np.take(yh, ids, axis=0), ids))
                else:
                    data = (xd, yd, order)
                params, opt_state, loss_sum, correct = pop.train_chunk(
                    params, opt_state, stats, *data, start, epoch_keys, knobs,
                    steps=steps, batch=batch)
                if pending is not None:
                    feed(members, meters, *pending)
                pending = (loss_sum, correct, steps, batch)
            feed(members, meters, *pending)
            finite = np.asarray(pop.finite(params))
            val = validate(params, opt_state, stats) if validate else None
            current = unstack((params, opt_state), k)
            seconds = time.perf_counter() - t0
            written()
            for i, m in enumerate(members):
                if m.done:
                    continue
                if not finite[i]:
                    from digitnet.errors import TrainingDiverged

                    m.error = TrainingDiverged(
                        f"the weights became NaN or infinite in epoch {epoch + 1}; training "
                        f"stopped (lower the learning rate, now {m.cfg.lr:g})")
                    m.done = True
                    continue
                state = m.state
                state.params, state.opt_state = current[i]
                meter = meters[i]
                logs: dict[str, float] = {"epoch": epoch + 1, "loss": meter.loss / meter.seen,
                                          "accuracy": meter.correct / meter.seen}
                if val is not None:
                    logs["val_loss"], logs["val_accuracy"] = float(val[0][i]), float(val[1][i])
                elif m.validation is not None:
                    ev = evaluate_arrays(m.spec, state.weights(), m.stats, *m.validation,
                                         loss=m.cfg.loss, smoothing=m.cfg.label_smoothing)
                    logs["val_loss"], logs["val_accuracy"] = ev.loss, ev.accuracy
                # The whole population's time: its members trained together.
                logs["seconds"] = seconds
                state.epoch = epoch + 1
                state.history.append(logs)
                for cb in m.callbacks:
                    if isinstance(cb, Checkpoint):  # it only reads the state
                        writes.append(writer.submit(cb.on_epoch_end, state, logs))
                    else:
                        cb.on_epoch_end(state, logs)
                m.done = state.stop
            if all(m.done for m in members):
                break
        written()
    finally:
        shuffler.shutdown(wait=False, cancel_futures=True)
        writer.shutdown(wait=True)
    for m in members:
        if m.error is None:
            for cb in m.callbacks:
                cb.on_train_end(m.state)


def shared_validation(members: Sequence[Member], place: Placement) -> Any:
    """The population's per-epoch validation in one call, when every member validates on the
    same examples (the test set, typically): (params, opt_state, stats) -> (losses, accuracies)
    as NumPy arrays, one per member; else None (each member is evaluated alone)."""
    m0 = members[0]
    if m0.validation is None or len(m0.validation[0]) == 0:
        return None
    xv, yv = m0.validation
    for m in members[1:]:
        if m.validation is None or not all(a is b or (a.shape == b.shape and np.array_equal(a, b))
                                           for a, b in zip(m.validation, (xv, yv), strict=True)):
            return None
    eps = [m.cfg.label_smoothing for m in members]
    fixed = eps[0] if len(set(eps)) == 1 else None
    fn = population_evaluation(m0.spec, m0.cfg.loss, fixed)
    eps_d = place.members(jnp.asarray(eps, jnp.float32))
    yv = np.asarray(yv)
    xd, yd = place.shared((jnp.asarray(xv), jnp.asarray(yv, np.float32 if yv.ndim == 2 else np.int32)))
    n = len(xv)

    def validate(params: Any, opt_state: Any, stats: Any) -> tuple[np.ndarray, np.ndarray]:
        losses, hits = fn(params, opt_state, stats, xd, yd, eps_d)
        return np.asarray(losses, np.float64), np.asarray(hits, np.float64) / n

    return validate


def feed(members: Sequence[Member], meters: list[EpochMeter], loss_sum: jax.Array,
         correct: jax.Array, steps: int, batch: int) -> None:
    """One chunk's losses and hit counts into each live member's meter; a member whose loss
    is no longer finite fails alone."""
    losses, hits = np.asarray(loss_sum)[: len(members)], np.asarray(correct)[: len(members)]
    for m, meter, loss, hit in zip(members, meters, losses, hits, strict=True):
        if m.done:
            continue
        try:
            meter.add(loss, hit, None, steps, batch)  # no per-batch values in a population
        except DigitnetError as exc:
            m.error, m.done = exc, True


def fit_members(members: Sequence[Member], x: np.ndarray, y: np.ndarray,
                parts: int | None = None, settings: EngineSettings | None = None,
                devices: Sequence[Any] | None = None) -> list[Member]:
    """Train any members: grouped by group_key and starting epoch, each group a population
    (on `devices`: see fit_population)."""
    groups: dict[tuple, list[Member]] = {}
    for m in members:
        key = (group_key(m.spec, m.cfg), m.state.epoch if m.state else 0)
        groups.setdefault(key, []).append(m)
    for group in groups.values():
        fit_population(group, x, y, parts, settings, devices)
    return list(members)


def population_doc(member: Member) -> dict[str, Any]:
    """What config.json records of the population a model trained in (its train_seconds is its
    share: the population's time over its size)."""
    return {"population": {"size": member.together, "train_seconds": round(member.seconds, 3)}}


def member_of(run: Any) -> Member:
    """The population member for an api.RunSetup (one model about to train)."""
    return Member(run.spec, run.cfg, run.stats, run.rows, run.validation, run.state, run.callbacks)
