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
soon as it finishes, atomically, so a failing claim is recorded and the run goes on. The
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
    write_json,
    write_report,
)
from bench.environment import fingerprint

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


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.catalogue:
        print(catalogue_markdown(CLAIMS), end="")
        return 0
    profile = check_profile(args.profile)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    paths = output_paths(profile, args.out)
    command = "python -m bench claims " + " ".join(argv)
    if args.report_only:
        results = load_results(paths["json"])
        if results is None:
            print(f"no results at {paths['json']}: run the claims of profile {profile!r} "
                  "first (or name the profile with --profile)", file=sys.stderr)
            return 2
        write_report(results, CLAIMS, paths)
        print(f"wrote {paths['markdown']}")
        return 0
    ids = list(CLAIMS) if args.only is None else [get(i).id for i in args.only]
    torch.set_num_threads(args.threads)
    results = load_results(paths["json"]) if args.only else None
    if results is None or results.get("profile") != profile:
        results = {"profile": profile, "claims": {}}
    results.update(_run_header(command, argv, args.threads))
    failed = 0
    for claim_id in ids:
        print(f"[{claim_id}] ...", flush=True)
        record = run_claim(CLAIMS[claim_id], profile)
        record["measured_at"] = {"git": results["environment"]["git"],
                                 "date": results["environment"]["date"]}
        results["claims"][claim_id] = record
        write_json(results, paths["json"])
        if record["status"] == "ok":
            print(f"[{claim_id}] {record['verdict']['status']} ({record['seconds']:.1f} s)",
                  flush=True)
        else:
            failed += 1
            print(f"[{claim_id}] ERROR ({record['seconds']:.1f} s)\n{record['error']}",
                  file=sys.stderr, flush=True)
    write_report(results, CLAIMS, paths)
    print(f"wrote {paths['markdown']} and {paths['json']}")
    return 1 if failed else 0


def _run_header(command: str, argv: list[str], threads: int) -> dict:
    return {"command": command, "threads": threads,
            "environment": fingerprint(["-m", "bench", "claims", *argv]),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


__all__ = ["CLAIMS", "Claim", "get", "main", "run_claim"]
