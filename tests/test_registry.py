"""What an implementation declares it cannot do: missing packages and inexpressible options."""

import pytest
import torch

import impls
from bench.workload import unsupported_reason
from impls.registry import Unavailable


def _native(cell, input_size, hidden_size, **options):
    return impls.get("torch-native").build(cell, input_size, hidden_size, **options)


@pytest.fixture
def declared():
    """Two throwaway implementations: one needing a package that is not there, one that
    cannot express stacking or packed input."""
    names = {"missing": "needs-a-missing-package", "lacking": "lacks-stacks-and-packing"}
    common = dict(factory=_native, cells=frozenset(impls.CELLS), devices=frozenset({"cpu"}),
                  dtypes=frozenset({torch.float32}), trainable=False)
    impls.register(impls.Implementation(name=names["missing"],
                                        requires=("rnnbench_no_such_module",), **common))
    impls.register(impls.Implementation(name=names["lacking"],
                                        lacks=frozenset({"num_layers", "packed_input"}),
                                        **common))
    yield {k: impls.get(v) for k, v in names.items()}
    for name in names.values():
        impls.unregister(name)


def test_a_missing_package_makes_it_unavailable_with_the_reason(declared):
    impl = declared["missing"]
    assert not impl.available
    assert "rnnbench_no_such_module" in impl.unavailable_reason
    assert not impl.supports("lstm")
    with pytest.raises(Unavailable, match="rnnbench_no_such_module"):
        impl.build("lstm", 2, 3)
    reason = unsupported_reason(impl, "lstm", "inference", "float32", "cpu")
    assert "not installed" in reason and "rnnbench_no_such_module" in reason


def test_every_builtin_implementation_is_available():
    for name in ("reference", "torch", "torch-native", "scripted", "numba"):
        assert impls.get(name).available, impls.get(name).unavailable_reason


def test_a_lacked_option_is_a_named_error_and_na(declared):
    impl = declared["lacking"]
    assert impl.available
    impl.build("gru", 2, 3, bidirectional=True)          # not declared: builds
    with pytest.raises(ValueError, match=r"'num_layers'.*declared N/A.*2"):
        impl.build("gru", 2, 3, num_layers=2)
    assert unsupported_reason(impl, "gru", "inference", "float32", "cpu") is None
    assert "num_layers" in unsupported_reason(impl, "gru", "inference", "float32", "cpu",
                                              layers=2)
    assert "packed_input" in unsupported_reason(impl, "gru", "inference", "float32", "cpu",
                                                lengths="uniform:0.5")


def test_an_unknown_lacks_name_is_refused():
    with pytest.raises(ValueError, match="unknown lacks.*'stacking'"):
        impls.Implementation(name="x", factory=_native, cells=frozenset({"lstm"}),
                             devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}),
                             trainable=False, lacks=frozenset({"stacking"}))
