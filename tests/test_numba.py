"""What only the `numba` implementation has: its own tanh/sigmoid, its hand-derived backward,
its inference path, its on-disk JIT cache, its threads and its buffers. (The shared
conformance and interface suites cover it like every other implementation; they ask for
gradients, so they reach only its training path.)"""

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

import impls
from impls import numba_kernels, numba_rnn

from oracle import assert_match, make_inputs, run

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


# -- the hand-derived backward ---------------------------------------------------------------


def _functional(layer, cell):
    """(x, state..., params...) -> (y, final state...) so that gradcheck sees every leaf."""
    names = impls.layer.PARAMETER_NAMES
    n_state = 2 if cell == "lstm" else 1

    def fn(x, *rest):
        state, params = rest[:n_state], dict(zip(names, rest[n_state:]))
        arg = tuple(state) if cell == "lstm" else state[0]
        y, final = torch.func.functional_call(layer, params, (x, arg))
        return (y, *final) if cell == "lstm" else (y, final)
    return fn


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,B", [(1, 1), (4, 3)])
def test_gradcheck_float64(cell, T, B):
    I, H = 3, 4
    layer = impls.get("numba").build(cell, input_size=I, hidden_size=H, dtype=torch.float64)
    weights, x, state, _ = make_inputs(cell, T, B, I, H, True, seed=11 * T + B)
    leaves = [x, *state, *(weights[n] for n in impls.layer.PARAMETER_NAMES)]
    leaves = [t.clone().requires_grad_() for t in leaves]
    assert torch.autograd.gradcheck(_functional(layer, cell), leaves, eps=1e-6, atol=1e-7)


def _layers(cell, I, H):
    dims = dict(input_size=I, hidden_size=H, dtype=torch.float64)
    return impls.get("reference").build(cell, **dims), impls.get("numba").build(cell, **dims)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B,H", [(1, 29), (4, 40)])
def test_a_team_of_threads_matches_reference(cell, B, H, monkeypatch):
    """Force a 3-thread team (uneven unit blocks, barrier every step) on a small problem."""
    if not numba_rnn._BLAS.available:
        pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
    monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
    monkeypatch.setattr(numba_rnn, "_MIN_UNITS_PER_THREAD", 1)
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 3)
    T, I = 9, 5
    assert numba_rnn.Team(torch.zeros(4 * H, H), B).size == 3
    weights, x, state, upstream = make_inputs(cell, T, B, I, H, True, seed=B)
    ref, layer = _layers(cell, I, H)
    expected = run(ref, cell, weights, x, state, upstream, torch.float64)
    got = run(layer, cell, weights, x, state, upstream, torch.float64)
    assert_match(got, expected, torch.float64, f"{cell} B={B} H={H} in a team of 3")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss_on", ["final state only", "y.sum()"])
