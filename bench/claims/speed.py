"""Claims B1-B2: is a GRU faster than an LSTM, and does it need less computation?

Every registered implementation that has both cells is timed with the bench's own timing
(`bench.speed.timing.time_group`: worker processes, warm-up until steady, repeats
interleaved), LSTM and GRU of the same implementation interleaved within one group so that
their ratio is taken under the same machine load. The ratio's 95% interval is
`bench.speed.stats.ratio_of_medians`; the FLOPs are `bench.speed.costs.flops`; the kernel
that ran is read off the output's autograd node
(`MkldnnRnnLayerBackward0` = oneDNN, `CudnnRnnBackward0` = cuDNN).

The grid is one base point and, around it, one size varied at a time (T, B, I, H), so every
dimension has its own curve without the cost of the full product; one more point is the
shape the claims train at, where time per step turns the long-range sweep's steps to solve
(`bench.claims.longrange.sweep_records`) into time to solve.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

import impls
from bench.claims import longrange, training
from bench.claims.experiment import (
    DEPENDS,
    NOT_SUPPORTED,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    plain_log_labels,
    save_figure,
    table,
)
from bench.claims.intervals import fmt, fmt_rate, ratio_interval, wilson_interval
from bench.claims.structure import NOTE_002, NOTE_003
from bench.environment import usable_cores
from bench.speed.cases import BUILT_IN, Case, Timing
from bench.speed.costs import flops
from bench.speed.stats import ratio_of_medians, summarize
from bench.speed.timing import time_group
from bench.workload import kernel_label

DIMENSIONS = ("T", "B", "I", "H")
#: "training": the shape of the long-range sweep's adding runs (2 inputs, batch 32, the
#: sweep's H: 32, 128 in `full`), timed so that steps to solve become time to solve.
GRIDS = {
    "smoke": {"base": {"T": 6, "B": 2, "I": 8, "H": 16}, "vary": {},
              "training": {"T": 6, "B": 2, "I": 2, "H": 8}},
    "quick": {"base": {"T": 50, "B": 16, "I": 64, "H": 128},
              "vary": {"H": (32, 512)},
              "training": {"T": 50, "B": training.BATCH_SIZE, "I": 2, "H": 32}},
    "default": {"base": {"T": 64, "B": 16, "I": 64, "H": 128},
                "vary": {"H": (32, 512), "T": (16, 256), "B": (1, 64), "I": (16, 256)},
                "training": {"T": 50, "B": training.BATCH_SIZE, "I": 2, "H": 32}},
    "full": {"base": {"T": 64, "B": 16, "I": 64, "H": 128},
             "vary": {"H": (32, 256, 512, 1024), "T": (16, 256, 1024), "B": (1, 64, 256),
                      "I": (16, 256)},
             "training": {"T": 100, "B": training.BATCH_SIZE, "I": 2, "H": 128}},
}
TIMINGS = {
    "smoke": Timing(target_s=0.01, min_repeats=3, max_repeats=5, warmup_max_s=0.02,
                    budget_s=10.0, workers=1),
    "quick": Timing(target_s=0.1, min_repeats=5, max_repeats=30, warmup_max_s=0.2,
                    budget_s=15.0),
    "default": Timing(target_s=0.15, min_repeats=7, max_repeats=60, warmup_max_s=0.3,
                      budget_s=30.0),
    "full": Timing(target_s=0.3, min_repeats=10, max_repeats=100, warmup_max_s=0.5,
                   budget_s=60.0),
}
MODES = ("inference", "training")
#: Timed at the base point and the training shape only: the float64 oracle is written for
#: reading, not speed (its LSTM at H=512 takes seconds per call), so it is not swept.
BASE_POINT_ONLY = frozenset({"reference"})
#: "Much faster": the GRU takes at most 2/3 of the LSTM's time (1.5 times as fast), with the
#: 95% interval below it. The FLOP ratio, 3/4, cannot reach it by itself.
MUCH_FASTER = 2 / 3
FLOP_RATIO = 0.75
#: The sweep's models compared: equal hidden size, as the claim says "of the same size".
SWEEP_MODELS = ("gru", "lstm", "lstm_fb1")
SWEEP_KEYS = ("task", "T", "model", "sizing", "seed", "lr", "hidden_size",
              "steps_to_threshold", "steps_budget", "test_solved", "diverged")


def grid_points(profile: str) -> list[dict]:
    """The base point, each dimension's other values with the rest at the base, then the
    training shape."""
    grid = GRIDS[profile]
    points = [dict(grid["base"], varied="base")]
    for dim, values in grid["vary"].items():
        points += [dict(grid["base"], **{dim: v}, varied=dim) for v in values]
    return points + [dict(grid["training"], varied="training")]


def implementations() -> list[tuple[str, str, str]]:
    """(name, device, dtype) for every built-in implementation with both cells; float32 where
    it has it (the reference has only float64), CUDA too where a GPU is visible. The peers
    are measured by the bench (`--impl`), not here: their compiles would dominate a claim's
    time."""
    found = []
    for name in BUILT_IN:
        impl = impls.get(name)
        if not {"lstm", "gru"} <= impl.cells:
            continue
        dtype = "float32" if torch.float32 in impl.dtypes else "float64"
        for device in ("cpu", "cuda"):
            if impl.supports("lstm", device, getattr(torch, dtype)):
                found.append((name, device, dtype))
    return found


def _measure_point(name, device, dtype, mode, point, timing) -> dict:
    sizes = {d: point[d] for d in DIMENSIONS}
    cases = {cell: Case(cell, mode, dtype=dtype, device=device, threads=usable_cores(),
                        **sizes)
             for cell in ("lstm", "gru")}
    if mode == "training" and not impls.get(name).trainable:
        return {"status": "n/a", "reason": "not trainable"}
    timed = time_group({cell: (name, case) for cell, case in cases.items()}, timing)
    row = {"status": "ok", "flop_ratio": flops(cases["gru"]) / flops(cases["lstm"])}
    for cell, entry in timed.items():
        if entry["status"] != "ok":
            return {"status": "failed", "reason": f"{cell}: {entry['reason']}: "
                                                  f"{entry['message']}"}
        row[cell] = {**summarize(entry["samples_s"]), "kernel": kernel_label(
            entry["autograd_node"]), "gflops": flops(cases[cell]) / 1e9}
    ratio = ratio_of_medians(timed["gru"]["samples_s"], timed["lstm"]["samples_s"])
    row.update(ratio=ratio["ratio"], ratio_ci95=ratio["ci95"])
    return row


def measure_speed(profile: str) -> dict:
    timing = TIMINGS[profile]
    rows = []
    for name, device, dtype in implementations():
        for mode in MODES:
            for point in grid_points(profile):
                if name in BASE_POINT_ONLY and point["varied"] not in ("base", "training"):
                    continue
                result = _measure_point(name, device, dtype, mode, point, timing)
                rows.append({"impl": name, "device": device, "dtype": dtype, "mode": mode,
                             **point, **result})
    grid = GRIDS[profile]
    return {"grid": {"base": grid["base"], "training": grid["training"],
                     "vary": {d: list(v) for d, v in grid["vary"].items()}},
            "timing": timing.to_dict(), "threads": usable_cores(),
            "cuda": torch.cuda.is_available(), "rows": rows}


_MEASURED: dict[str, dict] = {}


def measure_once(profile: str) -> dict:
    """B1 and B2 read the same timings: measure once per process and profile."""
    if profile not in _MEASURED:
        _MEASURED[profile] = measure_speed(profile)
    return _MEASURED[profile]


def sweep_part(profile: str) -> dict:
    """The long-range sweep's runs of the GRU and the LSTMs at equal size, reduced to what
    steps to solve need."""
    records = [{k: r.get(k) for k in SWEEP_KEYS} for r in longrange.sweep_records(profile)
               if r["model"] in SWEEP_MODELS and r["sizing"] == "equal"]
    return {"status": "ok", "records": records}


def measure_b1(profile: str) -> dict:
    """The timings (shared with B2), then the sweep's steps to solve: the timing runs first,
    before anything the sweep may train in this process."""
    return {**measure_once(profile), "sweep": sweep_part(profile)}


def _ok(m: dict, mode: str | None = None) -> list[dict]:
    return [r for r in m["rows"] if r["status"] == "ok" and (mode is None or r["mode"] == mode)]


def _label(r: dict) -> str:
    return f"{r['impl']}" + (f" ({r['device']})" if r["device"] != "cpu" else "")


def _by_impl(m: dict, mode: str | None) -> dict[str, list[dict]]:
    out = {}
    for r in _ok(m, mode):
        out.setdefault(_label(r), []).append(r)
    return out


def _kernels(rows: list[dict]) -> str:
    lstm = sorted({r["lstm"]["kernel"] for r in rows})
    gru = sorted({r["gru"]["kernel"] for r in rows})
    return f"LSTM {', '.join(lstm)}; GRU {', '.join(gru)}"


def _kernel_kind(label: str) -> str:
    """The kernel with the cell's name taken out: the same kind for both cells when equal."""
    for name in ("LSTM", "GRU", "Lstm", "Gru", "lstm", "gru"):
        label = label.replace(name, "<cell>")
    return label


