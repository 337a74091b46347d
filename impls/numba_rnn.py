"""The `numba` layer: hand-written forward and BPTT kernels behind a `torch.autograd.Function`.

A call that autograd records: the input projection for all T steps is one GEMM (before the
kernel), the kernel runs the time loop (`impls.numba_kernels`), and in the backward the weight
and input gradients are three GEMMs over all steps (torch, after the kernel). Tensors reach
the kernels as `.numpy()` views, copied only when not contiguous.

Inference (grad mode off, or nothing requiring grad) skips autograd: an LSTM or GRU call runs
a kernel that projects the input a block of steps at a time and stores no gates, so it needs y
and a small block buffer, not the 5-6x y that training keeps for BPTT.

Threads: a large enough problem runs on a team of threads, as many as numba's thread count
for the calling thread (`numba.get_num_threads()`, which `numba.set_num_threads` lowers at
run time; NUMBA_NUM_THREADS, the cores by default, until then), each owning a block of hidden
units (see `impls.numba_kernels`); the calling thread is one of them, the others come from a
small pool. While a team runs, the BLAS that the kernels' `np.dot` calls (scipy's) is held to
one thread, so team size x BLAS threads never exceeds numba's thread count, and no idle BLAS
worker is left spinning against torch's own threads. Where that BLAS's thread count cannot be
set, the team is one thread.

Memory: the backward overwrites the gate buffer with the gate gradients (that is what keeps
training memory at what BPTT must store) and drops the buffers when it returns. A second
backward through the same graph (`retain_graph=True`, gradcheck) recomputes them from the
saved inputs first, so it costs one more forward instead of memory held for a rare case.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import threading

import numba
import numpy as np
import torch
from numba.np.ufunc import parallel as numba_parallel
from torch.autograd.function import once_differentiable

from impls import numba_kernels as kernels
from impls.layer import GATES, RecurrentLayer


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only if it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _first_state(h: torch.Tensor) -> torch.Tensor:
    """(1, B, H) -> a contiguous (B, H) view, or copy, without autograd history."""
    return h[0].detach().contiguous()


def _state_grad(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A private (B, H) copy of the gradient wrt a final state (zeros when it got none)."""
    if grad is None:
        return torch.zeros_like(like)
    return grad[0].clone(memory_format=torch.contiguous_format)


def _output_grad(dy: torch.Tensor | None, y: torch.Tensor) -> np.ndarray:
    """dL/dy for the kernel; an empty (0, B, H) array tells it y received no gradient."""
    return _np(y.new_empty((0,) + y.shape[1:]) if dy is None else dy)


def _recurrent_weight_grad(d_rec: torch.Tensor, y: torch.Tensor, h0: torch.Tensor,
                           out: torch.Tensor) -> None:
    """out = sum_t d_rec[t]^T h_{t-1}, with h_{-1} = h0: one GEMM over steps 1..T-1."""
    T, B, G = d_rec.shape
    torch.mm(d_rec[0].t(), h0, out=out)
    if T > 1:
        out.addmm_(d_rec[1:].reshape((T - 1) * B, G).t(), y[:-1].reshape((T - 1) * B, -1))


def _input_grads(d_in: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor, need_x: bool,
                 need_w: bool, need_b: bool):
    """(dx, dW_ih, db_ih) from the gate gradients seen by the input projection."""
    T, B, G = d_in.shape
    flat = d_in.view(T * B, G)
    dx = (flat @ w_ih).view(x.shape) if need_x else None
    dw_ih = flat.t() @ x.reshape(T * B, -1) if need_w else None
    db_ih = flat.sum(0) if need_b else None
    return dx, dw_ih, db_ih


# -- the BLAS behind np.dot, held to one thread while a kernel runs ----------------------------


def _find_blas_threads():
    """(get, set) for the thread count of the BLAS behind numba's np.dot, or None."""
    import scipy.linalg.cython_blas  # numba's np.dot calls this module's BLAS

    lib = ctypes.CDLL(scipy.linalg.cython_blas.__file__)  # finds symbols of its BLAS too
    for get_name, set_name in (
        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
        ("openblas_get_num_threads", "openblas_set_num_threads"),
        ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
    ):
        if hasattr(lib, get_name) and hasattr(lib, set_name):
            get, set_ = getattr(lib, get_name), getattr(lib, set_name)
            get.argtypes, get.restype = [], ctypes.c_int
            set_.argtypes, set_.restype = [ctypes.c_int], None
            return get, set_
    return None


