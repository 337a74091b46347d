"""What every layer shares: the cells, the canonical parameters, and the checked call.

A layer is a drop-in for a one-layer, time-major `nn.LSTM` / `nn.GRU` / `nn.RNN`:
``y, state = layer(x, state=None)`` with ``x`` of shape (T, B, I), ``y`` of shape (T, B, H),
and the state ``(h, c)`` for LSTM or ``h`` otherwise, each of shape (1, B, H).
Subclasses implement only `run(x, h0, c0) -> (y, h_n, c_n)`; the checks live here once.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Gate blocks stacked in the weight matrices, in PyTorch's order.
#: lstm: i, f, g, o   gru: r, z, n   rnn_*: one block.
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
CELLS = tuple(GATES)

PARAMETER_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def parameter_shapes(cell: str, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the canonical parameters (PyTorch's state_dict of a one-layer module)."""
    g = GATES[cell] * hidden_size
    return {
        "weight_ih_l0": (g, input_size),
        "weight_hh_l0": (g, hidden_size),
        "bias_ih_l0": (g,),
        "bias_hh_l0": (g,),
    }


class RecurrentLayer(nn.Module):
    """Base of every layer: validates the call, fills the default state, packs the result.

    Attributes a subclass must set: `impl_name`, `cell`, `input_size`, `hidden_size`.
    """

    impl_name: str
    cell: str
    input_size: int
    hidden_size: int

    def init_parameters(self, device: torch.device, dtype: torch.dtype) -> None:
        """Create the canonical parameters with PyTorch's init, U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in parameter_shapes(self.cell, self.input_size, self.hidden_size).items():
            p = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
            nn.init.uniform_(p, -bound, bound)
            self.register_parameter(name, p)

    def run(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None):
        """(T, B, I), (1, B, H), (1, B, H) or None -> y (T, B, H), h_n, c_n (None unless LSTM)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state=None):
        h0, c0 = self._checked(x, state)
        y, h, c = self.run(x, h0, c0)
        return y, ((h, c) if self.cell == "lstm" else h)

    def extra_repr(self) -> str:
        return f"{self.impl_name}, {self.cell}, {self.input_size}, {self.hidden_size}"

    # -- checks -----------------------------------------------------------------------------

    def _fail(self, exc: type[Exception], arg: str, expected: str, got: str) -> Exception:
        return exc(f"{self.impl_name} {self.cell}: argument {arg!r} must be {expected}, got {got}")

    def _checked(self, x, state):
        weight = self.weight_hh_l0
        if not isinstance(x, torch.Tensor):
            raise self._fail(TypeError, "x", "a torch.Tensor", type(x).__name__)
        if x.dim() != 3:
            raise self._fail(ValueError, "x", f"3-D (T, B, {self.input_size}), time-major",
                             f"{x.dim()}-D shape {tuple(x.shape)}")
        T, B, size = x.shape
        if size != self.input_size:
            raise self._fail(ValueError, "x", f"of feature size {self.input_size}",
                             f"feature size {size} (shape {tuple(x.shape)})")
        if T == 0 or B == 0:
            raise self._fail(ValueError, "x", "non-empty: T >= 1 and B >= 1",
                             f"shape {tuple(x.shape)}")
        self._check_tensor("x", x, weight)
        H = self.hidden_size
        if self.cell == "lstm":
            if state is None:
                zeros = x.new_zeros(1, B, H)
                return zeros, zeros
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise self._fail(TypeError, "state", "a pair (h, c) for an LSTM",
                                 type(state).__name__)
            for arg, t in zip(("state h", "state c"), state):
                self._check_state(arg, t, B, weight)
            return state[0], state[1]
        if state is None:
            return x.new_zeros(1, B, H), None
        self._check_state("state", state, B, weight)
        return state, None

    def _check_state(self, arg, t, B, weight):
        if not isinstance(t, torch.Tensor):
            raise self._fail(TypeError, arg, "a torch.Tensor", type(t).__name__)
        expected = (1, B, self.hidden_size)
        if tuple(t.shape) != expected:
            raise self._fail(ValueError, arg, f"of shape {expected}", f"shape {tuple(t.shape)}")
        self._check_tensor(arg, t, weight)

    def _check_tensor(self, arg, t, weight):
        if t.dtype != weight.dtype:
            raise self._fail(TypeError, arg, f"of dtype {weight.dtype} (the layer's)", str(t.dtype))
        if t.device != weight.device:
            raise self._fail(ValueError, arg, f"on device {weight.device} (the layer's)",
                             str(t.device))
