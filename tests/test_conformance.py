"""Every implementation x every cell x nn's options agrees with the oracles, forward and
backward, and trades state_dicts with torch.nn both ways.

float64: against `reference` (the equations, one step at a time).
float32: against `torch.nn` itself in float32.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import impls

from oracle import COMPILING, DEVICES, LAYOUTS, TOLERANCES, assert_match, make_inputs, run, torch_nn

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

#: Every (implementation, cell).
EVERY = [(name, cell) for name in impls.names() for cell in sorted(impls.get(name).cells)]


def cases(dtype, compiling=None):
    """(implementation, cell) for every implementation declaring `dtype`; `compiling`
    True/False keeps only those in / not in COMPILING."""
    return [(name, cell) for name in impls.names() if dtype in impls.get(name).dtypes
            and (compiling is None or (name in COMPILING) == compiling)
            for cell in sorted(impls.get(name).cells)]


def dtype_of(impl):
    """float32 where an implementation has it (nn is the oracle there), else float64."""
    return torch.float32 if torch.float32 in impl.dtypes else torch.float64


def draw_case(data, cell):
    """Sizes, layout and nn's options (dropout aside) for one example; small, so that
    three bidirectional layers of the one-step reference stay fast."""
    T, B = data.draw(st.integers(1, 10), "T"), data.draw(st.integers(1, 6), "B")
    I, H = data.draw(st.integers(1, 8), "I"), data.draw(st.integers(1, 8), "H")
    layout = data.draw(st.sampled_from(LAYOUTS), "layout")
    lengths = data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B),
                        "lengths") if layout == "packed" else None
    options = {
        "num_layers": data.draw(st.integers(1, 3), "num_layers"),
        "bidirectional": data.draw(st.booleans(), "bidirectional"),
        "batch_first": data.draw(st.booleans(), "batch_first"),
        "bias": data.draw(st.booleans(), "bias"),
    }
    if cell == "lstm":
        options["proj_size"] = data.draw(
            st.just(0) | st.integers(1, H - 1) if H > 1 else st.just(0), "proj_size")
    sizes = dict(T=T, B=B, I=I, H=H, layout=layout, lengths=lengths,
                 with_state=data.draw(st.booleans(), "with_state"),
                 seed=data.draw(st.integers(0, 2**31 - 1), "seed"))
    return sizes, options


def _skip_unsupported(impl, cell, device, dtype):
    if not impl.supports(cell, device, dtype):
        pytest.skip(f"{impl.name} does not support {cell} on {device} in {dtype}")


def declared_na(impl, cell, device, dtype, options, layout="batch", I=4, H=5) -> bool:
    """Whether the implementation declares that it cannot express these options or this
    layout; if so, asking for them is checked to be the named error it promises."""
    lacked = impl.lacked(**options, packed_input=layout == "packed")
    if not lacked:
        return False
    options_lacked = [k for k in lacked if k in options]
    if options_lacked:
        with pytest.raises(ValueError, match=f"'{options_lacked[0]}'.*declared N/A"):
            impl.build(cell, I, H, device=device, dtype=dtype, **options)
    else:  # a packed input: the layer refuses it by name when called
        layer = impl.build(cell, I, H, device=device, dtype=dtype)
        packed = torch.nn.utils.rnn.pack_sequence([torch.zeros(2, I, dtype=dtype)])
        with pytest.raises(ValueError, match="'input'.*PackedSequence"):
            layer(packed)
    return True


def check(name, cell, device, dtype, sizes, options):
    """float64 against `reference`, float32 against torch.nn in float32: outputs, final
    states and every gradient (forward only for an inference-only implementation), and the
    outputs again under torch.no_grad."""
    impl = impls.get(name)
    _skip_unsupported(impl, cell, device, dtype)
    if declared_na(impl, cell, device, dtype, options, sizes["layout"], sizes["I"],
                   sizes["H"]):
        return
    inputs = make_inputs(cell, **sizes, **options)
    build = dict(device=device, dtype=dtype, **options)
    I, H = sizes["I"], sizes["H"]
    oracle = (impls.get("reference").build(cell, I, H, **build) if dtype == torch.float64
              else torch_nn(cell, I, H, **build))
    expected = run(oracle, cell, *inputs, dtype, device)
    layer = impl.build(cell, I, H, **build)
    what = f"{name} {cell} {sizes} {options}"
    if impl.trainable:
        assert_match(run(layer, cell, *inputs, dtype, device), expected, dtype, what)
    inference = run(layer, cell, *inputs, dtype, device, gradients=False)
    assert_match(inference, {k: v for k, v in expected.items() if not k.startswith("grad")},
                 dtype, f"{what} under no_grad")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", cases(torch.float64, compiling=False))
@settings(max_examples=15)
@given(data=st.data())
def test_float64_matches_reference(name, cell, device, data):
    check(name, cell, device, torch.float64, *draw_case(data, cell))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", cases(torch.float32, compiling=False))
@settings(max_examples=15)
@given(data=st.data())
def test_float32_matches_torch_nn(name, cell, device, data):
    check(name, cell, device, torch.float32, *draw_case(data, cell))


@pytest.mark.parametrize("name,cell", cases(torch.float64, compiling=True))
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_compiling_implementations_float64_matches_reference(name, cell, data):
    check(name, cell, "cpu", torch.float64, *draw_case(data, cell))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name,cell,dtype", [
    (name, cell, dtype) for dtype in (torch.float64, torch.float32)
    for name, cell in cases(dtype)])
def test_every_option_at_once(name, cell, dtype, layout):
    """Pinned, so that each path is taken on every run: unsorted lengths with an initial
    state (permuted in, unpermuted out), three bidirectional layers, no bias, projections."""
    sizes = dict(T=7, B=4, I=3, H=5, layout=layout, lengths=[3, 7, 1, 5], with_state=True,
                 seed=1)
    options = dict(num_layers=3, bidirectional=True, batch_first=True, bias=False,
                   **({"proj_size": 2} if cell == "lstm" else {}))
    check(name, cell, "cpu", dtype, sizes, options)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", cases(torch.float64))
@pytest.mark.parametrize("T,B", [(1, 1), (1, 5), (7, 1)])
def test_edge_shapes_and_non_contiguous_input(name, cell, T, B, device):
    impl = impls.get(name)
    dtype = torch.float64
    _skip_unsupported(impl, cell, device, dtype)
    I, H = 6, 5
    options = dict(num_layers=2, bidirectional=True)
    weights, x, state, upstream = make_inputs(cell, T, B, I, H, True, seed=T * 10 + B,
                                              **options)
    # Non-contiguous: a transposed batch-major buffer, and every other feature column.
    wide = torch.randn(B, T, 2 * I, dtype=torch.float64).transpose(0, 1)[:, :, ::2]
    wide.copy_(x)
    assert not wide.is_contiguous()
    dims = dict(input_size=I, hidden_size=H, device=device, dtype=dtype, **options)
    expected = run(impls.get("reference").build(cell, **dims), cell, weights, x, state,
                   upstream, dtype, device)
    got = run(impl.build(cell, **dims), cell, weights, wide, state, upstream, dtype, device)
    assert_match(got, expected, dtype, f"{name} {cell} T={T} B={B} non-contiguous")


# -- state_dict both ways -------------------------------------------------------------------

ROUND_TRIPS = [
    pytest.param(name, cell, options, id=f"{name}-{cell}-{options}")
    for name, cell in EVERY
    for options in ({}, {"num_layers": 3, "bidirectional": True},
                    {"num_layers": 2, "bias": False, "batch_first": True},
                    {"num_layers": 2, "bidirectional": True, "proj_size": 2})
    if cell == "lstm" or "proj_size" not in options
]


@pytest.mark.parametrize("name,cell,options", ROUND_TRIPS)
def test_state_dict_round_trips_with_torch_nn(name, cell, options):
    """nn -> implementation -> nn is the identity, names and shapes are nn's, and a module
    loaded from the implementation computes what the implementation computes."""
    impl = impls.get(name)
    I, H, dtype = 4, 3, dtype_of(impl)
    if not impl.available:
        pytest.skip(impl.unavailable_reason)
    if declared_na(impl, cell, "cpu", dtype, options, I=I, H=H):
        return
    original = torch_nn(cell, I, H, dtype=dtype, **options)
    layer = impl.build(cell, I, H, dtype=dtype, **options)
    shapes = impls.parameter_shapes(cell, I, H, **{k: v for k, v in options.items()
                                                   if k != "batch_first"})
    for module in (original, layer):
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes
        assert list(module.state_dict()) == list(shapes)

    layer.load_state_dict(original.state_dict())
    back = torch_nn(cell, I, H, dtype=dtype, **options)
    back.load_state_dict(layer.state_dict())
    for key, value in original.state_dict().items():
        assert torch.equal(layer.state_dict()[key], value), key
        assert torch.equal(back.state_dict()[key], value), key

    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-1, 1)
    back.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, I, dtype=dtype)
    rtol, atol = TOLERANCES[dtype]["out"]
    torch.testing.assert_close(layer(x)[0], back(x)[0], rtol=rtol, atol=atol)
    assert all(p.requires_grad for p in layer.parameters()) == impl.trainable


# -- dropout between layers -----------------------------------------------------------------


@pytest.mark.parametrize("name,cell", EVERY)
def test_dropout_acts_in_training_only(name, cell):
    """Training with dropout differs from no dropout (an inference-only implementation
    refuses it by name); in eval mode the layer is nn's."""
    impl = impls.get(name)
    if not impl.available:
        pytest.skip(impl.unavailable_reason)
    dtype, I, H = dtype_of(impl), 4, 5
    torch.manual_seed(0)
    oracle = torch_nn(cell, I, H, num_layers=2, dropout=0.5, dtype=dtype)
    layer = impl.build(cell, I, H, num_layers=2, dropout=0.5, dtype=dtype)
    plain = impl.build(cell, I, H, num_layers=2, dtype=dtype)
    for module in (layer, plain):
        module.load_state_dict(oracle.state_dict())
    x = torch.randn(6, 3, I, dtype=dtype)
    assert layer.training
    if impl.trainable:
        assert not torch.allclose(layer(x)[0], plain(x)[0])
    else:
        with pytest.raises(ValueError, match="'dropout'"):
            layer(x)
    layer.eval()
    oracle.eval()
    y, state = layer(x)
    y_nn, state_nn = oracle(x)
    rtol, atol = TOLERANCES[dtype]["out"]
    torch.testing.assert_close(y, y_nn, rtol=rtol, atol=atol)
    torch.testing.assert_close(state, state_nn, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,cell", EVERY)
def test_dropout_one_hides_the_input_from_the_layers_above(name, cell):
    """p=1 in training: the second layer sees zeros, so the network's output is that layer run
    alone on zeros (from its own initial state), its input gradient is exactly zero, and the
    first layer's final state is untouched."""
    impl = impls.get(name)
    if not impl.trainable or not impl.available:
        pytest.skip("dropout acts in training, which an inference-only implementation "
                    "refuses (tested above)")
    dtype, T, B, I, H = dtype_of(impl), 5, 3, 4, 5
    options = dict(bidirectional=True, **({"proj_size": 2} if cell == "lstm" else {}))
    D, h_out = 2, 2 if cell == "lstm" else H
    weights, x, state, _ = make_inputs(cell, T, B, I, H, True, seed=7, num_layers=2,
                                       **options)
    weights = {k: v.to(dtype) for k, v in weights.items()}
    x = x.to(dtype).requires_grad_()
    state = [s.to(dtype) for s in state]

    def hx(lo, hi):
        return tuple(s[lo:hi] for s in state) if cell == "lstm" else state[0][lo:hi]

    network = impl.build(cell, I, H, num_layers=2, dropout=1.0, dtype=dtype, **options)
    network.load_state_dict(weights)
    y, final = network(x, hx(0, 2 * D))
    lower = impl.build(cell, I, H, dtype=dtype, **options)
    lower.load_state_dict({k: v for k, v in weights.items() if "_l0" in k})
    upper = impl.build(cell, D * h_out, H, dtype=dtype, **options)
    upper.load_state_dict({k.replace("_l1", "_l0"): v for k, v in weights.items()
                           if "_l1" in k})
    _, final_lower = lower(x, hx(0, D))
    y_upper, final_upper = upper(torch.zeros(T, B, D * h_out, dtype=dtype), hx(D, 2 * D))

    rtol, atol = TOLERANCES[dtype]["out"]
    torch.testing.assert_close(y, y_upper, rtol=rtol, atol=atol)
    pairs = zip(final, final_lower, final_upper) if cell == "lstm" else [
        (final, final_lower, final_upper)]
    for got, first, second in pairs:
        torch.testing.assert_close(got, torch.cat([first, second]), rtol=rtol, atol=atol)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name,cell", EVERY)
def test_dropout_with_one_layer_warns_and_changes_nothing(name, cell):
    """nn drops out between layers only: one layer in training is the layer without dropout."""
    impl = impls.get(name)
    if not impl.available:
        pytest.skip(impl.unavailable_reason)
    dtype = dtype_of(impl)
    oracle = torch_nn(cell, 4, 5, dtype=dtype)
    with pytest.warns(UserWarning, match="dropout"):
        layer = impl.build(cell, 4, 5, dropout=0.5, dtype=dtype)
    layer.load_state_dict(oracle.state_dict())
    x = torch.randn(6, 3, 4, dtype=dtype)
    rtol, atol = TOLERANCES[dtype]["out"]
    torch.testing.assert_close(layer(x)[0], oracle(x)[0], rtol=rtol, atol=atol)