class _SingleThreadedBlas:
    """Context: the kernels' BLAS runs one thread while any kernel runs, as before after."""

    def __init__(self):
        self._blas = _find_blas_threads()
        self._lock = threading.Lock()
        self._active = 0
        self._saved = 0

    @property
    def available(self) -> bool:
        return self._blas is not None

    def __enter__(self):
        if self._blas is not None:
            with self._lock:
                if self._active == 0:
                    self._saved = self._blas[0]()
                    self._blas[1](1)
                self._active += 1

    def __exit__(self, *exc):
        if self._blas is not None:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._blas[1](self._saved)


_BLAS = _SingleThreadedBlas()


# -- threads: a small pool, members that run at once -------------------------------------------

#: Work below which an extra thread costs more than it saves: multiply-adds of a whole GEMM
#: split by rows, and of one step's recurrent product for a team (which also meets at a
#: barrier every step).
_MIN_PARALLEL_MACS = 2**22
_MIN_STEP_MACS_FOR_TEAM = 2**21
#: Fewer hidden units than this per thread (one AVX2 vector of float32) is not worth a thread.
_MIN_UNITS_PER_THREAD = 8


def _numba_threads() -> int:
    """numba's thread count for the calling thread, as `numba.set_num_threads` left it.

    Until numba's own pool is started (set_num_threads starts it) the count is
    NUMBA_NUM_THREADS; `numba.get_num_threads()` would start that pool just to say so.
    """
    if getattr(numba_parallel, "_is_initialized", True):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


def _threads(limit: int) -> int:
    """Threads for work that can use at most `limit` of them (1 without BLAS control)."""
    if not _BLAS.available:
        return 1
    return max(1, min(_numba_threads(), limit))


def _team_size(step_macs: int, hidden_size: int) -> int:
    """Members for steps of `step_macs` multiply-adds (B * G * H) over `hidden_size` units."""
    if step_macs < _MIN_STEP_MACS_FOR_TEAM:
        return 1
    return _threads(hidden_size // _MIN_UNITS_PER_THREAD)


def team_size(cell: str, batch: int, hidden_size: int) -> int:
    """Threads that run the time loop of a `cell` call with this batch and hidden size, now."""
    return _team_size(batch * GATES[cell] * hidden_size * hidden_size, hidden_size)


class _Pool:
    """Worker threads for the members besides the caller (rebuilt after a fork)."""

    def __init__(self):
        self._executor = None
        self._workers = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self):
        self._executor, self._workers = None, 0

    def get(self, workers: int) -> concurrent.futures.ThreadPoolExecutor:
        # Members may meet at barriers, so all must run at once: never fewer workers.
        with self._lock:
            if self._workers < workers:
                if self._executor is not None:
                    self._executor.shutdown(wait=False)
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    workers, thread_name_prefix="numba-rnn")
                self._workers = workers
            return self._executor


_POOL = _Pool()


def run_members(members, sync: np.ndarray) -> None:
    """Run the callables at once, the first in this thread, with BLAS held to one thread.

    A member that raises sets sync[1], which releases the others from a barrier.
    """
    def guarded(member):
        try:
            member()
        except BaseException:
            sync[1] = 1
            raise

    with _BLAS:
        if len(members) == 1:
            members[0]()
            return
        others = [_POOL.get(len(members) - 1).submit(guarded, m) for m in members[1:]]
        try:
            guarded(members[0])
        finally:
            for future in others:
                future.result()


