"""What only the `numba` implementation has: its own tanh/sigmoid, its hand-derived backward,
its kernels on the packed layout, its inference path, its on-disk JIT cache, its threads and
its buffers. (The shared conformance and interface suites cover it like every other
implementation; they ask for gradients, so they reach only its training path.) Its element
maths are checked one by one in test_numba_equations.py."""

import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import impls
from impls import numba_kernels, numba_rnn

CELLS = sorted(impls.get("numba").cells)
ROOT = Path(__file__).resolve().parents[1]
EPS32 = float(np.finfo(np.float32).eps)


def _grid():
    """Dense over the curved part, log-spaced out to float32's largest values, and +-inf."""
    wide = np.logspace(-38, 38.5, 4000)
    return np.concatenate([np.linspace(-30, 30, 600_001), wide, -wide,
                           [0.0, -0.0, np.inf, -np.inf]]).astype(np.float32)


@pytest.mark.parametrize("name,ours,theirs,abs_ulps", [
    ("tanh", numba_kernels.tanh_array, torch.tanh, 2.5),
    ("sigmoid", numba_kernels.sigmoid_array, torch.sigmoid, 1.5),
])
def test_float32_activations_match_torch_everywhere(name, ours, theirs, abs_ulps):
    x = _grid()
    out = np.empty_like(x)
    ours(x, out)
    exact = theirs(torch.from_numpy(x).double()).numpy()
    assert np.isfinite(out).all(), f"{name}: non-finite output at {x[~np.isfinite(out)][:5]}"
    lo = -1.0 if name == "tanh" else 0.0
    assert out.min() >= lo and out.max() <= 1.0
    assert np.abs(out - exact).max() <= abs_ulps * EPS32
    if name == "tanh":  # relatively accurate near 0 too, where tanh(x) ~ x
        small = (np.abs(x) < 1) & (x != 0)
        rel = np.abs(out[small] - exact[small]) / np.abs(exact[small])
        assert rel.max() <= 2.5 * EPS32


def test_tanh_is_odd_and_nan_propagates():
    x = np.linspace(0, 12, 10_001).astype(np.float32)
    pos, neg = np.empty_like(x), np.empty_like(x)
    numba_kernels.tanh_array(x, pos)
    numba_kernels.tanh_array(-x, neg)
    np.testing.assert_array_equal(pos, -neg)
    nan = np.full(3, np.nan, dtype=np.float32)
    for fn in (numba_kernels.tanh_array, numba_kernels.sigmoid_array):
        out = np.zeros_like(nan)
        fn(nan, out)
        assert np.isnan(out).all()


@pytest.mark.parametrize("fn,exact", [(numba_kernels.tanh_array, torch.tanh),
                                      (numba_kernels.sigmoid_array, torch.sigmoid)])
def test_float64_activations_are_libm(fn, exact):
    x = np.linspace(-800, 800, 100_001)
    out = np.empty_like(x)
    fn(x, out)
    np.testing.assert_allclose(out, exact(torch.from_numpy(x)).numpy(), rtol=4e-16, atol=1e-300)


# -- layers, inputs and every gradient -------------------------------------------------------

#: Unsorted, with a tie and a sequence of one step: PackedSequence reorders them.
LENGTHS = [5, 9, 1, 9, 3]


def _layers(cell, I, H, **options):
    """(reference, numba), float64, built with the same nn options."""
    return tuple(impls.get(name).build(cell, I, H, dtype=torch.float64, **options)
                 for name in ("reference", "numba"))


def _loaded_layers(cell, I, H, seed):
    """(reference, numba) as `_layers`, both holding the same `_weights`."""
    layers = _layers(cell, I, H)
    weights = _weights(cell, I, H, seed)
    for module in layers:
        module.load_state_dict(weights)
    return layers


def _weights(cell, I, H, seed, **options):
    """float64 weights by nn's names, drawn in nn's init range."""
    gen = torch.Generator().manual_seed(seed)
    shapes = impls.parameter_shapes(cell, I, H, **options)
    return {name: (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) / H ** 0.5
            for name, shape in shapes.items()}


