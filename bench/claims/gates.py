"""Claims E1-E4: what the gates and states of a trained LSTM look like, and gate variants.

LSTMs are trained on the adding task through `bench.training.trainer` (the claims' one
protocol: learning rate searched per variant, model kept at its best validation loss),
caught after training, and their weights loaded into `ExperimentLSTM`, an LSTM written out
step by step that can record its gates and states, silence chosen units, and swap its gate
and candidate functions. With sigmoid gates and a tanh candidate it is the standard LSTM
(tests check it against the `reference` implementation).

The adding task needs about one memory unit; the others of a trained LSTM may do nothing
the output depends on. E1 and E3 therefore report the units the model uses, found by
ablation on test data, beside the all-units figure.
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
    NOTE_001,
    NOTE_002,
    NOTE_003,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    listed,
    save_figure,
    table,
)
from bench.claims.intervals import fmt, median_interval, ratio_interval
from bench.training.tasks import Task, make_task
from bench.training.trainer import SequenceModel


def straight_through(a: torch.Tensor) -> torch.Tensor:
    """0/1 forward, the sigmoid's gradient backward: a gate trained to be binary."""
    soft = torch.sigmoid(a)
    return (a > 0).to(a.dtype) + (soft - soft.detach())


GATE_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    # PyTorch's hard sigmoid, relu6(a + 3) / 6: linear on [-3, 3], exactly 0 or 1 outside.
    "hard_sigmoid": F.hardsigmoid,
    # A hard threshold: the gate is fully open or fully shut (no gradient: inference only).
    "step": lambda a: (a > 0).to(a.dtype),
    "straight_through": straight_through,
}
TRAINABLE_GATES = ("sigmoid", "hard_sigmoid", "straight_through")
CANDIDATE_FUNCTIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


