"""Claims D3 and D4: how a trained recurrent network generalises, to the data it lacked
(D3: less training data) and to lengths it never saw (D4: longer sequences).
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
    NOTE_001,
    NOTE_002,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    listed,
    table,
)
from bench.training.tasks import Batch, Task, make_task


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


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