def same_kernel_kind(row: dict) -> bool:
    return _kernel_kind(row["lstm"]["kernel"]) == _kernel_kind(row["gru"]["kernel"])


def _case(r: dict) -> str:
    if r["varied"] in ("base", "training"):
        return r["varied"]
    return f"{r['varied']}={r[r['varied']]}"


def _ratio(r: dict) -> str:
    return f"{r['ratio']:.2f} [{r['ratio_ci95'][0]:.2f}, {r['ratio_ci95'][1]:.2f}]"


def _ratio_range(rows: list[dict]) -> str:
    ratios = [r["ratio"] for r in rows]
    return f"{np.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"


def against_much_faster(ci: list[float] | None) -> str:
    """'much faster' if a GRU/LSTM time interval lies below MUCH_FASTER, 'not much faster'
    if above it, 'undecided' if it holds it (or there is no interval)."""
    if ci is None:
        return "undecided"
    if ci[1] < MUCH_FASTER:
        return "much faster"
    if ci[0] > MUCH_FASTER:
        return "not much faster"
    return "undecided"


def _overall(kinds: list[str]) -> str:
    if kinds and all(k == "much faster" for k in kinds):
        return "much faster"
    if kinds and all(k == "not much faster" for k in kinds):
        return "not much faster"
    return "mixed"