def _inputs(cell, I, H, seed, *, T=None, B=None, lengths=None, num_layers=1,
            bidirectional=False, proj_size=0, **_):
    """float64 input and initial state: a (T, B, I) tensor, or sequences of `lengths`."""
    gen = torch.Generator().manual_seed(seed)
    if lengths is None:
        x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    else:
        x = [torch.randn(n, I, generator=gen, dtype=torch.float64) for n in lengths]
        B = len(lengths)
    k = (1 + bidirectional) * num_layers
    sizes = [proj_size or H] + ([H] if cell == "lstm" else [])
    state = [torch.randn(k, B, size, generator=gen, dtype=torch.float64) * 0.5 for size in sizes]
    return x, state


def _run(layer, cell, weights, x, state, dtype=torch.float64):
    """Outputs and every gradient of one call, as float64, by name.

    x: a (T, B, I) tensor, or a list of sequences, packed unsorted. The gradients are wrt
    each input, each initial state (if given) and each parameter, of a fixed random
    weighting of every output.
    """
    layer.load_state_dict({k: v.to(dtype) for k, v in weights.items()})
    packed = isinstance(x, list)
    inputs = [t.to(dtype).requires_grad_() for t in (x if packed else [x])]
    states = [s.to(dtype).requires_grad_() for s in state or []]
    arg = None if not states else (tuple(states) if cell == "lstm" else states[0])
    y, final = layer(pack_sequence(inputs, enforce_sorted=False) if packed else inputs[0], arg)
    outputs = {"y": y.data if packed else y}
    outputs.update((f"final{i}", f) for i, f in enumerate(final if cell == "lstm" else [final]))
    gen = torch.Generator().manual_seed(99)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dtype)).sum()
               for o in outputs.values())
    params = dict(layer.named_parameters())
    names = ([f"input{i}" for i in range(len(inputs))] + [f"state{i}" for i in range(len(states))]
             + list(weights))
    grads = torch.autograd.grad(loss, inputs + states + [params[n] for n in weights])
    outputs.update((f"grad {n}", g) for n, g in zip(names, grads))
    return {k: v.detach().to(torch.float64) for k, v in outputs.items()}


def _assert_match(got, expected, what, rtol=1e-9, atol=1e-10):
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=rtol, atol=atol,
                                   msg=lambda m, k=key: f"{what} {k}: {m}")


def _force_team(monkeypatch, size):
    """Make every (unprojected) call run on a team of `size`, however small the problem."""
    if size > 1:
        if not numba_rnn._BLAS.available:
            pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
        monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
        monkeypatch.setattr(numba_rnn, "_MIN_UNITS_PER_THREAD", 1)
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: size)


# -- the packed layout: variable lengths in the kernels ---------------------------------------

PACKED_CASES = {
    "lengths": {},
    "bias=False": dict(bias=False),
    "proj_size": dict(proj_size=3),
    "2 layers bidirectional": dict(num_layers=2, bidirectional=True),
    "all of them": dict(bias=False, proj_size=3, num_layers=2, bidirectional=True),
}


def _cases(cell):
    return [case for case, options in PACKED_CASES.items()
            if cell == "lstm" or "proj_size" not in options]


@pytest.mark.parametrize("team", [1, 2])
@pytest.mark.parametrize("cell,case", [(cell, case) for cell in CELLS for case in _cases(cell)])
def test_packed_sequences_match_reference(cell, case, team, monkeypatch):
    """Unsorted lengths, forward and every gradient to 1e-9, on one thread and on a team."""
    _force_team(monkeypatch, team)
    options, I, H = PACKED_CASES[case], 4, 20
    proj = options.get("proj_size", 0)
    assert numba_rnn.team_size(cell, len(LENGTHS), H, proj) == (1 if proj else team)
    weights = _weights(cell, I, H, seed=7, **options)
    x, state = _inputs(cell, I, H, seed=8, lengths=LENGTHS, **options)
    ref, layer = _layers(cell, I, H, **options)
    expected = _run(ref, cell, weights, x, state)
    _assert_match(_run(layer, cell, weights, x, state), expected, f"{cell} {case} team {team}")
    _assert_match(_run(layer, cell, weights, x, None), _run(ref, cell, weights, x, None),
                  f"{cell} {case} team {team}, no initial state")


def _pairs(steps):
    """(row, previous row) of every row of steps >= 1, as `previous_runs` pairs them."""
    return [(r, p) for r0, r1, p0 in steps.previous_runs
            for r, p in zip(range(r0, r1), range(p0, p0 + r1 - r0))]


