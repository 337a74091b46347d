"""Timing a group of workloads in worker processes: warm-up until steady, then interleaved samples.

The discipline (after pyperf and PyTorch's ``benchmarks/fastrnns``):

- The samples of a case come from `Timing.workers` processes, started one after the other
  (never two at once: each gets the case's cores to itself). A process's memory layout,
  allocator state and clock frequency shift its times as a whole; samples from several
  processes let the intervals include that spread (`bench.speed.stats`).
- In each process every workload of the group is built and its first call timed (JIT
  compile, autotune; the call's outputs are checked, see below), then warmed up until the
  medians of the last two windows of calls agree (`is_steady`), or for at most
  `Timing.warmup_max_s`. The first process also reads which kernel ran (not timed).
- The samples are interleaved: round r calls every workload once, in an order shuffled
  afresh each round (`round_order`, seeded), so drift in the machine (other processes,
  thermal state) hits all alike, a ratio taken within the group stays honest, and no
  workload always comes right after the same other one. The garbage collector is off while
  sampling, and each sampled call comes `SETTLE_S` after the one before: thread pools that
  spin-wait after a call (XLA's, under jax; ONNX Runtime's, which its layer now turns off)
  would otherwise take the cores from the next implementation's call (measured: a torch
  call at batch 1 right after a jax call took 1.8x its time; after a pause of 2 ms, its own).
- Every process gets the case's core budget: torch's threads and numba's (whose kernels hold
  their BLAS to one thread per team member), recorded per entry as what actually ran.
- Each call is timed by `bench.workload.seconds_per_call`, the suite's one timing loop.
- Every workload's outputs are checked once before it is timed: shape, dtype, finite values,
  and closeness to the baseline implementation's in the same case (``wrong output``).
- A failure is recorded, never raised, and the others go on. An exception names its reason
  (``exception``, ``out of memory``, ``time budget``); a workload that overruns its budget is
  killed from outside (``timeout``: a hang in native code ignores everything else) and one
  that takes its process down is ``crashed`` (with the signal and the last stderr); either
  way the process is started again without it.
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
from dataclasses import dataclass, field

from bench.speed import processes
from bench.speed.cases import Case, Timing

#: The pause before each sampled call (see the module's docstring), not timed.
SETTLE_S = 0.005
REASON_EXCEPTION = "exception"
REASON_OOM = "out of memory"
REASON_BUDGET = "time budget"
REASON_WRONG = "wrong output"
REASON_TIMEOUT = processes.TIMEOUT
REASON_CRASHED = processes.CRASHED


class BudgetExceeded(Exception):
    """An implementation cannot fit its measurement into its time budget in a case."""


def is_steady(times: list[float], window: int, tolerance: float) -> bool:
    """Whether the medians of the last two `window`-sized runs of `times` agree."""
    if len(times) < 2 * window:
        return False
    before = statistics.median(times[-2 * window:-window])
    last = statistics.median(times[-window:])
    return abs(last - before) <= tolerance * before


def failure(exc: BaseException) -> dict:
    """A failed entry for a results file: the reason class and the message."""
    from bench.workload import WrongOutput
    if isinstance(exc, BudgetExceeded):
        reason = REASON_BUDGET
    elif isinstance(exc, WrongOutput):
        reason = REASON_WRONG
    elif isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError)
            and ("out of memory" in str(exc) or "can't allocate memory" in str(exc))):
        reason = REASON_OOM
    else:
        reason = REASON_EXCEPTION
    message = f"{type(exc).__name__}: {exc}".strip()
    return {"status": "failed", "reason": reason, "message": message[:2000]}


def set_core_budget(threads: int) -> dict:
    """Give this process `threads` cores: torch's threads and numba's. Returns what ran.

    numba first: starting its pool under the OpenMP threading layer sets OpenMP's thread
    count to the pool's size, which torch's OpenMP regions (oneDNN's RNN) would then use
    whatever torch.get_num_threads() says; torch's setting, made last, is what holds.
    """
    import torch
    ran = {}
    try:
        import numba
    except ImportError:
        numba = None
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        ran["numba"] = numba.get_num_threads()
    torch.set_num_threads(threads)
    ran.update(torch=torch.get_num_threads(), torch_interop=torch.get_num_interop_threads())
    return ran


# -- in the worker process ---------------------------------------------------------------


@dataclass
class _Timed:
    """One workload's progress through a worker."""

    workload: object = None
    spent: float = 0.0
    first_call: float = 0.0
    warmup: list[float] = field(default_factory=list)
    steady: bool = False
    samples: list[float] = field(default_factory=list)
    wanted: int = 0
    failed: dict | None = None


def _warm_up(state: _Timed, build, timing: Timing, budget_left: float, call_time) -> dict:
    """Build, first call (its outputs checked and returned), warm-up, and the repeats wanted.
    """
    start = time.perf_counter()
    state.workload = build()
    outputs = state.workload.checked_outputs()
    state.first_call = time.perf_counter() - start
    warm_start = time.perf_counter()
    while True:
        state.warmup.append(call_time(state.workload))
        state.steady = is_steady(state.warmup, timing.warmup_window, timing.warmup_tolerance)
        if state.steady or time.perf_counter() - warm_start >= timing.warmup_max_s:
            break
    state.spent = time.perf_counter() - start
    per_call = max(statistics.median(state.warmup[-timing.warmup_window:]), 1e-9)
    per_worker = timing.target_s / timing.workers
    fewest = math.ceil(timing.min_repeats / timing.workers)
    most = max(fewest, math.ceil(timing.max_repeats / timing.workers))
    wanted = min(most, max(fewest, math.ceil(per_worker / per_call)))
    affordable = int((budget_left - state.spent) / per_call)
    if affordable < fewest:
        raise BudgetExceeded(
            f"{fewest} repeats of ~{per_call:.3g} s do not fit in the "
            f"{budget_left - state.spent:.3g} s left of the {timing.budget_s:.3g} s budget")
    state.wanted = min(wanted, affordable)
    return outputs


def _cross_check(states: dict, outputs: dict, spec: dict) -> None:
    """Fail every workload whose outputs stray from the baseline implementation's (same cell)."""
    from bench.workload import WrongOutput, cross_check
    baselines = {spec["workloads"][label][1]["cell"]: outputs[label] for label in outputs
                 if spec["workloads"][label][0] == spec["baseline"]}
    for label, produced in outputs.items():
        impl, args = spec["workloads"][label]
        if impl == spec["baseline"] or args["cell"] not in baselines:
            continue
        try:
            cross_check(produced, baselines[args["cell"]], args["dtype"])
        except WrongOutput as exc:
            states[label] = _Timed(failed=failure(exc))


def round_order(labels: list[str], seed: int, r: int) -> list[str]:
    """The order of sampling round `r`: `labels` shuffled by a generator seeded by (seed, r)."""
    order = list(labels)
    random.Random(f"{seed}/{r}").shuffle(order)
    return order


def _worker(spec: dict, child: processes.Child) -> None:
    """One worker process: every workload of the group warmed up, then sampled interleaved."""
    from bench.workload import Workload, seconds_per_call
    ran = set_core_budget(spec["threads"])
    timing = Timing.from_dict(spec["timing"])
    device = spec["device"]

    def call_time(workload):
        return seconds_per_call(workload.call, device=device)

    order = spec["order"]
    states = {label: _Timed() for label in order}
    outputs = {}
    for label in order:
        impl, args = spec["workloads"][label]
        child.send(("at", label))
        try:
            outputs[label] = _warm_up(
                states[label], lambda i=impl, a=args: Workload(i, **a, seed=spec["seed"]),
                timing, spec["budget_left"][label], call_time)
        except Exception as exc:
            states[label] = _Timed(failed=failure(exc))
    _cross_check(states, outputs, spec)
    del outputs

    live = [label for label in order if states[label].failed is None]
    gc.collect()
    gc.disable()
    try:
        for r in range(max((states[label].wanted for label in live), default=0)):
            for label in round_order(live, spec["seed"], r):
                state = states[label]
                if state.failed is not None or len(state.samples) >= state.wanted:
                    continue
                child.send(("at", label))
                time.sleep(SETTLE_S)
                try:
                    state.samples.append(call_time(state.workload))
                except Exception as exc:
                    state.failed, state.workload = failure(exc), None
    finally:
        gc.enable()

    out = {}
    for label, state in states.items():
        if state.failed is not None:
            out[label] = state.failed
            continue
        node = None
        if spec["probe_kernel"]:
            child.send(("at", label))
            try:
                node = state.workload.autograd_node()
            except Exception as exc:
                node = f"probe failed: {failure(exc)['message']}"
        out[label] = {"status": "ok", "first_call_s": state.first_call,
                      "warmup_s": state.warmup, "steady": state.steady,
                      "samples_s": state.samples, "autograd_node": node, "threads": ran}
        state.workload = None
    child.send(("done", out))


# -- in the parent ------------------------------------------------------------------------


class _LabelWatch(processes.Watch):
    """A worker's deadline: what is left of the budget of the workload it runs now."""

    def __init__(self, budget_left: dict[str, float], budget_s: float,
                 startup_s: float) -> None:
        self.budget_left = budget_left
        self.budget_s = budget_s
        self.current: str | None = None
        self._since = time.monotonic()
        self._startup_s = startup_s

    def _charge(self) -> None:
        now = time.monotonic()
        if self.current is not None:
            self.budget_left[self.current] -= now - self._since
        self._since = now

    def seen(self, message) -> None:
        self._charge()
        self.current = message[1]

    def deadline(self) -> float:
        if self.current is None:
            return self._since + self._startup_s
        return self._since + max(self.budget_left[self.current], 0.0)

    def overrun(self) -> str:
        if self.current is None:
            return f"the worker did not start within {self._startup_s:.3g} s"
        return (f"killed from outside: still running after the {self.budget_s:.3g} s "
                "budget of this implementation in this case was used up")


#: Seconds a worker may take to start and import plugins before its first message.
STARTUP_S = 60.0


def time_group(workloads: dict[str, tuple[str, Case]], timing: Timing, *, seed: int = 0,
               plugins: list[str] = (), baseline: str | None = None,
               progress=None) -> dict[str, dict]:
    """Time every (implementation, case) of one group; an entry per label, ok or failed.

    The cases share everything but their cell (and so their device and core budget). Every
    workload's outputs are checked once (shape, dtype, finite values) and, where `baseline`
    is in the group, against the baseline implementation's of the same cell; a workload that
    fails is recorded as ``wrong output`` and never timed.
    """
    if not workloads:
        return {}
    cases = {case.group for _, case in workloads.values()}
    if len(cases) != 1:
        raise ValueError(f"one group at a time, got {sorted(cases)}")
    _, some_case = next(iter(workloads.values()))
    budget_left = {label: timing.budget_s for label in workloads}
    per_worker: dict[str, list[dict]] = {label: [] for label in workloads}
    failed: dict[str, dict] = {}
    labels = list(workloads)
    worker = 0
    while worker < timing.workers:
        live = [label for label in labels if label not in failed]
        if not live:
            break
        shift = worker % len(live)
        spec = {"workloads": {label: (impl, case.workload_args())
                              for label, (impl, case) in workloads.items() if label in live},
                "order": live[shift:] + live[:shift], "timing": timing.to_dict(),
                "seed": seed, "device": some_case.device, "threads": some_case.threads,
                "baseline": baseline, "probe_kernel": not any(per_worker.values()),
                "budget_left": {label: budget_left[label] for label in live},
                "plugins": list(plugins)}
        if progress:
            progress.show(f"{some_case.group}: worker {worker + 1} of {timing.workers}")
        watch = _LabelWatch(budget_left, timing.budget_s, STARTUP_S)
        ended = processes.run(_worker, spec, watch)
        if ended.how != "done":
            culprit = watch.current
            entry = {"status": "failed", "reason": ended.how, "message": ended.message}
            if culprit is None:  # nothing ran: every workload shares the fate
                failed.update({label: entry for label in live})
                break
            failed[culprit] = {**entry, "message": f"in worker {worker + 1}: {ended.message}"}
            continue  # the same worker again, without the culprit
        for label, entry in ended.result.items():
            if entry["status"] == "ok":
                per_worker[label].append(entry)
            else:
                failed.setdefault(label, entry)
        worker += 1
    return {label: failed.get(label) or _merge(per_worker[label]) for label in labels}


def _merge(entries: list[dict]) -> dict:
    """One entry from the workers' entries for the same workload: samples kept per process."""
    first = entries[0]  # the only worker that read the kernel
    return {"status": "ok", "first_call_s": first["first_call_s"],
            "warmup_s": [e["warmup_s"] for e in entries],
            "steady": all(e["steady"] for e in entries),
            "samples_s": [e["samples_s"] for e in entries],
            "autograd_node": first["autograd_node"], "threads": first["threads"]}
