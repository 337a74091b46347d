"""The asv and pytest-benchmark suites: thin adapters over bench/workload.py.

The asv suite is loaded here as asv loads it, by path, and its classes are driven in-process
for one small combination: every track_ returns a positive, finite number with a unit, and a
combination that cannot run raises NotImplementedError in setup (asv's n/a).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import impls

ROOT = Path(__file__).resolve().parents[1]
ASV_SUITE = ROOT / "benchmarks" / "asv" / "layers.py"
PYTEST_SUITE = ROOT / "benchmarks" / "pytest" / "test_layer_speed.py"
WORKLOAD = ROOT / "bench" / "workload.py"
SHAPE = "T32-B8-H64"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite():
    return load(ASV_SUITE, "rnnbench_asv_layers")


@pytest.fixture
def fast(suite, monkeypatch):
    """Shorter blocks and fewer reads (the suite's numbers, not its speed, are under test).

    numba's thread pool is left alone here: numba.set_num_threads would start it for the
    rest of this process, where other tests size numba's thread team through
    numba.config.NUMBA_NUM_THREADS, which counts only until the pool starts. The suite's
    thread setting is checked in a process of its own, and torch's count is restored.
    """
    monkeypatch.setattr(suite, "BLOCKS", 3)
    monkeypatch.setattr(suite, "BLOCK_SECONDS", 0.005)
    monkeypatch.setattr(suite, "WARMUP_CALLS", 2)
    monkeypatch.setattr(suite, "PEAK_READS", 1)
    monkeypatch.setattr(suite, "numba", None)
    torch_before = torch.get_num_threads()
    yield suite
    torch.set_num_threads(torch_before)


@pytest.fixture
def forward_only():
    """A registered implementation without a backward pass (and only an LSTM cell)."""
    name = "forward-only-for-suite-tests"

    def build(cell, input_size, hidden_size, **options):
        return impls.get("torch-native").build(cell, input_size, hidden_size, **options)

    impls.register(impls.Implementation(
        name=name, factory=build, cells=frozenset({"lstm"}), devices=frozenset({"cpu"}),
        dtypes=frozenset({torch.float32}), trainable=False))
    yield name
    impls.unregister(name)


def track_methods(cls) -> list[str]:
    return sorted(name for name in dir(cls) if name.startswith("track_"))


def test_the_asv_suite_measures_this_checkouts_workload_loaded_by_path(suite):
    assert suite.WORKLOAD_PATH == WORKLOAD
    assert Path(suite.workload.__file__).resolve() == WORKLOAD
    assert suite.workload.__name__ == suite.WORKLOAD_MODULE != "bench.workload"
    assert suite.IMPORT_ERROR is None


SUITE_IN_A_PROCESS = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("layers", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
assert m.workload is not None, m.IMPORT_ERROR
bench_modules = sorted(n for n in sys.modules if n == "bench" or n.startswith("bench."))
m.Inference().setup("torch", "lstm", sys.argv[2], "cpu")
print(json.dumps({"bench_modules": bench_modules, "torch": m.torch.get_num_threads(),
                  "numba": m.numba.get_num_threads() if m.numba else 1}))
"""


def test_the_asv_suite_imports_no_bench_package_and_runs_on_one_thread():
    """An older commit's `bench` may differ or be absent: only the file is used. And setup
    leaves torch and numba on one thread (a process of its own: see `fast`)."""
    done = subprocess.run([sys.executable, "-c", SUITE_IN_A_PROCESS, str(ASV_SUITE), SHAPE],
                          capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"bench_modules": [], "torch": 1, "numba": 1}


def test_numba_is_set_to_one_thread_before_torch(suite, monkeypatch):
    """Starting numba's pool (OpenMP layer) resets OpenMP's thread count, which torch's
    OpenMP regions use: torch's count must be set after numba's."""
    calls = []

    class Numba:
        def set_num_threads(self, n):
            calls.append(("numba", n))

    monkeypatch.setattr(suite, "numba", Numba())
    monkeypatch.setattr(suite.torch, "set_num_threads", lambda n: calls.append(("torch", n)))
    suite.one_thread()
    assert calls == [("numba", 1), ("torch", 1)]


def test_the_asv_suite_loads_where_the_workload_cannot(tmp_path):
    """Against a commit the workload cannot drive, the suite loads and every setup is n/a."""
    copy = tmp_path / "benchmarks" / "asv" / "layers.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(ASV_SUITE, copy)  # no bench/workload.py beside it
    stranded = load(copy, "rnnbench_asv_layers_stranded")
    assert stranded.workload is None and stranded.IMPORT_ERROR
    with pytest.raises(NotImplementedError, match="cannot load"):
        stranded.Inference().setup("torch", "lstm", SHAPE, "cpu")


def test_the_asv_suite_has_only_track_benchmarks_with_units(suite):
    """No time_/peakmem_/mem_ benchmark: asv would time or measure something of its own."""
    classes = [suite.Inference, suite.Training, suite.FirstCall]
    for cls in classes:
        assert not [n for n in dir(cls) if n.startswith(("time_", "timeraw_", "peakmem_",
                                                         "mem_"))]
        assert track_methods(cls)
        for name in track_methods(cls):
            assert getattr(cls, name).unit
        assert cls.version == suite.VERSION != "1"
        assert len(cls.params) == len(cls.param_names)
    assert set(impls.names()) <= set(suite.IMPLS)
    assert track_methods(suite.Inference) == [
        "track_peak_bytes", "track_seconds_per_call", "track_tokens_per_second"]


@pytest.mark.parametrize("mode", ["Inference", "Training"])
@pytest.mark.parametrize("impl_name", ["torch", "numba"])
def test_every_track_gives_a_positive_number(fast, impl_name, mode):
    cls = getattr(fast, mode)
    params = (impl_name, "lstm", SHAPE, "cpu")
    bench = cls()
    bench.setup(*params)
    assert isinstance(bench.workload, fast.workload.Workload)
    assert bench.workload.training == (mode == "Training")
    for name in track_methods(cls):
        value = getattr(bench, name)(*params)
        assert math.isfinite(value) and value > 0, (name, value)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("impl_name", ["torch", "numba"])
def test_first_call_gives_a_positive_number(fast, impl_name, mode):
    params = (impl_name, "lstm", mode, "cpu")
    bench = fast.FirstCall()
    bench.setup(*params)
    for name in track_methods(fast.FirstCall):
        value = getattr(bench, name)(*params)
        assert math.isfinite(value) and value > 0, (name, value)


def test_what_cannot_run_is_not_implemented(suite, forward_only):
    with pytest.raises(NotImplementedError, match="float32"):
        suite.Inference().setup("reference", "lstm", SHAPE, "cpu")  # float64 only
    with pytest.raises(NotImplementedError, match="backward"):
        suite.Training().setup(forward_only, "lstm", SHAPE, "cpu")
    with pytest.raises(NotImplementedError, match="backward"):
        suite.FirstCall().setup(forward_only, "lstm", "training", "cpu")
    with pytest.raises(NotImplementedError, match="gru"):
        suite.Inference().setup(forward_only, "gru", SHAPE, "cpu")
    with pytest.raises(NotImplementedError, match="cuda"):
        suite.Inference().setup(forward_only, "lstm", SHAPE, "cuda")
    with pytest.raises(NotImplementedError, match="not registered"):
        suite.Inference().setup("not-registered-anywhere", "lstm", SHAPE, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(NotImplementedError, match="CUDA"):
            suite.Inference().setup("torch", "lstm", SHAPE, "cuda")


def test_a_registered_implementation_runs_without_an_edit(fast, forward_only):
    params = (forward_only, "lstm", SHAPE, "cpu")
    bench = fast.Inference()
    bench.setup(*params)
    assert bench.track_seconds_per_call(*params) > 0


def test_the_pytest_suite_times_exactly_the_workload_call():
    module = load(PYTEST_SUITE, "rnnbench_pytest_layer_speed")
    timed = []

    class Recorder:
        extra_info = {}

        def __call__(self, fn, *args, **kwargs):
            timed.append((fn, args, kwargs))

    module.test_layer_call(Recorder(), "torch", "lstm", "training")
    [(fn, args, kwargs)] = timed
    assert not args and not kwargs
    assert fn.__func__ is module.workload.Workload.call
    assert Path(module.workload.__file__).resolve() == WORKLOAD
    assert fn.__self__.training
