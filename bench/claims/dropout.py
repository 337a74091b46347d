"""Claims F1-F2: dropout in a recurrent network, four ways, on small training sets.

`DropoutLSTM` is an LSTM written out step by step with one of four dropout schemes:

- none;
- naive: a fresh mask at every step on the input x_t and on the recurrent input h_(t-1);
- non-recurrent (Zaremba et al. 2014): fresh masks at every step on x_t and on the output
  y_t only, the recurrent connection untouched;
- variational (Gal & Ghahramani 2016): one mask per sequence for x, for h_(t-1) and for y,
  reused at every step.

Dropout is a training-time operation: masks are drawn only while autograd records (the
trainer evaluates under `torch.no_grad`, and so does `training.evaluate`). With p = 0 every
scheme is the standard LSTM (tests check it against `reference`).

The data: embedded Reber strings (next-symbol prediction, from `bench.training.tasks`) and a
generated sentiment-like classification task (`Polarity`, below), each from a small fixed
training set (`training.FiniteTrainingSet`) so that there is something to overfit.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import impls
from bench.claims import training
from bench.claims.experiment import (
    DEPENDS,
    NOT_SUPPORTED,
    NOTE_000,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    table,
)
from bench.claims.longrange import listed
from bench.training.tasks import Batch, Task, make_task

SCHEMES = ("none", "naive", "non_recurrent", "variational")


class DropoutLSTM(impls.RecurrentLayer):
    """An LSTM (PyTorch's parameters, gates i, f, g, o) with one dropout scheme of SCHEMES."""

    def __init__(self, input_size: int, hidden_size: int, *, scheme: str, p: float,
                 device="cpu", dtype=torch.float32, **options):
        if scheme not in SCHEMES:
            raise ValueError(f"DropoutLSTM: argument 'scheme' must be one of {SCHEMES}, "
                             f"got {scheme!r}")
        if not 0 <= p < 1:
            raise ValueError(f"DropoutLSTM: argument 'p' must be in [0, 1), got {p!r}")
        super().__init__("lstm", input_size, hidden_size, device=device, dtype=dtype, **options)
        self.impl_name = f"claims-lstm-dropout[{scheme},{p:g}]"
        self.scheme, self.p = scheme, p

    def _masks(self, T: int, B: int, input_size: int) -> dict[str, torch.Tensor | None]:
        """Inverted-dropout masks for x, h_(t-1) and y: (T, B, size) when drawn per step,
        (1, B, size) when drawn once per sequence; None where the scheme drops nothing."""
        none = {"x": None, "h": None, "y": None}
        if not torch.is_grad_enabled() or self.scheme == "none" or self.p == 0:
            return none
        keep = 1 - self.p
        steps = 1 if self.scheme == "variational" else T
        weight = self.weight_hh_l0

        def draw(size):
            return torch.bernoulli(weight.new_full((steps, B, size), keep)) / keep

        sizes = {"x": input_size, "h": self.hidden_size, "y": self.hidden_size}
        dropped = {"naive": ("x", "h"), "non_recurrent": ("x", "y"),
                   "variational": ("x", "h", "y")}[self.scheme]
        return {**none, **{k: draw(sizes[k]) for k in dropped}}

    def run_direction(self, x, batch_sizes, h0, c0, w):
        x = impls.layer.as_steps(x, batch_sizes, self.impl_name)
        T, B, _ = x.shape
        masks = self._masks(T, B, x.shape[2])
        if masks["x"] is not None:
            x = x * masks["x"]
        projected = x @ w.w_ih.T + (w.b_ih + w.b_hh)
        mask_h = masks["h"]
        h, c = h0, c0
        outputs = []
        for t, xw_t in enumerate(projected.unbind(0)):
            h_in = h if mask_h is None else h * mask_h[t if mask_h.shape[0] > 1 else 0]
            a_i, a_f, a_g, a_o = (xw_t + h_in @ w.w_hh.T).chunk(4, 1)
            c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
            h = torch.sigmoid(a_o) * torch.tanh(c)
            outputs.append(h)
        y = torch.stack(outputs)
        if masks["y"] is not None:
            y = y * masks["y"]
        return y.view(T * B, -1), h, c


class Polarity(Task):
    """A sentiment-like classification: does a sequence hold more positive or negative words?

    Vocabulary of `vocabulary` one-hot words: the first `polar` positive, the next `polar`
    negative, the rest neutral. Each sequence has T words with an odd number (1, 3 or 5) of
    polar ones at random positions, so there is never a tie; class 1 if positive words
    outnumber negative ones. Cross-entropy; baseline ln 2, accuracy 1/2. Solved: held-out
    accuracy >= 0.95.
    """

    SOLVED_ACCURACY = 0.95

    def __init__(self, T: int = 20, vocabulary: int = 20, polar: int = 4):
        if not (isinstance(T, int) and T >= 5):
            raise ValueError(f"polarity: argument 'T' must be an int >= 5, got {T!r}")
        if not (isinstance(vocabulary, int) and isinstance(polar, int)
                and 1 <= polar and 2 * polar < vocabulary):
            raise ValueError(f"polarity: need 1 <= polar and 2*polar < vocabulary, got "
                             f"polar={polar!r}, vocabulary={vocabulary!r}")
        self.name, self.T, self.vocabulary, self.polar = "polarity", T, vocabulary, polar
        self.input_size, self.output_size, self.per_step = vocabulary, 2, False
        self.success_rule = f"held-out accuracy >= {self.SOLVED_ACCURACY}"

    def sample(self, batch_size, generator):
        T, B, P = self.T, batch_size, self.polar
        words = torch.randint(2 * P, self.vocabulary, (T, B), generator=generator)
        count = 1 + 2 * torch.randint(0, 3, (B,), generator=generator)
        order = torch.rand(T, B, generator=generator).argsort(dim=0)
        is_polar = torch.zeros(T, B, dtype=torch.bool)
        for b in range(B):
            is_polar[order[: count[b], b], b] = True
        positive = torch.rand(T, B, generator=generator) < 0.5
        polar_words = torch.randint(0, P, (T, B), generator=generator) + (~positive) * P
        words = torch.where(is_polar, polar_words, words)
        votes = (is_polar & positive).sum(0) - (is_polar & ~positive).sum(0)
        targets = (votes > 0).long()
        return Batch(F.one_hot(words, self.vocabulary).float(), targets,
                     torch.full((B,), T, dtype=torch.int64))

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs, batch.targets)

    def metrics(self, outputs, batch):
        return {"loss": float(self.loss(outputs.double(), batch)),
                "accuracy": float((outputs.argmax(-1) == batch.targets).double().mean())}

    def baseline_loss(self, batch=None):
        return math.log(2)

    def solved(self, metrics):
        return metrics["accuracy"] >= self.SOLVED_ACCURACY

    def describe(self):
        return {"task": self.name, "T": self.T, "vocabulary": self.vocabulary,
                "polar": self.polar}


