"""Claims B1-B2: is a GRU faster than an LSTM, and does it need less computation?

Every registered implementation that has both cells is timed with the bench's own timing
(`bench.speed.timing.time_group`: worker processes, warm-up until steady, repeats
interleaved), LSTM and GRU of the same implementation interleaved within one group so that
their ratio is taken under the same machine load. The ratio's 95% interval is
`bench.speed.stats.ratio_of_medians`; the FLOPs are `bench.speed.costs.flops`; the kernel
that ran is read off the output's autograd node
(`MkldnnRnnLayerBackward0` = oneDNN, `CudnnRnnBackward0` = cuDNN).

The grid is one base point and, around it, one size varied at a time (T, B, I, H), so every
dimension has its own curve without the cost of the full product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import impls
from bench.claims.experiment import (
    DEPENDS,
    NOT_SUPPORTED,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    table,
)
from bench.claims.structure import NOTE_002, NOTE_003
from bench.environment import usable_cores
from bench.speed.cases import BUILT_IN, Case, Timing
from bench.speed.costs import flops
from bench.speed.stats import ratio_of_medians, summarize
from bench.speed.timing import time_group
from bench.workload import kernel_label

DIMENSIONS = ("T", "B", "I", "H")
GRIDS = {
    "smoke": {"base": {"T": 6, "B": 2, "I": 8, "H": 16}, "vary": {}},
    "quick": {"base": {"T": 50, "B": 16, "I": 64, "H": 128},
              "vary": {"H": (32, 512)}},
    "default": {"base": {"T": 64, "B": 16, "I": 64, "H": 128},
                "vary": {"H": (32, 256, 512), "T": (16, 256), "B": (1, 64), "I": (16, 256)}},
}
TIMINGS = {
    "smoke": Timing(target_s=0.01, min_repeats=3, max_repeats=5, warmup_max_s=0.02,
                    budget_s=10.0, workers=1),
    "quick": Timing(target_s=0.1, min_repeats=5, max_repeats=30, warmup_max_s=0.2,
                    budget_s=15.0),
    "default": Timing(target_s=0.15, min_repeats=7, max_repeats=60, warmup_max_s=0.3,
                      budget_s=30.0),
}
MODES = ("inference", "training")
#: Timed at the base point only: the float64 oracle is written for reading, not speed (its
#: LSTM at H=512 takes seconds per call), so its ratio is shown once, not swept.
BASE_POINT_ONLY = frozenset({"reference"})


def grid_points(profile: str) -> list[dict]:
    """The base point, then each dimension's other values with the rest at the base."""
    grid = GRIDS[profile]
    points = [dict(grid["base"], varied="base")]
    for dim, values in grid["vary"].items():
        points += [dict(grid["base"], **{dim: v}, varied=dim) for v in values]
    return points


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
                if name in BASE_POINT_ONLY and point["varied"] != "base":
                    continue
                result = _measure_point(name, device, dtype, mode, point, timing)
                rows.append({"impl": name, "device": device, "dtype": dtype, "mode": mode,
                             **point, **result})
    return {"grid": {k: v if k == "base" else {d: list(s) for d, s in v.items()}
                     for k, v in GRIDS[profile].items()},
            "timing": timing.to_dict(), "threads": usable_cores(),
            "cuda": torch.cuda.is_available(), "rows": rows}


_MEASURED: dict[str, dict] = {}


def measure_once(profile: str) -> dict:
    """B1 and B2 read the same timings: measure once per process and profile."""
    if profile not in _MEASURED:
        _MEASURED[profile] = measure_speed(profile)
    return _MEASURED[profile]


def _ok(m: dict, mode: str | None = None) -> list[dict]:
    return [r for r in m["rows"] if r["status"] == "ok" and (mode is None or r["mode"] == mode)]


def _label(r: dict) -> str:
    return f"{r['impl']}" + (f" ({r['device']})" if r["device"] != "cpu" else "")


def _classify(rows: list[dict]) -> str:
    """faster: every case's 95% interval below 1; slower: every one above; else mixed."""
    if all(r["ratio_ci95"][1] < 1 for r in rows):
        return "faster"
    if all(r["ratio_ci95"][0] > 1 for r in rows):
        return "slower"
    return "mixed"


def _by_impl(m: dict, mode: str) -> dict[str, list[dict]]:
    out = {}
    for r in _ok(m, mode):
        out.setdefault(_label(r), []).append(r)
    return out


def _kernels(rows: list[dict]) -> str:
    lstm = sorted({r["lstm"]["kernel"] for r in rows})
    gru = sorted({r["gru"]["kernel"] for r in rows})
    return f"LSTM {', '.join(lstm)}; GRU {', '.join(gru)}"


def _ratio_range(rows: list[dict]) -> str:
    ratios = [r["ratio"] for r in rows]
    return f"{np.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"