def _project(x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x W_ih^T + bias for all steps at once: (T, B, G), a new contiguous buffer.

    In numba's BLAS, not torch's: a torch GEMM leaves its OpenMP threads spinning for
    milliseconds, against the team that runs right after it (measured 4x slower at B=1 on
    this 2-core machine).
    """
    T, B, I = x.shape
    G = w_ih.shape[0]
    rows = T * B
    x2d, w_t, b = _np(x.reshape(rows, I)), _np(w_ih).T, _np(bias)
    out = torch.empty(T, B, G, dtype=x.dtype)
    out2d = out.numpy().reshape(rows, G)
    n = _threads(rows) if rows * G * I >= _MIN_PARALLEL_MACS else 1
    edges = [rows * k // n for k in range(n + 1)]
    run_members([lambda r0=r0, r1=r1: kernels.project(x2d, w_t, b, out2d, r0, r1)
                 for r0, r1 in zip(edges[:-1], edges[1:])], np.zeros(2, dtype=np.int64))
    return out


class Team:
    """How a layer call splits its hidden units, and W_hh's rows packed per member."""

    def __init__(self, w_hh: torch.Tensor, batch: int):
        G, H = w_hh.shape
        size = _team_size(batch * G * H, H)
        # Block edges on multiples of 8 units, so that the vector loops start aligned.
        edges = [min(H, round(H * k / size / 8) * 8) for k in range(size)] + [H]
        self.bounds = list(zip(edges[:-1], edges[1:]))
        w = _np(w_hh)
        if size == 1:
            self.w_own = [w]
        else:
            blocks = w.reshape(G // H, H, H)
            self.w_own = [np.ascontiguousarray(blocks[:, u0:u1].reshape(-1, H))
                          for u0, u1 in self.bounds]

    @property
    def size(self) -> int:
        return len(self.bounds)

    def run(self, call, batch: int, dtype, work_per_unit: int, backward: bool = False,
            block_steps: int = 0):
        """``call(w_own, work, u0, u1, sync, size[, k, partials])`` once per member, at once.

        work is the member's scratch: (1 + block_steps) * batch rows of work_per_unit * n
        (n: its units), room for one step's recurrent product and, for inference, a block of
        steps' input projection.
        """
        sync = np.zeros(2, dtype=np.int64)
        H = self.bounds[-1][1]
        partials = np.empty((self.size, 2, batch, H), dtype) if backward else None

        def member(k):
            u0, u1 = self.bounds[k]
            work = np.empty(((1 + block_steps) * batch, work_per_unit * (u1 - u0)), dtype)
            extra = (k, partials) if backward else ()
            call(self.w_own[k], work, u0, u1, sync, self.size, *extra)

        run_members([lambda k=k: member(k) for k in range(self.size)], sync)


# -- the autograd functions ----------------------------------------------------------------------


def _lstm(x, h0_, c0_, w_ih, w_hh, b_ih, b_hh, team):
    """The forward: y, and for the backward the activated gates and c (each (T, B, .))."""
    T, B, _ = x.shape
    gates = _project(x, w_ih, b_ih.detach() + b_hh.detach())
    y = gates.new_empty(T, B, h0_.shape[1])
    c = torch.empty_like(y)
    g, h0n, c0n, yn, cn = gates.numpy(), h0_.numpy(), c0_.numpy(), y.numpy(), c.numpy()
    team.run(lambda w, pre, *t: kernels.lstm_forward(g, w, h0n, c0n, yn, cn, pre, *t),
             B, g.dtype, 4)
    return y, gates, c


def _gru(x, h0_, w_ih, w_hh, b_ih, b_hh, team):
    """The forward: y, and for the backward the activated gates and hn (each (T, B, .))."""
    T, B, _ = x.shape
    gates = _project(x, w_ih, b_ih.detach())
    y = gates.new_empty(T, B, h0_.shape[1])
    hn = torch.empty_like(y)
    g, bn, h0n, hnn, yn = gates.numpy(), _np(b_hh), h0_.numpy(), hn.numpy(), y.numpy()
    team.run(lambda w, pre, *t: kernels.gru_forward(g, w, bn, h0n, hnn, yn, pre, *t),
             B, g.dtype, 3)
    return y, gates, hn


def _lstm_bptt(team, gates, c, c0_, dy, dh, dc):
    """The backward loop: gates becomes dX; dh, dc become the gradients wrt h0, c0."""
    g, cn, c0n, dhn, dcn = gates.numpy(), c.numpy(), c0_.numpy(), dh.numpy(), dc.numpy()
    team.run(lambda w, d, *t: kernels.lstm_backward(g, cn, c0n, w, dy, dhn, dcn, d, *t),
             dh.shape[0], g.dtype, 4, backward=True)


def _gru_bptt(team, gates, hn, y, h0_, dy, dh):
    """The backward loop: gates becomes dX, hn dH's n block; dh the gradient wrt h0."""
    g, hnn, yn, h0n, dhn = gates.numpy(), hn.numpy(), y.numpy(), h0_.numpy(), dh.numpy()
    team.run(lambda w, d, *t: kernels.gru_backward(g, hnn, yn, h0n, w, dy, dhn, d, *t),
             dh.shape[0], g.dtype, 3, backward=True)


class _LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        team = Team(w_hh, x.shape[1])
        y, gates, c = _lstm(x, _first_state(h0), _first_state(c0), w_ih, w_hh, b_ih, b_hh, team)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, y)
        ctx.team, ctx.buffers = team, (gates, c)
        return y, y[-1:].clone(), c[-1:].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, y = ctx.saved_tensors
        h0_, c0_, team = _first_state(h0), _first_state(c0), ctx.team
        gates, c = ctx.buffers or _lstm(x, h0_, c0_, w_ih, w_hh, b_ih, b_hh, team)[1:]
        ctx.buffers = None
        dh, dc = _state_grad(dh_n, h0_), _state_grad(dc_n, c0_)
        _lstm_bptt(team, gates, c, c0_, _output_grad(dy, y), dh, dc)
        del c  # no longer needed: free it before the GEMMs allocate
        need_x, _, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh = ctx.needs_input_grad
        dx, dw_ih, db = _input_grads(gates, x, w_ih, need_x, need_w_ih, need_b_ih or need_b_hh)
        dw_hh = None
        if need_w_hh:
            dw_hh = torch.empty_like(w_hh)
            _recurrent_weight_grad(gates, y, h0_, dw_hh)
        # b_ih and b_hh enter the same sum: equal gradients, in separate tensors.
        db_ih = db if need_b_ih else None
        db_hh = db.clone() if need_b_hh else None
        return dx, dh.unsqueeze(0), dc.unsqueeze(0), dw_ih, dw_hh, db_ih, db_hh


class _GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        team = Team(w_hh, x.shape[1])
        y, gates, hn = _gru(x, _first_state(h0), w_ih, w_hh, b_ih, b_hh, team)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, y)
        ctx.team, ctx.buffers = team, (gates, hn)
        return y, y[-1:].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, b_ih, b_hh, y = ctx.saved_tensors
        h0_, team = _first_state(h0), ctx.team
        gates, hn = ctx.buffers or _gru(x, h0_, w_ih, w_hh, b_ih, b_hh, team)[1:]
        ctx.buffers = None
        dh = _state_grad(dh_n, h0_)
        _gru_bptt(team, gates, hn, y, h0_, _output_grad(dy, y), dh)
        need_x, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh = ctx.needs_input_grad
        dx, dw_ih, db_ih = _input_grads(gates, x, w_ih, need_x, need_w_ih, need_b_ih)
        H = hn.shape[2]
        dw_hh = db_hh = None
        # dH = (dX's r and z blocks, hn's buffer now holding the n block).
        if need_w_hh:
            dw_hh = torch.empty_like(w_hh)
            _recurrent_weight_grad(gates[:, :, :2 * H], y, h0_, dw_hh[:2 * H])
            _recurrent_weight_grad(hn, y, h0_, dw_hh[2 * H:])
        if need_b_hh:
            db_hh = torch.cat([gates[:, :, :2 * H].sum((0, 1)), hn.sum((0, 1))])
        return dx, dh.unsqueeze(0), dw_ih, dw_hh, db_ih, db_hh


