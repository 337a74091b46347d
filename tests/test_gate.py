"""The regression gate's statistics, decisions, table, exit code, worker and clean-up.

Nothing here depends on how long anything takes: the statistics get fixed samples, and every
p-value is checked against an exact permutation count done here, independently of scipy; the
measuring process is run on a stand-in workload file that counts the calls it is given.
"""

import fcntl
import itertools
import json
import math
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

import impls
from bench.gate import proof
from bench.gate import run as gate
from bench.gate import worker as gate_worker
from bench.speed.cases import BUILT_IN

ROOT = Path(__file__).resolve().parents[1]


def exact_p_greater(head, base):
    """P(U >= observed) over all equally likely splits of the pooled samples (no ties)."""
    def u(xs, ys):
        return sum(x > y for x in xs for y in ys)

    pooled = head + base
    observed = u(head, base)
    splits = list(itertools.combinations(range(len(pooled)), len(head)))
    extreme = 0
    for chosen in splits:
        xs = [pooled[i] for i in chosen]
        ys = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        extreme += u(xs, ys) >= observed
    return extreme / len(splits)


BASE = [1.00, 1.02, 0.98, 1.01, 0.99]


def test_holm_matches_hand_computed_values():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.04, 0.06) = 0.06
    assert gate.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert gate.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_clear_slowdown_is_a_regression_with_exact_p():
    head = [x * 1.25 for x in BASE]
    (v,) = gate.compare({"a": BASE}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.verdict == gate.REGRESSION
    assert v.ratio == pytest.approx(1.25)
    assert v.p_slower == pytest.approx(1 / math.comb(10, 5))
    assert v.p_slower == pytest.approx(exact_p_greater(head, BASE))


def test_significant_but_small_slowdown_passes():
    head = [x * 1.05 + 0.04 for x in BASE]  # every head sample above every base sample
    (v,) = gate.compare({"a": BASE}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.p_slower == pytest.approx(1 / math.comb(10, 5))
    assert v.ratio < 1.1
    assert v.verdict == gate.SAME


def test_large_but_not_significant_slowdown_passes():
    base = [1.0, 2.0, 3.0, 4.0, 5.0]
    head = [1.5, 2.5, 3.5, 4.5, 20.0]
    (v,) = gate.compare({"a": base}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.ratio == pytest.approx(3.5 / 3.0)
    assert v.p_slower == pytest.approx(exact_p_greater(head, base))
    assert v.p_slower > 0.05
    assert v.verdict == gate.SAME


def test_clear_speedup_is_reported_faster():
    head = [x * 0.8 for x in BASE]
    (v,) = gate.compare({"a": BASE}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.verdict == gate.FASTER
    assert v.p_faster == pytest.approx(1 / math.comb(10, 5))


def test_holm_correction_spares_many_weak_cases():
    # Four separated cases of 4 samples each: raw p = 1/70 < 0.05, but Holm multiplies by 4.
    base = [1.0, 1.01, 0.99, 1.02]
    head = [x * 1.3 for x in base]
    samples_b = {f"c{i}": base for i in range(4)}
    samples_h = {f"c{i}": head for i in range(4)}
    verdicts = gate.compare(samples_b, samples_h, alpha=0.05, min_factor=1.1)
    assert all(v.p_slower == pytest.approx(1 / 70) for v in verdicts)
    assert all(v.p_slower_holm == pytest.approx(4 / 70) for v in verdicts)
    assert all(v.verdict == gate.SAME for v in verdicts)
    (alone,) = gate.compare({"c0": base}, {"c0": head}, alpha=0.05, min_factor=1.1)
    assert alone.verdict == gate.REGRESSION


def test_only_cases_measured_on_both_sides_are_compared():
    verdicts = gate.compare({"a": BASE, "old": BASE}, {"a": BASE, "new": BASE}, alpha=0.05,
                            min_factor=1.1)
    assert [v.case for v in verdicts] == ["a"]


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0, "min_factor": 1.1}, "alpha must be in"),
    ({"alpha": 0.05, "min_factor": 0.9}, "min_factor must be >= 1"),
])
def test_bad_thresholds_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gate.compare({"a": BASE}, {"a": BASE}, **kwargs)


def test_a_single_sample_is_rejected():
    with pytest.raises(ValueError, match="'a': the base side needs at least 2 samples, got 1"):
        gate.compare({"a": [1.0]}, {"a": BASE}, alpha=0.05, min_factor=1.1)


