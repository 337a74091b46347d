"""The `numba` layer: hand-written forward and BPTT kernels behind a `torch.autograd.Function`.

`NumbaLayer.run_direction` is one direction of one layer on PackedSequence's rows; the layers,
directions, dropout and layouts are `impls.layer`'s. A call that autograd records: the input
projection for all rows is one GEMM (before the kernel), the kernel runs the time loop over
the packed steps, each step on the rows of the sequences still running
(`impls.numba_kernels`), and in the backward the weight and input gradients are GEMMs over
all rows (torch, after the kernel). dW_hh = sum_t dH_t^T h_{t-1} pairs step t's rows with
the first of step t-1's: one GEMM per run of steps where both are contiguous, which for
equal lengths is two (step 0 with h0, the rest with y one step behind). Tensors reach the
kernels as `.numpy()` views, copied only when not contiguous.

Inference (grad mode off, or nothing requiring grad) skips autograd: an LSTM or GRU call runs
a kernel that projects the input a block of steps at a time and stores no gates, so it needs y
and a small block buffer, not the 5-6x y that training keeps for BPTT.

Projection (an LSTM with proj_size P): each step computes m_t = o tanh(c_t) (H) and the
state passed on, h_t = m_t W_hr^T (P); the forward keeps m for dW_hr = sum_t dh_t^T m_t, and
the backward feeds the cell dm = dh W_hr. Such a layer runs on a team of one thread: every
step's projection needs all units' m_t before the next step can start.

Threads: a large enough problem runs on a team of threads, as many as numba's thread count
for the calling thread (`numba.get_num_threads()`, which `numba.set_num_threads` lowers at
run time; NUMBA_NUM_THREADS, the cores by default, until then), each owning a block of hidden
units (see `impls.numba_kernels`); the calling thread is one of them, the others come from a
small pool, each bound to a CPU of its own while it runs (`run_members`). While a team runs,
the BLAS that the kernels' `np.dot` calls (scipy's) is held to one thread, so team size x
BLAS threads never exceeds numba's thread count, and no idle BLAS worker is left spinning
against torch's own threads. Where that BLAS's thread count cannot be set, the team is one
thread.

Memory: the backward overwrites the gate buffer with the gate gradients (that is what keeps
training memory at what BPTT must store) and drops the buffers when it returns. Each weight
W_hh has two packed copies (its members' rows, and their transpose) for as long as it lives
(`_PackedWeights`): twice W_hh, 2 MiB for an LSTM at H = 256. A second
backward through the same graph (`retain_graph=True`, gradcheck) recomputes them from the
saved inputs first, so it costs one more forward instead of memory held for a rare case.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import os
import threading

import numba
import numpy as np
import torch
from numba.np.ufunc import parallel as numba_parallel
from torch.autograd.function import once_differentiable
from torch.utils.weak import WeakIdKeyDictionary

from impls import numba_kernels as kernels
from impls.layer import GATES, RecurrentLayer


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only if it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _state_grad(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A private (B, .) copy of the gradient wrt a final state (zeros when it got none)."""
    if grad is None:
        return torch.zeros_like(like, memory_format=torch.contiguous_format)
    return grad.clone(memory_format=torch.contiguous_format)


def _output_grad(dy: torch.Tensor | None, y: torch.Tensor) -> np.ndarray:
    """dL/dy for the kernel; an empty (0, H_out) array tells it y received no gradient."""
    return _np(y.new_empty((0, y.shape[1])) if dy is None else dy)


def _projection(w_hr: torch.Tensor | None, c0: torch.Tensor) -> np.ndarray:
    """W_hr (P, H) for the kernels, or a (0, H) array: no projection."""
    return _np(w_hr) if w_hr is not None else c0.new_empty(0, c0.shape[1]).numpy()


def _bias(*biases: torch.Tensor | None, size: int, like: torch.Tensor) -> torch.Tensor:
    """The sum of the biases, or zeros without bias (bias=False)."""
    if biases[0] is None:
        return like.new_zeros(size)
    total = biases[0].detach()
    for b in biases[1:]:
        total = total + b.detach()
    return total


