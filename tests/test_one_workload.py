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
from torch.nn.utils.rnn import PackedSequence

import impls
from bench.gate import run as gate
from bench.gate import worker as gate_worker
from bench.speed import timing
from bench.speed.cases import Case, Timing
from bench.workload import (
    Workload,
    WrongOutput,
    canonical_state,
    cross_check,
    sequence_lengths,
)

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


@pytest.mark.parametrize("layout", [{}, {"layers": 2, "bidirectional": True}], ids=str)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_report_harness_times_the_workload(call_log, mode, layout):
    case = Case("lstm", mode, T=T, B=B, I=SIZE, H=SIZE, threads=1, **layout)
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


STACKED = {"T": 7, "B": 5, "I": 4, "H": 3, "layers": 2, "bidirectional": True,
           "lengths": "uniform:0.5"}
DTYPES = {"torch": "float32", "reference": "float64"}


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_a_stacked_bidirectional_variable_length_workload_calls(mode):
    outputs = {}
    for impl, dtype in DTYPES.items():
        workload = Workload(impl, "gru", mode, **STACKED, dtype=dtype)
        lengths = sequence_lengths(STACKED["lengths"], STACKED["T"], STACKED["B"])
        assert max(lengths) == 7 and min(lengths) >= 4 and len(lengths) == 5
        y = workload.call()
        assert isinstance(y, PackedSequence) and isinstance(workload.input, PackedSequence)
        assert y.batch_sizes.tolist() == workload.input.batch_sizes.tolist()
        tokens = Case("gru", mode, **STACKED).tokens
        assert tokens == sum(lengths) == workload.x.shape[0] == y.data.shape[0]
        outputs[impl] = workload.checked_outputs()
        assert outputs[impl]["y"].shape == (tokens, 2 * 3)  # both directions side by side
        if mode == "training":
            assert outputs[impl]["dx"].shape == (tokens, 4)
            names = {name for name, p in workload.layer.named_parameters() if p.grad is not None}
            assert names == set(impls.parameter_shapes("gru", 4, 3, num_layers=2,
                                                       bidirectional=True))
        else:
            assert all(p.grad is None for p in workload.params)
    cross_check(outputs["torch"], outputs["reference"], "float32")


def test_canonical_state_covers_every_parameter_of_the_layer():
    state = canonical_state("lstm", 4, 3, layers=3, bidirectional=True, dtype="float32",
                            device="cpu", seed=0)
    shapes = impls.parameter_shapes("lstm", 4, 3, num_layers=3, bidirectional=True)
    assert {name: tuple(t.shape) for name, t in state.items()} == shapes
    assert "weight_ih_l2_reverse" in state
    one = canonical_state("lstm", 4, 3, dtype="float32", device="cpu", seed=0)
    assert list(one) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


@pytest.mark.parametrize("lengths, match", [
    ("uniform:0", "'uniform:F' with 0 < F <= 1, .* got 'uniform:0'"),
    ("uniform:1.5", "'uniform:F' with 0 < F <= 1"),
    ("uniform:half", "'uniform:F' with 0 < F <= 1"),
    ("normal:0.5", "'uniform:F' with 0 < F <= 1"),
    ([0, 3, 4, 5, 6], r"lengths in \[1, T=6\] \(positive, none longer than T\), got \[0\]"),
    ([6, 3, 9, 5, 6], r"none longer than T\), got \[9\]"),
    ([6, 6], "B=5 ints, one per sequence"),
    (6, "B=5 ints, one per sequence"),
])
def test_bad_lengths_are_refused_naming_the_argument(lengths, match):
    with pytest.raises(ValueError, match="argument 'lengths' must") as raised:
        Workload("torch", "lstm", "inference", T=6, B=5, I=4, H=3, lengths=lengths)
    assert raised.match(match)


def test_given_lengths_are_used_as_given():
    workload = Workload("torch", "lstm", "training", T=6, B=3, I=4, H=3, lengths=[2, 6, 1])
    assert workload.packing[0].tolist() == [3, 2, 1, 1, 1, 1]
    assert workload.checked_outputs()["dx"].shape == (9, 4)


def test_an_unpacked_output_for_a_packed_input_is_a_wrong_output(monkeypatch):
    workload = Workload("torch", "lstm", "inference", T=6, B=3, I=4, H=3,
                        lengths="uniform:0.5")
    forward = workload.layer.forward
    monkeypatch.setattr(workload.layer, "forward", lambda x: (forward(x)[0].data, None))
    with pytest.raises(WrongOutput, match="not a PackedSequence"):
        workload.checked_outputs()
