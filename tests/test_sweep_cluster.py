"""Sweeps on a real Dask cluster (a LocalCluster of worker processes on this machine): the same
results as a local sweep, a worker killed midway, and the clear errors of the executors."""

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import claims
from bench.claims import accuracy
from bench.sweep import executors

distributed = pytest.importorskip("distributed", reason="the `cluster` extra is not installed")

#: The smoke profile with runs long enough (about a second each) for a kill to land midway.
LONGER = dataclasses.replace(accuracy.PROFILES["smoke"],
                             tasks=(accuracy.TaskPlan("adding", ((10, 400),)),))
#: What differs between two computations of the same cell: where and how long.
CIRCUMSTANCES = ("seconds", "cpu_seconds", "provenance", "wall_s")


def _science(value):
    """`value` without the circumstances of its computation, for a bit-for-bit comparison."""
    if isinstance(value, dict):
        return {k: _science(v) for k, v in value.items() if k not in CIRCUMSTANCES}
    if isinstance(value, list):
        return [_science(v) for v in value]
    return value


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


def test_a_cluster_sweep_gives_the_local_results_bit_for_bit(tmp_path, cluster):
    args = dict(threads=1, command=["test"])
    here = accuracy.run_profile(accuracy.PROFILES["smoke"], tmp_path / "here", **args)
    there = accuracy.run_profile(accuracy.PROFILES["smoke"], tmp_path / "there",
                                 executor=executors.DaskExecutor(cluster.scheduler_address),
                                 **args)
    local_runs = json.loads(here.read_text())["runs"]
    cluster_runs = json.loads(there.read_text())["runs"]
    assert _science(cluster_runs) == _science(local_runs)
    smoke = accuracy.PROFILES["smoke"]
    assert len(cluster_runs) == len(accuracy.search_plan(smoke) + accuracy.plan(smoke))
    assert json.loads(there.read_text())["rates"] == json.loads(here.read_text())["rates"]
    workers = {r["provenance"]["host"] for r in cluster_runs}
    assert workers == {r["provenance"]["host"] for r in local_runs}  # one machine here


def test_a_worker_killed_midway_the_sweep_completes_with_each_cell_once(tmp_path, cluster):
    client = distributed.Client(cluster)
    out = tmp_path / "out"
    finished = {}

    def sweep():
        finished["path"] = accuracy.run_profile(
            LONGER, out, executor=executors.DaskExecutor(cluster.scheduler_address),
            threads=1, command=["test"])

    thread = threading.Thread(target=sweep)
    thread.start()
    cells = out / accuracy.CELLS
    deadline = time.monotonic() + 120
    while not list(cells.glob("[0-9a-f]*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)                    # its nanny starts a new worker
    thread.join(timeout=180)
    client.close()
    assert not thread.is_alive() and "path" in finished, "the sweep did not finish"
    document = json.loads(finished["path"].read_text())
    runs = accuracy.search_plan(LONGER) + accuracy.plan(LONGER, document["rates"])
    keys = [run.key for run in runs]
    assert [r["key"] for r in document["runs"]] == keys and document["present"] == len(keys)
    store = accuracy.cell_store(out)
    stored = sorted(p.name for p in cells.glob("[0-9a-f]*.json"))
    # Every cell, exactly once (the search's winners are the first seed's sweep runs).
    assert stored == sorted({store.name(run.inputs()) for run in runs})
    assert len(stored) == len(runs) - len(LONGER.models)


#: Claims that train, one of them with dropout (whose masks once depended on what the
#: process had run before).
SOME_CLAIMS = ("C2", "D1", "E1", "F1", "F2")


def test_claims_on_a_local_cluster_equal_the_local_run(tmp_path):
    only = ["--profile", "smoke", "--only", *SOME_CLAIMS]
    assert claims.main([*only, "--out", str(tmp_path / "here")]) == 0
    assert claims.main([*only, "--out", str(tmp_path / "there"), "--scheduler", "local",
                        "--jobs", "2"]) == 0
    here, there = (json.loads((tmp_path / side / "claims" / "claims.json").read_text())
                   for side in ("here", "there"))
    assert there["executor"] == "a local Dask cluster of 2 worker processes"
    for claim_id in SOME_CLAIMS:
        assert _science(there["claims"][claim_id]["measurements"]) == _science(
            here["claims"][claim_id]["measurements"]), claim_id
        assert there["claims"][claim_id]["verdict"] == here["claims"][claim_id]["verdict"]


def test_an_unreachable_scheduler_is_a_clear_error_within_its_timeout(tmp_path, capsys,
                                                                     monkeypatch):
    started = time.monotonic()
    with pytest.raises(executors.ExecutorError, match="no Dask scheduler answered at "
                                                      "tcp://127.0.0.1:9 within 1 s"):
        executors.DaskExecutor("tcp://127.0.0.1:9", timeout_s=1).run([], None, None)
    assert time.monotonic() - started < 10
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    assert accuracy.main(["--profile", "smoke", "--out", str(tmp_path), "--no-report",
                          "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "error: no Dask scheduler answered at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_without_dask_the_scheduler_option_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)   # as if not installed
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--only", "A1",
                        "--scheduler", "local"]) == 2
    assert 'the `cluster` extra: pip install -e ".[cluster]"' in capsys.readouterr().err
    assert not Path(tmp_path / "claims" / "claims.json").exists()
