"""bench.speed.timing: steadiness, interleaving, repeats and failure paths; no timing asserted."""

import time

import pytest

from bench.speed import timing as measure
from bench.speed.cases import Timing

FAST = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=0.001, budget_s=30.0)


class FakeWorkload:
    """Records its calls in a shared log; `action` runs inside each call."""

    def __init__(self, name, log, action=None):
        self.name, self.log, self.action = name, log, action

    def call(self):
        self.log.append(self.name)
        if self.action:
            self.action()

    def autograd_node(self):
        return f"{self.name}Backward0"


def builders(log, **actions):
    return {name: (lambda n=name, a=action: FakeWorkload(n, log, a))
            for name, action in actions.items()}


@pytest.mark.parametrize("times, steady", [
    ([5.0, 4.0, 1.0, 1.0, 1.0, 1.0], False),          # the first window is still slow
    ([5.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0], True),
    ([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], True),           # medians shrug off one slow call
    ([1.0, 1.0, 1.0, 1.2, 1.2, 1.2], False),          # 20% apart
    ([1.0, 1.0, 1.0, 1.04, 1.04, 1.04], True),        # 4% apart
    ([1.0, 1.0], False),                              # too few
])
def test_is_steady(times, steady):
    assert measure.is_steady(times, window=3, tolerance=0.05) is steady


@pytest.mark.parametrize("exc, reason", [
    (MemoryError(), measure.REASON_OOM),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), measure.REASON_OOM),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
     measure.REASON_OOM),
    (measure.BudgetExceeded("slow"), measure.REASON_BUDGET),
    (ValueError("bad shape"), measure.REASON_EXCEPTION),
])
def test_failure_reasons(exc, reason):
    entry = measure.failure(exc)
    assert entry["status"] == "failed"
    assert entry["reason"] == reason
    assert entry["message"].startswith(type(exc).__name__)


def test_deadline_interrupts_a_hanging_call():
    start = time.perf_counter()
    with pytest.raises(measure.BudgetExceeded, match="budget of 5"):
        with measure.deadline(0.2, 5.0):
            time.sleep(30)
    assert time.perf_counter() - start < 20  # interrupted, not slept out


def test_deadline_refuses_an_exhausted_budget():
    with pytest.raises(measure.BudgetExceeded):
        with measure.deadline(0.0, 1.0):
            pass


def test_repeats_are_interleaved_in_rotated_rounds():
    log = []
    out = measure.time_case(builders(log, a=None, b=None, c=None), FAST, "cpu")
    assert all(out[n]["status"] == "ok" and len(out[n]["samples_s"]) == 3 for n in "abc")
    warmup_calls = sum(1 + len(out[n]["warmup_s"]) for n in "abc")
    sampling = log[warmup_calls:]
    assert sampling == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert out["a"]["autograd_node"] == "aBackward0"


def test_first_call_is_apart_from_warmup_and_samples():
    log = []
    out = measure.time_case(builders(log, a=None), FAST, "cpu")["a"]
    assert len(log) == 1 + len(out["warmup_s"]) + len(out["samples_s"])
    assert out["first_call_s"] >= 0


def test_warmup_runs_until_steady_or_its_time_is_up():
    log = []
    timing = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=60.0,
                    budget_s=60.0, warmup_window=2, warmup_tolerance=0.5)
    out = measure.time_case(builders(log, a=lambda: time.sleep(0.002)), timing, "cpu")["a"]
    assert out["steady"] is True
    assert len(out["warmup_s"]) >= 4


def test_an_implementation_that_raises_fails_alone():
    log = []

    def boom():
        raise RuntimeError("kernel exploded")

    out = measure.time_case(builders(log, good=None, bad=boom), FAST, "cpu")
    assert out["good"]["status"] == "ok" and len(out["good"]["samples_s"]) == 3
    assert out["bad"] == {"status": "failed", "reason": measure.REASON_EXCEPTION,
                          "message": "RuntimeError: kernel exploded"}


def test_a_failure_midway_is_recorded():
    log = []
    calls = []

    def fails_on_the_fifth_call():
        calls.append(1)
        if len(calls) == 5:
            raise MemoryError("no room")

    timing = Timing(target_s=0.001, min_repeats=6, max_repeats=6, warmup_max_s=0.001,
                    budget_s=30.0)
    out = measure.time_case(builders(log, good=None, flaky=fails_on_the_fifth_call),
                            timing, "cpu")
    assert out["flaky"]["reason"] == measure.REASON_OOM
    assert len(out["good"]["samples_s"]) == 6


def test_a_build_failure_is_recorded():
    def build():
        raise TypeError("unsupported argument")

    out = measure.time_case({"broken": build}, FAST, "cpu")
    assert out["broken"]["reason"] == measure.REASON_EXCEPTION
    assert "unsupported argument" in out["broken"]["message"]


def test_an_implementation_over_its_budget_fails_with_that_reason():
    log = []
    timing = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=0.001,
                    budget_s=0.3)
    out = measure.time_case(builders(log, quick=None, slow=lambda: time.sleep(0.2)),
                            timing, "cpu")
    assert out["slow"]["status"] == "failed"
    assert out["slow"]["reason"] == measure.REASON_BUDGET
    assert out["quick"]["status"] == "ok"


def test_repeats_follow_the_target_within_bounds():
    log = []
    timing = Timing(target_s=0.02, min_repeats=3, max_repeats=50, warmup_max_s=0.001,
                    budget_s=30.0)
    out = measure.time_case(builders(log, a=lambda: time.sleep(0.005)), timing, "cpu")["a"]
    assert 3 <= len(out["samples_s"]) <= 50
