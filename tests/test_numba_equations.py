"""The numba kernels' element maths against torch autograd, one scalar at a time, in float64.

Each function that the kernels inline (`impls.numba_kernels.lstm_cell`, ...) is compared with
its equation written in torch: the values, and the gradients with autograd's. The arguments
are random, and include saturated pre-activations, where sigmoid and tanh are flat and their
derivatives underflow.
"""

import math

import numpy as np
import pytest
import torch

from impls import numba_kernels as K

DRAWS = 300


def _draws(count, seed):
    """`DRAWS` tuples of `count` scalars: mostly N(0, 2), one in four saturated (|a| 15..40)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 2.0, (DRAWS, count))
    saturated = rng.random((DRAWS, count)) < 0.25
    values[saturated] = rng.choice([-1.0, 1.0], saturated.sum()) * rng.uniform(15, 40,
                                                                                saturated.sum())
    return [tuple(float(v) for v in row) for row in values]


def _leaves(*values):
    return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]


def _assert_close(got, expected, what):
    for k, (g, e) in enumerate(zip(got, expected, strict=True)):
        e = float(torch.as_tensor(e).detach())
        assert math.isclose(g, e, rel_tol=1e-13, abs_tol=1e-15), f"{what}[{k}]: {g!r} != {e!r}"


def test_lstm_cell_and_its_gradient_match_autograd():
    for a_i, a_f, a_g, a_o, c_prev, dh, dc in _draws(7, seed=1):
        leaves = _leaves(a_i, a_f, a_g, a_o, c_prev)
        ai, af, ag, ao, cp = leaves
        i, f, g, o = torch.sigmoid(ai), torch.sigmoid(af), torch.tanh(ag), torch.sigmoid(ao)
        c = f * cp + i * g
        h = o * torch.tanh(c)
        got = K.lstm_cell(a_i, a_f, a_g, a_o, c_prev)
        _assert_close(got, (i, f, g, o, c, h), "lstm_cell")
        # dc: what reaches c_t through step t+1, besides the path through h_t.
        expected = torch.autograd.grad(dh * h + dc * c, leaves)
        grads = K.lstm_cell_grad(dh, dc, *got[:5], c_prev)
        _assert_close(grads, expected, "lstm_cell_grad (da_i, da_f, da_g, da_o, dc_prev)")


def test_gru_cell_and_its_gradient_match_autograd():
    for a_r, a_z, a_xn, hn, h_prev, dh in _draws(6, seed=2):
        leaves = _leaves(a_r, a_z, a_xn, hn, h_prev)
        ar, az, axn, hn_t, hp = leaves
        r, z = torch.sigmoid(ar), torch.sigmoid(az)
        n = torch.tanh(axn + r * hn_t)
        h = (1 - z) * n + z * hp          # PyTorch's form of the same update
        got = K.gru_cell(a_r, a_z, a_xn, hn, h_prev)
        _assert_close(got, (r, z, n, h), "gru_cell")
        expected = torch.autograd.grad(dh * h, leaves)
        grads = K.gru_cell_grad(dh, *got[:3], hn, h_prev)
        _assert_close(grads, expected, "gru_cell_grad (da_r, da_z, da_n, dhn, dh_prev direct)")


def test_tanh_and_its_derivative_from_the_output_match_autograd():
    for a, dh in _draws(2, seed=3):
        (leaf,) = _leaves(a)
        h = torch.tanh(leaf)
        _assert_close([K.tanh(a), dh * K.dtanh(K.tanh(a))],
                      [h, *torch.autograd.grad(dh * h, leaf)], "tanh, dh tanh'")


def test_sigmoid_and_its_derivative_from_the_output_match_autograd():
    for a, ds in _draws(2, seed=4):
        (leaf,) = _leaves(a)
        s = torch.sigmoid(leaf)
        _assert_close([ds * K.dsigmoid(s.item())], torch.autograd.grad(ds * s, leaf),
                      "ds sigmoid'")


@pytest.mark.parametrize("a", [-3.5, -0.0, 0.0, 1e-300, 2.25, 40.0])
def test_relu_and_its_gradient_match_autograd(a):
    (leaf,) = _leaves(a)
    h = torch.relu(leaf)
    dh = 1.75
    _assert_close([K.relu(a), K.relu_grad(dh, K.relu(a))],
                  [h, *torch.autograd.grad(dh * h, leaf)], "relu, relu_grad")


def test_relu_keeps_nan_as_torch_does():
    assert math.isnan(K.relu(math.nan))
