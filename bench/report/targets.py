"""Issue 3's targets for the `numba` implementation, measured on this machine: prints a table.

    python -m bench.report.targets            # every row (a few minutes on 2 cores)
    python -m bench.report.targets --quick    # fewer repeats, for a smoke run
    python -m bench.report.targets --profile --out results/numba   # the committed table

Speed rows are ratios of medians taken in one run: the implementations are interleaved call
by call after a warm-up, float32, one layer, I = H = 256, T = 100; a forward is measured under
`torch.no_grad()`, a forward+backward is `y.backward(dy)` with the input requiring grad.
The memory row is the peak-RSS increase of one training step (forward, `y.backward(dy)`,
input not requiring grad) in a fresh process per implementation, against the bytes BPTT must
keep, T*B*(gates+states) floats. The first-call row times `build` + the first forward in a
fresh process whose numba cache is warm (numba's import included).
`--profile` adds, per speed case, where numba's time goes: the input-projection GEMM, the
recurrent matrix products of the time loop (timed alone, the same T products of (B, H) by
(H, G)), the backward's weight and input GEMMs, and the rest (elementwise gate math, memory
traffic, loop and Python overhead), which is what a missed target is bounded by.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

import impls
from bench.environment import fingerprint
from impls import numba_rnn

DTYPE = torch.float32
SIZE = 256
STEPS = 100
MEMORY_CASE = dict(T=1000, B=32, size=128)
#: (label, cell, B, training, {reference implementation: target ratio})
SPEED_ROWS = [
    ("LSTM forward, B=1", "lstm", 1, False, {"torch": 1.0}),
    ("LSTM forward, B=64", "lstm", 64, False, {"torch": 1.5, "torch-native": 1.0}),
    ("LSTM forward+backward, B=64", "lstm", 64, True, {"torch": 1.5}),
    ("LSTM forward+backward, B=1", "lstm", 1, True, {"torch": 1.0}),
    ("GRU forward, B=1", "gru", 1, False, {"torch": 0.8}),
    ("GRU forward, B=64", "gru", 64, False, {"torch": 0.8}),
    ("GRU forward+backward, B=1", "gru", 1, True, {"torch": 0.8}),
    ("GRU forward+backward, B=64", "gru", 64, True, {"torch": 0.8}),
]
MEMORY_TARGET = 1.3
FIRST_CALL_TARGET_S = 1.0


def _layers(cell, names, size):
    """The named implementations of `cell`, all holding the same weights."""
    layers = {name: impls.get(name).build(cell, input_size=size, hidden_size=size, dtype=DTYPE)
              for name in names}
    state = layers[names[-1]].state_dict()
    for layer in layers.values():
        layer.load_state_dict(state)
    return layers


def _call(layer, x, dy, training):
    """One timed call: a forward (no autograd) or a forward+backward with fresh gradients."""
    if not training:
        with torch.no_grad():
            return layer(x)
    layer.zero_grad(set_to_none=True)
    x.grad = None
    y, _ = layer(x)
    y.backward(dy)
    return None


def time_interleaved(layers, x, dy, training, repeats, warmup=3):
    """Seconds per call for each layer, the implementations alternating call by call."""
    names = list(layers)
    for _ in range(warmup):
        for name in names:
            _call(layers[name], x, dy, training)
    times = {name: [] for name in names}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            start = time.perf_counter()
            _call(layers[name], x, dy, training)
            times[name].append(time.perf_counter() - start)
    return times


def speed_rows(quick):
    rows = []
    for label, cell, B, training, targets in SPEED_ROWS:
        names = ["numba", *targets]
        layers = _layers(cell, names, SIZE)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(STEPS, B, SIZE, generator=gen, dtype=DTYPE).requires_grad_(training)
        dy = torch.randn(STEPS, B, SIZE, generator=gen, dtype=DTYPE)
        repeats = (7 if quick else 40) if B == 1 else (5 if quick else 15)
        times = time_interleaved(layers, x, dy, training, repeats)
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        for ref, target in targets.items():
            rows.append(dict(case=label, against=ref, target=f"<= {target:g}x",
                             ratio=medians["numba"] / medians[ref],
                             detail=f"numba {medians['numba'] * 1e3:.2f} ms, {ref} "
                                    f"{medians[ref] * 1e3:.2f} ms, {repeats} repeats",
                             met=medians["numba"] / medians[ref] <= target))
        del layers
        gc.collect()
    return rows


# -- profile: where numba's time goes -----------------------------------------------------------


@numba.njit(cache=True)
def _recurrent_products(h, w_t, out, steps):
    """The time loop's matrix work alone: `steps` products (B, H) x (H, G), as the kernels do."""
    for _ in range(steps):
        np.dot(h, w_t, out)