class ExperimentLSTM(impls.RecurrentLayer):
    """An LSTM (gate order i, f, g, o; PyTorch's parameters) with swappable parts.

    gate: the gate function while training. inference_gate: the gate function when autograd
    is off (the trainer evaluates under `torch.no_grad`), None for the same as `gate`.
    candidate: the activation of g. Set `recording` to a list to collect per step the
    gates and states (i, f, g, o, c, h), each (B, H); set `keep` to an (H,) 0/1 tensor to
    zero the c and h of the units marked 0 at every step (an ablation).
    """

    def __init__(self, input_size: int, hidden_size: int, *, gate: str = "sigmoid",
                 candidate: str = "tanh", inference_gate: str | None = None,
                 device="cpu", dtype=torch.float32, **options):
        for arg, value, known in (("gate", gate, TRAINABLE_GATES),
                                  ("candidate", candidate, tuple(CANDIDATE_FUNCTIONS)),
                                  ("inference_gate", inference_gate,
                                   (None, *GATE_FUNCTIONS))):
            if value not in known:
                raise ValueError(f"ExperimentLSTM: argument {arg!r} must be one of {known}, "
                                 f"got {value!r}")
        super().__init__("lstm", input_size, hidden_size, device=device, dtype=dtype, **options)
        self.impl_name = f"claims-lstm[{gate},{candidate},{inference_gate}]"
        self.gate, self.candidate, self.inference_gate = gate, candidate, inference_gate
        self.recording: list | None = None
        self.keep: torch.Tensor | None = None

    def run_direction(self, x, batch_sizes, h0, c0, w):
        x = impls.layer.as_steps(x, batch_sizes, self.impl_name)
        name = self.gate if torch.is_grad_enabled() else (self.inference_gate or self.gate)
        gate_fn, candidate_fn = GATE_FUNCTIONS[name], CANDIDATE_FUNCTIONS[self.candidate]
        projected = x @ w.w_ih.T + (w.b_ih + w.b_hh)
        h, c = h0, c0
        outputs = []
        for xw_t in projected.unbind(0):
            a_i, a_f, a_g, a_o = (xw_t + h @ w.w_hh.T).chunk(4, 1)
            i, f, g, o = gate_fn(a_i), gate_fn(a_f), candidate_fn(a_g), gate_fn(a_o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            if self.keep is not None:
                c, h = c * self.keep, h * self.keep
            outputs.append(h)
            if self.recording is not None:
                self.recording.append(tuple(t.detach() for t in (i, f, g, o, c, h)))
        return torch.cat(outputs), h, c


def experiment_factory(**options):
    """A registry factory building `ExperimentLSTM(**options)`."""

    def factory(cell, input_size, hidden_size, **nn_options):
        return ExperimentLSTM(input_size, hidden_size, **nn_options, **options)

    return factory


def with_layer(model: SequenceModel, **options) -> SequenceModel:
    """`model` with its LSTM replaced by an ExperimentLSTM carrying the same weights."""
    layer = ExperimentLSTM(model.layer.input_size, model.layer.hidden_size,
                           dtype=model.layer.weight_hh_l0.dtype, **options)
    layer.load_state_dict(model.layer.state_dict())
    return SequenceModel(layer, model.readout, model.per_step)


# -- training: one learning-rate search per variant, every seed kept -------------------------


#: Per profile: adding-task length, hidden size, training steps, test sequences. `full` is
#: the literature's scale (128 units as in Arjovsky et al. 2016), for a cluster.
SETTINGS = {
    "smoke": {"T": 8, "H": 8, "steps": 30, "test": 100},
    "quick": {"T": 20, "H": 32, "steps": 400, "test": 500},
    "default": {"T": 20, "H": 32, "steps": 600, "test": 1000},
    "full": {"T": 100, "H": 128, "steps": 5000, "test": 2000},
}
TEST_SEED = 4_242
#: The LSTM variants the E claims train: registry implementation options (None: the
#: claims' standard implementation).
VARIANTS: dict[str, dict | None] = {
    "standard": None,
    "straight_through": {"gate": "straight_through"},
    "candidate_sigmoid": {"candidate": "sigmoid"},
    "candidate_relu": {"candidate": "relu"},
}
_TRAINED: dict[tuple, dict] = {}


def trained(profile: str, variant: str) -> dict:
    """`choose_and_train` of one variant on the adding task, memoised per process."""
    key = (profile, variant)
    if key not in _TRAINED:
        s = SETTINGS[profile]
        task = make_task("adding", T=s["T"])
        seeds = training.SEEDS[profile]
        options = VARIANTS[variant]
        if options is None:
            cfg = training.config("lstm", s["H"], steps=s["steps"], seed=seeds[0])
            _TRAINED[key] = training.choose_and_train(task, cfg, seeds)
        else:
            name = f"claims-lstm-{variant}"
            with training.temporary_implementation(name, experiment_factory(**options),
                                                   frozenset({"lstm"})):
                cfg = training.config("lstm", s["H"], steps=s["steps"], seed=seeds[0],
                                      impl=name)
                _TRAINED[key] = training.choose_and_train(task, cfg, seeds)
    return _TRAINED[key]


def test_batch(profile: str):
    """Fresh test sequences, apart from the training stream and the validation set."""
    s = SETTINGS[profile]
    task = make_task("adding", T=s["T"])
    return task, task.sample(s["test"], torch.Generator().manual_seed(TEST_SEED))


def record(model: SequenceModel, batch) -> dict[str, torch.Tensor]:
    """Gates and states of `model`'s LSTM on `batch`: name -> (T, B, H)."""
    probe = with_layer(model)
    probe.layer.recording = []
    with torch.no_grad():
        probe(batch.inputs, batch.lengths)
    names = ("i", "f", "g", "o", "c", "h")
    return {n: torch.stack([step[k] for step in probe.layer.recording])
            for k, n in enumerate(names)}


#: A unit is "used" if zeroing its c and h at every step gives back more than this share
#: of what the model gained over the baseline on the test set; only in a model that learned
#: (test MSE below LEARNED x the baseline), since a model that gained nothing has nothing
#: to give back.
USED_SHARE = 0.10
LEARNED = 0.5


def ablation_shares(model: SequenceModel, task: Task, batch) -> list[float]:
    """Per unit: (test MSE with the unit zeroed - test MSE) / (baseline - test MSE)."""
    probe = with_layer(model)
    loss = training.evaluate(probe, task, batch)["loss"]
    gain = task.baseline_loss(batch) - loss
    shares = []
    for unit in range(probe.layer.hidden_size):
        keep = torch.ones(probe.layer.hidden_size, dtype=probe.layer.weight_hh_l0.dtype)
        keep[unit] = 0
        probe.layer.keep = keep
        shares.append((training.evaluate(probe, task, batch)["loss"] - loss) / gain
                      if gain > 0 else 0.0)
    return shares


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _above(interval: dict, level: float) -> bool:
    """The whole 95% interval (the value alone when there is none) lies above `level`."""
    if interval["median"] is None:
        return False
    return (interval["ci95"][0] if interval["ci95"] else interval["median"]) > level


def _below(interval: dict, level: float) -> bool:
    if interval["median"] is None:
        return False
    return (interval["ci95"][1] if interval["ci95"] else interval["median"]) < level


def _inspect(profile: str) -> list[dict]:
    """Per seed of the standard LSTM: test loss, used units, gates and states on test data."""
    task, batch = test_batch(profile)
    runs = trained(profile, "standard")
    rows = []
    for result, model in runs["runs"]:
        learned = (not result.diverged
                   and result.test["loss"] < LEARNED * result.test["baseline_loss"])
        shares = ablation_shares(model, task, batch) if learned else []
        used = [u for u, share in enumerate(shares) if share > USED_SHARE]
        rows.append({"seed": result.config.seed, "lr": runs["lr"],
                     "test_loss": result.test["loss"], "learned": learned,
                     "test_solved": bool(result.test["solved"]),
                     "ablation_shares": shares, "used": used,
                     "states": record(model, batch)})
    return rows


_INSPECTED: dict[str, list[dict]] = {}


def inspected(profile: str) -> list[dict]:
    if profile not in _INSPECTED:
        _INSPECTED[profile] = _inspect(profile)
    return _INSPECTED[profile]


def _settings(profile: str) -> dict:
    return {**listed(SETTINGS[profile]), "seeds": list(training.SEEDS[profile])}


# -- E1: saturated gates -------------------------------------------------------------------

SATURATION = (0.1, 0.9)
HISTOGRAM_BINS = 20
#: "Most" gate values: more than this share.
MOST = 0.5


def _gate_figures(values: torch.Tensor) -> dict:
    values = values.flatten().double()
    low, high = SATURATION
    return {"below": float((values < low).double().mean()),
            "above": float((values > high).double().mean()),
            "histogram": torch.histc(values, HISTOGRAM_BINS, 0, 1).tolist()}


def measure_e1(profile: str) -> dict:
    rows = []
    for r in inspected(profile):
        gates = {}
        for gate in "ifo":
            values = r["states"][gate]
            gates[gate] = {"all": _gate_figures(values),
                           "used": _gate_figures(values[..., r["used"]]) if r["used"] else None}
        rows.append({k: r[k] for k in ("seed", "lr", "test_loss", "learned", "test_solved",
                                       "ablation_shares", "used")} | {"gates": gates})
    return {"settings": _settings(profile), "used_share": USED_SHARE, "rows": rows}


def _saturated(figures: dict) -> float:
    return figures["below"] + figures["above"]


def _e1_intervals(m: dict, units: str) -> dict[str, dict]:
    return {g: median_interval([_saturated(r["gates"][g][units]) for r in m["rows"]
                                if r["gates"][g][units] is not None]) for g in "ifo"}


def decide_e1(m: dict) -> Verdict:
    units = "used" if any(r["used"] for r in m["rows"]) else "all"
    used, every = _e1_intervals(m, "used"), _e1_intervals(m, "all")
    evidence = "; ".join(f"{g}: {fmt(used[g], 'median')} on used units, "
                         f"{fmt(every[g], 'median')} on all units" for g in "ifo")
    chosen = used if units == "used" else every
    fallback = ("" if units == "used" else
                "no seed learned the task, so no unit counts as used and all units decide; ")
    most = [g for g in "ifo" if _above(chosen[g], MOST)]
    few = [g for g in "ifo" if _below(chosen[g], MOST)]
    lead = (f"{fallback}share of gate values < {SATURATION[0]} or > {SATURATION[1]}, median "
            f"over seeds [95% interval]: {evidence}")
    if len(most) == 3:
        return Verdict(SUPPORTED, lead)
    if len(few) == 3:
        return Verdict(NOT_SUPPORTED, lead)
    undecided = [g for g in "ifo" if g not in most and g not in few]
    parts = ([f"most values are saturated for gate(s) {', '.join(most)}"] if most else []) + (
        [f"the seeds do not decide for gate(s) {', '.join(undecided)} (the interval holds "
         f"{MOST:.0%})"] if undecided else []) + (
        [f"fewer than half are for gate(s) {', '.join(few)}"] if few else [])
    return Verdict(DEPENDS, f"on the {units} units: {'; '.join(parts)}; {lead}")


def summarize_e1(m: dict) -> str:
    s = m["settings"]
    rows = []
    for r in m["rows"]:
        for g in "ifo":
            used = r["gates"][g]["used"]
            rows.append([r["seed"], g, r["learned"], r["test_solved"], r["test_loss"],
                         len(r["used"]), _saturated(r["gates"][g]["all"]),
                         "n/a" if used is None else f"{_saturated(used):.3g}"])
    return "\n".join([
        f"LSTM H={s['H']} trained on the adding task T={s['T']} for {s['steps']} steps "
        f"({training.describe()}), seeds {s['seeds']} at learning rate {m['rows'][0]['lr']:g}. "
        f"Gate values over {s['test']} fresh test sequences x all steps. A unit is used if "
        f"zeroing its c and h at every step gives back more than {m['used_share']:.0%} of the "
        "model's gain over the baseline test MSE, in seeds that learned (test MSE below "
        f"{LEARNED:g} x baseline); "
        "saturated = share of values < 0.1 or > 0.9.", "",
        table(["seed", "gate", "learned", "solved (MSE < 0.01)", "test MSE", "used units",
               "saturated, all units", "saturated, used units"], rows),
    ])


def plot_e1(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    for ax, gate in zip(axes, "ifo"):
        for units, style in (("all", dict(color="tab:grey", ls="--")),
                             ("used", dict(color="tab:blue", lw=2))):
            counts = [np.asarray(r["gates"][gate][units]["histogram"]) for r in m["rows"]
                      if r["gates"][gate][units] is not None]
            if counts:
                total = np.sum(counts, axis=0)
                share = median_interval([_saturated(r["gates"][gate][units])
                                         for r in m["rows"]
                                         if r["gates"][gate][units] is not None])
                ax.stairs(total / total.sum(), edges,
                          label=f"{units} units: {fmt(share, 'median')} saturated", **style)
        for x in SATURATION:
            ax.axvline(x, color="black", ls=":", lw=0.8)
        ax.set(title=f"gate {gate}", xlabel="gate value")
        ax.legend(fontsize=7, loc="upper center")
    axes[0].set_ylabel("share of values (all seeds)")
    fig.suptitle("Gate values of trained LSTMs on test data (dotted: 0.1 and 0.9)")
    fig.tight_layout()
    path = directory / "E1_gate_histograms.png"
    save_figure(fig, path)
    return [path]


def against_e1(m: dict) -> str:
    used, every = _e1_intervals(m, "used"), _e1_intervals(m, "all")
    ours = ", ".join(f"{g} {fmt(used[g], 'median')} (all units {fmt(every[g], 'median')})"
                     for g in "ifo")
    agree = all(_above(used[g], MOST) for g in "ifo")
    if all(used[g]["median"] is None for g in "ifo"):
        verdict = ("No seed learned the task, so no unit counts as used and there is nothing "
                   "to hold against their finding.")
    elif agree:
        verdict = ("Here the gates of the used units are mostly saturated, unlike their "
                   "finding; the adding task needs only to store or ignore a value, which "
                   "invites on/off gates, whereas their language and translation models had "
                   "graded work for the gates.")
    else:
        verdict = "Like them, we find ordinary training does not pin every gate to 0 or 1."
    return (
        "Li et al. 2018 found that ordinary training leaves a large part of an LSTM's input "
        "and forget gate values away from 0 and 1, which is why they trained gates towards "
        "binary values (Gumbel-sigmoid) instead. Our share of saturated values (< 0.1 or "
        f"> 0.9) on the units the model uses: {ours}. {verdict}"
    )


# -- E2: binary gates ------------------------------------------------------------------------

#: A variant is "usable" if its test MSE stays below this fraction of the baseline.
USABLE_FRACTION = 0.1
E2_FIGURES = {"sigmoid": "sigmoid gates (as trained)",
              "thresholded": "sigmoid-trained, gates cut to 0/1 after training",
              "straight_through": "trained with 0/1 gates (straight-through)"}


def measure_e2(profile: str) -> dict:
    task, batch = test_batch(profile)
    soft, hard = trained(profile, "standard"), trained(profile, "straight_through")
    rows = []
    for (soft_result, soft_model), (hard_result, hard_model) in zip(soft["runs"], hard["runs"]):
        rows.append({
            "seed": soft_result.config.seed,
            "sigmoid": training.evaluate(with_layer(soft_model), task, batch)["loss"],
            "thresholded": training.evaluate(with_layer(soft_model, inference_gate="step"),
                                             task, batch)["loss"],
            "straight_through": training.evaluate(
                with_layer(hard_model, gate="straight_through"), task, batch)["loss"],
            "straight_through_diverged": hard_result.diverged,
        })
    return {"settings": _settings(profile), "baseline": task.baseline_loss(batch),
            "lr": {"sigmoid": soft["lr"], "straight_through": hard["lr"]}, "rows": rows}


def _e2_intervals(m: dict) -> dict[str, dict]:
    return {k: median_interval(_finite([r[k] for r in m["rows"]])) for k in E2_FIGURES}


def decide_e2(m: dict) -> Verdict:
    limit = USABLE_FRACTION * m["baseline"]
    med = _e2_intervals(m)
    evidence = ("test MSE, median over seeds [95% interval]: "
                + "; ".join(f"{E2_FIGURES[k]} {fmt(med[k], 'median')}" for k in E2_FIGURES)
                + f"; usable below {limit:.3g}")
    if _below(med["thresholded"], limit):
        return Verdict(SUPPORTED, f"0/1 gates stay usable even without training for them; "
                       f"{evidence}")
    if _below(med["straight_through"], limit):
        return Verdict(DEPENDS, "0/1 gates are usable only if the LSTM is trained with them "
                       f"(straight-through); cutting a sigmoid-trained LSTM's gates is not; "
                       f"{evidence}")
    undecided = [E2_FIGURES[k] for k in ("thresholded", "straight_through")
                 if not _above(med[k], limit)]
    if undecided:
        return Verdict(DEPENDS, f"the seeds do not decide whether {' or '.join(undecided)} "
                       f"stays usable (the interval holds the limit); {evidence}")
    return Verdict(NOT_SUPPORTED, f"no way of getting 0/1 gates stays usable; {evidence}")


def summarize_e2(m: dict) -> str:
    s = m["settings"]
    med = _e2_intervals(m)
    rows = [[r["seed"], r["sigmoid"], r["thresholded"], r["straight_through"]]
            for r in m["rows"]]
    rows.append(["median [95%]", *(fmt(med[k], "median") for k in E2_FIGURES)])
    return "\n".join([
        f"Adding task T={s['T']} (test baseline MSE {m['baseline']:.3f}), H={s['H']}, "
        f"{s['steps']} steps of {training.describe()}; chosen rates: sigmoid-trained "
        f"{m['lr']['sigmoid']:g}, straight-through {m['lr']['straight_through']:g}. Test MSE "
        f"on {s['test']} fresh sequences. Cut to 0/1: every gate replaced by the step "
        "function (a > 0) in the trained model, read-out unchanged. Straight-through: the "
        "gates are the step function in the forward pass and take the sigmoid's gradient in "
        "the backward pass (as in binary-gate training, Li et al. 2018), and stay 0/1 at "
        "test; that variant runs in this module's step-by-step LSTM, not `scripted`.", "",
        table(["seed", *E2_FIGURES.values()], rows),
    ])


def interval_plot(ax, groups: list[tuple[str, list[float]]], colour="tab:blue"):
    """Seeds as dots, the median and its 95% interval as a bar, one column per group."""
    for k, (_, values) in enumerate(groups):
        values = _finite(values)
        if not values:
            continue
        ax.scatter([k + 0.12] * len(values), values, s=14, color="tab:grey", zorder=2)
        interval = median_interval(values)
        low, high = interval["ci95"] or (interval["median"],) * 2
        ax.errorbar([k - 0.08], [interval["median"]], fmt="o", color=colour, capsize=4,
                    yerr=[[interval["median"] - low], [high - interval["median"]]], zorder=3)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups], fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.5)


