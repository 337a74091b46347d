"""Run a layer on given weights and inputs and collect outputs and every gradient."""

from __future__ import annotations

import pytest
import torch

import impls

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
#: over up to 40 steps and T*B summed terms in the weight gradients).
TOLERANCES = {
    torch.float64: {"out": (1e-9, 1e-10), "grad": (1e-8, 1e-9)},
    torch.float32: {"out": (1e-4, 2e-5), "grad": (1e-3, 1e-4)},
}


def make_inputs(cell, T, B, I, H, with_state, seed, device="cpu"):
    """float64 weights (PyTorch's init), input, optional initial state, upstream gradients."""
    gen = torch.Generator().manual_seed(seed)
    weights = {
        name: (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) / H ** 0.5
        for name, shape in impls.parameter_shapes(cell, I, H).items()
    }
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    n_state = 2 if cell == "lstm" else 1
    state = [torch.randn(1, B, H, generator=gen, dtype=torch.float64) * 0.5
             for _ in range(n_state)] if with_state else None
    upstream = [torch.randn(T, B, H, generator=gen, dtype=torch.float64)] + [
        torch.randn(1, B, H, generator=gen, dtype=torch.float64) for _ in range(n_state)]
    return weights, x, state, upstream


def run(layer, cell, weights, x, state, upstream, dtype, device="cpu"):
    """Outputs and gradients (wrt x, initial state, each parameter), as float64 on the CPU."""
    layer.load_state_dict({k: v.to(device, dtype) for k, v in weights.items()})
    x = x.to(device, dtype).requires_grad_()
    leaves = [s.to(device, dtype).requires_grad_() for s in state] if state else []
    arg = None if not leaves else (tuple(leaves) if cell == "lstm" else leaves[0])
    y, final = layer(x, arg)
    finals = list(final) if cell == "lstm" else [final]
    loss = sum((t * u.to(device, dtype)).sum() for t, u in zip([y, *finals], upstream))
    params = [getattr(layer, name) for name in impls.layer.PARAMETER_NAMES]
    grads = torch.autograd.grad(loss, [x, *leaves, *params])
    names = ["x"] + [f"state{i}" for i in range(len(leaves))] + list(impls.layer.PARAMETER_NAMES)
    result = {"y": y, **{f"final{i}": f for i, f in enumerate(finals)}}
    result.update({f"grad_{n}": g for n, g in zip(names, grads)})
    return {k: v.detach().to("cpu", torch.float64) for k, v in result.items()}


def assert_match(got, expected, dtype, what=""):
    assert got.keys() == expected.keys()
    for key in expected:
        rtol, atol = TOLERANCES[dtype]["grad" if key.startswith("grad") else "out"]
        torch.testing.assert_close(got[key], expected[key], rtol=rtol, atol=atol,
                                   msg=lambda m, k=key: f"{what} {k}: {m}")