# -- steps to solve (B1) ---------------------------------------------------------------------


def steps_points(m: dict) -> list[dict]:
    """Per (task, T) of the sweep: solve rates (Wilson) of each model, and the GRU/LSTM
    ratio of median steps to solve over the runs that solved (both resampled
    independently), where both solved at least once."""
    sweep = m.get("sweep", {})
    if sweep.get("status") != "ok":
        return []
    records = sweep["records"]
    points = []
    for task, T in sorted({(r["task"], r["T"]) for r in records}):
        runs = {model: [r for r in records if (r["task"], r["T"], r["model"]) == (task, T, model)]
                for model in SWEEP_MODELS}
        if not runs["gru"] or not runs["lstm"]:
            continue
        point = {"task": task, "T": T, "budget": max(r["steps_budget"] for r in records
                                                     if (r["task"], r["T"]) == (task, T))}
        steps = {}
        for model, rs in runs.items():
            if not rs:
                continue
            # A run that met the rule at its first evaluation counts as one step.
            steps[model] = [max(1, r["steps_to_threshold"]) for r in rs
                            if r["steps_to_threshold"] is not None]
            point[model] = {"rate": wilson_interval(len(steps[model]), len(rs)),
                            "median_steps": float(np.median(steps[model])) if steps[model]
                            else None}
        point["steps"] = (ratio_interval(steps["gru"], steps["lstm"])
                          if steps["gru"] and steps["lstm"] else None)
        points.append(point)
    return points


def _training_row(m: dict, impl: str) -> dict | None:
    rows = [r for r in _by_impl(m, "training").get(impl, []) if r["varied"] == "training"]
    return rows[0] if rows else None


def time_to_solve(point: dict, step_row: dict) -> dict:
    """GRU/LSTM time to solve = steps ratio x time-per-step ratio; its interval multiplies
    the two 95% intervals' bounds (independent measurements: at least 90% coverage)."""
    steps = point["steps"]
    ratio = steps["ratio"] * step_row["ratio"]
    ci = None if steps["ci95"] is None else [steps["ci95"][0] * step_row["ratio_ci95"][0],
                                             steps["ci95"][1] * step_row["ratio_ci95"][1]]
    log_steps, log_step = abs(math.log(steps["ratio"])), abs(math.log(step_row["ratio"]))
    return {"ratio": ratio, "ci95": ci,
            "decided_by": "steps to solve" if log_steps >= log_step else "time per step"}


def _point_name(p: dict) -> str:
    return f"{p['task']} T={p['T']}"


def _steps_evidence(points: list[dict]) -> str:
    parts = []
    for p in points:
        rates = f"solved GRU {fmt_rate(p['gru']['rate'])}, LSTM {fmt_rate(p['lstm']['rate'])}"
        if p["steps"] is None:
            parts.append(f"{_point_name(p)}: {rates}, no steps ratio")
        else:
            parts.append(f"{_point_name(p)}: steps GRU/LSTM {fmt(p['steps'], 'ratio')} "
                         f"({rates})")
    return "; ".join(parts)


