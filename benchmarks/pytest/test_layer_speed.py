"""pytest-benchmark micro-benchmarks: one layer call per implementation x cell x mode.

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

T, B, SIZE = 32, 16, 64
DTYPE = torch.float32


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: the setting whose timings move least with the machine's load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("impl_name", impls.names())
def test_layer_call(benchmark, impl_name, cell, mode):
    impl = impls.get(impl_name)
    if not impl.supports(cell, "cpu", DTYPE):
        pytest.skip(f"{impl_name} does not support {cell} on cpu in {DTYPE}")
    if mode == "training" and not impl.trainable:
        pytest.skip(f"{impl_name} has no backward pass")
    torch.manual_seed(0)
    layer = impl.build(cell, input_size=SIZE, hidden_size=SIZE, dtype=DTYPE)
    x = torch.randn(T, B, SIZE, dtype=DTYPE)

    def inference():
        with torch.no_grad():
            return layer(x)[0]

    def training():
        layer.zero_grad(set_to_none=True)
        y, _ = layer(x)
        y.sum().backward()
        return y

    step = inference if mode == "inference" else training
    assert step().shape == (T, B, SIZE)  # the first call compiles: keep it out of the timings
    benchmark(step)
