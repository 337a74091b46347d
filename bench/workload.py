"""THE measured call, and the one loop that times it. Every timer of the suite uses this file.

What is timed (after PyTorch's ``benchmarks/fastrnns``: one contract, every runner times it):

- ``inference``: a forward under ``torch.no_grad()``, as a deployed model runs.
- ``training``: a forward, then ``y.backward(dy)`` from a fixed, seeded ``dy``, with the
  input requiring grad, as a layer inside a stack must pass the gradient down. The
  gradients are set to None at the start of each call, so no call pays for accumulating
  into the last one's.

The layer is nn's (`impls.layer`): `layers` stacked (nn's ``num_layers``), one or two
directions, and every sequence T long or of `lengths` drawn from a stated distribution. With
lengths the input is a `PackedSequence` of the (T, B, I) input, packed before the call (a
model packs once, outside its layers), and ``dy`` is packed to match the output.

Every implementation gets the same canonical weights and inputs (seeded), so none is timed
on easier numbers (denormals, saturated gates) than another.

The report (`bench.speed`), the regression gate, the asv and pytest-benchmark suites all
use `Workload.call` and `seconds_per_call`. The file imports torch and the `impls` registry
only: the gate's measuring process and the asv suite load it by path, so that the code under
test (an older commit, say) is always timed by this definition, never its own.
"""

from __future__ import annotations

import ctypes
import gc
import math
import time
from collections.abc import Callable

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import impls

MODES = ("inference", "training")
#: The one table of dtypes: the name used in cases and results -> torch's dtype.
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
          "float32": torch.float32, "float64": torch.float64}
#: Clocks a CPU timer may use. wall: elapsed seconds. cpu: seconds this process ran on a
#: CPU, all its threads together; other processes on a busy machine delay a call but add
#: little to it, while more work in the call adds to it (what the gate wants).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}

#: glibc serves blocks above this from mmap, so freed memory leaves the resident set instead
#: of staying in the heap for reuse, and a call's peak RSS is its own.
MMAP_THRESHOLD = 64 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number

#: Autograd node names of PyTorch's vendor RNN kernels, by the library they belong to.
VENDOR_NODES = {"Mkldnn": "oneDNN", "Cudnn": "cuDNN", "Miopen": "MIOpen"}


def unsupported_reason(impl, cell: str, mode: str, dtype: str, device: str, *,
                       layers: int = 1, bidirectional: bool = False,
                       lengths=None) -> str | None:
    """Why `impl` (an `impls.Implementation`) cannot make this call (N/A), or None.

    Read with getattr where the registry grew later, so that an older commit's registry
    (the gate measures one) still answers.
    """
    missing = getattr(impl, "unavailable_reason", None)
    if missing:
        return missing
    if cell not in impl.cells:
        return f"no {cell} cell (has {', '.join(sorted(impl.cells))})"
    if device not in impl.devices:
        return f"no {device} support (runs on {', '.join(sorted(impl.devices))})"
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU visible"
    if DTYPES[dtype] not in impl.dtypes:
        kinds = ", ".join(sorted(str(d).removeprefix("torch.") for d in impl.dtypes))
        return f"no {dtype} support (has {kinds})"
    if mode == "training" and not impl.trainable:
        return "not trainable (no backward pass)"
    lacked = getattr(impl, "lacked", lambda **_: [])(
        num_layers=layers, bidirectional=bidirectional, packed_input=lengths is not None)
    if lacked:
        return f"cannot express {', '.join(lacked)} (declared by the implementation)"
    return None


def kernel_label(autograd_node: str | None) -> str:
    """A reader's name for the kernel behind an output's autograd node."""
    if autograd_node is None:
        return "unknown"
    for prefix, library in VENDOR_NODES.items():
        if autograd_node.startswith(prefix):
            return f"{library} ({autograd_node})"
    return autograd_node