def test_gradients_when_y_gets_none_or_a_broadcast_gradient(cell, loss_on):
    """No gradient for y (the kernel's empty-dy path), or an expanded (stride-0) one."""
    T, B, I, H = 5, 3, 4, 6
    weights, x, state, _ = make_inputs(cell, T, B, I, H, True, seed=3)
    grads = []
    for layer in _layers(cell, I, H):
        layer.load_state_dict(weights)
        xg = x.clone().requires_grad_()
        leaves = [s.clone().requires_grad_() for s in state]
        y, final = layer(xg, tuple(leaves) if cell == "lstm" else leaves[0])
        last = final[-1] if cell == "lstm" else final   # c_n for LSTM: h_n gets none either
        loss = last.square().sum() if loss_on == "final state only" else y.sum()
        grads.append(torch.autograd.grad(loss, [xg, *leaves, *layer.parameters()]))
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_second_backward_recomputes_and_agrees(cell):
    """retain_graph=True: the first backward consumed the buffers; the second rebuilds them."""
    T, B, I, H = 6, 2, 3, 4
    layer = impls.get("numba").build(cell, input_size=I, hidden_size=H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    y, _ = layer(x)
    dy = torch.randn_like(y)
    first = torch.autograd.grad(y, [x, *layer.parameters()], dy, retain_graph=True)
    second = torch.autograd.grad(y, [x, *layer.parameters()], dy)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- what is stored for the backward ---------------------------------------------------------


@pytest.mark.parametrize("cell,kept_per_row", [("lstm", 4 + 1), ("gru", 3 + 1),
                                               ("rnn_tanh", 0), ("rnn_relu", 0)])
def test_backward_keeps_only_the_documented_buffers(cell, kept_per_row):
    """Besides the inputs and y: LSTM gates + c, GRU gates + hn, RNN nothing; freed after."""
    T, B, I, H = 7, 3, 4, 5
    layer = impls.get("numba").build(cell, input_size=I, hidden_size=H, dtype=torch.float32)
    x = torch.randn(T, B, I, requires_grad=True)
    y, _ = layer(x)
    node = y.grad_fn
    buffers = getattr(node, "buffers", None) or ()
    assert sum(t.numel() for t in buffers) == T * B * H * kept_per_row
    saved_big = [t for t in node.saved_tensors if t.shape[:2] == (T, B)]
    assert sum(t.numel() for t in saved_big) == T * B * (I + H)      # x and y, by reference
    assert any(t.data_ptr() == y.data_ptr() for t in saved_big)
    y.sum().backward()
    assert getattr(node, "buffers", None) is None


# -- inference: no autograd, no stored gates ------------------------------------------------


def _forward(layer, cell, x, state):
    """[y, final state...] of one call."""
    arg = None if state is None else (tuple(state) if cell == "lstm" else state[0])
    y, final = layer(x, arg)
    return [y, *(final if cell == "lstm" else [final])]


_NO_GRAPH = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "nothing requires grad": contextlib.nullcontext,
}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", sorted(_NO_GRAPH))
@pytest.mark.parametrize("team", [1, 3])
def test_inference_matches_reference_and_the_training_path(cell, mode, team, monkeypatch):
    """Several projection blocks, the last one short, on one thread and on a team of three."""
    if team > 1:
        if not numba_rnn._BLAS.available:
            pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
        monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
        monkeypatch.setattr(numba_rnn, "_MIN_UNITS_PER_THREAD", 1)
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: team)
    T, B, I, H = 45, 3, 5, 29
    if cell in ("lstm", "gru"):   # the RNN's forward already stores nothing but y
        steps = numba_rnn._block_steps(T, B, impls.GATES[cell])
        assert 1 < steps < T and T % steps
    assert numba_rnn.team_size(cell, B, H) == team
    weights, x, state, _ = make_inputs(cell, T, B, I, H, True, seed=team)
    ref, layer = _layers(cell, I, H)
    for module in (ref, layer):
        module.load_state_dict(weights)
    if mode == "nothing requires grad":
        layer.requires_grad_(False)
    state_before = [s.clone() for s in state]
    with _NO_GRAPH[mode]():
        got = _forward(layer, cell, x, state)
    expected = _forward(ref, cell, x, state)
    layer.requires_grad_(True)
    training = _forward(layer, cell, x.clone().requires_grad_(), state)
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
    weights, x, state, _ = make_inputs(cell, T, B, I, H, True, seed=5)
    torch_nn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H)
    layer = impls.get("numba").build(cell, input_size=I, hidden_size=H)
    f32 = {k: v.float() for k, v in weights.items()}
    torch_nn.load_state_dict(f32)
    layer.load_state_dict(f32)
    x32, state32 = x.float(), [s.float() for s in state]
    with torch.no_grad():
        got = _forward(layer, cell, x32, state32)
        y, final = torch_nn(x32, tuple(state32) if cell == "lstm" else state32[0])
    expected = [y, *(final if cell == "lstm" else [final])]
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
               K.gru_backward, K.gru_inference, K.rnn_forward, K.rnn_backward]
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
    assert again["hits"] == 8 * 2                # 8 kernels x (float32, float64)
    # numba's own thread pool never started: no kernel is parallel=True.
    assert again["numba_threading_layer"] is None


def test_no_kernel_is_numba_parallel():
    jitted = [v for v in vars(numba_kernels).values() if hasattr(v, "targetoptions")]
    assert len(jitted) >= 8
    assert not any(k.targetoptions.get("parallel") for k in jitted)


