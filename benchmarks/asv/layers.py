"""Speed and memory of one layer call, per implementation x cell x shape x device.

Thin adapters over ``bench/workload.py``, the definition of the measured call
(`Workload.call`) and of the one timing loop (`seconds_per_call`). asv runs this suite,
from this checkout, against older commits' installed code, whose `bench` package may differ
or be absent, so the workload is loaded from this checkout's file by path, never imported as
`bench.workload`: every commit is timed by the same definition. It needs only torch and the
`impls` registry of the commit under test.

Every registered implementation is measured, so one that lands later (or a user's own) joins
the history without an edit here. A combination the commit cannot run (implementation not
registered yet, cell, dtype or device unsupported, no backward pass, no GPU, or a commit
whose `impls` the workload cannot drive) raises NotImplementedError in setup, which asv
records as n/a rather than as a number.

Every number is a ``track_``: asv runs it once and records what it returns, so no asv loop
times anything but the workload's own. One thread everywhere (torch's and numba's): the
history compares commits measured months apart on a shared machine, and a single thread is
the setting whose timings move least with the load.
"""

import importlib.util
import math
import statistics
import sys
from pathlib import Path

#: This checkout's definition of the measured call, found from this file.
WORKLOAD_PATH = Path(__file__).resolve().parents[2] / "bench" / "workload.py"
#: The private name it is loaded under (not `bench.workload`, which may be another commit's).
WORKLOAD_MODULE = "rnnbench_workload"