def test_weight_gradient_runs_pair_each_step_with_the_previous_ones():
    """dW_hh's GEMMs: two for equal lengths, and every row of steps >= 1 exactly once,
    against the first rows of the step before."""
    assert numba_rnn.Steps(torch.full((6,), 4)).previous_runs == [(4, 24, 0)]
    assert numba_rnn.Steps(torch.tensor([3])).previous_runs == []
    # A new run only where the step before changed size: steps 1, 2-4, 5-6.
    assert numba_rnn.Steps(torch.tensor([5, 4, 4, 4, 2, 2, 1])).previous_runs == [
        (5, 9, 0), (9, 19, 5), (19, 22, 17)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        lengths = torch.randint(1, 8, (int(torch.randint(1, 7, (1,), generator=gen)),),
                                generator=gen)
        sizes = torch.tensor([int((lengths > t).sum()) for t in range(int(lengths.max()))])
        steps = numba_rnn.Steps(sizes)
        starts = np.cumsum([0, *sizes.tolist()])
        assert _pairs(steps) == [(starts[t] + b, starts[t - 1] + b)
                                 for t in range(1, len(sizes)) for b in range(sizes[t])]
        order = lengths.sort(descending=True).values
        assert list(steps.last_rows) == [starts[n - 1] + b for b, n in enumerate(order.tolist())]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_drop_in_for_torch_nn(cell, dtype):
    """nn's module with the same state_dict: 2 layers, bidirectional, a PackedSequence."""
    options = dict(num_layers=2, bidirectional=True, **({"proj_size": 3} if cell == "lstm" else {}))
    I, H = 5, 8
    weights = _weights(cell, I, H, seed=3, **options)
    x, state = _inputs(cell, I, H, seed=4, lengths=LENGTHS, **options)
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    extra = {} if cell in ("lstm", "gru") else {"nonlinearity": cell.removeprefix("rnn_")}
    nn_layer = kind(I, H, dtype=dtype, **options, **extra)
    layer = impls.get("numba").build(cell, I, H, dtype=dtype, **options)
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == torch.float32 else {}
    _assert_match(_run(layer, cell, weights, x, state, dtype),
                  _run(nn_layer, cell, weights, x, state, dtype), f"{cell} {dtype}", **tol)


# -- the hand-derived backward ---------------------------------------------------------------


def _functional(layer, cell, names, n_inputs, packed):
    """(inputs..., state..., params...) -> (y, final state...) so that gradcheck sees every
    leaf."""
    n_state = 2 if cell == "lstm" else 1

    def fn(*leaves):
        inputs, rest = leaves[:n_inputs], leaves[n_inputs:]
        state, params = rest[:n_state], dict(zip(names, rest[n_state:]))
        x = pack_sequence(list(inputs), enforce_sorted=False) if packed else inputs[0]
        arg = tuple(state) if cell == "lstm" else state[0]
        y, final = torch.func.functional_call(layer, params, (x, arg))
        y = y.data if packed else y
        return (y, *final) if cell == "lstm" else (y, final)
    return fn


GRADCHECK_CASES = {
    "T=1 B=1": dict(T=1, B=1),
    "T=4 B=3": dict(T=4, B=3),
    "packed, bidirectional, bias=False": dict(lengths=[2, 4, 1], bidirectional=True,
                                              bias=False),
    "packed, proj_size": dict(lengths=[2, 4, 1], proj_size=2),
}


@pytest.mark.parametrize("cell,case", [(cell, case) for cell in CELLS for case in GRADCHECK_CASES
                                       if cell == "lstm" or "proj" not in case])
def test_gradcheck_float64(cell, case):
    I, H = 3, 4
    shape = GRADCHECK_CASES[case]
    options = {k: v for k, v in shape.items() if k not in ("T", "B", "lengths")}
    layer = impls.get("numba").build(cell, I, H, dtype=torch.float64, **options)
    weights = _weights(cell, I, H, seed=11, **options)
    x, state = _inputs(cell, I, H, seed=12, **shape)
    inputs = x if isinstance(x, list) else [x]
    leaves = [t.clone().requires_grad_() for t in [*inputs, *state, *weights.values()]]
    fn = _functional(layer, cell, list(weights), len(inputs), isinstance(x, list))
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,H", [(1, 29), (4, 40)])
def test_a_team_of_threads_matches_reference(cell, B, H, monkeypatch):
    """Force a 3-thread team (uneven unit blocks, barrier every step) on a small problem."""
    _force_team(monkeypatch, 3)
    T, I = 9, 5
    assert numba_rnn.Team(torch.zeros(4 * H, H), H, B).size == 3
    weights = _weights(cell, I, H, seed=B)
    x, state = _inputs(cell, I, H, seed=B + 1, T=T, B=B)
    ref, layer = _layers(cell, I, H)
    _assert_match(_run(layer, cell, weights, x, state), _run(ref, cell, weights, x, state),
                  f"{cell} B={B} H={H} in a team of 3")


def _numba_node(output):
    """The numba autograd node behind an output of the layer (past the base's views)."""
    pending, seen = [output.grad_fn], set()
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "team"):
            return node
        pending.extend(next_node for next_node, _ in node.next_functions)
    raise AssertionError("no numba node in the graph")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss_on", ["final state only", "y.sum()"])
