"""This machine's GEMM peak, measured in the same run as the cases it is a yardstick for.

A recurrent layer is mostly matrix products, so the best square `torch.mm` throughput on a
case's core budget is the physical limit its GFLOP/s are held to (one peak per device, dtype
and number of threads). The peak is the
best sample over a few sizes (the largest sizes reach it; on a noisy machine the best sample
is the least disturbed one), 2 n^3 FLOPs per product. On CUDA, float32 products run
without TF32 unless the user enabled it (``torch.backends.cuda.matmul.allow_tf32``), while
cuDNN's RNNs may use TF32 by default: a fraction above 100% is then possible and means just
that.
"""

from __future__ import annotations

import functools
import time

import torch

from bench.workload import DTYPES, seconds_per_call

#: Square sizes tried per device: a GPU needs far larger products to reach its peak.
SIZES = {"cpu": (256, 512, 1024, 2048), "cuda": (1024, 2048, 4096, 8192)}
SECONDS_PER_SIZE = 0.25
MIN_SAMPLES = 3


def measure(device: str, dtype: str, threads: int, sizes=None,
            seconds_per_size=SECONDS_PER_SIZE) -> dict:
    """Best GFLOP/s of an n x n product over `sizes` on `threads` torch threads."""
    sizes = SIZES[device] if sizes is None else sizes
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(device, dtype, sizes, seconds_per_size)
    finally:
        torch.set_num_threads(before)


def _measure(device: str, dtype: str, sizes, seconds_per_size) -> dict:
    def clock(fn):
        return seconds_per_call(fn, device=device)
    best = {"gflops": 0.0, "n": None}
    per_size = {}
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        a, b = (torch.randn(n, n, generator=gen).to(device, DTYPES[dtype])
                for _ in range(2))
        product = functools.partial(torch.mm, a, b, out=torch.empty_like(a))
        clock(product)  # first call: allocator, threads, dispatch
        samples = []
        start = time.perf_counter()
        while len(samples) < MIN_SAMPLES or time.perf_counter() - start < seconds_per_size:
            samples.append(clock(product))
        gflops = 2 * n ** 3 / min(samples) / 1e9
        per_size[str(n)] = gflops
        if gflops > best["gflops"]:
            best = {"gflops": gflops, "n": n}
    return {**best, "per_size": per_size}