SETTINGS = {
    "smoke": {"H": 8, "p": 0.25, "steps": 20, "seeds": (0,), "test": 200,
              "reber_train": 20, "polarity_train": 40, "polarity_T": 8},
    "quick": {"H": 32, "p": 0.25, "steps": 200, "seeds": (0, 1), "test": 500,
              "reber_train": 50, "polarity_train": 200, "polarity_T": 20},
    "default": {"H": 32, "p": 0.25, "steps": 400, "seeds": (0, 1, 2), "test": 2000,
                "reber_train": 50, "polarity_train": 200, "polarity_T": 20},
}
TEST_SEED = 31_337
POOL_SEED = 2_024


def _tasks(s: dict) -> dict[str, Task]:
    return {"reber": make_task("reber"), "polarity": Polarity(T=s["polarity_T"])}


def measure_dropout(profile: str) -> dict:
    """Every (task, scheme, seed): training-set and held-out loss. Shared by F1 and F2."""
    s = SETTINGS[profile]
    rows = []
    for task_name, task in _tasks(s).items():
        fresh = task.sample(s["test"], torch.Generator().manual_seed(TEST_SEED))
        finite = training.FiniteTrainingSet(task, s[f"{task_name}_train"], POOL_SEED)
        for scheme in SCHEMES:
            name = f"claims-lstm-dropout-{scheme}"
            factory = _factory(scheme, s["p"] if scheme != "none" else 0.0)
            with training.temporary_implementation(name, factory, frozenset({"lstm"})):
                for seed in s["seeds"]:
                    cfg = training.config("lstm", s["H"], steps=s["steps"], seed=seed,
                                          impl=name)
                    result, model = training.train_and_keep(finite, cfg)
                    held_out = training.evaluate(model, task, fresh)
                    rows.append({"task": task_name, "scheme": scheme, "seed": seed,
                                 "train_loss": result.final["loss"],
                                 "held_out_loss": held_out["loss"],
                                 "held_out_accuracy": held_out.get("accuracy"),
                                 "gap": held_out["loss"] - result.final["loss"],
                                 "diverged": result.diverged})
    return {"settings": listed(s), "rows": rows}