class _RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, relu):
        team = Team(w_hh, x.shape[1])
        y = _project(x, w_ih, b_ih.detach() + b_hh.detach())
        yn, h0n = y.numpy(), _first_state(h0).numpy()
        team.run(lambda w, pre, *t: kernels.rnn_forward(yn, w, h0n, relu, pre, *t),
                 x.shape[1], yn.dtype, 1)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, w_ih, w_hh, y)
        ctx.team, ctx.relu = team, relu
        return y, y[-1:].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, y = ctx.saved_tensors
        h0_, relu = _first_state(h0), ctx.relu
        dh = _state_grad(dh_n, h0_)
        da = torch.empty_like(y)
        yn, dyn, dhn, dan = y.numpy(), _output_grad(dy, y), dh.numpy(), da.numpy()
        ctx.team.run(lambda w, d, *t: kernels.rnn_backward(yn, w, dyn, dhn, relu, dan, d, *t),
                     y.shape[1], yn.dtype, 1, backward=True)
        need_x, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh, _ = ctx.needs_input_grad
        dx, dw_ih, db = _input_grads(da, x, w_ih, need_x, need_w_ih, need_b_ih or need_b_hh)
        dw_hh = None
        if need_w_hh:
            dw_hh = torch.empty_like(w_hh)
            _recurrent_weight_grad(da, y, h0_, dw_hh)
        db_ih = db if need_b_ih else None
        db_hh = db.clone() if need_b_hh else None
        return dx, dh.unsqueeze(0), dw_ih, dw_hh, db_ih, db_hh, None