def _median_s(fn, repeats):
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def profile_case(cell, B, training, quick):
    """numba's time for one speed case split into its parts: {part: (ms, share of the call)}."""
    layer = _layers(cell, ["numba"], SIZE)["numba"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, B, SIZE, generator=gen, dtype=DTYPE).requires_grad_(training)
    dy = torch.randn(STEPS, B, SIZE, generator=gen, dtype=DTYPE)
    repeats = (5 if quick else 20) if B == 1 else (3 if quick else 10)
    w_ih, w_hh = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
    b_ih, G = layer.bias_ih_l0.detach(), w_hh.shape[0]
    parts = {"total": _median_s(lambda: _call(layer, x, dy, training), repeats),
             "input projection": _median_s(
                 lambda: numba_rnn._project(x.detach(), w_ih, b_ih), repeats)}
    # As the kernels run them: each member of the team multiplies by its own block of W_hh
    # with a one-thread BLAS, the members at once; one member's products stand for the team.
    team = numba_rnn.Team(w_hh, B)
    w_t = np.ascontiguousarray(team.w_own[0].T)
    h = np.ones((B, SIZE), dtype=np.float32)
    out = np.empty((B, w_t.shape[1]), dtype=np.float32)
    with numba_rnn._BLAS:
        # The backward makes as many recurrent products as the forward (dh_{t-1} = dgates W_hh).
        parts["recurrent products"] = (2 if training else 1) * _median_s(
            lambda: _recurrent_products(h, w_t, out, STEPS), repeats)
    if training:
        d = torch.randn(STEPS * B, G, dtype=DTYPE)
        x2, y2 = x.detach().reshape(STEPS * B, SIZE), dy.reshape(STEPS * B, SIZE)
        parts["backward weight/input GEMMs"] = _median_s(
            lambda: (d @ w_ih, d.t() @ x2, d.t() @ y2), repeats)
    parts["rest (elementwise, memory, overhead)"] = 2 * parts["total"] - sum(parts.values())
    return {k: (v * 1e3, v / parts["total"]) for k, v in parts.items()}


def profile_rows(quick):
    return [(label, profile_case(cell, B, training, quick))
            for label, cell, B, training, _ in SPEED_ROWS]


# -- memory: one training step in a fresh process ----------------------------------------------


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_worker(name, cell):
    """Child process: print the peak RSS increase (bytes) of one training step as JSON."""
    T, B, size = MEMORY_CASE["T"], MEMORY_CASE["B"], MEMORY_CASE["size"]
    layer = _layers(cell, [name], size)[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, size, generator=gen, dtype=DTYPE)
    dy = torch.randn(T, B, size, generator=gen, dtype=DTYPE)
    y, _ = layer(x[:2])          # load kernels and autograd machinery at a tiny size
    y.backward(dy[:2])
    del y
    layer.zero_grad(set_to_none=True)
    gc.collect()
    reset = _reset_peak_rss()
    before = _rss_bytes()
    y, _ = layer(x)
    y.backward(dy)
    peak = _peak_rss_bytes()
    print(json.dumps({"increase": peak - before, "peak_was_reset": reset}))


def bptt_bytes(cell, T, B, H):
    """What BPTT must keep: the gate activations and the states, per step and batch row."""
    gates = impls.GATES[cell]
    states = 2 if cell == "lstm" else 1
    return T * B * (gates + states) * H * torch.finfo(DTYPE).bits // 8


