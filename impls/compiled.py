"""torch.compile (Dynamo + Inductor) twice: on a cell step of our own, and around nn itself.

`compiled`: the input projection for all steps is one GEMM before the loop, as in
`impls.scripted`; the step (recurrent GEMM and the fused gate math) is compiled once and
called T times from Python, so the compile cost does not grow with T. Compiling the whole
unrolled loop instead took 60 s for T=20 and grows with T; PyTorch's `scan` operator fails
in Inductor on the CPU already for inference (DataDependentOutputException in
decompose_scan_to_while_loop).

Measured for LSTM T=100 I=H=256, 2 threads, on a shared and busy 2-core machine (so the
steady times are the best of 12, compiled and scripted alternating in one process):

    B=64  first call (cold compile): 6-24 s inference, +10 s for training's graphs
          steady: inference 351 ms (scripted 346), training 224 ms (scripted 216)
    B=1   first call: 6 s inference, +5.5 s training
          steady: inference 16 ms (scripted 7), training 54 ms (scripted 36)

Compiling buys nothing over TorchScript here: the GEMMs dominate at B=64, and at B=1 the
~90 us that each compiled call costs (guards, the autograd wrapper) doubles the time.

Variable lengths: every step runs on all B rows and keeps the ended sequences' old state
(`torch.where` on a row mask, fused into the gate kernel), so the step's shapes never
change within a call and a PackedSequence needs no further graph (the price: the ended
rows are computed and thrown away). Shapes are static
(`dynamic=False`): one graph per (cell, B, H, projection, bias, dtype, device, grad mode),
T and lengths never recompile; a new batch size or hidden size does. With `dynamic=True`
the first call took 32-48 s instead of 6-9 s and was not measurably faster afterwards.
Training compiles two graphs more than inference: the first step's state needs no gradient
when h0 is zeros, the later steps' does. `layer.compiles` counts the graphs Dynamo
compiled during this layer's calls (the recompiles the bench reports).

`compiled-nn`: `torch.compile` around nn.LSTM/GRU/RNN's own forward. Dynamo refuses the
module ("Attempted to wrap RNN, GRU, or LSTM", unless `torch._dynamo.config.allow_rnn`),
breaks the graph and runs nn's forward eagerly: no graph is compiled, so this measures
nn plus Dynamo's per-call guard overhead. With `allow_rnn=True`, an LSTM on the CPU traced
into Inductor code that fails at run time (a size assertion on `mkldnn_rnn_layer`).
`layer.dynamo_outcome` says which happened here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.nn import functional as F

from impls.layer import CheckedCall, RecurrentLayer
from impls.torch_nn import nn_module

#: Graphs one step function may hold before Dynamo gives up and runs it eagerly: every
#: (B, H, dtype, grad mode) is a graph of its own, and tests and sweeps meet many.
RECOMPILE_LIMIT = 64


def _graphs_compiled() -> int:
    return counters["stats"]["unique_graphs"]


def _lstm_step(xw_t, running, h, c, w_hh, w_hr):
    gates = torch.addmm(xw_t, h, w_hh.t())
    i, f, g, o = gates.chunk(4, 1)
    c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_t = torch.sigmoid(o) * torch.tanh(c_t)
    if w_hr is not None:
        h_t = torch.mm(h_t, w_hr.t())
    return torch.where(running, h_t, h), torch.where(running, c_t, c)


def _gru_step(xw_t, running, h, w_hh, b_hh):
    xr, xz, xn = xw_t.chunk(3, 1)
    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return torch.where(running, n + z * (h - n), h)


def _rnn_step(xw_t, running, h, w_hh, relu: bool):
    a = torch.addmm(xw_t, h, w_hh.t())
    return torch.where(running, torch.relu(a) if relu else torch.tanh(a), h)


#: Cell kind -> its step under torch.compile (Dynamo compiles on the first call).
_STEPS = {"lstm": torch.compile(_lstm_step, dynamic=False),
          "gru": torch.compile(_gru_step, dynamic=False),
          "rnn": torch.compile(_rnn_step, dynamic=False)}


def _grid_rows(batch_sizes: torch.Tensor, device) -> torch.Tensor:
    """Where each packed row sits in the (T * B) grid: step t, sequence s -> t * B + s."""
    B = int(batch_sizes[0])
    step = torch.repeat_interleave(torch.arange(batch_sizes.numel()), batch_sizes)
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes
    return (step * B + torch.arange(step.numel()) - starts[step]).to(device)


class CompiledLayer(RecurrentLayer):
    """The hoisted input projection, then the compiled step T times; `compiles` counts graphs."""

    impl_name = "compiled"

    def __init__(self, cell, input_size, hidden_size, **options):
        super().__init__(cell, input_size, hidden_size, **options)
        self.compiles = 0

    def run_direction(self, x, batch_sizes, h0, c0, w):
        before = _graphs_compiled()
        try:
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                return self._loop(x, batch_sizes, h0, c0, w)
        finally:
            self.compiles += _graphs_compiled() - before

    def _loop(self, x, batch_sizes, h0, c0, w):
        T, B = batch_sizes.numel(), int(batch_sizes[0])
        bias = w.b_ih
        if w.b_ih is not None and self.cell != "gru":
            bias = w.b_ih + w.b_hh  # GRU's b_hh stays inside: r multiplies the recurrent n-block
        xw = F.linear(x, w.w_ih, bias)
        equal_lengths = int(batch_sizes[-1]) == B
        grid = None if equal_lengths else _grid_rows(batch_sizes, x.device)
        if grid is not None:
            xw = xw.new_zeros(T * B, xw.shape[1]).index_copy(0, grid, xw)
        running = (torch.arange(B) < batch_sizes.unsqueeze(1)).unsqueeze(2).to(x.device)
        h, c, outputs = h0, c0, []
        step = _STEPS["rnn" if self.cell.startswith("rnn_") else self.cell]
        for xw_t, running_t in zip(xw.split(B), running.unbind(0)):
            if self.cell == "lstm":
                h, c = step(xw_t, running_t, h, c, w.w_hh, w.w_hr)
            elif self.cell == "gru":
                h = step(xw_t, running_t, h, w.w_hh, w.b_hh)
            else:
                h = step(xw_t, running_t, h, w.w_hh, self.cell == "rnn_relu")
            outputs.append(h)
        y = torch.cat(outputs)
        return (y if grid is None else y.index_select(0, grid)), h, c


def _lstm_forward(layer, input, hx):
    return nn.LSTM.forward(layer, input, hx)


def _gru_forward(layer, input, hx):
    return nn.GRU.forward(layer, input, hx)


def _rnn_forward(layer, input, hx):
    return nn.RNN.forward(layer, input, hx)


#: nn class -> its forward under torch.compile. Dynamo decides once per code object (a frame
#: it gave up on stays eager), so each nn class is called through a function of its own.
_NN_FORWARDS = {nn.LSTM: torch.compile(_lstm_forward), nn.GRU: torch.compile(_gru_forward),
                nn.RNN: torch.compile(_rnn_forward)}

#: nn class -> what Dynamo did with its forward, from the call in which it compiled or broke.
_NN_OUTCOMES = {}


class CompiledNNLayer(CheckedCall):
    """The checked call, then nn's forward under torch.compile."""

    impl_name = "compiled-nn"
    nn_class: type

    @property
    def dynamo_outcome(self) -> str:
        """What Dynamo did with this nn class's forward in this process ("not called yet"
        until a layer of the class has run)."""
        return _NN_OUTCOMES.get(self.nn_class, "not called yet")

    def forward(self, input, hx=None):
        self.check_call(input, hx)
        breaks_before = dict(counters["graph_break"])
        graphs_before = _graphs_compiled()
        out = _NN_FORWARDS[self.nn_class](self, input, hx)
        graphs = _graphs_compiled() - graphs_before
        breaks = [reason.split("\n")[0] for reason, n in counters["graph_break"].items()
                  if n > breaks_before.get(reason, 0)]
        if graphs or breaks:
            _NN_OUTCOMES[self.nn_class] = (
                f"graph break ({'; '.join(breaks)}): nn runs eagerly" if not graphs
                else f"traced: {graphs} graph(s), {len(breaks)} graph break(s)")
        return out


class CompiledLSTM(CompiledNNLayer, nn.LSTM):
    nn_class = nn.LSTM


class CompiledGRU(CompiledNNLayer, nn.GRU):
    nn_class = nn.GRU


class CompiledRNN(CompiledNNLayer, nn.RNN):
    nn_class = nn.RNN


def build_compiled_nn(cell, input_size, hidden_size, **options):
    """nn's module for `cell` whose forward runs under torch.compile."""
    layer = nn_module((CompiledLSTM, CompiledGRU, CompiledRNN), cell, input_size, hidden_size,
                      **options)
    layer.cell = cell
    return layer