class Steps:
    """The packed layout's steps: sizes[t] rows from starts[t], as the kernels take them."""

    def __init__(self, batch_sizes: torch.Tensor):
        self.sizes = np.ascontiguousarray(batch_sizes.numpy(), dtype=np.int64)
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.batch, self.rows = int(self.sizes[0]), int(self.sizes.sum())
        # Equal lengths (every (T, B, I) input): the sequences end together, at the last step.
        self.equal_lengths = int(self.sizes[-1]) == self.batch
        if self.equal_lengths:
            self.last_rows = np.arange(self.rows - self.batch, self.rows)
        else:
            # A sequence's length: the steps whose size exceeds its index (sizes never grow).
            lengths = np.searchsorted(-self.sizes, -np.arange(self.batch), side="left")
            self.last_rows = self.starts[lengths - 1] + np.arange(self.batch)

    @property
    def count(self) -> int:
        return self.sizes.size

    def last(self, rows: torch.Tensor) -> torch.Tensor:
        """Each sequence's row at its own last step: the final state, (B, .), a new tensor."""
        return torch.from_numpy(rows.detach().numpy()[self.last_rows])

    @functools.cached_property
    def previous_runs(self) -> list[tuple[int, int, int]]:
        """(first row, end row, first previous row): runs of steps t >= 1 whose rows are
        contiguous and so are their previous rows, the first sizes[t] of step t-1. A run
        continues while the step before keeps its size: a new one begins at step 1 and after
        each change."""
        if self.count < 2:
            return []
        if self.equal_lengths:
            return [(self.batch, self.rows, 0)]
        begins = np.concatenate([[1], np.flatnonzero(np.diff(self.sizes[:-1])) + 2])
        ends = np.append(begins[1:], self.count) - 1
        return list(zip(self.starts[begins].tolist(),
                        (self.starts[ends] + self.sizes[ends]).tolist(),
                        self.starts[begins - 1].tolist()))


def _recurrent_weight_grad(steps: Steps, d_rec: torch.Tensor, y: torch.Tensor,
                           h0: torch.Tensor, out: torch.Tensor) -> None:
    """out = sum_t d_rec_t^T h_{t-1}: step 0 with h0, then a GEMM per run of `previous_runs`."""
    torch.mm(d_rec[:steps.batch].t(), h0, out=out)
    for r0, r1, p0 in steps.previous_runs:
        out.addmm_(d_rec[r0:r1].t(), y[p0:p0 + r1 - r0])


def _input_grads(d_in: torch.Tensor, x: torch.Tensor, w_ih: torch.Tensor, need_x: bool,
                 need_w: bool, need_b: bool):
    """(dx, dW_ih, db_ih) from the gate gradients seen by the input projection, (N, G)."""
    dx = d_in @ w_ih if need_x else None
    dw_ih = d_in.t() @ x if need_w else None
    db_ih = d_in.sum(0) if need_b else None
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

def _find_sched_getcpu():
    """glibc's sched_getcpu (the CPU the calling thread runs on), or None."""
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [], ctypes.c_int
    return fn


_sched_getcpu = _find_sched_getcpu()


#: Work below which an extra thread costs more than it saves: multiply-adds of a whole GEMM
#: split by rows, and of one step's recurrent product for a team (which also meets at a
#: barrier every step: at B = 1 a team of two paid off at H = 256, 2**18, and not at
#: H = 128, measured on 2 cores).
_MIN_PARALLEL_MACS = 2**22
_MIN_STEP_MACS_FOR_TEAM = 2**17
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


def team_size(cell: str, batch: int, hidden_size: int, proj_size: int = 0) -> int:
    """Threads that run the time loop of a `cell` call with this batch and hidden size, now."""
    if proj_size:
        return 1
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


def _cpus_for(members: int) -> list[int] | None:
    """A distinct CPU for each of `members` threads, the calling thread's own first; None
    where there are not enough CPUs allowed or no way to bind a thread to one."""
    if not hasattr(os, "sched_setaffinity") or _sched_getcpu is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    here = _sched_getcpu()
    if len(allowed) < members or here not in allowed:
        return None
    return [here] + [c for c in allowed if c != here][:members - 1]


def _bound_to(cpu: int | None, member) -> None:
    """Run `member` with this thread bound to `cpu`, its CPUs as before afterwards (unbound
    where the system refuses: binding only makes it faster)."""
    before = None
    if cpu is not None:
        try:
            before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu})
        except OSError:
            before = None
    try:
        member()
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


