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
training set (`training.FiniteTrainingSet`) so that there is something to overfit,
validated and tested on fresh sequences.
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
    listed,
    save_figure,
    table,
)
from bench.claims.gates import interval_plot
from bench.claims.intervals import difference_interval, fmt, median_interval, ratio_interval
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


#: Per profile: LSTM size, dropout rate, training steps, training-set sizes. `full` is for a
#: cluster (Gal & Ghahramani's medium model had 650 units; here the data stay small).
SETTINGS = {
    "smoke": {"H": 8, "p": 0.25, "steps": 20, "reber_train": 20, "polarity_train": 40,
              "polarity_T": 8},
    "quick": {"H": 32, "p": 0.25, "steps": 200, "reber_train": 50, "polarity_train": 200,
              "polarity_T": 20},
    "default": {"H": 32, "p": 0.25, "steps": 300, "reber_train": 50, "polarity_train": 200,
                "polarity_T": 20},
    "full": {"H": 128, "p": 0.25, "steps": 3000, "reber_train": 200, "polarity_train": 1000,
             "polarity_T": 50},
}
POOL_SEED = 2_024
METRICS = ("loss", "accuracy")
DROPPING = SCHEMES[1:]


def _tasks(s: dict) -> dict[str, Task]:
    return {"reber": make_task("reber"), "polarity": Polarity(T=s["polarity_T"])}


def _factory(scheme: str, p: float):
    def factory(cell, input_size, hidden_size, **options):
        return DropoutLSTM(input_size, hidden_size, scheme=scheme, p=p, **options)

    return factory


def measure_dropout(profile: str) -> dict:
    """Every (task, scheme, seed): test loss and accuracy, and the same on the training set.
    Shared by F1 and F2."""
    s = SETTINGS[profile]
    rows = []
    for task_name, task in _tasks(s).items():
        small = training.FiniteTrainingSet(task, s[f"{task_name}_train"], POOL_SEED)
        for scheme in SCHEMES:
            p = s["p"] if scheme != "none" else 0.0
            name = f"claims-lstm-dropout-{scheme}-{p:g}"
            with training.temporary_implementation(name, _factory(scheme, p),
                                                   frozenset({"lstm"})):
                cfg = training.config("lstm", s["H"], steps=s["steps"],
                                      seed=training.SEEDS[profile][0], impl=name)
                runs = training.choose_and_train(small, cfg, training.SEEDS[profile])
            for result, model in runs["runs"]:
                on_pool = training.evaluate(model, task, small.pool)
                rows.append({"task": task_name, "scheme": scheme, "seed": result.config.seed,
                             "lr": runs["lr"], "test_loss": result.test["loss"],
                             "test_accuracy": result.test.get("accuracy"),
                             "train_loss": on_pool["loss"],
                             "train_accuracy": on_pool.get("accuracy"),
                             "diverged": result.diverged})
    return {"settings": {**listed(s), "seeds": list(training.SEEDS[profile])},
            "eval_size": training.EVAL_SIZE, "rows": rows}


def _values(m: dict, task: str, scheme: str, metric: str) -> list[float]:
    """Test figures of the runs that did not diverge (diverged runs are counted apart)."""
    return [r[f"test_{metric}"] for r in m["rows"]
            if r["task"] == task and r["scheme"] == scheme and not r["diverged"]
            and r[f"test_{metric}"] is not None and math.isfinite(r[f"test_{metric}"])]


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def compare(m: dict, task: str, scheme: str, other: str, metric: str) -> dict:
    """`scheme` against `other` on `task` by `metric`, oriented so that > `null` is better for
    `scheme`: the loss ratio other / scheme (null 1), or the accuracy difference scheme -
    other in points of a share (null 0)."""
    a, b = _values(m, task, scheme, metric), _values(m, task, other, metric)
    if metric == "loss":
        if not a or not b or min(a) <= 0:
            return {"value": None, "ci95": None, "null": 1.0}
        ratio = ratio_interval(b, a)
        return {"value": ratio["ratio"], "ci95": ratio["ci95"], "null": 1.0}
    diff = difference_interval(a, b)
    return {"value": diff["difference"], "ci95": diff["ci95"], "null": 0.0}


def side(c: dict, margin: float = 0.0) -> int:
    """+1 if the whole interval (the value alone without one) lies beyond `null + margin`,
    -1 if it lies below `null - margin`, 0 otherwise."""
    if c["value"] is None:
        return 0
    low, high = c["ci95"] or (c["value"], c["value"])
    return 1 if low > c["null"] + margin else -1 if high < c["null"] - margin else 0


