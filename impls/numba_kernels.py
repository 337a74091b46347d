"""Numba kernels for the recurrent part of LSTM, GRU and the simple RNN: forward and BPTT.

The layer (`impls.numba_rnn`) does the input projection for all rows as one GEMM before a
kernel runs, and the weight gradients as GEMMs after the backward kernel; the kernels own the
time loop: per step the recurrent product (`product`: its own single pass over the weights
for a few rows, scipy's BLAS held to one thread for more), then one fused, vectorised pass
over the gate elements.

Layout: PackedSequence's rows, every buffer 2-D with one row per (step, sequence). Step t's
rows are ``starts[t] : starts[t] + sizes[t]``, sequences by decreasing length, so the
sequences running at step t are the first sizes[t]; their previous states are the first
sizes[t] rows of step t-1 (of h0 at t = 0, `_previous`). A step touches only its own rows:
nothing runs past a sequence's end, nothing is padded or masked. A dense (T, B) batch is the
case sizes[t] = B. A (B, .) state buffer (the LSTM's c in inference, dh and dc in the
backward) keeps a sequence's row as its last step left it: in the forward that is the final
state; in the backward, the gradient wrt the final state until the sequence's last step.

The per-element maths are small functions inlined into the loops (`lstm_cell`,
`lstm_cell_grad`, `gru_cell`, `gru_cell_grad`, `relu`, `relu_grad`, with `dsigmoid`, `dtanh`),
named after the symbols below; the kernels around them are the loops, the buffers and the
team. A buffer's views are named after the buffer (``buf_i``: the own units' slice of the i
block of a gate row), the quantities after the equations (``a_i``, ``i``, ``da_i``), because
one buffer holds, in turn, a pre-activation, the activation and its gradient.

Inference (`lstm_inference`, `gru_inference`) keeps nothing for a backward: the team
projects the input itself, a block of k steps at a time into a reused buffer, and writes y
and the final state directly, so a call needs y plus k*B*G floats, not 5-6x y. The simple
RNN needs no such kernel: its forward already projects straight into y and stores nothing
else.

Threads ("the team"): a kernel is called once per thread, each thread owning a block of
hidden units u0:u1 (all gates of those units) and the matching rows of W_hh, packed
contiguously by the thread itself and kept between calls (`refresh_packed`), so that they
stay in that thread's core's cache for the whole sequence. A step needs the whole h_{t-1}, so
the threads meet at a barrier at the end of every step (`_barrier`: an atomic counter,
spinning, then yielding the CPU). Besides h, they share only the counters of the input
projection, which they claim task by task (`_project_claimed`). One thread is the plain
serial loop (its barrier returns at once). No kernel is numba-`parallel`: the team is the
layer's own threads, as many as numba's thread count allows, and team size x BLAS threads
(1) never exceeds that count. Splitting units, not batch
rows, is what helps B = 1, where each step streams all of W_hh: two threads each stream half,
from their own cache. An LSTM with a projection runs on one thread: h_t = m_t W_hr^T needs
every unit's m_t before the next step can start.

Notation, per step t (rows independent): ``a = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh`` split
into gate blocks; ``dX`` is dL/d(a) as seen by the input projection, ``dH`` as seen by the
recurrent product (they differ only in the GRU's n block); ``dh`` is dL/dh_t: from the
output, ``dy_t``, plus what step t+1 sends back, ``dH_{t+1} W_hh`` (plus the GRU's direct
path), or, at a sequence's last step, the gradient wrt its final state (`_dh_of_step`
assembles it, the one place that does). Unrolled, this recursion is the sum over k of
products of d h_j / d h_{j-1} in the notes (002_2c9e6012ecdce6e2.txt §1.2, claim C1); the
kernel never forms the products. In the team, thread k computes dH_{t+1} for its units only,
so it sends back the partial product ``dH_{t+1}[own] W_hh[own rows]`` and every thread sums
the partials over its own units. With s' = s (1 - s) for a sigmoid output s and 1 - u^2 for
a tanh output u:

LSTM  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c_t = f c_{t-1} + i g, h_t = o tanh(c_t)::

    dc    = dc_{t+1 -> t} + dh o (1 - tanh(c_t)^2)
    da_o  = dh tanh(c_t) o'      da_i = dc g i'      da_f = dc c_{t-1} f'      da_g = dc i g'
    dc_{t-1} = dc f              dh_{t-1} = da W_hh          (dX = dH = da)

LSTM with a projection (W_hr (P, H)): m_t = o tanh(c_t) is the cell's output and the state
passed on is h_t = m_t W_hr^T (P); backward, the cell sees dm = dh W_hr in place of dh, and
dW_hr = sum_t dh_t^T m_t.

GRU (reset after the product; hn = h_{t-1} W_hn^T + b_hn)
r, z = sigmoid(a_r, a_z), n = tanh(a_xn + r hn), h_t = n + z (h_{t-1} - n)::

    da_n = dh (1 - z) n'         da_z = dh (h_{t-1} - n) z'        da_r = da_n hn r'
    dX = (da_r, da_z, da_n)      dH = (da_r, da_z, da_n r)
    dh_{t-1} = dh z + dH W_hh

RNN  h_t = act(a)::   da = dh act'   (tanh: 1 - h_t^2; relu: [h_t > 0])   dh_{t-1} = da W_hh

Then, outside the loop: dW_ih = sum_t dX_t^T x_t, dW_hh = sum_t dH_t^T h_{t-1}, db_ih = sum dX,
db_hh = sum dH, dx_t = dX_t W_ih: large GEMMs and sums over all rows.

What is stored for backward (all N rows, H = hidden size, H_out = P or H), and nothing else:

- LSTM: the activated gates i, f, g, o (4H), c_t (H) and h_t = y (H_out): 6H floats per row;
  with a projection also m_t (H). tanh(c_t) is recomputed rather than stored.
- GRU: r, z, n (3H), hn (H) and y (H): 5H.
- RNN: y only (H): the derivative of tanh and relu is a function of their output.

The gate buffer first holds the input projection, then the activated gates, then (in the
backward) dX, each overwriting the last in place, so the backward needs no N-row buffer of
its own for LSTM and GRU (the GRU's dH n-block overwrites hn; the RNN's dX is new, because its
only stored buffer, y, is the caller's output; a projected LSTM's backward keeps every step's
dh, (N, P), for dW_hr).

float32 uses a rational tanh (below) that vectorises; scalar libm calls do not, since the
PyPI llvmlite has no SVML. float64 calls libm (``math.tanh``, ``math.exp``): it is the
precision that is compared with the oracle to 1e-9, not a speed target.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: error_model="numpy": no ZeroDivisionError check, which would stop the loops vectorising.
#: "contract" (FMA) is the only fast-math liberty: no NaN/inf assumptions.
_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})

#: Beyond this |x| the float32 rational tanh is clamped; tanh(x) rounds to +-1 in float32 there.
TANH32_CLAMP = 7.90531110763549805


def tanh(x):
    """tanh as the kernels compute it (float32: `_tanh32`, float64: libm)."""
    return math.tanh(x)


def sigmoid(x):
    """sigmoid as the kernels compute it (float32: 0.5 + 0.5 tanh(x / 2), float64: libm exp)."""
    return 1.0 / (1.0 + math.exp(-x)) if x > -700.0 else 0.0


@njit(**_JIT)
def _tanh32(x):
    """Rational minimax tanh in float32 (Eigen's ptanh_float), a few ulp; NaN stays NaN."""
    clamp = np.float32(TANH32_CLAMP)
    x = clamp if x > clamp else x
    x = -clamp if x < -clamp else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * (p / q)


@overload(tanh)
def _tanh_jit(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


@overload(sigmoid)
def _sigmoid_jit(x):
    if x == types.float32:
        return lambda x: np.float32(0.5) + np.float32(0.5) * _tanh32(np.float32(0.5) * x)
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@njit(**_JIT)
def tanh_array(x, out):
    """Elementwise `tanh` over 1-D arrays, exactly as the kernels compute it (for tests)."""
    for j in range(x.size):
        out[j] = tanh(x[j])


@njit(**_JIT)
def sigmoid_array(x, out):
    """Elementwise `sigmoid` over 1-D arrays, exactly as the kernels compute it (for tests)."""
    for j in range(x.size):
        out[j] = sigmoid(x[j])


# -- the element maths: one unit of one row, inlined into the kernels' loops ------------------

#: Inlined in numba's IR, so that LLVM vectorises them with the loop around the call.
_ELEMENT = dict(_JIT, inline="always")


def typed(value, like):
    """`value` as a float of `like`'s type (in numba: a float64 constant would make float32
    maths float64)."""
    return float(value)


@overload(typed)
def _typed_jit(value, like):
    if like == types.float32:
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)


@njit(**_ELEMENT)
def dsigmoid(s):
    """sigmoid'(a) from its output s = sigmoid(a): s (1 - s)."""
    return s * (typed(1, s) - s)


@njit(**_ELEMENT)
def dtanh(u):
    """tanh'(a) from its output u = tanh(a): 1 - u^2."""
    return typed(1, u) - u * u


@njit(**_ELEMENT)
def relu(a):
    """max(a, 0); NaN stays NaN, as in torch."""
    return typed(0, a) if a < typed(0, a) else a


@njit(**_ELEMENT)
def relu_grad(dh, h):
    """dL/da for h = relu(a), from its output: dh where h > 0, else 0."""
    return dh if h > typed(0, h) else typed(0, h)


@njit(**_ELEMENT)
def lstm_cell(a_i, a_f, a_g, a_o, c_prev):
    """i, f, g, o, c_t and h_t = o tanh(c_t) (before any projection: m_t) from the
    pre-activations and c_{t-1}."""
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = tanh(a_g)
    o = sigmoid(a_o)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * tanh(c)


@njit(**_ELEMENT)
def lstm_cell_grad(dh, dc, i, f, g, o, c, c_prev):
    """da_i, da_f, da_g, da_o and dc_{t-1}, from dh = dL/dh_t (dL/dm_t with a projection),
    dc = dL/dc_t through step t+1, the gates, c_t and c_{t-1}."""
    tanh_c = tanh(c)
    dc = dc + dh * o * dtanh(tanh_c)
    da_i = dc * g * dsigmoid(i)
    da_f = dc * c_prev * dsigmoid(f)
    da_g = dc * i * dtanh(g)
    da_o = dh * tanh_c * dsigmoid(o)
    return da_i, da_f, da_g, da_o, dc * f


@njit(**_ELEMENT)
def gru_cell(a_r, a_z, a_xn, hn, h_prev):
    """r, z, n, h_t from the pre-activations (a_xn: the input's part of n's), hn = h_{t-1}
    W_hn^T + b_hn and h_{t-1}."""
    r = sigmoid(a_r)
    z = sigmoid(a_z)
    n = tanh(a_xn + r * hn)
    return r, z, n, n + z * (h_prev - n)


@njit(**_ELEMENT)
def gru_cell_grad(dh, r, z, n, hn, h_prev):
    """da_r, da_z, da_n (dL/da_xn), dhn (dL/dhn) and dh_{t-1}'s direct part dh z, from
    dh = dL/dh_t, the gates, hn and h_{t-1}."""
    da_n = dh * (typed(1, z) - z) * dtanh(n)
    da_z = dh * (h_prev - n) * dsigmoid(z)
    da_r = da_n * hn * dsigmoid(r)
    return da_r, da_z, da_n, da_n * r, dh * z


# -- the team's barrier -------------------------------------------------------------------------

#: Spins on the barrier before each wait yields the CPU (a step at B = 1 takes ~10 us; a
#: partner that is much later than that has most likely been descheduled).
SPINS_BEFORE_YIELD = 1000


@intrinsic
def _atomic_add(typingctx, ary, idx, val):
    sig = types.int64(ary, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", builder.gep(data, [args[1]]), args[2], "seq_cst")
    return sig, codegen


@intrinsic
def _atomic_load(typingctx, ary, idx):
    sig = types.int64(ary, types.intp)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(builder.gep(data, [args[1]]), "acquire", 8)
    return sig, codegen


@intrinsic
def _sched_yield(typingctx):
    # Declared by name, resolved when the code is loaded: unlike a ctypes pointer, this
    # keeps the kernels cacheable.
    sig = types.int32()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        return builder.call(fn, [])
    return sig, codegen


#: The slots of a team's `sync` array (int64, zeros at the start of a call).
SYNC_ARRIVALS, SYNC_ABORT, SYNC_CLAIMED, SYNC_DONE = 0, 1, 2, 3
SYNC_SLOTS = 4


@njit(**_JIT)
def _wait(sync, slot, target):
    """Wait until sync[slot] reaches `target`; False if the team was aborted meanwhile."""
    spins = 0
    while _atomic_load(sync, slot) < target:
        if _atomic_load(sync, SYNC_ABORT):
            return False
        spins += 1
        if spins > SPINS_BEFORE_YIELD:
            _sched_yield()
    return True


@njit(**_JIT)
def _barrier(sync, team, step):
    """Wait until all `team` threads finished `step` (counted from 1); False if aborted.

    The arrivals only grow, so no reset is needed between steps; the abort flag is set by the
    caller when a thread of the team failed.
    """
    _atomic_add(sync, SYNC_ARRIVALS, 1)
    return _wait(sync, SYNC_ARRIVALS, team * step)


@njit(**_JIT)
def _own(row, H, u0, u1, gates):
    """The own units' slice of each gate block of a (gates*H,) row, as separate views.

    Separate views matter: indexing one row at offsets k*H defeats LLVM's vectoriser
    (measured 4x slower).
    """
    if gates == 4:
        return (row[u0:u1], row[H + u0:H + u1], row[2 * H + u0:2 * H + u1],
                row[3 * H + u0:3 * H + u1])
    return row[u0:u1], row[H + u0:H + u1], row[2 * H + u0:2 * H + u1], row[u0:u0]


@njit(**_JIT)
def _packed(row, n, gates):
    """The gate blocks of a packed (gates*n,) row of the own units, as separate views."""
    if gates == 4:
        return row[:n], row[n:2 * n], row[2 * n:3 * n], row[3 * n:]
    return row[:n], row[n:2 * n], row[2 * n:3 * n], row[:0]


# -- the recurrent product -------------------------------------------------------------------------

#: Rows up to which a step's product runs in `product`'s own loop rather than in BLAS: a BLAS
#: GEMM with so few rows reads the weights several times over and is 2-8x slower than one pass
#: (measured at 1-8 rows, 0.5-2 MiB of weights).
SMALL_ROWS = 8


@njit(**_JIT)
def product(a, w, out, reverse):
    """out = a @ w: a step's recurrent product, a (rows, K), w (K, m), out (rows, m).

    Up to SMALL_ROWS rows, one pass over w, four of its rows at a time, each multiplied into
    every row of out while it is in L1 (`out += a[:, k] w[k]`: no reduction, so it
    vectorises without reassociating). `reverse` takes the blocks of four last to first:
    alternating it from step to step, the rows of w a step reads first are the ones the step
    before read last, still in the core's cache, which is what keeps a share of the weights
    larger than the L2 cache partly in it (1.5x faster measured at 2 MiB against a 1.25 MiB
    L2). The sum's order thus depends on `reverse`, so every kernel passes the step's parity.
    """
    rows, K = a.shape
    if rows > SMALL_ROWS:
        np.dot(a, w, out)
        return
    out[:] = 0
    quads = K // 4
    for q in range(quads):
        k = 4 * (quads - 1 - q if reverse else q)
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for b in range(rows):
            a0, a1, a2, a3, ob = a[b, k], a[b, k + 1], a[b, k + 2], a[b, k + 3], out[b]
            for j in range(ob.size):
                ob[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]
    for k in range(4 * quads, K):
        wk = w[k]
        for b in range(rows):
            ak, ob = a[b, k], out[b]
            for j in range(ob.size):
                ob[j] += ak * wk[j]


@njit(**_JIT)
def _same_rows(w_hh, H, u0, u1, rows):
    """Whether `rows` (gates*n, H_out) holds W_hh's rows of units u0:u1, gate by gate."""
    n = u1 - u0
    for g in range(rows.shape[0] // n):
        for r in range(n):
            src, dst = w_hh[g * H + u0 + r], rows[g * n + r]
            differs = False
            for j in range(src.size):           # no early exit: the row's test vectorises
                differs |= src[j] != dst[j]
            if differs:
                return False
    return True


@njit(**_JIT)
def refresh_packed(w_hh, H, u0, u1, rows, columns):
    """Keep a member's packed copies of its rows of W_hh (gates*H, H_out) current.

    rows (gates*n, H_out): W_hh's rows of units u0:u1, gate by gate, the backward's w;
    columns (H_out, gates*n): their transpose, the forward's. A comparison with `rows`
    (a sequential read of both) finds whether W_hh changed since they were packed; only then
    are they packed again. Returns whether it packed.
    """
    if _same_rows(w_hh, H, u0, u1, rows):
        return False
    n = u1 - u0
    for g in range(rows.shape[0] // n):
        rows[g * n:(g + 1) * n] = w_hh[g * H + u0:g * H + u1]
        for k in range(columns.shape[0]):
            col = columns[k, g * n:(g + 1) * n]
            for r in range(n):
                col[r] = rows[g * n + r, k]
    return True


# -- the input projection -------------------------------------------------------------------------


@njit(**_JIT)
def project(x, w_ih_t, bias, out, r0, r1):
    """out[r0:r1] = x[r0:r1] W_ih^T + bias for a block of the N rows (x: (N, I))."""
    block = out[r0:r1]
    np.dot(x[r0:r1], w_ih_t, block)
    for r in range(r1 - r0):
        block[r] += bias


# -- rows and states shared by the kernels ---------------------------------------------------


@njit(**_JIT)
def _previous(initial, states, starts, t, rows):
    """The states of the first `rows` sequences before step t: `initial`'s at t = 0, else
    the first `rows` rows of step t-1."""
    if t == 0:
        return initial[:rows]
    return states[starts[t - 1]:starts[t - 1] + rows]


@njit(**_JIT)
def _dh_of_step(dh, partials, slot, sent_back, dy_t, s0, s1):
    """dh's first rows := dL/dh_t, own columns s0:s1: what step t+1 sent back (the team's
    partials in `slot`, summed) for its `sent_back` sequences, dL/dh_n (left in dh) for the
    sequences that end at step t, plus dy_t (empty when y gets no gradient)."""
    for b in range(sent_back):
        dh_b = dh[b, s0:s1]
        dh_b[:] = partials[0, slot, b, s0:s1]
        for k in range(1, partials.shape[0]):
            dh_b += partials[k, slot, b, s0:s1]
    for b in range(dy_t.shape[0]):
        dh[b, s0:s1] += dy_t[b, s0:s1]


@njit(**_JIT)
def _project_claimed(x, w_ih, H, bounds, row0, row1, x_proj, sync, block):
    """Project rows row0:row1 of x for the whole team, task by task, then wait for all tasks.

    A task is one gate of one member's units: x_proj[g * team + m] := x[row0:row1] times
    those rows of W_ih, transposed (`_projected` reads it back). Members claim tasks from a
    shared counter, so one that starts late (a thread waking takes up to 0.5 ms on a virtual
    machine) finds the others' projection done rather than the others waiting at the first
    step. Every member makes exactly one failed claim per block, hence the block's base.
    """
    team = bounds.shape[0]
    tasks = x_proj.shape[0]
    base, rows = block * (tasks + team), row1 - row0
    while True:
        i = _atomic_add(sync, SYNC_CLAIMED, 1) - base
        if i >= tasks:
            break
        g, m = i // team, i % team
        u0, u1 = bounds[m, 0], bounds[m, 1]
        out = x_proj[i, :rows * (u1 - u0)].reshape((rows, u1 - u0))
        np.dot(x[row0:row1], w_ih[g * H + u0:g * H + u1].T, out)
        _atomic_add(sync, SYNC_DONE, 1)
    return _wait(sync, SYNC_DONE, (block + 1) * tasks)


@njit(**_JIT)
def _member(bounds, u0):
    """The index of the member whose units start at u0."""
    for m in range(bounds.shape[0]):
        if bounds[m, 0] == u0:
            return m
    return -1


@njit(**_JIT)
def _projected(x_proj, team, m, g, p, n):
    """Row p of the block's projection onto gate g of member m's n units."""
    return x_proj[g * team + m, p * n:(p + 1) * n]


# -- LSTM --------------------------------------------------------------------------------------
#
# Every kernel takes the steps first, starts and sizes (T,), then its buffers, then its
# scratch, and the team arguments last: u0, u1 (the own hidden units), sync (the barrier,
# shared), team (the number of threads); the backward kernels also k (this thread's index) and
# partials (team, 2, B, H_out), where thread k leaves its share of dh_{t-1} (two slots,
# alternating with t, so that no thread overwrites a share another is still summing). The
# caller makes the scratch, per thread, with NumPy: where scratch lies against the gate
# buffer's 4 KiB pages moves the LSTM backward's time by up to 30%, and scratch made in the
# kernel lay 10% slower. w_own is (gates * (u1 - u0), H_out): W_hh's rows of the
# own units, gate by gate (the backward's); w_cols is its transpose (the forward's: every
# product is ``out = a @ w``). w_hr is W_hr (P, H), or (0, H) without a projection.


@njit(**_JIT)
def lstm_forward(starts, sizes, gates, w_cols, w_hr, h0, c0, y, c, m, rec, u0, u1, sync, team):
    """gates (N, 4H): x W_ih^T + b_ih + b_hh in, the activated i, f, g, o out (own units).

    h0 (B, H_out), c0 (B, H); fills c (N, H) and y (N, H_out). m (N, H) receives
    m_t = o tanh(c_t): it is y itself without a projection; with one, y = m W_hr^T.
    rec (B, 4n): scratch for h_{t-1} W_hh^T, own units.
    """
    H, n = c.shape[1], u1 - u0
    projected = w_hr.shape[0] > 0
    for t in range(sizes.size):
        r0, rows = starts[t], sizes[t]
        c_prev = _previous(c0, c, starts, t, rows)
        product(_previous(h0, y, starts, t, rows), w_cols, rec[:rows], t % 2 == 1)
        for b in range(rows):
            buf_i, buf_f, buf_g, buf_o = _own(gates[r0 + b], H, u0, u1, 4)
            rec_i, rec_f, rec_g, rec_o = _packed(rec[b], n, 4)
            cp, ct, mt = c_prev[b, u0:u1], c[r0 + b, u0:u1], m[r0 + b, u0:u1]
            for j in range(n):
                i, f, g, o, ct[j], mt[j] = lstm_cell(
                    buf_i[j] + rec_i[j], buf_f[j] + rec_f[j], buf_g[j] + rec_g[j],
                    buf_o[j] + rec_o[j], cp[j])
                buf_i[j], buf_f[j], buf_g[j], buf_o[j] = i, f, g, o
        if projected:
            np.dot(m[r0:r0 + rows], w_hr.T, y[r0:r0 + rows])
        if not _barrier(sync, team, t + 1):
            return


@njit(**_JIT)
def lstm_inference(starts, sizes, x, w_ih, bias, w_cols, w_hr, h0, c, y, x_proj, bounds,
                   block_steps, rec, m, u0, u1, sync, team):
    """Fills y (N, H_out) and turns c (B, H) from c0 into c_n, own units, storing no gates.

    x (N, I); w_ih (4H, I); bias (4H,): b_ih + b_hh. Shared by the team: x_proj
    (4 * team, block_steps * B * n_max), the input projection of a block of steps
    (`_project_claimed`), and bounds (team, 2), every member's units. Scratch: rec (B, 4n),
    a step's recurrent product; m (B, H) with a projection, else (0, H). The sums run in
    `lstm_forward`'s order, so both give the same y.
    """
    H, n = c.shape[1], u1 - u0
    me = _member(bounds, u0)
    projected = w_hr.shape[0] > 0
    b_i, b_f, b_g, b_o = _own(bias, H, u0, u1, 4)
    T = sizes.size
    for t0 in range(0, T, block_steps):
        t1 = min(T, t0 + block_steps)
        block_rows = starts[t1 - 1] + sizes[t1 - 1] - starts[t0]
        if not _project_claimed(x, w_ih, H, bounds, starts[t0], starts[t0] + block_rows, x_proj,
                                sync, t0 // block_steps):
            return
        for t in range(t0, t1):
            r0, rows = starts[t], sizes[t]
            product(_previous(h0, y, starts, t, rows), w_cols, rec[:rows], t % 2 == 1)
            cell_out = m[:rows] if projected else y[r0:r0 + rows]
            for b in range(rows):
                p = r0 - starts[t0] + b
                x_i, x_f, x_g, x_o = (_projected(x_proj, team, me, 0, p, n),
                                      _projected(x_proj, team, me, 1, p, n),
                                      _projected(x_proj, team, me, 2, p, n),
                                      _projected(x_proj, team, me, 3, p, n))
                rec_i, rec_f, rec_g, rec_o = _packed(rec[b], n, 4)
                cb, mb = c[b, u0:u1], cell_out[b, u0:u1]
                for j in range(n):
                    _, _, _, _, cb[j], mb[j] = lstm_cell(
                        x_i[j] + b_i[j] + rec_i[j], x_f[j] + b_f[j] + rec_f[j],
                        x_g[j] + b_g[j] + rec_g[j], x_o[j] + b_o[j] + rec_o[j], cb[j])
            if projected:
                np.dot(cell_out, w_hr.T, y[r0:r0 + rows])
            if not _barrier(sync, team, t + 1):
                return


@njit(**_JIT)
def lstm_backward(starts, sizes, gates, c, c0, w_own, w_hr, dy, dh, dc, dh_rows, d_own, dm,
                  u0, u1, sync, team, k, partials):
    """gates: the activated i, f, g, o in, dX = dH = d(pre-activation) out (own units).

    dy (N, H_out), or (0, H_out) when y receives no gradient; dh (B, H_out), dc (B, H): the
    gradients wrt h_n, c_n in, wrt h0, c0 out (own units). With a projection, dh_rows (N, P)
    receives every step's dh, for dW_hr. Scratch: d_own (B, 4n), the da sent back; dm
    (B, H) with a projection, else (0, H).
    """
    T, H, n = sizes.size, c.shape[1], u1 - u0
    projected = w_hr.shape[0] > 0
    # The state columns this thread owns: its units' without a projection, all P with one.
    s0, s1 = (0, dh.shape[1]) if projected else (u0, u1)
    for t in range(T - 1, -1, -1):
        r0, rows = starts[t], sizes[t]
        sent_back = sizes[t + 1] if t + 1 < T else 0
        _dh_of_step(dh, partials, (t + 1) % 2, sent_back, dy[r0:r0 + rows], s0, s1)
        if projected:
            dh_rows[r0:r0 + rows] = dh[:rows]
            np.dot(dh[:rows], w_hr, dm[:rows])
        d_cell = dm if projected else dh               # dL/dm_t
        c_prev = _previous(c0, c, starts, t, rows)
        for b in range(rows):
            buf_i, buf_f, buf_g, buf_o = _own(gates[r0 + b], H, u0, u1, 4)
            d_i, d_f, d_g, d_o = _packed(d_own[b], n, 4)
            ct, cp = c[r0 + b, u0:u1], c_prev[b, u0:u1]
            dmb, dcb = d_cell[b, u0:u1], dc[b, u0:u1]
            for j in range(n):
                da_i, da_f, da_g, da_o, dcb[j] = lstm_cell_grad(
                    dmb[j], dcb[j], buf_i[j], buf_f[j], buf_g[j], buf_o[j], ct[j], cp[j])
                buf_i[j] = d_i[j] = da_i
                buf_f[j] = d_f[j] = da_f
                buf_g[j] = d_g[j] = da_g
                buf_o[j] = d_o[j] = da_o
        product(d_own[:rows], w_own, partials[k, t % 2, :rows], t % 2 == 1)
        if not _barrier(sync, team, T - t):
            return
    _dh_of_step(dh, partials, 0, sizes[0], dy[:0], s0, s1)


# -- GRU ---------------------------------------------------------------------------------------


@njit(**_JIT)
def gru_forward(starts, sizes, gates, w_cols, b_hh, h0, hn, y, rec, u0, u1, sync, team):
    """gates (N, 3H): x W_ih^T + b_ih in, the activated r, z, n out (own units).

    b_hh (3H,); h0 (B, H); fills hn and y (N, H) for the own units; rec (B, 3n) is scratch.
    """
    H, n = y.shape[1], u1 - u0
    b_r, b_z, b_n, _ = _own(b_hh, H, u0, u1, 3)
    for t in range(sizes.size):
        r0, rows = starts[t], sizes[t]
        h_prev = _previous(h0, y, starts, t, rows)
        product(h_prev, w_cols, rec[:rows], t % 2 == 1)
        for b in range(rows):
            buf_r, buf_z, buf_n, _ = _own(gates[r0 + b], H, u0, u1, 3)
            rec_r, rec_z, rec_n, _ = _packed(rec[b], n, 3)
            hp, hnt, ht = h_prev[b, u0:u1], hn[r0 + b, u0:u1], y[r0 + b, u0:u1]
            for j in range(n):
                hnt[j] = rec_n[j] + b_n[j]
                buf_r[j], buf_z[j], buf_n[j], ht[j] = gru_cell(
                    buf_r[j] + rec_r[j] + b_r[j], buf_z[j] + rec_z[j] + b_z[j], buf_n[j],
                    hnt[j], hp[j])
        if not _barrier(sync, team, t + 1):
            return


@njit(**_JIT)
def gru_inference(starts, sizes, x, w_ih, b_ih, w_cols, b_hh, h0, y, x_proj, bounds,
                  block_steps, rec, u0, u1, sync, team):
    """Fills y (N, H) for the own units, storing no gates and no hn.

    x (N, I); w_ih (3H, I); b_ih, b_hh (3H,). x_proj, bounds: as `lstm_inference`'s (3
    gates). Scratch: rec (B, 3n), a step's recurrent product. The sums run in `gru_forward`'s
    order, so both give the same y.
    """
    H, n = y.shape[1], u1 - u0
    me = _member(bounds, u0)
    bx_r, bx_z, bx_n, _ = _own(b_ih, H, u0, u1, 3)
    b_r, b_z, b_n, _ = _own(b_hh, H, u0, u1, 3)
    T = sizes.size
    for t0 in range(0, T, block_steps):
        t1 = min(T, t0 + block_steps)
        block_rows = starts[t1 - 1] + sizes[t1 - 1] - starts[t0]
        if not _project_claimed(x, w_ih, H, bounds, starts[t0], starts[t0] + block_rows, x_proj,
                                sync, t0 // block_steps):
            return
        for t in range(t0, t1):
            r0, rows = starts[t], sizes[t]
            h_prev = _previous(h0, y, starts, t, rows)
            product(h_prev, w_cols, rec[:rows], t % 2 == 1)
            for b in range(rows):
                p = r0 - starts[t0] + b
                x_r, x_z, x_n = (_projected(x_proj, team, me, 0, p, n),
                                 _projected(x_proj, team, me, 1, p, n),
                                 _projected(x_proj, team, me, 2, p, n))
                rec_r, rec_z, rec_n, _ = _packed(rec[b], n, 3)
                hp, ht = h_prev[b, u0:u1], y[r0 + b, u0:u1]
                for j in range(n):
                    _, _, _, ht[j] = gru_cell(
                        x_r[j] + bx_r[j] + rec_r[j] + b_r[j], x_z[j] + bx_z[j] + rec_z[j] + b_z[j],
                        x_n[j] + bx_n[j], rec_n[j] + b_n[j], hp[j])
            if not _barrier(sync, team, t + 1):
                return


@njit(**_JIT)
def gru_backward(starts, sizes, gates, hn, y, h0, w_own, dy, dh, d_own, dh_direct,
                 u0, u1, sync, team, k, partials):
    """gates: the activated r, z, n in, dX out; hn in, the n block of dH out (own units).

    dy (N, H) or (0, H); dh (B, H): the gradient wrt h_n in, wrt h0 out (own units). The
    direct part of dh_{t-1}, dh z, travels in this thread's partial, with dH W_hh. Scratch:
    d_own (B, 3n), the dH sent back; dh_direct (B, n).
    """
    T, H, n = sizes.size, y.shape[1], u1 - u0
    for t in range(T - 1, -1, -1):
        r0, rows = starts[t], sizes[t]
        sent_back = sizes[t + 1] if t + 1 < T else 0
        _dh_of_step(dh, partials, (t + 1) % 2, sent_back, dy[r0:r0 + rows], u0, u1)
        h_prev = _previous(h0, y, starts, t, rows)
        for b in range(rows):
            buf_r, buf_z, buf_n, _ = _own(gates[r0 + b], H, u0, u1, 3)
            d_r, d_z, d_hn, _ = _packed(d_own[b], n, 3)
            buf_hn, hp, dhb = hn[r0 + b, u0:u1], h_prev[b, u0:u1], dh[b, u0:u1]
            direct = dh_direct[b]
            for j in range(n):
                da_r, da_z, buf_n[j], dhn, direct[j] = gru_cell_grad(
                    dhb[j], buf_r[j], buf_z[j], buf_n[j], buf_hn[j], hp[j])
                buf_r[j] = d_r[j] = da_r
                buf_z[j] = d_z[j] = da_z
                buf_hn[j] = d_hn[j] = dhn
        sent = partials[k, t % 2, :rows]
        product(d_own[:rows], w_own, sent, t % 2 == 1)
        for b in range(rows):
            sent[b, u0:u1] += dh_direct[b]
        if not _barrier(sync, team, T - t):
            return
    _dh_of_step(dh, partials, 0, sizes[0], dy[:0], u0, u1)


# -- simple RNN --------------------------------------------------------------------------------


@njit(**_JIT)
def rnn_forward(starts, sizes, y, w_cols, h0, is_relu, rec, u0, u1, sync, team):
    """y (N, H): x W_ih^T + b_ih + b_hh in, h_t = tanh(a), or relu(a) if `is_relu`, out.

    Own units only; rec (B, n) is scratch.
    """
    n = u1 - u0
    for t in range(sizes.size):
        r0, rows = starts[t], sizes[t]
        product(_previous(h0, y, starts, t, rows), w_cols, rec[:rows], t % 2 == 1)
        for b in range(rows):
            buf, rec_b = y[r0 + b, u0:u1], rec[b]
            if is_relu:
                for j in range(n):
                    buf[j] = relu(buf[j] + rec_b[j])
            else:
                for j in range(n):
                    buf[j] = tanh(buf[j] + rec_b[j])
        if not _barrier(sync, team, t + 1):
            return


@njit(**_JIT)
def rnn_backward(starts, sizes, y, w_own, dy, dh, is_relu, da, d_own, u0, u1, sync, team, k,
                 partials):
    """Fills da (N, H) with d(pre-activation); dh (B, H): wrt h_n in, wrt h0 out.

    Own units only; d_own (B, n) is scratch.
    """
    T, n = sizes.size, u1 - u0
    for t in range(T - 1, -1, -1):
        r0, rows = starts[t], sizes[t]
        sent_back = sizes[t + 1] if t + 1 < T else 0
        _dh_of_step(dh, partials, (t + 1) % 2, sent_back, dy[r0:r0 + rows], u0, u1)
        for b in range(rows):
            h, dhb, dab, d_b = y[r0 + b, u0:u1], dh[b, u0:u1], da[r0 + b, u0:u1], d_own[b]
            if is_relu:
                for j in range(n):
                    dab[j] = d_b[j] = relu_grad(dhb[j], h[j])
            else:
                for j in range(n):
                    dab[j] = d_b[j] = dhb[j] * dtanh(h[j])
        product(d_own[:rows], w_own, partials[k, t % 2, :rows], t % 2 == 1)
        if not _barrier(sync, team, T - t):
            return
    _dh_of_step(dh, partials, 0, sizes[0], dy[:0], u0, u1)
