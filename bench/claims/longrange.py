"""Claims D1-D4: long-range dependencies, learned or not, by RNN, IRNN, LSTM and GRU.

All runs go through `bench.training.trainer` with the claims' one setting (`training.describe()`).
The budgets are minutes on a 2-core CPU, far below the papers' (Le et al. 2015 trained IRNNs
for over a million steps): a verdict here says what happens *within the stated budget*, and
the sequence lengths are chosen so that the budget separates the cells at all.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.claims import training
from bench.claims.experiment import (
    DEPENDS,
    NOT_SUPPORTED,
    NOTE_000,
    NOTE_001,
    NOTE_002,
    NOTE_003,
    NOTE_004,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    listed,
    table,
)
from bench.training.tasks import Task, make_task
from bench.training.trainer import matched_hidden_size, parameter_count

#: The four networks compared; IRNN is a ReLU RNN with identity W_hh and zero biases.
VARIANTS = {
    "rnn_tanh": {"cell": "rnn_tanh"},
    "irnn": {"cell": "rnn_relu", "irnn": True},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
}

#: The long-dependency sweep shared by C3, D1 and D2: hidden size, seeds, and per task the
#: lengths, the step budget and the task's parameters. The copy task is scaled down
#: (fewer, smaller symbols) so that a gated cell moves off the baseline within the budget.
SWEEP = {
    "smoke": {"H": 8, "seeds": (0,),
              "adding": {"T": (8,), "steps": 20, "params": {}},
              "copy": {"T": (5,), "steps": 20, "params": {"n_symbols": 2, "n_categories": 3}}},
    "quick": {"H": 32, "seeds": (0, 1),
              "adding": {"T": (20, 50), "steps": 600, "params": {}},
              "copy": {"T": (10,), "steps": 400, "params": {"n_symbols": 3, "n_categories": 4}}},
    "default": {"H": 32, "seeds": (0, 1, 2),
                "adding": {"T": (20, 50, 100), "steps": 1500, "params": {}},
                "copy": {"T": (10, 20), "steps": 1000,
                         "params": {"n_symbols": 3, "n_categories": 4}}},
}
#: "Learned the dependency": held-out loss clearly below the memoryless baseline (the copy
#: task does not get further within these budgets: LSTM H=32 reaches ~0.7 x baseline at
#: T=20 in 600 steps).
LEARNED_FRACTION = 0.75


def sweep_runs(profile: str, task_name: str, variants, hidden_sizes=None) -> list[dict]:
    """Train every (T, variant, seed) of the sweep; memoised, so C3 and D1 share runs.

    hidden_sizes: variant -> function(task) -> H, for parameter matching (default: the
    sweep's H for all).
    """
    s = SWEEP[profile]
    t = s[task_name]
    rows = []
    for T in t["T"]:
        task = make_task(task_name, T=T, **t["params"])
        for variant in variants:
            base = variant.removesuffix("_matched")
            H = hidden_sizes[variant](task) if hidden_sizes else s["H"]
            for seed in s["seeds"]:
                cfg = training.config(hidden_size=H, steps=t["steps"], seed=seed,
                                      stop_on_success=True, **VARIANTS[base])
                result = training.summary(training.run(task, cfg))
                rows.append({"variant": variant, "T": T, **result,
                             "relative_loss": result["final_loss"] / result["baseline_loss"],
                             "learned": result["final_loss"]
                             < LEARNED_FRACTION * result["baseline_loss"]})
    return rows


def learned_rate(rows, **match) -> float:
    chosen = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return sum(r["learned"] for r in chosen) / len(chosen) if chosen else math.nan


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def rate_table(rows: list[dict], variants) -> str:
    tasks = sorted({(r["task"]["task"], r["T"]) for r in rows})
    body = []
    for task, T in tasks:
        cells = []
        for v in variants:
            chosen = [r for r in rows if r["task"]["task"] == task and r["T"] == T
                      and r["variant"] == v]
            if not chosen:
                cells.append("-")
                continue
            learned = sum(r["learned"] for r in chosen)
            rel = _median([r["relative_loss"] for r in chosen])
            cells.append(f"{learned}/{len(chosen)} ({rel:.2f})")
        body.append([task, T, *cells])
    return table(["task", "T", *variants], body)


def plot_sweep(rows: list[dict], variants, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"]["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for v in variants:
            chosen = [r for r in rows if r["task"]["task"] == task and r["variant"] == v]
            Ts = sorted({r["T"] for r in chosen})
            med = [_median([r["relative_loss"] for r in chosen if r["T"] == T]) for T in Ts]
            line = ax.plot(Ts, med, marker="o", label=v)
            for r in chosen:
                ax.scatter(r["T"], r["relative_loss"], color=line[0].get_color(), s=10,
                           alpha=0.5)
        ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="memoryless baseline")
        ax.axhline(LEARNED_FRACTION, color="grey", ls=":", lw=0.8, label="'learned' line")
        ax.set(yscale="log", xlabel="T", ylabel="held-out loss / baseline", title=task)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _budget_line(m: dict) -> str:
    s = m["sweep"]
    parts = [f"{task}: T in {s[task]['T']}, {s[task]['steps']} steps"
             + (f", {s[task]['params']}" if s[task]["params"] else "")
             for task in ("adding", "copy")]
    return (f"H={s['H']}, seeds {s['seeds']}, {training.describe()}, stopping early once "
            f"the task's success rule holds; {'; '.join(parts)}. A cell shows 'learned/runs "
            f"(median held-out loss / memoryless baseline)'; learned = loss below "
            f"{LEARNED_FRACTION} x baseline.")


# -- D1 ------------------------------------------------------------------------------------

D1_VARIANTS = ("rnn_tanh", "irnn", "lstm", "gru")


def measure_d1(profile: str) -> dict:
    rows = [r for task in ("adding", "copy") for r in sweep_runs(profile, task, D1_VARIANTS)]
    return {"sweep": listed(SWEEP[profile]), "rows": rows}


def decide_d1(m: dict) -> Verdict:
    s = m["sweep"]
    longest = {task: max(s[task]["T"]) for task in ("adding", "copy")}
    rates = {(task, v): learned_rate(m["rows"], variant=v, T=T, task=_task_key(m, task, T))
             for task, T in longest.items() for v in D1_VARIANTS}
    described = "; ".join(f"{task} T={T}: " + ", ".join(
        f"{v} {rates[(task, v)]:.0%}" for v in D1_VARIANTS) for task, T in longest.items())
    misses = [f"{v} on {task}" for task in longest for v in ("lstm", "gru")
              if rates[(task, v)] < 0.5]
    any_gated = any(rates[(task, v)] >= 0.5 for task in longest for v in ("lstm", "gru"))
    plain_fails = all(rates[(task, "rnn_tanh")] == 0 for task in longest)
    irnn_tasks = [task for task in longest if rates[(task, "irnn")] >= 0.5]
    if not plain_fails or not any_gated:
        return Verdict(NOT_SUPPORTED, f"learned at the longest T: {described}")
    if not misses and not irnn_tasks:
        return Verdict(SUPPORTED, f"learned at the longest T: {described}")
    conditions = []
    if misses:
        conditions.append(f"within the step budget the gated cells miss: {', '.join(misses)}")
    if irnn_tasks:
        conditions.append(f"a plain ReLU RNN with identity init (IRNN) learns "
                          f"{', '.join(irnn_tasks)}: 'plain RNN' holds for the tanh RNN only")
    return Verdict(DEPENDS, "; ".join(conditions) + f" (learned at the longest T: {described})")


def _task_key(m, task, T):
    row = next(r for r in m["rows"] if r["task"]["task"] == task and r["T"] == T)
    return row["task"]


def summarize_d1(m: dict) -> str:
    return "\n".join([_budget_line(m), "", rate_table(m["rows"], D1_VARIANTS)])


def plot_d1(m: dict, directory: Path) -> list[Path]:
    return [plot_sweep(m["rows"], D1_VARIANTS, directory / "D1_long_dependencies.png",
                       "Held-out loss relative to the memoryless baseline, against T")]


# -- D2 ------------------------------------------------------------------------------------


def gru_matched_size(task: Task, lstm_hidden: int) -> int:
    """The GRU hidden size whose model has the parameter count of the LSTM model."""
    n = parameter_count("lstm", task.input_size, lstm_hidden, task.output_size)
    return matched_hidden_size("gru", task.input_size, task.output_size, n)


def measure_d2(profile: str) -> dict:
    H = SWEEP[profile]["H"]
    sizes = {"lstm": lambda task: H, "gru": lambda task: H,
             "gru_matched": lambda task: gru_matched_size(task, H)}
    rows = [r for task in ("adding", "copy")
            for r in sweep_runs(profile, task, ("lstm", "gru", "gru_matched"), sizes)]
    return {"sweep": listed(SWEEP[profile]), "rows": rows}


#: "About the same": learned-run counts within this many runs at every (task, T).
D2_MAX_RUN_GAP = 1


def _d2_gaps(m: dict, variant: str) -> list[tuple]:
    """(task, T, GRU rate - LSTM rate), NaN where neither learned in any seed."""
    gaps = []
    for task, T in sorted({(r["task"]["task"], r["T"]) for r in m["rows"]}):
        pick = {"task": _task_key(m, task, T), "T": T}
        gru, lstm = (learned_rate(m["rows"], variant=v, **pick) for v in (variant, "lstm"))
        gaps.append((task, T, math.nan if gru == lstm == 0 else gru - lstm))
    return gaps


def decide_d2(m: dict) -> Verdict:
    verdicts = {}
    for variant in ("gru", "gru_matched"):
        # Where neither learned, the budget compared nothing: leave those points out.
        gaps = [(task, T, g) for task, T, g in _d2_gaps(m, variant) if not math.isnan(g)]
        n = len(m["sweep"]["seeds"])
        verdicts[variant] = (all(abs(g) * n <= D2_MAX_RUN_GAP + 1e-9 for *_, g in gaps), gaps)
    if not any(gaps for _, gaps in verdicts.values()):
        return Verdict(DEPENDS, "neither cell learned any task within the budget, so their "
                       "accuracy could not be compared")
    described = "; ".join(
        f"{v}: " + ", ".join(f"{task} T={T} {g:+.0%}" for task, T, g in gaps)
        for v, (_, gaps) in verdicts.items())
    same = [v for v, (ok, _) in verdicts.items() if ok]
    evidence = f"learned-rate differences GRU - LSTM where either learned: {described}"
    if len(same) == 2:
        return Verdict(SUPPORTED, evidence)
    if same:
        return Verdict(DEPENDS, f"about the same only as {same[0]}; {evidence}")
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_d2(m: dict) -> str:
    steps = []
    for task, T in sorted({(r["task"]["task"], r["T"]) for r in m["rows"]}):
        row = [task, T]
        for v in ("lstm", "gru", "gru_matched"):
            chosen = [r for r in m["rows"] if r["task"]["task"] == task and r["T"] == T
                      and r["variant"] == v]
            reached = [r["steps_to_threshold"] for r in chosen if r["steps_to_threshold"]]
            row.append(f"{len(reached)}/{len(chosen)}, median "
                       f"{_median(reached):.0f}" if reached else f"0/{len(chosen)}")
        steps.append(row)
    matched = sorted({(r["task"]["task"], r["hidden_size"], r["n_parameters"])
                      for r in m["rows"] if r["variant"] != "gru"})
    return "\n".join([
        _budget_line(m) + " `gru_matched`: the GRU's H raised until its model has the "
        "LSTM's parameter count.", "",
        rate_table(m["rows"], ("lstm", "gru", "gru_matched")), "",
        "Runs meeting the task's own success rule, and the median steps they needed:", "",
        table(["task", "T", "lstm", "gru", "gru_matched"], steps), "",
        "Sizes: " + "; ".join(f"{t} H={h}: {n} parameters" for t, h, n in matched),
    ])


def plot_d2(m: dict, directory: Path) -> list[Path]:
    return [plot_sweep(m["rows"], ("lstm", "gru", "gru_matched"),
                       directory / "D2_gru_vs_lstm.png",
                       "GRU vs LSTM at equal H and at equal parameters")]


CLAIMS = [
    Claim(
        id="D1", notes=(f"{NOTE_001} §1", f"{NOTE_001} §2", f"{NOTE_000} §3",
                        f"{NOTE_002} §1.3", f"{NOTE_003} §LSTM", f"{NOTE_004} §summary 1"),
        statement=("Dependencies that span many steps are beyond a plain RNN's reach but "
                   "within an LSTM's, and a GRU's too."),
        method=("The tanh RNN, the IRNN, the LSTM and the GRU, at one hidden size, are "
                "trained on the adding problem and on the copy-memory task at increasing "
                "sequence lengths T, several seeds each, with the claims' one training "
                "setting and step budget; a run learned the dependency if its final held-out "
                "loss lies clearly below the loss of the best model that remembers nothing. "
                "The budget is minutes on a CPU, so a verdict holds within it."),
        rule=(f"per run, 'learned' = final held-out loss below {LEARNED_FRACTION} x the "
              "memoryless baseline. At the longest T of each task: not supported if the tanh "
              "RNN learns in any seed, or if neither gated cell learns any task in at least "
              "half the seeds; supported if the tanh RNN and the IRNN never learn and LSTM "
              "and GRU each learn in at least half on both tasks; depends otherwise (naming "
              "the gated cell and task missed within the budget, or the IRNN)."),
        anchors=(
            Anchor("Arjovsky, Shah & Bengio 2016", "adding problem (values from U[0,1], one "
                   "marked in each half, target their sum; predicting the mean gives MSE "
                   "1/6, about 0.167): with 128 units and RMSProp at 1e-3 the LSTM beat "
                   "that baseline up to T=400, the tanh RNN and the IRNN at no T from 100 to "
                   "750"),
            Anchor("Arjovsky, Shah & Bengio 2016", "copy memory (reproduce 10 symbols, "
                   "each one of 8 categories, after T blank steps and a delimiter): a model "
                   "that remembers nothing scores 10 ln 8 / (T+20) in cross-entropy, and the "
                   "LSTM did better than that only at T=100"),
            Anchor("Hochreiter & Schmidhuber 1997", "in their form of the adding problem "
                   "the LSTM solved T=100, 500 and 1000"),
        ),
        measure=measure_d1, decide=decide_d1, summarize=summarize_d1, plot=plot_d1),
    Claim(
        id="D2", notes=(f"{NOTE_002} §3", f"{NOTE_002} §4.2"),
        statement="A GRU ends up about as accurate as an LSTM.",
        method=("D1's GRU and LSTM runs compared seed for seed on both tasks and every T, "
                "once at equal hidden size and once with the GRU's hidden size raised until "
                "its parameter count matches the LSTM's; the comparison counts the seeds in "
                "which each cell learned."),
        rule=(f"for equal H and for equal parameter count separately: 'about the same' if "
              f"the numbers of seeds in which the GRU and the LSTM learned (as D1) differ by "
              f"at most {D2_MAX_RUN_GAP} at every task and T where either learned. Supported "
              "if both comparisons are about the same, depends if one is (or if neither cell "
              "learned anything), not supported if neither."),
        anchors=(
            Anchor("Chung, Gulcehre, Cho & Bengio 2014", "on polyphonic music and speech "
                   "signal modelling neither the GRU nor the LSTM came out clearly ahead"),
            Anchor("Jozefowicz, Zaremba & Sutskever 2015", "the GRU beat the LSTM on most of "
                   "their tasks but not on language modelling, and a forget-gate bias of 1 "
                   "closed most of the LSTM's gap"),
        ),
        measure=measure_d2, decide=decide_d2, summarize=summarize_d2, plot=plot_d2),
]