# -- inference: no autograd, no stored gates -----------------------------------------------------

#: Rows (steps x batch) of a block of the input projection. Each block's GEMM passes over all
#: of W_ih once more (BLAS packs it per call), which 256 rows amortise to a few per cent.
_BLOCK_ROWS = 256


def _block_steps(T: int, B: int, gates: int) -> int:
    """Steps per input-projection block: _BLOCK_ROWS rows, but a buffer (k * B * gates * H) of
    at most twice y's T * B * H, which binds only where y is small (B * T < 128 * gates)."""
    return min(T, -(-_BLOCK_ROWS // B), max(1, 2 * T // gates))


def _records_graph(*tensors) -> bool:
    """Whether autograd records this call: grad mode on and some input requiring grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors if t is not None)


def _lstm_inference(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """y, h_T, c_T without autograd; the block buffers are all it needs beyond them."""
    T, B, _ = x.shape
    team, k = Team(w_hh, B), _block_steps(T, B, 4)
    y = x.new_empty(T, B, w_hh.shape[1])
    c = c0[0].clone(memory_format=torch.contiguous_format)   # c0 in, c_T out
    xn, yn, cn, h0n = _np(x.reshape(T * B, -1)), y.numpy(), c.numpy(), _first_state(h0).numpy()
    w_ihn, bias = _np(w_ih), _np(b_ih + b_hh)
    team.run(lambda w, work, *t: kernels.lstm_inference(
        xn, w_ihn, bias, w, h0n, cn, yn, work, *t), B, yn.dtype, 4, block_steps=k)
    return y, y[-1:].clone(), c.unsqueeze(0)


def _gru_inference(x, h0, w_ih, w_hh, b_ih, b_hh):
    """y, h_T without autograd; the block buffers are all it needs beyond them."""
    T, B, _ = x.shape
    team, k = Team(w_hh, B), _block_steps(T, B, 3)
    y = x.new_empty(T, B, w_hh.shape[1])
    xn, yn, h0n = _np(x.reshape(T * B, -1)), y.numpy(), _first_state(h0).numpy()
    w_ihn, b_ihn, b_hhn = _np(w_ih), _np(b_ih), _np(b_hh)
    team.run(lambda w, work, *t: kernels.gru_inference(
        xn, w_ihn, b_ihn, w, b_hhn, h0n, yn, work, *t), B, yn.dtype, 3, block_steps=k)
    return y, y[-1:].clone()


class NumbaLayer(RecurrentLayer):
    """One-layer, time-major LSTM / GRU / RNN on the numba kernels (CPU, float32 or float64)."""

    def __init__(self, cell, input_size, hidden_size, device, dtype):
        super().__init__()
        self.impl_name = "numba"
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.init_parameters(device, dtype)

    def run(self, x, h0, c0):
        params = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        inference = not _records_graph(x, h0, c0, *params)
        if self.cell == "lstm":
            if inference:
                return _lstm_inference(x, h0, c0, *params)
            return _LSTMFunction.apply(x, h0, c0, *params)
        if self.cell == "gru":
            fn = _gru_inference if inference else _GRUFunction.apply
            y, h = fn(x, h0, *params)
        else:
            # Its forward stores nothing but y, which it projects into: inference as it is.
            y, h = _RNNFunction.apply(x, h0, *params, self.cell == "rnn_relu")
        return y, h, None


def build(cell, input_size, hidden_size, device, dtype):
    return NumbaLayer(cell, input_size, hidden_size, device, dtype)
