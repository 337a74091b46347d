"""One implementation set up for one case: the layer, its inputs, and the call that is timed.

Every implementation gets the same canonical weights and inputs (seeded), so none is timed
on easier numbers (denormals, saturated gates) than another. ``inference`` is a forward under
``torch.no_grad()``; ``training`` is a forward and ``y.backward(dy)`` with the input requiring
grad, as a layer inside a stack must pass the gradient down; the gradients are cleared (set to
None) at the start of each call so no call pays for accumulating into the last one's.
"""

from __future__ import annotations

import math

import torch

import impls
from bench.speed.cases import Case

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                "float32": torch.float32, "float64": torch.float64}

#: Autograd node names of PyTorch's vendor RNN kernels, by the library they belong to.
VENDOR_NODES = {"Mkldnn": "oneDNN", "Cudnn": "cuDNN", "Miopen": "MIOpen"}


def unsupported_reason(impl: impls.Implementation, case: Case) -> str | None:
    """Why `impl` cannot run `case` (an N/A entry), or None when it can."""
    if case.cell not in impl.cells:
        return f"no {case.cell} cell (has {', '.join(sorted(impl.cells))})"
    if case.device not in impl.devices:
        return f"no {case.device} support (runs on {', '.join(sorted(impl.devices))})"
    if case.device == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU visible"
    if TORCH_DTYPES[case.dtype] not in impl.dtypes:
        kinds = ", ".join(sorted(str(d).removeprefix("torch.") for d in impl.dtypes))
        return f"no {case.dtype} support (has {kinds})"
    if case.mode == "training" and not impl.trainable:
        return "not trainable (no backward pass)"
    return None


def kernel_label(autograd_node: str | None) -> str:
    """A reader's name for the kernel behind an output's autograd node."""
    if autograd_node is None:
        return "unknown"
    for prefix, library in VENDOR_NODES.items():
        if autograd_node.startswith(prefix):
            return f"{library} ({autograd_node})"
    return autograd_node


def canonical_state(case: Case, seed: int) -> dict[str, torch.Tensor]:
    """PyTorch-style initial weights, U(-1/sqrt(H), 1/sqrt(H)), the same for every impl."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(case.H)
    return {
        name: (torch.rand(shape, generator=gen, dtype=torch.float64) * (2 * bound) - bound)
        .to(device=case.device, dtype=TORCH_DTYPES[case.dtype])
        for name, shape in impls.parameter_shapes(case.cell, case.I, case.H).items()
    }


class Workload:
    """`impl_name`'s layer for `case` with its inputs; `call()` is what gets measured."""

    def __init__(self, case: Case, impl_name: str, seed: int = 0) -> None:
        self.case = case
        dtype = TORCH_DTYPES[case.dtype]
        self.layer = impls.get(impl_name).build(case.cell, input_size=case.I,
                                                hidden_size=case.H, device=case.device,
                                                dtype=dtype)
        self.layer.load_state_dict(canonical_state(case, seed))
        self.layer.train(case.mode == "training")
        gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.randn(case.T, case.B, case.I, generator=gen).to(case.device, dtype)
        self.grad_y = torch.randn(case.T, case.B, case.H, generator=gen).to(case.device, dtype)
        self.training = case.mode == "training"
        self.x.requires_grad_(self.training)
        self.params = list(self.layer.parameters())

    def call(self) -> None:
        """One measured call: a forward, or a forward and backward."""
        if not self.training:
            with torch.no_grad():
                self.layer(self.x)
            return
        for p in self.params:
            p.grad = None
        self.x.grad = None
        y, _ = self.layer(self.x)
        y.backward(self.grad_y)

    def autograd_node(self) -> str | None:
        """Type of the output's autograd node in a forward with autograd on (not timed).

        It tells which kernel ran: `MkldnnRnnLayerBackward0` is oneDNN's RNN, a generic node
        (e.g. `StackBackward0`) means a loop of ATen ops.
        """
        x = self.x.detach().requires_grad_(True)
        with torch.enable_grad():
            y, _ = self.layer(x)
        return None if y.grad_fn is None else type(y.grad_fn).__name__
