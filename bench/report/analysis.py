"""Comparisons the report draws from a results document, each taken within one run.

Absolute times drift between runs and machines; ratios of workloads timed in the same worker
processes, interleaved, do not. So every comparison here pairs entries of one group (the
cases that differ only in their cell, timed together), and its interval is the paired
two-stage bootstrap of `bench.speed.stats.ratio_of_medians`.
"""

from __future__ import annotations

from collections import defaultdict

from bench.speed import stats
from bench.speed.cases import Case

GRU_LSTM_FLOP_RATIO = 3 / 4


def ok_entries(record: dict):
    """(name, entry) of every implementation that measured the record's case."""
    for name, entry in record["implementations"].items():
        if entry["status"] == "ok":
            yield name, entry


def core_budget(case: dict, cores: int | None) -> str:
    """A label for a case's core budget: "1 core", "2 cores (all)"."""
    n = case["threads"]
    label = f"{n} core" + ("s" if n != 1 else "")
    return label + (" (all)" if cores is not None and n == cores and n > 1 else "")


def gru_lstm_pairs(records: list[dict], seed: int = 0) -> list[dict]:
    """GRU time / LSTM time per implementation, from the GRU and LSTM cases of one group.

    The context is (T, B, I, H, the layer's variant: "" or e.g. "L2 bi").
    """
    by_group = defaultdict(dict)
    for r in records:
        by_group[r["group"]][r["case"]["cell"]] = r
    pairs = []
    for cells in by_group.values():
        if not {"gru", "lstm"} <= set(cells):
            continue
        gru, lstm = cells["gru"], cells["lstm"]
        c = Case.from_dict(gru["case"])
        for name, g in ok_entries(gru):
            lo = lstm["implementations"].get(name)
            if lo is None or lo["status"] != "ok":
                continue
            r = stats.ratio_of_medians(g["samples_s"], lo["samples_s"], seed=seed)
            pairs.append({"impl": name, "mode": c.mode,
                          "context": (c.T, c.B, c.I, c.H, c.variant),
                          "dtype": c.dtype, "device": c.device, "threads": c.threads, **r})
    return sorted(pairs, key=lambda p: (p["device"], p["dtype"], p["threads"], p["mode"],
                                        p["context"], p["impl"]))


def fastest(record: dict, seed: int = 0) -> dict | None:
    """The fastest implementation of a case, and how much the runner-up is slower.

    `margin` is runner-up time / fastest time with its 95% interval (paired by process):
    an interval that reaches 1 means the two cannot be told apart in this run.
    """
    ranked = sorted(ok_entries(record), key=lambda item: item[1]["time"]["median"])
    if not ranked:
        return None
    name, best = ranked[0]
    out = {"impl": name, "median_s": best["time"]["median"], "runner_up": None}
    if len(ranked) > 1:
        second, entry = ranked[1]
        out["runner_up"] = second
        out["margin"] = stats.ratio_of_medians(entry["samples_s"], best["samples_s"], seed=seed)
    return out


def limit_step_s(record: dict) -> float | None:
    """A batch-1 case's limit per step: W_hh read once per pass (`streams`) at the speed
    measured just before its timing; None where the case has none."""
    limit = record.get("stream_limit") or {}
    if limit.get("status") != "ok":
        return None
    return limit["streams"] * limit["pass_s"]


def over_limit(record: dict, entry: dict) -> tuple[float, float] | None:
    """(step time, step time / the limit per step) of an implementation in a batch-1 case: its
    median call over the case's T steps."""
    limit = limit_step_s(record)
    if limit is None or entry.get("status") != "ok":
        return None
    step = entry["time"]["median"] / record["case"]["T"]
    return step, step / limit
