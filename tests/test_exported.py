"""The exported-graph layers (onnxruntime, openvino) against the float64 reference.

Exports take a fraction of a second each, so the cases are few: every cell through three
configurations that between them cover layers, directions, batch_first, bias, unbatched
input and initial states, plus packed input where the runtime expresses it.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import impls
from impls.registry import Implementation

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
exported = pytest.importorskip("impls.exported")

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
I, H = 5, 6

#: (options, input kind, with an initial state)
CONFIGS = {
    "1-layer": (dict(num_layers=1, bidirectional=False, batch_first=False, bias=True),
                "tensor", True),
    "2-layer-bidir-batch-first-no-bias": (
        dict(num_layers=2, bidirectional=True, batch_first=True, bias=False), "tensor", False),
    "2-layer-bidir-unbatched": (dict(num_layers=2, bidirectional=True, bias=True),
                                "unbatched", True),
    "2-layer-bidir-packed": (dict(num_layers=2, bidirectional=True, bias=True),
                             "packed", True),
}


def _runtime(name: str):
    pytest.importorskip(name)
    return getattr(exported, f"build_{name}")


def _build(runtime: str, cell: str, **options):
    options = {**dict(num_layers=1, bias=True, batch_first=False, dropout=0.0,
                      bidirectional=False, proj_size=0), **options}
    layer = _runtime(runtime)(cell, I, H, device=torch.device("cpu"), dtype=torch.float32,
                              **options)
    reference = impls.get("reference").build(cell, I, H, dtype=torch.float64, **options)
    reference.load_state_dict(layer.state_dict())
    return layer, reference


def _state(layer, B):
    """A random initial state, or None; B None for an unbatched input."""
    shape = (2 if layer.bidirectional else 1) * layer.num_layers, *([B] if B else []), H
    return (torch.randn(shape), torch.randn(shape)) if layer.cell == "lstm" else torch.randn(
        shape)


def _double(t):
    return tuple(s.double() for s in t) if isinstance(t, tuple) else t.double()


def _assert_matches(got, want):
    got_y, got_state = got
    want_y, want_state = want
    if isinstance(got_y, torch.nn.utils.rnn.PackedSequence):
        got_y, want_y = got_y.data, want_y.data
    got_state = got_state if isinstance(got_state, tuple) else (got_state,)
    want_state = want_state if isinstance(want_state, tuple) else (want_state,)
    for g, w in zip((got_y, *got_state), (want_y, *want_state), strict=True):
        assert g.dtype == torch.float32 and g.shape == w.shape
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("runtime", ("onnxruntime", "openvino"))
def test_matches_the_reference(runtime, cell, config):
    options, kind, with_state = CONFIGS[config]
    if kind == "packed" and "packed_input" in exported.LACKS[runtime]:
        pytest.skip(f"{runtime} declares packed_input lacked")
    torch.manual_seed(0)
    layer, reference = _build(runtime, cell, **options)
    if kind == "packed":
        seqs = [torch.randn(n, I) for n in (3, 7, 5)]
        x, x64 = (pack_sequence(seqs, enforce_sorted=False),
                  pack_sequence([s.double() for s in seqs], enforce_sorted=False))
    else:
        shape = (7, I) if kind == "unbatched" else (4, 7, I) if layer.batch_first else (7, 4, I)
        x = torch.randn(shape)
        x64 = x.double()
    B = None if kind == "unbatched" else 3 if kind == "packed" else 4
    hx = _state(layer, B) if with_state else None
    with torch.no_grad():
        got = layer(x, hx)
        want = reference(x64, None if hx is None else _double(hx))
    _assert_matches(got, want)
    assert layer.exports == 1 and layer.threads == torch.get_num_threads()


@pytest.mark.parametrize("runtime", ("onnxruntime", "openvino"))
def test_new_weights_are_exported_again(runtime):
    torch.manual_seed(1)
    layer, reference = _build(runtime, "lstm", num_layers=2)
    x = torch.randn(5, 3, I)
    with torch.no_grad():
        layer(x)
        fresh = torch.nn.LSTM(I, H, num_layers=2).state_dict()
        layer.load_state_dict(fresh)
        reference.load_state_dict(fresh)
        _assert_matches(layer(x), reference(x.double()))
        assert layer.exports == 2
        for p, q in zip(layer.parameters(), reference.parameters(), strict=True):
            p.add_(0.1)  # as an optimiser step does: in place
            q.add_(0.1)
        _assert_matches(layer(x), reference(x.double()))
    assert layer.exports == 3


@pytest.mark.parametrize("runtime", ("onnxruntime", "openvino"))
def test_new_length_batch_or_layout_runs_the_same_graph(runtime):
    layer, _ = _build(runtime, "gru", bidirectional=True)
    with torch.no_grad():
        for x in (torch.randn(3, 2, I), torch.randn(9, 5, I), torch.randn(1, 1, I),
                  torch.randn(4, I)):
            layer(x)
        layer(torch.randn(6, 3, I), torch.zeros(2, 3, H))
    assert layer.exports == 1


@pytest.mark.parametrize("runtime", ("onnxruntime", "openvino"))
def test_lacked_options_are_named(runtime):
    build = _runtime(runtime)
    impl = Implementation(name=runtime, factory=build, cells=frozenset(CELLS),
                          devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}),
                          trainable=False, lacks=exported.LACKS[runtime])
    with pytest.raises(ValueError, match="'proj_size' cannot be expressed"):
        impl.build("lstm", I, H, proj_size=2)
    layer = impl.build("gru", I, H)
    packed = pack_sequence([torch.randn(3, I), torch.randn(2, I)])
    if "packed_input" in exported.LACKS[runtime]:
        with pytest.raises(ValueError, match="'input'.*PackedSequence input cannot be expressed"):
            layer(packed)
    else:
        layer(packed)


@pytest.mark.parametrize("runtime", ("onnxruntime", "openvino"))
def test_backward_is_an_error_naming_the_backend(runtime):
    layer, _ = _build(runtime, "rnn_tanh")
    x = torch.randn(4, 2, I, requires_grad=True)
    y, h = layer(x)
    with pytest.raises(RuntimeError, match=f"{runtime} rnn_tanh: inference only"):
        (y.sum() + h.sum()).backward()


@pytest.mark.parametrize("runtime", ("onnxruntime", "openvino"))
def test_training_dropout_is_refused_not_skipped(runtime):
    layer, _ = _build(runtime, "lstm", num_layers=2, dropout=0.5)
    with pytest.raises(ValueError, match="'dropout'"):
        layer(torch.randn(3, 2, I))
    layer.eval()
    layer(torch.randn(3, 2, I))