def canonical_state(cell: str, I: int, H: int, *, layers: int = 1, bidirectional: bool = False,
                    dtype: str, device: str, seed: int) -> dict[str, torch.Tensor]:
    """PyTorch-style initial weights, U(-1/sqrt(H), 1/sqrt(H)), the same for every impl."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(H)
    shapes = impls.parameter_shapes(cell, I, H, num_layers=layers, bidirectional=bidirectional)
    return {
        name: (torch.rand(shape, generator=gen, dtype=torch.float64) * (2 * bound) - bound)
        .to(device=device, dtype=DTYPES[dtype])
        for name, shape in shapes.items()
    }


#: The distribution a `lengths` spec names: "uniform:F", lengths uniform over [ceil(F T), T].
UNIFORM = "uniform:"
#: Lengths are drawn from this seed, not the workload's: a case's tokens, FLOPs and bytes are
#: then the case's own, the same in every run, process and implementation.
LENGTHS_SEED = 0


def lengths_fraction(spec) -> float:
    """F of a "uniform:F" spec, 0 < F <= 1; a ValueError names what was expected."""
    named = isinstance(spec, str) and spec.startswith(UNIFORM)
    try:
        fraction = float(spec.removeprefix(UNIFORM)) if named else math.nan
    except ValueError:
        fraction = math.nan
    if not 0 < fraction <= 1:
        raise ValueError(f"argument 'lengths' must be None (every sequence T long), "
                         f"'uniform:F' with 0 < F <= 1, or one length per sequence, got "
                         f"{spec!r}")
    return fraction


def sequence_lengths(lengths, T: int, B: int) -> list[int]:
    """Each sequence's length: all T for None; for "uniform:F" drawn uniformly (seeded) from
    [ceil(F T), T] with the first sequence T long, so the padded input is T steps; or the B
    lengths given, each in [1, T]."""
    if lengths is None:
        return [T] * B
    if isinstance(lengths, str):
        low = math.ceil(lengths_fraction(lengths) * T)
        gen = torch.Generator().manual_seed(LENGTHS_SEED)
        drawn = torch.randint(low, T + 1, (B,), generator=gen).tolist()
        return [T] + drawn[1:]
    try:
        given = list(lengths)
    except TypeError:
        given = []
    if len(given) != B or not all(isinstance(n, int) and not isinstance(n, bool)
                                  for n in given):
        raise ValueError(f"argument 'lengths' must be None, 'uniform:F', or B={B} ints, one "
                         f"per sequence, got {lengths!r}")
    bad = [n for n in given if not 1 <= n <= T]
    if bad:
        raise ValueError(f"argument 'lengths' must hold lengths in [1, T={T}] (positive, "
                         f"none longer than T), got {bad} in {given}")
    return given


def lengths_label(spec: str | None) -> str:
    """A reader's name for a lengths spec: "" for every sequence T long, "U[0.5T,T]"."""
    return "" if spec is None else f"U[{lengths_fraction(spec):g}T,T]"


#: How far an output may stray from the baseline implementation's in the same case, per
#: dtype (absolute plus relative): a cheap check that catches a wrong kernel, not a
#: conformance test (that is tests/test_conformance.py, against the float64 oracle).
CROSS_CHECK_TOLERANCE = {"float16": 5e-2, "bfloat16": 5e-2, "float32": 1e-3, "float64": 1e-8}


class WrongOutput(ValueError):
    """A layer's call produced something other than what the call must produce."""


class Workload:
    """`impl_name`'s layer for one setting, with its inputs; `call()` is what gets measured.

    `layers` is nn's ``num_layers``; `lengths` is None (every sequence T long), a spec such
    as "uniform:0.5" (`sequence_lengths`), or B lengths.
    """

    def __init__(self, impl_name: str, cell: str, mode: str, *, T: int, B: int, I: int,
                 H: int, layers: int = 1, bidirectional: bool = False, lengths=None,
                 dtype: str = "float32", device: str = "cpu", seed: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        sizes = None if lengths is None else sequence_lengths(lengths, T, B)
        torch_dtype = DTYPES[dtype]
        self.device = device
        self.training = mode == "training"
        self.layer = impls.get(impl_name).build(cell, input_size=I, hidden_size=H,
                                                num_layers=layers, bidirectional=bidirectional,
                                                device=device, dtype=torch_dtype)
        self.layer.load_state_dict(canonical_state(cell, I, H, layers=layers,
                                                   bidirectional=bidirectional, dtype=dtype,
                                                   device=device, seed=seed))
        self.layer.train(self.training)
        #: Features of y: both directions' hidden states side by side.
        self.dtype, self.y_features = dtype, (2 if bidirectional else 1) * H
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(T, B, I, generator=gen).to(device, torch_dtype)
        grad_y = torch.randn(T, B, self.y_features, generator=gen).to(device, torch_dtype)
        #: (batch_sizes, sorted_indices, unsorted_indices) of a packed input, else None.
        self.packing = None
        if sizes is not None:
            packed = pack_padded_sequence(x, sizes, enforce_sorted=False)
            self.packing = tuple(packed[1:])
            x = packed.data
            grad_y = pack_padded_sequence(grad_y, sizes, enforce_sorted=False).data
        #: The input's tensor, the leaf that gets dL/dx: (T, B, I), or the packed rows (N, I).
        self.x = x.requires_grad_(self.training)
        self.grad_y = grad_y
        self.input = self._as_input(self.x)
        self.params = list(self.layer.parameters())

    def _as_input(self, x: torch.Tensor):
        return x if self.packing is None else PackedSequence(x, *self.packing)

    def _rows(self, y) -> torch.Tensor:
        """The output's tensor: y itself, or the data of a packed y."""
        return y.data if isinstance(y, PackedSequence) else y

    def call(self):
        """One measured call: a forward, or a forward and backward. Returns the output y."""
        if not self.training:
            with torch.no_grad():
                y, _ = self.layer(self.input)
            return y
        for p in self.params:
            p.grad = None
        self.x.grad = None
        y, _ = self.layer(self.input)
        self._rows(y).backward(self.grad_y)
        return y

    def checked_outputs(self) -> dict[str, torch.Tensor]:
        """One more call (not timed) and what it produced: y (a packed y's data), and dL/dx
        in training.

        Raises WrongOutput when a shape, dtype or packing is not the call's, or a value is
        not finite (the inputs and weights are).
        """
        y = self.call()
        if self.packing is not None:
            if not isinstance(y, PackedSequence):
                raise WrongOutput(f"y is {type(y).__name__}, not a PackedSequence (the input "
                                  "is packed)")
            if not all(_same(a, b) for a, b in zip(y[1:], self.packing)):
                raise WrongOutput("y is packed unlike the input (batch_sizes or sequence "
                                  "order differ)")
        expected = {"y": (*self.x.shape[:-1], self.y_features)}
        produced = {"y": self._rows(y)}
        if self.training:
            produced["dx"] = self.x.grad
            expected["dx"] = tuple(self.x.shape)
        for name, shape in expected.items():
            value = produced[name]
            if not isinstance(value, torch.Tensor):
                raise WrongOutput(f"{name} is {type(value).__name__}, not a tensor")
            if tuple(value.shape) != shape:
                raise WrongOutput(f"{name} has shape {tuple(value.shape)}, expected {shape}")
            if value.dtype != DTYPES[self.dtype]:
                raise WrongOutput(f"{name} is {value.dtype}, expected {DTYPES[self.dtype]}")
            if not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).sum())
                raise WrongOutput(f"{name} has {bad} non-finite values of {value.numel()} "
                                  "(the inputs and weights are finite)")
        return {name: value.detach().clone() for name, value in produced.items()}

    def autograd_node(self) -> str | None:
        """Type of the output's autograd node in a forward with autograd on (not timed).

        It tells which kernel ran: `MkldnnRnnLayerBackward0` is oneDNN's RNN, a generic node
        (e.g. `StackBackward0`) means a loop of ATen ops.
        """
        x = self.x.detach().requires_grad_(True)
        with torch.enable_grad():
            y, _ = self.layer(self._as_input(x))
        grad_fn = self._rows(y).grad_fn
        return None if grad_fn is None else type(grad_fn).__name__


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None) == (b is None) and (a is None or torch.equal(a, b))


