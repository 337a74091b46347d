"""The `jax` layer: one direction of one layer as a jitted `jax.lax.scan`, trained through
`jax.vjp` behind a `torch.autograd.Function`.

The input projection of all rows is one matmul before the scan; the scan carries (h, c) and
computes only the recurrent product and the gates per step (`STEPS`, the equations of
`impls.reference`).

Variable lengths: a scan's carry has one shape at every step, while the packed layout
shrinks the running rows from step to step. So the projected rows are scattered once per
call into a padded (T, B, G) block, each step updates only the rows whose sequence is still
running (the others keep their state, so the final carry is h_n and c_n), and the outputs
are gathered back into the packed rows; padded outputs are dropped, and get no gradient.
The scatter and gather are inside the jitted function, so its vjp brings the gradients
back to the packed rows too. Equal lengths skip both: the packed rows are the padded block.

Compilation: `forward` and `forward_with_vjp` are jitted with the cell and "ragged" static;
jax keeps one compiled program per cell, ragged-ness, shapes and dtypes, so the first call
of a configuration pays the trace and compile time and later ones do not. `backward`
applies the vjp that `forward_with_vjp` returned (a pytree of residuals), jitted once per
configuration likewise.

Training (grad mode on and an input requiring grad) runs `forward_with_vjp`, which keeps
the residuals for the backward; inference runs `forward` and keeps nothing.

Tensors cross torch -> jax as copies (x, h0, c0, the weights, and in the backward the
output gradients: N x I + N x H_out + the weights, small next to the scan's work) and
jax -> torch (y, h_n, c_n, the gradients) zero-copy by DLPack. A zero-copy DLPack import of
torch's memory into jax made about one process in eight abort at exit here ("terminate
called without an active exception", XLA's threads releasing buffers that torch owns).
The backward's rerun (see `ScanFunction`) reads the inputs through `save_for_backward`, so
one modified in place in between is torch's usual error.

Precision: importing this module turns on jax's x64 mode for the whole process, for the
float64 layers; every array here has an explicit dtype (the tensors' own), so float32
layers compute in float32 exactly as without x64.

Threads: XLA's CPU client starts its own thread pool at first use, sized from the cores the
process may run on (19 threads in all on 2 cores, 14 under `taskset -c 0`), and ignores
torch's thread count: `torch.set_num_threads` leaves it as it is, so a case's core budget
reaches jax only through the process's CPU affinity. `--xla_cpu_multi_thread_eigen=false`
in XLA_FLAGS before import (one-threaded Eigen matmuls) changed neither the thread count
nor, beyond the noise of a shared 2-core machine, the time of an LSTM call (I = H = 256,
T = 50, B = 32); `intra_op_parallelism_threads` is not an XLA flag (XLA aborts on it).
There is no run-time knob.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import torch

from impls.layer import RecurrentLayer

jax.config.update("jax_enable_x64", True)

#: `DirectionWeights`' fields, the keys of the weights' pytree.
WEIGHTS = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


def recurrent(h, w):
    """The recurrent pre-activation W_hh h + b_hh, all gate blocks together."""
    out = h @ w["w_hh"].T
    return out if w["b_hh"] is None else out + w["b_hh"]


def lstm_step(gx, h, c, w):
    i, f, g, o = jnp.split(gx + recurrent(h, w), 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    if w["w_hr"] is not None:
        h = h @ w["w_hr"].T
    return h, c


def gru_step(gx, h, c, w):
    xr, xz, xn = jnp.split(gx, 3, axis=-1)
    hr, hz, hn = jnp.split(recurrent(h, w), 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1 - z) * n + z * h, c


def rnn_tanh_step(gx, h, c, w):
    return jnp.tanh(gx + recurrent(h, w)), c


def rnn_relu_step(gx, h, c, w):
    return jax.nn.relu(gx + recurrent(h, w)), c


#: One time step per cell: (gx_t = W_ih x_t + b_ih, h, c, weights) -> (h', c'), c None
#: but for the LSTM. Looked up when a configuration is traced.
STEPS = {"lstm": lstm_step, "gru": gru_step, "rnn_tanh": rnn_tanh_step,
         "rnn_relu": rnn_relu_step}


def padded_rows(batch_sizes, rows: int, batch: int):
    """Each packed row's index in the flattened (T, B) padded block."""
    steps = batch_sizes.shape[0]
    step = jnp.repeat(jnp.arange(steps), batch_sizes, total_repeat_length=rows)
    starts = jnp.cumsum(batch_sizes) - batch_sizes
    return step * batch + jnp.arange(rows) - starts[step]