def test_gradients_when_y_gets_none_or_a_broadcast_gradient(cell, loss_on):
    """No gradient for y (the kernel's empty-dy path), or an expanded (stride-0) one."""
    I, H = 4, 6
    weights = _weights(cell, I, H, seed=3)
    x, state = _inputs(cell, I, H, seed=4, lengths=LENGTHS)
    grads = []
    for layer in _layers(cell, I, H):
        layer.load_state_dict(weights)
        xs = [t.clone().requires_grad_() for t in x]
        leaves = [s.clone().requires_grad_() for s in state]
        y, final = layer(pack_sequence(xs, enforce_sorted=False),
                         tuple(leaves) if cell == "lstm" else leaves[0])
        last = final[-1] if cell == "lstm" else final   # c_n for LSTM: h_n gets none either
        loss = last.square().sum() if loss_on == "final state only" else y.data.sum()
        grads.append(torch.autograd.grad(loss, [*xs, *leaves, *layer.parameters()]))
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cell,options", [(cell, {}) for cell in CELLS]
                         + [("lstm", {"proj_size": 2})])
def test_second_backward_recomputes_and_agrees(cell, options):
    """retain_graph=True: the first backward consumed the buffers; the second rebuilds them."""
    T, B, I, H = 6, 2, 3, 4
    layer = impls.get("numba").build(cell, I, H, dtype=torch.float64, **options)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, _ = layer(x)
    dy = torch.randn_like(y)
    first = torch.autograd.grad(y, [x, *layer.parameters()], dy, retain_graph=True)
    second = torch.autograd.grad(y, [x, *layer.parameters()], dy)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- what is stored for the backward ---------------------------------------------------------


@pytest.mark.parametrize("cell,options,kept_per_unit", [
    ("lstm", {}, 4 + 1), ("lstm", {"proj_size": 2}, 4 + 1 + 1), ("gru", {}, 3 + 1),
    ("rnn_tanh", {}, 0), ("rnn_relu", {}, 0)])
def test_backward_keeps_only_the_documented_buffers(cell, options, kept_per_unit):
    """Besides the inputs and y: LSTM gates + c (+ m projected), GRU gates + hn, RNN nothing;
    freed after."""
    T, B, I, H = 7, 3, 4, 5
    h_out = options.get("proj_size") or H
    layer = impls.get("numba").build(cell, I, H, dtype=torch.float32, **options)
    x = torch.randn(T, B, I, requires_grad=True)
    y, _ = layer(x)
    node = _numba_node(y)
    buffers = [t for t in getattr(node, "buffers", None) or () if t is not None]
    assert sum(t.numel() for t in buffers) == T * B * H * kept_per_unit
    saved_rows = [t for t in node.saved_tensors if t is not None and t.shape[0] == T * B]
    assert sum(t.numel() for t in saved_rows) == T * B * (I + h_out)   # x and y, by reference
    assert any(t.data_ptr() == y.data_ptr() for t in saved_rows)
    y.sum().backward()
    assert getattr(node, "buffers", None) is None


# -- inference: no autograd, no stored gates ------------------------------------------------


def _forward(layer, cell, x, state):
    """[y, final state...] of one call; x a tensor or sequences (packed unsorted)."""
    arg = None if state is None else (tuple(state) if cell == "lstm" else state[0])
    packed = isinstance(x, list)
    y, final = layer(pack_sequence(x, enforce_sorted=False) if packed else x, arg)
    return [y.data if packed else y, *(final if cell == "lstm" else [final])]


