"""A ReLU MLP's Adam training step as two GPU kernels (Pallas, lowered to Triton).

Why: on a GPU, XLA runs one step of the tutorial's network as dozens of small kernels (the
eight matrix products, the batch gather, bias + ReLU, the loss, the bias gradients and Adam),
and at batch 32 each costs about as much to launch and wait for as it has work (numbers in
docs/performance.md's GPU section). Here a step is two kernels:

  Q  one program: the first layer's pre-activations from P's partial products, the rest of the
     forward pass, softmax cross-entropy, the backward pass down to δ₁ (the gradient at the
     first layer's pre-activations), Adam on every bias and on the kernels of layers 2..L, the
     loss and hit counters, the batch position and Adam's count.
  P  one program per TILE rows of the first kernel (which holds most of the parameters: 50,176
     of 55,050 in the tutorial's network): the previous step's gradient for the tile,
     x[:, tile]ᵀ · δ₁, and its Adam update; then, with the updated tile, this step's partial
     product x[:, tile] · W₁[tile] for Q to sum (in a fixed order: runs repeat bit for bit).

So the big matrix work is spread over many programs and the one-program kernel only handles the
small layers. A chunk's examples are gathered in training order once, so that both read whole
batches. A chunk starts with a P that only multiplies and ends with one that only updates.

The arithmetic is the XLA step's (model.forward, metrics.loss_values, optax.adam with Keras'
eps) up to float rounding and the order of sums: tests/test_fused.py checks one against the
other in Pallas' interpreter on the CPU, and that the kernels lower to Triton for CUDA; its speed
against XLA's step is measured by bench/gpu.py (docs/performance.md).
Where it does not apply (other activations, dropout, augmentation, other optimizers or losses,
batch sizes that are not a power of two), XLA's step trains; digitnet.runtime.fused_step says
whether it is on (DIGITNET_FUSED_STEP=0 turns it off), and where its kernels fail to compile,
engine.Engine.run_chunk warns and trains with XLA's step.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from digitnet.model import MLPSpec, Params
from digitnet.optimizers import ADAM_B1 as B1
from digitnet.optimizers import ADAM_B2 as B2
from digitnet.optimizers import ADAM_EPS as EPS

# Rows of the first kernel per program of P: the fastest tiling bench/gpu.py's fused-tiles
# found (bench/results/gpu.json); EngineSettings.kernels overrides it and the warps below.
TILE = 32
BATCHES = (16, 32, 64, 128)  # Triton's products need ≥ 16 rows; registers bound the top
MAX_WIDTH = 128  # widest layer (padded to a power of two) Q holds in registers
NUM_WARPS, NUM_WARPS_Q = 4, 8  # threads per program of P and of Q, in warps of 32


def applies(spec: MLPSpec, cfg: Any, batch: int, soft_labels: bool, augmented: bool) -> bool:
    """Whether a chunk of steps with this spec, config and batch size can run fused: a ReLU MLP
    without dropout, plain Adam at a constant rate on cross-entropy of integer labels, every class alike."""
    return (
        bool(spec.hidden) and spec.output == "softmax"
        and all(act == "relu" for act in spec.hidden_activations)
        and not spec.dropout and not spec.input_dropout and not spec.regularized and not spec.kernel_max_norm
        and not spec.batchnorm and not spec.use_bias and not spec.input_batchnorm
        and cfg.optimizer == "adam" and not cfg.optimizer_options
        and cfg.schedule == "constant" and not cfg.weight_decay
        and cfg.loss == "cross_entropy" and not cfg.label_smoothing and not cfg.class_weight
        and not cfg.max_norm and not cfg.ema and not augmented and not soft_labels
        and batch in BATCHES
        and max(padded(n) for n in (*spec.hidden, spec.num_classes)) <= MAX_WIDTH
    )


def padded(n: int) -> int:
    """Triton works on blocks whose sides are powers of two, and its products on sides ≥ 16."""
    return max(16, 1 << (n - 1).bit_length())


def _window(ref, rows: int, cols: int | None, start: Any):
    """(view, mask) of the (rows, cols) block of a 2-D ref from row `start`, or of `rows` items
    of a 1-D ref (cols None); the mask is False outside the ref."""
    r = start + jnp.arange(rows)
    if cols is None:
        return ref.at[pl.ds(start, rows)], r < ref.shape[0]
    c = jnp.arange(cols)
    mask = (r < ref.shape[0])[:, None] & (c < ref.shape[1])[None, :]
    return ref.at[pl.ds(start, rows), pl.ds(0, cols)], mask


def _block(ref, rows: int, cols: int | None = None, start: Any = 0):
    """The block _window names, zero outside the ref."""
    view, mask = _window(ref, rows, cols, start)
    return plgpu.load(view, mask=mask, other=0.0)


def _store(refs, values, start: Any = 0) -> None:
    """Each value into its ref from row `start`, but for what falls outside the ref."""
    for ref, value in zip(refs, values, strict=True):
        view, mask = _window(ref, value.shape[0], value.shape[1] if value.ndim == 2 else None,
                             start)
        plgpu.store(view, value, mask=mask)


def _adam(p, m, v, g, lr: float, corr1, corr2):
    """optax.scale_by_adam then scale_by_learning_rate, on one tensor."""
    m = (1 - B1) * g + B1 * m
    v = (1 - B2) * (g * g) + B2 * v
    return p - lr * ((m / corr1) / (jnp.sqrt(v / corr2) + EPS)), m, v


def _corrections(count):
    """Adam's bias corrections 1 - β^t for this step's t = count + 1."""
    t = (count + 1).astype(jnp.float32)
    return 1 - B1**t, 1 - B2**t


def _head(z, refs, keys, widths: list[int], sizes: list[int], labels, batch: int):
    """From the first layer's pre-activations (without its bias) to the loss and every gradient
    but the first kernel's: (δ₁, {key index: gradient}, summed loss, hits, loaded params).
    refs[j] is the parameter ref of keys[j]."""
    n_layers = len(widths) - 1
    index = {key: j for j, key in enumerate(keys)}
    params = {j: _block(r, *_padded_shape(keys[j], widths)) for j, r in enumerate(refs)}
    hs = []
    for i in range(n_layers):
        if i:
            z = jnp.dot(hs[-1], params[index[i, "kernel"]])
        z = z + params[index[i, "bias"]][None, :]
        if i < n_layers - 1:
            hs.append(jnp.maximum(z, 0.0))
    classes = jnp.arange(widths[-1])
    logits = jnp.where((classes < sizes[-1])[None, :], z, -jnp.inf)
    top = jnp.max(logits, axis=1, keepdims=True)
    e = jnp.exp(logits - top)
    total = jnp.sum(e, axis=1, keepdims=True)
    onehot = classes[None, :] == labels[:, None]
    losses = (top + jnp.log(total))[:, 0] - jnp.sum(jnp.where(onehot, z, 0.0), axis=1)
    hits = jnp.sum((jnp.argmax(logits, axis=1) == labels).astype(jnp.int32))
    delta = (e / total - onehot.astype(jnp.float32)) / batch
    grads = {}
    for i in range(n_layers - 1, -1, -1):
        grads[index[i, "bias"]] = jnp.sum(delta, axis=0)
        if i:
            grads[index[i, "kernel"]] = jnp.dot(hs[i - 1].T, delta)
            delta = jnp.where(hs[i - 1] > 0, jnp.dot(delta, params[index[i, "kernel"]].T), 0.0)
    return delta, grads, jnp.sum(losses), hits, params


def _padded_shape(key: tuple[int, str], widths: list[int]) -> tuple[int, ...]:
    i, name = key
    return (widths[i], widths[i + 1]) if name == "kernel" else (widths[i + 1],)


def _adam_all(grads, params, m_in, v_in, p_out, m_out, v_out, lr, count) -> None:
    corr1, corr2 = _corrections(count)
    for j, g in grads.items():
        _store((p_out[j], m_out[j], v_out[j]),
               _adam(params[j], _block(m_in[j], *g.shape), _block(v_in[j], *g.shape), g, lr,
                     corr1, corr2))


def _shapes(ts):
    return [jax.ShapeDtypeStruct(t.shape, t.dtype) for t in ts]


def train_chunk(params: Params, opt_state: Any, stats: dict, x: jax.Array, y: jax.Array,
                order: jax.Array, start: jax.Array, *, steps: int, batch: int, lr: float,
                unroll: int, interpret: bool, tile: int = TILE, num_warps: int = NUM_WARPS,
                num_warps_q: int = NUM_WARPS_Q) -> tuple[Params, Any, jax.Array, jax.Array, tuple]:
    """Train `steps` steps of `batch` examples, as Engine._train_chunk does with XLA's step:
    (params, opt_state, loss sum, hits, (per-step loss sums, per-step hits))."""
    adam, rest = opt_state[0], opt_state[1:]
    sizes = [params[0]["kernel"].shape[0]] + [layer["bias"].shape[0] for layer in params]
    widths = [padded(n) for n in sizes]
    x = x.reshape(x.shape[0], -1)
    # The small kernels' operands: each layer's bias and kernel but the first kernel, for the
    # parameters and for each of Adam's moments.
    keys = [(i, name) for i, layer in enumerate(params) for name in sorted(layer)
            if (i, name) != (0, "kernel")]

    def tensors(tree):
        return [tree[i][name] for i, name in keys]

    def rebuild(flat, first):
        out = [dict(layer) for layer in params]
        for (i, name), t in zip(keys, flat, strict=True):
            out[i][name] = t
        out[0]["kernel"] = first
        return out

    small = (tensors(params), tensors(adam.mu), tensors(adam.nu))
    first = (params[0]["kernel"], adam.mu[0]["kernel"], adam.nu[0]["kernel"])
    small, first, count, loss_sum, hits, per_step = _chunk(
        small, first, adam.count, x, y, order, start, steps, unroll, stats["shift"],
        stats["scale"], sizes, widths, keys, batch, lr, interpret, tile, num_warps, num_warps_q)
    (ps, ms, vs), (w1, m1, v1) = small, first
    adam = adam._replace(count=count, mu=rebuild(ms, m1), nu=rebuild(vs, v1))
    return rebuild(ps, w1), (adam, *rest), loss_sum, hits, per_step


def _chunk(small, first, count, x, y, order, start, steps, unroll, shift, scale, sizes, widths,
           keys, batch, lr, interpret, tile, num_warps, num_warps_q):
    """The chunk's steps as kernels P and Q, on flat lists of tensors: `small` = (parameters,
    first moments, second moments) of the tensors in `keys`, `first` = the same three of the
    first kernel. Returns them updated, with Adam's count, the summed loss and the hits, and
    each step's loss sum and hits."""
    # The chunk's examples in training order, gathered once: the kernels read whole batches.
    idx = jax.lax.dynamic_slice(order, (start,), (steps * batch,))
    xs, ys = x[idx], y[idx]
    n_tiles = pl.cdiv(sizes[0], tile)
    k = len(keys)

    def kernel_p(update, forward, xs_ref, shift_ref, scale_ref, pos_ref, count_ref, delta_ref,
                 w_ref, m_ref, v_ref, part_ref, w_out, m_out, v_out, part_out):
        # After Q: the position has moved past the batch just trained, the count counts it.
        program = pl.program_id(0)
        row = program * tile
        pos = pos_ref[...]
        w = _block(w_ref, tile, widths[1], row)
        if update:
            xt = _rows(xs_ref, shift_ref, scale_ref, pos - batch, batch, row, tile)
            g = jnp.dot(xt.T, delta_ref[...])
            corr1, corr2 = _corrections(count_ref[...] - 1)
            w, m, v = _adam(w, _block(m_ref, tile, widths[1], row),
                            _block(v_ref, tile, widths[1], row), g, lr, corr1, corr2)
            _store((w_out, m_out, v_out), (w, m, v), row)
        if forward:
            xt = _rows(xs_ref, shift_ref, scale_ref, pos, batch, row, tile)
            part_out[program] = jnp.dot(xt, w)

    def kernel_q(part_ref, ys_ref, pos_ref, count_ref, loss_ref, hits_ref, *refs):
        p_in, m_in, v_in = refs[:k], refs[k:2 * k], refs[2 * k:3 * k]
        delta_out, pos_out, count_out, loss_out, hits_out = refs[3 * k:3 * k + 5]
        p_out, m_out, v_out = refs[3 * k + 5:4 * k + 5], refs[4 * k + 5:5 * k + 5], refs[5 * k + 5:]
        pos, count = pos_ref[...], count_ref[...]
        labels = plgpu.load(ys_ref.at[pl.ds(pos, batch)])
        z = jax.lax.fori_loop(0, n_tiles, lambda t, acc: acc + part_ref[t],
                              jnp.zeros((batch, widths[1]), jnp.float32))
        delta, grads, loss, hits, params = _head(z, p_in, keys, widths, sizes, labels, batch)
        _adam_all(grads, params, m_in, v_in, p_out, m_out, v_out, lr, count)
        delta_out[...] = delta
        pos_out[...] = pos + batch
        count_out[...] = count + 1
        loss_out[...] = loss_ref[...] + loss
        hits_out[...] = hits_ref[...] + hits

    def p_call(update, forward, carry):
        (ps, ms, vs), (w1, m1, v1), pos, count, loss_sum, hits, delta, part = carry
        w1, m1, v1, part = pl.pallas_call(
            partial(kernel_p, update, forward), name="digitnet_step_p", grid=(n_tiles,),
            out_shape=_shapes([w1, m1, v1, part]), input_output_aliases={6: 0, 7: 1, 8: 2, 9: 3},
            interpret=interpret, compiler_params=plgpu.CompilerParams(num_warps=num_warps),
        )(xs, shift, scale, pos, count, delta, w1, m1, v1, part)
        return (ps, ms, vs), (w1, m1, v1), pos, count, loss_sum, hits, delta, part

    def q_call(carry):
        (ps, ms, vs), w1s, pos, count, loss_sum, hits, delta, part = carry
        out = pl.pallas_call(
            kernel_q, name="digitnet_step_q",
            out_shape=[jax.ShapeDtypeStruct((batch, widths[1]), jnp.float32),
                       *_shapes([pos, count, loss_sum, hits, *ps, *ms, *vs])],
            input_output_aliases={2 + i: 1 + i for i in range(4)} | {6 + i: 5 + i for i in range(3 * k)},
            interpret=interpret, compiler_params=plgpu.CompilerParams(num_warps=num_warps_q),
        )(part, ys, pos, count, loss_sum, hits, *ps, *ms, *vs)
        delta, pos, count, loss_sum, hits = out[:5]
        small = (list(out[5:5 + k]), list(out[5 + k:5 + 2 * k]), list(out[5 + 2 * k:]))
        return small, w1s, pos, count, loss_sum, hits, delta, part

    def q_step(carry):
        # Q starts each step's counters at zero and the sums run here, in the same order as Q's
        # own running sums would: so each step's values come out too.
        loss_sum, hits = carry[4], carry[5]
        carry = q_call((*carry[:4], jnp.zeros_like(loss_sum), jnp.zeros_like(hits), *carry[6:]))
        step_loss, step_hits = carry[4], carry[5]
        return (*carry[:4], loss_sum + step_loss, hits + step_hits, *carry[6:]), (step_loss, step_hits)

    def step(carry, _):
        carry, per_step = q_step(carry)
        return p_call(True, True, carry), per_step

    carry = (small, first, jnp.zeros((), jnp.int32), count, jnp.zeros((), jnp.float32),
             jnp.zeros((), jnp.int32), jnp.zeros((batch, widths[1]), jnp.float32),
             jnp.zeros((n_tiles, batch, widths[1]), jnp.float32))
    # P of a step updates the first kernel for the step before it and starts this step's
    # forward pass with the updated tile: so a chunk begins with a forward-only P and ends
    # with an update-only P.
    carry = p_call(False, True, carry)
    losses, step_hits = jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.int32)
    if steps > 1:
        carry, (losses, step_hits) = jax.lax.scan(step, carry, None, length=steps - 1,
                                                  unroll=min(unroll, steps - 1))
    carry, (last_loss, last_hits) = q_step(carry)
    small, first, _, count, loss_sum, hits, _, _ = p_call(True, False, carry)
    per_step = (jnp.append(losses, last_loss), jnp.append(step_hits, last_hits))
    return small, first, count, loss_sum, hits, per_step


def _rows(xs_ref, shift_ref, scale_ref, r0, batch: int, c0, tile: int):
    """Rows [r0, r0 + batch) and columns [c0, c0 + tile) of the inputs, preprocessed."""
    cols = c0 + jnp.arange(tile)
    inside = jnp.broadcast_to((cols < xs_ref.shape[1])[None, :], (batch, tile))
    x = plgpu.load(xs_ref.at[pl.ds(r0, batch), pl.ds(c0, tile)], mask=inside, other=0)
    x = x.astype(jnp.float32)
    return (x - _block(shift_ref, tile, None, c0)[None, :]) * _block(scale_ref, tile, None, c0)[None, :]
