"""Run a layer on given weights and inputs and collect outputs and every gradient.

An input is a (T, B, I) tensor, (B, T, I) with `batch_first`, an unbatched (T, I) tensor, or
a PackedSequence of B sequences of unsorted lengths; the layer is built with any of nn's
options. Everything is made in float64 on the CPU and cast for the layer under test.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_sequence

import impls

#: Implementations that compile a program for each new shape (seconds each on 2 cores): the
#: random cases draw fewer examples for them; the pinned cases are the same for all.
COMPILING = {"compiled", "jax"}

#: Parametrize over this: CUDA variants run where a GPU is visible and skip cleanly elsewhere.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible"),
    ]),
]

#: (rtol, atol) per dtype, for outputs and for gradients. float64 is compared with the
#: float64 reference (rounding only); float32 with torch.nn in float32 (accumulated error
#: over up to 40 steps and 3 layers, and T*B summed terms in the weight gradients).
TOLERANCES = {
    torch.float64: {"out": (1e-9, 1e-10), "grad": (1e-8, 1e-9)},
    torch.float32: {"out": (1e-4, 2e-5), "grad": (1e-3, 1e-4)},
}

#: The input layouts nn accepts.
LAYOUTS = ("batch", "unbatched", "packed")


def torch_nn(cell, input_size, hidden_size, **options):
    """torch.nn's own module for `cell`, with nn's options (device, dtype among them)."""
    if cell == "lstm":
        return torch.nn.LSTM(input_size, hidden_size, **options)
    if cell == "gru":
        return torch.nn.GRU(input_size, hidden_size, **options)
    return torch.nn.RNN(input_size, hidden_size, nonlinearity=cell.removeprefix("rnn_"),
                        **options)


def make_inputs(cell, T, B, I, H, with_state, seed, *, layout="batch", lengths=None,
                num_layers=1, bias=True, batch_first=False, bidirectional=False, proj_size=0):
    """float64 weights (PyTorch's init, by nn's names), input, optional initial state and
    upstream gradients for y and each final state, for a layer built with these options.

    `layout` "packed" packs B sequences of `lengths` (any order, each in 1..T) unsorted.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    shapes = impls.parameter_shapes(cell, I, H, num_layers=num_layers, bias=bias,
                                    bidirectional=bidirectional, proj_size=proj_size)
    weights = {name: (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) / H ** 0.5
               for name, shape in shapes.items()}
    k, h_out = (1 + bidirectional) * num_layers, proj_size or H
    out = (1 + bidirectional) * h_out
    if layout == "packed":
        assert len(lengths) == B and all(1 <= n <= T for n in lengths)
        x = pack_sequence([randn(n, I) for n in lengths], enforce_sorted=False)
        y_shape = (x.data.shape[0], out)
    elif layout == "unbatched":
        x, y_shape = randn(T, I), (T, out)
    else:
        x = randn(B, T, I) if batch_first else randn(T, B, I)
        y_shape = x.shape[:2] + (out,)
    sizes = [h_out, H] if cell == "lstm" else [h_out]
    batch = () if layout == "unbatched" else (B,)
    state = [randn(k, *batch, n) * 0.5 for n in sizes] if with_state else None
    upstream = [randn(*y_shape)] + [randn(k, *batch, n) for n in sizes]
    return weights, x, state, upstream


def run(layer, cell, weights, x, state, upstream, dtype, device="cpu", gradients=True):
    """Outputs and gradients (wrt the input, the initial states and each parameter by name),
    as float64 on the CPU. A packed input must come back packed the same way. Without
    `gradients`: the outputs of a call under torch.no_grad (an implementation's inference
    path may be its own)."""
    layer.load_state_dict({k: v.to(device, dtype) for k, v in weights.items()})
    packed = isinstance(x, PackedSequence)
    leaf = (x.data if packed else x).to(device, dtype).requires_grad_(gradients)
    arg = PackedSequence(leaf, x.batch_sizes, x.sorted_indices.to(device),
                         x.unsorted_indices.to(device)) if packed else leaf
    states = [s.to(device, dtype).requires_grad_(gradients) for s in state] if state else []
    hx = None if not states else (tuple(states) if cell == "lstm" else states[0])
    with torch.set_grad_enabled(gradients):
        y, final = layer(arg, hx)
    assert isinstance(y, PackedSequence) == packed
    if packed:
        assert torch.equal(y.batch_sizes, x.batch_sizes)
        for got, sent in ((y.sorted_indices, arg.sorted_indices),
                          (y.unsorted_indices, arg.unsorted_indices)):
            assert torch.equal(got, sent)
        y = y.data
    finals = list(final) if cell == "lstm" else [final]
    result = {"y": y, **{f"final{i}": f for i, f in enumerate(finals)}}
    if gradients:
        loss = sum((t * u.to(device, dtype)).sum() for t, u in zip([y, *finals], upstream))
        params = dict(layer.named_parameters())
        grads = torch.autograd.grad(loss, [leaf, *states, *(params[n] for n in weights)])
        names = ["x"] + [f"state{i}" for i in range(len(states))] + list(weights)
        result.update({f"grad_{n}": g for n, g in zip(names, grads)})
    return {k: v.detach().to("cpu", torch.float64) for k, v in result.items()}


def assert_match(got, expected, dtype, what=""):
    assert got.keys() == expected.keys()
    for key in expected:
        rtol, atol = TOLERANCES[dtype]["grad" if key.startswith("grad") else "out"]
        torch.testing.assert_close(got[key], expected[key], rtol=rtol, atol=atol,
                                   msg=lambda m, k=key: f"{what} {k}: {m}")
