"""pytest-benchmark micro-benchmarks: one `Workload.call` per implementation x cell x mode.

What is timed is exactly `bench.workload.Workload.call`, the call every timer of the project
measures (inference: a forward under no_grad; training: a forward and y.backward(dy) with the
input's gradient), on its canonical weights and inputs; pytest-benchmark's fixture does the
timing, so its `--benchmark-compare-fail` can gate on it. One thread, torch's and numba's.

Outside `testpaths`, so a plain `pytest` never times anything; run them on purpose:

    pytest benchmarks/pytest --benchmark-autosave            # on the base commit
    pytest benchmarks/pytest --benchmark-compare --benchmark-compare-fail=median:10%

Saved runs live in .benchmarks/, per machine: compare only runs taken on the same machine.
For a gate that holds on a busy machine use `python -m bench gate`, which interleaves both
commits in one run.
"""

import pytest
import torch

import impls
from bench import workload

T, B, SIZE = 32, 16, 64
DTYPE = "float32"
#: Calls before timing: the first compiles (TorchScript, numba), and TorchScript's profiling
#: executor settles on its optimised graph a few calls later.
WARMUP_CALLS = 5

try:
    import numba
except ImportError:
    numba = None


def _numba_threads():
    """numba's thread count, without starting its pool just to ask."""
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", True):
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: the setting whose timings move least with the machine's load.

    numba first: starting its pool with the OpenMP threading layer sets OpenMP's thread
    count, which torch's OpenMP regions would then use whatever torch.get_num_threads() says.
    """
    torch_before = torch.get_num_threads()
    numba_before = _numba_threads() if numba is not None else None
    if numba is not None:
        numba.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    if numba is not None:
        numba.set_num_threads(numba_before)
    torch.set_num_threads(torch_before)


@pytest.mark.parametrize("mode", workload.MODES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("impl_name", impls.names())
def test_layer_call(benchmark, impl_name, cell, mode):
    reason = workload.unsupported_reason(impls.get(impl_name), cell, mode, DTYPE, "cpu")
    if reason is not None:
        pytest.skip(f"{impl_name}: {reason}")
    wl = workload.Workload(impl_name, cell, mode, T=T, B=B, I=SIZE, H=SIZE, dtype=DTYPE)
    for _ in range(WARMUP_CALLS):
        wl.call()
    benchmark.extra_info.update(T=T, B=B, I=SIZE, H=SIZE, dtype=DTYPE, threads=1)
    benchmark(wl.call)
