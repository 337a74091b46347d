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
import torch

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
    table,
)
from bench.training.tasks import Batch, Task, make_task
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


def listed(settings: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else listed(v) if isinstance(v, dict) else v)
            for k, v in settings.items()}


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


# -- D3: data size -------------------------------------------------------------------------

DATA_SIZES = {
    "smoke": {"T": 8, "H": 8, "sizes": (20, 60), "steps": 20, "seeds": (0,), "test": 200},
    "quick": {"T": 20, "H": 32, "sizes": (100, 1000), "steps": 300, "seeds": (0, 1),
              "test": 1000},
    "default": {"T": 20, "H": 32, "sizes": (100, 300, 1000), "steps": 400,
                "seeds": (0, 1, 2), "test": 2000},
}
TEST_SEED = 7_777


def measure_d3(profile: str) -> dict:
    s = DATA_SIZES[profile]
    task = make_task("adding", T=s["T"])
    fresh = task.sample(s["test"], torch.Generator().manual_seed(TEST_SEED))
    rows = []
    for size in s["sizes"]:
        for cell in ("lstm", "gru"):
            for seed in s["seeds"]:
                finite = training.FiniteTrainingSet(task, size, seed=1_000 + seed)
                cfg = training.config(cell, s["H"], steps=s["steps"], seed=seed)
                result, model = training.train_and_keep(finite, cfg)
                held_out = training.evaluate(model, task, fresh)
                rows.append({"cell": cell, "train_size": size, "seed": seed,
                             "train_loss": result.final["loss"],
                             "held_out_loss": held_out["loss"],
                             "diverged": result.diverged})
    return {"settings": listed(s), "baseline": task.baseline_loss(), "rows": rows}


def _paired(m, size):
    by = {}
    for r in m["rows"]:
        if r["train_size"] == size:
            by.setdefault(r["seed"], {})[r["cell"]] = r["held_out_loss"]
    return [(v["gru"], v["lstm"]) for v in by.values()]


def decide_d3(m: dict) -> Verdict:
    sizes = m["settings"]["sizes"]
    small, large = _paired(m, min(sizes)), _paired(m, max(sizes))
    gru_less_data = all(g < l for g, l in small)
    lstm_more_data = all(l < g for g, l in large)
    evidence = (f"held-out MSE GRU vs LSTM by seed at {min(sizes)} sequences: "
                + ", ".join(f"{g:.3g} vs {l:.3g}" for g, l in small)
                + f"; at {max(sizes)}: " + ", ".join(f"{g:.3g} vs {l:.3g}" for g, l in large))
    if gru_less_data and lstm_more_data:
        return Verdict(SUPPORTED, evidence)
    if gru_less_data:
        return Verdict(DEPENDS, "GRU is better with little data, but LSTM does not overtake "
                       "it with the most data tested; " + evidence)
    if lstm_more_data:
        return Verdict(DEPENDS, "LSTM is better with the most data, but GRU is not better "
                       "with little data; " + evidence)
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_d3(m: dict) -> str:
    s = m["settings"]
    rows = []
    for size in s["sizes"]:
        row = [size]
        for cell in ("lstm", "gru"):
            chosen = [r for r in m["rows"] if r["train_size"] == size and r["cell"] == cell]
            row += [_median([r["train_loss"] for r in chosen]),
                    _median([r["held_out_loss"] for r in chosen])]
        rows.append(row)
    return "\n".join([
        f"Adding task T={s['T']} (baseline MSE {m['baseline']:.3f}), H={s['H']}, "
        f"{s['steps']} steps of {training.describe()}, every batch drawn from a fixed pool "
        f"of N training sequences; held-out: {s['test']} fresh sequences (seed {TEST_SEED}); "
        f"seeds {s['seeds']}. Medians over seeds:", "",
        table(["N", "LSTM train MSE", "LSTM held-out MSE", "GRU train MSE",
               "GRU held-out MSE"], rows),
    ])


