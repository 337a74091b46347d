"""What every layer shares: nn's constructor and call, checked once, and the stacking.

A layer is a drop-in for `nn.LSTM` / `nn.GRU` / `nn.RNN`: the same constructor arguments
(`num_layers`, `bias`, `batch_first`, `dropout`, `bidirectional`, `proj_size`), the same
parameter names and shapes (`weight_ih_l1_reverse`, `weight_hr_l0`, ...), and the same call,
``y, state = layer(input, hx=None)`` with a (T, B, I), (B, T, I) (batch_first), (T, I)
(unbatched) or `PackedSequence` input, and states of shape (D * num_layers, B, H_out).

Every input is brought to one layout, PackedSequence's: the rows of step 0, then of step 1,
..., each step's rows ordered by decreasing sequence length, so the rows still running at
step t are a prefix of length `batch_sizes[t]`. A (T, B, I) tensor is that layout with every
batch size B, as a view. An implementation writes one direction of one layer on it,
`run_direction`; the layers, directions, dropout and the reshaping live here, once. A
reverse direction runs forward over each sequence reversed within its own length.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

#: Gate blocks stacked in the weight matrices, in PyTorch's order.
#: lstm: i, f, g, o   gru: r, z, n   rnn_*: one block.
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
CELLS = tuple(GATES)

#: nn's `mode` attribute for each cell.
NN_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}

#: nn's constructor options besides the sizes, with nn's defaults.
OPTIONS = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
           "bidirectional": False, "proj_size": 0}


def check_options(owner: str, cell: str, input_size, hidden_size, options: dict, *,
                  warn: bool = True) -> dict:
    """nn's constructor arguments, validated as nn does but with errors that name the argument.

    Returns every option, defaults filled in. `warn`: nn's warning about dropout with one
    layer (off where the module built next warns itself).
    """
    def fail(exc, arg, expected, value):
        return exc(f"{owner}: argument {arg!r} must be {expected}, got {value!r}")

    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"{owner}: unexpected arguments {sorted(unknown)}; nn's options are "
                        f"{sorted(OPTIONS)}")
    if cell not in GATES:
        raise fail(ValueError, "cell", f"one of {list(CELLS)}", cell)
    opts = {**OPTIONS, **options}
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size),
                       ("num_layers", opts["num_layers"])):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(ValueError, arg, "a positive int", value)
    for arg in ("bias", "batch_first", "bidirectional"):
        if not isinstance(opts[arg], bool):
            raise fail(TypeError, arg, "a bool", opts[arg])
    p = opts["dropout"]
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise fail(ValueError, "dropout", "a number in [0, 1]", p)
    proj = opts["proj_size"]
    if isinstance(proj, bool) or not isinstance(proj, int) or proj < 0:
        raise fail(ValueError, "proj_size", "an int >= 0", proj)
    if proj and cell != "lstm":
        raise fail(ValueError, "proj_size", f"0 for {cell} (nn projects LSTM states only)", proj)
    if proj >= hidden_size:
        raise fail(ValueError, "proj_size", f"smaller than hidden_size ({hidden_size})", proj)
    if warn and p > 0 and opts["num_layers"] == 1:
        warnings.warn(f"{owner}: dropout={p} acts between layers only, and there is one layer "
                      "(nn.RNNBase warns likewise)", UserWarning, stacklevel=3)
    return {**opts, "dropout": float(p)}


def parameter_shapes(cell: str, input_size: int, hidden_size: int, *, num_layers: int = 1,
                     bias: bool = True, bidirectional: bool = False,
                     proj_size: int = 0) -> dict[str, tuple[int, ...]]:
    """nn's parameters by name, in nn's order: per layer and direction W_ih, W_hh, b_ih, b_hh,
    W_hr."""
    g = GATES[cell] * hidden_size
    h_out = proj_size or hidden_size
    shapes = {}
    for layer in range(num_layers):
        for suffix in ("", "_reverse")[:1 + bidirectional]:
            size = input_size if layer == 0 else h_out * (1 + bidirectional)
            shapes[f"weight_ih_l{layer}{suffix}"] = (g, size)
            shapes[f"weight_hh_l{layer}{suffix}"] = (g, h_out)
            if bias:
                shapes[f"bias_ih_l{layer}{suffix}"] = (g,)
                shapes[f"bias_hh_l{layer}{suffix}"] = (g,)
            if proj_size:
                shapes[f"weight_hr_l{layer}{suffix}"] = (proj_size, hidden_size)
    return shapes


class DirectionWeights(NamedTuple):
    """One direction of one layer: W_ih (G, I), W_hh (G, H_out), b_ih and b_hh (G,) or None
    without bias, W_hr (P, H) with a projection, else None."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None


