"""claims.json and CLAIMS.md: the results file, and the report regenerated from it alone.

The JSON is rewritten atomically after every claim (write a temporary file, then rename):
each finished claim's record replaces that claim's entry alone, in the file as it is at that
moment (read again under a lock on its folder), so a killed run leaves every claim finished
before it, by this run or an earlier one, and two runs at once keep each other's claims.
The markdown and the figures are pure functions of the JSON and of the catalogue (the
`Claim` objects):
`python -m bench claims --profile default --report-only` rebuilds them without running an
experiment. Each claim's section opens with its catalogue entry (`catalogue_lines`); the
verdict, the rule that gave it and the measurements follow, all three as recorded in the JSON.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: runs at once there may lose each other's claims
    fcntl = None

from bench import io
from bench.claims.experiment import NOTES

SCHEMA_VERSION = 1
RESULTS_DIR = Path("results")


def output_paths(profile: str, out: Path | None = None) -> dict[str, Path]:
    """Where a profile's files go: results/ for default, results/claims-<profile>/ else."""
    root = Path(out) if out is not None else (
        RESULTS_DIR if profile == "default" else RESULTS_DIR / f"claims-{profile}")
    data = root / "claims"
    return {"root": root, "markdown": root / "CLAIMS.md", "json": data / "claims.json",
            "figures": data / "figures"}


def write_json(results: dict, path: Path) -> None:
    io.write_json(path, {"schema_version": SCHEMA_VERSION, **results})


def load_results(path: Path) -> dict | None:
    """The results file, or None if there is none yet; a ValueError naming the file if it
    cannot be read or is not one."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        results = io.read_json(path)
    except (OSError, ValueError) as exc:
        message = str(exc)
        raise ValueError(message if str(path) in message
                         else f"{path} cannot be read: {message}") from None
    version = results.get("schema_version") if isinstance(results, dict) else None
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {version!r}, expected {SCHEMA_VERSION}; "
                         "it may be damaged, or written by another version: rerun the claims "
                         "to regenerate it")
    records = results.get("claims")
    if not (isinstance(results.get("profile"), str) and isinstance(records, dict)
            and all(isinstance(r, dict) and isinstance(r.get("status"), str)
                    for r in records.values())):
        raise ValueError(f"{path} lacks its profile or its claims (each with a status); it "
                         "may be damaged")
    return results


@contextlib.contextmanager
def _locked(directory: Path):
    """Hold an exclusive lock on `directory` (no lock file is left behind)."""
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def update_results(path: Path, profile: str, header: dict, records: dict | None = None,
                   keep: set | None = None) -> dict:
    """Put `records` (claim id -> record) and `header` into the results file as it is now,
    every other claim's entry kept (with `keep`, only the claims named there); the file's
    new content is returned.

    The file is read again, changed and written under a lock on its folder, so that runs at
    once, each with its own claims, keep each other's.
    """
    path = Path(path)
    with _locked(path.parent):
        results = load_results(path) or {"profile": profile, "claims": {}}
        if results["profile"] != profile:
            raise ValueError(f"{path} holds the claims of profile {results['profile']!r}, not "
                             f"{profile!r}: choose another --out, or remove it")
        results.update(header)
        if keep is not None:
            results["claims"] = {cid: r for cid, r in results["claims"].items() if cid in keep}
        results["claims"].update(records or {})
        write_json(results, path)
    return results


def _command(profile: str, claim_id: str) -> str:
    return f"python -m bench claims --profile {profile} --only {claim_id}"


def _environment_lines(env: dict) -> list[str]:
    """The fingerprint's essentials (the JSON has all of it)."""
    if not env:
        return []
    git = env.get("git") or {}
    cuda = env.get("cuda") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items())
    return [
        f"- machine: {env.get('cpu')}, cores {env.get('cores')}, load average "
        f"{env.get('load_average')}",
        f"- versions: python {env.get('python')}, {versions}",
        f"- oneDNN: {env.get('onednn')}; CUDA: {cuda}",
        f"- commit {git.get('commit')} (dirty: {git.get('dirty')})",
    ]


def _mixed_commits_line(records: dict) -> list[str]:
    """Say so when a partial rerun left claims measured at different commits."""
    stamps = [r.get("measured_at") for r in records.values()]
    commits = {str(s["git"].get("commit")) if s else None for s in stamps}
    if len(commits) < 2:
        return []
    return ["- the claims were not all measured in this run: each claim names its commit "
            "under 'Regenerate'"]


def notes_lines() -> list[str]:
    """The cited notes: file names and how their sections are named."""
    lines = ["The notes are five study notes in Chinese on RNN, LSTM and GRU. They are not part "
             "of this repository; a citation names the file and the section, "
             "`<file name> §<section>`:", ""]
    lines += [f"- `{name}`: {description}" for name, description in NOTES.items()]
    return lines


