"""Numba kernels for the recurrent part of LSTM, GRU and the simple RNN: forward and BPTT.

The layer (`impls.numba_rnn`) does the input projection for all steps as one GEMM before a
kernel runs, and the weight gradients as GEMMs after the backward kernel; the kernels own the
time loop: per step one GEMM for the recurrent product (`np.dot`, i.e. scipy's BLAS, held to
one thread), then one fused, vectorised pass over the gate elements.

Inference (`lstm_inference`, `gru_inference`) keeps nothing for a backward: each thread
projects the input onto its own units itself, a block of k steps at a time into a reused
buffer, and writes y and the final state directly, so a call needs y plus k*B*G floats, not
5-6x y. The simple RNN needs no such kernel: its forward already projects straight into y
and stores nothing else.

Threads ("the team"): a kernel is called once per thread, each thread owning a block of
hidden units u0:u1 (all gates of those units) and the matching rows of W_hh, packed
contiguously (`w_own`). A step needs the whole h_{t-1}, so the threads meet at a barrier at the
end of every step (`_barrier`: an atomic counter, spinning, then yielding the CPU); nothing
else is shared. One thread is the plain serial loop (its barrier returns at once). No kernel
is numba-`parallel`: the team is the layer's own threads, as many as numba's thread count
allows, and team size x BLAS threads (1) never exceeds that count. Splitting units, not batch
rows, is what helps B = 1, where each step streams all of W_hh: two threads each stream half,
from their own cache.

Notation, per step t (batch rows independent): ``a = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh``
split into gate blocks; ``dX`` is dL/d(a) as seen by the input projection, ``dH`` as seen by the
recurrent product (they differ only in the GRU's n block); ``dh`` is the gradient reaching
h_t: from the output, ``dy_t``, plus what step t+1 sends back, ``dH_{t+1} W_hh``. Unrolled,
this recursion is the sum over k of products of d h_j / d h_{j-1} in the notes
(002_2c9e6012ecdce6e2.txt §1.2, claim C1); the kernel never forms the products. In the team,
thread k computes dH_{t+1} for its units only, so it sends back the partial product
``dH_{t+1}[own] W_hh[own rows]`` and every thread sums the partials over its own units.
With s' = s (1 - s) for a sigmoid output s and 1 - u^2 for a tanh output u:

LSTM  i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c_t = f c_{t-1} + i g, h_t = o tanh(c_t)::

    dc    = dc_{t+1 -> t} + dh o (1 - tanh(c_t)^2)
    da_o  = dh tanh(c_t) o'      da_i = dc g i'      da_f = dc c_{t-1} f'      da_g = dc i g'
    dc_{t-1} = dc f              dh_{t-1} = da W_hh          (dX = dH = da)

GRU (reset after the product; hn = h_{t-1} W_hn^T + b_hn)
r, z = sigmoid(a_r, a_z), n = tanh(a_in + r hn), h_t = n + z (h_{t-1} - n)::

    da_n = dh (1 - z) n'         da_z = dh (h_{t-1} - n) z'        da_r = da_n hn r'
    dX = (da_r, da_z, da_n)      dH = (da_r, da_z, da_n r)
    dh_{t-1} = dh z + dH W_hh

RNN  h_t = act(a)::   da = dh act'   (tanh: 1 - h_t^2; relu: [h_t > 0])   dh_{t-1} = da W_hh

Then, outside the loop: dW_ih = sum_t dX_t^T x_t, dW_hh = sum_t dH_t^T h_{t-1}, db_ih = sum dX,
db_hh = sum dH, dx_t = dX_t W_ih: three large GEMMs and two sums.

What is stored for backward (all T*B rows, H = hidden size), and nothing else:

- LSTM: the activated gates i, f, g, o (4H), c_t (H) and h_t = y (H): 6H floats per row.
  tanh(c_t) is recomputed rather than stored.
- GRU: r, z, n (3H), hn (H) and y (H): 5H.
- RNN: y only (H): the derivative of tanh and relu is a function of their output.

The gate buffer first holds the input projection, then the activated gates, then (in the
backward) dX, each overwriting the last in place, so the backward needs no T*B-sized buffer of
its own for LSTM and GRU (the GRU's dH n-block overwrites hn; the RNN's dX is new, because its
only stored buffer, y, is the caller's output).

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


@njit(**_JIT)
def _barrier(sync, team, step):
    """Wait until all `team` threads finished `step` (counted from 1); False if aborted.

    sync[0] counts arrivals and only grows, so no reset is needed between steps;
    sync[1] is set by the caller when a thread of the team failed.
    """
    _atomic_add(sync, 0, 1)
    spins = 0
    while _atomic_load(sync, 0) < team * step:
        if _atomic_load(sync, 1):
            return False
        spins += 1
        if spins > SPINS_BEFORE_YIELD:
            _sched_yield()
    return True


@njit(**_JIT)
def _collect(dh, partials, slot, u0, u1):
    """dh[:, u0:u1] += the team's partial products dH W_hh, summed over the threads."""
    for k in range(partials.shape[0]):
        for b in range(dh.shape[0]):
            dh[b, u0:u1] += partials[k, slot, b, u0:u1]


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


