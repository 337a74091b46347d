"""Every timer of the suite times the same call, `bench.workload.Workload.call`.

A logging implementation (tests/plugins) records what each of its forwards sees and the
gradient its output gets back. Each timer, the report's harness, the regression gate's
worker, the asv suite and the pytest-benchmark suite, measures it in both modes, and each
must leave the same trace: inference runs without autograd; training runs with autograd,
the input requiring grad (a layer in a stack passes the gradient down), and the backward
starts from the workload's dy, not from ``y.sum()`` (whose gradient is all ones).
"""

import importlib.util
from collections import defaultdict
from pathlib import Path

import pytest
import rnnbench_test_impls
import torch
from rnnbench_test_impls import LOG_ENV

import impls
from bench.gate import run as gate
from bench.gate import worker as gate_worker
from bench.speed import timing
from bench.speed.cases import Case, Timing

ROOT = Path(__file__).resolve().parent.parent
IMPL = "test-log-a"
T, B, SIZE = 6, 3, 8


@pytest.fixture
def call_log(tmp_path, monkeypatch, test_impls):
    path = tmp_path / "calls.log"
    monkeypatch.setenv(LOG_ENV, str(path))
    return path


def trace(path: Path) -> dict[str, set]:
    """{"forward": {(autograd on, input requires grad)}, "backward": {output grad all ones}}"""
    seen = defaultdict(set)
    for line in path.read_text().splitlines():
        _, name, event, *flags = line.split()
        if name == IMPL:
            seen[event].add(tuple(int(f) for f in flags))
    return seen


def assert_the_workloads_call(path: Path, mode: str, probes_kernel: bool = False) -> None:
    seen = trace(path)
    if mode == "inference":
        # the harness also reads the kernel's autograd node once, outside the timed calls
        allowed = {(0, 0), (1, 1)} if probes_kernel else {(0, 0)}
        assert (0, 0) in seen["forward"] and seen["forward"] <= allowed
        assert not seen["backward"]
    else:
        assert seen["forward"] == {(1, 1)}
        assert seen["backward"] == {(0,)}  # dy, never the all-ones gradient of y.sum()


def load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_report_harness_times_the_workload(call_log, mode):
    case = Case("lstm", mode, T=T, B=B, I=SIZE, H=SIZE, threads=1)
    quick = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=0.001,
                   budget_s=60.0, workers=1)
    out = timing.time_group({IMPL: (IMPL, case)}, quick,
                            plugins=[rnnbench_test_impls.__name__])
    assert out[IMPL]["status"] == "ok"
    assert_the_workloads_call(call_log, mode, probes_kernel=True)


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_gate_times_the_workload(call_log, mode):
    spec = {"impls": [IMPL], "cells": ["lstm"], "modes": [mode], "dtype": "float32",
            "shape": [T, B, SIZE], "threads": 1, "block_seconds": 0.001, "clock": "cpu",
            "workload": str(gate.WORKLOAD)}
    assert Path(spec["workload"]) == ROOT / "bench" / "workload.py"
    workload = gate_worker.load_workload(spec["workload"])
    prepared, missing = gate_worker.prepare(torch, impls, workload, spec)
    assert not missing
    gate_worker.block(workload, prepared, spec["clock"])
    assert_the_workloads_call(call_log, mode)


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_asv_suite_times_the_workload(call_log, mode):
    suite = load_by_path("rnnbench_asv_layers", ROOT / "benchmarks" / "asv" / "layers.py")
    assert Path(suite.workload.__file__) == ROOT / "bench" / "workload.py"
    [benchmark] = [cls for cls in (suite.Inference, suite.Training) if cls.mode == mode]
    shape = next(iter(suite.SHAPES))
    instance = benchmark()
    torch_threads = torch.get_num_threads()
    try:
        instance.setup(IMPL, "lstm", shape, "cpu")  # one thread, numba's and torch's
        assert instance.track_seconds_per_call(IMPL, "lstm", shape, "cpu") > 0
    finally:
        if suite.numba is not None:  # later tests size numba's team from its maximum
            suite.numba.set_num_threads(suite.numba.config.NUMBA_NUM_THREADS)
        torch.set_num_threads(torch_threads)
    assert_the_workloads_call(call_log, mode)


class FakeBenchmark:
    """pytest-benchmark's fixture, reduced to calling what it is given a few times."""

    def __init__(self):
        self.extra_info = {}

    def __call__(self, fn):
        for _ in range(3):
            fn()


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_pytest_benchmark_suite_times_the_workload(call_log, mode):
    suite = load_by_path("rnnbench_pytest_layers",
                         ROOT / "benchmarks" / "pytest" / "test_layer_speed.py")
    suite.test_layer_call(FakeBenchmark(), IMPL, "lstm", mode)
    assert_the_workloads_call(call_log, mode)
