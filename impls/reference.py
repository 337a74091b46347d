"""The oracle: float64, one time step at a time, written straight from the cell equations.

Readable first; every other implementation is checked against it. Gradients come from
torch autograd through these plain operations. With W = [W_i; W_f; ...] the row blocks of
`weight_ih_l0` / `weight_hh_l0` (PyTorch's gate order) and b = b_ih + b_hh per block:

LSTM (gates i, f, g, o)::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)        input gate
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)        forget gate
    g = tanh   (W_ig x + b_ig + W_hg h + b_hg)        candidate
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)        output gate
    c' = f * c + i * g
    h' = o * tanh(c')

GRU (gates r, z, n), PyTorch's and cuDNN's form, reset applied after the recurrent product::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The study notes write the update as ``h' = (1 - z~) * h + z~ * n``. That is the same model
under ``z~ = 1 - z``, i.e. negate the update gate's weights and both biases
(sigmoid(-a) = 1 - sigmoid(a)); so with the notes' z~, z~ is the weight on the *new*
candidate, while in PyTorch's z it is the weight on the *old* state (claim A5). Cho et al.
(2014) apply the reset before the product, ``n = tanh(W_in x + W_hn (r * h) + b)``, a
different model that this suite does not implement.

Simple RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with act = tanh or relu.

LSTM with a projection (``proj_size`` P > 0): the state passed on is ``h' = W_hr (o * tanh(c'))``,
of size P, and W_hh multiplies it. Without bias, b is zero.

The layers, directions and layouts are `impls.layer`'s; this module is one direction of one
layer over the packed steps: the first ``batch_sizes[t]`` sequences run at step t, and the
others keep the state of their own last step.
"""

from __future__ import annotations

import torch

from impls.layer import GATES, RecurrentLayer, step_rows


class ReferenceLayer(RecurrentLayer):
    impl_name = "reference"

    def __init__(self, cell, input_size, hidden_size, *, device=None, dtype=None, **options):
        super().__init__(cell, input_size, hidden_size, device=device, dtype=torch.float64,
                         **options)

    def run_direction(self, x, batch_sizes, h0, c0, w):
        step = getattr(self, f"_{self.cell}_step")
        h, c = h0, c0
        outputs = []
        for start, n in step_rows(batch_sizes):
            h_t, c_t = step(x[start:start + n], h[:n], None if c is None else c[:n], w)
            outputs.append(h_t)
            h = torch.cat([h_t, h[n:]])
            c = None if c is None else torch.cat([c_t, c[n:]])
        return torch.cat(outputs), h, c

    def _blocks(self, x_t, h, w):
        """Input and recurrent pre-activations, each split into its gate blocks."""
        blocks = GATES[self.cell]
        gx = x_t @ w.w_ih.T
        gh = h @ w.w_hh.T
        if w.b_ih is not None:
            gx, gh = gx + w.b_ih, gh + w.b_hh
        return gx.chunk(blocks, dim=1), gh.chunk(blocks, dim=1)

    def _lstm_step(self, x_t, h, c, w):
        (xi, xf, xg, xo), (hi, hf, hg, ho) = self._blocks(x_t, h, w)
        i = torch.sigmoid(xi + hi)
        f = torch.sigmoid(xf + hf)
        g = torch.tanh(xg + hg)
        o = torch.sigmoid(xo + ho)
        c = f * c + i * g
        h = o * torch.tanh(c)
        if w.w_hr is not None:
            h = h @ w.w_hr.T
        return h, c

    def _gru_step(self, x_t, h, _, w):
        (xr, xz, xn), (hr, hz, hn) = self._blocks(x_t, h, w)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None

    def _rnn_tanh_step(self, x_t, h, _, w):
        (xa,), (ha,) = self._blocks(x_t, h, w)
        return torch.tanh(xa + ha), None

    def _rnn_relu_step(self, x_t, h, _, w):
        (xa,), (ha,) = self._blocks(x_t, h, w)
        return torch.relu(xa + ha), None