def decide_b1(m: dict) -> Verdict:
    groups = _by_impl(m, "training")
    if not groups:
        return Verdict(DEPENDS, "no implementation could be timed in training")
    kinds = {impl: _classify(rows) for impl, rows in groups.items()}
    described = "; ".join(f"{impl}: GRU {kind}, GRU/LSTM {_ratio_range(groups[impl])} "
                          f"({_kernels(groups[impl])})" for impl, kind in kinds.items())
    flop_ratios = [r["flop_ratio"] for r in _ok(m, "training")]
    evidence = (f"training time GRU/LSTM, median [min, max] over the grid, against a FLOP "
                f"ratio of {min(flop_ratios):.3f}-{max(flop_ratios):.3f}: {described}")
    faster = [i for i, k in kinds.items() if k == "faster"]
    if len(faster) == len(kinds):
        return Verdict(SUPPORTED, "GRU is faster in every implementation and case; " + evidence)
    if all(k == "slower" for k in kinds.values()):
        return Verdict(NOT_SUPPORTED, evidence)
    named = {kind: [i for i, k in kinds.items() if k == kind]
             for kind in ("faster", "slower", "mixed")}
    return Verdict(DEPENDS, (
        "it depends on the implementation's kernels: "
        + "; ".join(f"GRU {label} with {', '.join(named[key])}"
                    for key, label in (("faster", "faster in every case"),
                                       ("slower", "slower in every case"),
                                       ("mixed", "neither faster nor slower in every case"))
                    if named[key])
        + f"; {evidence}"))


def summarize_b1(m: dict) -> str:
    lines = [
        f"Every registered implementation with both cells ({', '.join(sorted(BASE_POINT_ONLY))} "
        f"at the base point only); {m['threads']} torch thread(s); "
        f"CUDA {'present' if m['cuda'] else 'absent (no cuDNN rows)'}. Base point "
        f"{m['grid']['base']}, then one size varied at a time: {m['grid']['vary']}. Timing: "
        f"{m['timing']['min_repeats']}-{m['timing']['max_repeats']} interleaved repeats after "
        "warm-up; ratio = median GRU time / median LSTM time with its bootstrap 95% interval; "
        "FLOP ratio from the GEMM count (`bench.speed.costs.flops`). Kernel: the output's "
        "autograd node in a forward with autograd on (the same dispatch as the timed call; "
        "oneDNN = PyTorch's fused oneDNN RNN, a generic node = a loop of ATen ops).",
        "",
    ]
    for mode in MODES:
        rows = [[_label(r), r["varied"], r["T"], r["B"], r["I"], r["H"],
                 f"{r['lstm']['median'] * 1e3:.3g}", f"{r['gru']['median'] * 1e3:.3g}",
                 f"{r['ratio']:.3f} [{r['ratio_ci95'][0]:.3f}, {r['ratio_ci95'][1]:.3f}]",
                 f"{r['flop_ratio']:.3f}", r["lstm"]["kernel"], r["gru"]["kernel"]]
                for r in _ok(m, mode)]
        lines += [f"**{mode}**", "",
                  table(["implementation", "varied", "T", "B", "I", "H", "LSTM ms", "GRU ms",
                         "GRU/LSTM [95% CI]", "FLOP ratio", "LSTM kernel", "GRU kernel"], rows),
                  ""]
    failed = [r for r in m["rows"] if r["status"] != "ok"]
    if failed:
        lines += ["Not measured: " + "; ".join(
            f"{r['impl']} {r['mode']} {r['varied']} T={r['T']} H={r['H']}: {r['reason']}"
            for r in failed)]
    return "\n".join(lines)


