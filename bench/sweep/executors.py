"""Where a sweep's cells are computed: here, in a process pool, or on a Dask cluster.

Every executor takes the same jobs (a key, a module-level function and its arguments) and
reports each as it ends, to `finished(key, outcome)` or `failed(key, traceback)`, in this
process; the sweep writes the cells, so the store is in one place whatever computed them.

- `LocalExecutor(jobs)`: with one job, in this process; with more, a pool of `jobs` spawned
  processes that exit with the sweep (killed or not).
- `DaskExecutor(address)`: the jobs go to an existing `dask.distributed` scheduler, or, for
  ``"local"``, to a `LocalCluster` started here with `jobs` single-threaded worker processes.
  A worker that dies takes its jobs with it; the scheduler gives them to another worker (up
  to `RETRIES` more times for one that raises). dask and distributed come with the
  ``cluster`` extra; without them, or with a scheduler that does not answer within
  `CONNECT_TIMEOUT_S`, the executor is a clear error, never a hang.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

#: How long to wait for a scheduler to answer before giving up, in seconds.
CONNECT_TIMEOUT_S = 20
#: How many times a job that raises on a cluster is tried again (a worker that dies is
#: handled by the scheduler itself).
RETRIES = 2
LOCAL = "local"


class ExecutorError(RuntimeError):
    """The executor cannot be used: its packages are missing, or its scheduler is not there."""


@dataclass(frozen=True)
class Job:
    """One cell to compute: `function(*args)` in a worker; `key` names it in reports."""

    key: str
    function: Callable
    args: tuple


Finished = Callable[[str, object], None]
Failed = Callable[[str, str], None]


def _watch_parent(parent: int) -> None:
    """In a worker process: exit once the sweep that started it is gone (killed, say), so
    that no orphaned worker goes on computing on a shared machine."""

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


class LocalExecutor:
    """Jobs in this process (`jobs=1`) or in a pool of `jobs` spawned processes."""

    def __init__(self, jobs: int = 1):
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive int, got {jobs!r}")
        self.jobs = jobs

    def describe(self) -> str:
        return "this process" if self.jobs == 1 else f"{self.jobs} local processes"

    def run(self, jobs: list[Job], finished: Finished, failed: Failed) -> None:
        if self.jobs == 1:
            for job in jobs:
                try:
                    outcome = job.function(*job.args)
                except Exception:  # noqa: BLE001 - recorded; the other jobs go on
                    failed(job.key, traceback.format_exc())
                else:
                    finished(job.key, outcome)
            return
        context = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=context,
                                                      initializer=_watch_parent,
                                                      initargs=(os.getpid(),))
        try:
            futures = {pool.submit(job.function, *job.args): job.key for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                try:
                    outcome = future.result()
                except Exception:  # noqa: BLE001 - recorded; the other jobs go on
                    failed(futures[future], traceback.format_exc())
                else:
                    finished(futures[future], outcome)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the jobs in flight are lost either way; stop
            # them now rather than wait for them to finish.
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ExecutorError("--scheduler needs dask and distributed, which come with the "
                            "`cluster` extra: pip install -e \".[cluster]\"") from None
    return distributed


class DaskExecutor:
    """Jobs on a Dask cluster: the scheduler at `address`, or a `LocalCluster` of `jobs`
    worker processes started here for ``address="local"``."""

    def __init__(self, address: str, jobs: int = 2, *, timeout_s: float | None = None):
        self.distributed = _distributed()
        self.address, self.jobs = address, jobs
        self.timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s

    def describe(self) -> str:
        if self.address == LOCAL:
            return f"a local Dask cluster of {self.jobs} worker processes"
        return f"the Dask scheduler at {self.address}"

    def _client(self):
        distributed = self.distributed
        if self.address == LOCAL:
            cluster = distributed.LocalCluster(n_workers=self.jobs, threads_per_worker=1,
                                               processes=True, dashboard_address=None)
            return distributed.Client(cluster), cluster
        try:
            return distributed.Client(self.address, timeout=self.timeout_s), None
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"no Dask scheduler answered at {self.address} within "
                                f"{self.timeout_s:g} s ({type(exc).__name__}: {exc}); start "
                                "one with `dask scheduler` and workers with `dask worker "
                                "ADDRESS`") from None

    def run(self, jobs: list[Job], finished: Finished, failed: Failed) -> None:
        distributed = self.distributed
        client, cluster = self._client()
        try:
            futures = {client.submit(job.function, *job.args, key=f"cell-{job.key}",
                                     pure=False, retries=RETRIES): job.key for job in jobs}
            for future in distributed.as_completed(futures):
                key = futures[future]
                try:
                    outcome = future.result()
                except Exception:  # noqa: BLE001 - recorded; the other jobs go on
                    failed(key, traceback.format_exc())
                else:
                    finished(key, outcome)
                future.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def add_options(parser, units: str, jobs_note: str = "") -> None:
    """--jobs and --scheduler, for a command whose units of work are `units` ("runs")."""
    parser.add_argument("--jobs", type=int, default=1,
                        help=f"{units} at once, one process each (default 1; jobs x threads at "
                             f"most the usable cores){jobs_note}; with --scheduler local, the "
                             "local cluster's worker processes")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help=f"compute the {units} on the Dask cluster whose scheduler is at "
                             "ADDRESS (e.g. tcp://10.0.0.5:8786), or on a local cluster of "
                             "--jobs workers started here for `local` (needs the `cluster` "
                             "extra)")


def check_options(parser, args, units: str) -> None:
    """A parser error unless --jobs and --threads fit this machine's cores (jobs x threads
    too, when the jobs run here)."""
    from bench.environment import usable_cores
    cores = usable_cores()
    for option in ("jobs", "threads"):
        value = getattr(args, option)
        if not 1 <= value <= cores:
            parser.error(f"--{option} must be from 1 to the {cores} usable cores, got {value}")
    if args.scheduler in (None, LOCAL) and args.jobs * args.threads > cores:
        parser.error(f"--jobs {args.jobs} x --threads {args.threads} is more than the {cores} "
                     f"usable cores: the {units} would fight over them")


def executor(jobs: int = 1, scheduler: str | None = None):
    """The executor the command line asks for: `--jobs N` here, `--scheduler` on Dask."""
    if scheduler is None:
        return LocalExecutor(jobs)
    return DaskExecutor(scheduler, jobs)