def plot_d3(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for cell in ("lstm", "gru"):
        chosen = [r for r in m["rows"] if r["cell"] == cell]
        sizes = sorted({r["train_size"] for r in chosen})
        line = ax.plot(sizes, [_median([r["held_out_loss"] for r in chosen
                                        if r["train_size"] == n]) for n in sizes],
                       marker="o", label=f"{cell} held-out")
        ax.scatter([r["train_size"] for r in chosen], [r["held_out_loss"] for r in chosen],
                   color=line[0].get_color(), s=10, alpha=0.5)
        ax.plot(sizes, [_median([r["train_loss"] for r in chosen if r["train_size"] == n])
                        for n in sizes], ls=":", color=line[0].get_color(),
                label=f"{cell} training set")
    ax.axhline(m["baseline"], color="grey", ls="--", lw=0.8, label="baseline")
    ax.set(xscale="log", yscale="log", xlabel="training sequences N", ylabel="MSE",
           title="Held-out loss against training-set size")
    ax.legend(fontsize=8)
    path = directory / "D3_data_size.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


# -- D4: lengths never seen ------------------------------------------------------------------


class LengthRange(Task):
    """The adding problem with each sequence's T drawn uniformly from [low, high].

    Sequences of different lengths share a batch, zero-padded after their end; the
    trainer reads each one's output at its own last step (`lengths`).
    """

    def __init__(self, low: int, high: int):
        if not 2 <= low <= high:
            raise ValueError(f"LengthRange: need 2 <= low <= high, got low={low}, high={high}")
        self.low, self.high = low, high
        self.inner = {T: make_task("adding", T=T) for T in range(low, high + 1)}
        any_task = self.inner[low]
        self.name, self.input_size, self.output_size = "adding", any_task.input_size, 1
        self.per_step, self.T, self.success_rule = False, None, any_task.success_rule

    def sample(self, batch_size, generator):
        lengths = torch.randint(self.low, self.high + 1, (batch_size,), generator=generator)
        inputs = torch.zeros(self.high, batch_size, self.input_size)
        targets = torch.zeros(batch_size)
        for T in lengths.unique().tolist():
            rows = (lengths == T).nonzero().flatten()
            part = self.inner[T].sample(len(rows), generator)
            inputs[:T, rows] = part.inputs
            targets[rows] = part.targets
        return Batch(inputs, targets, lengths)

    def loss(self, outputs, batch):
        return self.inner[self.low].loss(outputs, batch)

    def metrics(self, outputs, batch):
        return self.inner[self.low].metrics(outputs, batch)

    def baseline_loss(self, batch=None):
        return self.inner[self.low].baseline_loss()

    def solved(self, metrics):
        return self.inner[self.low].solved(metrics)

    def describe(self):
        return {"task": "adding", "T_range": [self.low, self.high]}


GENERALISATION = {
    "smoke": {"train": (6, 10), "test": (20, 40), "H": 8, "steps": 20, "seeds": (0,),
              "test_size": 100},
    "quick": {"train": (20, 50), "test": (100, 200), "H": 32, "steps": 600, "seeds": (0,),
              "test_size": 300},
    "default": {"train": (20, 50), "test": (100, 200, 500), "H": 32, "steps": 1000,
                "seeds": (0, 1), "test_size": 500},
}
D4_CELLS = ("lstm", "gru")
#: Per test length: "handled" if MSE < 0.1 x baseline, "failed" if >= the baseline.
D4_HANDLED_FRACTION = 0.1


def measure_d4(profile: str) -> dict:
    s = GENERALISATION[profile]
    task = LengthRange(*s["train"])
    rows = []
    for cell in D4_CELLS:
        for seed in s["seeds"]:
            cfg = training.config(cell, s["H"], steps=s["steps"], seed=seed,
                                  stop_on_success=True)
            result, model = training.train_and_keep(task, cfg)
            tests = {}
            for T in s["test"]:
                test_task = make_task("adding", T=T)
                batch = test_task.sample(s["test_size"], torch.Generator().manual_seed(T))
                tests[str(T)] = training.evaluate(model, test_task, batch)["loss"]
            rows.append({"cell": cell, "seed": seed, "train_range_loss": result.final["loss"],
                         "solved_in_range": result.solved, "steps": result.steps_done,
                         "test_loss": tests})
    return {"settings": listed(s), "baseline": 1 / 6, "rows": rows}


def _d4_state(loss: float, baseline: float) -> str:
    if loss < D4_HANDLED_FRACTION * baseline:
        return "handled"
    return "failed" if loss >= baseline else "degraded"


def decide_d4(m: dict) -> Verdict:
    tests = m["settings"]["test"]
    learned = [r for r in m["rows"] if r["solved_in_range"]]
    if not learned:
        return Verdict(NOT_SUPPORTED, "no run learned the training lengths, so nothing "
                       "could carry over (see the table)")
    states = {T: [_d4_state(r["test_loss"][str(T)], m["baseline"]) for r in learned]
              for T in tests}
    described = "; ".join(f"T={T}: " + ", ".join(v) for T, v in states.items())
    handled = [T for T, v in states.items() if all(s == "handled" for s in v)]
    if len(handled) == len(tests):
        return Verdict(SUPPORTED, f"every run that learned lengths {m['settings']['train']} "
                       f"keeps MSE < {D4_HANDLED_FRACTION} x baseline at {tests}")
    if handled or any(s != "failed" for v in states.values() for s in v):
        upto = f"up to T={max(handled)}" if handled else "nowhere fully"
        return Verdict(DEPENDS, f"the same weights run at any length, but accuracy carries "
                       f"over {upto} ({described})")
    return Verdict(NOT_SUPPORTED, f"the same weights run at any length but do no better than "
                   f"the memoryless baseline beyond training lengths ({described})")


def summarize_d4(m: dict) -> str:
    s = m["settings"]
    rows = [[r["cell"], r["seed"], r["steps"], r["solved_in_range"], r["train_range_loss"],
             *[r["test_loss"][str(T)] for T in s["test"]]] for r in m["rows"]]
    return "\n".join([
        f"Adding task, training lengths T uniform in {s['train']} (H={s['H']}, up to "
        f"{s['steps']} steps of {training.describe()}, stopping once the held-out MSE at "
        f"training lengths is below 0.01); then the same weights on {s['test_size']} fresh "
        f"sequences at each longer T (baseline MSE 1/6 = 0.167):", "",
        table(["cell", "seed", "steps", "learned training lengths", "MSE at training lengths",
               *[f"MSE at T={T}" for T in s["test"]]], rows),
    ])


def plot_d4(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    tests = m["settings"]["test"]
    for r in m["rows"]:
        xs = [np.mean(m["settings"]["train"]), *tests]
        ys = [r["train_range_loss"], *[r["test_loss"][str(T)] for T in tests]]
        ax.plot(xs, ys, marker="o", label=f"{r['cell']} seed {r['seed']}")
    ax.axhline(m["baseline"], color="grey", ls="--", lw=0.8, label="baseline 1/6")
    ax.axvspan(*m["settings"]["train"], color="grey", alpha=0.15, label="training lengths")
    ax.set(xscale="log", yscale="log", xlabel="T", ylabel="held-out MSE",
           title="Trained on short sequences, tested on longer ones")
    ax.legend(fontsize=7)
    path = directory / "D4_length_generalisation.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


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
    Claim(
        id="D3", notes=(f"{NOTE_002} §4.2",),
        statement=("With little training data a GRU does better than an LSTM; given plenty, "
                   "the LSTM may pull ahead."),
        method=("The GRU and the LSTM are trained on the adding problem from fixed pools of "
                "training sequences of increasing size (every batch is drawn from the pool), "
                "several seeds, and tested on fresh held-out sequences; held-out MSE against "
                "the pool size, paired by seed."),
        rule=("compare held-out MSE paired by seed. Part 1: GRU below LSTM in every seed at "
              "the smallest training set; part 2: LSTM below GRU in every seed at the largest. "
              "Supported if both, depends if one (named), not supported if neither."),
        measure=measure_d3, decide=decide_d3, summarize=summarize_d3, plot=plot_d3),
    Claim(
        id="D4", notes=(f"{NOTE_001} §2 (weight sharing)",),
        statement=("Since one set of weights serves every time step, a recurrent network can "
                   "be run on, and cope with, sequence lengths absent from its training."),
        method=("The LSTM and the GRU are trained on adding problems whose length is drawn "
                "from a range of short T, until they solve it or the budget ends; the same "
                "weights, without retraining, are then tested on fresh sequences several "
                "times longer, and each longer T is classed as handled, degraded or failed "
                "by its held-out MSE against the baseline."),
        rule=(f"among runs that learned the training lengths, per longer test T: 'handled' if "
              f"MSE < {D4_HANDLED_FRACTION} x baseline, 'failed' if >= baseline. Supported if "
              "every run handles every test T; not supported if no run learned or all fail; "
              "depends otherwise (up to which T it carries over)."),
        anchors=(Anchor("Pascanu, Mikolov & Bengio 2013", "an RNN trained on the temporal "
                        "order problem at lengths 50 to 200 made no errors on lengths from 50 "
                        "up to 5000"),),
        measure=measure_d4, decide=decide_d4, summarize=summarize_d4, plot=plot_d4),
]
