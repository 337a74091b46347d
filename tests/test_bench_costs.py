"""bench.speed.costs: the FLOP formula against torch's FlopCounterMode, the bytes BPTT must keep
against what a call produces and what autograd saves."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.speed import costs
from bench.speed.cases import Case
from bench.workload import Workload, sequence_lengths

#: (layers, bidirectional, lengths) of the layers the formulas must cover.
LAYOUTS = [(1, False, None), (2, False, None), (1, True, None), (1, False, "uniform:0.5"),
           (2, True, "uniform:0.5")]
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
#: Implementations whose call FlopCounterMode sees as plain ATen products. The float64
#: `reference` multiplies step by step (x_t W_ih^T inside the loop), `scripted` projects the
#: input in one GEMM first: the same FLOPs either way. `torch-native` (nn's own CPU kernels)
#: counts the same but in one place: on a packed input its reverse direction's backward also
#: takes dh of the rows that join late (their initial state), a product the minimum leaves
#: out. oneDNN's fused kernel (`torch`) is invisible to the counter.
COUNTED = {"reference": "float64", "scripted": "float32", "torch-native": "float32"}


def layout_case(cell, mode, layout, dtype="float32", **sizes):
    layers, bidirectional, lengths = layout
    return Case(cell, mode, **(dict(T=5, B=3, I=7, H=6) | sizes), dtype=dtype, layers=layers,
                bidirectional=bidirectional, lengths=lengths)


@pytest.mark.parametrize("impl", list(COUNTED))
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_flops_match_the_products_torch_counts(impl, layout, cell, mode):
    # Workload.call is exactly what the benchmark times; the count is exact (tolerance 0).
    layers, bidirectional, lengths = layout
    if impl == "torch-native" and bidirectional and lengths and mode == "training":
        pytest.skip("torch-native's packed reverse backward takes more products than needed")
    case = layout_case(cell, mode, layout, dtype=COUNTED[impl], T=6, B=4)
    workload = Workload(impl, **case.workload_args())
    with FlopCounterMode(display=False) as counter:
        workload.call()
    assert costs.flops(case) == counter.get_total_flops()


def test_flops_by_hand_for_two_bidirectional_layers_of_variable_length():
    case = Case("gru", "training", T=10, B=4, I=8, H=16, layers=2, bidirectional=True,
                lengths="uniform:0.5")
    N = sum(sequence_lengths("uniform:0.5", 10, 4))
    assert N == case.tokens and 4 * 5 <= N < 4 * 10
    G, H = 3, 16
    first = 2 * N * G * H * (8 + H)
    second = 2 * N * G * H * (2 * H + H)  # the layer above reads both directions
    assert costs.flops(case) == 2 * (3 * first + 3 * second) - 2 * 2 * 2 * 4 * G * H * H
    inference = Case("gru", "inference", T=10, B=4, I=8, H=16, layers=2, bidirectional=True,
                     lengths="uniform:0.5")
    assert costs.flops(inference) == 2 * (first + second)


def test_flops_grow_with_every_size():
    base = Case("lstm", "inference", T=10, B=4, I=8, H=8)
    assert costs.flops(base) == 2 * 10 * 4 * 4 * 8 * 16
    doubled_T = Case("lstm", "inference", T=20, B=4, I=8, H=8)
    assert costs.flops(doubled_T) == 2 * costs.flops(base)
    both_ways = Case("lstm", "inference", T=10, B=4, I=8, H=8, bidirectional=True)
    assert costs.flops(both_ways) == 2 * costs.flops(base)


def test_gru_has_three_quarters_of_lstm_flops():
    for mode in ("inference", "training"):
        for layout in LAYOUTS:
            lstm = layout_case("lstm", mode, layout, T=100, B=64, I=256, H=256)
            gru = layout_case("gru", mode, layout, T=100, B=64, I=256, H=256)
            assert costs.flops(gru) / costs.flops(lstm) == pytest.approx(0.75)


def test_must_keep_bytes():
    # the numba kernels' memory target case: T=1000, B=32, H=128 float32; LSTM keeps 4 gates,
    # h and c.
    lstm = Case("lstm", "training", T=1000, B=32, I=128, H=128)
    assert costs.must_keep_bytes(lstm) == 1000 * 32 * 128 * 6 * 4
    gru = Case("gru", "training", T=1000, B=32, I=128, H=128, dtype="float64")
    assert costs.must_keep_bytes(gru) == 1000 * 32 * 128 * 4 * 8
    rnn = Case("rnn_tanh", "training", T=10, B=2, I=3, H=5)
    assert costs.must_keep_bytes(rnn) == 10 * 2 * 5 * 1 * 4  # its activation is its state
    inference = Case("rnn_tanh", "inference", T=10, B=2, I=3, H=5, dtype="bfloat16")
    assert costs.must_keep_bytes(inference) == 10 * 2 * 5 * 2
    stacked = Case("lstm", "training", T=10, B=4, I=3, H=5, layers=3, bidirectional=True,
                   lengths="uniform:0.5")
    assert costs.must_keep_bytes(stacked) == stacked.tokens * 2 * 3 * 5 * 6 * 4


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_inference_must_keep_is_the_output(layout, cell):
    case = layout_case(cell, "inference", layout)
    y = Workload("torch", **case.workload_args()).checked_outputs()["y"]
    assert costs.must_keep_bytes(case) == y.numel() * y.element_size()


def saved_bytes(workload: Workload) -> int:
    """Bytes of the distinct storages autograd saves in one call, weights and input aside."""
    given = {t.untyped_storage().data_ptr() for t in (*workload.params, workload.x)}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in given:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        workload.call()
    return sum(saved.values())


@pytest.mark.parametrize("impl", list(COUNTED))
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_training_must_keep_is_at_most_what_autograd_saves(impl, layout, cell):
    # A lower bound: each implementation keeps it and more (a GRU's W_hn h + b_hn, copies).
    case = layout_case(cell, "training", layout, dtype=COUNTED[impl], T=12, B=6, I=16, H=32)
    assert costs.must_keep_bytes(case) <= saved_bytes(Workload(impl, **case.workload_args()))


def test_workload_inference_builds_no_graph_and_training_fills_gradients():
    torch.manual_seed(0)
    inference = Workload("torch", **Case("gru", "inference", T=4, B=2, I=3, H=5).workload_args())
    inference.call()
    assert all(p.grad is None for p in inference.params)
    training = Workload("torch", **Case("gru", "training", T=4, B=2, I=3, H=5).workload_args())
    training.call()
    assert training.x.grad is not None
    assert all(p.grad is not None for p in training.params)
