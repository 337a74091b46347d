"""What a case costs in theory: its GEMM FLOPs and the bytes BPTT must keep.

FLOPs count the matrix products, a multiply-add as 2. With G gate blocks (lstm 4, gru 3,
rnn_* 1)::

    forward    F = 2 T B G H (I + H)          x_t W_ih^T and h_{t-1} W_hh^T, every step
    training   3 F - 2 B G H^2                forward + backward

The backward products are dW_ih and dx (2 T B G H I each), dW_hh (2 T B G H^2) and
dh_{t-1} = dgates_t W_hh for t = 1..T-1 (2 (T-1) B G H^2): the initial state of a benchmark
call needs no gradient. The elementwise gate math, some 10-20 operations per hidden unit and
step, is left out: it is O(T B H) against the products' O(T B G H (I + H)), and it is not
what a GEMM peak bounds.

Bytes BPTT must keep (the yardstick the measured peak memory is set beside)::

    training   T B H (G + S) x itemsize       every step's gate activations and states,
                                              S = 2 for lstm (h, c), 1 otherwise
    inference  T B H x itemsize               the output sequence itself

For gru this is the minimum: an implementation may also keep the recurrent part of the
n gate (W_hn h + b_hn, one more H per step) rather than recompute it.
"""

from __future__ import annotations

from bench.speed.cases import Case
from bench.workload import DTYPES
from impls import GATES


def flops(case: Case) -> int:
    """GEMM FLOPs of one call (formula in the module docstring)."""
    G = GATES[case.cell]
    forward = 2 * case.T * case.B * G * case.H * (case.I + case.H)
    if case.mode == "inference":
        return forward
    return 3 * forward - 2 * case.B * G * case.H * case.H


def must_keep_bytes(case: Case) -> int:
    """Bytes a call cannot do without (formula in the module docstring)."""
    per_step = case.B * case.H
    if case.mode == "training":
        states = 2 if case.cell == "lstm" else 1
        per_step *= GATES[case.cell] + states
    return case.T * per_step * DTYPES[case.dtype].itemsize
