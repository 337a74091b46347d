"""Issue 3's targets for the `numba` implementation, measured on this machine: prints a table.

    python -m bench.numba_targets            # every row (a few minutes on 2 cores)
    python -m bench.numba_targets --quick    # fewer repeats, for a smoke run

Speed rows are ratios of medians taken in one run: the implementations are interleaved call
by call after a warm-up, float32, one layer, I = H = 256, T = 100; a forward is measured under
`torch.no_grad()`, a forward+backward is `y.backward(dy)` with the input requiring grad.
The memory row is the peak-RSS increase of one training step (forward, `y.backward(dy)`,
input not requiring grad) in a fresh process per implementation, against the bytes BPTT must
keep, T*B*(gates+states) floats. The first-call row times `build` + the first forward in a
fresh process whose numba cache is warm (numba's import included).
The `--profile` flag splits numba's time into its GEMMs and its elementwise loop.
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

import torch

import impls

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
    out = subprocess.run([sys.executable, "-m", "bench.numba_targets", *args],
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


def print_table(rows):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, {DTYPE}")
    header = f"| case | against | target | measured | met | detail |\n|{'---|' * 6}"
    print(header)
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        print(f"| {r['case']} | {r['against']} | {r['target']} | {r['ratio']:.2f} | {met} "
              f"| {r['detail']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--memory-worker", nargs=2, metavar=("IMPL", "CELL"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--first-call-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        return memory_worker(*args.memory_worker)
    if args.first_call_worker:
        return first_call_worker()
    rows = speed_rows(args.quick) + memory_rows() + first_call_rows()
    print_table(rows)


if __name__ == "__main__":
    main()