def test_table_lists_every_case_and_the_rule():
    slower = [b * 1.25 for b in BASE]
    verdicts = gate.compare({"x/lstm/inference": BASE}, {"x/lstm/inference": slower},
                            alpha=0.05, min_factor=1.1)
    table = gate.format_table(verdicts, {"y/gru/training": "head: no backward pass"},
                              alpha=0.05, min_factor=1.1)
    lines = table.splitlines()
    assert lines[0].split() == ["case", "base", "ms", "head", "ms", "head/base", "p", "slower",
                                "(Holm)", "verdict"]
    row = lines[2].split()
    assert row[0] == "x/lstm/inference"
    assert float(row[1]) == pytest.approx(1000.0)  # median of BASE, in ms
    assert float(row[2]) == pytest.approx(1250.0)
    assert row[3] == "1.250"
    assert row[-1] == gate.REGRESSION
    assert "y/gru/training: n/a (head: no backward pass)" in lines
    assert "p < 0.05 and head/base >= 1.1" in lines[-1]


@pytest.fixture
def two_commit_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "--quiet"], check=True)
    for i in range(2):
        (repo / "file.txt").write_text(str(i))
        subprocess.run(git + ["add", "file.txt"], check=True)
        subprocess.run(git + ["commit", "--quiet", "-m", f"c{i}"], check=True)
    return repo


@pytest.mark.parametrize("factor, expected_exit", [(1.3, 1), (1.0, 0)])
def test_exit_code_follows_the_verdict(monkeypatch, capsys, two_commit_repo, factor,
                                       expected_exit):
    seen_trees = []

    def fixed_samples(trees, spec, rounds, blocks, timeout, log=None):
        seen_trees.append(dict(trees))
        return ({"base": {"impl/lstm/inference": BASE},
                 "head": {"impl/lstm/inference": [b * factor for b in BASE]}}, {})

    monkeypatch.setattr(gate, "collect", fixed_samples)
    code = gate.main(["--repo", str(two_commit_repo), "--quiet"])
    out = capsys.readouterr().out
    assert code == expected_exit
    assert ("gate: FAIL, regression in impl/lstm/inference" in out) == (expected_exit == 1)
    # base: a temporary worktree of HEAD~1; head: the repository's own working tree
    (trees,) = seen_trees
    assert trees["head"] == two_commit_repo
    assert trees["base"] != two_commit_repo
    assert not trees["base"].exists()  # removed again


def test_unknown_base_exits_2_naming_the_ref(capsys, two_commit_repo):
    assert gate.main(["--repo", str(two_commit_repo), "--base", "no-such-ref", "--quiet"]) == 2
    assert "'no-such-ref' is not a commit" in capsys.readouterr().err


def test_bad_shape_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gate.main(["--shape", "32,16"])
    assert exit_info.value.code == 2
    assert "expected T,B,H as three positive ints, got '32,16'" in capsys.readouterr().err


def _worktrees(repo):
    listing = subprocess.run(["git", "-C", str(repo), "worktree", "list", "--porcelain"],
                             capture_output=True, text=True, check=True).stdout
    return [Path(line.split(" ", 1)[1]) for line in listing.splitlines()
            if line.startswith("worktree ")]


def test_spec_hands_both_workers_the_gates_own_workload_file():
    spec = gate.worker_spec(gate.parser().parse_args(["--cell", "gru", "--mode", "training"]))
    assert spec["workload"] == str(ROOT / "bench" / "workload.py")
    assert Path(spec["workload"]).is_file()
    assert spec["clock"] == "cpu"  # CPU time stays the default
    assert spec["impls"] == list(BUILT_IN)  # the peers only when asked for
    assert gate.worker_spec(gate.parser().parse_args(["--impl", "jax"]))["impls"] == ["jax"]