def run_members(members, sync: np.ndarray) -> None:
    """Run the callables at once, the first in this thread, with BLAS held to one thread.

    Each member is bound to a CPU of its own while it runs: a woken thread starts on its
    waker's CPU, and two members sharing one took turns at every barrier until the scheduler
    moved one (measured after 5 ms idle, B = 1: 1.0 ms of 3.2 spent in barriers, 0.2 bound).
    A member that raises sets the abort flag in `sync`, which releases the others from a
    barrier.
    """
    def guarded(cpu, member):
        try:
            _bound_to(cpu, member)
        except BaseException:
            sync[kernels.SYNC_ABORT] = 1
            raise

    with _BLAS:
        if len(members) == 1:
            members[0]()
            return
        cpus = _cpus_for(len(members)) or [None] * len(members)
        others = [_POOL.get(len(members) - 1).submit(guarded, cpu, m)
                  for cpu, m in zip(cpus[1:], members[1:])]
        try:
            guarded(cpus[0], members[0])
        finally:
            for future in others:
                future.result()


def _project(x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x W_ih^T + bias for all rows at once: (N, G), a new contiguous buffer.

    In numba's BLAS, not torch's: a torch GEMM leaves its OpenMP threads spinning for
    milliseconds, against the team that runs right after it (measured 4x slower at B=1 on
    this 2-core machine).
    """
    rows, G = x.shape[0], w_ih.shape[0]
    x2d, w_t, b = _np(x), _np(w_ih).T, _np(bias)
    out = x.new_empty(rows, G)
    out2d = out.numpy()
    n = _threads(rows) if rows * G * x.shape[1] >= _MIN_PARALLEL_MACS else 1
    edges = [rows * k // n for k in range(n + 1)]
    run_members([lambda r0=r0, r1=r1: kernels.project(x2d, w_t, b, out2d, r0, r1)
                 for r0, r1 in zip(edges[:-1], edges[1:])],
                np.zeros(kernels.SYNC_SLOTS, dtype=np.int64))
    return out


class _PackedWeights:
    """Each member's rows of a W_hh, packed as rows and as their transpose, kept between calls.

    Kept with the weight tensor (weakly: they go when it goes) for one split of its units; a
    member checks them against W_hh at every call (`kernels.refresh_packed`), so an update of
    the weights in place, through `.data` or not, is never missed. A call leases them: a second
    call on the same weights while one runs (from another thread) packs into its own arrays.
    """

    def __init__(self):
        self._entries = WeakIdKeyDictionary()
        self._lock = threading.Lock()

    @staticmethod
    def _arrays(w: np.ndarray, bounds) -> list[tuple[np.ndarray, np.ndarray]]:
        # NaN never equals W_hh's values: the first refresh packs.
        G, H_out = w.shape
        gates = G // bounds[-1][1]
        return [(np.full((gates * (u1 - u0), H_out), np.nan, w.dtype),
                 np.full((H_out, gates * (u1 - u0)), np.nan, w.dtype)) for u0, u1 in bounds]

    @contextlib.contextmanager
    def lease(self, w_hh: torch.Tensor, w: np.ndarray, bounds):
        """(rows, columns) per member for W_hh (tensor) whose values are `w` (its array)."""
        key = (w.shape, w.dtype, tuple(bounds))
        with self._lock:
            entry = self._entries.get(w_hh)
            if entry is None or entry["key"] != key:
                entry = {"key": key, "arrays": self._arrays(w, bounds), "busy": False}
                self._entries[w_hh] = entry
            busy, entry["busy"] = entry["busy"], True
        if busy:
            yield self._arrays(w, bounds)
            return
        try:
            yield entry["arrays"]
        finally:
            entry["busy"] = False


_PACKED = _PackedWeights()


class Team:
    """How a call splits its hidden units among the members that run its time loop.

    `alone`: one thread whatever the size (a projected LSTM, see the module docstring).
    """

    def __init__(self, w_hh: torch.Tensor, hidden_size: int, batch: int, *,
                 alone: bool = False):
        G, H_out = w_hh.shape
        H = hidden_size
        size = 1 if alone else _team_size(batch * G * H_out, H)
        # Block edges on multiples of 8 units, so that the vector loops start aligned.
        edges = [min(H, round(H * k / size / 8) * 8) for k in range(size)] + [H]
        self.bounds = list(zip(edges[:-1], edges[1:]))
        self._w_hh = w_hh
        self._partials_shape = (size, 2, batch, H_out)

    @property
    def size(self) -> int:
        return len(self.bounds)

    def run(self, call, scratch, backward: bool = False):
        """``call(w, *scratch arrays, u0, u1, sync, size[, k, partials])`` once per member, all
        at once; w: the member's rows of W_hh packed, transposed for a forward.

        scratch(n): the shapes of a member's scratch arrays, for its n units. A backward member
        also gets its index k and the shared partials (size, 2, B, H_out), where it leaves its
        share of dh_{t-1}.
        """
        w = _np(self._w_hh)
        sync = np.zeros(kernels.SYNC_SLOTS, dtype=np.int64)
        partials = np.empty(self._partials_shape, w.dtype) if backward else None
        with _PACKED.lease(self._w_hh, w, self.bounds) as packed:
            def member(k):
                u0, u1 = self.bounds[k]
                rows, columns = packed[k]
                kernels.refresh_packed(w, self.bounds[-1][1], u0, u1, rows, columns)
                arrays = [np.empty(shape, w.dtype) for shape in scratch(u1 - u0)]
                call(rows if backward else columns, *arrays, u0, u1, sync, self.size,
                     *((k, partials) if backward else ()))

            run_members([lambda k=k: member(k) for k in range(self.size)], sync)


# -- the autograd functions ----------------------------------------------------------------------


def _lstm(steps, team, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
    """The forward: y, and for the backward the activated gates, c and (projected) m."""
    gates = _project(x, w_ih, _bias(b_ih, b_hh, size=w_ih.shape[0], like=x))
    y = x.new_empty(steps.rows, h0.shape[1])
    c = x.new_empty(steps.rows, c0.shape[1])
    m = None if w_hr is None else torch.empty_like(c)
    g, h0n, c0n, yn, cn = gates.numpy(), _np(h0), _np(c0), y.numpy(), c.numpy()
    mn, w_hrn = yn if m is None else m.numpy(), _projection(w_hr, c0)
    team.run(lambda w, *t: kernels.lstm_forward(steps.starts, steps.sizes, g, w, w_hrn, h0n,
                                                c0n, yn, cn, mn, *t),
             lambda n: [(steps.batch, 4 * n)])
    return y, gates, c, m


def _gru(steps, team, x, h0, w_ih, w_hh, b_ih, b_hh):
    """The forward: y, and for the backward the activated gates and hn (each (N, .))."""
    G = w_ih.shape[0]
    gates = _project(x, w_ih, _bias(b_ih, size=G, like=x))
    y = x.new_empty(steps.rows, h0.shape[1])
    hn = torch.empty_like(y)
    g, h0n, hnn, yn = gates.numpy(), _np(h0), hn.numpy(), y.numpy()
    b_hhn = _np(_bias(b_hh, size=G, like=x))
    team.run(lambda w, *t: kernels.gru_forward(steps.starts, steps.sizes, g, w, b_hhn, h0n,
                                               hnn, yn, *t),
             lambda n: [(steps.batch, 3 * n)])
    return y, gates, hn


def _lstm_bptt(steps, team, gates, c, c0, w_hr, dy, dh, dc, dh_rows):
    """The backward loop: gates becomes dX; dh, dc become the gradients wrt h0, c0; dh_rows
    (projected) receives each step's dh."""
    g, cn, c0n, dhn, dcn = gates.numpy(), c.numpy(), _np(c0), dh.numpy(), dc.numpy()
    w_hrn, dh_rowsn = _projection(w_hr, c0), dh_rows.numpy()
    B, H = c0.shape
    team.run(lambda w, *t: kernels.lstm_backward(steps.starts, steps.sizes, g, cn, c0n, w,
                                                 w_hrn, dy, dhn, dcn, dh_rowsn, *t),
             lambda n: [(B, 4 * n), (B if w_hr is not None else 0, H)], backward=True)


def _gru_bptt(steps, team, gates, hn, y, h0, dy, dh):
    """The backward loop: gates becomes dX, hn dH's n block; dh the gradient wrt h0."""
    g, hnn, yn, h0n, dhn = gates.numpy(), hn.numpy(), y.numpy(), _np(h0), dh.numpy()
    team.run(lambda w, *t: kernels.gru_backward(steps.starts, steps.sizes, g, hnn, yn, h0n, w,
                                                dy, dhn, *t),
             lambda n: [(steps.batch, 3 * n), (steps.batch, n)], backward=True)


class _LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, steps, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        team = Team(w_hh, c0.shape[1], steps.batch, alone=w_hr is not None)
        y, gates, c, m = _lstm(steps, team, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y)
        ctx.steps, ctx.team, ctx.buffers = steps, team, (gates, c, m)
        return y, steps.last(y), steps.last(c)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y = ctx.saved_tensors
        steps, team = ctx.steps, ctx.team
        gates, c, m = ctx.buffers or _lstm(steps, team, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                           w_hr)[1:]
        ctx.buffers = None
        dh, dc = _state_grad(dh_n, h0), _state_grad(dc_n, c0)
        dh_rows = y.new_empty(0 if w_hr is None else steps.rows, y.shape[1])
        _lstm_bptt(steps, team, gates, c, c0, w_hr, _output_grad(dy, y), dh, dc, dh_rows)
        del c  # no longer needed: free it before the GEMMs allocate
        _, need_x, _, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh, need_w_hr = \
            ctx.needs_input_grad
        dx, dw_ih, db = _input_grads(gates, x, w_ih, need_x, need_w_ih, need_b_ih or need_b_hh)
        dw_hh = dw_hr = None
        if need_w_hh:
            dw_hh = torch.empty_like(w_hh)
            _recurrent_weight_grad(steps, gates, y, h0, dw_hh)
        if need_w_hr:
            dw_hr = dh_rows.t() @ m
        # b_ih and b_hh enter the same sum: equal gradients, in separate tensors.
        db_ih = db if need_b_ih else None
        db_hh = db.clone() if need_b_hh else None
        return None, dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_hr


class _GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, steps, x, h0, w_ih, w_hh, b_ih, b_hh):
        team = Team(w_hh, h0.shape[1], steps.batch)
        y, gates, hn = _gru(steps, team, x, h0, w_ih, w_hh, b_ih, b_hh)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, y)
        ctx.steps, ctx.team, ctx.buffers = steps, team, (gates, hn)
        return y, steps.last(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, b_ih, b_hh, y = ctx.saved_tensors
        steps, team = ctx.steps, ctx.team
        gates, hn = ctx.buffers or _gru(steps, team, x, h0, w_ih, w_hh, b_ih, b_hh)[1:]
        ctx.buffers = None
        dh = _state_grad(dh_n, h0)
        _gru_bptt(steps, team, gates, hn, y, h0, _output_grad(dy, y), dh)
        _, need_x, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh = ctx.needs_input_grad
        dx, dw_ih, db_ih = _input_grads(gates, x, w_ih, need_x, need_w_ih, need_b_ih)
        H = hn.shape[1]
        dw_hh = db_hh = None
        # dH = (dX's r and z blocks, hn's buffer now holding the n block).
        if need_w_hh:
            dw_hh = torch.empty_like(w_hh)
            _recurrent_weight_grad(steps, gates[:, :2 * H], y, h0, dw_hh[:2 * H])
            _recurrent_weight_grad(steps, hn, y, h0, dw_hh[2 * H:])
        if need_b_hh:
            db_hh = torch.cat([gates[:, :2 * H].sum(0), hn.sum(0)])
        return None, dx, dh, dw_ih, dw_hh, db_ih, db_hh


class _RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, steps, x, h0, w_ih, w_hh, b_ih, b_hh, is_relu):
        team = Team(w_hh, h0.shape[1], steps.batch)
        y = _project(x, w_ih, _bias(b_ih, b_hh, size=w_ih.shape[0], like=x))
        yn, h0n = y.numpy(), _np(h0)
        team.run(lambda w, *t: kernels.rnn_forward(steps.starts, steps.sizes, yn, w, h0n,
                                                   is_relu, *t),
                 lambda n: [(steps.batch, n)])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, w_ih, w_hh, y)
        ctx.steps, ctx.team, ctx.is_relu = steps, team, is_relu
        return y, steps.last(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, y = ctx.saved_tensors
        steps, is_relu = ctx.steps, ctx.is_relu
        dh = _state_grad(dh_n, h0)
        da = torch.empty_like(y)
        yn, dyn, dhn, dan = y.numpy(), _output_grad(dy, y), dh.numpy(), da.numpy()
        ctx.team.run(lambda w, *t: kernels.rnn_backward(steps.starts, steps.sizes, yn, w, dyn,
                                                        dhn, is_relu, dan, *t),
                     lambda n: [(steps.batch, n)], backward=True)
        _, need_x, _, need_w_ih, need_w_hh, need_b_ih, need_b_hh, _ = ctx.needs_input_grad
        dx, dw_ih, db = _input_grads(da, x, w_ih, need_x, need_w_ih, need_b_ih or need_b_hh)
        dw_hh = None
        if need_w_hh:
            dw_hh = torch.empty_like(w_hh)
            _recurrent_weight_grad(steps, da, y, h0, dw_hh)
        db_ih = db if need_b_ih else None
        db_hh = db.clone() if need_b_hh else None
        return None, dx, dh, dw_ih, dw_hh, db_ih, db_hh, None


# -- inference: no autograd, no stored gates -----------------------------------------------------

#: Rows of a block of the input projection, at most. Each block's GEMM passes over all of W_ih
#: once more (BLAS packs it per call), which 256 rows amortise to a few per cent; a block buffer
#: of 256 rows is 1 MiB at H = 256 (float32, LSTM), whatever the sequence's length.
_BLOCK_ROWS = 256


def _block_steps(steps: Steps) -> int:
    """Steps per input-projection block: as many as _BLOCK_ROWS rows hold (at least one).

    At B = 1 that is the whole of a sequence up to 256 steps: one GEMM per gate, 20% faster than
    two of half the rows (measured at T = 100, H = 256).
    """
    return min(steps.count, -(-_BLOCK_ROWS // steps.batch))


def _records_graph(*tensors) -> bool:
    """Whether autograd records this call: grad mode on and some input requiring grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors if t is not None)


def _shared_projection(team: Team, steps: Steps, gates: int, like: np.ndarray):
    """The block buffer the team projects into, the members' units, and steps per block."""
    k = _block_steps(steps)
    n_max = max(u1 - u0 for u0, u1 in team.bounds)
    x_proj = np.empty((gates * team.size, k * steps.batch * n_max), like.dtype)
    return x_proj, np.array(team.bounds, dtype=np.int64), k


def _lstm_inference(steps, x, h0, c0, w):
    """y, h_n, c_n without autograd; the block buffer is all it needs beyond them."""
    team = Team(w.w_hh, c0.shape[1], steps.batch, alone=w.w_hr is not None)
    y = x.new_empty(steps.rows, h0.shape[1])
    c = c0.clone(memory_format=torch.contiguous_format)   # c0 in, c_n out
    xn, w_ihn, h0n, cn, yn = _np(x), _np(w.w_ih), _np(h0), c.numpy(), y.numpy()
    bias, w_hrn = _np(_bias(w.b_ih, w.b_hh, size=w.w_ih.shape[0], like=x)), _projection(w.w_hr, c0)
    x_proj, bounds, k = _shared_projection(team, steps, 4, xn)
    B, H = steps.batch, c0.shape[1]
    team.run(lambda w_cols, *t: kernels.lstm_inference(
        steps.starts, steps.sizes, xn, w_ihn, bias, w_cols, w_hrn, h0n, cn, yn, x_proj, bounds,
        k, *t),
        lambda n: [(B, 4 * n), (B if w.w_hr is not None else 0, H)])
    return y, steps.last(y), c


def _gru_inference(steps, x, h0, w):
    """y, h_n without autograd; the block buffer is all it needs beyond them."""
    G = w.w_ih.shape[0]
    team = Team(w.w_hh, h0.shape[1], steps.batch)
    y = x.new_empty(steps.rows, h0.shape[1])
    xn, w_ihn, h0n, yn = _np(x), _np(w.w_ih), _np(h0), y.numpy()
    b_ihn, b_hhn = _np(_bias(w.b_ih, size=G, like=x)), _np(_bias(w.b_hh, size=G, like=x))
    x_proj, bounds, k = _shared_projection(team, steps, 3, xn)
    team.run(lambda w_cols, *t: kernels.gru_inference(
        steps.starts, steps.sizes, xn, w_ihn, b_ihn, w_cols, b_hhn, h0n, yn, x_proj, bounds, k,
        *t),
        lambda n: [(steps.batch, 3 * n)])
    return y, steps.last(y)


class NumbaLayer(RecurrentLayer):
    """LSTM / GRU / RNN on the numba kernels (CPU, float32 or float64), nn's drop-in."""

    impl_name = "numba"

    def run_direction(self, x, batch_sizes, h0, c0, w):
        steps = Steps(batch_sizes)
        inference = not _records_graph(x, h0, c0, *w)
        if self.cell == "lstm":
            if inference:
                return _lstm_inference(steps, x, h0, c0, w)
            return _LSTMFunction.apply(steps, x, h0, c0, *w)
        if self.cell == "gru":
            if inference:
                y, h = _gru_inference(steps, x, h0, w)
            else:
                y, h = _GRUFunction.apply(steps, x, h0, *w[:4])
        else:
            # Its forward stores nothing but y, which it projects into: inference as it is.
            y, h = _RNNFunction.apply(steps, x, h0, *w[:4], self.cell == "rnn_relu")
        return y, h, None


#: The registry's factory, "impls.numba_rnn:build".
build = NumbaLayer
