"""In-run timing of one case: warm-up until steady, then repeats, implementations interleaved.

The discipline (after pyperf and PyTorch's benchmarks/fastrnns):

- Each implementation is built, its first call timed apart (JIT compile, autotune), then
  warmed up until the medians of the last two windows of calls agree (`is_steady`), or for
  at most `Timing.warmup_max_s`.
- The repeats are interleaved: round r calls every implementation once, in an order rotated
  by r, so drift in the machine (other processes, thermal state) hits all alike and a ratio
  taken within the case stays honest. The garbage collector is off while sampling.
- On CUDA the clock is a pair of CUDA events around the call; the synchronisation before the
  start event and after the end event lies outside the timed region.
- A failure is recorded, never raised: `failure()` names the reason (``exception``,
  ``out of memory``, ``time budget``) and the other implementations go on. The budget per
  implementation covers build, warm-up and repeats; a call that overruns it is interrupted
  by SIGALRM where the platform has it (between bytecodes: a long C call ends first).
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bench.speed.cases import Timing
from bench.workload import Workload

REASON_EXCEPTION = "exception"
REASON_OOM = "out of memory"
REASON_BUDGET = "time budget"


class BudgetExceeded(Exception):
    """An implementation used up its time budget in a case."""


def is_steady(times: list[float], window: int, tolerance: float) -> bool:
    """Whether the medians of the last two `window`-sized runs of `times` agree."""
    if len(times) < 2 * window:
        return False
    before = statistics.median(times[-2 * window:-window])
    last = statistics.median(times[-window:])
    return abs(last - before) <= tolerance * before


def failure(exc: BaseException) -> dict:
    """A failed entry for a results file: the reason class and the message."""
    if isinstance(exc, BudgetExceeded):
        reason = REASON_BUDGET
    elif isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError)
            and ("out of memory" in str(exc) or "can't allocate memory" in str(exc))):
        reason = REASON_OOM
    else:
        reason = REASON_EXCEPTION
    message = f"{type(exc).__name__}: {exc}".strip()
    return {"status": "failed", "reason": reason, "message": message[:2000]}


def _cpu_clock(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cuda_clock(fn: Callable[[], None]) -> float:
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def clock_for(device: str) -> Callable[[Callable[[], None]], float]:
    """Seconds one call takes on `device` (CUDA: events, sync outside the timed region)."""
    return _cuda_clock if device == "cuda" else _cpu_clock


def _alarm_available() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deadline(seconds: float, budget: float):
    """Raise BudgetExceeded if the block runs longer than `seconds` (what is left of `budget`)."""
    message = f"over the budget of {budget:.3g} s for this implementation in this case"
    if seconds <= 0:
        raise BudgetExceeded(message)
    alarm = _alarm_available()
    if alarm:
        def on_alarm(signum, frame):
            raise BudgetExceeded(message)
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if time.perf_counter() - start > seconds:
        raise BudgetExceeded(message)


@dataclass
class _Timed:
    """One implementation's progress through a case."""

    workload: Workload | None = None
    spent: float = 0.0
    first_call: float = 0.0
    warmup: list[float] = field(default_factory=list)
    steady: bool = False
    samples: list[float] = field(default_factory=list)
    wanted: int = 0
    failed: dict | None = None

    def run(self, fn: Callable[[], float], budget: float):
        """fn() under what is left of the budget; the wall time counts against it."""
        start = time.perf_counter()
        try:
            with deadline(budget - self.spent, budget):
                return fn()
        finally:
            self.spent += time.perf_counter() - start


def _warm_up(state: _Timed, build: Callable[[], Workload], timing: Timing, clock) -> None:
    state.workload = state.run(build, timing.budget_s)
    call = state.workload.call
    state.first_call = state.run(lambda: clock(call), timing.budget_s)
    warm_start = state.spent
    while True:
        state.warmup.append(state.run(lambda: clock(call), timing.budget_s))
        state.steady = is_steady(state.warmup, timing.warmup_window, timing.warmup_tolerance)
        if state.steady or state.spent - warm_start >= timing.warmup_max_s:
            break
    per_call = max(statistics.median(state.warmup[-timing.warmup_window:]), 1e-9)
    wanted = min(timing.max_repeats, max(timing.min_repeats, math.ceil(timing.target_s / per_call)))
    affordable = int((timing.budget_s - state.spent) / per_call)
    if affordable < timing.min_repeats:
        raise BudgetExceeded(
            f"{timing.min_repeats} repeats of ~{per_call:.3g} s do not fit in the "
            f"{timing.budget_s - state.spent:.3g} s left of the {timing.budget_s:.3g} s budget")
    state.wanted = min(wanted, affordable)


def _drop(state: _Timed, exc: BaseException) -> None:
    state.failed = failure(exc)
    state.workload = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_case(builders: dict[str, Callable[[], Workload]], timing: Timing,
              device: str) -> dict[str, dict]:
    """Time every implementation of one case; an entry per name, ok or failed."""
    clock = clock_for(device)
    states = {name: _Timed() for name in builders}
    for name, build in builders.items():
        try:
            _warm_up(states[name], build, timing, clock)
        except Exception as exc:
            _drop(states[name], exc)

    order = [name for name, s in states.items() if s.failed is None]
    gc.collect()
    gc.disable()
    try:
        for r in range(max((states[n].wanted for n in order), default=0)):
            shift = r % len(order)
            for name in order[shift:] + order[:shift]:
                state = states[name]
                if state.failed is not None or len(state.samples) >= state.wanted:
                    continue
                try:
                    state.samples.append(
                        state.run(lambda w=state.workload: clock(w.call), timing.budget_s))
                except Exception as exc:
                    _drop(state, exc)
    finally:
        gc.enable()

    out = {}
    for name, state in states.items():
        if state.failed is not None:
            out[name] = state.failed
            continue
        try:
            node = state.workload.autograd_node()
        except Exception as exc:
            node = f"probe failed: {failure(exc)['message']}"
        out[name] = {"status": "ok", "first_call_s": state.first_call,
                     "warmup_s": state.warmup, "steady": state.steady,
                     "samples_s": state.samples, "autograd_node": node}
        state.workload = None
    return out