def _fmt(c: dict) -> str:
    return fmt({"v": c["value"], "ci95": c["ci95"]}, "v")


def _tasks_of(m: dict) -> list[str]:
    return sorted({r["task"] for r in m["rows"]})


# -- F1 ------------------------------------------------------------------------------------


def _f1_sides(m: dict) -> dict[str, dict[str, int]]:
    """Per task and metric: +1 variational beats both other dropout schemes beyond the
    seeds' noise, -1 one of them beats it, 0 neither."""
    out = {}
    for task in _tasks_of(m):
        out[task] = {}
        for metric in METRICS:
            sides = [side(compare(m, task, "variational", o, metric))
                     for o in ("naive", "non_recurrent")]
            out[task][metric] = -1 if -1 in sides else 1 if all(v == 1 for v in sides) else 0
    return out


def _f1_evidence(m: dict) -> str:
    parts = []
    for task in _tasks_of(m):
        for o in ("naive", "non_recurrent"):
            parts.append(f"{task}, against {o}: loss ratio "
                         f"{_fmt(compare(m, task, 'variational', o, 'loss'))}, accuracy "
                         f"difference {_fmt(compare(m, task, 'variational', o, 'accuracy'))}")
    return "; ".join(parts)


WORDS = {1: "better", -1: "worse", 0: "no different"}


def decide_f1(m: dict) -> Verdict:
    sides = _f1_sides(m)
    evidence = ("variational against each other dropout scheme, test figures, median [95% "
                "interval] (loss: other / variational, above 1 favours variational; accuracy: "
                f"variational - other): {_f1_evidence(m)}")
    wins = [t for t, s in sides.items() if 1 in s.values() and -1 not in s.values()]
    split = [t for t, s in sides.items() if 1 in s.values() and -1 in s.values()]
    if len(wins) == len(sides):
        return Verdict(SUPPORTED, f"variational is best on every task; {evidence}")
    if wins or split:
        held = [f"{t}: variational {WORDS[s['loss']]} by loss, {WORDS[s['accuracy']]} by "
                "accuracy" for t, s in sides.items()]
        return Verdict(DEPENDS, f"variational is best on {', '.join(wins) or 'no task'}"
                       f"{'; loss and accuracy disagree on ' + ', '.join(split) if split else ''}"
                       f" ({'; '.join(held)}); {evidence}")
    return Verdict(NOT_SUPPORTED, f"variational beats the other schemes on no task by either "
                   f"figure; {evidence}")


# -- F2 ------------------------------------------------------------------------------------

#: F2: dropout helps "more than a little" by loss if the best scheme's test loss is lower by
#: more than this share beyond the seeds' noise, and by accuracy if it is higher by more
#: than ACCURACY_MARGIN (a share: 0.02 = 2 points).
LOSS_MARGIN = 0.10
ACCURACY_MARGIN = 0.02


def _best(m: dict, task: str, metric: str) -> str:
    sign = 1 if metric == "loss" else -1
    medians = {s: _median(_values(m, task, s, metric)) for s in DROPPING}
    finite = {s: v for s, v in medians.items() if math.isfinite(v)}
    return min(finite, key=lambda s: sign * finite[s]) if finite else DROPPING[0]


def _f2_helps(m: dict) -> dict[str, dict[str, tuple[str, dict, bool]]]:
    """Per task and metric: (best dropout scheme, its comparison with none, helps)."""
    out = {}
    for task in _tasks_of(m):
        out[task] = {}
        for metric in METRICS:
            best = _best(m, task, metric)
            c = compare(m, task, best, "none", metric)
            margin = (1 / (1 - LOSS_MARGIN) - 1) if metric == "loss" else ACCURACY_MARGIN
            out[task][metric] = (best, c, side(c, margin) == 1)
    return out


