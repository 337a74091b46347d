"""First call and peak memory of one implementation in one case, each in a fresh process.

A fresh process is the only place where both numbers mean something: the first call then
pays what a user's program pays (JIT compile or cache load, autotune; CUDA context creation
is done before it, so it is not counted), and the memory peak belongs to this case alone.

The processes are `bench.speed.processes` children (preloaded imports, killed from
outside when they overrun the budget). In the child every call's peak is taken on its own
(`bench.workload.peak_bytes`: the peak RSS increase on CPU, allocated bytes on CUDA), with
glibc set to return freed large blocks to the OS so that one call's peak is its own:

- The first call is timed, and its peak (JIT compilation included) kept apart. Calls then
  go on until the last `SETTLE_WINDOW` peaks agree (within 10% or 256 KiB), at most
  `MAX_CALLS`: TorchScript, for one, keeps re-optimising its graph for about five calls,
  and that is compilation, not the layer's memory. The reported peak is the median of the
  last window.
"""

from __future__ import annotations

import statistics

from bench.speed import processes
from bench.speed.cases import Case
from bench.speed.timing import failure, set_core_budget

SETTLE_WINDOW = 3
SETTLE_TOLERANCE = 0.1
SETTLE_SLACK_BYTES = 256 * 1024  # a few pages of noise on tiny cases
MAX_CALLS = 10


def settled(peaks: list[int]) -> bool:
    """Whether the last `SETTLE_WINDOW` peaks agree."""
    if len(peaks) < SETTLE_WINDOW:
        return False
    last = peaks[-SETTLE_WINDOW:]
    spread = max(last) - min(last)
    return spread <= max(SETTLE_TOLERANCE * statistics.median(last), SETTLE_SLACK_BYTES)


def _measure_here(spec: dict) -> dict:
    import torch

    from bench.workload import (
        Workload,
        peak_bytes,
        release_freed_memory_to_the_os,
        seconds_per_call,
    )
    set_core_budget(spec["threads"])
    release_freed_memory_to_the_os()
    args = spec["workload"]
    device = args["device"]
    if device == "cuda":
        torch.zeros(1, device="cuda")  # the CUDA context is startup, not the first call
    workload = Workload(spec["impl"], **args, seed=spec["seed"])
    times = []
    first_peak, method = peak_bytes(
        lambda: times.append(seconds_per_call(workload.call, device=device)), device=device)
    result = {"status": "ok", "first_call_s": times[0], "first_call_peak_bytes": first_peak,
              "peak_bytes": None, "memory_method": method}
    if first_peak is None:
        return result
    peaks = []
    while len(peaks) < MAX_CALLS - 1 and not settled(peaks):
        peaks.append(peak_bytes(workload.call, device=device)[0])
    result.update(peak_bytes=int(statistics.median(peaks[-SETTLE_WINDOW:])),
                  memory_calls=len(peaks), memory_settled=settled(peaks))
    return result


def _child(spec: dict, child: processes.Child) -> None:
    try:
        result = _measure_here(spec)
    except Exception as exc:
        result = failure(exc)
    child.send(("done", result))


def measure(case: Case, impl_name: str, *, seed: int, plugins: list[str],
            budget_s: float) -> dict:
    """Run the fresh-process measurement; an ok entry or a failed one with its reason."""
    spec = {"workload": case.workload_args(), "impl": impl_name, "seed": seed,
            "threads": case.threads, "plugins": list(plugins)}
    ended = processes.run(_child, spec, processes.Watch(budget_s))
    if ended.how == "done":
        return ended.result
    return {"status": "failed", "reason": ended.how, "message": ended.message}
