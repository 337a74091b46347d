"""PyTorch's own `nn.LSTM` / `nn.GRU` / `nn.RNN`, as `torch` (default kernels) and `torch-native`.

Every option goes to nn itself, so the fused multi-layer and bidirectional paths of oneDNN
and cuDNN are what gets measured. `torch` runs whatever PyTorch picks: cuDNN on a GPU, oneDNN
for LSTM on this CPU (not for GRU, which is why GRU can come out slower than LSTM here).
`torch-native` switches cuDNN and oneDNN off for the duration of each call only, so GRU and
LSTM run on PyTorch's own kernels and can be compared on equal terms. The backward pass
follows the kernel the forward chose.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from impls.layer import CheckedCall


class TorchLayer(CheckedCall):
    """The checked call in front of the `nn.*` module this class is mixed with."""

    native = False

    def forward(self, input, hx=None):
        self.check_call(input, hx)
        with self._kernels():
            return super().forward(input, hx)

    def _kernels(self):
        if not self.native:
            return contextlib.nullcontext()
        # None leaves every other flag (TF32, determinism, benchmark) as the user set it.
        keep = dict(deterministic=None, allow_tf32=None, fp32_precision=None)
        stack = contextlib.ExitStack()
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False, **keep))
        stack.enter_context(torch.backends.cudnn.flags(
            enabled=False, benchmark=None, benchmark_limit=None, depthwise_kernel=None, **keep))
        return stack


class TorchLSTM(TorchLayer, nn.LSTM):
    pass


class TorchGRU(TorchLayer, nn.GRU):
    pass


class TorchRNN(TorchLayer, nn.RNN):
    pass


def nn_module(classes, cell, input_size, hidden_size, *, proj_size, **options):
    """`cell`'s module from `classes`, subclasses of (nn.LSTM, nn.GRU, nn.RNN), with nn's
    options; nn.GRU and nn.RNN take no proj_size (the registry checked it is 0 there)."""
    lstm, gru, rnn = classes
    if cell == "lstm":
        return lstm(input_size, hidden_size, proj_size=proj_size, **options)
    if cell == "gru":
        return gru(input_size, hidden_size, **options)
    return rnn(input_size, hidden_size, nonlinearity=cell.removeprefix("rnn_"), **options)


def _build(cell, input_size, hidden_size, *, native, **options):
    layer = nn_module((TorchLSTM, TorchGRU, TorchRNN), cell, input_size, hidden_size,
                      **options)
    layer.impl_name = "torch-native" if native else "torch"
    layer.cell = cell
    layer.native = native
    return layer


def build_default(cell, input_size, hidden_size, **options):
    """`nn.*` with the kernels PyTorch chooses (cuDNN, oneDNN)."""
    return _build(cell, input_size, hidden_size, native=False, **options)


def build_native(cell, input_size, hidden_size, **options):
    """`nn.*` with cuDNN and oneDNN off during the call: PyTorch's own kernels."""
    return _build(cell, input_size, hidden_size, native=True, **options)