def cross_check(outputs: dict[str, torch.Tensor], baseline: dict[str, torch.Tensor],
                dtype: str) -> None:
    """Raise WrongOutput when `outputs` stray from the baseline's beyond the tolerance."""
    tolerance = CROSS_CHECK_TOLERANCE[dtype]
    for name, value in outputs.items():
        reference = baseline[name].to(value.dtype)
        excess = ((value - reference).abs() - tolerance * (1 + reference.abs())).max()
        if excess > 0:
            worst = float((value - reference).abs().max())
            raise WrongOutput(f"{name} differs from the baseline's by up to {worst:.3g} "
                              f"(tolerance {tolerance:g} + {tolerance:g}·|baseline|)")


def seconds_per_call(call: Callable[[], None], calls: int = 1, *, device: str = "cpu",
                     clock: str = "wall") -> float:
    """The timing loop: `calls` calls back to back, seconds per call.

    On CUDA the clock is a pair of events around the block; the synchronisation before the
    start event and after the end event lies outside the timed region.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        for _ in range(calls):
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    now = CLOCKS[clock]
    start = now()
    for _ in range(calls):
        call()
    return (now() - start) / calls


def calls_per_block(call: Callable[[], None], block_s: float, *, device: str = "cpu",
                    clock: str = "wall") -> int:
    """How many calls make a block of at least `block_s` (doubling, as pyperf calibrates)."""
    calls = 1
    while seconds_per_call(call, calls, device=device, clock=clock) * calls < block_s:
        calls *= 2
    return calls


def _glibc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_freed_memory_to_the_os() -> None:
    """Make freed large blocks leave the resident set (glibc), so RSS peaks are per call.

    Call once, early, in a process that measures memory.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _cpu_peak(call: Callable[[], None]) -> tuple[int | None, str]:
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
    except OSError as exc:
        call()
        return None, f"needs Linux's /proc/self/clear_refs to reset the peak RSS ({exc})"
    before = _status_bytes("VmRSS")
    call()
    return _status_bytes("VmHWM") - before, "peak RSS increase"


def _cuda_peak(call: Callable[[], None]) -> tuple[int, str]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before, "CUDA max_memory_allocated increase"


def peak_bytes(call: Callable[[], None], *, device: str = "cpu") -> tuple[int | None, str]:
    """The memory one call adds at its peak, and how it was read (None: not measurable here).

    CPU: the peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` after trimming the
    heap) less the RSS before the call. CUDA: ``max_memory_allocated`` less what was
    allocated before. Meaningful for the layer alone only in a process that does nothing else.
    """
    return _cuda_peak(call) if device == "cuda" else _cpu_peak(call)
