"""What a case costs in theory: its GEMM FLOPs and the bytes BPTT must keep.

FLOPs count the matrix products, a multiply-add as 2. With G gate blocks (lstm 4, gru 3,
rnn_* 1), N the real tokens (the sum of the B sequence lengths; T B when all are T long),
D directions and L layers, per direction of layer l with input size I_l (I for l = 0, D H
above, where the layer below hands up both directions side by side)::

    forward    F_l = 2 N G H (I_l + H)        x_t W_ih^T and h_{t-1} W_hh^T, every step
    training   3 F_l - 2 B G H^2              forward + backward

    total      D sum_l F_l (forward), D sum_l (3 F_l - 2 B G H^2) (training)

The backward products are dW_ih and dx (2 N G H I_l each; layer 0's dx too, since the input
requires grad), dW_hh (2 N G H^2) and dh_{t-1} = dgates_t W_hh for every step but each
sequence's first (2 (N - B) G H^2): the initial state of a benchmark call needs no gradient.
A reverse direction runs each sequence backwards within its own length, so the count is the
same. The elementwise gate math, some 10-20 operations per hidden unit and step, is left
out: it is O(N H) against the products' O(N G H (I + H)), and it is not what a GEMM peak
bounds.

Bytes BPTT must keep (the yardstick the measured peak memory is set beside)::

    training   D L N H K x itemsize           every layer's and direction's activations
                                              and states at every real step: K = 6 for
                                              lstm (i, f, g, o, c, h), 4 for gru (r, z, n,
                                              h), 1 for rnn_* (its one activation is h)
    inference  N D H x itemsize               the output sequence itself

For gru this is the minimum: an implementation may also keep the recurrent part of the
n gate (W_hn h + b_hn, one more H per step) rather than recompute it.
"""

from __future__ import annotations

from bench.speed.cases import Case
from bench.workload import DTYPES
from impls import GATES

#: K of the docstring: vectors of H that BPTT keeps per step, layer and direction.
KEPT_PER_STEP = {"lstm": 6, "gru": 4, "rnn_tanh": 1, "rnn_relu": 1}


def flops(case: Case) -> int:
    """GEMM FLOPs of one call (formula in the module docstring)."""
    G, H, N = GATES[case.cell], case.H, case.tokens
    D = 2 if case.bidirectional else 1
    total = 0
    for layer in range(case.layers):
        inputs = case.I if layer == 0 else D * H
        forward = 2 * N * G * H * (inputs + H)
        total += D * (forward if case.mode == "inference"
                      else 3 * forward - 2 * case.B * G * H * H)
    return total


def must_keep_bytes(case: Case) -> int:
    """Bytes a call cannot do without (formula in the module docstring)."""
    D = 2 if case.bidirectional else 1
    if case.mode == "training":
        per_token = D * case.layers * case.H * KEPT_PER_STEP[case.cell]
    else:
        per_token = D * case.H
    return case.tokens * per_token * DTYPES[case.dtype].itemsize