_NO_GRAPH = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "nothing requires grad": contextlib.nullcontext,
}

INFERENCE_CASES = {
    "dense": dict(T=45, B=3),
    "packed": dict(lengths=[30, 45, 12]),
    "packed, proj_size": dict(lengths=[30, 45, 12], proj_size=7),
}


@pytest.mark.parametrize("cell,case", [(cell, case) for cell in CELLS for case in INFERENCE_CASES
                                       if cell == "lstm" or "proj" not in case])
@pytest.mark.parametrize("mode", sorted(_NO_GRAPH))
@pytest.mark.parametrize("team", [1, 3])
def test_inference_matches_reference_and_the_training_path(cell, case, mode, team, monkeypatch):
    """Several projection blocks, the last one short, on one thread and on a team of three."""
    _force_team(monkeypatch, team)
    shape, I, H = INFERENCE_CASES[case], 5, 29
    options = {k: v for k, v in shape.items() if k == "proj_size"}
    x, state = _inputs(cell, I, H, seed=team, **shape)
    steps = numba_rnn.Steps(torch.tensor([sum(n > t for n in shape["lengths"]) for t in range(45)])
                            if "lengths" in shape else torch.full((45,), 3))
    monkeypatch.setattr(numba_rnn, "_BLOCK_ROWS", 64)
    if cell in ("lstm", "gru"):   # the RNN's forward already stores nothing but y
        k = numba_rnn._block_steps(steps)
        assert 1 < k < 45 and 45 % k
    assert numba_rnn.team_size(cell, 3, H, options.get("proj_size", 0)) == (
        1 if options else team)
    weights = _weights(cell, I, H, seed=team, **options)
    ref, layer = _layers(cell, I, H, **options)
    for module in (ref, layer):
        module.load_state_dict(weights)
    if mode == "nothing requires grad":
        layer.requires_grad_(False)
    state_before = [s.clone() for s in state]
    with _NO_GRAPH[mode]():
        got = _forward(layer, cell, x, state)
    expected = _forward(ref, cell, x, state)
    layer.requires_grad_(True)
    training = _forward(layer, cell, x, state)
    assert training[0].grad_fn is not None
    for g, e, tr in zip(got, expected, training):
        assert g.grad_fn is None and not g.requires_grad
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(g, tr.detach(), rtol=1e-12, atol=1e-14)
    for s, before in zip(state, state_before):
        torch.testing.assert_close(s, before, rtol=0, atol=0)   # c0 is copied, not updated


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_in_float32_matches_torch_nn(cell):
    T, B, I, H = 30, 4, 7, 24
    weights = _weights(cell, I, H, seed=5)
    x, state = _inputs(cell, I, H, seed=6, T=T, B=B)
    torch_nn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H)
    layer = impls.get("numba").build(cell, I, H)
    f32 = {k: v.float() for k, v in weights.items()}
    torch_nn.load_state_dict(f32)
    layer.load_state_dict(f32)
    x32, state32 = x.float(), [s.float() for s in state]
    with torch.no_grad():
        got = _forward(layer, cell, x32, state32)
        expected = _forward(torch_nn, cell, x32, state32)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=2e-5)