def test_worker_case_selection_follows_the_registry_and_the_workload():
    workload = gate_worker.load_workload(str(gate.WORKLOAD))
    assert workload.__name__ == gate_worker.WORKLOAD_MODULE
    impls.register(impls.Implementation(
        name="gate-test-forward-only", factory=lambda *a: None, cells=frozenset({"lstm"}),
        devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}), trainable=False))
    try:
        spec = {"impls": ["gate-test-forward-only", "reference", "not-there"],
                "cells": ["lstm", "gru"], "modes": ["inference", "training"],
                "dtype": "float32"}
        runnable, missing = gate_worker._cases(impls, workload, spec)
    finally:
        impls.unregister("gate-test-forward-only")
    assert [case for case, *_ in runnable] == ["gate-test-forward-only/lstm/inference"]
    assert missing["gate-test-forward-only/lstm/training"] == "not trainable (no backward pass)"
    assert missing["gate-test-forward-only/gru/inference"] == "no gru cell (has lstm)"
    assert missing["reference/lstm/inference"] == "no float32 support (has float64)"
    assert missing["not-there/gru/training"] == "not registered"
    assert len(missing) == 2 * 2 * 3 - 1


def test_worker_runs_the_real_workload_in_process():
    workload = gate_worker.load_workload(str(gate.WORKLOAD))
    spec = {"impls": ["torch"], "cells": ["lstm"], "modes": ["inference", "training"],
            "dtype": "float32", "shape": [3, 2, 4], "threads": 1, "block_seconds": 1e-4,
            "clock": "cpu"}
    threads = torch.get_num_threads()
    try:
        prepared, missing = gate_worker.prepare(torch, impls, workload, spec)
        times = gate_worker.block(workload, prepared, "cpu")
    finally:
        torch.set_num_threads(threads)
    assert missing == {}
    assert [type(call.__self__) for _, call, _ in prepared] == [workload.Workload] * 2
    assert all(call.__func__ is workload.Workload.call for _, call, _ in prepared)
    assert sorted(times) == ["torch/lstm/inference", "torch/lstm/training"]
    assert all(seconds >= 0 for seconds in times.values())


#: A stand-in for bench/workload.py: same names, no timing; it logs every use to LOG.
STAND_IN_WORKLOAD = """
import json, os, sys

import torch

LOG = {log!r}
CLOCKS = {{"cpu": None, "wall": None}}
CALLS_PER_BLOCK = 3


def _log(*event):
    with open(LOG, "a") as f:
        f.write(json.dumps([os.getpid(), *event]) + "\\n")


def unsupported_reason(impl, cell, mode, dtype, device):
    return "stand-in: forward only" if mode == "training" else None


class Workload:
    def __init__(self, impl_name, cell, mode, *, T, B, I, H, dtype, device, seed=0):
        self.case = f"{{impl_name}}/{{cell}}/{{mode}}"
        benches = [m for m in sys.modules if m == "bench" or m.startswith("bench.")]
        _log("build", self.case, [T, B, I, H], dtype, device, __name__, benches,
             os.environ["NUMBA_NUM_THREADS"], torch.get_num_threads())

    def call(self):
        _log("call", self.case)


def _is_the_call(call):
    return getattr(call, "__func__", None) is Workload.call


def calls_per_block(call, block_s, *, device, clock):
    _log("calibrate", call.__self__.case, _is_the_call(call), block_s, device, clock)
    return CALLS_PER_BLOCK


def seconds_per_call(call, calls=1, *, device, clock):
    _log("timed", call.__self__.case, _is_the_call(call), calls, device, clock)
    for _ in range(calls):
        call()
    return 0.25
"""

#: A stand-in for a tree's `impls`: two registered names and nothing else.
STAND_IN_IMPLS = """
class _Impl:
    def __init__(self, name):
        self.name = name


_REGISTRY = {"fast": _Impl("fast"), "other": _Impl("other")}


def names():
    return sorted(_REGISTRY)


def get(name):
    return _REGISTRY[name]
"""


