"""The notes' claims A1-F2, one experiment each, their catalogue and their runner.

    python -m bench claims --profile quick            # every claim, < 10 min on 2 cores
    python -m bench claims --profile default --only B1 B2
    python -m bench claims --profile default --report-only   # CLAIMS.md and figures from the JSON
    python -m bench claims --catalogue                # the catalogue alone, as markdown

The catalogue of the claims is `CLAIMS`: each `Claim` says what the claim is (in this
project's words), where the notes make it (file name and section), how it is tested, by
which verdict rule, and which published figures it can be held against. The report
(results/CLAIMS.md) renders each entry above its verdict and measurements.

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

from bench.claims import dropout, gates, gradients, longrange, speed, structure
from bench.claims.experiment import PROFILES, Claim, check_profile
from bench.claims.report import (
    catalogue_markdown,
    load_results,
    output_paths,
    update_results,
    write_report,
)
from bench.environment import fingerprint, usable_cores

#: How B1 and B2 are tested and what they are held against. Their experiment module
#: (bench/claims/speed.py) defines the two Claims without these catalogue fields, so they
#: are given here and applied only to a claim that has none of its own.
#: The catalogue: every claim, grouped A (structure) to F (regularisation).
CLAIMS: dict[str, Claim] = {
    claim.id: claim
    for module in (structure, speed, gradients, longrange, gates, dropout)
    for claim in module.CLAIMS
}


def get(claim_id: str) -> Claim:
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise ValueError(
            f"unknown claim {claim_id!r}; known claims: {', '.join(CLAIMS)}") from None


def run_claim(claim: Claim, profile: str) -> dict:
    """Measure and decide one claim; an exception becomes a recorded error, never a crash."""
    started = time.perf_counter()
    record = {"id": claim.id, "notes": list(claim.notes), "statement": claim.statement,
              "rule": claim.rule, "profile": profile}
    try:
        measurements = claim.measure(profile)
        verdict = claim.decide(measurements)
    except Exception:  # noqa: BLE001 - a claim's failure is a result to record
        record.update(status="error", error=traceback.format_exc())
    else:
        record.update(status="ok", measurements=measurements, verdict=verdict.to_dict())
    record["seconds"] = time.perf_counter() - started
    return record


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
                        help="torch threads (default 1: the machines are shared, and one "
                             "thread keeps timings comparable)")
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
    cores = usable_cores()
    if not 1 <= args.threads <= cores:
        parser.error(f"--threads must be from 1 to the {cores} usable cores, got "
                     f"{args.threads}")
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
    torch.set_num_threads(args.threads)
    header = _run_header(command, argv, args.threads)
    results = existing
    failed = 0
    for claim_id in ids:
        print(f"[{claim_id}] ...", flush=True)
        record = run_claim(CLAIMS[claim_id], profile)
        record["measured_at"] = {"git": header["environment"]["git"],
                                 "date": header["environment"]["date"]}
        try:
            results = update_results(paths["json"], profile, header, {claim_id: record})
        except ValueError as exc:  # damaged or replaced meanwhile, by something else
            return _error(parser, exc)
        if record["status"] == "ok":
            print(f"[{claim_id}] {record['verdict']['status']} ({record['seconds']:.1f} s)",
                  flush=True)
        else:
            failed += 1
            print(f"[{claim_id}] ERROR ({record['seconds']:.1f} s)\n{record['error']}",
                  file=sys.stderr, flush=True)
    if args.only is None:  # every claim ran: drop the entries of claims that no longer exist
        try:
            results = update_results(paths["json"], profile, header, keep=set(CLAIMS))
        except ValueError as exc:
            return _error(parser, exc)
    write_report(results, CLAIMS, paths)
    print(f"wrote {paths['markdown']} and {paths['json']}")
    return 1 if failed else 0


def _run_header(command: str, argv: list[str], threads: int) -> dict:
    return {"command": command, "threads": threads,
            "environment": fingerprint(["-m", "bench", "claims", *argv]),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


__all__ = ["CLAIMS", "Claim", "get", "main", "run_claim"]
