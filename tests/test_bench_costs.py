"""bench.speed.costs: the FLOP formula against torch's FlopCounterMode, the bytes BPTT must keep."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.speed import costs
from bench.speed.cases import Case
from bench.workload import Workload


@pytest.mark.parametrize("impl", ["torch-native", "scripted"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_flops_match_the_products_torch_counts(impl, cell, mode):
    # Both implementations run as plain ATen products, which FlopCounterMode counts;
    # Workload.call is exactly what the benchmark times.
    case = Case(cell, mode, T=5, B=3, I=7, H=6)
    workload = Workload(impl, **case.workload_args())
    with FlopCounterMode(display=False) as counter:
        workload.call()
    assert costs.flops(case) == counter.get_total_flops()


def test_flops_grow_with_every_size():
    base = Case("lstm", "inference", T=10, B=4, I=8, H=8)
    assert costs.flops(base) == 2 * 10 * 4 * 4 * 8 * 16
    doubled_T = Case("lstm", "inference", T=20, B=4, I=8, H=8)
    assert costs.flops(doubled_T) == 2 * costs.flops(base)


def test_gru_has_three_quarters_of_lstm_flops():
    for mode in ("inference", "training"):
        lstm = Case("lstm", mode, T=100, B=64, I=256, H=256)
        gru = Case("gru", mode, T=100, B=64, I=256, H=256)
        assert costs.flops(gru) / costs.flops(lstm) == pytest.approx(0.75)


def test_must_keep_bytes():
    # the numba kernels' memory target case: T=1000, B=32, H=128 float32; LSTM keeps 4 gates,
    # h and c.
    lstm = Case("lstm", "training", T=1000, B=32, I=128, H=128)
    assert costs.must_keep_bytes(lstm) == 1000 * 32 * 128 * 6 * 4
    gru = Case("gru", "training", T=1000, B=32, I=128, H=128, dtype="float64")
    assert costs.must_keep_bytes(gru) == 1000 * 32 * 128 * 4 * 8
    inference = Case("rnn_tanh", "inference", T=10, B=2, I=3, H=5, dtype="bfloat16")
    assert costs.must_keep_bytes(inference) == 10 * 2 * 5 * 2


def test_workload_inference_builds_no_graph_and_training_fills_gradients():
    torch.manual_seed(0)
    inference = Workload("torch", **Case("gru", "inference", T=4, B=2, I=3, H=5).workload_args())
    inference.call()
    assert all(p.grad is None for p in inference.params)
    training = Workload("torch", **Case("gru", "training", T=4, B=2, I=3, H=5).workload_args())
    training.call()
    assert training.x.grad is not None
    assert all(p.grad is not None for p in training.params)