def plot_b1(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    base = m["grid"]["base"]
    dims = [d for d in DIMENSIONS if d in m["grid"]["vary"]]
    panels = max(1, len(dims))
    fig, axes = plt.subplots(1, panels, figsize=(max(10.0, 4.2 * panels), 4.6),
                             squeeze=False, sharey=True)
    impl_labels = sorted({_label(r) for r in _ok(m)})
    colours = dict(zip(impl_labels, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, dim in zip(axes[0], dims or ["H"]):
        for label in impl_labels:
            for mode, style in (("training", "-"), ("inference", ":")):
                rows = [r for r in _ok(m, mode) if _label(r) == label
                        and r["varied"] in ("base", dim)]
                rows.sort(key=lambda r: r[dim])
                if not rows:
                    continue
                xs = [r[dim] for r in rows]
                ax.errorbar(xs, [r["ratio"] for r in rows],
                            yerr=[[r["ratio"] - r["ratio_ci95"][0] for r in rows],
                                  [r["ratio_ci95"][1] - r["ratio"] for r in rows]],
                            ls=style, marker="o", ms=3, color=colours[label],
                            label=f"{label} {mode}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.75, color="black", ls="--", lw=0.8, label="FLOP ratio 3/4")
        others = ", ".join(f"{d}={base[d]}" for d in DIMENSIONS if d != dim)
        ax.set(xscale="log", yscale="log", xlabel=dim, title=f"vary {dim} ({others})")
    axes[0][0].set_ylabel("time GRU / time LSTM")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(6, len(labels)))
    fig.suptitle("GRU/LSTM time ratio (solid: training, dotted: inference; bars: 95% CI)")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    path = directory / "B1_gru_lstm_time_ratio.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def decide_b2(m: dict) -> Verdict:
    rows = _ok(m)
    if not rows:
        return Verdict(DEPENDS, "nothing could be measured")
    flop_ratios = [r["flop_ratio"] for r in rows]
    per_flop = {impl: [r["ratio"] / r["flop_ratio"] for r in rs]
                for impl, rs in _by_impl(m, "training").items()}
    described = "; ".join(f"{impl} {np.median(v):.2f}" for impl, v in per_flop.items())
    evidence = (f"GEMM FLOPs GRU/LSTM {min(flop_ratios):.3f}-{max(flop_ratios):.3f} in all "
                f"{len(rows)} cases; measured time per FLOP GRU/LSTM in training (1 = time "
                f"follows the FLOPs), median over the grid: {described}")
    if all(f < 1 for f in flop_ratios):
        return Verdict(SUPPORTED, evidence)
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_b2(m: dict) -> str:
    rows = []
    for mode in MODES:
        for impl, rs in _by_impl(m, mode).items():
            per_flop = [r["ratio"] / r["flop_ratio"] for r in rs]
            rate = [r["gru"]["gflops"] / r["gru"]["median"] / (r["lstm"]["gflops"]
                                                             / r["lstm"]["median"]) for r in rs]
            rows.append([impl, mode, f"{np.median([r['flop_ratio'] for r in rs]):.3f}",
                         f"{np.median([r['ratio'] for r in rs]):.3f}",
                         f"{np.median(per_flop):.2f} [{min(per_flop):.2f}, {max(per_flop):.2f}]",
                         f"{np.median(rate):.2f}"])
    return "\n".join([
        "Per step and sequence, the GEMMs cost 2G H (I+H) FLOPs forward (G = 4 for LSTM, 3 "
        "for GRU), so GRU/LSTM = 3/4 exactly in inference and within 1e-2 of it in training "
        "(`bench.speed.costs.flops`). The elementwise work per unit is also smaller for the GRU "
        "(3 nonlinearities against 5). Measured on B1's grid (medians over the grid):", "",
        table(["implementation", "mode", "FLOP ratio", "time ratio",
               "time per FLOP GRU/LSTM [min, max]", "GFLOP/s GRU/LSTM"], rows),
    ])


def plot_b2(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    groups = {(impl, mode): rs for mode in MODES for impl, rs in _by_impl(m, mode).items()}
    labels = [f"{impl}\n{mode}" for impl, mode in groups]
    ax.boxplot([[r["ratio"] / r["flop_ratio"] for r in rs] for rs in groups.values()])
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.axhline(1.0, color="black", ls="--", lw=0.8, label="time follows FLOPs")
    ax.set(ylabel="(time GRU / time LSTM) / (FLOPs GRU / FLOPs LSTM)",
           title="Time per FLOP, GRU relative to LSTM, over B1's grid")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = directory / "B2_time_per_flop.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


CLAIMS = [
    Claim(
        id="B1", notes=(f"{NOTE_002} §3", f"{NOTE_002} §4.2"),
        statement="Training a GRU takes far less time than training an LSTM of the same size.",
        method=(
            "Every registered implementation that has both cells times its LSTM and its GRU "
            "interleaved in the same worker processes, forward only and forward plus "
            "backward, at a base point and with one of T, B, I, H varied at a time; the "
            "GRU/LSTM time ratio of medians, with a 95% interval paired by process, is set "
            "against the FLOP ratio 3/4. The kernel that ran is read off the output's "
            "autograd node and reported: on a CPU, PyTorch sends nn.LSTM to a fused oneDNN "
            "kernel but nn.GRU to a loop of ATen operations, which by itself can make the "
            "GRU the slower of the two."),
        anchors=(
            Anchor("MaximumEntropy, cudnn_rnn_theano_benchmarks (GitHub)", "cuDNN 5 on a "
                   "TITAN X: GRU/LSTM training time 0.99 at H=128 and 0.83 at H=512"),
        ),
        rule=("per implementation, over the grid, training mode: 'faster' if the GRU/LSTM "
              "time ratio's 95% interval lies below 1 in every case, 'slower' if above 1 in "
              "every case. Supported if every implementation is faster, not supported if "
              "every one is slower, depends otherwise (naming where it holds)."),
        measure=measure_once, decide=decide_b1, summarize=summarize_b1, plot=plot_b1,
        timed=True),
    Claim(
        id="B2", notes=(f"{NOTE_003} §GRU",),
        statement="Per step, an LSTM does more arithmetic than a GRU.",
        method=(
            "The GEMM FLOPs of one step of each cell, 2G H (I+H) per sequence forward (G = 4 "
            "for the LSTM, 3 for the GRU), counted over B1's grid in inference and training, "
            "with B1's measured time per FLOP shown beside them."),
        rule=("supported if the GEMM FLOP count of the GRU is below the LSTM's in every case "
              "of B1's grid (time per FLOP is reported beside it, not ruled on); not "
              "supported otherwise."),
        measure=measure_once, decide=decide_b2, summarize=summarize_b2, plot=plot_b2,
        timed=True),
]