# -- the input projection -------------------------------------------------------------------------


@njit(**_JIT)
def project(x, w_ih_t, bias, out, r0, r1):
    """out[r0:r1] = x[r0:r1] W_ih^T + bias for a block of the T*B rows (x: (T*B, I))."""
    block = out[r0:r1]
    np.dot(x[r0:r1], w_ih_t, block)
    for r in range(r1 - r0):
        block[r] += bias


# -- LSTM --------------------------------------------------------------------------------------
#
# Every kernel takes the team arguments last: u0, u1 (the own hidden units), sync (the
# barrier, shared), team (the number of threads); the backward kernels also k (this thread's
# index) and partials (team, 2, B, H), where thread k leaves its share of dh_{t-1} (two slots,
# alternating with t, so that no thread overwrites a share another is still summing).
# w_own is (gates * (u1 - u0), H): W_hh's rows of the own units, gate by gate.


@njit(**_JIT)
def lstm_forward(gates, w_own, h0, c0, y, c, pre, u0, u1, sync, team):
    """gates (T, B, 4H): the input projection with both biases in, the activated i, f, g, o out.

    h0, c0 (B, H); fills y and c (T, B, H) for the own units; pre (B, 4n) is scratch.
    """
    T, B, G = gates.shape
    H, n = G // 4, u1 - u0
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        c_prev = c0 if t == 0 else c[t - 1]
        np.dot(h_prev, w_own.T, pre)
        for b in range(B):
            ai, af, ag, ao = _own(gates[t, b], H, u0, u1, 4)
            pi, pf, pg, po = _packed(pre[b], n, 4)
            cp, ct, ht = c_prev[b, u0:u1], c[t, b, u0:u1], y[t, b, u0:u1]
            for j in range(n):
                i = sigmoid(ai[j] + pi[j])
                f = sigmoid(af[j] + pf[j])
                g = tanh(ag[j] + pg[j])
                o = sigmoid(ao[j] + po[j])
                cn = f * cp[j] + i * g
                ai[j], af[j], ag[j], ao[j] = i, f, g, o
                ct[j] = cn
                ht[j] = o * tanh(cn)
        if not _barrier(sync, team, t + 1):
            return


@njit(**_JIT)
def _project_block(x, w_ih, H, u0, u1, t0, t1, B, proj):
    """proj[g, :rows] = x's rows of steps t0:t1 times gate g's own rows of W_ih, transposed.

    One GEMM per gate block: its own rows of W_ih are contiguous as they are, so no member
    needs a packed copy of W_ih.
    """
    rows = (t1 - t0) * B
    for g in range(proj.shape[0]):
        np.dot(x[t0 * B:t1 * B], w_ih[g * H + u0:g * H + u1].T, proj[g, :rows])


@njit(**_JIT)
def lstm_inference(x, w_ih, bias, w_own, h0, c, y, work, u0, u1, sync, team):
    """Fills y (T, B, H) and turns c (B, H) from c0 into c_T, own units, storing no gates.

    x (T*B, I); w_ih (4H, I); bias (4H,): b_ih + b_hh; work ((1 + k) * B, 4n): scratch for
    one step's recurrent product, then a block of k steps' input projection. The sums run
    in `lstm_forward`'s order, so both give the same y.
    """
    T, B, H = y.shape
    n, k = u1 - u0, work.shape[0] // B - 1
    pre, proj = work[:B], work[B:].reshape((4, k * B, n))
    bi, bf, bg, bo = _own(bias, H, u0, u1, 4)
    for t0 in range(0, T, k):
        t1 = min(T, t0 + k)
        _project_block(x, w_ih, H, u0, u1, t0, t1, B, proj)
        for t in range(t0, t1):
            h_prev = h0 if t == 0 else y[t - 1]
            np.dot(h_prev, w_own.T, pre)
            for b in range(B):
                r = (t - t0) * B + b
                xi, xf, xg, xo = proj[0, r], proj[1, r], proj[2, r], proj[3, r]
                pi, pf, pg, po = _packed(pre[b], n, 4)
                cb, ht = c[b, u0:u1], y[t, b, u0:u1]
                for j in range(n):
                    i = sigmoid(xi[j] + bi[j] + pi[j])
                    f = sigmoid(xf[j] + bf[j] + pf[j])
                    g = tanh(xg[j] + bg[j] + pg[j])
                    o = sigmoid(xo[j] + bo[j] + po[j])
                    cn = f * cb[j] + i * g
                    cb[j] = cn
                    ht[j] = o * tanh(cn)
            if not _barrier(sync, team, t + 1):
                return