def decide_b1(m: dict) -> Verdict:
    groups = _by_impl(m, "training")
    if not groups:
        return Verdict(DEPENDS, "no implementation could be timed in training")
    points = [p for p in steps_points(m) if p["steps"] is not None]
    kinds, described = {}, []
    for impl, rows in groups.items():
        step_row = _training_row(m, impl)
        kernels = _kernels(rows)
        if points and step_row is not None:
            solved = [(p, time_to_solve(p, step_row)) for p in points]
            kinds[impl] = _overall([against_much_faster(t["ci95"]) for _, t in solved])
            described.append(
                f"{impl}: {kinds[impl]}; time to solve GRU/LSTM "
                + ", ".join(f"{_point_name(p)} {fmt(t, 'ratio')} (decided by "
                            f"{t['decided_by']})" for p, t in solved)
                + f", from time per step {_ratio(step_row)} at the training shape ({kernels})")
        else:
            kinds[impl] = _overall([against_much_faster(r["ratio_ci95"]) for r in rows])
            described.append(f"{impl}: {kinds[impl]} per step, GRU/LSTM {_ratio_range(rows)} "
                             f"median [min, max] over the grid ({kernels})")
    if points:
        part = ("time to solve = steps to solve (the long-range sweep, equal H) x time per "
                f"step; steps: {_steps_evidence(steps_points(m))}")
    else:
        sweep = m.get("sweep", {})
        why = (sweep.get("reason", "no sweep measured") if sweep.get("status") != "ok" else
               "no task and length that both the GRU and the LSTM solved")
        part = f"time per step alone decides ({why})"
    evidence = (f"'much faster' = GRU/LSTM time below {MUCH_FASTER:.3g} with its interval; "
                f"{part}; " + "; ".join(described))
    named = {kind: [i for i, k in kinds.items() if k == kind]
             for kind in ("much faster", "not much faster", "mixed")}
    if len(named["much faster"]) == len(kinds):
        return Verdict(SUPPORTED, "the GRU is much faster in every implementation; " + evidence)
    if len(named["not much faster"]) == len(kinds):
        return Verdict(NOT_SUPPORTED, "in no implementation is the GRU much faster; "
                       + evidence)
    return Verdict(DEPENDS, (
        "it depends on the implementation's kernels: "
        + "; ".join(f"GRU {label} with {', '.join(named[key])}"
                    for key, label in (("much faster", "much faster everywhere"),
                                       ("not much faster", "not much faster anywhere"),
                                       ("mixed", "much faster in some cases only, or "
                                                 "undecided"))
                    if named[key])
        + f"; {evidence}"))


def _at_h(rows: list[dict], H: int) -> dict | None:
    found = [r for r in rows if r["H"] == H and r["varied"] in ("base", "H")]
    return found[0] if found else None


def against_b1(m: dict) -> str:
    lines = []
    for impl, rows in _by_impl(m, "training").items():
        at = {H: _at_h(rows, H) for H in (128, 512)}
        shown = ", ".join(f"{r['ratio']:.2f} at H={H}" for H, r in at.items() if r)
        same = all(same_kernel_kind(r) for r in rows)
        kernels = "same kind of kernel for both cells" if same else _kernels(rows)
        if shown:
            lines.append(f"{impl} {shown} ({kernels})")
    ours = "; ".join(lines) if lines else "no implementation timed at H=128 or 512"
    points = [p for p in steps_points(m) if p["steps"] is not None]
    steps = (f" Steps to solve, which the benchmark does not measure, are ours alone: "
             f"{_steps_evidence(points)}." if points else "")
    return (f"cuDNN 5 on a TITAN X (MaximumEntropy/cudnn_rnn_theano_benchmarks) measured a "
            f"GRU/LSTM training time per step of 0.99 at H=128 and 0.83 at H=512, against a "
            f"FLOP ratio of {FLOP_RATIO}: ours per step (training, the grid's other sizes at "
            f"the base) are {ours}. Where both cells run the same kind of kernel we agree in "
            f"direction: the ratio falls towards 3/4 as H grows and the GEMMs dominate; a "
            f"kernel fused for one cell only (oneDNN for the LSTM on a CPU) reverses it. Per "
            f"step neither the anchor nor a same-kernel implementation comes near "
            f"{MUCH_FASTER:.3g}, so a 'much faster' GRU can only come from fewer steps."
            + steps)


