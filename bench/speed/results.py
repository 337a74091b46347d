"""Results files: one JSON document per run, versioned, rewritten atomically after every group.

Where: ``results/bench/<run-id>/results.json``; beside it ``REPORT.md`` and ``figures/``,
which ``python -m bench report`` regenerates from the JSON. A run id is
``<UTC date>-<time>-<profile>`` unless ``--run-id`` names it.

Schema ``rnnbench.bench-results``, version 2::

    {
      "schema": "rnnbench.bench-results", "schema_version": 2, "run_id": "...",
      "plan": {                         # what the run measures; --resume reads it back
        "profile": "quick", "cases": [<case>, ...], "implementations": ["torch", ...],
        "baseline": "torch", "timing": {<bench.speed.cases.Timing fields>},
        "fresh_process": true, "seed": 0, "plugins": [],
        "narrowed": {"<case key>": ["torch", ...]}   # cases that time only some of them
      },
      "sessions": [                     # one per start or resume
        {"started": "<ISO date>", "finished": "<ISO date>" | null,
         "environment": {<bench.environment.fingerprint>}}
      ],
      "gemm_peak": {"cpu/float32/t2": {"gflops": 310.2, "n": 2048, "per_size": {...}}},
      "cases": [                        # finished cases, a group at a time
        {"key": "lstm/training/T100/B64/I256/H256/float32/cpu/t2",
         "group": "training/T100/B64/I256/H256/float32/cpu/t2",   timed together
         "case": <case>, "flops": <GEMM FLOPs of one call>,
         "must_keep_bytes": <bytes BPTT must keep>,
         "implementations": {"<name>": <entry>, ...},   # the case's implementations
         "stream_limit": <limit>}          # batch-1 CPU cases only (files before: none)
      ]
    }

    <case>  = {"cell", "mode", "T", "B", "I", "H", "dtype", "device", "threads",
               "layers", "bidirectional", "lengths"}      see bench.speed.cases.Case;
              files written before the last three lack them, which `load` fills in as
              1, false and null (one layer, one direction, every sequence T long): what
              those runs measured. A key names them only where they are not those.
    <entry> = {"status": "n/a", "reason": "..."}                 unsupported: never a number
            | {"status": "failed", "reason": "exception" | "out of memory" | "time budget"
                                             | "timeout" | "crashed",
               "message": "...", "fresh_process": <fresh> | null}
            | {"status": "ok",
               "first_call_s": <first call in the first worker process>,
               "warmup_s": [[...], ...], "steady": <every worker's warm-up settled>,
               "samples_s": [[...], ...],                  seconds per call, per process
               "threads": {"torch": 2, "numba": 2, ...},   the core budget that ran
               "autograd_node": "MkldnnRnnLayerBackward0" | ...,  the kernel that ran
               "time": {"n", "processes", "median", "q1", "q3", "iqr", "min",
                        "ci95": [lo, hi]},                 between-process spread included
               "tokens_per_s": tokens/median,  tokens: the sum of the sequence lengths
               "gflops": flops/median/1e9,
               "peak_fraction": gflops / gemm_peak of the device, dtype and threads,
               "ratio": {"baseline": "torch", "ratio": <median/baseline median>,
                         "ci95": [lo, hi]} | {"baseline": "torch", "unavailable": "why"},
               "fresh_process": <fresh> | null}                  null: not measured
    <fresh> = {"status": "ok", "first_call_s": <first call in a fresh process>,
               "first_call_peak_bytes": <its peak, compilation included> | null,
               "peak_bytes": <median peak of the settled calls> | null,  null: unmeasurable
               "memory_calls": <calls after the first>, "memory_settled": <bool>,
               "memory_method": "peak RSS increase" | ...}
            | {"status": "measured with", "case": <key>}   the same setting at more cores
            | a failed entry without "fresh_process"

    <limit> = {"status": "ok", "bytes": <W_hh's bytes>, "threads": n, "per_thread_bytes",
               "pass_s": <one read of all of them, slowest thread, best round>,
               "gb_per_s", "samples_s": [<each round's>],
               "streams": 1 (forward) | 2 (forward+backward: W_hh read in each)}
            | {"status": "failed", "message": "..."}       see bench.speed.stream_limit

Times are seconds, memory bytes. A reader should check ``schema`` and ``schema_version``
(`load` does); a change of meaning bumps the version.
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path

from bench import io
from bench.speed.cases import Case, Plan

SCHEMA = "rnnbench.bench-results"
SCHEMA_VERSION = 2
RESULTS_DIR = Path("results") / "bench"
FILE_NAME = "results.json"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_run_id(profile: str) -> str:
    """<UTC date>-<time>-<profile>-<random>: two runs started in the same second, or on two
    machines sharing a results folder, never share an id."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{profile}-{secrets.token_hex(3)}"


