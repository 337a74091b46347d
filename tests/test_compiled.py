"""The torch.compile implementations against the float64 reference, and their compile counts.

Compiling is slow on two cores, so every case keeps B=3 and H=5 (the compiled step's shapes;
T, lengths, layers and directions do not change them) and the compiled graphs are reused.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import impls
from impls.compiled import CompiledLayer, build_compiled_nn
from impls.layer import OPTIONS

from oracle import assert_match, make_inputs, run

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")

#: name -> (sizes, nn's options); every cell takes each, LSTM also the projection.
CASES = {
    "plain": ({}, {}),
    "packed unsorted": ({"layout": "packed", "lengths": [2, 6, 4]}, {}),
    "2 layers bidirectional": ({}, {"num_layers": 2, "bidirectional": True}),
    "no bias": ({}, {"bias": False}),
}
PROJECTION = {"projection": ({}, {"proj_size": 3})}


def factory(name):
    return {"compiled": CompiledLayer, "compiled-nn": build_compiled_nn}[name]


def build(name, cell, I, H, **options):
    return factory(name)(cell, I, H, device="cpu", dtype=torch.float64,
                         **{**OPTIONS, **options})


@pytest.mark.parametrize("name", ["compiled", "compiled-nn"])
@pytest.mark.parametrize("case", [(cell, case) for cell in CELLS for case in
                                  [*CASES, *(PROJECTION if cell == "lstm" else ())]],
                         ids="-".join)
def test_float64_matches_reference_forward_and_every_gradient(name, case):
    cell, case = case
    sizes, options = {**CASES, **PROJECTION}[case]
    sizes = {"T": 6, "B": 3, "I": 4, "H": 5, "with_state": True, "seed": 7, **sizes}
    inputs = make_inputs(cell, **sizes, **options)
    expected = run(impls.get("reference").build(cell, 4, 5, dtype=torch.float64, **options),
                   cell, *inputs, torch.float64)
    got = run(build(name, cell, 4, 5, **options), cell, *inputs, torch.float64)
    assert_match(got, expected, torch.float64, f"{name} {cell} {case}")


def test_compiles_once_per_shape_not_per_length():
    """The first call compiles (a shape no other test uses); a second call, and one with
    another T and a packed input of the same batch, compile nothing."""
    layer = build("compiled", "gru", 2, 7)
    h0 = torch.randn(1, 2, 7, dtype=torch.float64)
    layer(torch.randn(4, 2, 2, dtype=torch.float64), h0)
    first = layer.compiles
    assert first >= 1
    layer(torch.randn(4, 2, 2, dtype=torch.float64), h0)
    packed = pack_sequence([torch.randn(n, 2, dtype=torch.float64) for n in (3, 9)],
                           enforce_sorted=False)
    layer(packed, h0)
    assert layer.compiles == first


def test_compiled_nn_reports_what_dynamo_did():
    layer = build("compiled-nn", "lstm", 2, 3)
    layer(torch.randn(3, 2, 2, dtype=torch.float64))
    assert layer.dynamo_outcome.startswith("graph break")
    assert "runs eagerly" in layer.dynamo_outcome