def summarize_b1(m: dict) -> str:
    lines = [
        f"Every registered implementation with both cells ({', '.join(sorted(BASE_POINT_ONLY))} "
        f"at the base point and the training shape only); {m['threads']} torch thread(s); "
        f"CUDA {'present' if m['cuda'] else 'absent (no cuDNN rows)'}. Base point "
        f"{m['grid']['base']}, then one size varied at a time: {m['grid']['vary']}; the "
        f"training shape {m['grid']['training']} (the long-range sweep's runs). Timing: "
        f"{m['timing']['min_repeats']}-{m['timing']['max_repeats']} interleaved repeats after "
        "warm-up; ratio = median GRU time / median LSTM time with its bootstrap 95% interval; "
        "FLOP ratio from the GEMM count (`bench.speed.costs.flops`). Kernel: the output's "
        "autograd node in a forward with autograd on (the same dispatch as the timed call; "
        "oneDNN = PyTorch's fused oneDNN RNN, a generic node = a loop of ATen ops).",
        "",
    ]
    for mode in MODES:
        rows = [[_label(r), _case(r), r["T"], r["B"], r["I"], r["H"],
                 f"{r['lstm']['median'] * 1e3:.3g}", f"{r['gru']['median'] * 1e3:.3g}",
                 _ratio(r), f"{r['flop_ratio']:.3f}", r["lstm"]["kernel"], r["gru"]["kernel"]]
                for r in _ok(m, mode)]
        lines += [f"**{mode}**", "",
                  table(["implementation", "case", "T", "B", "I", "H", "LSTM ms", "GRU ms",
                         "GRU/LSTM [95% CI]", "FLOP ratio", "LSTM kernel", "GRU kernel"], rows),
                  ""]
    failed = [r for r in m["rows"] if r["status"] != "ok"]
    if failed:
        lines += ["Not measured: " + "; ".join(
            f"{r['impl']} {r['mode']} {_case(r)} T={r['T']} H={r['H']}: {r['reason']}"
            for r in failed), ""]
    sweep = m.get("sweep", {"status": "absent", "reason": "not measured"})
    if sweep["status"] != "ok":
        lines += [f"**Steps to solve:** absent: {sweep['reason']}."]
        return "\n".join(lines)
    points = steps_points(m)
    rows = []
    for p in points:
        row = [p["task"], p["T"], p["budget"]]
        for model in SWEEP_MODELS:
            entry = p.get(model)
            row += ["-", "-"] if entry is None else [
                fmt_rate(entry["rate"]),
                "-" if entry["median_steps"] is None else f"{entry['median_steps']:.0f}"]
        row.append("n/a" if p["steps"] is None else fmt(p["steps"], "ratio"))
        rows.append(row)
    sizes = sorted({r["hidden_size"] for r in sweep["records"] if r.get("hidden_size")})
    lines += [
        f"**Steps to solve** (the long-range sweep, equal H = {sizes or 'n/a'}, stopping at "
        f"the task's success rule on the validation set; {len(sweep['records'])} runs): solve "
        f"rate with its Wilson 95% interval and median steps of the runs that solved; GRU/LSTM "
        f"ratio of median steps with a bootstrap 95% interval (each model's solved runs "
        f"resampled on their own).", "",
        table(["task", "T", "budget", "GRU solved", "GRU steps", "LSTM solved", "LSTM steps",
               "LSTM fb=1 solved", "LSTM fb=1 steps", "steps GRU/LSTM [95% CI]"], rows), ""]
    solved = [p for p in points if p["steps"] is not None]
    timed = [(impl, _training_row(m, impl)) for impl in _by_impl(m, "training")]
    timed = [(impl, row) for impl, row in timed if row is not None]
    if solved and timed:
        lines += [
            "**Time to solve**, GRU/LSTM = steps ratio x the implementation's time-per-step "
            f"ratio at the training shape {m['grid']['training']}, the two intervals' bounds "
            "multiplied:", "",
            table(["implementation", "time per step GRU/LSTM",
                   *[_point_name(p) for p in solved]],
                  [[impl, _ratio(row), *[fmt(time_to_solve(p, row), "ratio") for p in solved]]
                   for impl, row in timed])]
    return "\n".join(lines)


#: Marker per grid case kind, so that one implementation's cases read apart in a strip.
_MARKERS = {"base": "o", "H": "^", "T": "s", "B": "D", "I": "v", "training": "*"}


def _strip(ax, groups: dict[str, list[dict]], order: list[str], value, hollow=None):
    """Each implementation's cases side by side around its tick, in the grid's order."""
    seen = set()
    for x, impl in enumerate(order):
        rows = sorted(groups.get(impl, []), key=lambda r: (list(_MARKERS).index(r["varied"]),
                                                           r[r["varied"]] if r["varied"]
                                                           in DIMENSIONS else 0))
        for k, r in enumerate(rows):
            dx = (k - (len(rows) - 1) / 2) * (0.7 / max(1, len(rows)))
            y, low, high = value(r)
            colour = f"C{list(_MARKERS).index(r['varied'])}"
            label = None if r["varied"] in seen else r["varied"]
            seen.add(r["varied"])
            ax.errorbar([x + dx], [y], yerr=[[y - low], [high - y]], fmt=_MARKERS[r["varied"]],
                        ms=5, color=colour, label=label,
                        mfc="none" if hollow and hollow(r) else colour)
    ax.set_xticks(range(len(order)), order, fontsize=8)


