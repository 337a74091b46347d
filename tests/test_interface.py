"""The public interface: registry, nn's call shapes, clear errors."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import PackedSequence

import impls

from oracle import COMPILING, DEVICES

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

CASES = [(name, cell) for name in impls.names() for cell in sorted(impls.get(name).cells)]


def dtype_of(impl):
    return torch.float32 if torch.float32 in impl.dtypes else torch.float64


def build(name, cell, I=4, H=3, device="cpu", **options):
    impl = impls.get(name)
    if not impl.available:
        pytest.skip(impl.unavailable_reason)
    return impl.build(cell, I, H, device=device, dtype=dtype_of(impl), **options)


def test_builtin_names():
    assert {"reference", "torch", "torch-native", "scripted"} <= set(impls.names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown implementation 'nope'") as err:
        impls.get("nope")
    for name in impls.names():
        assert name in str(err.value)


def test_register_and_unregister_a_users_implementation():
    impl = impls.Implementation(
        name="mine", factory=impls.get("torch").factory, cells=frozenset({"gru"}),
        devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}), trainable=True)
    impls.register(impl)
    try:
        assert impls.get("mine") is impl
        with pytest.raises(ValueError, match="already registered"):
            impls.register(impl)
        y, h = impl.build("gru", input_size=2, hidden_size=3)(torch.randn(4, 1, 2))
        assert y.shape == (4, 1, 3) and h.shape == (1, 1, 3)
    finally:
        impls.unregister("mine")
    assert "mine" not in impls.names()


@pytest.mark.parametrize("name,cell", [c for c in CASES if c[0] not in COMPILING])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_call_shapes(name, cell, data):
    check_call_shapes(name, cell, data)


@pytest.mark.parametrize("name,cell", [c for c in CASES if c[0] in COMPILING])
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_call_shapes_of_compiling_implementations(name, cell, data):
    check_call_shapes(name, cell, data)


def check_call_shapes(name, cell, data):
    """nn's shapes for every layout and option: y (.., D*H_out), states (D*L, B, H_out) and
    c (D*L, B, H); the state fed back is accepted; the last layer's forward final h is y's
    last step and its reverse one is y's first step."""
    T, B = data.draw(st.integers(1, 6), "T"), data.draw(st.integers(1, 4), "B")
    I, H = data.draw(st.integers(1, 5), "I"), data.draw(st.integers(2, 5), "H")
    L, bi = data.draw(st.integers(1, 3), "num_layers"), data.draw(st.booleans(), "bidi")
    batch_first = data.draw(st.booleans(), "batch_first")
    unbatched = data.draw(st.booleans(), "unbatched")
    proj = data.draw(st.integers(0, H - 1), "proj_size") if cell == "lstm" else 0
    assume(not impls.get(name).lacked(proj_size=proj))  # declared N/A: test_conformance
    options = dict(num_layers=L, bidirectional=bi, batch_first=batch_first)
    layer = build(name, cell, I, H, **options, **({"proj_size": proj} if proj else {}))
    D, h_out = 1 + bi, proj or H
    dtype = layer.weight_hh_l0.dtype
    shape = (T, I) if unbatched else (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=dtype)
    y, state = layer(x)
    batch = () if unbatched else (B,)
    assert y.shape == shape[:-1] + (D * h_out,)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (D * L, *batch, h_out)
    if cell == "lstm":
        assert state[1].shape == (D * L, *batch, H)
    else:
        assert isinstance(state, torch.Tensor)
    y2, _ = layer(x, state)
    assert y2.shape == y.shape
    steps = y if unbatched else y.transpose(0, 1) if batch_first else y
    torch.testing.assert_close(steps[-1, ..., :h_out], h[(L - 1) * D])
    if bi:
        torch.testing.assert_close(steps[0, ..., h_out:], h[-1])


