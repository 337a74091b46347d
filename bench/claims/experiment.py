"""What a claim experiment is: a catalogue entry, a measurement, a verdict rule, a summary.

A `Claim` is both the suite's catalogue entry for one claim of the study notes (the claim in
this project's words, where the notes make it, how it is tested, the literature it can be
held against) and the experiment that tests it. There is no other list of the claims: the
report renders the catalogue from these objects (`bench.claims.report.catalogue_lines`;
`python -m bench claims --catalogue` prints it).

A claim's verdict must follow from its numbers, so an experiment is split into pure parts:
`measure(profile)` returns JSON-ready measurements, `decide(measurements)` applies the rule
written in `rule` and returns the verdict, `summarize` and `plot` render the same
measurements. The report can therefore be regenerated from the JSON file alone, and a test
can feed `decide` made-up measurements to check the rule itself.

The notes are five study notes in Chinese, not part of this repository; they are cited by
file name and section as "<file name> §<section>" (`NOTES` says how each one's sections are
named).
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
#: experiment end to end; `quick` runs in CI; `default` is the committed report (45 minutes
#: or less on 2 cores); `full` is the literature's scale (10 seeds), for a cluster.
PROFILES = ("smoke", "quick", "default", "full")

NOTE_000 = "000_6b4ef90b910228ae.txt"
NOTE_001 = "001_00d2adbd02362116.txt"
NOTE_002 = "002_2c9e6012ecdce6e2.txt"
NOTE_003 = "003_5fc8656dbf512f44.txt"
NOTE_004 = "004_083bbe72d520f39b.txt"

#: The cited notes: file name -> what the note is and how a citation names its sections.
NOTES = {
    NOTE_000: "a 2020 study note on LSTM, built on six questions listed at its start; "
              "sections are numbered as that list: §2 why RNN gradients vanish or explode, "
              "§3 remedies, §4 the LSTM's gates, §5 why the LSTM eases the problem, §6 "
              "dropout in RNNs",
    NOTE_001: "a reposted 2024 web article on what goes wrong in an RNN and how the LSTM "
              "answers it; §1 and §2 are its two numbered parts, and a citation of §2 names "
              "the sub-heading in brackets",
    NOTE_002: "a study note on RNN, LSTM and GRU with numbered headings "
              "(§1.2 gradient problems, §1.3 why the LSTM helps, §2.1 a first comparison, §3 "
              "the GRU, §4.1 and §4.2 GRU against LSTM in structure and in use)",
    NOTE_003: "a short LSTM note with unnumbered headings, cited by their English names "
              "(§forget gate, §long-term dependencies, §GRU, ...)",
    NOTE_004: "a 2021 blog post on LSTM: §summary N is item N of its summary list, "
              "§appendix N item N of its appendix on the LSTM's inner structure",
}


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
class Anchor:
    """A published figure or fact that a measurement can be held against.

    source: who reported it and when, e.g. "Arjovsky, Shah & Bengio 2016". fact: what they
    report, with the numbers and the setting that go with them.
    """

    source: str
    fact: str

    def __post_init__(self):
        if not self.source or not self.fact:
            raise ValueError(f"Anchor: 'source' and 'fact' must both be given, got "
                             f"{self.source!r}, {self.fact!r}")

    def __str__(self) -> str:
        return f"{self.source}: {self.fact}"


@dataclass(frozen=True)
class Claim:
    """One claim of the notes: its catalogue entry and the experiment that tests it.

    notes: where the notes make the claim, "<file name> §<section>", e.g.
    "004_083bbe72d520f39b.txt §summary 2" (see `NOTES`). statement: the claim in this
    project's own words. method: how the experiment tests it, in words (what is built,
    trained or timed, and what is measured; the sizes are the profile's and are stated in
    the report). rule: the verdict rule in words; it must describe exactly what `decide`
    computes. anchors: published figures to hold the measurement against; empty where the
    literature offers none (an exact check, or a question no paper measured). timed: see
    the field.
    """

    id: str
    notes: tuple[str, ...]
    statement: str
    rule: str
    measure: Callable[[str], dict]
    decide: Callable[[dict], Verdict]
    summarize: Callable[[dict], str]
    plot: Callable[[dict, Path], list[Path]] | None = None
    method: str = ""
    anchors: tuple[Anchor, ...] = ()
    #: The anchors' figures beside ours, from the measurements: what the literature found,
    #: what we found, and whether they agree (and why not where they do not). None only
    #: for a claim without anchors.
    against: Callable[[dict], str] | None = None
    #: Its measurement times code: it runs in the process that runs the claims, alone,
    #: never beside other claims or on a cluster's machines.
    timed: bool = False

    @property
    def group(self) -> str:
        return self.id[0]


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown claims profile {profile!r}; expected one of {PROFILES}")
    return profile


def save_figure(fig, path: Path) -> Path:
    """Write `fig` to `path` whole or not at all (a temporary file renamed over it), then
    close it: every claim's figure and the accuracy sweep's go through here."""
    import matplotlib.pyplot as plt

    from bench import io

    try:
        return io.write_with(Path(path), lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)


def plain_log_labels(ax) -> None:
    """Ratios near 1 on a log axis: label its ticks 0.6, 0.8, 1, not 6x10^-1 (the minor
    ones only where the axis spans little more than a decade, or they would overlap)."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    low, high = ax.get_ylim()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g") if high / low < 20
                                 else NullFormatter())


def listed(settings: dict) -> dict:
    """`settings` with every tuple a list, nested dicts included: JSON's form of it."""
    return {k: (list(v) if isinstance(v, tuple) else listed(v) if isinstance(v, dict) else v)
            for k, v in settings.items()}


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats are written with 4 significant digits."""

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