@njit(**_JIT)
def lstm_backward(gates, c, c0, w_own, dy, dh, dc, d_own, u0, u1, sync, team, k, partials):
    """gates: the activated i, f, g, o in, dX = dH = d(pre-activation) out (own units).

    dy (T, B, H), or (0, B, H) when y receives no gradient; dh, dc (B, H): the gradients wrt
    h_T, c_T in, wrt h0, c0 out (own units); d_own (B, 4n) is scratch.
    """
    T, B, G = gates.shape
    H, n = G // 4, u1 - u0
    one = gates.dtype.type(1)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            _collect(dh, partials, (t + 1) % 2, u0, u1)
        c_prev = c0 if t == 0 else c[t - 1]
        for b in range(B):
            ai, af, ag, ao = _own(gates[t, b], H, u0, u1, 4)
            ei, ef, eg, eo = _packed(d_own[b], n, 4)
            ct, cp, dhb, dcb = c[t, b, u0:u1], c_prev[b, u0:u1], dh[b, u0:u1], dc[b, u0:u1]
            if dy.shape[0]:
                dhb += dy[t, b, u0:u1]
            for j in range(n):
                i, f, g, o = ai[j], af[j], ag[j], ao[j]
                tc = tanh(ct[j])
                dct = dcb[j] + dhb[j] * o * (one - tc * tc)
                ai[j] = ei[j] = dct * g * i * (one - i)
                af[j] = ef[j] = dct * cp[j] * f * (one - f)
                ag[j] = eg[j] = dct * i * (one - g * g)
                ao[j] = eo[j] = dhb[j] * tc * o * (one - o)
                dcb[j] = dct * f
                dhb[j] = 0
        np.dot(d_own, w_own, partials[k, t % 2])
        if not _barrier(sync, team, T - t):
            return
    _collect(dh, partials, 0, u0, u1)


# -- GRU ---------------------------------------------------------------------------------------


@njit(**_JIT)
def gru_forward(gates, w_own, b_hh, h0, hn, y, pre, u0, u1, sync, team):
    """gates (T, B, 3H): x W_ih^T + b_ih in, the activated r, z, n out (own units).

    b_hh (3H,); h0 (B, H); fills hn and y (T, B, H) for the own units; pre (B, 3n) is scratch.
    """
    T, B, G = gates.shape
    H, n = G // 3, u1 - u0
    br, bz, bn, _ = _own(b_hh, H, u0, u1, 3)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        np.dot(h_prev, w_own.T, pre)
        for b in range(B):
            ar, az, an, _ = _own(gates[t, b], H, u0, u1, 3)
            pr, pz, pn, _ = _packed(pre[b], n, 3)
            hp, hnt, ht = h_prev[b, u0:u1], hn[t, b, u0:u1], y[t, b, u0:u1]
            for j in range(n):
                r = sigmoid(ar[j] + pr[j] + br[j])
                z = sigmoid(az[j] + pz[j] + bz[j])
                hn_j = pn[j] + bn[j]
                nj = tanh(an[j] + r * hn_j)
                ar[j], az[j], an[j] = r, z, nj
                hnt[j] = hn_j
                ht[j] = nj + z * (hp[j] - nj)
        if not _barrier(sync, team, t + 1):
            return


@njit(**_JIT)
def gru_inference(x, w_ih, b_ih, w_own, b_hh, h0, y, work, u0, u1, sync, team):
    """Fills y (T, B, H) for the own units, storing no gates and no hn.

    x (T*B, I); w_ih (3H, I); b_ih, b_hh (3H,); work ((1 + k) * B, 3n): scratch for one
    step's recurrent product, then a block of k steps' input projection. The sums run in
    `gru_forward`'s order, so both give the same y.
    """
    T, B, H = y.shape
    n, k = u1 - u0, work.shape[0] // B - 1
    pre, proj = work[:B], work[B:].reshape((3, k * B, n))
    bxr, bxz, bxn, _ = _own(b_ih, H, u0, u1, 3)
    br, bz, bn, _ = _own(b_hh, H, u0, u1, 3)
    for t0 in range(0, T, k):
        t1 = min(T, t0 + k)
        _project_block(x, w_ih, H, u0, u1, t0, t1, B, proj)
        for t in range(t0, t1):
            h_prev = h0 if t == 0 else y[t - 1]
            np.dot(h_prev, w_own.T, pre)
            for b in range(B):
                r = (t - t0) * B + b
                xr, xz, xn = proj[0, r], proj[1, r], proj[2, r]
                pr, pz, pn, _ = _packed(pre[b], n, 3)
                hp, ht = h_prev[b, u0:u1], y[t, b, u0:u1]
                for j in range(n):
                    rj = sigmoid(xr[j] + bxr[j] + pr[j] + br[j])
                    z = sigmoid(xz[j] + bxz[j] + pz[j] + bz[j])
                    nj = tanh(xn[j] + bxn[j] + rj * (pn[j] + bn[j]))
                    ht[j] = nj + z * (hp[j] - nj)
            if not _barrier(sync, team, t + 1):
                return


