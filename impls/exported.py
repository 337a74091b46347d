"""nn.LSTM / GRU / RNN exported to ONNX and run by ONNX Runtime or OpenVINO (inference only).

The layer is nn's own module (parameters, state_dict, checked call); a call runs the graph
that `torch.onnx.export` writes from it, with ONNX's LSTM / GRU / RNN operators, in ONNX
Runtime's CPU execution provider (`onnxruntime`) or OpenVINO's CPU plugin (`openvino`).

Exporter: the TorchScript-based one (`dynamo=False`). With torch 2.13 it writes every cell
as one ONNX operator per layer with dynamic T and B, in about a second. The `dynamo=True`
exporter fixes T in the LSTM's outputs and B in the GRU's however `dynamic_shapes` is set
(the graph fails on any other length or batch) and takes 12-15 s for a 2-layer bidirectional
layer. Neither expresses `proj_size`: the TorchScript exporter refuses it, the dynamo one
writes a graph that does not load.

OpenVINO compiles the same ONNX model rather than converting the module with its own
PyTorch frontend, so both runtimes run one graph and differ only in the runtime; its
inference precision is pinned to f32 (the CPU plugin picks bf16 on CPUs that have it).

A graph is exported once per weights version and input kind (a tensor, or a
PackedSequence, whose lengths go to the operators' `sequence_lens`); `exports` counts them.
Layouts (batch_first, unbatched) are brought to (T, B, I) around the graph, and a missing
initial state is fed as zeros, so a new layout, length or batch runs the same graph.
OpenVINO 2026.4 returns wrong values when a sequence is shorter than T (`sequence_lens`),
even for one forward GRU layer, so it declares PackedSequence input lacked.

float32 on the CPU only. Under autograd the outputs carry a backward that raises: nothing
here is differentiable, and saying so at `backward()` names the backend.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from impls.layer import CheckedCall
from impls.torch_nn import nn_module

#: What the exported graphs cannot express, per runtime (the registry's `lacks`).
LACKS = {"onnxruntime": frozenset({"proj_size"}),
         "openvino": frozenset({"proj_size", "packed_input"})}

#: The shape the graphs are traced at: neither T nor B is 1, so no axis folds to a constant.
_SAMPLE_T, _SAMPLE_B = 3, 2


def _onnxruntime_session(model: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # By default its threads spin-wait after each run, taking the cores from whatever runs
    # next (measured: a torch call right after one took 2x its time); they sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def _openvino_session(model: bytes, threads: int):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model=model), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    # The request reuses its output buffers on the next call: copy them out.
    return lambda feeds: [np.array(request.infer(feeds)[out]) for out in compiled.outputs]


_SESSIONS = {"onnxruntime": _onnxruntime_session, "openvino": _openvino_session}


class _Graph(nn.Module):
    """The computation exported: nn's kernel call on (T, B, I) with the initial state given,
    and for packed input the padded batch and its lengths packed around it as nn does, which
    the exporter turns into the operators' `sequence_lens`."""

    def __init__(self, layer: ExportedLayer, packed: bool):
        super().__init__()
        self.layer, self.packed = layer, packed

    def forward(self, x, *inputs):
        layer = self.layer
        lengths, state = (inputs[0], inputs[1:]) if self.packed else (None, inputs)
        hx = tuple(state) if layer.cell == "lstm" else state[0]
        kernel = getattr(_VF, layer.cell)
        args = (hx, layer._flat_weights, layer.bias, layer.num_layers, 0.0, False,
                layer.bidirectional)
        if not self.packed:
            y, *final = kernel(x, *args, False)
            return (y, *final)
        packed = pack_padded_sequence(x, lengths)
        y, *final = kernel(packed.data, packed.batch_sizes, *args)
        y, _ = pad_packed_sequence(PackedSequence(y, packed.batch_sizes))
        return (y, *final)


class _NotDifferentiable(torch.autograd.Function):
    """Passes the runtime's outputs through, and fails at backward naming the backend."""

    @staticmethod
    def forward(ctx, owner, count, *tensors):
        """`tensors`: the outputs, then what they were computed from (which require grad)."""
        ctx.owner = owner
        return tuple(t.view_as(t) for t in tensors[:count])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(f"{ctx.owner}: inference only, the exported graph has no "
                           "backward (trainable=False); use 'torch' to train")