def decide_f2(m: dict) -> Verdict:
    helps = _f2_helps(m)
    evidence = "; ".join(
        f"{task}: by loss {h['loss'][0]} {_fmt(h['loss'][1])} (none / best), by accuracy "
        f"{h['accuracy'][0]} {_fmt(h['accuracy'][1])} (best - none)"
        for task, h in helps.items())
    evidence = f"best dropout scheme against none, test figures, median [95% interval]: " \
               f"{evidence}"
    little = [t for t, h in helps.items() if not any(v[2] for v in h.values())]
    much = [t for t, h in helps.items() if all(v[2] for v in h.values())]
    if len(little) == len(helps):
        return Verdict(SUPPORTED, f"dropout helps little on every task by both figures; "
                       f"{evidence}")
    if len(much) == len(helps):
        return Verdict(NOT_SUPPORTED, f"dropout helps clearly on every task by both figures; "
                       f"{evidence}")
    where = [f"{t} by {', '.join(k for k, v in h.items() if v[2])}" for t, h in helps.items()
             if any(v[2] for v in h.values())]
    return Verdict(DEPENDS, f"dropout helps clearly only on {'; '.join(where)}, little "
                   f"elsewhere; {evidence}")


def summarize_dropout(m: dict) -> str:
    s = m["settings"]
    rows = []
    for task in _tasks_of(m):
        for scheme in SCHEMES:
            chosen = [r for r in m["rows"] if r["task"] == task and r["scheme"] == scheme]
            lr = chosen[0]["lr"] if chosen else math.nan
            loss = median_interval(_values(m, task, scheme, "loss"))
            accuracy = median_interval(_values(m, task, scheme, "accuracy"))
            train = _median([r["train_loss"] for r in chosen if not r["diverged"]])
            rows.append([task, scheme, f"{lr:g}", train, fmt(loss, "median"),
                         fmt(accuracy, "median"),
                         ", ".join(f"{r['test_loss']:.3g}" for r in chosen),
                         sum(r["diverged"] for r in chosen)])
    return "\n".join([
        f"LSTM H={s['H']}, dropout p={s['p']}, {s['steps']} steps of {training.describe()}, "
        f"seeds {s['seeds']}; the learning rate is searched per task and scheme; every scheme "
        "runs in this module's step-by-step LSTM (`DropoutLSTM`), not `scripted`. Training "
        f"sets: {s['reber_train']} embedded Reber strings; {s['polarity_train']} polarity "
        f"sequences (T={s['polarity_T']}, 20 words, 4 positive, 4 negative). Validation and "
        f"test: {m['eval_size']} fresh sequences each per task (never the training pool). "
        "Test figures, median over seeds [95% interval]; training loss = the kept model on "
        "its training pool, without dropout. Reber accuracy: the share of strings whose every "
        "legal next symbol is predicted.", "",
        table(["task", "scheme", "rate", "training loss", "test loss", "test accuracy",
               "test loss per seed", "diverged"], rows),
    ])