class RunFile:
    """A run's results document and the file it lives in."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = Path(path)
        self.data = data

    @classmethod
    def create(cls, path: Path, run_id: str, plan: Plan) -> RunFile:
        """A new run, its file created at once and whole: a second run can never take it."""
        run = cls(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run_id": run_id,
                         "plan": plan.to_dict(), "sessions": [], "gemm_peak": {},
                         "cases": []})
        try:
            io.create_json(run.path, run.data)
        except FileExistsError:
            raise ValueError(f"{path} already exists; resume it with --resume {path} or "
                             "choose another --run-id") from None
        return run

    @classmethod
    def load(cls, path: Path) -> RunFile:
        path = Path(path)
        data = io.read_json(path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: expected schema {SCHEMA!r}, got {got!r}")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{path}: schema version {data.get('schema_version')!r}; this "
                             f"code reads version {SCHEMA_VERSION}")
        missing = [k for k in ("run_id", "plan", "sessions", "gemm_peak", "cases")
                   if k not in data]
        missing += [f"cases[{i}].{k}" for i, record in enumerate(data.get("cases", []))
                    for k in ("key", "case", "implementations") if k not in record]
        missing += [f"cases[{i}].implementations.{name}.{k}"
                    for i, record in enumerate(data.get("cases", []))
                    for name, entry in record.get("implementations", {}).items()
                    if entry.get("status") == "ok"
                    for k in ("time", "samples_s") if k not in entry]
        if missing:
            raise ValueError(f"{path}: not a complete results file, missing "
                             f"{', '.join(missing[:5])}")
        try:
            Plan.from_dict(data["plan"])
            data["plan"]["cases"] = [Case.from_dict(c).to_dict() for c in data["plan"]["cases"]]
            for record in data["cases"]:
                record["case"] = Case.from_dict(record["case"]).to_dict()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: its plan or cases cannot be read ({exc!r})") from None
        io.remove_leftovers(path)
        return cls(path, data)

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @property
    def plan(self) -> Plan:
        return Plan.from_dict(self.data["plan"])

    @property
    def cases(self) -> list[dict]:
        return self.data["cases"]

    def remaining(self) -> list[Case]:
        """Planned cases without a record yet, in plan order."""
        done = {record["key"] for record in self.cases}
        return [c for c in self.plan.cases if c.key not in done]

    def forget_failures(self, reasons: list[str]) -> list[str]:
        """Drop the records of every group with an entry that failed for one of `reasons`
        ("failed": any), so that a resume measures them again; returns their keys."""
        known = {"crashed", "timeout", "exception", "out of memory", "time budget",
                 "wrong output", "failed"}
        unknown = sorted(set(reasons) - known)
        if unknown:
            raise ValueError(f"--retry: unknown reasons {unknown}; known: {sorted(known)}")

        def failed(entry: dict | None) -> bool:
            return (entry is not None and entry.get("status") == "failed"
                    and ("failed" in reasons or entry.get("reason") in reasons))

        groups = {r["group"] for r in self.cases
                  if any(failed(e) or failed(e.get("fresh_process"))
                         for e in r["implementations"].values())}
        dropped = [r["key"] for r in self.cases if r["group"] in groups]
        self.data["cases"] = [r for r in self.cases if r["group"] not in groups]
        self.save()
        return dropped

    def start_session(self, environment: dict) -> None:
        self.data["sessions"].append({"started": now(), "finished": None,
                                      "environment": environment})
        self.save()

    def finish_session(self) -> None:
        self.data["sessions"][-1]["finished"] = now()
        self.save()

    def add_cases(self, records: list[dict]) -> None:
        """Records measured together, written together."""
        self.cases.extend(records)
        self.save()

    def save(self) -> None:
        io.write_json(self.path, self.data)


def run_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / run_id / FILE_NAME


def find_run(spec: str, results_dir: Path) -> Path:
    """The results file named by `spec`: a file, a run folder, or a run id in `results_dir`."""
    candidates = [Path(spec), Path(spec) / FILE_NAME, run_path(results_dir, spec)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(p.parent.name for p in Path(results_dir).glob(f"*/{FILE_NAME}"))
    raise ValueError(f"no results file at {spec!r} (tried {', '.join(map(str, candidates))}); "
                     f"runs in {results_dir}: {', '.join(known) or 'none'}")


def latest_run(results_dir: Path) -> Path:
    """The most recently written results file in `results_dir`."""
    runs = sorted(Path(results_dir).glob(f"*/{FILE_NAME}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise ValueError(f"no results files in {results_dir}; run `python -m bench` first")
    return runs[-1]
