"""The numba kernels' targets, judged from a run's results (profile ``numba-targets``).

    python -m bench --profile numba-targets      # measures, then the report has the table

Each target is a bound on a number the harness already measured: a ratio of medians to
another implementation taken within one case (same worker processes, interleaved, equal
cores), a batch-1 step time against the cache-streaming limit measured with the case, a peak
memory against the bytes BPTT must keep or against torch's in the same case, or a first call
in a fresh process. A target whose case is not in the run is left out, so any
run that holds the cases (the default profile holds most) gets the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.report import analysis
from bench.speed.cases import Case
from bench.speed.stats import ratio_of_medians

MIB = 2 ** 20
T_TARGETS = 100
MEMORY_SHAPE = {"T": 1000, "B": 32, "I": 128, "H": 128}


@dataclass(frozen=True)
class SpeedTarget:
    """numba's median time over `against`'s in one case (T=100, I=H) is at most `bound`."""

    cell: str
    mode: str
    B: int
    against: str
    bound: float
    H: int = 256

    def label(self) -> str:
        call = "forward" if self.mode == "inference" else "forward+backward"
        return f"{self.cell.upper()} {call}, B={self.B}, I=H={self.H}"


SPEED_TARGETS = (
    # Batch 1, where a step streams W_hh from cache (bench/speed/stream_limit.py).
    *(SpeedTarget(cell, mode, 1, "torch", bound, H)
      for cell in ("lstm", "gru") for H in (256, 512)
      for mode, bound in (("inference", 0.5), ("training", 0.6))),
    # Batch 64, where a step is a GEMM.
    SpeedTarget("lstm", "inference", 64, "torch", 1.5),
    SpeedTarget("lstm", "inference", 64, "torch-native", 1.0),
    SpeedTarget("lstm", "training", 64, "torch", 1.5),
    SpeedTarget("gru", "inference", 64, "torch", 0.8),
    SpeedTarget("gru", "training", 64, "torch", 0.8),
)
#: numba's batch-1 step time over the cache-streaming limit measured with the case.
LIMIT_BOUND = 2.0
#: How a bound below the streaming limit is marked in its row's detail: not a kernel's
#: shortfall but physics.
UNREACHABLE = "below the streaming limit"
#: numba's training peak over the bytes BPTT must keep, LSTM at MEMORY_SHAPE.
TRAINING_MEMORY_BOUND = 1.3
#: Seconds for build + first call in a fresh process, JIT cache warm.
FIRST_CALL_BOUND_S = 1.0
IMPL = "numba"


def _matches(case: dict, **fields) -> bool:
    """Whether a case has `fields`, and the targets' layer: one layer, one direction, every
    sequence T long."""
    return not Case.from_dict(case).variant and all(case[k] == v for k, v in fields.items())


def _entry(record: dict, name: str) -> dict | None:
    entry = record["implementations"].get(name)
    return entry if entry is not None and entry["status"] == "ok" else None


def _peak(entry: dict | None) -> int | None:
    fresh = (entry or {}).get("fresh_process") or {}
    return fresh.get("peak_bytes") if fresh.get("status") == "ok" else None


def _row(what: str, against: str, bound: str, measured: float | None, met: bool | None,
         detail: str) -> dict:
    return {"target": what, "against": against, "bound": bound, "measured": measured,
            "met": met, "detail": detail}


def _speed_rows(records: list[dict]) -> list[dict]:
    rows = []
    for t in SPEED_TARGETS:
        for r in records:
            c = r["case"]
            if not _matches(c, cell=t.cell, mode=t.mode, B=t.B, T=T_TARGETS, I=t.H, H=t.H):
                continue
            numba, other = _entry(r, IMPL), _entry(r, t.against)
            what = f"{t.label()}, {c['threads']} thread(s)"
            if numba is None or other is None or "ratio" not in numba:
                rows.append(_row(what, t.against, f"<= {t.bound:g}x", None, None,
                                 "not measured in this run"))
                continue
            if numba["ratio"].get("baseline") == t.against and "ratio" in numba["ratio"]:
                ratio, ci = numba["ratio"]["ratio"], numba["ratio"]["ci95"]
            else:
                measured = ratio_of_medians(numba["samples_s"], other["samples_s"])
                ratio, ci = measured["ratio"], measured["ci95"]
            unreachable = _below_limit(r, t.bound, other)
            row = _row(what, t.against, f"<= {t.bound:g}x", ratio, ratio <= t.bound,
                       f"95% CI [{ci[0]:.2f}, {ci[1]:.2f}]; numba "
                       f"{numba['time']['median'] * 1e3:.3g} ms, {t.against} "
                       f"{other['time']['median'] * 1e3:.3g} ms" + unreachable)
            rows.append({**row, "unreachable": bool(unreachable)})
    return rows


def _below_limit(record: dict, bound: float, other: dict) -> str:
    """Where a bound asks for a batch-1 step faster than reading the weights (the streaming
    limit measured with the case), why no kernel could meet it on this machine."""
    limit = analysis.limit_step_s(record)
    if limit is None:
        return ""
    needed = bound * other["time"]["median"] / record["case"]["T"]
    if needed >= limit:
        return ""
    return (f"; {UNREACHABLE}: it asks for a step of {needed * 1e6:.3g} µs, the streaming "
            f"limit is {limit * 1e6:.3g} µs")


def _limit_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        c, entry = r["case"], _entry(r, IMPL)
        if c["cell"] not in ("lstm", "gru") or not _matches(c, B=1) or entry is None:
            continue
        measured = analysis.over_limit(r, entry)
        if measured is None:
            continue
        step, over = measured
        call = "forward" if c["mode"] == "inference" else "forward+backward"
        rows.append(_row(f"{c['cell'].upper()} {call}, B=1, I={c['I']} H={c['H']}, "
                         f"{c['threads']} thread(s)", "streaming limit",
                         f"<= {LIMIT_BOUND:g}x", over, over <= LIMIT_BOUND,
                         f"step {step * 1e6:.3g} µs; limit {step / over * 1e6:.3g} "
                         f"µs ({r['stream_limit']['streams']} read(s) of "
                         f"{r['stream_limit']['bytes'] / MIB:.3g} MiB at "
                         f"{r['stream_limit']['gb_per_s']:.3g} GB/s)"))
    return rows


def _memory_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        c = r["case"]
        if not _matches(c, cell="lstm", mode="training", **MEMORY_SHAPE):
            continue
        keep = r["must_keep_bytes"]
        for name in (IMPL, "torch"):
            peak = _peak(_entry(r, name))
            if peak is None:
                continue
            bound = f"<= {TRAINING_MEMORY_BOUND:g}x" if name == IMPL else "(for scale)"
            rows.append(_row(f"LSTM training peak memory ({name}), T={c['T']}, B={c['B']}, "
                             f"I=H={c['H']}", "BPTT bytes", bound, peak / keep,
                             peak / keep <= TRAINING_MEMORY_BOUND if name == IMPL else None,
                             f"+{peak / MIB:.1f} MiB against {keep / MIB:.1f} MiB"))
        break
    inference = [(r, _peak(_entry(r, IMPL)), _peak(_entry(r, "torch"))) for r in records
                 if r["case"]["mode"] == "inference"]
    inference = [(r, n, t) for r, n, t in inference if n is not None and t is not None]
    if inference:
        worst = max(inference, key=lambda item: item[1] / max(item[2], 1))
        above = [r["key"] for r, n, t in inference if n > t]
        rows.append(_row(f"inference peak memory, every case ({len(inference)})", "torch",
                         "<= 1x", worst[1] / max(worst[2], 1), not above,
                         f"highest ratio in {worst[0]['key']}"
                         + (f"; above torch in {', '.join(above)}" if above else "")))
    return rows


def _first_call_rows(records: list[dict]) -> list[dict]:
    times = [(r, _entry(r, IMPL)) for r in records]
    times = [((e.get("fresh_process") or {}).get("first_call_s"), r["key"]) for r, e in times
             if e is not None and (e.get("fresh_process") or {}).get("status") == "ok"]
    if not times:
        return []
    worst, key = max(times)
    return [_row(f"first call in a fresh process, every case ({len(times)})", "seconds",
                 f"<= {FIRST_CALL_BOUND_S:g} s", worst, worst <= FIRST_CALL_BOUND_S,
                 f"slowest in {key}; build + first call, JIT cache warm, imports not counted")]


def evaluate(records: list[dict]) -> list[dict]:
    """Every target whose case the run holds, measured and judged."""
    if not any(IMPL in r["implementations"] for r in records):
        return []
    return (_speed_rows(records) + _limit_rows(records) + _memory_rows(records)
            + _first_call_rows(records))


def markdown(records: list[dict]) -> list[str]:
    """The targets table for the report (no lines when the run holds none of them)."""
    rows = evaluate(records)
    if not rows:
        return []
    met = sum(r["met"] is True for r in rows)
    judged = sum(r["met"] is not None for r in rows)
    unreachable = sum(r.get("unreachable", False) for r in rows)
    lines = ["## Targets of the numba kernels", "",
             f"{met} of {judged} met"
             + (f"; {unreachable} ask(s) for a batch-1 step faster than the streaming limit "
                "measured with the case, which no kernel can meet on this machine"
                if unreachable else "") + ". Speed: numba's median over the other's, taken within "
             "one case (T=100; same processes, interleaved, equal cores). Streaming limit: "
             "numba's step time over the limit measured with the case (see the section "
             "above).", "",
             "| target | against | bound | measured | met | detail |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        measured = "–" if r["measured"] is None else f"{r['measured']:.2f}"
        met_text = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['target']} | {r['against']} | {r['bound']} | {measured} | "
                     f"{met_text} | {r['detail']} |")
    return lines + [""]
