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
"""

from __future__ import annotations

import torch

from impls.layer import RecurrentLayer


class ReferenceLayer(RecurrentLayer):
    def __init__(self, cell, input_size, hidden_size, device):
        super().__init__()
        self.impl_name = "reference"
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.init_parameters(device, torch.float64)

    def run(self, x, h0, c0):
        step = getattr(self, f"_{self.cell}_step")
        h, c = h0[0], None if c0 is None else c0[0]
        outputs = []
        for x_t in x:
            h, c = step(x_t, h, c)
            outputs.append(h)
        y = torch.stack(outputs)
        return y, h.unsqueeze(0), None if c is None else c.unsqueeze(0)

    def _blocks(self, x_t, h):
        """Input and recurrent pre-activations, each split into its gate blocks."""
        n = self.weight_ih_l0.shape[0] // self.hidden_size
        gx = x_t @ self.weight_ih_l0.T + self.bias_ih_l0
        gh = h @ self.weight_hh_l0.T + self.bias_hh_l0
        return gx.chunk(n, dim=1), gh.chunk(n, dim=1)

    def _lstm_step(self, x_t, h, c):
        (xi, xf, xg, xo), (hi, hf, hg, ho) = self._blocks(x_t, h)
        i = torch.sigmoid(xi + hi)
        f = torch.sigmoid(xf + hf)
        g = torch.tanh(xg + hg)
        o = torch.sigmoid(xo + ho)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c

    def _gru_step(self, x_t, h, _):
        (xr, xz, xn), (hr, hz, hn) = self._blocks(x_t, h)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None

    def _rnn_tanh_step(self, x_t, h, _):
        (xa,), (ha,) = self._blocks(x_t, h)
        return torch.tanh(xa + ha), None

    def _rnn_relu_step(self, x_t, h, _):
        (xa,), (ha,) = self._blocks(x_t, h)
        return torch.relu(xa + ha), None


def build(cell, input_size, hidden_size, device, dtype):
    return ReferenceLayer(cell, input_size, hidden_size, device)