def plot_e2(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = {"sigmoid": "sigmoid gates", "thresholded": "sigmoid-trained,\ncut to 0/1",
              "straight_through": "trained 0/1\n(straight-through)"}
    interval_plot(ax, [(labels[k], [r[k] for r in m["rows"]]) for k in E2_FIGURES])
    ax.axhline(m["baseline"], color="tab:red", ls="--", lw=0.8, label="baseline (predict 1)")
    ax.axhline(USABLE_FRACTION * m["baseline"], color="tab:green", ls=":", lw=0.8,
               label=f"usable: {USABLE_FRACTION:g} x baseline")
    ax.set(yscale="log", ylabel="test MSE (log)",
           title="0/1 gates: test MSE (dots: seeds; bar: median, 95% interval)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = directory / "E2_binary_gates.png"
    save_figure(fig, path)
    return [path]


def against_e2(m: dict) -> str:
    med = _e2_intervals(m)
    cost = {k: ratio_interval(_finite([r[k] for r in m["rows"]]),
                              _finite([r["sigmoid"] for r in m["rows"]]))
            for k in ("thresholded", "straight_through")}
    limit = USABLE_FRACTION * m["baseline"]
    binary, cut = cost["straight_through"], cost["thresholded"]
    if binary["ratio"] is None or cut["ratio"] is None:
        finding = "Too few runs finished to compare the two."
    elif (binary["ci95"] or [binary["ratio"]] * 2)[1] < (cut["ci95"] or [cut["ratio"]] * 2)[0]:
        finding = ("As in their work, training with binary gates costs far less than cutting "
                   "the gates of a sigmoid-trained LSTM"
                   + (", and here it stays usable." if _below(med["straight_through"], limit)
                      else ", though at this budget neither stays usable."))
    else:
        finding = ("Unlike their work, training with binary gates is not clearly better than "
                   "cutting the gates after training here; our straight-through estimator is "
                   "cruder than their Gumbel-sigmoid, and our budgets far smaller.")
    return (
        "Li et al. 2018 pushed gates towards 0/1 during training (Gumbel-sigmoid) and then "
        "rounded them, losing little on language modelling and translation, while rounding "
        "an ordinarily trained LSTM cost much more. Ours, test MSE against the sigmoid "
        f"LSTM's {fmt(med['sigmoid'], 'median')}: cutting its gates to 0/1 multiplies it by "
        f"{fmt(cut, 'ratio')}; training with 0/1 gates (straight-through) gives "
        f"{fmt(binary, 'ratio')} times it. {finding}"
    )


# -- E3: slow c, fast h ----------------------------------------------------------------------


def change_statistics(states: torch.Tensor, units=None) -> dict:
    """(T, B, H) -> mean |x_t - x_(t-1)| / std(x) and lag-1 autocorrelation per unit,
    averaged over `units` (all by default)."""
    x = states.double() if units is None else states.double()[..., list(units)]
    std = x.std(dim=(0, 1)).clamp_min(1e-12)
    step = (x[1:] - x[:-1]).abs().mean(dim=(0, 1)) / std
    centred = x - x.mean(dim=(0, 1))
    autocorr = (centred[1:] * centred[:-1]).mean(dim=(0, 1)) / centred.pow(2).mean(
        dim=(0, 1)).clamp_min(1e-24)
    return {"normalised_step": float(step.mean()), "autocorrelation": float(autocorr.mean())}


def measure_e3(profile: str) -> dict:
    rows = []
    for r in inspected(profile):
        states = r["states"]
        figures = {"all": {k: change_statistics(states[k]) for k in "ch"},
                   "used": ({k: change_statistics(states[k], r["used"]) for k in "ch"}
                            if r["used"] else None)}
        rows.append({"seed": r["seed"], "learned": r["learned"], "used_units": r["used"],
                     **figures})
    return {"settings": _settings(profile), "used_share": USED_SHARE, "rows": rows}


#: E3: c is "clearly slower" if its normalised step is below this fraction of h's.
E3_SLOWER = 0.8


def _step_ratio(figures: dict) -> float:
    return figures["c"]["normalised_step"] / figures["h"]["normalised_step"]


def _e3_interval(m: dict, units: str) -> dict:
    return median_interval(_finite([_step_ratio(r[units]) for r in m["rows"]
                                    if r[units] is not None]))


def decide_e3(m: dict) -> Verdict:
    units = "used" if any(r["used"] is not None for r in m["rows"]) else "all"
    chosen, every = _e3_interval(m, units), _e3_interval(m, "all")
    fallback = ("" if units == "used" else
                "no seed learned the task, so no unit counts as used and all units decide; ")
    evidence = (f"{fallback}normalised step of c / that of h, median over seeds [95% "
                f"interval]: used units {fmt(_e3_interval(m, 'used'), 'median')}, all units "
                f"{fmt(every, 'median')}")
    if _below(chosen, E3_SLOWER):
        return Verdict(SUPPORTED, evidence)
    if _above(chosen, E3_SLOWER):
        return Verdict(NOT_SUPPORTED, f"c is not clearly slower than h; {evidence}")
    slower = [r["seed"] for r in m["rows"]
              if r[units] is not None and _step_ratio(r[units]) < E3_SLOWER]
    return Verdict(DEPENDS, f"c is clearly slower only in seeds {slower}, and the interval "
                   f"spans {E3_SLOWER}; {evidence}")


def summarize_e3(m: dict) -> str:
    s = m["settings"]
    rows = []
    for r in m["rows"]:
        for units in ("used", "all"):
            f = r[units]
            if f is None:
                rows.append([r["seed"], units, 0, "n/a", "n/a", "n/a", "n/a", "n/a"])
                continue
            rows.append([r["seed"], units, len(r["used_units"]) if units == "used" else "all",
                         f["c"]["normalised_step"], f["h"]["normalised_step"], _step_ratio(f),
                         f["c"]["autocorrelation"], f["h"]["autocorrelation"]])
    return "\n".join([
        f"The E1 LSTMs (adding task T={s['T']}, H={s['H']}) on {s['test']} fresh test "
        "sequences. Normalised step: mean |x_t - x_(t-1)| / std(x) per unit; lag-1 "
        "autocorrelation per unit; both averaged over the used units (as in E1) and over all "
        "units.", "",
        table(["seed", "units", "count", "step c", "step h", "c / h", "autocorrelation c",
               "autocorrelation h"], rows),
    ])


def plot_e3(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    interval_plot(ax, [(f"{units} units", [_step_ratio(r[units]) for r in m["rows"]
                                            if r[units] is not None])
                        for units in ("used", "all")])
    ax.axhline(1.0, color="tab:grey", ls="--", lw=0.8, label="c as fast as h")
    ax.axhline(E3_SLOWER, color="tab:green", ls=":", lw=0.8,
               label=f"clearly slower: < {E3_SLOWER}")
    ax.set(ylabel="normalised step of c / of h",
           title="How fast c moves against h (dots: seeds; bar: median, 95%)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = directory / "E3_state_speed.png"
    save_figure(fig, path)
    return [path]


def against_e3(m: dict) -> str:
    return (
        "No paper we know reports a step-change or autocorrelation statistic of c against h. "
        "The closest is Karpathy, Johnson & Fei-Fei 2015 (Visualizing and understanding "
        "recurrent networks), who found single cells that hold a value over long spans (a "
        "quote or line-length tracker) in character models: qualitative, with no figure to "
        "compare. Ours: c's normalised step is "
        f"{fmt(_e3_interval(m, 'used'), 'median')} times h's on the used units, "
        f"{fmt(_e3_interval(m, 'all'), 'median')} on all units."
    )


# -- E4: the candidate's activation ----------------------------------------------------------

CANDIDATE_VARIANTS = {"tanh": "standard", "sigmoid": "candidate_sigmoid",
                      "relu": "candidate_relu"}


def measure_e4(profile: str) -> dict:
    s = SETTINGS[profile]
    rows, rates = [], {}
    for candidate, variant in CANDIDATE_VARIANTS.items():
        runs = trained(profile, variant)
        rates[candidate] = runs["lr"]
        for result, _ in runs["runs"]:
            rows.append({"candidate": candidate, "seed": result.config.seed,
                         "test_loss": result.test["loss"],
                         "steps_to_threshold": result.steps_to_threshold,
                         "diverged": result.diverged,
                         "evals": [{"step": e["step"], "loss": e["loss"]}
                                   for e in result.evals]})
    slopes = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}
    return {"settings": _settings(profile), "baseline": 1 / 6, "lr": rates, "rows": rows,
            "budget": s["steps"], "slope_at_zero": slopes,
            "value_at_zero": {"tanh": 0.0, "sigmoid": 0.5, "relu": 0.0}}


def _e4_values(m: dict, candidate: str, key: str) -> list[float]:
    chosen = [r for r in m["rows"] if r["candidate"] == candidate and not r["diverged"]]
    if key == "steps":
        # A run that never reached the threshold would need more than the budget: it
        # counts as twice the budget.
        return [float(max(1, r["steps_to_threshold"] if r["steps_to_threshold"] is not None
                          else 2 * m["budget"])) for r in chosen]
    return _finite([r["test_loss"] for r in chosen])


def _e4_ratios(m: dict) -> dict[str, dict]:
    """sigmoid / tanh of test MSE and of steps to the threshold: above 1, tanh is better."""
    return {key: ratio_interval(_e4_values(m, "sigmoid", key), _e4_values(m, "tanh", key))
            for key in ("loss", "steps")}


def _side(interval: dict) -> int:
    """+1: tanh better beyond the seeds' noise; -1: sigmoid better; 0: neither."""
    if interval["ratio"] is None:
        return 0
    low, high = interval["ci95"] or (interval["ratio"],) * 2
    return 1 if low > 1 else -1 if high < 1 else 0


def decide_e4(m: dict) -> Verdict:
    ratios = _e4_ratios(m)
    sides = {k: _side(v) for k, v in ratios.items()}
    evidence = (f"sigmoid / tanh candidate, median ratio [95% interval]: test MSE "
                f"{fmt(ratios['loss'], 'ratio')}, steps to MSE < 0.01 "
                f"{fmt(ratios['steps'], 'ratio')} (above 1: tanh better)")
    better = [k for k, v in sides.items() if v > 0]
    worse = [k for k, v in sides.items() if v < 0]
    names = {"loss": "test MSE", "steps": "speed"}
    if better and not worse:
        return Verdict(SUPPORTED, f"tanh is better by {' and '.join(names[k] for k in better)}"
                       f"; {evidence}")
    if better and worse:
        return Verdict(DEPENDS, f"tanh is better by {names[better[0]]} but worse by "
                       f"{names[worse[0]]}; {evidence}")
    return Verdict(NOT_SUPPORTED, f"tanh is better by neither test MSE nor speed; {evidence}")


def summarize_e4(m: dict) -> str:
    s = m["settings"]
    rows = []
    for candidate in CANDIDATE_FUNCTIONS:
        chosen = [r for r in m["rows"] if r["candidate"] == candidate]
        reached = [r["steps_to_threshold"] for r in chosen if r["steps_to_threshold"]]
        rows.append([candidate, m["value_at_zero"][candidate], m["slope_at_zero"][candidate],
                     f"{m['lr'][candidate]:g}",
                     fmt(median_interval(_e4_values(m, candidate, "loss")), "median"),
                     ", ".join(f"{r['test_loss']:.3g}" for r in chosen),
                     f"{len(reached)}/{len(chosen)}"
                     + (f", median {_median(reached):.0f}" if reached else ""),
                     sum(r["diverged"] for r in chosen)])
    return "\n".join([
        f"LSTM with the candidate g's activation swapped (gates stay sigmoid), adding task "
        f"T={s['T']}, H={s['H']}, {s['steps']} steps of {training.describe()}, seeds "
        f"{s['seeds']}; the learning rate is searched per candidate; the swapped candidates "
        "run in this module's step-by-step LSTM, not `scripted`. Test MSE on the "
        "trainer's test set, median [95% interval]; steps to the threshold are counted on the "
        "validation set (a run that never reaches it counts as twice the budget):", "",
        table(["candidate", "value at 0", "slope at 0", "rate", "test MSE", "per seed",
               "reached MSE < 0.01 (steps)", "diverged"], rows),
    ])


def plot_e4(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, (curves, final) = plt.subplots(1, 2, figsize=(11, 4),
                                        gridspec_kw={"width_ratios": [3, 2]})
    colours = dict(zip(CANDIDATE_FUNCTIONS, ("tab:blue", "tab:orange", "tab:green")))
    for candidate in CANDIDATE_FUNCTIONS:
        chosen = [r for r in m["rows"] if r["candidate"] == candidate and r["evals"]]
        if not chosen:
            continue
        steps = [e["step"] for e in chosen[0]["evals"]]
        losses = np.array([[e["loss"] for e in r["evals"]] for r in chosen
                           if len(r["evals"]) == len(steps)], dtype=float)
        if losses.size:
            curves.plot(steps, np.nanmedian(losses, axis=0), color=colours[candidate],
                        label=f"{candidate} (median)")
            curves.fill_between(steps, np.nanmin(losses, axis=0), np.nanmax(losses, axis=0),
                                color=colours[candidate], alpha=0.15)
    curves.axhline(m["baseline"], color="grey", ls="--", lw=0.8, label="baseline")
    curves.axhline(0.01, color="black", ls=":", lw=0.8, label="threshold 0.01")
    curves.set(yscale="log", xlabel="step", ylabel="validation MSE (log)",
               title="Learning curves (band: min-max over seeds)")
    curves.legend(fontsize=8)
    interval_plot(final, [(c, _e4_values(m, c, "loss")) for c in CANDIDATE_FUNCTIONS])
    final.axhline(m["baseline"], color="grey", ls="--", lw=0.8)
    final.set(yscale="log", ylabel="test MSE (log)", title="Test MSE (median, 95%)")
    fig.tight_layout()
    path = directory / "E4_candidate_activation.png"
    save_figure(fig, path)
    return [path]


def against_e4(m: dict) -> str:
    ratios = _e4_ratios(m)
    return (
        "Greff et al. 2017 (LSTM: a search space odyssey) found that removing the "
        "candidate's activation (their no-input-activation variant) or the output's "
        "significantly hurt on speech, handwriting and music; they did not try a sigmoid "
        "candidate, so no paper gives the tanh-against-sigmoid figure itself. Ours: a sigmoid "
        f"candidate's test MSE is {fmt(ratios['loss'], 'ratio')} times tanh's, and it takes "
        f"{fmt(ratios['steps'], 'ratio')} times the steps to MSE < 0.01. "
        + ("Like theirs, the candidate's activation matters here."
           if _side(ratios["loss"]) != 0 or _side(ratios["steps"]) != 0 else
           "Unlike their removal of the activation, swapping it for a sigmoid makes no "
           "difference beyond the seeds' noise on this task.")
    )


CLAIMS = [
    Claim(
        id="E1", notes=(f"{NOTE_003} §forget gate", f"{NOTE_002} §1.3"),
        statement=("Once an LSTM is trained, nearly every gate activation is pinned close to "
                   "0 or close to 1."),
        method=("LSTMs trained on the adding problem (learning rate searched, several seeds) "
                "are run on fresh test sequences while recording every input, forget and "
                "output gate value at every step; the units the model uses are found by "
                "ablation (zeroing one unit's c and h at every step and measuring the test "
                "MSE), and per gate the share of values below 0.1 or above 0.9 is reported on "
                "the used units and on all units."),
        rule=(f"a unit is used if zeroing its c and h gives back more than {USED_SHARE:.0%} of "
              "the model's gain over the baseline test MSE, in seeds that learned (test MSE "
              f"below {LEARNED:g} x baseline). "
              f"Per gate (i, f, o), the share of used units' test values < {SATURATION[0]} or "
              f"> {SATURATION[1]}, median over seeds with its 95% bootstrap interval: "
              f"supported if the interval lies above {MOST:.0%} for every gate, not supported "
              f"if it lies below {MOST:.0%} for every gate, depends otherwise (naming the "
              "gates above, below and undecided). If no seed learned the task, all units "
              "decide."),
        anchors=(Anchor("Li et al. 2018 (Towards binary-valued gates for robust LSTM "
                        "training)", "with ordinary training only part of an LSTM's gate "
                        "values end up near 0 or 1"),),
        measure=measure_e1, decide=decide_e1, summarize=summarize_e1, plot=plot_e1,
        against=against_e1),
    Claim(
        id="E2", notes=(f"{NOTE_000} §4",),
        statement=("Where compute is scarce, the gates may be cut to hard 0/1 values "
                   "instead of sigmoids."),
        method=("On the adding problem, several seeds: an LSTM trained with sigmoid gates, "
                "then its gates replaced at test by a step function (0 or 1, read-out "
                "unchanged); and an LSTM trained with binary gates (straight-through: 0/1 in "
                "the forward pass, the sigmoid's gradient in the backward pass), tested with "
                "0/1 gates; each with its own learning-rate search. Test MSE against the "
                "sigmoid model's and the baseline."),
        rule=(f"'usable' = the median test MSE's 95% interval lies below {USABLE_FRACTION} x "
              "the baseline. Supported if the sigmoid-trained LSTM with gates cut to 0/1 is "
              "usable; depends if only the LSTM trained with 0/1 gates (straight-through) "
              "is, or if either interval holds the limit; not supported if both lie above "
              "it."),
        anchors=(Anchor("Li et al. 2018 (Towards binary-valued gates for robust LSTM "
                        "training)", "gates pushed to 0/1 in training (Gumbel-sigmoid) can "
                        "be rounded afterwards at little cost in language modelling and "
                        "translation, unlike those of an ordinarily trained LSTM"),),
        measure=measure_e2, decide=decide_e2, summarize=summarize_e2, plot=plot_e2,
        against=against_e2),
    Claim(
        id="E3", notes=(f"{NOTE_002} §2.1",),
        statement=("Between steps the cell state c drifts slowly, whereas the hidden state h "
                   "moves fast."),
        method=("E1's trained LSTMs on fresh test sequences: per unit, the mean absolute "
                "change from one step to the next divided by the unit's standard deviation, "
                "and the lag-1 autocorrelation, for c and for h, averaged over E1's used units "
                "and over all units."),
        rule=(f"per seed, the ratio of c's normalised step change to h's on the used units "
              f"(as in E1); supported if the median's 95% interval lies below {E3_SLOWER}, "
              f"not supported if it lies above {E3_SLOWER}, depends if it spans it (naming "
              "the seeds where c is slower). If no seed learned the task, all units decide."),
        anchors=(Anchor("Karpathy, Johnson & Fei-Fei 2015", "single LSTM cells of character "
                        "models hold values over long spans (quote, line-length trackers); "
                        "qualitative, no statistic of c against h"),),
        measure=measure_e3, decide=decide_e3, summarize=summarize_e3, plot=plot_e3,
        against=against_e3),
    Claim(
        id="E4", notes=(f"{NOTE_000} §4", f"{NOTE_001} §2 (gate activations)"),
        statement=("The gates take a sigmoid and the candidate a tanh; tanh suits the "
                   "candidate because it is centred on zero and steeper there than the "
                   "sigmoid, which makes training go better."),
        method=("LSTMs with the candidate's activation swapped (tanh, sigmoid, ReLU; the "
                "gates stay sigmoid) trained on the adding problem with the same budget and "
                "seeds and a learning rate searched per candidate; test MSE and steps to the "
                "success threshold, with the learning curves."),
        rule=("sigmoid / tanh ratio of the median test MSE and of the median steps to "
              "validation MSE < 0.01 (unreached: twice the budget), each with a 95% bootstrap "
              "interval; tanh is better by a figure if its interval lies above 1, worse if "
              "below. Supported if tanh is better by at least one and worse by none, depends "
              "if better by one and worse by the other, not supported if better by neither. "
              "(ReLU is shown, not ruled on.)"),
        anchors=(Anchor("Greff et al. 2017 (LSTM: a search space odyssey)", "removing the "
                        "candidate's (input) activation or the output activation "
                        "significantly hurt performance on TIMIT, IAM Online and JSB "
                        "Chorales"),),
        measure=measure_e4, decide=decide_e4, summarize=summarize_e4, plot=plot_e4,
        against=against_e4),
]