def load_workload():
    """`bench/workload.py` of this checkout, loaded by path."""
    spec = importlib.util.spec_from_file_location(WORKLOAD_MODULE, WORKLOAD_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[WORKLOAD_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[WORKLOAD_MODULE]
        raise
    return module


# Guarded: the suite must load (and report n/a) against any commit, whatever it lacks.
try:
    import torch

    import impls

    workload = load_workload()
    IMPORT_ERROR = None
except Exception as exc:  # any failure here means "this commit cannot run the suite"
    torch = impls = workload = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

try:
    import numba  # imported here, before asv forks a process per benchmark; pool not started
except ImportError:
    numba = None

#: Implementations known when this suite was written; the registry adds any newer one.
KNOWN_IMPLS = ["numba", "reference", "scripted", "torch", "torch-native"]
IMPLS = sorted(set(KNOWN_IMPLS) | set(impls.names() if impls else ()))
#: The cells kernels are chosen for; the simple RNN's history is not kept (a commit records
#: in minutes rather than a quarter of an hour).
CELLS = ["lstm", "gru"]
#: name shown on the dashboard -> (T, B, I = H); small, so that a commit records in minutes.
SHAPES = {"T32-B8-H64": (32, 8, 64), "T64-B32-H128": (64, 32, 128)}
DEVICES = ["cpu", "cuda"]
DTYPE = "float32"
#: A time per call is the median of BLOCKS blocks of at least BLOCK_SECONDS each.
BLOCKS = 5
BLOCK_SECONDS = 0.05
CLOCK = "wall"
#: Calls before anything is measured: the first compiles (TorchScript, numba), and
#: TorchScript's profiling executor settles on its optimised graph only a few calls later.
WARMUP_CALLS = 5
#: A peak is the median of this many calls' peaks.
PEAK_READS = 3
#: Bumped whenever what is measured changes, so that older series are not mixed in.
#: 2: bench/workload.py's call (canonical weights, y.backward(dy) with the input's grad),
#: timed by its loop, and the layer's own peak memory instead of the process's.
VERSION = "2"


def one_thread():
    """torch and numba (whose team size follows numba.get_num_threads()) on one thread.

    numba first: starting its pool (which set_num_threads does) with the OpenMP threading
    layer sets OpenMP's thread count to numba's pool size, which torch's OpenMP regions
    (oneDNN's RNN) would then use, while torch.get_num_threads() still says 1.
    """
    if numba is not None:
        numba.set_num_threads(1)
    torch.set_num_threads(1)


def check_runnable(impl_name, cell, mode, device, dtype=DTYPE):
    """Raise NotImplementedError (asv: n/a) for a combination this commit cannot run."""
    if workload is None:
        raise NotImplementedError(f"the workload cannot load against this commit: {IMPORT_ERROR}")
    missing = [name for name in ("get", "names", "parameter_shapes") if not hasattr(impls, name)]
    if missing:
        raise NotImplementedError(f"this commit's impls lacks {', '.join(missing)}")
    if impl_name not in impls.names():
        raise NotImplementedError(f"{impl_name!r} is not registered at this commit")
    reason = workload.unsupported_reason(impls.get(impl_name), cell, mode, dtype, device)
    if reason is not None:
        raise NotImplementedError(f"{impl_name}: {reason}")


def median_seconds_per_call(call, device):
    """The median over BLOCKS blocks of the one timing loop, each block calibrated once."""
    calls = workload.calls_per_block(call, BLOCK_SECONDS, device=device, clock=CLOCK)
    return statistics.median(
        workload.seconds_per_call(call, calls, device=device, clock=CLOCK)
        for _ in range(BLOCKS))


class _LayerCall:
    """One workload per parameter combination; a subclass sets `mode`."""

    params = (IMPLS, CELLS, list(SHAPES), DEVICES)
    param_names = ["impl", "cell", "shape", "device"]
    version = VERSION
    timeout = 180
    #: One process per benchmark: every track_ is itself a median of calibrated blocks.
    processes = 1
    mode = None

    def setup(self, impl_name, cell, shape, device):
        check_runnable(impl_name, cell, self.mode, device)
        workload.release_freed_memory_to_the_os()  # before anything is built
        one_thread()
        T, B, size = SHAPES[shape]
        self.device = device
        self.tokens = T * B
        self.workload = workload.Workload(impl_name, cell, self.mode, T=T, B=B, I=size,
                                          H=size, dtype=DTYPE, device=device)
        for _ in range(WARMUP_CALLS):
            self.workload.call()

    def track_seconds_per_call(self, *_):
        """Seconds per `Workload.call`, the median of a few calibrated blocks."""
        return median_seconds_per_call(self.workload.call, self.device)

    track_seconds_per_call.unit = "seconds"

    def track_tokens_per_second(self, *_):
        """Throughput, comparable across shapes: time-steps x batch rows per second."""
        return self.tokens / median_seconds_per_call(self.workload.call, self.device)

    track_tokens_per_second.unit = "tokens/s"

    def track_peak_bytes(self, *_):
        """The memory one call adds at its peak (CPU: peak RSS less RSS before; CUDA:
        max_memory_allocated less allocated before), after the warm-up calls of setup.

        asv measures each benchmark in a process of its own, so the peak is the layer's.
        """
        peaks = [workload.peak_bytes(self.workload.call, device=self.device)[0]
                 for _ in range(PEAK_READS)]
        if None in peaks:  # not measurable here (no /proc/self/clear_refs)
            return math.nan  # asv shows n/a
        return statistics.median(peaks)

    track_peak_bytes.unit = "bytes"


class Inference(_LayerCall):
    """A forward under torch.no_grad(): serving."""

    mode = "inference"


class Training(_LayerCall):
    """A forward and y.backward(dy) through time, with the input's gradient: one step of a
    layer inside a stack."""

    mode = "training"


class FirstCall:
    """Build plus first call in a fresh process: what JIT compilation costs a user.

    Timed as one call of the timing loop. torch (and numba, where installed) are already
    imported; an implementation's own modules load in the timed call, on first build. A
    numba implementation with an on-disk cache loads its kernels from there, as a user's
    second session does.
    """

    params = (IMPLS, CELLS, ["inference", "training"], DEVICES)
    param_names = ["impl", "cell", "mode", "device"]
    version = VERSION
    timeout = 300
    shape = "T32-B8-H64"

    def setup(self, impl_name, cell, mode, device):
        check_runnable(impl_name, cell, mode, device)
        one_thread()

    def track_seconds(self, impl_name, cell, mode, device):
        T, B, size = SHAPES[self.shape]

        def build_and_call():
            workload.Workload(impl_name, cell, mode, T=T, B=B, I=size, H=size, dtype=DTYPE,
                              device=device).call()

        return workload.seconds_per_call(build_and_call, 1, device=device, clock=CLOCK)

    track_seconds.unit = "seconds"