def plot_dropout(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    tasks = _tasks_of(m)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    labels = {"none": "none", "naive": "naive", "non_recurrent": "non-\nrecurrent",
              "variational": "variational"}
    for row, task in zip(axes, tasks):
        for ax, metric in zip(row, METRICS):
            interval_plot(ax, [(labels[s], _values(m, task, s, metric)) for s in SCHEMES])
            if metric == "loss":
                for k, scheme in enumerate(SCHEMES):
                    train = [r["train_loss"] for r in m["rows"] if r["task"] == task
                             and r["scheme"] == scheme and not r["diverged"]]
                    ax.scatter([k + 0.3] * len(train), train, marker="x", s=16,
                               color="tab:red", label="training pool" if k == 0 else None)
                ax.legend(fontsize=8)
            ax.set(title=f"{task}: test {metric}", ylabel=f"test {metric}")
    fig.suptitle("Dropout schemes on small training sets (grey dots: seeds; blue: median "
                 "and 95% interval)")
    fig.tight_layout()
    path = directory / "F_dropout.png"
    save_figure(fig, path)
    return [path]


def _perplexity_ratio(m: dict, task: str, a: str, b: str) -> float:
    return math.exp(_median(_values(m, task, a, "loss")) - _median(_values(m, task, b, "loss")))


def against_f1(m: dict) -> str:
    ours = "; ".join(
        f"{task} {_perplexity_ratio(m, task, 'variational', 'non_recurrent'):.3f}"
        for task in _tasks_of(m))
    sides = _f1_sides(m)
    agree = all(s["loss"] == 1 for s in sides.values())
    return (
        "Gal & Ghahramani 2016, Penn Treebank medium LSTM: test perplexity 79.7 with "
        "variational dropout against 82.7 with Zaremba et al.'s non-recurrent dropout, a "
        "ratio of 0.964. Ours, exp(median test loss) of variational over non-recurrent (the "
        f"same ratio per prediction): {ours}. "
        + ("We agree: variational dropout gives the lower loss on every task."
           if agree else
           "We do not find their gain on every task: our models and training sets are tiny "
           "(tens of units, tens to hundreds of sequences, a few hundred steps), the "
           "language here is a small grammar, and every scheme keeps its best-validation "
           "checkpoint, an early stop that already limits overfitting.")
    )


def against_f2(m: dict) -> str:
    helps = _f2_helps(m)
    ours = "; ".join(
        f"{task} {_perplexity_ratio(m, task, h['loss'][0], 'none'):.3f} ({h['loss'][0]}), "
        f"accuracy {_fmt(h['accuracy'][1])}"
        for task, h in helps.items())
    clear = [t for t, h in helps.items() if h["loss"][2]]
    return (
        "Zaremba, Sutskever & Vinyals 2014, Penn Treebank: a non-regularised LSTM reached "
        "test perplexity 114.5, their medium LSTM with non-recurrent dropout 82.7 (a ratio "
        "of 0.72, though the non-regularised model was also smaller); dropout also cut "
        "overfitting in speech recognition, captioning and translation. Ours, the best "
        "dropout scheme's exp(median test loss) over no dropout's (a perplexity ratio), and "
        f"its accuracy difference: {ours}. "
        + (f"Like them we find a clear gain on {', '.join(clear)}." if clear else
           "Unlike them we find no clear gain; every model here keeps its best-validation "
           "checkpoint, an early stop that already removes much of the overfitting dropout "
           "would, and our models and budgets are far smaller than theirs.")
    )


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
                "polarity classification (the note names language modelling and sentiment "
                "analysis), several seeds, a learning rate searched per task and scheme on a "
                "fresh validation set; test loss and test accuracy on fresh sequences, and "
                "the training-set loss."),
        rule=("per task and figure (test loss; test accuracy), variational is better if the "
              "95% bootstrap interval of its comparison with both the naive and the "
              "non-recurrent scheme lies on its side (loss ratio other / variational above "
              "1; accuracy difference variational - other above 0), worse if either "
              "comparison lies on the other side. Per task, variational wins if better by at "
              "least one figure and worse by none; where loss and accuracy disagree (better "
              "by one, worse by the other) the task is split. Supported if it wins on every "
              "task; depends if it wins on some task or a task is split (naming the tasks and "
              "the figure that favours it); not supported otherwise."),
        anchors=(
            Anchor("Gal & Ghahramani 2016", "Penn Treebank, medium LSTM: test perplexity 82.7 "
                   "with dropout on the non-recurrent connections only (Zaremba et al.'s "
                   "scheme) against 79.7 with variational dropout"),
            Anchor("Zaremba, Sutskever & Vinyals 2014", "the non-recurrent scheme: dropout on "
                   "the connections between layers and to the output, never on the "
                   "recurrent one"),
        ),
        measure=measure_once, decide=decide_f1, summarize=summarize_dropout,
        plot=plot_dropout, against=against_f1),
    Claim(
        id="F2", notes=(f"{NOTE_000} §6",),
        statement="In recurrent networks dropout is of little use.",
        method=("F1's runs: per task, the best dropout scheme (by median, per figure) against "
                "no dropout, by test loss and by test accuracy."),
        rule=(f"per task, dropout helps clearly by loss if the 95% interval of the ratio "
              f"none / best scheme lies above 1/(1 - {LOSS_MARGIN:g}) (the best scheme's loss "
              f"more than {LOSS_MARGIN:.0%} lower), and by accuracy if the interval of best - "
              f"none lies above {ACCURACY_MARGIN:g} ({ACCURACY_MARGIN * 100:g} points); the "
              "best scheme is chosen per figure by its median. Supported if dropout helps "
              "clearly on no task by either figure; not supported if it helps clearly on "
              "every task by both; depends otherwise, naming where it helps and by which "
              "figure (so a task where loss and accuracy disagree makes it depend)."),
        anchors=(Anchor("Zaremba, Sutskever & Vinyals 2014", "Penn Treebank: test perplexity "
                        "114.5 for a non-regularised LSTM against 82.7 for their medium LSTM "
                        "with non-recurrent dropout; dropout also cut overfitting in speech "
                        "recognition, image captioning and machine translation"),),
        measure=measure_once, decide=decide_f2, summarize=summarize_dropout,
        plot=plot_dropout, against=against_f2),
]