def step_rows(batch_sizes: torch.Tensor) -> list[tuple[int, int]]:
    """(first row, rows) of each step in the packed layout."""
    sizes = batch_sizes.tolist()
    starts = [0]
    for n in sizes[:-1]:
        starts.append(starts[-1] + n)
    return list(zip(starts, sizes))


def as_steps(x: torch.Tensor, batch_sizes: torch.Tensor, owner: str) -> torch.Tensor:
    """The packed rows as (T, B, .) when every sequence runs all T steps, for layers that
    only take such batches (experiment layers); variable lengths are an error."""
    T, B = batch_sizes.numel(), int(batch_sizes[0])
    if int(batch_sizes[-1]) != B:
        raise ValueError(f"{owner}: the input must hold sequences of one length (a tensor, or "
                         f"a PackedSequence of equal lengths), got lengths from "
                         f"{int((batch_sizes == B).sum())} to {T} steps")
    return x.view(T, B, x.shape[1])


def reversed_rows(batch_sizes: torch.Tensor, device) -> torch.Tensor:
    """Row index that reverses every sequence within its own length (its own inverse)."""
    T = batch_sizes.numel()
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes
    step = torch.repeat_interleave(torch.arange(T), batch_sizes)
    seq = torch.arange(step.numel()) - starts[step]
    lengths = (batch_sizes.unsqueeze(0) > torch.arange(int(batch_sizes[0])).unsqueeze(1)).sum(1)
    return (starts[lengths[seq] - 1 - step] + seq).to(device)


