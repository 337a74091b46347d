"""The accuracy sweep under faults: killed midway (SIGKILL, SIGTERM), run twice at once.

Each test runs `python -m bench accuracy --profile smoke` (a learning-rate search, then the
sweep: 44 planned runs, 34 distinct trainings of a few dozen steps, torch only) in a
subprocess, into its own folder, without the report.
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.claims import accuracy

REPO = Path(__file__).resolve().parent.parent
SMOKE = accuracy.PROFILES["smoke"]
SEARCH = accuracy.search_plan(SMOKE)
KEYS = [run.key for run in SEARCH + accuracy.plan(SMOKE)]
#: The trainings a sweep makes: the search's winners are also sweep runs (the same cell),
#: whichever rates win.
DISTINCT = len({repr(run.inputs()) for run in SEARCH + accuracy.plan(SMOKE)})
#: A finished run's line: "[learning-rate search 3/20, 0.1 min] ..." or "[sweep 12/24, ...".
PROGRESS = re.compile(r"^\[[a-z -]+ (\d+)/(\d+),")
#: No sweep of these tests may take longer than this (a busy machine included).
LIMIT_S = 300


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "accuracy", "--profile", "smoke", "--out", str(out),
            "--no-report", *extra]


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(out: Path, *extra: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    proc = subprocess.Popen(_command(out, *extra), cwd=REPO, env=_environment(),
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    guard = threading.Timer(LIMIT_S, proc.kill)
    guard.daemon = True
    guard.start()
    return proc


def _signal_after_first_run(proc: subprocess.Popen, signum: int) -> list[str]:
    """Send `signum` as soon as the sweep reports its first finished run; its stderr."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if PROGRESS.match(line):
            proc.send_signal(signum)
            break
    lines += proc.stderr.readlines()
    proc.wait()
    return lines


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cells(out: Path) -> list[Path]:
    return sorted((out / accuracy.CELLS).glob("[0-9a-f]*.json"))


def _check_complete(path: Path) -> dict:
    document = json.loads(path.read_text())
    assert document["finished"] and document["planned"] == len(KEYS)
    assert [r["key"] for r in document["runs"]] == KEYS          # every run, exactly once
    return document


def _earlier_complete_file(out: Path, monkeypatch) -> bytes:
    """A complete smoke.json of an earlier plan (other learning rates, so nothing of it is
    reused): what a killed sweep must leave as it was."""
    def fake(task, T, config, threads):
        evals = [{"step": 0, "loss": 0.2}, {"step": 40, "loss": 0.1}]
        return {"task": {}, "n_parameters": 1, "baseline_loss": 0.17, "curve": [],
                "evals": evals, "test": {"step": 40, "loss": 0.1, "baseline_loss": 0.17,
                                         "solved": False},
                "steps_done": 40, "steps_to_threshold": None, "diverged": False,
                "divergence": None, "seconds": 0.0, "cpu_seconds": 0.0, "final": evals[-1],
                "solved": False}

    monkeypatch.setattr(accuracy, "_execute", fake)
    earlier = dataclasses.replace(SMOKE, lr_grid=(0.5, 0.7))
    path = accuracy.run_profile(earlier, out, threads=1, command=["earlier"])
    for cell in _cells(out):
        cell.unlink()
    return path.read_bytes()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigkill_midway_keeps_the_complete_file_and_a_rerun_computes_each_once(tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "out"
    before = _earlier_complete_file(out, monkeypatch)
    proc = _start(out)
    err = _signal_after_first_run(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "".join(err)
    assert (out / "smoke.json").read_bytes() == before       # not touched until complete
    kept = len(_cells(out))
    assert 1 <= kept < len(SEARCH), "".join(err)             # killed during the search

    resumed = subprocess.run(_command(out), cwd=REPO, env=_environment(),
                             capture_output=True, text=True, timeout=LIMIT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert f"learning-rate search: {len(SEARCH)} runs, {kept} already done" in resumed.stderr
    trained = [line for line in resumed.stderr.splitlines() if PROGRESS.match(line)]
    assert len(trained) == DISTINCT - kept                    # the rest, and only the rest
    document = _check_complete(out / "smoke.json")
    assert len(_cells(out)) == DISTINCT
    assert document["earlier_environments"] == []              # nothing of the earlier plan
    assert all(r["provenance"]["wall_s"] >= 0 for r in document["runs"])
    assert not list(out.rglob(".*.tmp.json"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigterm_stops_the_workers_and_says_how_to_continue(tmp_path):
    out = tmp_path / "out"
    proc = _start(out, "--jobs", "2")
    workers = []
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if PROGRESS.match(line):
            workers = _children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stderr.readlines()
    proc.wait()
    err = "".join(lines)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "continue with: " in err and "Traceback" not in err
    assert not (out / "smoke.json").exists() and 1 <= len(_cells(out)) < DISTINCT
    assert workers
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, workers)), "worker processes outlived the sweep"


def test_two_sweeps_at_once_into_one_folder_lose_nothing(tmp_path):
    out = tmp_path / "out"
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = []
    for log in logs:
        with open(log, "w") as f:
            procs.append(_start(out, stderr=f))
    for proc, log in zip(procs, logs):
        assert proc.wait() == 0, log.read_text()
    document = _check_complete(out / "smoke.json")
    cells = _cells(out)
    runs = SEARCH + accuracy.plan(SMOKE, document["rates"])
    store = accuracy.cell_store(out)
    assert sorted(c.name for c in cells) == sorted({store.name(run.inputs()) for run in runs})
    assert len(cells) == DISTINCT
    assert {json.loads(c.read_text())["key"] for c in cells} <= set(KEYS)
    for run, record in zip(runs, document["runs"]):   # the file holds its cell's result
        cell = json.loads(store.path(run.inputs()).read_text())
        assert record["key"] == run.key
        assert (record["final"], record["test"]) == (cell["result"]["final"],
                                                     cell["result"]["test"])
    assert not list(out.rglob(".*.tmp.json"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigkill_leaves_no_worker_training_on(tmp_path):
    """A killed sweep's worker processes notice it is gone and exit, not train on."""
    out = tmp_path / "out"
    proc = _start(out, "--jobs", "2")
    workers = []
    for line in proc.stderr:
        if PROGRESS.match(line):
            workers = _children(proc.pid)
            proc.kill()
            break
    proc.stderr.read()
    proc.wait()
    assert workers
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, workers)), "worker processes outlived the sweep"
    assert not (out / "smoke.json").exists()
