"""Every implementation x every cell agrees with the oracles, forward and backward.

float64: against `reference` (the equations, one step at a time).
float32: against `torch.nn` itself in float32.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import impls

from oracle import DEVICES, assert_match, make_inputs, run

CASES = [(name, cell) for name in impls.names() for cell in sorted(impls.get(name).cells)]

shapes = st.fixed_dictionaries({
    "T": st.integers(1, 40), "B": st.integers(1, 9), "I": st.integers(1, 33),
    "H": st.integers(1, 40), "with_state": st.booleans(), "seed": st.integers(0, 2**31 - 1),
})


def _torch_nn(cell, I, H, device, dtype):
    if cell == "lstm":
        return torch.nn.LSTM(I, H, device=device, dtype=dtype)
    if cell == "gru":
        return torch.nn.GRU(I, H, device=device, dtype=dtype)
    return torch.nn.RNN(I, H, nonlinearity=cell.removeprefix("rnn_"), device=device, dtype=dtype)


def _skip_unsupported(impl, cell, device, dtype):
    if not impl.supports(cell, device, dtype):
        pytest.skip(f"{impl.name} does not support {cell} on {device} in {dtype}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", CASES)
@settings(max_examples=10)
@given(case=shapes)
def test_float64_matches_reference(name, cell, device, case):
    impl = impls.get(name)
    _skip_unsupported(impl, cell, device, torch.float64)
    weights, x, state, upstream = make_inputs(cell, **case)
    dims = dict(input_size=case["I"], hidden_size=case["H"], device=device)
    ref = impls.get("reference").build(cell, dtype=torch.float64, **dims)
    layer = impl.build(cell, dtype=torch.float64, **dims)
    expected = run(ref, cell, weights, x, state, upstream, torch.float64, device)
    got = run(layer, cell, weights, x, state, upstream, torch.float64, device)
    assert_match(got, expected, torch.float64, f"{name} {cell} {case}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", CASES)
@settings(max_examples=10)
@given(case=shapes)
def test_float32_matches_torch_nn(name, cell, device, case):
    impl = impls.get(name)
    _skip_unsupported(impl, cell, device, torch.float32)
    weights, x, state, upstream = make_inputs(cell, **case)
    oracle = _torch_nn(cell, case["I"], case["H"], device, torch.float32)
    layer = impl.build(cell, input_size=case["I"], hidden_size=case["H"], device=device,
                       dtype=torch.float32)
    expected = run(oracle, cell, weights, x, state, upstream, torch.float32, device)
    got = run(layer, cell, weights, x, state, upstream, torch.float32, device)
    assert_match(got, expected, torch.float32, f"{name} {cell} {case}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", CASES)
@pytest.mark.parametrize("T,B", [(1, 1), (1, 5), (7, 1)])
def test_edge_shapes_and_non_contiguous_input(name, cell, T, B, device):
    impl = impls.get(name)
    dtype = torch.float64
    _skip_unsupported(impl, cell, device, dtype)
    I, H = 6, 5
    weights, x, state, upstream = make_inputs(cell, T, B, I, H, True, seed=T * 10 + B)
    # Non-contiguous: a transposed batch-major buffer, and every other feature column.
    wide = torch.randn(B, T, 2 * I, dtype=torch.float64).transpose(0, 1)[:, :, ::2]
    wide.copy_(x)
    assert not wide.is_contiguous()
    dims = dict(input_size=I, hidden_size=H, device=device, dtype=dtype)
    expected = run(impls.get("reference").build(cell, **dims), cell, weights, x, state,
                   upstream, dtype, device)
    got = run(impl.build(cell, **dims), cell, weights, wide, state, upstream, dtype, device)
    assert_match(got, expected, dtype, f"{name} {cell} T={T} B={B} non-contiguous")
