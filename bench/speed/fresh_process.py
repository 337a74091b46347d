"""First call and peak memory of one implementation in one case, each in a fresh process.

A fresh process is the only place where both numbers mean something: the first call then
pays what a user's program pays (JIT compile or cache load, autotune; CUDA context creation
is done before it, so it is not counted), and the memory peak belongs to this case alone.

The processes come from a ``forkserver`` that has imported torch, impls and the
implementations' modules but never computed anything, so each starts clean without paying
the imports (``spawn`` where there is no forkserver). In the child every call's peak is
taken on its own:

- CPU: glibc serves blocks over 64 KiB from mmap (freed memory then leaves the resident set
  instead of being kept for reuse); before each call the heap is trimmed and the peak RSS
  reset (``/proc/self/clear_refs``); after it the peak (``VmHWM``) less the RSS before is
  the call's peak RSS increase. CUDA: ``max_memory_allocated`` after
  ``reset_peak_memory_stats``, less what was allocated before the call.
- The first call is timed, and its peak (JIT compilation included) kept apart. Calls then
  go on until the last `SETTLE_WINDOW` peaks agree (within 10% or 256 KiB), at most
  `MAX_CALLS`: TorchScript, for one, keeps re-optimising its graph for about five calls,
  and that is compilation, not the layer's memory. The reported peak is the median of the
  last window.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import multiprocessing
import signal
import statistics
import sys

from bench.speed.cases import Case
from bench.speed.timing import REASON_BUDGET, REASON_EXCEPTION, REASON_OOM, clock_for, failure

SETTLE_WINDOW = 3
SETTLE_TOLERANCE = 0.1
SETTLE_SLACK_BYTES = 256 * 1024  # a few pages of noise on tiny cases
MAX_CALLS = 10
MMAP_THRESHOLD = 64 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def _preload() -> list[str]:
    """torch, impls, and the modules behind lazily named factories ("module:attribute").

    Importing is startup, not the first call; numba's kernels compile (or load from their
    cache) on the first call, not on import.
    """
    import impls
    lazy = [impl.factory.partition(":")[0] for impl in map(impls.get, impls.names())
            if isinstance(impl.factory, str)]
    return ["torch", "impls", "bench.speed.fresh_process", *sorted(set(lazy))]


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_preload())
        return ctx
    return multiprocessing.get_context("spawn")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _glibc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _cpu_peak(call) -> tuple[int | None, str]:
    """Peak RSS increase of call(), or None and why it cannot be measured here."""
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


def _cuda_peak(call) -> tuple[int, str]:
    import torch
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before, "CUDA max_memory_allocated increase"


def _measure_here(spec: dict) -> dict:
    sys.path[:] = spec["sys_path"]
    import torch

    from bench.workload import Workload
    torch.set_num_threads(spec["threads"])
    for module in spec["plugins"]:
        importlib.import_module(module)
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    case = Case.from_dict(spec["case"])
    if case.device == "cuda":
        torch.zeros(1, device="cuda")  # the CUDA context is startup, not the first call
    workload = Workload(case, spec["impl"], spec["seed"])
    peak_of = _cuda_peak if case.device == "cuda" else _cpu_peak
    clock = clock_for(case.device)
    times = []
    first_peak, method = peak_of(lambda: times.append(clock(workload.call)))
    result = {"status": "ok", "first_call_s": times[0], "first_call_peak_bytes": first_peak,
              "peak_bytes": None, "memory_method": method}
    if first_peak is None:
        return result
    peaks = []
    while len(peaks) < MAX_CALLS - 1 and not settled(peaks):
        peaks.append(peak_of(workload.call)[0])
    result.update(peak_bytes=int(statistics.median(peaks[-SETTLE_WINDOW:])),
                  memory_calls=len(peaks), memory_settled=settled(peaks))
    return result


def settled(peaks: list[int]) -> bool:
    """Whether the last `SETTLE_WINDOW` peaks agree."""
    if len(peaks) < SETTLE_WINDOW:
        return False
    last = peaks[-SETTLE_WINDOW:]
    spread = max(last) - min(last)
    return spread <= max(SETTLE_TOLERANCE * statistics.median(last), SETTLE_SLACK_BYTES)


def _child(spec: dict, conn) -> None:
    try:
        result = _measure_here(spec)
    except Exception as exc:
        result = failure(exc)
    conn.send(result)
    conn.close()


def measure(case: Case, impl_name: str, *, seed: int, threads: int, plugins: list[str],
            budget_s: float) -> dict:
    """Run the fresh-process measurement; an ok entry or a failed one with its reason."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    spec = {"case": case.to_dict(), "impl": impl_name, "seed": seed, "threads": threads,
            "plugins": list(plugins), "sys_path": list(sys.path)}
    proc = ctx.Process(target=_child, args=(spec, send), daemon=True)
    proc.start()
    send.close()
    try:
        if not receive.poll(budget_s):
            return {"status": "failed", "reason": REASON_BUDGET,
                    "message": f"the fresh process took over the budget of {budget_s:.3g} s"}
        try:
            return receive.recv()
        except EOFError:
            proc.join()
            return _death(proc.exitcode)
    finally:
        receive.close()
        if proc.is_alive():
            proc.kill()
        proc.join()


def _death(exitcode: int | None) -> dict:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:
            return {"status": "failed", "reason": REASON_OOM,
                    "message": "the fresh process was killed by SIGKILL, as the kernel's "
                               "out-of-memory killer does"}
        return {"status": "failed", "reason": REASON_EXCEPTION,
                "message": f"the fresh process died of {name}"}
    return {"status": "failed", "reason": REASON_EXCEPTION,
            "message": f"the fresh process exited with status {exitcode} before reporting"}
