"""rnnbench implementations: interchangeable LSTM / GRU / RNN layers behind one registry.

    import impls
    impls.names()                          # registered implementations
    impl = impls.get("torch")
    layer = impl.build("lstm", input_size=I, hidden_size=H, device="cpu", dtype=torch.float32)
    y, (h, c) = layer(x)                   # x: (T, B, I), time-major

Every layer takes PyTorch's one-layer state_dict (`weight_ih_l0`, `weight_hh_l0`,
`bias_ih_l0`, `bias_hh_l0`; gate order LSTM i,f,g,o, GRU r,z,n).
"""

import torch

from impls.layer import CELLS, GATES, RecurrentLayer, parameter_shapes
from impls.registry import FLOAT_DTYPES, Implementation, get, names, register, unregister

_ALL_CELLS = frozenset(CELLS)
_BOTH = frozenset({"cpu", "cuda"})

register(Implementation(
    name="reference", factory="impls.reference:build", cells=_ALL_CELLS, devices=_BOTH,
    dtypes=frozenset({torch.float64}), trainable=True,
    description="float64 oracle, one step at a time, straight from the equations",
))
register(Implementation(
    name="torch", factory="impls.torch_nn:build_default", cells=_ALL_CELLS, devices=_BOTH,
    dtypes=FLOAT_DTYPES, trainable=True,
    description="nn.LSTM/GRU/RNN with PyTorch's default kernels (cuDNN, oneDNN)",
))
register(Implementation(
    name="torch-native", factory="impls.torch_nn:build_native", cells=_ALL_CELLS,
    devices=_BOTH, dtypes=FLOAT_DTYPES, trainable=True,
    description="nn.LSTM/GRU/RNN with cuDNN and oneDNN off: PyTorch's own kernels",
))
register(Implementation(
    name="scripted", factory="impls.scripted:build", cells=_ALL_CELLS, devices=_BOTH,
    dtypes=FLOAT_DTYPES, trainable=True,
    description="TorchScript cell loop, input projection as one GEMM before the loop",
))
register(Implementation(
    name="numba", factory="impls.numba_rnn:build", cells=_ALL_CELLS,
    devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32, torch.float64}),
    trainable=True,
    description="numba JIT time loop with hand-derived BPTT, GEMMs outside the loop",
))

__all__ = [
    "CELLS", "FLOAT_DTYPES", "GATES", "Implementation", "RecurrentLayer", "get", "names",
    "parameter_shapes", "register", "unregister",
]
