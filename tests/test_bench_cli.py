"""``python -m bench``: help, argument errors, subcommand dispatch, a run, a kill and a resume."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numba  # noqa: F401  (imported first: the CLI then leaves NUMBA_NUM_THREADS alone)
import pytest
import torch

import impls
from bench import cli
from bench.environment import usable_cores
from bench.speed import gemm_peak, results

REPO = Path(__file__).resolve().parent.parent
TINY = ["--T", "5", "--B", "2", "--H", "4", "--cell", "lstm", "--mode", "inference",
        "--impl", "torch,torch-native", "--repeats", "3", "--no-fresh-process", "--threads", "1"]

SLEEPY_PLUGIN = '''
import time
import torch
import impls


def _sleepy(cell, input_size, hidden_size, **options):
    layer = impls.get("torch-native").build(cell, input_size, hidden_size, **options)
    call = layer.forward

    def slow(x, hx=None):
        time.sleep(0.3)
        return call(x, hx)

    layer.forward = slow
    return layer


impls.register(impls.Implementation(
    name="test-sleepy", factory=_sleepy, cells=frozenset(impls.CELLS),
    devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}), trainable=True))
'''

# Three cases of a few seconds each (the sleepy layer, in three workers), so a SIGTERM
# lands midway.
GRID = """
cells = ["rnn_tanh"]
modes = ["inference"]
devices = ["cpu"]
threads = [1]
[[grid]]
T = [5]
B = [2]
H = [4, 6, 8]
[timing]
target_s = 0.01
min_repeats = 3
max_repeats = 3
warmup_max_s = 0.01
budget_s = 60
"""


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_gemm_peak(monkeypatch):
    monkeypatch.setattr(gemm_peak, "measure", functools.partial(
        gemm_peak.measure, sizes=(32, 64), seconds_per_size=0.01))


def exits_with(argv, capsys, code=2):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == code
    return capsys.readouterr()


def test_help_documents_subcommands_and_profiles(capsys):
    out = exits_with(["--help"], capsys, code=0).out
    for word in ("report [RUN]", "accuracy", "claims", "gate", "quick", "default", "full",
                 "numba-targets", "--resume", "--impl", "--baseline", "--plugin", "--config"):
        assert word in out
    assert "--out DIR" in exits_with(["report", "--help"], capsys, code=0).out


@pytest.mark.parametrize("argv, message", [
    (["--profile", "quick", "--T", "10"], "choose one source of cases, got --profile and --T"),
    (["--impl", "nonesuch", "--list"], "unknown implementation 'nonesuch'; known"),
    (["--repeats", "2"], "--repeats must be at least 3, got 2"),
    (["--resume", "x", "--profile", "quick"], "--resume continues the plan stored"),
    (["--T", "abc"], "expected comma-separated int values, got 'abc'"),
    (["--profile", "fastest"], "invalid choice: 'fastest'"),
    (["--cell", "bogus", "--list"], "--cell must be one of"),
    (["--impl", "scripted", "--list"], "--baseline torch is not among the implementations"),
    (["--threads", "0"], "expected comma-separated positive int or 'all' values, got '0'"),
    (["--T", "8", "--threads", "4096"], "--threads 4096 is more than the"),
    (["--budget", "-1"], "--budget must be a positive, finite number of seconds"),
    (["--budget", "nan"], "--budget must be a positive, finite number of seconds, got nan"),
    (["--budget", "inf"], "--budget must be a positive, finite number of seconds, got inf"),
    (["--profile", "quick", "--dtype", "float64", "--list"], "no case matches the filters"),
    (["--plugin", "bench_no_such_plugin", "--list"], "--plugin bench_no_such_plugin: cannot "),
    (["--config", "/nonexistent/grid.toml", "--list"], "No such file or directory"),
])
def test_argument_errors_say_what_is_wrong(argv, message, capsys):
    assert message in exits_with(argv, capsys).err


def test_a_plugin_that_raises_on_import_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench_test_broken_plugin.py").write_text("raise KeyError('no such table')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = exits_with(["--plugin", "bench_test_broken_plugin", "--list"], capsys).err
    assert "--plugin bench_test_broken_plugin: importing it raised KeyError" in err


def test_resume_of_an_unknown_run_lists_the_known_ones(tmp_path, capsys):
    err = exits_with(["--resume", "nope", "--results-dir", str(tmp_path)], capsys).err
    assert "no results file at 'nope'" in err


def test_report_without_runs_says_what_to_do(tmp_path, capsys):
    err = exits_with(["report", "--results-dir", str(tmp_path)], capsys).err
    assert "run `python -m bench` first" in err


def test_list_shows_cases_and_na(capsys):
    assert cli.main(["--profile", "numba-targets", "--list"]) == 0
    out = capsys.readouterr().out
    cores = usable_cores()
    cases = 14 + 8 * (cores > 1)  # the B=1 and B=64 cases also on one core
    assert f"profile numba-targets: {cases} cases, baseline torch, 3 worker processes" in out
    assert f"  lstm/training/T1000/B32/I128/H128/float32/cpu/t{cores}: " in out
    assert "N/A: reference (no float32 support (has float64))" in out


def test_the_default_plan_times_the_peers_only_where_its_grid_names_them(capsys):
    assert cli.main(["--profile", "default", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cores = usable_cores()
    # a case's line names each of its implementations, as timed or N/A (a peer not installed)
    line_of = {line.split(": ")[0].strip(): line for line in lines[1:]}
    assert "jax" in line_of[f"gru/training/T100/B1/I256/H256/float32/cpu/t{cores}"]
    assert "jax" not in line_of[f"gru/training/T100/B32/I128/H128/float32/cpu/t{cores}"]
    assert "onnxruntime" in line_of[f"lstm/inference/T100/B64/I256/H256/float32/cpu/t{cores}"]
    assert "compiled-nn" not in line_of[f"lstm/training/T100/B1/I256/H256/float32/cpu/t{cores}"]


def test_delegated_subcommands_get_their_arguments(monkeypatch):
    received = []
    fake = types.ModuleType("bench_test_fake_gate")
    fake.main = lambda argv: received.append(argv) or 7
    monkeypatch.setitem(sys.modules, "bench_test_fake_gate", fake)
    monkeypatch.setitem(cli.DELEGATED, "gate", ("bench_test_fake_gate", "fake"))
    assert cli.main(["gate", "--base", "main"]) == 7
    assert received == [["--base", "main"]]


def test_a_missing_subcommand_module_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.DELEGATED, "claims", ("bench._no_such_module", "missing"))
    assert cli.main(["claims"]) == 2
    assert "not available in this checkout (no module bench._no_such_module)" in (
        capsys.readouterr().err)


def test_a_run_writes_results_and_report_then_resumes_as_done(tmp_path, capsys,
                                                              small_gemm_peak):
    argv = TINY + ["--results-dir", str(tmp_path), "--run-id", "tiny"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    path = results.run_path(tmp_path, "tiny")
    assert f"results: {path}" in out and "report: " in out
    data = json.loads(path.read_text())
    assert [r["key"] for r in data["cases"]] == ["lstm/inference/T5/B2/I4/H4/float32/cpu/t1"]
    entry = data["cases"][0]["implementations"]["torch"]
    assert entry["threads"]["torch"] == 1 and len(entry["samples_s"]) == 3
    assert data["sessions"][0]["environment"]["command"] == ["python", "-m", "bench", *argv]
    assert (path.parent / "REPORT.md").is_file()

    assert cli.main(["--resume", "tiny", "--results-dir", str(tmp_path), "--no-report"]) == 0
    assert len(json.loads(path.read_text())["sessions"]) == 2

    assert cli.main(["report", "tiny", "--results-dir", str(tmp_path),
                     "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "REPORT.md").is_file()
    assert (tmp_path / "elsewhere" / "figures").is_dir()
    assert cli.main(TINY + ["--results-dir", str(tmp_path), "--run-id", "tiny2",
                            "--no-report"]) == 0
    assert cli.main(["report", "--results-dir", str(tmp_path)]) == 0
    assert str(results.run_path(tmp_path, "tiny2").parent / "REPORT.md") in (
        capsys.readouterr().out)


def test_sigterm_midway_then_resume(tmp_path, monkeypatch, capsys, small_gemm_peak):
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "bench_test_sleepy_plugin.py").write_text(SLEEPY_PLUGIN)
    (tmp_path / "grid.toml").write_text(GRID)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(plugin_dir)]))
    argv = ["--config", str(tmp_path / "grid.toml"), "--impl", "torch,test-sleepy",
            "--plugin", "bench_test_sleepy_plugin", "--no-fresh-process", "--no-report",
            "--results-dir", str(tmp_path), "--run-id", "killed"]
    path = results.run_path(tmp_path, "killed")
    proc = subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.is_file() and json.loads(path.read_text())["cases"]:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"continue with: python -m bench --resume {path}" in err
    done = json.loads(path.read_text())["cases"]
    assert 1 <= len(done) < 3

    monkeypatch.syspath_prepend(str(plugin_dir))
    try:
        assert cli.main(["--resume", str(path), "--no-report"]) == 0
    finally:
        impls.unregister("test-sleepy")
        sys.modules.pop("bench_test_sleepy_plugin", None)
    final = json.loads(path.read_text())
    assert [r["key"] for r in final["cases"]] == [
        f"rnn_tanh/inference/T5/B2/I{H}/H{H}/float32/cpu/t1" for H in (4, 6, 8)]
    assert final["cases"][:len(done)] == done
    assert all(e["status"] == "ok" for r in final["cases"] for e in r["implementations"].values())


def test_two_runs_at_once_keep_both_results_and_warn(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "bench", *TINY, "--results-dir", str(tmp_path), "--no-report"]
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    files = sorted(tmp_path.glob("*/results.json"))
    assert len(files) == 2
    for path in files:
        data = json.loads(path.read_text())
        assert [r["key"] for r in data["cases"]] == ["lstm/inference/T5/B2/I4/H4/float32/cpu/t1"]
    warned = [err for _, err in outputs if "another rnnbench run shares this machine" in err]
    assert warned
    recorded = [json.loads(p.read_text())["sessions"][0]["environment"]["contention"]
                for p in files]
    assert any(any("another rnnbench run" in w for w in ws) for ws in recorded)


def test_a_crashing_layer_is_recorded_and_the_run_finishes(tmp_path):
    """A segfault ends only its worker: both cases are recorded, the crash with its signal,
    a resume keeps it as a result, and --retry measures it again."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests" / "plugins")]))
    argv = [sys.executable, "-m", "bench", "--T", "5", "--B", "2", "--H", "4,6", "--cell", "lstm",
            "--mode", "inference", "--impl", "torch,test-segfault", "--repeats", "3",
            "--no-fresh-process", "--threads", "1", "--plugin", "rnnbench_test_impls",
            "--results-dir", str(tmp_path), "--run-id", "crash", "--no-report"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    path = results.run_path(tmp_path, "crash")
    cases = json.loads(path.read_text())["cases"]
    assert len(cases) == 2
    for record in cases:
        crashed = record["implementations"]["test-segfault"]
        assert crashed["reason"] == "crashed" and "SIGSEGV" in crashed["message"]
        assert record["implementations"]["torch"]["status"] == "ok"
    resume = [sys.executable, "-m", "bench", "--resume", str(path), "--no-report"]
    subprocess.run(resume, cwd=tmp_path, env=env, check=True, timeout=300,
                   capture_output=True)
    assert json.loads(path.read_text())["cases"] == cases  # a recorded crash is a result
    retried = subprocess.run(resume + ["--retry", "crashed"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert retried.returncode == 0 and "retrying 2 case(s)" in retried.stderr
    assert len(json.loads(path.read_text())["sessions"]) == 3
