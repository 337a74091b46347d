"""The notes' claims A1-F2, one experiment each, their catalogue and their runner.

    python -m bench claims --profile quick            # every claim, < 10 min on 2 cores
    python -m bench claims --profile default --only B1 B2
    python -m bench claims --profile default --jobs 2     # two claims at a time
    python -m bench claims --profile default --scheduler tcp://HOST:8786   # on a Dask cluster
    python -m bench claims --profile default --report-only   # CLAIMS.md and figures from the JSON
    python -m bench claims --catalogue                # the catalogue alone, as markdown

The catalogue of the claims is `CLAIMS`: each `Claim` says what the claim is (in this
project's words), where the notes make it (file name and section), how it is tested, by
which verdict rule, and which published figures it can be held against. The report
(results/CLAIMS.md) renders each entry above its verdict and measurements.

Each claim's measurements at a profile are a cell (`bench.sweep.cells`): stored once, in
claims/cells/, named by the claim, the profile and the code that measures it (`CODE`), so
running the command again after a kill measures only the claims without a cell
(`--retrain` measures them again). The claims are measured in this process, in `--jobs`
processes or on a Dask cluster (`--scheduler`); the one that times code (B1) always runs
here, alone, after the others, so its timings are this machine's and undisturbed (B2,
which shares B1's measurement, with it).

Each claim's measurements, verdict and error (if it raised) are written to the JSON file as
soon as it finishes, atomically, so a failing claim is recorded and the run goes on. A
claim's entry is replaced only when that claim finishes, every other entry kept: a killed
run, or one with --only, leaves the file with every claim it had, and runs at once keep
each other's (`bench.claims.report.update_results`). The
default profile writes results/CLAIMS.md and results/claims/; the others write under
results/claims-<profile>/ so that a CI run never overwrites the committed report.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

from bench.claims import dropout, gates, generalisation, gradients, longrange, speed, structure
from bench.claims.experiment import PROFILES, Claim, check_profile
from bench.claims.report import (
    catalogue_markdown,
    load_results,
    output_paths,
    update_results,
    write_report,
)
from bench.environment import fingerprint
from bench.sweep import executors
from bench.sweep.cells import CellStore, code_version, computed
from bench.sweep.executors import ExecutorError, Job, LocalExecutor, executor

#: The catalogue: every claim, grouped A (structure) to F (regularisation).
CLAIMS: dict[str, Claim] = dict(sorted(
    ((claim.id, claim)
     for module in (structure, speed, gradients, longrange, generalisation, gates, dropout)
     for claim in module.CLAIMS), key=lambda entry: entry[0]))


def get(claim_id: str) -> Claim:
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise ValueError(
            f"unknown claim {claim_id!r}; known claims: {', '.join(CLAIMS)}") from None


#: The code that decides a claim's measurements: the implementations, the trainer and
#: tasks, and the experiments (not the report's rendering of them).
CODE = ("impls", "bench/training", *(f"bench/claims/{path.name}"
                                     for path in sorted(Path(__file__).parent.glob("*.py"))
                                     if path.name not in ("__init__.py", "__main__.py",
                                                          "report.py")))


def cell_store(paths: dict) -> CellStore:
    """Each claim's measurements at a profile, in claims/cells/, for the code checked out."""
    return CellStore(paths["json"].parent / "cells", code_version(*CODE))


def measure(claim_id: str, profile: str, threads: int, sweep_dir: Path) -> dict:
    """One claim's measurements, in a worker process or in this one; the long-dependency
    sweep that C3, D1, D2 (and B1) read keeps its runs in `sweep_dir`."""
    torch.set_num_threads(threads)
    longrange.SWEEP_DIR = Path(sweep_dir)
    return get(claim_id).measure(profile)


def record_of(claim: Claim, profile: str, outcome: dict | None = None,
              error: str | None = None) -> dict:
    """A claim's entry in the results: its measurements (`outcome` of `cells.computed`) and
    the verdict its rule gives them, or the error that stopped it (never a crash)."""
    record = {"id": claim.id, "notes": list(claim.notes), "statement": claim.statement,
              "rule": claim.rule, "profile": profile}
    if error is None:
        try:
            verdict = claim.decide(outcome["result"])
        except Exception:  # noqa: BLE001 - a rule's failure is a result to record
            error = traceback.format_exc()
        else:
            record.update(status="ok", measurements=outcome["result"],
                          verdict=verdict.to_dict())
    if error is not None:
        record.update(status="error", error=error)
    if outcome is not None:
        record.update(seconds=outcome["provenance"]["wall_s"],
                      provenance=outcome["provenance"])
    return record