_PEAK_CHILD = textwrap.dedent("""
    import ctypes, json, sys
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 * 1024)   # M_MMAP_THRESHOLD: a freed large block leaves the RSS
    import torch, impls
    torch.set_num_threads(1)
    T, B, H = 200, 32, 256

    def vm(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    def peak(call):
        call()
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                       # VmHWM := VmRSS
        before = vm("VmRSS:")
        call()
        return vm("VmHWM:") - before

    result = {}
    for cell in ("lstm", "gru"):
        layer = impls.get("numba").build(cell, input_size=H, hidden_size=H)
        x = torch.randn(T, B, H)

        def inference():
            with torch.no_grad():
                layer(x)

        result[cell] = {"inference": peak(inference), "training": peak(lambda: layer(x)),
                        "y": T * B * H * 4}
    print(json.dumps(result))
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's VmHWM reset")
def test_inference_keeps_no_gate_buffer():
    """Peak memory of one call in a fresh process: inference about y, training y + gates.

    A T*B*G*H gate buffer is 4x y (LSTM) or 3x y (GRU); inference must stay under 2x y. The
    training call (5-6x y) shows that the measurement sees such a buffer.
    """
    out = subprocess.run([sys.executable, "-c", _PEAK_CHILD], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    for cell, peak in json.loads(out.stdout.strip().splitlines()[-1]).items():
        assert peak["inference"] < 2 * peak["y"], (cell, peak)
        assert peak["training"] > 4 * peak["y"], (cell, peak)


# -- the JIT cache and the threads -----------------------------------------------------------


_CHILD = textwrap.dedent("""
    import json, torch, impls
    from impls import numba_kernels as K
    for cell in sorted(impls.get("numba").cells):
        for dtype in (torch.float32, torch.float64):
            layer = impls.get("numba").build(cell, input_size=3, hidden_size=4, dtype=dtype)
            x = torch.randn(5, 2, 3, dtype=dtype, requires_grad=True)
            y, _ = layer(x)
            y.sum().backward()
            with torch.no_grad():
                layer(x)
    kernels = [K.lstm_forward, K.lstm_backward, K.lstm_inference, K.gru_forward,
               K.gru_backward, K.gru_inference, K.rnn_forward, K.rnn_backward, K.refresh_packed]
    import numba
    try:
        layer_name = numba.threading_layer()
    except ValueError:
        layer_name = None
    print(json.dumps({
        "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
        "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
        "numba_threading_layer": layer_name,
    }))
""")


def _child():
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_fresh_process_loads_every_kernel_from_the_cache():
    _child()                                     # compiles whatever the cache still lacks
    again = _child()
    assert again["misses"] == 0
    assert again["hits"] == 9 * 2                # 9 kernels x (float32, float64)
    # numba's own thread pool never started: no kernel is parallel=True.
    assert again["numba_threading_layer"] is None


def test_no_kernel_is_numba_parallel():
    jitted = [v for v in vars(numba_kernels).values() if hasattr(v, "targetoptions")]
    assert len(jitted) >= 8
    assert not any(k.targetoptions.get("parallel") for k in jitted)


def test_team_size_never_exceeds_numba_threads_or_units(monkeypatch):
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 2)
    big = numba_rnn._MIN_STEP_MACS_FOR_TEAM  # B * 4H * H at H=256, B=1: 2**18 >= 2**17

    def size(H, batch, **kwargs):
        return numba_rnn.Team(torch.zeros(4 * H, H), H, batch, **kwargs).size
    expected = 2 if numba_rnn._BLAS.available else 1
    assert size(256, 1) == expected                            # batch 1 is worth a team
    assert size(15, big) == 1                                  # < 8 units per thread
    assert size(128, 1) == 1                                   # too little work per step
    assert size(256, 64, alone=True) == 1                      # a projected LSTM
    assert numba_rnn.team_size("lstm", 64, 256, proj_size=128) == 1
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 1)
    assert size(256, 64) == 1


def test_team_follows_numba_set_num_threads():
    """numba.set_num_threads(n) at run time sizes the team; 1 and 2 threads agree."""
    if numba.config.NUMBA_NUM_THREADS < 2 or not numba_rnn._BLAS.available:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 and a BLAS with thread control")
    cell, T, B, I, H = "lstm", 6, 32, 16, 128     # B * 4H * H = 2**21: worth a team
    weights = _weights(cell, I, H, seed=2)
    x, state = _inputs(cell, I, H, seed=3, T=T, B=B)
    layer = impls.get("numba").build(cell, I, H)
    expected = _run(torch.nn.LSTM(I, H), cell, weights, x, state, torch.float32)
    threads_before = numba.get_num_threads()
    results = {}
    try:
        for threads in (2, 1):
            numba.set_num_threads(threads)
            assert numba_rnn.team_size(cell, B, H) == threads
            training = _run(layer, cell, weights, x, state, torch.float32)
            with torch.no_grad():
                inference = _forward(layer, cell, x.float(), [s.float() for s in state])
            results[threads] = training, inference
    finally:
        numba.set_num_threads(threads_before)
    f32 = dict(rtol=1e-4, atol=2e-5)
    for threads, (training, inference) in results.items():
        _assert_match(training, expected, f"{threads} threads", rtol=1e-3, atol=1e-4)
        for got, key in zip(inference, ["y", "final0", "final1"]):
            torch.testing.assert_close(got.double(), expected[key], **f32)
    _assert_match(results[1][0], results[2][0], "1 vs 2 threads", rtol=1e-3, atol=1e-4)
    for one, two in zip(results[1][1], results[2][1]):
        torch.testing.assert_close(one, two, **f32)


def test_blas_is_single_threaded_inside_kernels_and_restored_after(monkeypatch):
    """team size x BLAS threads <= the threads numba may use, while any member runs."""
    if not numba_rnn._BLAS.available:
        pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
    get_threads = numba_rnn._BLAS._blas[0]
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 2)
    monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
    before = get_threads()
    team = numba_rnn.Team(torch.zeros(4 * 16, 16), 16, batch=3)
    seen = []

    def member(w_own, scratch, u0, u1, sync, size, k, partials):
        seen.append((u0, u1, w_own.shape, scratch.shape, size, k, partials.shape, get_threads()))

    team.run(member, lambda n: [(3, 4 * n)], backward=True)
    assert sorted(seen) == [(0, 8, (32, 16), (3, 32), 2, 0, (2, 2, 3, 16), 1),
                            (8, 16, (32, 16), (3, 32), 2, 1, (2, 2, 3, 16), 1)]
    assert get_threads() == before


def test_a_failing_member_releases_the_team(monkeypatch):
    """An exception in one member aborts the barrier for the others instead of hanging."""
    if not numba_rnn._BLAS.available:
        pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 2)
    monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
    H, B, T = 16, 2, 50
    team = numba_rnn.Team(torch.zeros(H, H), H, batch=B)
    steps = numba_rnn.Steps(torch.full((T,), B))
    y = np.zeros((T * B, H))
    h0 = np.zeros((B, H))

    def member(w_own, rec, u0, u1, sync, size):
        if u0 > 0:
            raise RuntimeError("member failed")
        numba_kernels.rnn_forward(steps.starts, steps.sizes, y, w_own, h0, False, rec, u0, u1,
                                  sync, size)

    with pytest.raises(RuntimeError, match="member failed"):
        team.run(member, lambda n: [(B, n)])


# -- the recurrent product, the packed weights, the team's CPUs ----------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 3, numba_kernels.SMALL_ROWS, numba_kernels.SMALL_ROWS + 1])
@pytest.mark.parametrize("K", [4, 13])
def test_product_is_a_times_w_in_either_order(dtype, rows, K):
    """Its own loop (up to SMALL_ROWS rows, blocks of four rows of w and a remainder) and
    BLAS beyond, forwards and in reverse, against a float64 product."""
    gen = np.random.default_rng(rows * K)
    a, w = gen.standard_normal((rows, K)).astype(dtype), gen.standard_normal((K, 37)).astype(dtype)
    exact = a.astype(np.float64) @ w.astype(np.float64)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for reverse in (False, True):
        out = np.full((rows, 37), np.nan, dtype)
        numba_kernels.product(a, w, out, reverse)
        np.testing.assert_allclose(out, exact, **tol)


def test_refresh_packed_packs_a_members_rows_and_only_when_they_changed():
    H, gates, u0, u1 = 12, 3, 4, 10
    w_hh = np.random.default_rng(0).standard_normal((gates * H, H))
    n = u1 - u0
    rows, columns = np.full((gates * n, H), np.nan), np.full((H, gates * n), np.nan)
    assert numba_kernels.refresh_packed(w_hh, H, u0, u1, rows, columns)
    expected = np.concatenate([w_hh[g * H + u0:g * H + u1] for g in range(gates)])
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(columns, expected.T)
    assert not numba_kernels.refresh_packed(w_hh, H, u0, u1, rows, columns)
    w_hh[2 * H + u1 - 1, H - 1] += 1.0                         # the last element of the last row
    assert numba_kernels.refresh_packed(w_hh, H, u0, u1, rows, columns)
    assert columns[H - 1, gates * n - 1] == w_hh[2 * H + u1 - 1, H - 1]
    w_hh[0, 0] = np.nan                                        # never equal: packed every time
    assert numba_kernels.refresh_packed(w_hh, H, 0, u1, np.full((gates * u1, H), np.nan),
                                        np.full((H, gates * u1), np.nan))


@pytest.mark.parametrize("team", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_weights_changed_in_place_or_through_data_are_seen(cell, team, monkeypatch):
    """The packed copies kept between calls follow W_hh whatever changed it."""
    _force_team(monkeypatch, team)
    I, H = 3, 16
    ref, layer = _layers(cell, I, H)
    x, state = _inputs(cell, I, H, seed=1, T=6, B=2)
    for change in ("first call", "in place", ".data"):
        weights = _weights(cell, I, H, seed=len(change))
        ref.load_state_dict(weights)
        w_hh = weights.pop("weight_hh_l0")
        layer.load_state_dict(weights, strict=False)
        if change == ".data":
            layer.weight_hh_l0.data.copy_(w_hh)
        else:
            with torch.no_grad():
                layer.weight_hh_l0.copy_(w_hh)
        with torch.no_grad():
            got, expected = _forward(layer, cell, x, state), _forward(ref, cell, x, state)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10, msg=change)


def test_calls_from_two_threads_on_the_same_weights_agree(monkeypatch):
    """A second call while one runs packs into its own arrays instead of sharing them."""
    _force_team(monkeypatch, 1)
    cell, I, H = "lstm", 4, 24
    ref, layer = _loaded_layers(cell, I, H, seed=3)
    inputs = [_inputs(cell, I, H, seed=s, T=40, B=2) for s in range(8)]
    with torch.no_grad():
        expected = [_forward(ref, cell, x, state) for x, state in inputs]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda xs: _forward(layer, cell, *xs), inputs))
    for g, e in zip(got, expected):
        for a, b in zip(g, e):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_a_late_member_finds_the_projection_done(monkeypatch):
    """Members claim the input projection task by task: one that starts 50 ms late does none
    of it, and the result is the same."""
    if not numba_rnn._BLAS.available:
        pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
    _force_team(monkeypatch, 2)
    cell, I, H = "gru", 5, 32
    ref, layer = _loaded_layers(cell, I, H, seed=4)
    x, state = _inputs(cell, I, H, seed=5, T=30, B=1)
    kernel, late = numba_kernels.gru_inference, []

    def member(*args):
        u0, sync = args[-4], args[-2]
        if u0 > 0:                                             # not the caller
            time.sleep(0.05)
            late.append(int(sync[numba_kernels.SYNC_DONE]))
        kernel(*args)

    monkeypatch.setattr(numba_rnn.kernels, "gru_inference", member)
    with torch.no_grad():
        got = _forward(layer, cell, x, state)
    assert late == [3 * 2]                                     # 3 gates x 2 members, all done
    for g, e in zip(got, _forward(ref, cell, x, state)):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-10)


def test_members_get_distinct_cpus_the_callers_first(monkeypatch):
    if numba_rnn._cpus_for(1) is None:
        pytest.skip("no sched_setaffinity or sched_getcpu here")
    here = numba_rnn._sched_getcpu()
    monkeypatch.setattr(numba_rnn.os, "sched_getaffinity", lambda pid: {here + 20, here, here + 10})
    assert numba_rnn._cpus_for(3) == [here, here + 10, here + 20]
    assert numba_rnn._cpus_for(2) == [here, here + 10]
    assert numba_rnn._cpus_for(4) is None                      # fewer CPUs than members
    monkeypatch.setattr(numba_rnn.os, "sched_getaffinity", lambda pid: {here + 100, here + 101})
    assert numba_rnn._cpus_for(2) is None                      # this thread's CPU not allowed


def test_a_member_is_bound_while_it_runs_and_released_after():
    if numba_rnn._cpus_for(1) is None:
        pytest.skip("no sched_setaffinity or sched_getcpu here")
    before = os.sched_getaffinity(0)
    cpu = min(before)
    seen = []
    numba_rnn._bound_to(cpu, lambda: seen.append(os.sched_getaffinity(0)))
    assert seen == [{cpu}] and os.sched_getaffinity(0) == before


def test_a_team_runs_unbound_where_binding_is_refused(monkeypatch):
    """Binding a thread to a CPU is an optimisation: where the system refuses it (a sandbox),
    the team runs anyway and gets the same result."""
    _force_team(monkeypatch, 2)

    def refused(pid, cpus):
        raise PermissionError("sched_setaffinity refused")

    monkeypatch.setattr(numba_rnn.os, "sched_setaffinity", refused)
    cell, I, H = "lstm", 3, 16
    ref, layer = _layers(cell, I, H)
    weights = _weights(cell, I, H, seed=6)
    x, state = _inputs(cell, I, H, seed=7, T=5, B=2)
    _assert_match(_run(layer, cell, weights, x, state), _run(ref, cell, weights, x, state),
                  "binding refused")
