"""Claims E1-E4: what the gates and states of a trained LSTM look like, and gate variants.

An LSTM is trained on the adding task through `bench.training.trainer` (the claims' one setting),
caught after training (`training.train_and_keep`), and its weights loaded into
`ExperimentLSTM`, an LSTM written out step by step that can record its gates and states
and swap its gate and candidate functions. With sigmoid gates and a tanh candidate it is
the standard LSTM (tests check it against the `reference` implementation).
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
    table,
)
from bench.claims.longrange import listed
from bench.training.tasks import make_task
from bench.training.trainer import SequenceModel

GATE_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    # PyTorch's hard sigmoid, relu6(a + 3) / 6: linear on [-3, 3], exactly 0 or 1 outside.
    "hard_sigmoid": F.hardsigmoid,
    # A hard threshold: the gate is fully open or fully shut (no gradient: inference only).
    "step": lambda a: (a > 0).to(a.dtype),
}
CANDIDATE_FUNCTIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}


class ExperimentLSTM(impls.RecurrentLayer):
    """An LSTM (gate order i, f, g, o; PyTorch's parameters) with swappable parts.

    gate: the gate function while training. inference_gate: the gate function when autograd
    is off (the trainer evaluates under `torch.no_grad`), None for the same as `gate`.
    candidate: the activation of g. Set `recording` to a list to collect per step the
    gates and states (i, f, g, o, c, h), each (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, *, gate: str = "sigmoid",
                 candidate: str = "tanh", inference_gate: str | None = None,
                 device="cpu", dtype=torch.float32, **options):
        for arg, value, known in (("gate", gate, ("sigmoid", "hard_sigmoid")),
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


SETTINGS = {
    "smoke": {"T": 8, "H": 8, "steps": 30, "seeds": (0,), "test": 100},
    "quick": {"T": 20, "H": 32, "steps": 400, "seeds": (0, 1), "test": 500},
    "default": {"T": 25, "H": 32, "steps": 500, "seeds": (0, 1, 2), "test": 1000},
}
TEST_SEED = 4_242
_TRAINED: dict[tuple, tuple] = {}


def trained_lstm(profile: str, seed: int):
    """The LSTM the E claims inspect: trained on the adding task, memoised per process."""
    key = (profile, seed)
    if key not in _TRAINED:
        s = SETTINGS[profile]
        task = make_task("adding", T=s["T"])
        cfg = training.config("lstm", s["H"], steps=s["steps"], seed=seed)
        _TRAINED[key] = training.train_and_keep(task, cfg)
    return _TRAINED[key]


def test_batch(profile: str):
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


def _settings(profile: str) -> dict:
    return listed(SETTINGS[profile])


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


# -- E1: saturated gates -------------------------------------------------------------------

SATURATION = (0.1, 0.9)
HISTOGRAM_BINS = 20


def measure_e1(profile: str) -> dict:
    task, batch = test_batch(profile)
    rows = []
    for seed in SETTINGS[profile]["seeds"]:
        result, model = trained_lstm(profile, seed)
        states = record(model, batch)
        for gate in ("i", "f", "o"):
            values = states[gate].flatten()
            low, high = SATURATION
            rows.append({
                "seed": seed, "gate": gate, "final_loss": result.final["loss"],
                "solved": result.solved,
                "below": float((values < low).double().mean()),
                "above": float((values > high).double().mean()),
                "histogram": torch.histc(values.double(), HISTOGRAM_BINS, 0, 1).tolist(),
            })
    return {"settings": _settings(profile), "rows": rows}


def _saturated(row) -> float:
    return row["below"] + row["above"]


def decide_e1(m: dict) -> Verdict:
    by_gate = {g: [_saturated(r) for r in m["rows"] if r["gate"] == g] for g in "ifo"}
    evidence = "; ".join(f"{g}: {', '.join(f'{v:.0%}' for v in vals)}"
                         for g, vals in by_gate.items())
    most = [g for g, vals in by_gate.items() if all(v > 0.5 for v in vals)]
    if len(most) == 3:
        return Verdict(SUPPORTED, f"share of gate values < 0.1 or > 0.9, per seed: {evidence}")
    if most:
        return Verdict(DEPENDS, f"most values are saturated only for gates {most}; share "
                       f"< 0.1 or > 0.9 per seed: {evidence}")
    return Verdict(NOT_SUPPORTED, f"share of gate values < 0.1 or > 0.9, per seed: {evidence}")


def summarize_e1(m: dict) -> str:
    s = m["settings"]
    rows = [[r["seed"], r["gate"], r["solved"], r["final_loss"], r["below"], r["above"],
             _saturated(r)] for r in m["rows"]]
    return "\n".join([
        f"LSTM H={s['H']} trained on the adding task T={s['T']} for {s['steps']} steps "
        f"({training.describe()}); gate values over {s['test']} fresh held-out sequences x "
        "all steps x all units:", "",
        table(["seed", "gate", "solved", "final MSE", "share < 0.1", "share > 0.9",
               "saturated"], rows),
    ])


def plot_e1(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    for ax, gate in zip(axes, "ifo"):
        for r in (r for r in m["rows"] if r["gate"] == gate):
            counts = np.asarray(r["histogram"])
            ax.stairs(counts / counts.sum(), edges, label=f"seed {r['seed']}")
        for x in SATURATION:
            ax.axvline(x, color="grey", ls=":", lw=0.8)
        ax.set(title=f"gate {gate}", xlabel="gate value")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("share of values")
    fig.suptitle("Gate values of a trained LSTM on held-out data")
    fig.tight_layout()
    path = directory / "E1_gate_histograms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


# -- E2: hard gates ------------------------------------------------------------------------

#: A variant is "usable" if its held-out MSE stays below this fraction of the baseline.
USABLE_FRACTION = 0.1


def measure_e2(profile: str) -> dict:
    s = SETTINGS[profile]
    task, batch = test_batch(profile)
    rows = []
    name = "claims-lstm-hard-sigmoid"
    for seed in s["seeds"]:
        _, soft_model = trained_lstm(profile, seed)
        with training.temporary_implementation(name, experiment_factory(gate="hard_sigmoid"),
                                               frozenset({"lstm"})):
            cfg = training.config("lstm", s["H"], steps=s["steps"], seed=seed, impl=name)
            hard_result, hard_model = training.train_and_keep(task, cfg)
        rows.append({
            "seed": seed,
            "sigmoid_trained": training.evaluate(soft_model, task, batch)["loss"],
            "sigmoid_trained_step_inference": training.evaluate(
                with_layer(soft_model, inference_gate="step"), task, batch)["loss"],
            "hard_sigmoid_trained": training.evaluate(hard_model, task, batch)["loss"],
            "hard_sigmoid_trained_step_inference": training.evaluate(
                with_layer(hard_model, gate="hard_sigmoid", inference_gate="step"), task,
                batch)["loss"],
            "hard_sigmoid_solved": hard_result.solved,
        })
    return {"settings": _settings(profile), "baseline": task.baseline_loss(), "rows": rows}


def decide_e2(m: dict) -> Verdict:
    limit = USABLE_FRACTION * m["baseline"]
    soft_ok = all(r["sigmoid_trained_step_inference"] < limit for r in m["rows"])
    hard_ok = all(r["hard_sigmoid_trained_step_inference"] < limit for r in m["rows"])
    evidence = ("held-out MSE with 0/1 gates at inference, per seed: trained with sigmoid "
                + ", ".join(f"{r['sigmoid_trained_step_inference']:.3g} (soft "
                            f"{r['sigmoid_trained']:.3g})" for r in m["rows"])
                + "; trained with hard sigmoid "
                + ", ".join(f"{r['hard_sigmoid_trained_step_inference']:.3g} (hard sigmoid "
                            f"{r['hard_sigmoid_trained']:.3g})" for r in m["rows"]))
    if soft_ok:
        return Verdict(SUPPORTED, f"0/1 gates keep MSE < {limit:.3g} even without training for "
                       f"them; {evidence}")
    if hard_ok:
        return Verdict(DEPENDS, f"0/1 gates keep MSE < {limit:.3g} only if the LSTM was trained "
                       f"with hard-sigmoid gates; thresholding a sigmoid-trained LSTM breaks "
                       f"it; {evidence}")
    return Verdict(NOT_SUPPORTED, f"0/1 gates push MSE above {limit:.3g}; {evidence}")


def summarize_e2(m: dict) -> str:
    s = m["settings"]
    rows = [[r["seed"], r["sigmoid_trained"], r["sigmoid_trained_step_inference"],
             r["hard_sigmoid_trained"], r["hard_sigmoid_trained_step_inference"]]
            for r in m["rows"]]
    return "\n".join([
        f"Adding task T={s['T']} (baseline MSE {m['baseline']:.3f}), H={s['H']}, {s['steps']} "
        f"steps of {training.describe()}; held-out MSE on {s['test']} fresh sequences. "
        "'0/1 at inference': every gate replaced by the step function (a > 0) in the trained "
        "model, read-out unchanged. Hard sigmoid: PyTorch's relu6(a+3)/6.", "",
        table(["seed", "sigmoid", "sigmoid-trained, 0/1 at inference", "hard sigmoid",
               "hard-sigmoid-trained, 0/1 at inference"], rows),
    ])


# -- E3: slow c, fast h ----------------------------------------------------------------------


def change_statistics(states: torch.Tensor) -> dict:
    """(T, B, H) -> mean |x_t - x_(t-1)| / std(x) and lag-1 autocorrelation, unit-averaged."""
    x = states.double()
    std = x.std(dim=(0, 1)).clamp_min(1e-12)
    step = (x[1:] - x[:-1]).abs().mean(dim=(0, 1)) / std
    centred = x - x.mean(dim=(0, 1))
    autocorr = (centred[1:] * centred[:-1]).mean(dim=(0, 1)) / centred.pow(2).mean(
        dim=(0, 1)).clamp_min(1e-24)
    return {"normalised_step": float(step.mean()), "autocorrelation": float(autocorr.mean())}


def measure_e3(profile: str) -> dict:
    _, batch = test_batch(profile)
    rows = []
    for seed in SETTINGS[profile]["seeds"]:
        result, model = trained_lstm(profile, seed)
        states = record(model, batch)
        rows.append({"seed": seed, "solved": result.solved,
                     "c": change_statistics(states["c"]), "h": change_statistics(states["h"])})
    return {"settings": _settings(profile), "rows": rows}


#: E3: c is "clearly slower" if its normalised step is below this fraction of h's.
E3_SLOWER = 0.8


def _c_slower(row) -> bool:
    return (row["c"]["normalised_step"] < E3_SLOWER * row["h"]["normalised_step"]
            and row["c"]["autocorrelation"] > row["h"]["autocorrelation"])


def decide_e3(m: dict) -> Verdict:
    slower = [_c_slower(r) for r in m["rows"]]
    evidence = "; ".join(
        f"seed {r['seed']}: step c {r['c']['normalised_step']:.3g} vs h "
        f"{r['h']['normalised_step']:.3g}, autocorrelation c {r['c']['autocorrelation']:.3f} "
        f"vs h {r['h']['autocorrelation']:.3f}" for r in m["rows"])
    if all(slower):
        return Verdict(SUPPORTED, evidence)
    if not any(slower):
        return Verdict(NOT_SUPPORTED, f"c is not clearly slower than h in any seed; {evidence}")
    return Verdict(DEPENDS, f"c is clearly slower than h in {sum(slower)} of {len(slower)} "
                   f"seeds; {evidence}")


def summarize_e3(m: dict) -> str:
    s = m["settings"]
    rows = [[r["seed"], r["solved"], r["c"]["normalised_step"], r["h"]["normalised_step"],
             r["c"]["autocorrelation"], r["h"]["autocorrelation"]] for r in m["rows"]]
    return "\n".join([
        f"The E1 LSTMs (adding task T={s['T']}, H={s['H']}) on {s['test']} held-out "
        "sequences. Normalised step: mean |x_t - x_(t-1)| / std(x) per unit; lag-1 "
        "autocorrelation per unit; both averaged over units.", "",
        table(["seed", "solved", "step c", "step h", "autocorrelation c",
               "autocorrelation h"], rows),
    ])


# -- E4: the candidate's activation ----------------------------------------------------------


def measure_e4(profile: str) -> dict:
    s = SETTINGS[profile]
    task, batch = test_batch(profile)
    rows = []
    for candidate in CANDIDATE_FUNCTIONS:
        name = f"claims-lstm-candidate-{candidate}"
        with training.temporary_implementation(name, experiment_factory(candidate=candidate),
                                               frozenset({"lstm"})):
            for seed in s["seeds"]:
                cfg = training.config("lstm", s["H"], steps=s["steps"], seed=seed, impl=name)
                result, model = training.train_and_keep(task, cfg)
                rows.append({"candidate": candidate, "seed": seed,
                             "held_out_loss": training.evaluate(model, task, batch)["loss"],
                             "steps_to_threshold": result.steps_to_threshold,
                             "diverged": result.diverged,
                             "evals": [{"step": e["step"], "loss": e["loss"]}
                                       for e in result.evals]})
    slopes = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0}
    return {"settings": _settings(profile), "baseline": task.baseline_loss(), "rows": rows,
            "slope_at_zero": slopes, "value_at_zero": {"tanh": 0.0, "sigmoid": 0.5, "relu": 0.0}}


def _paired_e4(m: dict) -> list[tuple[float, float]]:
    by = {}
    for r in m["rows"]:
        by.setdefault(r["seed"], {})[r["candidate"]] = r["held_out_loss"]
    return [(v["tanh"], v["sigmoid"]) for v in by.values()]


#: E4: one candidate "beats" the other in a seed if its MSE is lower by more than this share.
E4_MARGIN = 0.10


def decide_e4(m: dict) -> Verdict:
    pairs = _paired_e4(m)
    tanh_wins = [t < (1 - E4_MARGIN) * s for t, s in pairs]
    sigmoid_wins = [s < (1 - E4_MARGIN) * t for t, s in pairs]
    evidence = ("held-out MSE tanh vs sigmoid candidate, per seed: "
                + ", ".join(f"{t:.3g} vs {s:.3g}" for t, s in pairs))
    if all(tanh_wins):
        return Verdict(SUPPORTED, evidence)
    if all(sigmoid_wins):
        return Verdict(NOT_SUPPORTED, evidence)
    return Verdict(DEPENDS, f"tanh is clearly better in {sum(tanh_wins)} of {len(pairs)} seeds, "
                   f"sigmoid in {sum(sigmoid_wins)}; {evidence}")


def summarize_e4(m: dict) -> str:
    s = m["settings"]
    rows = []
    for candidate in CANDIDATE_FUNCTIONS:
        chosen = [r for r in m["rows"] if r["candidate"] == candidate]
        reached = [r["steps_to_threshold"] for r in chosen if r["steps_to_threshold"]]
        rows.append([candidate, m["value_at_zero"][candidate], m["slope_at_zero"][candidate],
                     _median([r["held_out_loss"] for r in chosen]),
                     ", ".join(f"{r['held_out_loss']:.3g}" for r in chosen),
                     f"{len(reached)}/{len(chosen)}"
                     + (f", median {_median(reached):.0f}" if reached else "")])
    return "\n".join([
        f"LSTM with the candidate g's activation swapped (gates stay sigmoid), adding task "
        f"T={s['T']}, H={s['H']}, {s['steps']} steps of {training.describe()}, seeds "
        f"{s['seeds']}; held-out MSE on {s['test']} fresh sequences:", "",
        table(["candidate", "value at 0", "slope at 0", "median MSE", "MSE per seed",
               "reached MSE < 0.01 (steps)"], rows),
    ])


def plot_e4(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours = dict(zip(CANDIDATE_FUNCTIONS, ("tab:blue", "tab:orange", "tab:green")))
    for r in m["rows"]:
        ax.plot([e["step"] for e in r["evals"]], [e["loss"] for e in r["evals"]],
                color=colours[r["candidate"]], alpha=0.7, label=r["candidate"])
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.axhline(m["baseline"], color="grey", ls="--", lw=0.8)
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set(yscale="log", xlabel="step", ylabel="held-out MSE",
           title="LSTM candidate activation: tanh vs sigmoid vs ReLU")
    path = directory / "E4_candidate_activation.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


CLAIMS = [
    Claim(
        id="E1", notes=(f"{NOTE_003} §forget gate", f"{NOTE_002} §1.3"),
        statement=("Once an LSTM is trained, nearly every gate activation is pinned close to "
                   "0 or close to 1."),
        method=("LSTMs trained on the adding problem (several seeds) are run on fresh "
                "held-out sequences while recording every input, forget and output gate value "
                "at every step and unit; per gate and seed, the histogram and the share of "
                "values below 0.1 or above 0.9."),
        rule=(f"share of gate values < {SATURATION[0]} or > {SATURATION[1]} on held-out data, "
              "per gate (i, f, o) and seed: supported if above 50% for every gate in every "
              "seed, not supported if that holds for no gate, depends otherwise (naming the "
              "gates)."),
        anchors=(Anchor("Li et al. 2018 (Towards binary-valued gates for robust LSTM "
                        "training)", "with ordinary training only part of an LSTM's gate "
                        "values end up near 0 or 1"),),
        measure=measure_e1, decide=decide_e1, summarize=summarize_e1, plot=plot_e1),
    Claim(
        id="E2", notes=(f"{NOTE_000} §4",),
        statement=("Where compute is scarce, the gates may be cut to hard 0/1 values "
                   "instead of sigmoids."),
        method=("Two variants on the adding problem, several seeds: an LSTM trained with "
                "ordinary sigmoid gates and one trained with hard-sigmoid gates; in each, "
                "every gate is then replaced at inference by a step function (0 or 1, "
                "read-out unchanged) and the held-out MSE is compared with the model's own "
                "and with the memoryless baseline."),
        rule=(f"'usable' = held-out MSE below {USABLE_FRACTION} x baseline with every gate "
              "thresholded to 0/1 at inference. Supported if the sigmoid-trained LSTM stays "
              "usable in every seed; depends if only the hard-sigmoid-trained one does; not "
              "supported if neither."),
        measure=measure_e2, decide=decide_e2, summarize=summarize_e2),
    Claim(
        id="E3", notes=(f"{NOTE_002} §2.1",),
        statement=("Between steps the cell state c drifts slowly, whereas the hidden state h "
                   "moves fast."),
        method=("E1's trained LSTMs on held-out sequences: per unit, the mean absolute "
                "change from one step to the next divided by the unit's standard deviation, "
                "and the lag-1 autocorrelation, for c and for h, averaged over units."),
        rule=(f"per seed, c is 'clearly slower' if its normalised step change is below "
              f"{E3_SLOWER} x h's and its lag-1 autocorrelation is larger. Supported if clearly "
              "slower in every seed, not supported if in none, depends otherwise."),
        measure=measure_e3, decide=decide_e3, summarize=summarize_e3),
    Claim(
        id="E4", notes=(f"{NOTE_000} §4", f"{NOTE_001} §2 (gate activations)"),
        statement=("The gates take a sigmoid and the candidate a tanh; tanh suits the "
                   "candidate because it is centred on zero and steeper there than the "
                   "sigmoid, which makes training go better."),
        method=("LSTMs with the candidate's activation swapped (tanh, sigmoid, ReLU; the "
                "gates stay sigmoid) trained on the adding problem with the same budget and "
                "seeds; held-out MSE paired by seed, with the learning curves and steps to "
                "the success threshold beside them."),
        rule=(f"same budget and seeds, held-out MSE paired by seed; one candidate beats the "
              f"other in a seed if its MSE is more than {E4_MARGIN:.0%} lower. Supported if "
              "tanh beats sigmoid in every seed, not supported if sigmoid beats tanh in every "
              "seed, depends otherwise. (ReLU is shown, not ruled on.)"),
        measure=measure_e4, decide=decide_e4, summarize=summarize_e4, plot=plot_e4),
]