def test_worker_times_exactly_workload_call_of_the_file_it_is_given(tmp_path):
    tree = tmp_path / "tree"
    (tree / "impls").mkdir(parents=True)
    (tree / "impls" / "__init__.py").write_text(STAND_IN_IMPLS)
    log = tmp_path / "log.jsonl"
    stand_in = tmp_path / "stand_in_workload.py"
    stand_in.write_text(STAND_IN_WORKLOAD.format(log=str(log)))
    spec = {"impls": ["fast", "gone"], "cells": ["lstm", "gru"],
            "modes": ["inference", "training"], "dtype": "float32", "shape": [5, 3, 7],
            "threads": 1, "block_seconds": 0.125, "clock": "cpu", "workload": str(stand_in)}
    sampler = gate.Sampler(tree, threads=1, timeout=300)
    try:
        missing = sampler.start(spec)
        assert sampler.registered == ["fast", "other"]
        blocks = [sampler.block() for _ in range(2)]
        sampler.finish()
        sampler.start(dict(spec, clock="wall"))  # a second, fresh child
        sampler.finish()
    finally:
        sampler.close()
    assert missing == {
        **{f"gone/{c}/{m}": "not registered" for c in ("lstm", "gru")
           for m in ("inference", "training")},
        "fast/lstm/training": "stand-in: forward only",
        "fast/gru/training": "stand-in: forward only",
    }
    cases = ["fast/lstm/inference", "fast/gru/inference"]
    assert blocks == [dict.fromkeys(cases, 0.25)] * 2
    events = [json.loads(line) for line in log.read_text().splitlines()]
    pids = list(dict.fromkeys(pid for pid, *_ in events))
    assert len(pids) == 2 and sampler.process.pid not in pids  # one forked child per start
    first, second = ([event for pid, *event in events if pid == p] for p in pids)
    for case in cases:
        # private module name, no `bench` imported, I = H, threads from the spec
        assert ["build", case, [5, 3, 7, 7], "float32", "cpu", gate_worker.WORKLOAD_MODULE,
                [], "1", 1] in first
        # one untimed first call, then 3 calls per block, each through Workload.call
        assert [e for e in first if e[1] == case and e[0] != "build"] == [
            ["call", case],
            ["calibrate", case, True, 0.125, "cpu", "cpu"],
            *([["timed", case, True, 3, "cpu", "cpu"]] + [["call", case]] * 3) * 2,
        ]
        assert [e[0] for e in second if e[1] == case] == ["build", "call", "calibrate"]
        assert ["calibrate", case, True, 0.125, "cpu", "wall"] in second


def _fake_worker(tmp_path, body):
    """A worker script that writes a diagnostic and its forked child's pid to stderr."""
    script = tmp_path / "fake_worker.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        child = os.fork()
        if child == 0:
            os.close(1)  # only the server's exit ends its output
            time.sleep(600)
            os._exit(0)
        print(f"child {child}", file=sys.stderr)
        print("fake worker: stuck loading the layers", file=sys.stderr, flush=True)
    """) + textwrap.dedent(body))
    return script


def _wait_until(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("body, expected", [
    ("time.sleep(600)\n", "gave no answer within 0.2 s"),
    ("sys.exit(3)\n", "exited (status 3) without an answer"),
])
def test_a_silent_worker_is_an_error_carrying_its_stderr(monkeypatch, tmp_path, body,
                                                         expected):
    monkeypatch.setattr(gate, "WORKER", _fake_worker(tmp_path, body))
    sampler = gate.Sampler(tmp_path, threads=1, timeout=0.2)
    try:
        _wait_until(lambda: "stuck loading" in sampler.stderr_tail())
        child = int(sampler.stderr_tail().split()[1])
        with pytest.raises(RuntimeError) as error:
            sampler.start({})
    finally:
        sampler.close(kill=True)
    message = str(error.value)
    assert expected in message
    assert "fake worker: stuck loading the layers" in message
    assert "closed file" not in message
    assert sampler.process.returncode is not None
    _wait_until(lambda: _gone(child))  # the forked child is ended with the server


class FakeSampler:
    """Answers like a measuring process whose tree registers torch and numba."""

    def __init__(self, tree, threads, timeout):
        self.registered = []

    def start(self, spec):
        self.registered = ["numba", "torch"]
        return {}

    def block(self):
        return {}

    def finish(self):
        pass

    def close(self, kill=False):
        pass


def test_unknown_impl_is_named_with_the_known_ones(monkeypatch, capsys, two_commit_repo):
    monkeypatch.setattr(gate, "Sampler", FakeSampler)
    code = gate.main(["--repo", str(two_commit_repo), "--quiet", "--impl", "torch",
                      "--impl", "tourch"])
    err = capsys.readouterr().err
    assert code == 2
    assert ("gate: --impl: unknown implementation 'tourch' (registered in neither base nor "
            "head); known implementations: numba, torch") in err
    assert _worktrees(two_commit_repo) == [two_commit_repo]


@pytest.mark.parametrize("where", ["plain directory", "missing directory"])
def test_repo_outside_git_is_a_clear_error(monkeypatch, capsys, tmp_path, where):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "elsewhere"
    if where == "plain directory":
        path.mkdir()
    assert gate.main(["--repo", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"gate: --repo: {str(path)!r} is not in a git repository\n"


#: Runs the gate with the measuring replaced by a wait, printing the trees it got.
STOPPABLE_GATE = """
import json, signal, sys, time
from bench.gate import run as gate