def catalogue_lines(claim) -> list[str]:
    """One claim's catalogue entry: the claim, where the notes make it, how it is tested,
    the code, and the literature to hold the result against."""
    module = inspect.getmodule(claim.measure)
    source = module.__name__.replace(".", "/") + ".py" if module else "?"
    anchors = [f"- {anchor}" for anchor in claim.anchors] or [
        "- none: no published figure bears on this claim; the rule alone decides."]
    return [
        f"## {claim.id}",
        "",
        f"**Claim (in our words):** {claim.statement}  ",
        f"**Where the notes make it:** {'; '.join(claim.notes)}  ",
        f"**How it is tested:** {claim.method}  ",
        f"**Code:** `{source}` (`{claim.measure.__name__}`, `{claim.decide.__name__}`)",
        "",
        "**Literature anchors:**",
        "",
        *anchors,
        "",
    ]


def catalogue_markdown(claims: dict) -> str:
    """The catalogue alone: every claim's entry with its verdict rule, no measurements."""
    lines = ["# The claims the suite tests", "",
             "Rendered from the `Claim` objects of `bench/claims/` by "
             "`python -m bench claims --catalogue`; the measured verdicts are in "
             "`results/CLAIMS.md`.", "", *notes_lines()]
    for claim in claims.values():
        lines += ["", *catalogue_lines(claim), f"*Verdict rule:* {claim.rule}"]
    return "\n".join(lines) + "\n"


def write_report(results: dict, claims: dict, paths: dict[str, Path]) -> Path:
    """CLAIMS.md and its figures from `results` (the JSON's content)."""
    markdown, figures = paths["markdown"], paths["figures"]
    figures.mkdir(parents=True, exist_ok=True)
    profile = results["profile"]
    records = results["claims"]
    lines = [
        "# The notes' claims, measured",
        "",
        "Generated by `python -m bench claims` from "
        f"`{os.path.relpath(paths['json'], markdown.parent)}`; do not edit by hand. "
        "Each section opens with the claim's entry in the suite's catalogue (defined with "
        "its experiment in `bench/claims/`; `python -m bench claims --catalogue` prints the "
        "catalogue alone), then gives the verdict, the rule that computed it from the "
        "measurements, and the measurements.",
        "",
        f"- profile: `{profile}`; command: `{results.get('command', '')}`; torch threads: "
        f"{results.get('threads', '')}; written {results.get('written', '')}",
        f"- total time: {sum(r.get('seconds', 0) for r in records.values()):.0f} s",
        *_environment_lines(results.get("environment", {})),
        *_mixed_commits_line(records),
        "",
        *notes_lines(),
        "",
        "| claim | where the notes make it | verdict |",
        "|---|---|---|",
    ]
    ordered = [cid for cid in claims if cid in records]
    for cid in ordered:
        r = records[cid]
        verdict = r["verdict"]["status"] if r["status"] == "ok" else "ERROR"
        lines.append(f"| [{cid}](#{cid.lower()}) | {'; '.join(claims[cid].notes)} | "
                     f"{verdict} |")
    for cid in ordered:
        lines += ["", *_claim_section(claims[cid], records[cid], profile, figures,
                                      markdown.parent)]
    return io.write_text(markdown, "\n".join(lines) + "\n")


def _claim_section(claim, record: dict, profile: str, figures: Path, base: Path) -> list[str]:
    lines = catalogue_lines(claim)
    if record["status"] != "ok":
        last = record["error"].strip().splitlines()[-1]
        lines += [f"**Verdict: ERROR**: the experiment raised `{last}`; the traceback is in "
                  "the JSON file.", ""]
    else:
        verdict = record["verdict"]
        against = (claim.against(record["measurements"]) if claim.against is not None else
                   "no published figure to compare: the check is exact, the rule alone "
                   "decides")
        lines += [
            f"**Verdict: {verdict['status']}**: {verdict['reason']}.",
            "",
            f"**Against the literature:** {against}",
            "",
            f"*Rule:* {record['rule']}",
            "",
            "**Measured:**",
            "",
            claim.summarize(record["measurements"]),
            "",
        ]
        if claim.plot is not None:
            for path in claim.plot(record["measurements"], figures):
                lines += [f"![{claim.id}]({os.path.relpath(path, base)})", ""]
    lines.append(f"Regenerate: `{_command(profile, claim.id)}` "
                 f"({record.get('seconds', 0):.1f} s{_measured_at(record)})")
    return lines


def _measured_at(record: dict) -> str:
    """When and where this claim was measured: a partial rerun (--only) leaves the others as
    they were, and a cluster may have computed it on another machine."""
    stamp = record.get("measured_at")
    where = record.get("provenance")
    machine = f", on {where['host']} ({where['cpu']}, {where['cores']} cores)" if where else ""
    if not stamp:
        return f" in this run{machine}"
    git = stamp["git"]
    dirty = " (dirty)" if git.get("dirty") else ""
    return (f", measured at commit {str(git.get('commit'))[:10]}{dirty} on "
            f"{stamp['date'][:10]}{machine}")