class CheckedCall:
    """nn's call checked with errors that name the argument; shared by every layer.

    Reads nn's attribute names (`input_size`, `hidden_size`, `num_layers`, `bidirectional`,
    `proj_size`, `batch_first`) and `impl_name`, `cell`, so it serves nn's own modules too.
    """

    impl_name: str
    cell: str

    def _fail(self, exc: type[Exception], arg: str, expected: str, got: str) -> Exception:
        return exc(f"{self.impl_name} {self.cell}: argument {arg!r} must be {expected}, got {got}")

    def _dtype_device(self):
        weight = self.weight_hh_l0
        return weight.dtype, weight.device

    def check_call(self, input, hx) -> None:
        """Validate the input and the state against the layer, as nn does, naming the argument."""
        if isinstance(input, PackedSequence):
            self._check_tensor("input", input.data,
                               f"the rows of a PackedSequence, (N, {self.input_size})", 2)
            self._check_packing(input)
            self._check_state(hx, int(input.batch_sizes[0]), batched=True)
            return
        batched = (f"(B, T, {self.input_size}) (batch_first)" if self.batch_first
                   else f"(T, B, {self.input_size})")
        self._check_tensor("input", input, f"{batched} or unbatched (T, {self.input_size})",
                           2, 3)
        if input.dim() == 2:
            T, B = input.shape[0], 1
        else:
            B, T = input.shape[:2] if self.batch_first else input.shape[1::-1]
        if T == 0 or B == 0:
            raise self._fail(ValueError, "input", "non-empty: T >= 1 and B >= 1",
                             f"shape {tuple(input.shape)}")
        self._check_state(hx, B, batched=input.dim() == 3)

    def _check_tensor(self, arg, t, expected, *dims):
        if not isinstance(t, torch.Tensor):
            raise self._fail(TypeError, arg, "a torch.Tensor", type(t).__name__)
        if t.dim() not in dims:
            raise self._fail(ValueError, arg, expected, f"{t.dim()}-D shape {tuple(t.shape)}")
        if t.shape[-1] != self.input_size:
            raise self._fail(ValueError, arg, f"of feature size {self.input_size}",
                             f"feature size {t.shape[-1]} (shape {tuple(t.shape)})")
        self._check_like_weights(arg, t)

    def _check_like_weights(self, arg, t):
        dtype, device = self._dtype_device()
        if t.dtype != dtype:
            raise self._fail(TypeError, arg, f"of dtype {dtype} (the layer's)", str(t.dtype))
        if t.device != device:
            raise self._fail(ValueError, arg, f"on device {device} (the layer's)", str(t.device))

    def _check_packing(self, packed):
        sizes = packed.batch_sizes
        if sizes.dtype != torch.int64 or sizes.device.type != "cpu" or sizes.dim() != 1:
            raise self._fail(ValueError, "input.batch_sizes", "a 1-D int64 CPU tensor",
                             f"{sizes.dtype} on {sizes.device}, shape {tuple(sizes.shape)}")
        if sizes.numel() == 0 or bool((sizes < 1).any()) or bool((sizes[1:] > sizes[:-1]).any()):
            raise self._fail(ValueError, "input.batch_sizes",
                             "positive and non-increasing (each step's running sequences)",
                             str(sizes.tolist()))
        if int(sizes.sum()) != packed.data.shape[0]:
            raise self._fail(ValueError, "input.batch_sizes",
                             f"summing to the {packed.data.shape[0]} rows of input.data",
                             f"a sum of {int(sizes.sum())}")
        B = int(sizes[0])
        for arg, idx in (("input.sorted_indices", packed.sorted_indices),
                         ("input.unsorted_indices", packed.unsorted_indices)):
            if idx is not None and (idx.dim() != 1 or idx.numel() != B):
                raise self._fail(ValueError, arg, f"None or a permutation of the {B} sequences",
                                 f"shape {tuple(idx.shape)}")

    def _check_state(self, hx, B, batched):
        if hx is None:
            return
        D = 2 if self.bidirectional else 1
        h_out = self.proj_size or self.hidden_size
        shapes = {"h": (D * self.num_layers, B, h_out),
                  "c": (D * self.num_layers, B, self.hidden_size)}
        layout = "(directions x num_layers, batch, size)"
        if not batched:
            shapes = {k: (s[0], s[2]) for k, s in shapes.items()}
            layout = "(directions x num_layers, size) for an unbatched input"
        if self.cell == "lstm":
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise self._fail(TypeError, "hx", "a pair (h_0, c_0) for an LSTM",
                                 type(hx).__name__)
            pairs = (("hx h_0", hx[0], shapes["h"]), ("hx c_0", hx[1], shapes["c"]))
        else:
            pairs = (("hx", hx, shapes["h"]),)
        for arg, t, expected in pairs:
            if not isinstance(t, torch.Tensor):
                raise self._fail(TypeError, arg, "a torch.Tensor", type(t).__name__)
            if tuple(t.shape) != expected:
                raise self._fail(ValueError, arg,
                                 f"of shape {expected} {layout}",
                                 f"shape {tuple(t.shape)}")
            self._check_like_weights(arg, t)


