"""bench.speed.timing: workers, interleaving, core budgets and failure paths; no timing asserted.

The workloads come from tests/plugins (a measuring process knows only what it imports):
`test-log-*` log every call with the process it ran in, the others raise, hang or crash.
"""

import time
from collections import defaultdict

import pytest
from rnnbench_test_impls import LOG_ENV

from bench.speed import timing
from bench.speed.cases import Case, Timing

PLUGINS = ["rnnbench_test_impls"]
CASE = Case("lstm", "inference", T=4, B=2, I=3, H=5, threads=1)
#: Three workers, three samples each, almost no warm-up.
FAST = Timing(target_s=0.001, min_repeats=9, max_repeats=9, warmup_max_s=0.001, budget_s=60.0)


def group(*names, case=CASE):
    return {name: (name, case) for name in names}


@pytest.fixture
def call_log(tmp_path, monkeypatch):
    path = tmp_path / "calls.log"
    monkeypatch.setenv(LOG_ENV, str(path))
    return path


def calls_by_process(path):
    """[(pid, [names in call order])] in the order the processes ran."""
    by_pid = defaultdict(list)
    for line in path.read_text().splitlines():
        pid, name, event, *_ = line.split()
        if event == "forward":
            by_pid[pid].append(name)
    return list(by_pid.items())


@pytest.mark.parametrize("times, steady", [
    ([5.0, 4.0, 1.0, 1.0, 1.0, 1.0], False),          # the first window is still slow
    ([5.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0], True),
    ([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], True),           # medians shrug off one slow call
    ([1.0, 1.0, 1.0, 1.2, 1.2, 1.2], False),          # 20% apart
    ([1.0, 1.0, 1.0, 1.04, 1.04, 1.04], True),        # 4% apart
    ([1.0, 1.0], False),                              # too few
])
def test_is_steady(times, steady):
    assert timing.is_steady(times, window=3, tolerance=0.05) is steady


@pytest.mark.parametrize("exc, reason", [
    (MemoryError(), timing.REASON_OOM),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), timing.REASON_OOM),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
     timing.REASON_OOM),
    (timing.BudgetExceeded("slow"), timing.REASON_BUDGET),
    (ValueError("bad shape"), timing.REASON_EXCEPTION),
])
def test_failure_reasons(exc, reason):
    entry = timing.failure(exc)
    assert entry["status"] == "failed"
    assert entry["reason"] == reason
    assert entry["message"].startswith(type(exc).__name__)


def test_samples_come_from_several_processes_interleaved_in_shuffled_rounds(call_log):
    out = timing.time_group(group("test-log-a", "test-log-b", "test-log-c"), FAST,
                            plugins=PLUGINS)
    for name in ("test-log-a", "test-log-b", "test-log-c"):
        assert out[name]["status"] == "ok"
        assert [len(s) for s in out[name]["samples_s"]] == [3, 3, 3]
        assert out[name]["threads"]["torch"] == 1
    processes = calls_by_process(call_log)
    assert len(processes) == 3
    for worker, (_, calls) in enumerate(processes):
        # each worker: warm-ups, three rounds of three; the first then reads each kernel
        probes = 3 if worker == 0 else 0
        sampling = calls[len(calls) - 9 - probes:len(calls) - probes]
        order = ["test-log-a", "test-log-b", "test-log-c"]
        shift = worker % 3
        order = order[shift:] + order[:shift]  # workers build in rotated order too
        assert sampling == [label for r in range(3) for label in timing.round_order(order, 0, r)]
        assert calls[len(calls) - probes:] == order[:probes]


def test_no_workload_always_comes_right_after_the_same_other_one():
    labels = [f"impl{k} {cell}" for cell in ("lstm", "gru") for k in range(9)]
    rounds = [timing.round_order(labels, 0, r) for r in range(30)]
    assert all(sorted(order) == sorted(labels) for order in rounds)
    before = {label: set() for label in labels}
    for order in rounds:
        for first, second in zip(order, order[1:]):
            before[second].add(first)
    assert all(len(seen) >= 5 for seen in before.values())
    assert timing.round_order(labels, 0, 3) == rounds[3] != rounds[4]




def test_an_implementation_that_raises_fails_alone():
    out = timing.time_group(group("torch-native", "test-raises"), FAST, plugins=PLUGINS)
    assert out["torch-native"]["status"] == "ok"
    assert out["test-raises"]["reason"] == timing.REASON_EXCEPTION
    assert "broken kernel" in out["test-raises"]["message"]


def test_a_crash_is_recorded_and_the_others_go_on():
    out = timing.time_group(group("torch-native", "test-segfault"), FAST, plugins=PLUGINS)
    assert out["test-segfault"]["reason"] == timing.REASON_CRASHED
    assert "SIGSEGV" in out["test-segfault"]["message"]
    assert out["torch-native"]["status"] == "ok"
    assert len(out["torch-native"]["samples_s"]) == 3


@pytest.mark.parametrize("impl", ["test-hangs", "test-spins"])
def test_a_hang_is_killed_from_outside_on_its_budget(impl):
    """A sleep, and a loop in numba's compiled code that no signal handler can interrupt."""
    short = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=0.001,
                   budget_s=3.0, workers=1)
    start = time.monotonic()
    out = timing.time_group(group("torch-native", impl), short, plugins=PLUGINS)
    assert out[impl]["reason"] == timing.REASON_TIMEOUT
    assert "killed from outside" in out[impl]["message"]
    assert out["torch-native"]["status"] == "ok"
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("impl, message", [
    ("test-nan", "y has 40 non-finite values of 40"),
    ("test-short", "y has shape (3, 2, 5), expected (4, 2, 5)"),
    ("test-off", "y differs from the baseline's by up to 0.5"),
])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_a_wrong_output_is_recorded_never_timed(impl, message, mode):
    case = Case("lstm", mode, T=4, B=2, I=3, H=5, threads=1)
    one = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=0.001,
                 budget_s=60.0, workers=1)
    out = timing.time_group(group("torch-native", impl, case=case), one, plugins=PLUGINS,
                            baseline="torch-native")
    assert out["torch-native"]["status"] == "ok"
    assert out[impl]["status"] == "failed"
    assert "samples_s" not in out[impl]
    if impl == "test-short" and mode == "training":  # backward itself refuses the shape
        assert "shape" in out[impl]["message"]
        return
    assert out[impl]["reason"] == timing.REASON_WRONG
    assert message in out[impl]["message"]


def test_one_group_at_a_time():
    other = Case("lstm", "inference", T=4, B=3, I=3, H=5, threads=1)
    with pytest.raises(ValueError, match="one group at a time"):
        timing.time_group({"a": ("torch", CASE), "b": ("torch", other)}, FAST)
