"""This machine's limit for one batch-1 step: reading the recurrent weights from cache.

At batch 1 a recurrent step is a matrix-vector product whose weights sit in the cores'
caches, so the limit is how fast the cores stream those bytes, not the FLOP rate (the GEMM
peak, `bench.speed.gemm_peak`, is the yardstick for large batches). Measured in the same run
as the cases it is held to, as the layer's kernels would read them at best: the weights are
split evenly over the case's threads, each thread bound to a CPU of its own and reading its
share again and again, in alternating direction (so that a share larger than the core's L2
cache keeps part of itself there, as the numba kernels do), all threads at once. The limit
of a step is the slowest thread's time for one pass; the best of a few rounds is taken (the
least disturbed, as for the GEMM peak).

A layer's step reads W_hh (gates x H x H) once in a forward, and once more in a backward: a
batch-1 step's time over `streams` x this limit is how near an implementation comes to it.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from numba import njit

#: The dtypes whose weights a CPU kernel streams, and their sizes.
ITEMSIZE = {"float32": 4, "float64": 8}
#: Seconds of reading per thread and round, and the rounds (the best one is kept).
SECONDS_PER_ROUND = 0.02
ROUNDS = 5


@njit(nogil=True, cache=True, error_model="numpy", fastmath=True)
def _read(share, passes):
    """Sum `share` (rows, m) `passes` times, blocks of four rows, every other pass backwards.

    The sum is returned so that nothing is optimised away; fast-math lets it vectorise.
    """
    total = 0.0
    quads = share.shape[0] // 4
    for p in range(passes):
        acc = share[0, 0] * 0
        for q in range(quads):
            r = 4 * (quads - 1 - q if p % 2 else q)
            for i in range(r, r + 4):
                row = share[i]
                for j in range(row.size):
                    acc += row[j]
        total += acc
    return total


def weight_bytes(gates: int, hidden_size: int, dtype: str) -> int:
    """The bytes of a layer's W_hh: what a batch-1 step reads once per pass (forward or
    backward)."""
    return gates * hidden_size * hidden_size * ITEMSIZE[dtype]


def _cpus(threads: int) -> list[int | None]:
    """A CPU of its own for each thread where the process may use enough, else no binding."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return allowed[:threads] if len(allowed) >= threads else [None] * threads


def _round(shares: list[np.ndarray], passes: int) -> float:
    """Seconds per pass of the slowest thread, all threads reading at once."""
    times = [0.0] * len(shares)
    start = threading.Barrier(len(shares))

    def reader(k: int, cpu: int | None) -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _read(shares[k], 2)                  # into this core's cache
        start.wait()
        t0 = time.perf_counter()
        _read(shares[k], passes)
        times[k] = (time.perf_counter() - t0) / passes

    threads = [threading.Thread(target=reader, args=(k, cpu))
               for k, cpu in enumerate(_cpus(len(shares)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(times)


def measure(nbytes: int, threads: int, dtype: str = "float32", rounds: int = ROUNDS,
            seconds_per_round: float = SECONDS_PER_ROUND) -> dict:
    """The time to read `nbytes` of weights once, split over `threads` threads (CPU only)."""
    if dtype not in ITEMSIZE:
        raise ValueError(f"the streaming limit is measured for {sorted(ITEMSIZE)} weights, "
                         f"got {dtype!r}")
    if threads < 1 or nbytes < threads * 4 * ITEMSIZE[dtype]:
        raise ValueError(f"need at least one thread and 4 elements per thread, got "
                         f"{threads} thread(s) for {nbytes} bytes")
    per_thread = nbytes // threads // ITEMSIZE[dtype]
    rows = 64 if per_thread >= 64 * 64 else 4     # 16 blocks to alternate, or one if small
    gen = np.random.default_rng(0)
    shares = [gen.random((rows, per_thread // rows)).astype(dtype) for _ in range(threads)]
    share_bytes = shares[0].nbytes
    first = _round(shares, 2)
    passes = max(2, int(seconds_per_round / max(first, 1e-9)))
    samples = [_round(shares, passes) for _ in range(rounds)]
    best = min(samples)
    return {"bytes": nbytes, "threads": threads, "per_thread_bytes": share_bytes,
            "pass_s": best, "gb_per_s": share_bytes * threads / best / 1e9,
            "samples_s": samples}