def run(cell, ragged, batch_sizes, x, h0, c0, w):
    """(y, h_n, c_n) of one direction over the packed rows x (N, I)."""
    steps, batch, rows = batch_sizes.shape[0], h0.shape[0], x.shape[0]
    gx = x @ w["w_ih"].T
    if w["b_ih"] is not None:
        gx = gx + w["b_ih"]
    step = STEPS[cell]

    if ragged:
        where = padded_rows(batch_sizes, rows, batch)
        gx = jnp.zeros((steps * batch, gx.shape[1]), gx.dtype).at[where].set(gx)
        running = jnp.arange(batch)[None, :] < batch_sizes[:, None]

        def advance(state, inputs):
            gx_t, running_t = inputs
            new = step(gx_t, *state, w)
            kept = jax.tree.map(lambda a, b: jnp.where(running_t[:, None], a, b), new, state)
            return kept, new[0]

        (h, c), y = jax.lax.scan(advance, (h0, c0), (gx.reshape(steps, batch, -1), running))
        return y.reshape(steps * batch, -1)[where], h, c

    def advance(state, gx_t):
        new = step(gx_t, *state, w)
        return new, new[0]

    (h, c), y = jax.lax.scan(advance, (h0, c0), gx.reshape(steps, batch, -1))
    return y.reshape(rows, -1), h, c


@functools.partial(jax.jit, static_argnums=(0, 1))
def forward(cell, ragged, batch_sizes, x, h0, c0, w):
    return run(cell, ragged, batch_sizes, x, h0, c0, w)


@functools.partial(jax.jit, static_argnums=(0, 1))
def forward_with_vjp(cell, ragged, batch_sizes, x, h0, c0, w):
    return jax.vjp(functools.partial(run, cell, ragged, batch_sizes), x, h0, c0, w)


@jax.jit
def backward(vjp, cotangents):
    return vjp(cotangents)


def to_jax(t: torch.Tensor | None):
    """A jax copy of the tensor (see the module's note on why not zero-copy)."""
    return None if t is None else jnp.array(t.detach().numpy())


def to_torch(a) -> torch.Tensor | None:
    """The jax array's memory as a tensor (DLPack, zero-copy)."""
    return None if a is None else torch.from_dlpack(a)


def jax_inputs(batch_sizes, x, h0, c0, weights):
    """The arguments of `forward` and `forward_with_vjp` after the static ones."""
    w = dict(zip(WEIGHTS, map(to_jax, weights)))
    return to_jax(batch_sizes), to_jax(x), to_jax(h0), to_jax(c0), w


class ScanFunction(torch.autograd.Function):
    """The scan with its `jax.vjp` as the backward: gradients for x, h0, c0 and weights.

    The residuals live until the backward has run; a second backward through the same graph
    (`retain_graph=True`) runs the forward again from the saved inputs.
    """

    @staticmethod
    def forward(ctx, cell, ragged, batch_sizes, x, h0, c0, *weights):
        ctx.config = cell, ragged, batch_sizes
        ctx.save_for_backward(x, h0, c0, *weights)
        (y, h, c), ctx.vjp = forward_with_vjp(cell, ragged,
                                              *jax_inputs(batch_sizes, x, h0, c0, weights))
        return tuple(to_torch(a) for a in (y, h, c) if a is not None)

    @staticmethod
    def backward(ctx, dy, dh, dc=None):
        if ctx.vjp is None:
            x, h0, c0, *weights = ctx.saved_tensors
            _, ctx.vjp = forward_with_vjp(*ctx.config[:2],
                                          *jax_inputs(ctx.config[2], x, h0, c0, weights))
        dx, dh0, dc0, dw = backward(ctx.vjp, (to_jax(dy), to_jax(dh), to_jax(dc)))
        ctx.vjp = None
        return (None, None, None, to_torch(dx), to_torch(dh0), to_torch(dc0),
                *(to_torch(dw[name]) for name in WEIGHTS))


class JaxLayer(RecurrentLayer):
    """nn's LSTM/GRU/RNN with each direction of each layer a jitted jax scan."""

    impl_name = "jax"

    def run_direction(self, x, batch_sizes, h0, c0, w):
        ragged = bool(batch_sizes[-1] != batch_sizes[0])
        inputs = (x, h0, c0, *w)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            y, h, *c = ScanFunction.apply(self.cell, ragged, batch_sizes, *inputs)
            return y, h, (c[0] if c else None)
        y, h, c = forward(self.cell, ragged, *jax_inputs(batch_sizes, x, h0, c0, w))
        return to_torch(y), to_torch(h), to_torch(c)