def test_team_size_never_exceeds_numba_threads_or_units(monkeypatch):
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 2)
    big = numba_rnn._MIN_STEP_MACS_FOR_TEAM  # B * 4H * H at H=256, B=8: 2**21

    def size(H, batch):
        return numba_rnn.Team(torch.zeros(4 * H, H), batch).size
    expected = 2 if numba_rnn._BLAS.available else 1
    assert size(256, big // (4 * 256 * 256)) == expected
    assert size(15, big) == 1                                  # < 8 units per thread
    assert size(256, 1) == 1                                   # too little work per step
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 1)
    assert size(256, 64) == 1


def test_team_follows_numba_set_num_threads():
    """numba.set_num_threads(n) at run time sizes the team; 1 and 2 threads agree."""
    if numba.config.NUMBA_NUM_THREADS < 2 or not numba_rnn._BLAS.available:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 and a BLAS with thread control")
    cell, T, B, I, H = "lstm", 6, 32, 16, 128     # B * 4H * H = 2**21: worth a team
    weights, x, state, upstream = make_inputs(cell, T, B, I, H, True, seed=2)
    layer = impls.get("numba").build(cell, input_size=I, hidden_size=H)
    oracle = torch.nn.LSTM(I, H)
    expected = run(oracle, cell, weights, x, state, upstream, torch.float32)
    threads_before = numba.get_num_threads()
    results = {}
    try:
        for threads in (2, 1):
            numba.set_num_threads(threads)
            assert numba_rnn.team_size(cell, B, H) == threads
            training = run(layer, cell, weights, x, state, upstream, torch.float32)
            with torch.no_grad():
                inference = _forward(layer, cell, x.float(), [s.float() for s in state])
            results[threads] = training, inference
    finally:
        numba.set_num_threads(threads_before)
    for threads, (training, inference) in results.items():
        assert_match(training, expected, torch.float32, f"{threads} threads")
        for got, key in zip(inference, ["y", "final0", "final1"]):
            torch.testing.assert_close(got.double(), expected[key], rtol=1e-4, atol=2e-5)
    assert_match(results[1][0], results[2][0], torch.float32, "1 vs 2 threads")
    for one, two in zip(results[1][1], results[2][1]):
        torch.testing.assert_close(one, two, rtol=1e-4, atol=2e-5)


def test_blas_is_single_threaded_inside_kernels_and_restored_after(monkeypatch):
    """team size x BLAS threads <= the threads numba may use, while any member runs."""
    if not numba_rnn._BLAS.available:
        pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
    get_threads = numba_rnn._BLAS._blas[0]
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 2)
    monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
    before = get_threads()
    team = numba_rnn.Team(torch.zeros(4 * 16, 16), batch=3)
    seen = []

    def member(w_own, work, u0, u1, sync, size):
        seen.append((u0, u1, w_own.shape, work.shape, size, get_threads()))

    team.run(member, 3, np.float32, 4)
    assert sorted(seen) == [(0, 8, (32, 16), (3, 32), 2, 1), (8, 16, (32, 16), (3, 32), 2, 1)]
    assert get_threads() == before


def test_a_failing_member_releases_the_team(monkeypatch):
    """An exception in one member aborts the barrier for the others instead of hanging."""
    if not numba_rnn._BLAS.available:
        pytest.skip("the BLAS behind numba's np.dot has no thread control: one thread only")
    monkeypatch.setattr(numba_rnn, "_numba_threads", lambda: 2)
    monkeypatch.setattr(numba_rnn, "_MIN_STEP_MACS_FOR_TEAM", 0)
    H, B, T = 16, 2, 50
    team = numba_rnn.Team(torch.zeros(H, H), batch=B)
    y = np.zeros((T, B, H))
    h0 = np.zeros((B, H))

    def member(w_own, pre, u0, u1, sync, size):
        if u0 > 0:
            raise RuntimeError("member failed")
        numba_kernels.rnn_forward(y, w_own, h0, False, pre, u0, u1, sync, size)

    with pytest.raises(RuntimeError, match="member failed"):
        team.run(member, B, np.float64, 1)