def run_claim(claim: Claim, profile: str) -> dict:
    """Measure and decide one claim in this process; an exception becomes a recorded error."""
    try:
        outcome = computed(claim.measure, profile)
    except Exception:  # noqa: BLE001 - a claim's failure is a result to record
        return record_of(claim, profile, error=traceback.format_exc())
    return record_of(claim, profile, outcome)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench claims",
        description="Test the study notes' claims and write CLAIMS.md with figures and JSON.")
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="scale: smoke (seconds, for tests), quick (< 10 min), default "
                             "(the committed report)")
    parser.add_argument("--only", nargs="+", metavar="ID", default=None,
                        help="claim ids to run (others already in the JSON are kept)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for CLAIMS.md and claims/ (default: results for the "
                             "default profile, results/claims-<profile> otherwise)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per claim (default 1: the machines are shared, "
                             "and one thread keeps timings comparable)")
    executors.add_options(parser, "claims", jobs_note="; the claims that time code (B1, B2) "
                                                      "run here, alone, afterwards")
    parser.add_argument("--retrain", action="store_true",
                        help="measure every claim asked for again (by default a claim whose "
                             "cell exists for this code and profile is taken from it)")
    parser.add_argument("--report-only", action="store_true",
                        help="regenerate CLAIMS.md and figures from the existing JSON "
                             "(runs no experiment)")
    parser.add_argument("--catalogue", action="store_true",
                        help="print the catalogue of the claims (markdown) and exit")
    return parser


def _error(parser: argparse.ArgumentParser, message) -> int:
    """A clean error (a results file that cannot be used, say): no traceback, exit code 2."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.catalogue:
        print(catalogue_markdown(CLAIMS), end="")
        return 0
    profile = check_profile(args.profile)
    executors.check_options(parser, args, "claims")
    try:
        ids = list(CLAIMS) if args.only is None else list(
            dict.fromkeys(get(i).id for i in args.only))
    except ValueError as exc:
        parser.error(f"--only: {exc}")
    paths = output_paths(profile, args.out)
    command = "python -m bench claims " + " ".join(argv)
    try:
        existing = load_results(paths["json"])
    except ValueError as exc:
        return _error(parser, exc)
    if args.report_only:
        if existing is None:
            print(f"no results at {paths['json']}: run the claims of profile {profile!r} "
                  "first (or name the profile with --profile)", file=sys.stderr)
            return 2
        write_report(existing, CLAIMS, paths)
        print(f"wrote {paths['markdown']}")
        return 0
    if existing is not None and existing["profile"] != profile:
        return _error(parser, f"{paths['json']} holds the claims of profile "
                              f"{existing['profile']!r}, not {profile!r}: choose another "
                              "--out, or remove it")
    try:
        away = executor(args.jobs, args.scheduler)
    except ExecutorError as exc:
        return _error(parser, exc)
    torch.set_num_threads(args.threads)
    header = {**_run_header(command, argv, args.threads), "executor": away.describe()}
    store = cell_store(paths)
    store.remove_stale_temporaries()
    results = existing
    failed = 0

    def inputs(claim_id: str) -> dict:
        return {"claim": claim_id, "profile": profile}

    def job(claim_id: str) -> Job:
        return Job(claim_id, computed, (measure, claim_id, profile, args.threads,
                                        paths["root"] / "accuracy"))

    def finished(claim_id: str, outcome: dict, stored: bool = False) -> None:
        if not stored:
            store.put(claim_id, inputs(claim_id), outcome["result"], outcome["provenance"])
        origin = f"from its cell, computed on {outcome['provenance']['host']}" if stored else (
            f"{outcome['provenance']['wall_s']:.1f} s")
        save(record_of(CLAIMS[claim_id], profile, outcome), origin)

    def errored(claim_id: str, error: str) -> None:
        save(record_of(CLAIMS[claim_id], profile, error=error), "")

    def save(record: dict, origin: str) -> None:
        nonlocal results, failed
        record["measured_at"] = {"git": header["environment"]["git"],
                                 "date": header["environment"]["date"]}
        results = update_results(paths["json"], profile, header, {record["id"]: record})
        if record["status"] == "ok":
            print(f"[{record['id']}] {record['verdict']['status']} ({origin})", flush=True)
        else:
            failed += 1
            print(f"[{record['id']}] ERROR\n{record['error']}", file=sys.stderr, flush=True)

    try:
        todo = []
        for claim_id in ids:
            cell = None if args.retrain else store.get(inputs(claim_id))
            if cell is None:
                todo.append(claim_id)
            else:
                finished(claim_id, cell, stored=True)
        elsewhere = [i for i in todo if not CLAIMS[i].timed]
        here = [i for i in todo if CLAIMS[i].timed]
        if elsewhere:
            print(f"measuring {', '.join(elsewhere)} on {away.describe()}", flush=True)
            away.run([job(i) for i in elsewhere], finished, errored)
        if here:
            print(f"measuring {', '.join(here)} here, alone (they time code)", flush=True)
            LocalExecutor(1).run([job(i) for i in here], finished, errored)
        if args.only is None:  # every claim ran: drop the entries of claims that are gone
            results = update_results(paths["json"], profile, header, keep=set(CLAIMS))
    except (ValueError, ExecutorError) as exc:  # a damaged cell or results file, a scheduler
        return _error(parser, exc)
    write_report(results, CLAIMS, paths)
    print(f"wrote {paths['markdown']} and {paths['json']}")
    return 1 if failed else 0


def _run_header(command: str, argv: list[str], threads: int) -> dict:
    return {"command": command, "threads": threads,
            "environment": fingerprint(["-m", "bench", "claims", *argv]),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


__all__ = ["CLAIMS", "Claim", "get", "main", "run_claim"]