# Ctrl-C as from a terminal, also where the tests run as a background job (which starts
# with SIGINT ignored, and Python then leaves it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)

def wait(trees, *args, **kwargs):
    print(json.dumps({side: str(tree) for side, tree in trees.items()}), flush=True)
    time.sleep(600)

gate.collect = wait
sys.exit(gate.main(["--repo", sys.argv[1], "--quiet"]))
"""


@pytest.mark.parametrize("signum, message", [(signal.SIGTERM, "gate: terminated"),
                                             (signal.SIGINT, "gate: interrupted")])
def test_a_stopped_gate_removes_its_worktree(two_commit_repo, signum, message):
    gate_process = subprocess.Popen(
        [sys.executable, "-c", STOPPABLE_GATE, str(two_commit_repo)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        trees = json.loads(gate_process.stdout.readline())
        base = Path(trees["base"])
        assert base.is_dir() and base in _worktrees(two_commit_repo)
        gate_process.send_signal(signum)
        _, err = gate_process.communicate(timeout=60)
    finally:
        if gate_process.poll() is None:
            gate_process.kill()
            gate_process.wait()
    assert gate_process.returncode == 128 + signum
    assert message in err and "Traceback" not in err
    assert not base.exists() and not base.parent.exists()
    assert _worktrees(two_commit_repo) == [two_commit_repo]


def test_worktrees_left_by_a_killed_gate_are_removed_at_start(monkeypatch, capsys,
                                                              two_commit_repo):
    git = ["git", "-C", str(two_commit_repo)]
    holders = {kind: Path(tempfile.mkdtemp(prefix=gate.WORKTREE_PREFIX))
               for kind in ("stale", "running")}
    trees = {kind: holder / "tree" for kind, holder in holders.items()}
    for tree in trees.values():
        subprocess.run(git + ["worktree", "add", "--quiet", "--detach", str(tree), "HEAD"],
                       check=True)
        (tree.parent / gate.WORKTREE_LOCK).touch()
    gone = two_commit_repo.parent / "deleted-worktree"  # not ours, but its directory is gone
    subprocess.run(git + ["worktree", "add", "--quiet", "--detach", str(gone), "HEAD"],
                   check=True)
    subprocess.run(["rm", "-rf", str(gone)], check=True)
    monkeypatch.setattr(gate, "collect", lambda trees, *a, **k: (
        {"base": {"c": BASE}, "head": {"c": BASE}}, {}))
    try:
        with open(holders["running"] / gate.WORKTREE_LOCK) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as a gate that is still running holds it
            assert gate.main(["--repo", str(two_commit_repo)]) == 0
        assert f"removed the worktree {trees['stale']}" in capsys.readouterr().err
        assert not holders["stale"].exists()
        assert _worktrees(two_commit_repo) == [two_commit_repo, trees["running"]]
    finally:
        subprocess.run(git + ["worktree", "remove", "--force", str(trees["running"])])
        subprocess.run(["rm", "-rf", *map(str, holders.values())])


def test_the_proofs_slowdown_is_what_the_workload_times():
    """proof.SLOWDOWN re-registers an implementation; the workload builds through it."""
    workload = gate_worker.load_workload(str(gate.WORKLOAD))
    original = impls.get("torch")
    namespace = {"get": impls.get, "register": impls.register,
                 "Implementation": impls.Implementation, "torch": torch}
    exec(proof.SLOWDOWN.format(name="torch", extra=0.25), namespace)
    try:
        case = workload.Workload("torch", "lstm", "training", T=8, B=2, I=3, H=4)
    finally:
        impls.register(original, replace=True)
    steps = []
    case.layer.register_forward_pre_hook(lambda layer, args: steps.append(args[0].shape[0]))
    case.call()
    assert steps == [10]  # 25% more time steps ran
    assert case.x.grad.shape == (8, 2, 3)  # and the call still passes the gradient down


def test_gate_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "bench.gate.run", "--help"], capture_output=True,
                          text=True, check=True)
    assert "--min-factor" in done.stdout