class RecurrentLayer(CheckedCall, nn.Module):
    """Base of every layer built here: nn's parameters, the checked call, the stacking.

    A subclass implements `run_direction` for one direction of one layer; everything else
    (layers, directions, dropout, layouts, states) is done here.
    """

    impl_name = "recurrent-layer"

    def __init__(self, cell: str, input_size: int, hidden_size: int, *,
                 device=None, dtype=None, **options):
        super().__init__()
        opts = check_options(self.impl_name, cell, input_size, hidden_size, options)
        self.cell, self.mode = cell, NN_MODES[cell]
        self.input_size, self.hidden_size = input_size, hidden_size
        for name, value in opts.items():
            setattr(self, name, value)
        bound = 1.0 / math.sqrt(hidden_size)
        shapes = parameter_shapes(cell, input_size, hidden_size, num_layers=self.num_layers,
                                  bias=self.bias, bidirectional=self.bidirectional,
                                  proj_size=self.proj_size)
        for name, shape in shapes.items():
            p = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
            nn.init.uniform_(p, -bound, bound)   # nn's init for every weight
            self.register_parameter(name, p)

    def flatten_parameters(self) -> None:
        """nn's call that packs the weights for cuDNN; these kernels read them where they are,
        so there is nothing to do (kept so that user code calling it runs unchanged)."""

    def direction_weights(self, layer: int, reverse: bool) -> DirectionWeights:
        suffix = f"_l{layer}{'_reverse' if reverse else ''}"
        return DirectionWeights(*(getattr(self, f"{kind}{suffix}", None) for kind in
                                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")))

    def run_direction(self, x: torch.Tensor, batch_sizes: torch.Tensor, h0: torch.Tensor,
                      c0: torch.Tensor | None, w: DirectionWeights):
        """One direction of one layer, forward in time, on the packed layout.

        x (N, I): the steps' rows (see the module docstring); batch_sizes (T,) a CPU int64
        tensor, non-increasing, summing to N; h0 (B, H_out), c0 (B, H) for LSTM else None,
        with B = batch_sizes[0]. Returns y (N, H_out), and h_n (B, H_out), c_n (B, H) or
        None: each sequence's state after its own last step.
        """
        raise NotImplementedError

    def forward(self, input, hx=None):
        self.check_call(input, hx)
        rows, batch_sizes, order, shape = self._rows(input)
        D, L, B = 1 + self.bidirectional, self.num_layers, int(batch_sizes[0])
        h0, c0 = self._initial_states(hx, input, rows, B, order)
        reverse = reversed_rows(batch_sizes, rows.device) if D == 2 else None
        h_n, c_n, x = [], [], rows
        for layer in range(L):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, training=True)
            outputs = []
            for d in range(D):
                k = layer * D + d
                x_d = x if d == 0 else x.index_select(0, reverse)
                y, h, c = self.run_direction(x_d, batch_sizes, h0[k],
                                             None if c0 is None else c0[k],
                                             self.direction_weights(layer, d == 1))
                outputs.append(y if d == 0 else y.index_select(0, reverse))
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if D == 1 else torch.cat(outputs, 1)
        return self._outputs(input, x, shape, h_n, c_n)

    def _rows(self, input):
        """(rows (N, I), batch_sizes, sorted_indices, shape) of the packed layout, where shape
        is (T, B) for a tensor input (the rows a view where the layout allows), None for a
        packed one."""
        if isinstance(input, PackedSequence):
            return input.data, input.batch_sizes, input.sorted_indices, None
        x = input.unsqueeze(1) if input.dim() == 2 else (
            input.transpose(0, 1) if self.batch_first else input)
        T, B = x.shape[:2]
        return (x.reshape(T * B, self.input_size), torch.full((T,), B, dtype=torch.int64),
                None, (T, B))

    def _initial_states(self, hx, input, rows, B, order):
        """(h0, c0): per layer and direction (B, .) in the packed rows' sequence order."""
        k = (2 if self.bidirectional else 1) * self.num_layers
        if hx is None:
            h0 = rows.new_zeros(k, B, self.proj_size or self.hidden_size)
            return h0, rows.new_zeros(k, B, self.hidden_size) if self.cell == "lstm" else None
        h0, c0 = hx if self.cell == "lstm" else (hx, None)
        if not isinstance(input, PackedSequence) and input.dim() == 2:
            h0, c0 = h0.unsqueeze(1), None if c0 is None else c0.unsqueeze(1)
        if order is not None:
            h0, c0 = h0.index_select(1, order), None if c0 is None else c0.index_select(1, order)
        return h0, c0

    def _outputs(self, input, y, shape, h_n, c_n):
        h = torch.stack(h_n)
        c = torch.stack(c_n) if self.cell == "lstm" else None
        if isinstance(input, PackedSequence):
            if input.unsorted_indices is not None:
                h = h.index_select(1, input.unsorted_indices)
                c = None if c is None else c.index_select(1, input.unsorted_indices)
            out = PackedSequence(y, input.batch_sizes, input.sorted_indices,
                                 input.unsorted_indices)
        else:
            out = y.view(*shape, y.shape[1])
            if input.dim() == 2:
                out, h, c = out.squeeze(1), h.squeeze(1), None if c is None else c.squeeze(1)
            elif self.batch_first:
                out = out.transpose(0, 1)
        return out, ((h, c) if self.cell == "lstm" else h)

    def extra_repr(self) -> str:
        changed = ", ".join(f"{k}={getattr(self, k)!r}" for k, v in OPTIONS.items()
                            if getattr(self, k) != v)
        return f"{self.impl_name}, {self.cell}, {self.input_size}, {self.hidden_size}" + (
            f", {changed}" if changed else "")