def _case_legend(fig, ax, m: dict) -> None:
    """One legend under the panels, naming each kind of case with its sizes."""
    handles, labels = ax.get_legend_handles_labels()
    names = {"base": f"base {m['grid']['base']}", "training": f"training shape "
             f"{m['grid']['training']}",
             **{d: f"{d} varied: {', '.join(map(str, v))} (left to right)"
                for d, v in m["grid"]["vary"].items()}}
    fig.legend(handles, [names.get(lab, lab) for lab in labels], fontsize=7,
               loc="lower center", ncol=3)


def plot_b1(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    order = sorted({_label(r) for r in _ok(m)})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, mode in zip(axes, ("training", "inference")):
        _strip(ax, _by_impl(m, mode), order,
               lambda r: (r["ratio"], r["ratio_ci95"][0], r["ratio_ci95"][1]))
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(FLOP_RATIO, color="black", ls="--", lw=0.8, label="FLOP ratio 3/4")
        ax.axhline(MUCH_FASTER, color="red", ls=":", lw=1.0, label="'much faster' 2/3")
        ax.set(yscale="log", title=mode)
        plain_log_labels(ax)
    axes[0].set_ylabel("time per step, GRU / LSTM (95% CI)")
    _case_legend(fig, axes[0], m)
    fig.suptitle("GRU/LSTM time per step, every case of the grid per implementation")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    paths = [directory / "B1_gru_lstm_time_ratio.png"]
    save_figure(fig, paths[0])
    points = [p for p in steps_points(m) if p["steps"] is not None]
    if points:
        paths.append(_plot_time_to_solve(m, points, directory / "B1_time_to_solve.png"))
    return paths


def _plot_time_to_solve(m: dict, points: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    impls_ = [i for i in sorted(_by_impl(m, "training")) if _training_row(m, i)]
    series = [("steps to solve", None)] + [(f"time to solve, {i}", i) for i in impls_]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(points) + 3), 4.5))
    for k, (name, impl) in enumerate(series):
        dx = (k - (len(series) - 1) / 2) * (0.7 / len(series))
        for x, p in enumerate(points):
            value = p["steps"] if impl is None else time_to_solve(p, _training_row(m, impl))
            ci = value["ci95"] or [value["ratio"], value["ratio"]]
            ax.errorbar([x + dx], [value["ratio"]], yerr=[[value["ratio"] - ci[0]],
                                                          [ci[1] - value["ratio"]]],
                        fmt="o" if impl is None else "s", color="black" if impl is None
                        else f"C{k}", ms=5, label=name if x == 0 else None)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(MUCH_FASTER, color="red", ls=":", lw=1.0, label="'much faster' 2/3")
    ax.set_xticks(range(len(points)), [_point_name(p) for p in points], fontsize=8)
    ax.set(yscale="log", ylabel="GRU / LSTM (95% CI)",
           title="Steps and time to solve, GRU relative to LSTM (equal H)")
    plain_log_labels(ax)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return path


# -- B2 ---------------------------------------------------------------------------------------


def _b2_classes(m: dict) -> dict[str, dict]:
    """Per implementation that runs the same kind of kernel for both cells, over both modes:
    'follows' if the GRU takes less time in every case (interval below 1), 'contradicts' if
    more in every case (interval above 1), 'partly' otherwise, with the cases against."""
    out = {}
    for impl, rows in _by_impl(m, None).items():
        if not all(same_kernel_kind(r) for r in rows):
            continue
        slower = [r for r in rows if r["ratio_ci95"][0] > 1]
        unclear = [r for r in rows if r["ratio_ci95"][1] >= 1 and r["ratio_ci95"][0] <= 1]
        if not slower and not unclear:
            kind = "follows"
        elif len(slower) == len(rows):
            kind = "contradicts"
        else:
            kind = "partly"
        out[impl] = {"kind": kind, "slower": [f"{r['mode']} {_case(r)}" for r in slower],
                     "unclear": [f"{r['mode']} {_case(r)}" for r in unclear]}
    return out