@njit(**_JIT)
def gru_backward(gates, hn, y, h0, w_own, dy, dh, d_own, u0, u1, sync, team, k, partials):
    """gates: the activated r, z, n in, dX out; hn in, the n block of dH out (own units).

    dy (T, B, H) or (0, B, H); dh (B, H): the gradient wrt h_T in, wrt h0 out (own units);
    d_own (B, 3n) is scratch.
    """
    T, B, G = gates.shape
    H, n = G // 3, u1 - u0
    one = gates.dtype.type(1)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            _collect(dh, partials, (t + 1) % 2, u0, u1)
        h_prev = h0 if t == 0 else y[t - 1]
        for b in range(B):
            ar, az, an, _ = _own(gates[t, b], H, u0, u1, 3)
            er, ez, en, _ = _packed(d_own[b], n, 3)
            hnt, hp, dhb = hn[t, b, u0:u1], h_prev[b, u0:u1], dh[b, u0:u1]
            if dy.shape[0]:
                dhb += dy[t, b, u0:u1]
            for j in range(n):
                r, z, nj = ar[j], az[j], an[j]
                da_n = dhb[j] * (one - z) * (one - nj * nj)
                da_z = dhb[j] * (hp[j] - nj) * z * (one - z)
                da_r = da_n * hnt[j] * r * (one - r)
                ar[j] = er[j] = da_r
                az[j] = ez[j] = da_z
                an[j] = da_n
                hnt[j] = en[j] = da_n * r
                dhb[j] = dhb[j] * z     # the direct path; the partials are added to it
        np.dot(d_own, w_own, partials[k, t % 2])
        if not _barrier(sync, team, T - t):
            return
    _collect(dh, partials, 0, u0, u1)


# -- simple RNN --------------------------------------------------------------------------------


@njit(**_JIT)
def rnn_forward(y, w_own, h0, relu, pre, u0, u1, sync, team):
    """y (T, B, H): x W_ih^T + b_ih + b_hh in, h_t = act(...) out (tanh, or relu if `relu`).

    Own units only; pre (B, n) is scratch.
    """
    T, B, H = y.shape
    zero = y.dtype.type(0)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        np.dot(h_prev, w_own.T, pre)
        for b in range(B):
            a, p = y[t, b, u0:u1], pre[b]
            if relu:
                for j in range(u1 - u0):
                    s = a[j] + p[j]
                    a[j] = zero if s < zero else s
            else:
                for j in range(u1 - u0):
                    a[j] = tanh(a[j] + p[j])
        if not _barrier(sync, team, t + 1):
            return


@njit(**_JIT)
def rnn_backward(y, w_own, dy, dh, relu, da, d_own, u0, u1, sync, team, k, partials):
    """Fills da (T, B, H) with d(pre-activation); dh (B, H): wrt h_T in, wrt h0 out.

    Own units only; d_own (B, n) is scratch.
    """
    T, B, H = y.shape
    one = y.dtype.type(1)
    zero = y.dtype.type(0)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            _collect(dh, partials, (t + 1) % 2, u0, u1)
        for b in range(B):
            ht, dhb, dab, e = y[t, b, u0:u1], dh[b, u0:u1], da[t, b, u0:u1], d_own[b]
            if dy.shape[0]:
                dhb += dy[t, b, u0:u1]
            if relu:
                for j in range(u1 - u0):
                    dab[j] = e[j] = dhb[j] if ht[j] > zero else zero
                    dhb[j] = 0
            else:
                for j in range(u1 - u0):
                    dab[j] = e[j] = dhb[j] * (one - ht[j] * ht[j])
                    dhb[j] = 0
        np.dot(d_own, w_own, partials[k, t % 2])
        if not _barrier(sync, team, T - t):
            return
    _collect(dh, partials, 0, u0, u1)
