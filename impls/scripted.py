"""A TorchScript-scripted cell loop: the fastrnns-style alternative to a fused kernel.

The input projection for all time steps is one GEMM before the loop; the loop then does one
small GEMM per step for the recurrent product, on the rows of the sequences still running
(`impls.layer`'s packed layout). It iterates over `split` views: indexing the precomputed
tensor instead roughly doubles the backward time (each index records a `select` whose
backward writes a full-size zero tensor).
"""

from __future__ import annotations

import warnings

import torch

from impls.layer import RecurrentLayer


def _input_projection(x: torch.Tensor, w_ih: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return torch.mm(x, w_ih.t())
    return torch.addmm(bias, x, w_ih.t())


def _carry(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """The state after a step: the running sequences' new rows, the ended ones' old rows."""
    if new.shape[0] == old.shape[0]:
        return new
    return torch.cat([new, old[new.shape[0]:]])


def _lstm(x: torch.Tensor, batch_sizes: list[int], h: torch.Tensor, c: torch.Tensor,
          w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor | None,
          b_hh: torch.Tensor | None,
          w_hr: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bias: torch.Tensor | None = None
    if b_ih is not None and b_hh is not None:
        bias = b_ih + b_hh
    xw = _input_projection(x, w_ih, bias)
    w_hh_t = w_hh.t()
    outputs: list[torch.Tensor] = []
    for xw_t in xw.split(batch_sizes):
        n = xw_t.shape[0]
        gates = torch.addmm(xw_t, h[:n], w_hh_t)
        i, f, g, o = gates.chunk(4, 1)
        c_t = torch.sigmoid(f) * c[:n] + torch.sigmoid(i) * torch.tanh(g)
        h_t = torch.sigmoid(o) * torch.tanh(c_t)
        if w_hr is not None:
            h_t = torch.mm(h_t, w_hr.t())
        outputs.append(h_t)
        h, c = _carry(h_t, h), _carry(c_t, c)
    return torch.cat(outputs), h, c


def _gru(x: torch.Tensor, batch_sizes: list[int], h: torch.Tensor, w_ih: torch.Tensor,
         w_hh: torch.Tensor, b_ih: torch.Tensor | None,
         b_hh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    # b_hh cannot be folded into the projection: r multiplies the recurrent n-block with its bias.
    xw = _input_projection(x, w_ih, b_ih)
    w_hh.t()
    outputs: list[torch.Tensor] = []
    for xw_t in xw.split(batch_sizes):
        n_rows = xw_t.shape[0]
        h_prev = h[:n_rows]
        xr, xz, xn = xw_t.chunk(3, 1)
        hr, hz, hn = _input_projection(h_prev, w_hh, b_hh).chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h_t = n + z * (h_prev - n)
        outputs.append(h_t)
        h = _carry(h_t, h)
    return torch.cat(outputs), h


def _rnn(x: torch.Tensor, batch_sizes: list[int], h: torch.Tensor, w_ih: torch.Tensor,
         w_hh: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
         relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    bias: torch.Tensor | None = None
    if b_ih is not None and b_hh is not None:
        bias = b_ih + b_hh
    xw = _input_projection(x, w_ih, bias)
    w_hh_t = w_hh.t()
    outputs: list[torch.Tensor] = []
    for xw_t in xw.split(batch_sizes):
        a = torch.addmm(xw_t, h[:xw_t.shape[0]], w_hh_t)
        h_t = torch.relu(a) if relu else torch.tanh(a)
        outputs.append(h_t)
        h = _carry(h_t, h)
    return torch.cat(outputs), h


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
    impl_name = "scripted"

    def __init__(self, cell, input_size, hidden_size, **options):
        super().__init__(cell, input_size, hidden_size, **options)
        _loop(cell)  # scripted now, not in the first timed call

    def run_direction(self, x, batch_sizes, h0, c0, w):
        # Looked up, not kept on the layer: a ScriptFunction attribute cannot be pickled, and
        # users torch.save and deepcopy their models.
        fn, sizes = _loop(self.cell), batch_sizes.tolist()
        if self.cell == "lstm":
            return fn(x, sizes, h0, c0, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr)
        if self.cell == "gru":
            y, h = fn(x, sizes, h0, w.w_ih, w.w_hh, w.b_ih, w.b_hh)
        else:
            y, h = fn(x, sizes, h0, w.w_ih, w.w_hh, w.b_ih, w.b_hh,
                            self.cell == "rnn_relu")
        return y, h, None