def decide_b2(m: dict) -> Verdict:
    rows = _ok(m)
    if not rows:
        return Verdict(DEPENDS, "nothing could be measured")
    flop_ratios = [r["flop_ratio"] for r in rows]
    counted = (f"GEMM FLOPs GRU/LSTM {min(flop_ratios):.3f}-{max(flop_ratios):.3f} in all "
               f"{len(rows)} cases")
    if any(f >= 1 for f in flop_ratios):
        return Verdict(NOT_SUPPORTED, counted + ": the GRU's count is not below the LSTM's "
                       "everywhere")
    classes = _b2_classes(m)
    others = sorted(set(_by_impl(m, None)) - set(classes))
    excluded = (f"; left out, since their two cells run different kernels: "
                f"{', '.join(others)}" if others else "")
    if not classes:
        return Verdict(DEPENDS, counted + "; but no implementation runs the same kind of "
                       "kernel for both cells, so measured time cannot check it" + excluded)
    described = "; ".join(
        f"{impl}: {c['kind']}" + (f" (GRU slower: {', '.join(c['slower'])})" if c["slower"]
                                  else "")
        + (f" (no difference: {', '.join(c['unclear'])})" if c["unclear"] else "")
        for impl, c in classes.items())
    evidence = (f"{counted}; measured GRU/LSTM time, both modes, over B1's grid, in the "
                f"implementations with the same kind of kernel for both cells: {described}"
                + excluded)
    kinds = [c["kind"] for c in classes.values()]
    if all(k == "follows" for k in kinds):
        return Verdict(SUPPORTED, "fewer FLOPs and less time in every case; " + evidence)
    if all(k == "contradicts" for k in kinds):
        return Verdict(NOT_SUPPORTED, "fewer FLOPs, but the GRU takes more time in every "
                       "case; " + evidence)
    return Verdict(DEPENDS, "fewer FLOPs everywhere, but measured time does not follow them "
                   "in every case: " + evidence)


def against_b2(m: dict) -> str:
    classes = _b2_classes(m)
    found = []
    for impl in classes:
        rows = _by_impl(m, "training").get(impl, [])
        at = {H: _at_h(rows, H) for H in (128, 512)}
        if all(at.values()):
            found.append((impl, at[128]["ratio"], at[512]["ratio"]))
    if not found:
        ours = ("no implementation with the same kind of kernel for both cells was timed at "
                "both H=128 and H=512, so there is nothing to set beside it")
    else:
        falling = [impl for impl, a, b in found if b < a]
        ours = ("ours, training, same kind of kernel for both cells: "
                + "; ".join(f"{impl} {a:.2f} at H=128, {b:.2f} at H=512" for impl, a, b in found)
                + (f". Like cuDNN, time follows the FLOP count more closely at the larger H in "
                   f"{', '.join(falling)}" if falling else ". Unlike cuDNN, none comes closer "
                   "to the FLOP count at the larger H")
                + "; at small sizes fixed per-call costs, not arithmetic, set the time")
    return ("The FLOP count is exact, so the literature can only be set beside the measured "
            "time: cuDNN 5 on a TITAN X (MaximumEntropy/cudnn_rnn_theano_benchmarks) took "
            "0.99 of the LSTM's training time for the GRU at H=128 and 0.83 at H=512, against "
            f"a FLOP ratio of {FLOP_RATIO} (time per FLOP 1.32 and 1.11 times the LSTM's); "
            + ours + ".")


def summarize_b2(m: dict) -> str:
    classes = _b2_classes(m)
    rows = []
    for mode in MODES:
        for impl, rs in _by_impl(m, mode).items():
            per_flop = [r["ratio"] / r["flop_ratio"] for r in rs]
            rows.append([impl, mode, "yes" if impl in classes else "no",
                         f"{np.median([r['flop_ratio'] for r in rs]):.3f}",
                         _ratio_range(rs),
                         f"{np.median(per_flop):.2f} [{min(per_flop):.2f}, {max(per_flop):.2f}]",
                         sum(r["ratio_ci95"][0] > 1 for r in rs), len(rs)])
    return "\n".join([
        "Per step and sequence, the GEMMs cost 2G H (I+H) FLOPs forward (G = 4 for LSTM, 3 "
        "for GRU), so GRU/LSTM = 3/4 exactly in inference and within 1e-2 of it in training "
        "(`bench.speed.costs.flops`). The elementwise work per unit is also smaller for the GRU "
        "(3 nonlinearities against 5). Measured on B1's grid; 'same kernel kind' = the two "
        "cells' outputs come from the same kind of autograd node (a fused kernel for one cell "
        "only measures the kernels, not the work):", "",
        table(["implementation", "mode", "same kernel kind", "FLOP ratio",
               "time GRU/LSTM median [min, max]", "time per FLOP GRU/LSTM [min, max]",
               "cases GRU slower (CI > 1)", "cases"], rows),
    ])


