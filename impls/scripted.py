"""A TorchScript-scripted cell loop: the fastrnns-style alternative to a fused kernel.

The input projection for all time steps is one GEMM before the loop; the loop then does one
small GEMM per step for the recurrent product. It iterates with `unbind`: indexing the
precomputed tensor instead roughly doubles the backward time (each index records a
`select` whose backward writes a full-size zero tensor).
"""

from __future__ import annotations

import warnings

import torch

from impls.layer import RecurrentLayer


def _input_projection(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor) -> torch.Tensor:
    T, B, _ = x.shape
    return torch.addmm(b_ih, x.reshape(T * B, x.shape[2]), w_ih.t()).view(T, B, -1)


def _lstm(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor,
          w_hh: torch.Tensor, b_ih: torch.Tensor,
          b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xw = _input_projection(x, w_ih, b_ih + b_hh)
    w_hh_t = w_hh.t()
    outputs: list[torch.Tensor] = []
    for xw_t in xw.unbind(0):
        gates = torch.addmm(xw_t, h, w_hh_t)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), h, c


def _gru(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
         b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # b_hh cannot be folded into the projection: r multiplies the recurrent n-block with its bias.
    xw = _input_projection(x, w_ih, b_ih)
    w_hh_t = w_hh.t()
    outputs: list[torch.Tensor] = []
    for xw_t in xw.unbind(0):
        xr, xz, xn = xw_t.chunk(3, 1)
        hr, hz, hn = torch.addmm(b_hh, h, w_hh_t).chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)
        outputs.append(h)
    return torch.stack(outputs), h


def _rnn(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
         b_ih: torch.Tensor, b_hh: torch.Tensor, relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    xw = _input_projection(x, w_ih, b_ih + b_hh)
    w_hh_t = w_hh.t()
    outputs: list[torch.Tensor] = []
    for xw_t in xw.unbind(0):
        a = torch.addmm(xw_t, h, w_hh_t)
        h = torch.relu(a) if relu else torch.tanh(a)
        outputs.append(h)
    return torch.stack(outputs), h


def _script(fn):
    # torch.jit.script is deprecated in favour of torch.compile, but it is exactly the
    # technology this implementation exists to measure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(fn)


_LOOPS = {}


def _loop(cell: str):
    """Scripted on first use, so `import impls` stays cheap."""
    kind = "rnn" if cell.startswith("rnn_") else cell
    if kind not in _LOOPS:
        _LOOPS[kind] = _script({"lstm": _lstm, "gru": _gru, "rnn": _rnn}[kind])
    return _LOOPS[kind]


class ScriptedLayer(RecurrentLayer):
    def __init__(self, cell, input_size, hidden_size, device, dtype):
        super().__init__()
        self.impl_name = "scripted"
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.init_parameters(device, dtype)
        self._fn = _loop(cell)

    def run(self, x, h0, c0):
        params = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        if self.cell == "lstm":
            y, h, c = self._fn(x, h0[0], c0[0], *params)
            return y, h.unsqueeze(0), c.unsqueeze(0)
        if self.cell == "gru":
            y, h = self._fn(x, h0[0], *params)
        else:
            y, h = self._fn(x, h0[0], *params, self.cell == "rnn_relu")
        return y, h.unsqueeze(0), None


def build(cell, input_size, hidden_size, device, dtype):
    return ScriptedLayer(cell, input_size, hidden_size, device, dtype)