def test_torch_native_switches_kernels_for_the_call_only():
    x = torch.randn(3, 2, 4, requires_grad=True)
    default = build("torch", "lstm")
    native = build("torch-native", "lstm")
    native.load_state_dict(default.state_dict())
    y_default, _ = default(x)
    y_native, _ = native(x)
    if torch.backends.mkldnn.is_available():
        assert "Mkldnn" in type(y_default.grad_fn).__name__
    assert "Mkldnn" not in type(y_native.grad_fn).__name__
    torch.testing.assert_close(y_native, y_default)
    assert torch.backends.mkldnn.enabled and torch.backends.cudnn.enabled
    with torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None,
                                     fp32_precision=None):
        native(x)
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled


# -- bad input -------------------------------------------------------------------------------


def check_error(exc, call, *fragments):
    """`call()` raises `exc` whose message holds every fragment (who, which argument, what)."""
    with pytest.raises(exc) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("name,cell", CASES)
def test_bad_input_is_named(name, cell):
    layer = build(name, cell, I=4, H=3, num_layers=2)
    dtype = layer.weight_hh_l0.dtype
    other = torch.float64 if dtype == torch.float32 else torch.float32
    ok = torch.randn(5, 2, 4, dtype=dtype)
    h = torch.zeros(2, 2, 3, dtype=dtype)
    one_layer = torch.zeros(1, 2, 3, dtype=dtype)
    batch_3 = torch.zeros(2, 3, 3, dtype=dtype)
    rows = torch.randn(5, 4, dtype=dtype)
    cases = [  # (error, input, hx, what the message must name besides the implementation)
        (ValueError, torch.randn(5, 2, 1, 4, dtype=dtype), None,
         ["'input'", "(T, B, 4)", "unbatched (T, 4)", "4-D shape (5, 2, 1, 4)"]),
        (ValueError, torch.randn(5, 2, 6, dtype=dtype), None,
         ["'input'", "feature size 4", "feature size 6"]),
        (ValueError, torch.randn(0, 2, 4, dtype=dtype), None, ["'input'", "T >= 1", "(0, 2, 4)"]),
        (ValueError, torch.randn(5, 0, 4, dtype=dtype), None, ["'input'", "B >= 1", "(5, 0, 4)"]),
        (TypeError, ok.to(other), None, ["'input'", str(dtype), str(other)]),
        (TypeError, [[[1.0]]], None, ["'input'", "torch.Tensor", "list"]),
        (ValueError, torch.empty(5, 2, 4, dtype=dtype, device="meta"), None,
         ["'input'", "device cpu", "meta"]),
        (ValueError, PackedSequence(rows, torch.tensor([2, 3])), None,
         ["'input.batch_sizes'", "non-increasing", "[2, 3]"]),
        (ValueError, PackedSequence(rows, torch.tensor([3, 1])), None,
         ["'input.batch_sizes'", "summing to the 5 rows", "sum of 4"]),
    ]
    if cell == "lstm":
        cases += [
            (ValueError, ok, (one_layer, h), ["'hx h_0'", "(2, 2, 3)", "(1, 2, 3)"]),
            (ValueError, ok, (h, batch_3), ["'hx c_0'", "(2, 2, 3)", "(2, 3, 3)"]),
            (ValueError, ok[:, 0], (h, h), ["'hx h_0'", "(2, 3)", "(2, 2, 3)"]),
            (TypeError, ok, h, ["'hx'", "pair (h_0, c_0)", "Tensor"]),
            (TypeError, ok, (h, h.to(other)), ["'hx c_0'", str(dtype), str(other)]),
        ]
    else:
        cases += [
            (ValueError, ok, one_layer, ["'hx'", "(2, 2, 3)", "(1, 2, 3)"]),
            (ValueError, ok, batch_3, ["'hx'", "(2, 2, 3)", "(2, 3, 3)"]),
            (ValueError, ok[:, 0], h, ["'hx'", "(2, 3)", "(2, 2, 3)"]),
            (TypeError, ok, (h,), ["'hx'", "torch.Tensor", "tuple"]),
            (TypeError, ok, h.to(other), ["'hx'", str(dtype), str(other)]),
        ]
    for exc, x, hx, fragments in cases:
        check_error(exc, lambda x=x, hx=hx: layer(x, hx), name, cell, *fragments)