def plot_b2(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    order = sorted({_label(r) for r in _ok(m)})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, mode in zip(axes, ("training", "inference")):
        _strip(ax, _by_impl(m, mode), order,
               lambda r: (r["ratio"] / r["flop_ratio"], r["ratio_ci95"][0] / r["flop_ratio"],
                          r["ratio_ci95"][1] / r["flop_ratio"]),
               hollow=lambda r: not same_kernel_kind(r))
        ax.axhline(1.0, color="black", ls="--", lw=0.8, label="time follows FLOPs")
        ax.axhline(1 / FLOP_RATIO, color="grey", ls=":", lw=1.0,
                   label="equal time (GRU/LSTM = 1)")
        ax.set(yscale="log", title=mode)
        plain_log_labels(ax)
    axes[0].set_ylabel("(time GRU / LSTM) / (FLOPs GRU / LSTM), 95% CI")
    _case_legend(fig, axes[0], m)
    fig.suptitle("Time per FLOP, GRU relative to LSTM (hollow: different kernels for the "
                 "two cells)")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    path = directory / "B2_time_per_flop.png"
    save_figure(fig, path)
    return [path]


CUDNN_ANCHOR = Anchor("MaximumEntropy, cudnn_rnn_theano_benchmarks (GitHub)", "cuDNN 5 on a "
                      "TITAN X: GRU/LSTM training time 0.99 at H=128 and 0.83 at H=512")

CLAIMS = [
    Claim(
        id="B1", notes=(f"{NOTE_002} §3", f"{NOTE_002} §4.2"),
        statement=("Training a GRU takes far less time than training an LSTM of the same "
                   "size: per step and in steps to a solution."),
        method=(
            "Every registered implementation that has both cells times its LSTM and its GRU "
            "interleaved in the same worker processes, forward only and forward plus "
            "backward, at a base point, with one of T, B, I, H varied at a time, and at the "
            "shape the claims train at; the GRU/LSTM time ratio of medians, with a 95% "
            "interval paired by process, is set against the FLOP ratio 3/4. The kernel that "
            "ran is read off the output's autograd node and reported: on a CPU, PyTorch "
            "sends nn.LSTM to a fused oneDNN kernel but nn.GRU to a loop of ATen operations, "
            "which by itself can make the GRU the slower of the two. Steps to solve come "
            "from the long-range sweep (D1's tasks and lengths, equal H, several seeds, "
            "learning rate chosen per model and task): the GRU/LSTM ratio of median steps "
            "of the runs that solved, times the time-per-step ratio at the training shape, "
            "is the time to solve."),
        anchors=(CUDNN_ANCHOR,),
        rule=(f"'much faster' means GRU/LSTM training time below {MUCH_FASTER:.3g} (1.5 times "
              "as fast) with its 95% interval. Per implementation: where the long-range sweep "
              "gives steps to solve (a task and length both models solved in some seed), "
              "time to solve = GRU/LSTM median steps of the solved runs (bootstrap interval) "
              "x the time-per-step ratio at the training shape, intervals' bounds "
              "multiplied, at every such task and length; otherwise time per step at every "
              "case of the grid. The implementation is 'much faster' if every interval lies "
              f"below {MUCH_FASTER:.3g}, 'not much faster' if every one lies above it. "
              "Supported if every implementation is much faster, not supported if every one "
              "is not, depends otherwise (naming which, and whether steps or time per step "
              "decided)."),
        measure=measure_b1, decide=decide_b1, summarize=summarize_b1, plot=plot_b1,
        against=against_b1, timed=True),
    Claim(
        id="B2", notes=(f"{NOTE_003} §GRU",),
        statement="Per step, an LSTM does more arithmetic than a GRU.",
        method=(
            "The GEMM FLOPs of one step of each cell, 2G H (I+H) per sequence forward (G = 4 "
            "for the LSTM, 3 for the GRU), counted over B1's grid in inference and training, "
            "and held against B1's measured times in the implementations whose two cells "
            "run the same kind of kernel (where one cell has a fused kernel and the other "
            "not, time measures the kernels, not the work)."),
        rule=("not supported if the GRU's GEMM FLOP count is not below the LSTM's in some "
              "case of B1's grid. Otherwise, in each implementation whose two cells run the "
              "same kind of kernel, over both modes and every case: 'follows' if the GRU/LSTM "
              "time's 95% interval lies below 1 everywhere, 'contradicts' if above 1 "
              "everywhere. Supported if every such implementation follows, not supported if "
              "every one contradicts, depends otherwise (naming the cases against) or when "
              "no implementation runs the same kind of kernel for both."),
        anchors=(CUDNN_ANCHOR,),
        measure=measure_once, decide=decide_b2, summarize=summarize_b2, plot=plot_b2,
        against=against_b2, timed=True),
]
