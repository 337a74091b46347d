"""bench.speed.fresh_process: peak memory against a known allocation, and the failure paths.

The implementations live in tests/plugins: a fresh process knows only what it imports,
exactly as with a user's ``--plugin``.
"""

import sys

import pytest
from rnnbench_test_impls import BALLAST_MIB

from bench.speed import fresh_process
from bench.speed.cases import Case
from bench.speed.timing import REASON_CRASHED, REASON_EXCEPTION, REASON_TIMEOUT

CASE = Case("lstm", "inference", T=10, B=2, I=16, H=16)


@pytest.fixture(scope="module")
def plugin():
    return "rnnbench_test_impls"


def measure(impl, plugin, budget_s=120.0, case=CASE):
    return fresh_process.measure(case, impl, seed=0, plugins=[plugin], budget_s=budget_s)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset is Linux's")
def test_peak_memory_sees_a_known_allocation(plugin):
    plain = measure("torch-native", plugin)
    heavy = measure("test-ballast", plugin)
    assert plain["status"] == heavy["status"] == "ok"
    assert plain["memory_method"] == "peak RSS increase"
    extra_mib = (heavy["peak_bytes"] - plain["peak_bytes"]) / 2 ** 20
    assert extra_mib == pytest.approx(BALLAST_MIB, rel=0.1)
    assert plain["first_call_s"] > 0
    assert plain["memory_settled"] and heavy["memory_settled"]
    assert heavy["first_call_peak_bytes"] >= BALLAST_MIB * 2 ** 20


@pytest.mark.parametrize("peaks, done", [
    ([47, 32, 13, 14], False),                 # TorchScript still optimising
    ([47, 32, 13, 14, 2.4, 2.5, 2.5], True),
    ([3.2, 2.2, 2.2], False),                  # 3.2 vs 2.2: 45% apart
    ([2.2, 2.2, 2.15], True),
    ([0.1, 0.2, 0.15], True),                  # within the few-page slack
])
def test_settled_wants_agreeing_peaks(peaks, done):
    mib = [int(p * 2 ** 20) for p in peaks]
    assert fresh_process.settled(mib) is done


def test_training_memory_is_at_least_what_the_output_needs(plugin):
    case = Case("lstm", "training", T=200, B=16, I=64, H=64)
    result = measure("torch-native", plugin, case=case)
    assert result["status"] == "ok"
    assert result["peak_bytes"] >= case.T * case.B * case.H * 4


def test_an_exception_in_the_fresh_process_is_reported(plugin):
    result = measure("test-raises", plugin)
    assert result["status"] == "failed"
    assert result["reason"] == REASON_EXCEPTION
    assert "broken kernel" in result["message"]


def test_a_killed_fresh_process_is_recorded_as_crashed(plugin):
    result = measure("test-killed", plugin)
    assert result["reason"] == REASON_CRASHED
    assert "SIGKILL" in result["message"] and "out-of-memory" in result["message"]


def test_a_segfault_is_recorded_with_its_signal(plugin):
    result = measure("test-segfault", plugin)
    assert result["reason"] == REASON_CRASHED
    assert "SIGSEGV" in result["message"]


def test_a_hanging_fresh_process_is_killed_on_its_budget(plugin):
    result = measure("test-hangs", plugin, budget_s=1.0)
    assert result["reason"] == REASON_TIMEOUT