@pytest.mark.parametrize("name", impls.names())
def test_bad_build_arguments_are_named(name):
    impl = impls.get(name)
    cell = sorted(impl.cells)[0]
    good = dict(input_size=2, hidden_size=3, device="cpu", dtype=dtype_of(impl))
    cases = [  # (error, cell, changed arguments, what the message must name)
        (ValueError, "lstm3", {}, ["'cell'", "'lstm3'"]),
        (ValueError, cell, {"hidden_size": 0}, ["'hidden_size'", "positive int", "0"]),
        (ValueError, cell, {"input_size": 2.0}, ["'input_size'", "positive int", "2.0"]),
        (ValueError, cell, {"num_layers": 0}, ["'num_layers'", "positive int", "got 0"]),
        (ValueError, cell, {"dropout": -0.1}, ["'dropout'", "[0, 1]", "-0.1"]),
        (ValueError, cell, {"dropout": 1.5}, ["'dropout'", "[0, 1]", "1.5"]),
        (TypeError, cell, {"bidirectional": 1}, ["'bidirectional'", "a bool", "got 1"]),
        (TypeError, cell, {"batch_first": "yes"}, ["'batch_first'", "a bool", "'yes'"]),
        (ValueError, "lstm", {"proj_size": 3}, ["'proj_size'", "smaller than hidden_size (3)",
                                                "got 3"]),
        (ValueError, "lstm", {"proj_size": -1}, ["'proj_size'", ">= 0", "got -1"]),
        (ValueError, "gru", {"proj_size": 1}, ["'proj_size'", "0 for gru", "got 1"]),
        (TypeError, "rnn_tanh", {"nonlinearity": "relu"}, ["nonlinearity"]),
        (ValueError, cell, {"device": "meta"}, ["'device'", "'meta'"]),
        (ValueError, cell, {"device": "tpu"}, ["'device'", "'tpu'"]),
        (TypeError, cell, {"dtype": torch.int64}, ["'dtype'", "torch.int64"]),
    ]
    if "cuda" not in impl.devices or not torch.cuda.is_available():
        cases.append((ValueError, cell, {"device": "cuda"}, ["'device'", "cuda"]))
    for exc, c, changed, fragments in cases:
        check_error(exc, lambda c=c, changed=changed: impl.build(c, **{**good, **changed}),
                    name, *fragments)


def test_reference_is_float64_only():
    check_error(TypeError, lambda: impls.get("reference").build(
        "lstm", input_size=2, hidden_size=2, dtype=torch.float32),
        "reference", "'dtype'", "torch.float64", "torch.float32")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,cell", CASES)
def test_trainable_layers_reach_every_leaf(name, cell, device):
    impl = impls.get(name)
    if not impl.trainable or not impl.supports(cell, device, dtype_of(impl)):
        pytest.skip("not trainable or not supported here")
    torch.manual_seed(0)  # unseeded, a ReLU unit can be dead at every step and its bias gets 0
    proj = {"proj_size": 2} if cell == "lstm" else {}
    layer = build(name, cell, H=3, device=device, num_layers=2, bidirectional=True, **proj)
    dtype = layer.weight_hh_l0.dtype
    x = torch.randn(3, 2, 4, dtype=dtype, device=device, requires_grad=True)
    h0 = torch.randn(4, 2, proj.get("proj_size", 3), dtype=dtype, device=device,
                     requires_grad=True)
    c0 = torch.randn(4, 2, 3, dtype=dtype, device=device, requires_grad=True)
    state = (h0, c0) if cell == "lstm" else h0
    y, _ = layer(x, state)
    y.square().sum().backward()
    leaves = [x, *(state if cell == "lstm" else [state]), *layer.parameters()]
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)