class ExportedLayer(CheckedCall):
    """nn's module with its forward run by an exported ONNX graph in `runtime`."""

    runtime: str

    def _start(self, cell: str, runtime: str) -> None:
        self.cell, self.runtime, self.impl_name = cell, runtime, runtime
        self.exports = 0
        self.threads = None
        self._weights_key = None
        self._sessions = {}

    def forward(self, input, hx=None):
        self.check_call(input, hx)
        packed = isinstance(input, PackedSequence)
        self._check_expressible(packed)
        run = self._session(packed)
        if packed:
            out, finals = self._run_packed(run, input, hx)
        else:
            out, finals = self._run_tensor(run, input, hx)
        outputs = (out.data if packed else out, *finals)
        sources = self._grad_sources(input, hx)
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            outputs = _NotDifferentiable.apply(f"{self.impl_name} {self.cell}", len(outputs),
                                               *outputs, *sources)
        y = PackedSequence(outputs[0], input.batch_sizes, input.sorted_indices,
                           input.unsorted_indices) if packed else outputs[0]
        return y, (tuple(outputs[1:]) if self.cell == "lstm" else outputs[1])

    def _check_expressible(self, packed: bool) -> None:
        weight = self.weight_hh_l0
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            raise self._fail(TypeError, "dtype", "float32 on the CPU (the exported graphs')",
                             f"{weight.dtype} on {weight.device}")
        if packed and "packed_input" in LACKS[self.runtime]:
            raise self._fail(ValueError, "input", "a tensor: PackedSequence input cannot be "
                             "expressed by this backend (declared N/A)", "a PackedSequence")
        if self.training and self.dropout > 0 and self.num_layers > 1:
            raise self._fail(ValueError, "dropout", "0 in training mode (the graph is "
                             "inference only: call .eval() to run without dropout, as nn does)",
                             repr(self.dropout))

    def _grad_sources(self, input, hx):
        states = () if hx is None else (hx if self.cell == "lstm" else (hx,))
        data = input.data if isinstance(input, PackedSequence) else input
        return (data, *states, *self._flat_weights)

    def _session(self, packed: bool):
        """The compiled graph for this input kind, exported again when the weights changed
        (in-place updates bump `_version`; a new tensor has a new data_ptr)."""
        key = tuple((w.data_ptr(), w._version) for w in self._flat_weights)
        if key != self._weights_key:
            self._weights_key, self._sessions = key, {}
        if packed not in self._sessions:
            self.threads = torch.get_num_threads()
            self._sessions[packed] = _SESSIONS[self.runtime](self._export(packed), self.threads)
            self.exports += 1
        return self._sessions[packed]

    def _export(self, packed: bool) -> bytes:
        D = 2 if self.bidirectional else 1
        x = torch.zeros(_SAMPLE_T, _SAMPLE_B, self.input_size)
        states = [torch.zeros(D * self.num_layers, _SAMPLE_B, self.hidden_size)
                  for _ in range(2 if self.cell == "lstm" else 1)]
        lengths = [torch.tensor([_SAMPLE_T, _SAMPLE_T - 1])] if packed else []
        names = ["x", *(["lengths"] if packed else []), "h0", "c0"][:2 + packed + (
            self.cell == "lstm")]
        outputs = ["y", "h_n", "c_n"][:len(states) + 1]
        axes = {"x": {0: "T", 1: "B"}, "lengths": {0: "B"}, "y": {0: "T", 1: "B"},
                **{n: {1: "B"} for n in ("h0", "c0", "h_n", "c_n")}}
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the exporter's notices about dynamo=True
            torch.onnx.export(_Graph(self, packed), (x, *lengths, *states), buffer,
                              dynamo=False, opset_version=17, input_names=names,
                              output_names=outputs,
                              dynamic_axes={n: axes[n] for n in names + outputs})
        return buffer.getvalue()

    def _feeds(self, x, hx, B, lengths=None):
        D = 2 if self.bidirectional else 1
        if hx is None:
            shape = (D * self.num_layers, B, self.hidden_size)
            hx = ((torch.zeros(shape), torch.zeros(shape)) if self.cell == "lstm"
                  else torch.zeros(shape))
        states = hx if self.cell == "lstm" else (hx,)
        feeds = {"x": x, **({"lengths": lengths} if lengths is not None else {}),
                 "h0": states[0], **({"c0": states[1]} if self.cell == "lstm" else {})}
        return {k: v.detach().contiguous().numpy() for k, v in feeds.items()}

    def _run_tensor(self, run, input, hx):
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (
            input.transpose(0, 1) if self.batch_first else input)
        if unbatched and hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if self.cell == "lstm" else hx.unsqueeze(1)
        y, *finals = (torch.from_numpy(a) for a in run(self._feeds(x, hx, x.shape[1])))
        if unbatched:
            return y.squeeze(1), [h.squeeze(1) for h in finals]
        return (y.transpose(0, 1) if self.batch_first else y), finals

    def _run_packed(self, run, input, hx):
        """The padded batch in packing order (decreasing length) through the graph, then
        back to the packed rows and the caller's sequence order."""
        x, lengths = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes))
        order, unorder = input.sorted_indices, input.unsorted_indices
        if hx is not None and order is not None:
            hx = (tuple(h.index_select(1, order) for h in hx) if self.cell == "lstm"
                  else hx.index_select(1, order))
        y, *finals = (torch.from_numpy(a)
                      for a in run(self._feeds(x, hx, x.shape[1], lengths)))
        if unorder is not None:
            finals = [h.index_select(1, unorder) for h in finals]
        return pack_padded_sequence(y, lengths), finals


class ExportedLSTM(ExportedLayer, nn.LSTM):
    pass


class ExportedGRU(ExportedLayer, nn.GRU):
    pass


class ExportedRNN(ExportedLayer, nn.RNN):
    pass


def _build(runtime, cell, input_size, hidden_size, **options):
    layer = nn_module((ExportedLSTM, ExportedGRU, ExportedRNN), cell, input_size, hidden_size,
                      **options)
    layer._start(cell, runtime)
    layer.requires_grad_(False)  # inference only: its weights are not trained
    return layer


def build_onnxruntime(cell, input_size, hidden_size, **options):
    """nn's layer run by ONNX Runtime's CPU execution provider."""
    return _build("onnxruntime", cell, input_size, hidden_size, **options)


def build_openvino(cell, input_size, hidden_size, **options):
    """nn's layer run by OpenVINO's CPU plugin."""
    return _build("openvino", cell, input_size, hidden_size, **options)
