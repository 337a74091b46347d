"""What a claim experiment is: a measurement, a stated verdict rule, a summary and a figure.

A claim's verdict must follow from its numbers, so an experiment is split into pure parts:
`measure(profile)` returns JSON-ready measurements, `decide(measurements)` applies the rule
written in `rule` and returns the verdict, `summarize` and `plot` render the same
measurements. The report can therefore be regenerated from the JSON file alone, and a test
can feed `decide` made-up measurements to check the rule itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
DEPENDS = "depends"
STATUSES = (SUPPORTED, NOT_SUPPORTED, DEPENDS)

#: Scale settings, smallest first. `smoke` exists so that a unit test can run every
#: experiment end to end; `quick` runs in CI; `default` is the committed report.
PROFILES = ("smoke", "quick", "default")


@dataclass(frozen=True)
class Verdict:
    """`status` is one of STATUSES; `reason` says which numbers decided it (for `depends`,
    the condition under which the claim holds)."""

    status: str
    reason: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"Verdict: 'status' must be one of {STATUSES}, got {self.status!r}")
        if not self.reason:
            raise ValueError("Verdict: 'reason' must say what decided the verdict, got ''")

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class Claim:
    """One claim of the notes and the experiment that tests it.

    notes: the note file names with their sections, e.g. "004_083bbe72d520f39b.txt §summary 2".
    statement: the claim in this project's own words. rule: the verdict rule in words; it
    must describe exactly what `decide` computes.
    """

    id: str
    notes: tuple[str, ...]
    statement: str
    rule: str
    measure: Callable[[str], dict]
    decide: Callable[[dict], Verdict]
    summarize: Callable[[dict], str]
    plot: Callable[[dict, Path], list[Path]] | None = None

    @property
    def group(self) -> str:
        return self.id[0]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown claims profile {profile!r}; expected one of {PROFILES}")
    return profile


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats are written with 4 significant digits."""

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
