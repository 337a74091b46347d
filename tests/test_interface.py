"""The public interface: registry, drop-in state_dict and call shapes, clear errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import impls

from oracle import DEVICES

CASES = [(name, cell) for name in impls.names() for cell in sorted(impls.get(name).cells)]
NN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN,
      "rnn_relu": torch.nn.RNN}


def dtype_of(impl):
    return torch.float32 if torch.float32 in impl.dtypes else torch.float64


def build(name, cell, I=4, H=3, device="cpu"):
    impl = impls.get(name)
    return impl.build(cell, input_size=I, hidden_size=H, device=device, dtype=dtype_of(impl))


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


@pytest.mark.parametrize("name,cell", CASES)
def test_state_dict_is_torch_nn(name, cell):
    I, H = 5, 7
    layer = build(name, cell, I, H)
    kwargs = {"nonlinearity": cell.removeprefix("rnn_")} if cell.startswith("rnn_") else {}
    nn_module = NN[cell](I, H, dtype=dtype_of(impls.get(name)), **kwargs)
    ours, theirs = layer.state_dict(), nn_module.state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()}
    layer.load_state_dict(theirs)
    for key, value in theirs.items():
        assert torch.equal(layer.state_dict()[key], value)
    assert all(p.requires_grad for p in layer.parameters()) == impls.get(name).trainable


@pytest.mark.parametrize("name,cell", CASES)
@settings(max_examples=5, deadline=None)
@given(T=st.integers(1, 12), B=st.integers(1, 6), I=st.integers(1, 9), H=st.integers(1, 9))
def test_call_shapes(name, cell, T, B, I, H):
    """LSTM: (x, h, c) in, (h, c) out; the rest: (x, h) in, h out; c has H entries, not H+I."""
    layer = build(name, cell, I, H)
    x = torch.randn(T, B, I, dtype=layer.weight_hh_l0.dtype)
    y, state = layer(x)
    assert y.shape == (T, B, H)
    if cell == "lstm":
        h, c = state
        assert h.shape == c.shape == (1, B, H)
        y2, _ = layer(x, (h, c))
    else:
        assert isinstance(state, torch.Tensor) and state.shape == (1, B, H)
        y2, _ = layer(x, state)
    assert y2.shape == (T, B, H)
    torch.testing.assert_close(y[-1:], state[0] if cell == "lstm" else state)


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
    layer = build(name, cell, I=4, H=3)
    dtype = layer.weight_hh_l0.dtype
    other = torch.float64 if dtype == torch.float32 else torch.float32
    ok = torch.randn(5, 2, 4, dtype=dtype)
    h = torch.zeros(1, 2, 3, dtype=dtype)
    h_bad = torch.zeros(1, 3, 3, dtype=dtype)
    cases = [  # (error, x, state, what the message must name besides the implementation)
        (ValueError, ok[:, 0], None, ["'x'", "3-D", "(5, 4)"]),
        (ValueError, torch.randn(5, 2, 6, dtype=dtype), None,
         ["'x'", "feature size 4", "feature size 6"]),
        (ValueError, torch.randn(0, 2, 4, dtype=dtype), None, ["'x'", "T >= 1", "(0, 2, 4)"]),
        (ValueError, torch.randn(5, 0, 4, dtype=dtype), None, ["'x'", "B >= 1", "(5, 0, 4)"]),
        (TypeError, ok.to(other), None, ["'x'", str(dtype), str(other)]),
        (TypeError, [[[1.0]]], None, ["'x'", "torch.Tensor", "list"]),
        (ValueError, torch.empty(5, 2, 4, dtype=dtype, device="meta"), None,
         ["'x'", "device cpu", "meta"]),
    ]
    if cell == "lstm":
        cases += [
            (ValueError, ok, (h_bad, h), ["'state h'", "(1, 2, 3)", "(1, 3, 3)"]),
            (ValueError, ok, (h, h[0]), ["'state c'", "(1, 2, 3)", "(2, 3)"]),
            (TypeError, ok, h, ["'state'", "pair (h, c)", "Tensor"]),
            (TypeError, ok, (h, h.to(other)), ["'state c'", str(dtype), str(other)]),
        ]
    else:
        cases += [
            (ValueError, ok, h_bad, ["'state'", "(1, 2, 3)", "(1, 3, 3)"]),
            (TypeError, ok, h.to(other), ["'state'", str(dtype), str(other)]),
        ]
    for exc, x, state, fragments in cases:
        check_error(exc, lambda x=x, state=state: layer(x, state), name, cell, *fragments)


@pytest.mark.parametrize("name", impls.names())
def test_bad_build_arguments_are_named(name):
    impl = impls.get(name)
    cell = sorted(impl.cells)[0]
    good = dict(input_size=2, hidden_size=2, device="cpu", dtype=dtype_of(impl))
    cases = [  # (error, cell, changed arguments, what the message must name)
        (ValueError, "lstm3", {}, ["'cell'", "'lstm3'"]),
        (ValueError, cell, {"hidden_size": 0}, ["'hidden_size'", "positive int", "0"]),
        (ValueError, cell, {"input_size": 2.0}, ["'input_size'", "positive int", "2.0"]),
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
    layer = build(name, cell, device=device)
    dtype = layer.weight_hh_l0.dtype
    x = torch.randn(3, 2, 4, dtype=dtype, device=device, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=dtype, device=device, requires_grad=True)
    state = (h0, torch.randn_like(h0, requires_grad=True)) if cell == "lstm" else h0
    y, _ = layer(x, state)
    y.square().sum().backward()
    leaves = [x, *(state if cell == "lstm" else [state]), *layer.parameters()]
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)
