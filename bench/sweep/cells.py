"""Cells: one result per set of inputs, stored once, named by the hash of what decides it.

A cell is a pure function's result: its inputs (a JSON object: the task, the model and
training configuration, the seed, the implementation) and the code version (a hash of the
source that computes it) decide it. The store keeps each as ``<hash>.json`` in one folder,
written atomically (`bench.io`), with its provenance: the machine that computed it, its wall
time, the date and the commit. A sweep reads what is there and computes the rest, so a
killed sweep resumes where it stopped and a cell finished anywhere is never computed again.
A change to the code that decides the cells changes their names: old cells are simply not
found (nothing is overwritten), and a report never mixes two versions of the code.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import platform
import time
from pathlib import Path

from bench import io as bench_io
from bench.environment import REPO, cpu_model, git_state, usable_cores

SCHEMA = "rnnbench-cell/1"
#: A temporary file of an atomic write older than this was left by a killed writer.
STALE_TEMPORARY_S = 600


class CellError(ValueError):
    """A cell file that cannot be read, or is not the cell of the inputs it is named for."""


@functools.cache
def code_version(*packages: str) -> str:
    """A short hash of every Python source under `packages` (paths relative to the
    repository): what a cell computed by that code depends on. Comments and docstrings
    count too; a change there costs a recomputation, never a wrong reuse."""
    digest = hashlib.sha256()
    for package in sorted(packages):
        root = REPO / package
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        if not files or not all(f.is_file() for f in files):
            raise ValueError(f"code_version: {package!r} names no Python source under {REPO}")
        for path in files:
            digest.update(path.relative_to(REPO).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def machine() -> dict:
    """What a cell records of the machine that computed it."""
    return {"host": platform.node(), "cpu": cpu_model(), "cores": usable_cores()}


def _canonical(inputs: dict) -> str:
    return json.dumps(bench_io.loads(bench_io.dumps(inputs)), sort_keys=True,
                      separators=(",", ":"))


class CellStore:
    """The cells of one sweep kind in `directory`, for code version `version`."""

    def __init__(self, directory: Path, version: str):
        self.directory = Path(directory)
        self.version = version

    def name(self, inputs: dict) -> str:
        text = _canonical({"inputs": inputs, "code_version": self.version})
        return hashlib.sha256(text.encode()).hexdigest()[:24] + ".json"

    def path(self, inputs: dict) -> Path:
        return self.directory / self.name(inputs)

    def get(self, inputs: dict) -> dict | None:
        """The stored cell of `inputs` ({"inputs", "result", "provenance", ...}), or None."""
        path = self.path(inputs)
        if not path.exists():
            return None
        try:
            cell = bench_io.read_json(path)
        except (OSError, ValueError) as exc:
            raise CellError(f"{path} cannot be read ({exc}); delete it and the cell is "
                            "computed again") from None
        if not (isinstance(cell, dict) and cell.get("schema") == SCHEMA
                and cell.get("code_version") == self.version
                and _canonical(cell.get("inputs", {})) == _canonical(inputs)
                and isinstance(cell.get("result"), dict)):
            raise CellError(f"{path} is not the cell ({SCHEMA}) of the inputs it is named "
                            "for; it may be damaged: delete it and the cell is computed again")
        return cell

    def put(self, key: str, inputs: dict, result: dict, provenance: dict) -> Path:
        """Store `result` for `inputs`, whole or not at all; `key` names it for a reader."""
        marker = self.directory / ".gitignore"
        if not marker.exists():  # working files, kept out of `git status`
            bench_io.write_text(marker, "# one file per finished cell of a sweep\n*\n")
        return bench_io.write_json(self.path(inputs), {
            "schema": SCHEMA, "key": key, "code_version": self.version, "inputs": inputs,
            "provenance": provenance, "result": result})

    def remove_stale_temporaries(self) -> None:
        """Delete what atomic writes killed midway left, once old enough that no sweep
        running now can still be writing it."""
        if not self.directory.is_dir():
            return
        now = time.time()
        for leftover in self.directory.glob(".*.tmp.json"):
            with contextlib.suppress(FileNotFoundError):
                if now - leftover.stat().st_mtime > STALE_TEMPORARY_S:
                    leftover.unlink()


@functools.cache
def _commit() -> str | None:
    """The commit this process's code came from (asked of git once per process)."""
    return git_state()["commit"]


def computed(function, *args) -> dict:
    """Call `function(*args)` and return {"result", "provenance"}: where and how long.

    Runs where the cell is computed (a worker process, a cluster's worker), so the machine
    recorded is the one that did the work.
    """
    started = time.perf_counter()
    result = function(*args)
    return {"result": result, "provenance": {
        **machine(), "wall_s": time.perf_counter() - started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit()}}
