"""THE measured call, and the one loop that times it. Every timer of the suite uses this file.

What is timed (after PyTorch's ``benchmarks/fastrnns``: one contract, every runner times it):

- ``inference``: a forward under ``torch.no_grad()``, as a deployed model runs.
- ``training``: a forward, then ``y.backward(dy)`` from a fixed, seeded ``dy``, with the
  input requiring grad, as a layer inside a stack must pass the gradient down. The
  gradients are set to None at the start of each call, so no call pays for accumulating
  into the last one's.

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


def unsupported_reason(impl, cell: str, mode: str, dtype: str, device: str) -> str | None:
    """Why `impl` (an `impls.Implementation`) cannot make this call (N/A), or None."""
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
    return None


def kernel_label(autograd_node: str | None) -> str:
    """A reader's name for the kernel behind an output's autograd node."""
    if autograd_node is None:
        return "unknown"
    for prefix, library in VENDOR_NODES.items():
        if autograd_node.startswith(prefix):
            return f"{library} ({autograd_node})"
    return autograd_node


def canonical_state(cell: str, I: int, H: int, *, dtype: str, device: str,
                    seed: int) -> dict[str, torch.Tensor]:
    """PyTorch-style initial weights, U(-1/sqrt(H), 1/sqrt(H)), the same for every impl."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(H)
    return {
        name: (torch.rand(shape, generator=gen, dtype=torch.float64) * (2 * bound) - bound)
        .to(device=device, dtype=DTYPES[dtype])
        for name, shape in impls.parameter_shapes(cell, I, H).items()
    }


#: How far an output may stray from the baseline implementation's in the same case, per
#: dtype (absolute plus relative): a cheap check that catches a wrong kernel, not a
#: conformance test (that is tests/test_conformance.py, against the float64 oracle).
CROSS_CHECK_TOLERANCE = {"float16": 5e-2, "bfloat16": 5e-2, "float32": 1e-3, "float64": 1e-8}


class WrongOutput(ValueError):
    """A layer's call produced something other than what the call must produce."""


class Workload:
    """`impl_name`'s layer for one setting, with its inputs; `call()` is what gets measured."""

    def __init__(self, impl_name: str, cell: str, mode: str, *, T: int, B: int, I: int,
                 H: int, dtype: str = "float32", device: str = "cpu", seed: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        torch_dtype = DTYPES[dtype]
        self.device = device
        self.training = mode == "training"
        self.layer = impls.get(impl_name).build(cell, input_size=I, hidden_size=H,
                                                device=device, dtype=torch_dtype)
        self.layer.load_state_dict(canonical_state(cell, I, H, dtype=dtype, device=device,
                                                   seed=seed))
        self.layer.train(self.training)
        self.dtype, self.H = dtype, H
        gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.randn(T, B, I, generator=gen).to(device, torch_dtype)
        self.grad_y = torch.randn(T, B, H, generator=gen).to(device, torch_dtype)
        self.x.requires_grad_(self.training)
        self.params = list(self.layer.parameters())

    def call(self) -> torch.Tensor:
        """One measured call: a forward, or a forward and backward. Returns the output y."""
        if not self.training:
            with torch.no_grad():
                y, _ = self.layer(self.x)
            return y
        for p in self.params:
            p.grad = None
        self.x.grad = None
        y, _ = self.layer(self.x)
        y.backward(self.grad_y)
        return y

    def checked_outputs(self) -> dict[str, torch.Tensor]:
        """One more call (not timed) and what it produced: y, and dL/dx in training.

        Raises WrongOutput when a shape or dtype is not the call's, or a value is not finite
        (the inputs and weights are).
        """
        expected = {"y": (*self.x.shape[:2], self.H)}
        produced = {"y": self.call()}
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
            y, _ = self.layer(x)
        return None if y.grad_fn is None else type(y.grad_fn).__name__


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
