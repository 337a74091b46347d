"""The `jax` layer against the float64 oracle and against torch.nn in float32, forward and
every gradient; its jit cache; its inference path.

Every compile costs about a second, so the cases share sizes: layer 0 of every case runs on
the same (I, H) and lengths, and only what a case is about changes the compiled program.
"""

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_sequence

jax = pytest.importorskip("jax")

import impls  # noqa: E402
from impls import jax_scan  # noqa: E402
from impls.jax_scan import JaxLayer  # noqa: E402

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
I, H, P = 5, 6, 3
LENGTHS = (3, 7, 5)

#: name -> (constructor options, packed input)
CASES = {
    "plain": ({}, False),
    "packed unsorted": ({}, True),
    "2 layers bidirectional": ({"num_layers": 2, "bidirectional": True}, True),
    "no bias": ({"bias": False}, False),
    "projection": ({"proj_size": P}, True),
}


def make_input(packed: bool, dtype) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
    """The call's input and the leaf tensor holding its rows (what dL/dx is taken of)."""
    if packed:
        seqs = [torch.randn(n, I, dtype=dtype) for n in LENGTHS]
        x = pack_sequence(seqs, enforce_sorted=False)
        rows = x.data.requires_grad_()
        return x._replace(data=rows), rows
    rows = torch.randn(max(LENGTHS), len(LENGTHS), I, dtype=dtype, requires_grad=True)
    return rows, rows


def make_state(layer, dtype) -> list[torch.Tensor]:
    shape = ((1 + layer.bidirectional) * layer.num_layers, len(LENGTHS))
    h0 = torch.randn(*shape, layer.proj_size or H, dtype=dtype, requires_grad=True)
    if layer.cell == "lstm":
        return [h0, torch.randn(*shape, H, dtype=dtype, requires_grad=True)]
    return [h0]


def outputs_and_grads(layer, x, rows, state):
    """(y rows, h_n[, c_n]) and the gradients of a random projection of them wrt the input
    rows, the initial states and every parameter."""
    y, final = layer(x, (state if len(state) > 1 else state[0]) if state else None)
    y = y.data if isinstance(y, PackedSequence) else y
    outs = [y, *(final if isinstance(final, tuple) else (final,))]
    generator = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype)).sum()
               for o in outs)
    grads = torch.autograd.grad(loss, [rows, *state, *layer.parameters()])
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("initial_state", [False, True], ids=["zero state", "given state"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cell", CELLS)
def test_float64_matches_the_reference(cell, case, initial_state):
    options, packed = CASES[case]
    if "proj_size" in options and cell != "lstm":
        pytest.skip("nn projects LSTM states only")
    torch.manual_seed(0)
    reference = impls.get("reference").build(cell, I, H, dtype=torch.float64, **options)
    layer = JaxLayer(cell, I, H, dtype=torch.float64, **options)
    layer.load_state_dict(reference.state_dict())
    x, rows = make_input(packed, torch.float64)
    state = make_state(layer, torch.float64) if initial_state else []

    expected, expected_grads = outputs_and_grads(reference, x, rows, state)
    got, got_grads = outputs_and_grads(layer, x, rows, state)
    for e, g in zip(expected + list(expected_grads), got + list(got_grads), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_torch_nn(cell):
    torch.manual_seed(0)
    nn_layer = impls.get("torch").build(cell, I, H, dtype=torch.float32)
    layer = JaxLayer(cell, I, H, dtype=torch.float32)
    layer.load_state_dict(nn_layer.state_dict())
    x, rows = make_input(True, torch.float32)
    state = make_state(layer, torch.float32)

    expected, expected_grads = outputs_and_grads(nn_layer, x, rows, state)
    got, got_grads = outputs_and_grads(layer, x, rows, state)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    for e, g in zip(expected_grads, got_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4)


def test_same_shapes_do_not_retrace(monkeypatch):
    traces = []
    step = jax_scan.STEPS["rnn_relu"]
    monkeypatch.setitem(jax_scan.STEPS, "rnn_relu", lambda *args: traces.append(1) or step(*args))
    layer = JaxLayer("rnn_relu", I, H, dtype=torch.float64)
    lengths = [(4, 3, 2), (2, 4, 3)]  # the same rows and steps, other lengths

    for n in lengths:
        x = pack_sequence([torch.randn(k, I, dtype=torch.float64) for k in n],
                          enforce_sorted=False)
        y, h = layer(x)
        (y.data.sum() + h.sum()).backward()
        assert len(traces) == 1
    with torch.no_grad():
        for _ in lengths:
            layer(torch.randn(4, 3, I, dtype=torch.float64))
            assert len(traces) == 2


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_matches_training_without_the_vjp(cell, monkeypatch):
    """Equal up to float32 rounding: XLA fuses the two programs differently."""
    torch.manual_seed(0)
    layer = JaxLayer(cell, I, H, dtype=torch.float32)
    x, _ = make_input(True, torch.float32)
    y, final = layer(x)
    monkeypatch.setattr(jax_scan, "forward_with_vjp", None)
    with torch.no_grad():
        y_inference, final_inference = layer(x)
    assert y.data.requires_grad and not y_inference.data.requires_grad
    torch.testing.assert_close(y_inference.data, y.data.detach())
    torch.testing.assert_close(final_inference, jax.tree.map(torch.Tensor.detach, final))


def test_a_second_backward_runs_the_forward_again():
    layer = JaxLayer("lstm", I, H, dtype=torch.float64)
    x, rows = make_input(False, torch.float64)
    y, _ = layer(x)
    first = torch.autograd.grad(y.sum(), rows, retain_graph=True)
    second = torch.autograd.grad(y.sum(), rows)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
