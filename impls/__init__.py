"""rnnbench implementations: interchangeable LSTM / GRU / RNN layers behind one registry.

    import impls
    impls.names()                          # registered implementations
    impl = impls.get("numba")
    layer = impl.build("lstm", I, H, num_layers=2, bidirectional=True, dropout=0.2,
                       batch_first=False, bias=True, proj_size=0,
                       device="cpu", dtype=torch.float32)
    layer.load_state_dict(torch.nn.LSTM(I, H, num_layers=2, bidirectional=True,
                                        dropout=0.2).state_dict())
    y, (h, c) = layer(x)                   # (T, B, I), (B, T, I), (T, I) or a PackedSequence

Every layer is a drop-in for `nn.LSTM` / `nn.GRU` / `nn.RNN`: nn's constructor, parameter
names and shapes (gate order LSTM i,f,g,o, GRU r,z,n), call, states and layouts. A new
implementation subclasses `RecurrentLayer` and writes one direction of one layer
(`run_direction`); see `impls.layer`.
"""

import torch

from impls.exported import LACKS as _EXPORTED_LACKS
from impls.layer import CELLS, GATES, DirectionWeights, RecurrentLayer, parameter_shapes
from impls.registry import FLOAT_DTYPES, Implementation, get, names, register, unregister

_ALL_CELLS = frozenset(CELLS)
_BOTH = frozenset({"cpu", "cuda"})

register(Implementation(
    name="reference", factory="impls.reference:ReferenceLayer", cells=_ALL_CELLS, devices=_BOTH,
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
    name="scripted", factory="impls.scripted:ScriptedLayer", cells=_ALL_CELLS, devices=_BOTH,
    dtypes=FLOAT_DTYPES, trainable=True,
    description="TorchScript cell loop, input projection as one GEMM before the loop",
))
register(Implementation(
    name="numba", factory="impls.numba_rnn:build", cells=_ALL_CELLS,
    devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32, torch.float64}),
    trainable=True,
    description="numba JIT time loop with hand-derived BPTT, GEMMs outside the loop",
))
register(Implementation(
    name="compiled", factory="impls.compiled:CompiledLayer", cells=_ALL_CELLS,
    devices=_BOTH, dtypes=frozenset({torch.float32, torch.float64}), trainable=True,
    description="torch.compile (Inductor) of one step, reused at every step; input "
                "projection hoisted",
))
register(Implementation(
    name="compiled-nn", factory="impls.compiled:build_compiled_nn", cells=_ALL_CELLS,
    devices=_BOTH, dtypes=FLOAT_DTYPES, trainable=True,
    description="torch.compile around nn.LSTM/GRU/RNN itself (Dynamo breaks the graph "
                "there: nn runs eagerly)",
))
register(Implementation(
    name="onnxruntime", factory="impls.exported:build_onnxruntime", cells=_ALL_CELLS,
    devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}), trainable=False,
    requires=("onnx", "onnxscript", "onnxruntime"), lacks=_EXPORTED_LACKS["onnxruntime"],
    description="exported to ONNX's LSTM/GRU/RNN operators, run by ONNX Runtime's CPU "
                "provider (inference only)",
))
register(Implementation(
    name="openvino", factory="impls.exported:build_openvino", cells=_ALL_CELLS,
    devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}), trainable=False,
    requires=("onnx", "onnxscript", "openvino"), lacks=_EXPORTED_LACKS["openvino"],
    description="the same ONNX graph compiled by OpenVINO's CPU plugin (inference only)",
))
register(Implementation(
    name="jax", factory="impls.jax_scan:JaxLayer", cells=_ALL_CELLS,
    devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32, torch.float64}),
    trainable=True, requires=("jax",),
    description="jax.lax.scan cell, jitted, input projection hoisted; backward from jax.vjp "
                "inside a torch.autograd.Function",
))

__all__ = [
    "CELLS", "DirectionWeights", "FLOAT_DTYPES", "GATES", "Implementation", "RecurrentLayer",
    "get", "names", "parameter_shapes", "register", "unregister",
]