def _factory(scheme: str, p: float):
    def factory(cell, input_size, hidden_size, **options):
        return DropoutLSTM(input_size, hidden_size, scheme=scheme, p=p, **options)

    return factory


def _by_seed(m: dict, task: str) -> dict[int, dict[str, float]]:
    out = {}
    for r in m["rows"]:
        if r["task"] == task:
            out.setdefault(r["seed"], {})[r["scheme"]] = r["held_out_loss"]
    return out


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def decide_f1(m: dict) -> Verdict:
    tasks = sorted({r["task"] for r in m["rows"]})
    wins, parts = [], []
    for task in tasks:
        seeds = _by_seed(m, task)
        won = [v["variational"] < min(v["naive"], v["non_recurrent"]) for v in seeds.values()]
        parts.append(f"{task}: variational lowest in {sum(won)}/{len(won)} seeds")
        if all(won):
            wins.append(task)
    evidence = "; ".join(parts)
    if len(wins) == len(tasks):
        return Verdict(SUPPORTED, evidence)
    if wins or any("lowest in 0/" not in p for p in parts):
        return Verdict(DEPENDS, f"variational wins every seed only on {wins or 'no task'}; "
                       + evidence)
    return Verdict(NOT_SUPPORTED, evidence)


#: F2: dropout "helps little" if the best scheme lowers the median held-out loss by less.
F2_SMALL_GAIN = 0.10


def _f2_gains(m: dict) -> dict[str, tuple[str, float]]:
    gains = {}
    for task in sorted({r["task"] for r in m["rows"]}):
        med = {scheme: _median([r["held_out_loss"] for r in m["rows"]
                                if r["task"] == task and r["scheme"] == scheme])
               for scheme in SCHEMES}
        best = min(SCHEMES[1:], key=lambda s: med[s])
        gains[task] = (best, (med["none"] - med[best]) / med["none"])
    return gains


def decide_f2(m: dict) -> Verdict:
    gains = _f2_gains(m)
    evidence = "; ".join(f"{task}: best scheme {best} changes the median held-out loss by "
                         f"{-gain:+.1%} against no dropout" for task, (best, gain) in gains.items())
    small = [task for task, (_, gain) in gains.items() if gain < F2_SMALL_GAIN]
    if len(small) == len(gains):
        return Verdict(SUPPORTED, evidence)
    if small:
        return Verdict(DEPENDS, f"helps little only on {', '.join(small)}; {evidence}")
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_dropout(m: dict) -> str:
    s = m["settings"]
    rows = []
    for task in sorted({r["task"] for r in m["rows"]}):
        for scheme in SCHEMES:
            chosen = [r for r in m["rows"] if r["task"] == task and r["scheme"] == scheme]
            accuracy = [r["held_out_accuracy"] for r in chosen
                        if r["held_out_accuracy"] is not None]
            rows.append([task, scheme, _median([r["train_loss"] for r in chosen]),
                         _median([r["held_out_loss"] for r in chosen]),
                         ", ".join(f"{r['held_out_loss']:.3g}" for r in chosen),
                         _median([r["gap"] for r in chosen]), _median(accuracy)])
    return "\n".join([
        f"LSTM H={s['H']}, dropout p={s['p']}, {s['steps']} steps of {training.describe()}, "
        f"seeds {s['seeds']}. Training sets: {s['reber_train']} embedded Reber strings; "
        f"{s['polarity_train']} polarity sequences (T={s['polarity_T']}, 20 words, 4 "
        f"positive, 4 negative). Held-out: {s['test']} fresh sequences per task. Medians "
        "over seeds (gap = held-out - training loss):", "",
        table(["task", "scheme", "training loss", "held-out loss", "held-out loss per seed",
               "gap", "held-out accuracy"], rows),
    ])