def _child(*args):
    out = subprocess.run([sys.executable, "-m", "bench.report.targets", *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_rows():
    T, B, size = MEMORY_CASE["T"], MEMORY_CASE["B"], MEMORY_CASE["size"]
    must_keep = bptt_bytes("lstm", T, B, size)
    rows = []
    for name in ("numba", "torch"):
        result = _child("--memory-worker", name, "lstm")
        ratio = result["increase"] / must_keep
        rows.append(dict(
            case=f"LSTM training peak memory, T={T}, B={B}, I=H={size}", against="BPTT bytes",
            target=f"<= {MEMORY_TARGET:g}x" if name == "numba" else "(for scale)",
            ratio=ratio, met=ratio <= MEMORY_TARGET if name == "numba" else None,
            detail=f"{name}: +{result['increase'] / 2**20:.1f} MiB peak RSS vs "
                   f"{must_keep / 2**20:.1f} MiB"
                   + ("" if result["peak_was_reset"] else " (ru_maxrss: peak not resettable)")))
    return rows


# -- first call in a fresh process ----------------------------------------------------------------


def first_call_worker():
    """Child process: time `build` + first forward with numba's on-disk cache (JSON)."""
    x = torch.randn(STEPS, 1, SIZE, dtype=DTYPE)
    start = time.perf_counter()
    layer = impls.get("numba").build("lstm", input_size=SIZE, hidden_size=SIZE, dtype=DTYPE)
    layer(x)
    elapsed = time.perf_counter() - start
    from impls import numba_kernels

    misses = sum(numba_kernels.lstm_forward.stats.cache_misses.values())
    print(json.dumps({"seconds": elapsed, "cache_misses": misses}))


def first_call_rows(repeats=3):
    _child("--first-call-worker")                       # fills the cache if it was cold
    results = [_child("--first-call-worker") for _ in range(repeats)]
    seconds = statistics.median(r["seconds"] for r in results)
    misses = max(r["cache_misses"] for r in results)
    return [dict(case="first call in a fresh process (cached JIT)", against="seconds",
                 target=f"<= {FIRST_CALL_TARGET_S:g} s", ratio=seconds,
                 met=seconds <= FIRST_CALL_TARGET_S and misses == 0,
                 detail=f"median of {repeats} processes; build + first LSTM forward, "
                        f"numba import included; recompilations: {misses}")]


def table_lines(rows):
    lines = ["| case | against | target | measured | met | detail |", f"|{'---|' * 6}"]
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        lines.append(f"| {r['case']} | {r['against']} | {r['target']} | {r['ratio']:.2f} | "
                     f"{met} | {r['detail']} |")
    return lines


def profile_lines(profile):
    lines = ["", "Where numba's time goes (ms, share of the call):", ""]
    for label, parts in profile:
        shares = ", ".join(f"{k} {ms:.2f} ({share:.0%})" for k, (ms, share) in parts.items()
                           if k != "total")
        lines.append(f"- {label}: {parts['total'][0]:.2f} ms = {shares}")
    return lines


def write_outputs(out, rows, profile, env):
    """TARGETS.md and targets.json in `out`, each written whole (temporary file, rename)."""
    out.mkdir(parents=True, exist_ok=True)
    git = env["git"]
    md = ["# numba targets", "",
          f"Command `{' '.join(env['command'])}`, commit {git.get('commit')}"
          f"{' (dirty)' if git.get('dirty') else ''}, {env['date']}; {env['cpu']}, "
          f"{env['cores']['usable']} cores, load {env['load_average'][0]:.1f} at the start; "
          f"torch {env['versions']['torch']} ({env['threads']['torch']} threads), numba "
          f"{env['versions']['numba']}. Ratios are of medians taken in this one run.", "",
          *table_lines(rows), *(profile_lines(profile) if profile else [])]
    data = {"environment": env, "rows": rows,
            "profile": [{"case": label, "parts_ms_share": parts} for label, parts in profile]}
    for name, text in (("TARGETS.md", "\n".join(md) + "\n"),
                       ("targets.json", json.dumps(data, indent=1) + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--profile", action="store_true",
                        help="also split numba's time into GEMMs and the rest, per case")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write TARGETS.md and targets.json (with the environment) "
                             "here, e.g. results/numba")
    parser.add_argument("--memory-worker", nargs=2, metavar=("IMPL", "CELL"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--first-call-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        return memory_worker(*args.memory_worker)
    if args.first_call_worker:
        return first_call_worker()
    env = fingerprint(["python", "-m", "bench.report.targets", *(argv or sys.argv[1:])])
    rows = speed_rows(args.quick) + memory_rows() + first_call_rows()
    profile = profile_rows(args.quick) if args.profile else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, {DTYPE}")
    print("\n".join(table_lines(rows) + (profile_lines(profile) if profile else [])))
    if args.out:
        write_outputs(args.out, rows, profile, env)
        print(f"wrote {args.out / 'TARGETS.md'} and targets.json")


if __name__ == "__main__":
    main()