def plot_dropout(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in m["rows"]})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for k, scheme in enumerate(SCHEMES):
            chosen = [r for r in m["rows"] if r["task"] == task and r["scheme"] == scheme]
            ax.scatter([k - 0.1] * len(chosen), [r["train_loss"] for r in chosen],
                       marker="x", color="tab:grey", label="training set" if k == 0 else None)
            ax.scatter([k + 0.1] * len(chosen), [r["held_out_loss"] for r in chosen],
                       color="tab:blue", label="held-out" if k == 0 else None)
        ax.set_xticks(range(len(SCHEMES)), SCHEMES)
        ax.set(title=task, ylabel="loss")
        ax.legend(fontsize=8)
    fig.suptitle("Dropout schemes on small training sets (one point per seed)")
    fig.tight_layout()
    path = directory / "F_dropout.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


_MEASURED: dict[str, dict] = {}


def measure_once(profile: str) -> dict:
    """F1 and F2 read the same runs: measure once per process and profile."""
    if profile not in _MEASURED:
        _MEASURED[profile] = measure_dropout(profile)
    return _MEASURED[profile]


CLAIMS = [
    Claim(
        id="F1", notes=(f"{NOTE_000} §6",),
        statement=("Of the ways to add dropout to a recurrent network, the variational one "
                   "wins: a single mask drawn per sequence and kept for all its steps, the "
                   "recurrent connection included."),
        method=("An LSTM is trained with four dropout schemes (none; naive, a fresh mask at "
                "every step on the input and the recurrent input; non-recurrent, fresh masks "
                "on input and output only; variational, one mask per sequence on input, "
                "recurrent input and output) on small fixed training sets of two generated "
                "tasks, next-symbol prediction on embedded Reber strings and a sentiment-like "
                "polarity classification, several seeds; held-out loss on fresh sequences and "
                "the gap to the training loss."),
        rule=("per task, variational 'wins' if its held-out loss is below both the naive and "
              "the non-recurrent scheme's in every seed. Supported if it wins on every task; "
              "not supported if it is lowest in no seed of any task; depends otherwise."),
        anchors=(
            Anchor("Gal & Ghahramani 2016", "Penn Treebank, medium LSTM: test perplexity 82.7 "
                   "with dropout on the non-recurrent connections only (Zaremba et al.'s "
                   "scheme) against 79.7 with variational dropout"),
            Anchor("Zaremba, Sutskever & Vinyals 2014", "the non-recurrent scheme: dropout on "
                   "the connections between layers and to the output, never on the "
                   "recurrent one"),
        ),
        measure=measure_once, decide=decide_f1, summarize=summarize_dropout,
        plot=plot_dropout),
    Claim(
        id="F2", notes=(f"{NOTE_000} §6",),
        statement="In recurrent networks dropout is of little use.",
        method=("F1's runs: per task, the best of the three dropout schemes against no "
                "dropout, as the relative change of the median held-out loss."),
        rule=(f"per task, the best dropout scheme's relative reduction of the median held-out "
              f"loss against no dropout: 'little' if below {F2_SMALL_GAIN:.0%}. Supported if "
              "little on every task, depends if on some (named), not supported if on none."),
        anchors=(Anchor("Zaremba, Sutskever & Vinyals 2014", "dropout on the non-recurrent "
                        "connections substantially reduced the LSTM's overfitting in language "
                        "modelling, speech recognition, image captioning and machine "
                        "translation"),),
        measure=measure_once, decide=decide_f2, summarize=summarize_dropout),
]
