"""Claims C1-C6: gradients through time in RNN, LSTM and GRU.

The lag profiles run the float64 `reference` layer one step at a time, so that the gradient
reaches every intermediate state: ||dL/ds_k|| for the state s_k at lag T-k of a loss read at
the last step (L = sum over the batch of w . h_T, w fixed and random). Weights start from
the trainer's initialisation (`bench.training.trainer.initial_weights`, PyTorch's uniform
init), so a lag profile describes the very networks the training experiments start from;
the recurrent matrix is then rescaled to the spectral radius under test where one is named.
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
from bench.training.tasks import make_task
from bench.training.trainer import TrainConfig, initial_weights

#: Lag-profile sizes: hidden size, sequence length, batch, seeds.
PROFILE_SIZES = {
    "smoke": {"H": 16, "T": 30, "B": 8, "seeds": (0, 1)},
    "quick": {"H": 32, "T": 100, "B": 16, "seeds": (0, 1, 2)},
    "default": {"H": 64, "T": 200, "B": 32, "seeds": (0, 1, 2, 3, 4)},
}
#: Spectral radii of W_hh for C1 and C4 (Pascanu et al. 2013's threshold is 1 for tanh).
RADII = (0.5, 0.9, 1.0, 1.5, 2.0)
#: C5: sequence lengths whose total gradients are compared, and the lag cut-offs reported.
DECOMPOSITION_T = {"smoke": (20, 40), "quick": (60, 120), "default": (100, 300)}
SHORT_LAGS = (10, 50)


# -- the measurement -----------------------------------------------------------------------


def starting_layer(cell: str, H: int, T: int, seed: int, *, radius: float | None = None,
                   forget_bias: float | None = None, irnn: bool = False):
    """A float64 reference layer with the trainer's initial weights for `seed`."""
    task = make_task("adding", T=T)
    config = TrainConfig(cell=cell, hidden_size=H, seed=seed, forget_bias=forget_bias,
                         irnn=irnn)
    state, _ = initial_weights(task, config)
    state = {k: v.double() for k, v in state.items()}
    if radius is not None:
        state["weight_hh_l0"] = training.rescale_spectral_radius(state["weight_hh_l0"], radius)
    layer = impls.get("reference").build(cell, input_size=task.input_size, hidden_size=H,
                                         dtype=torch.float64)
    layer.load_state_dict(state)
    return layer, task


def _flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def step_through(layer, x: torch.Tensor, weight_hh_offsets: torch.Tensor | None = None):
    """Run one step per call; return every state (initial one included), gradients retained.

    With `weight_hh_offsets` (T, *W_hh.shape), step k uses W_hh + offsets[k]: the gradient
    of each offset is then step k's share of dL/dW_hh.
    """
    T, B, _ = x.shape
    zeros = [torch.zeros(1, B, layer.hidden_size, dtype=x.dtype, requires_grad=True)
             for _ in range(2 if layer.cell == "lstm" else 1)]
    state = tuple(zeros) if layer.cell == "lstm" else zeros[0]
    states = [state]
    for k in range(T):
        if weight_hh_offsets is None:
            _, state = layer(x[k:k + 1], state)
        else:
            weight = {"weight_hh_l0": layer.weight_hh_l0 + weight_hh_offsets[k]}
            _, state = torch.func.functional_call(layer, weight, (x[k:k + 1], state))
        for t in _flat(state):
            t.retain_grad()
        states.append(state)
    return states


def _final_loss(states, seed: int) -> torch.Tensor:
    """L = sum_b w . h_T[b] with w ~ N(0, 1/H): dL/dh_T = w for every sequence."""
    h_last = _flat(states[-1])[0][0]
    gen = torch.Generator().manual_seed(10_000 + seed)
    w = torch.randn(h_last.shape[1], generator=gen, dtype=torch.float64) / math.sqrt(
        h_last.shape[1])
    return (h_last @ w).sum(), w


def lag_profile(layer, task, B: int, seed: int) -> list[float]:
    """log10 of ||dL/ds_(T-lag)|| / ||dL/dh_T||, averaged over the batch, for lag 0..T.

    s is the whole state ((h, c) for an LSTM). The average of logs is the geometric mean
    of the per-sequence norms: the typical sequence, not the one with the largest norm.
    """
    gen = torch.Generator().manual_seed(20_000 + seed)
    x = task.sample(B, gen).inputs.double()
    states = step_through(layer, x)
    loss, w = _final_loss(states, seed)
    loss.backward()
    norms = []
    for state in reversed(states):
        grads = [t.grad[0] if t.grad is not None else torch.zeros_like(t[0])
                 for t in _flat(state)]
        per_sequence = torch.cat(grads, dim=1).norm(dim=1) / w.norm()
        norms.append(float(per_sequence.clamp_min(1e-300).log10().mean()))
    return norms


def growth_factor(log10_norms: list[float]) -> float:
    """Per-step factor of the gradient norm: 10 ** (least-squares slope of log10 norm on lag)."""
    lags = np.arange(len(log10_norms))
    slope = np.polyfit(lags[1:], np.asarray(log10_norms)[1:], 1)[0]
    return float(10 ** slope)


def _profile_rows(cell: str, profile: str, radius=None, forget_bias=None,
                  irnn=False) -> dict:
    sizes = PROFILE_SIZES[profile]
    curves, factors, radii, sigmas = [], [], [], []
    for seed in sizes["seeds"]:
        layer, task = starting_layer(cell, sizes["H"], sizes["T"], seed, radius=radius,
                                     forget_bias=forget_bias, irnn=irnn)
        curve = lag_profile(layer, task, sizes["B"], seed)
        curves.append(curve)
        factors.append(growth_factor(curve))
        w = layer.weight_hh_l0.detach()
        if cell.startswith("rnn"):
            radii.append(float(torch.linalg.eigvals(w).abs().max()))
            sigmas.append(float(torch.linalg.matrix_norm(w, ord=2)))
    return {"cell": cell, "radius": radius, "forget_bias": forget_bias, "irnn": irnn,
            "seeds": list(sizes["seeds"]), "log10_norm_by_lag": curves,
            "growth_factor": factors, "measured_radius": radii, "largest_singular_value": sigmas}


def _sizes(profile: str) -> dict:
    sizes = PROFILE_SIZES[profile]
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sizes.items()}


def _classify(factors: list[float]) -> str:
    """Unanimous over seeds: every per-step factor below 1 vanishes, above 1 explodes."""
    if all(f < 1 for f in factors):
        return "vanishes"
    if all(f > 1 for f in factors):
        return "explodes"
    return "mixed"


def _range(values: list[float]) -> str:
    return f"{np.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"


# -- C1: vanishing and exploding in a tanh RNN --------------------------------------------


def measure_c1(profile: str) -> dict:
    return {"sizes": _sizes(profile),
            "rows": [_profile_rows("rnn_tanh", profile, radius=r) for r in RADII]}


def decide_c1(m: dict) -> Verdict:
    kinds = {row["radius"]: _classify(row["growth_factor"]) for row in m["rows"]}
    exploding = {row["radius"]: sum(f > 1 for f in row["growth_factor"]) for row in m["rows"]}
    n = {row["radius"]: len(row["growth_factor"]) for row in m["rows"]}
    small = {r: k for r, k in kinds.items() if r < 1}
    large = {r: k for r, k in kinds.items() if r > 1}
    described = ", ".join(f"radius {r}: {k} (grows in {exploding[r]}/{n[r]} seeds)"
                          for r, k in sorted(kinds.items()))
    if any(k != "vanishes" for k in small.values()):
        return Verdict(NOT_SUPPORTED, f"a small W does not always vanish ({described})")
    if all(k == "explodes" for k in large.values()):
        return Verdict(SUPPORTED, f"every seed: {described}")
    unanimous = sorted(r for r, k in large.items() if k == "explodes")
    condition = (f"explodes in every seed only from radius {unanimous[0]}" if unanimous else
                 f"no radius up to {max(large)} explodes in every seed: a radius above 1 is "
                 "necessary for explosion, not sufficient (where tanh saturates, tanh' ~ 0 "
                 "offsets the larger W), as Pascanu et al. 2013 state")
    return Verdict(DEPENDS, f"vanishing holds for radius < 1; {condition} ({described})")


def summarize_c1(m: dict) -> str:
    s = m["sizes"]
    rows = [[row["radius"], _range(row["largest_singular_value"]),
             _range(row["growth_factor"]), _classify(row["growth_factor"]),
             _range([c[min(10, s["T"])] for c in row["log10_norm_by_lag"]]),
             _range([c[-1] for c in row["log10_norm_by_lag"]])]
            for row in m["rows"]]
    return "\n".join([
        f"Tanh RNN, H={s['H']}, T={s['T']}, batch {s['B']} adding-task sequences, seeds "
        f"{s['seeds']}; W_hh from PyTorch's init rescaled to each spectral radius. Per-step "
        "factor: 10^(slope of log10 ||dL/dh_k|| against lag), median [min, max] over seeds.",
        "",
        table(["spectral radius", "largest singular value", "per-step factor", "every seed",
               "log10 norm at lag 10", f"log10 norm at lag {s['T']}"], rows),
    ])


def _plot_profiles(groups: list[tuple[str, list[dict]]], label, path: Path, title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4), squeeze=False,
                             sharey=True)
    for ax, (name, rows) in zip(axes[0], groups):
        for row in rows:
            curves = np.asarray(row["log10_norm_by_lag"])
            lags = np.arange(curves.shape[1])
            line = ax.plot(lags, np.median(curves, 0), label=label(row))
            ax.fill_between(lags, curves.min(0), curves.max(0), alpha=0.2,
                            color=line[0].get_color())
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="lag T - k", title=name)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("log10 ||dL/ds_k|| / ||dL/dh_T||")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_c1(m: dict, directory: Path) -> list[Path]:
    return [_plot_profiles([("tanh RNN", m["rows"])], lambda r: f"radius {r['radius']}",
                           directory / "C1_lag_profile_by_radius.png",
                           "Gradient norm against lag (median, band: min-max over seeds)")]


# -- C2: clipping ---------------------------------------------------------------------------

C2_SETTINGS = {
    "smoke": {"T": 10, "H": 8, "steps": 10, "seeds": (0,), "radii": (2.0,)},
    "quick": {"T": 30, "H": 32, "steps": 200, "seeds": (0, 1, 2), "radii": (2.0,)},
    "default": {"T": 50, "H": 32, "steps": 300, "seeds": (0, 1, 2, 3), "radii": (1.5, 2.0)},
}
#: A run "blew up" if it diverged (NaN/inf, the trainer's test) or if a held-out loss after
#: the start exceeded this multiple of the memoryless baseline.
BLOW_UP_FACTOR = 10.0


def _blew_up(run: dict) -> bool:
    return run["diverged"] or any(
        e["loss"] > BLOW_UP_FACTOR * run["baseline_loss"] for e in run["evals"][1:])


def measure_c2(profile: str) -> dict:
    s = C2_SETTINGS[profile]
    task = make_task("adding", T=s["T"])
    runs = []
    for radius in s["radii"]:
        name = f"claims-{training.TRAIN_IMPL}-radius-{radius:g}"
        with training.temporary_implementation(name, training.radius_factory(radius),
                                               frozenset({"rnn_tanh"})):
            for clip in (None, training.CLIP_NORM):
                for seed in s["seeds"]:
                    cfg = training.config("rnn_tanh", s["H"], steps=s["steps"], seed=seed,
                                          impl=name, clip_norm=clip)
                    run = training.summary(training.run(task, cfg))
                    runs.append({**run, "radius": radius, "blew_up": _blew_up(run)})
    return {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
            "runs": runs}


def _c2_counts(m: dict) -> dict:
    counts = {}
    for clip in (None, training.CLIP_NORM):
        chosen = [r for r in m["runs"] if r["clip_norm"] == clip]
        counts[clip] = {"blew_up": sum(r["blew_up"] for r in chosen), "runs": len(chosen),
                        "diverged": sum(r["diverged"] for r in chosen),
                        "peak": _range([r["grad_norm_max"] for r in chosen]),
                        "final": _range([r["final_loss"] for r in chosen])}
    return counts


def decide_c2(m: dict) -> Verdict:
    counts = _c2_counts(m)
    free, clipped = counts[None], counts[training.CLIP_NORM]
    evidence = (f"blew up without clipping {free['blew_up']}/{free['runs']}, with "
                f"{clipped['blew_up']}/{clipped['runs']}; peak gradient norm without clipping "
                f"{free['peak']}")
    if free["blew_up"] == 0:
        return Verdict(DEPENDS, (
            f"no run blew up even without clipping: with {training.OPTIMIZER} the step "
            "size does not grow with the gradient norm, so there was nothing to fix; "
            "clipping matters where the update is proportional to the gradient (plain "
            f"SGD, not measured here); {evidence}"))
    if clipped["blew_up"] == 0:
        return Verdict(SUPPORTED, evidence)
    if clipped["blew_up"] < free["blew_up"]:
        return Verdict(DEPENDS, f"clipping reduces but does not remove blow-ups; {evidence}")
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_c2(m: dict) -> str:
    s = m["settings"]
    rows = [[("none" if clip is None else f"norm {clip:g}"), f"{c['diverged']}/{c['runs']}",
             f"{c['blew_up']}/{c['runs']}", c["peak"], c["final"]]
            for clip, c in _c2_counts(m).items()]
    return "\n".join([
        f"Tanh RNN with W_hh rescaled at init to spectral radius {s['radii']}, adding task "
        f"T={s['T']} (baseline MSE 0.167), H={s['H']}, {s['steps']} steps, seeds {s['seeds']}; "
        f"{training.describe().replace(', gradient norm clipped to 1', '')}, with and without "
        f"clipping. Blew up = NaN/inf or a held-out MSE above {BLOW_UP_FACTOR:g} x baseline. "
        "Median [min, max] over runs:", "",
        table(["clipping", "NaN/inf", "blew up", "peak gradient norm (before clipping)",
               "final held-out MSE"], rows),
    ])


def plot_c2(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    colours = {None: "tab:red", training.CLIP_NORM: "tab:blue"}
    for r in m["runs"]:
        steps = [e["step"] for e in r["evals"]]
        label = "no clipping" if r["clip_norm"] is None else f"clipped to {r['clip_norm']:g}"
        ax.plot(steps, [e["loss"] for e in r["evals"]], color=colours[r["clip_norm"]],
                alpha=0.6, ls="-" if r["radius"] == max(m["settings"]["radii"]) else ":",
                label=f"{label}, radius {r['radius']:g}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.axhline(1 / 6, color="grey", ls="--", lw=0.8)
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set(yscale="log", xlabel="step", ylabel="held-out MSE",
           title="Tanh RNN at large initial radius, with and without clipping")
    path = directory / "C2_clipping.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


# -- C3: IRNN --------------------------------------------------------------------------------

C3_VARIANTS = ("rnn_tanh", "irnn", "lstm")


def measure_c3(profile: str) -> dict:
    rows = longrange.sweep_runs(profile, "adding", C3_VARIANTS)
    lag = [_profile_rows("rnn_tanh", profile), _profile_rows("rnn_relu", profile, irnn=True)]
    return {"sweep": longrange.listed(longrange.SWEEP[profile]), "rows": rows, "lag_rows": lag}


def decide_c3(m: dict) -> Verdict:
    Ts = sorted({r["T"] for r in m["rows"]})
    rate = {(v, T): longrange.learned_rate(m["rows"], variant=v, T=T)
            for v in C3_VARIANTS for T in Ts}
    described = "; ".join(f"T={T}: " + ", ".join(f"{v} {rate[(v, T)]:.0%}" for v in C3_VARIANTS)
                          for T in Ts)
    better_than_tanh = [T for T in Ts if rate[("irnn", T)] > rate[("rnn_tanh", T)]]
    as_good_as_lstm = [T for T in Ts if rate[("irnn", T)] >= rate[("lstm", T)]]
    if not better_than_tanh:
        return Verdict(NOT_SUPPORTED, f"the IRNN never learns more often than the tanh RNN "
                       f"({described})")
    if len(as_good_as_lstm) == len(Ts):
        return Verdict(SUPPORTED, f"the IRNN beats the tanh RNN at T={better_than_tanh} and "
                       f"matches the LSTM at every T ({described})")
    return Verdict(DEPENDS, f"the IRNN beats the tanh RNN at T={better_than_tanh} but falls "
                   f"behind the LSTM at T={[T for T in Ts if T not in as_good_as_lstm]} within "
                   f"the budget ({described})")


def summarize_c3(m: dict) -> str:
    s = m["sweep"]
    lag = [["tanh RNN, default init", _range(m["lag_rows"][0]["growth_factor"])],
           ["IRNN (ReLU, W_hh = I, zero bias)", _range(m["lag_rows"][1]["growth_factor"])]]
    return "\n".join([
        f"Adding task, H={s['H']}, seeds {s['seeds']}, up to {s['adding']['steps']} steps of "
        f"{training.describe()} (these runs are shared with D1). Cells: learned/runs "
        f"(median held-out loss / baseline), learned = loss < {longrange.LEARNED_FRACTION} "
        "x baseline:", "",
        longrange.rate_table(m["rows"], C3_VARIANTS), "",
        "Gradient per-step factor at initialisation (as C1):", "",
        table(["network", "per-step factor"], lag),
    ])


def plot_c3(m: dict, directory: Path) -> list[Path]:
    return [longrange.plot_sweep(m["rows"], C3_VARIANTS, directory / "C3_irnn.png",
                                 "Adding task: IRNN vs tanh RNN vs LSTM")]


# -- C4: tanh vs ReLU ------------------------------------------------------------------------

#: C4's training comparison: the adding task at this T, default init, these steps.
C4_TRAINING = {
    "smoke": {"T": 10, "H": 16, "steps": 20, "seeds": (0,)},
    "quick": {"T": 30, "H": 32, "steps": 300, "seeds": (0, 1, 2)},
    "default": {"T": 50, "H": 32, "steps": 500, "seeds": (0, 1, 2, 3)},
}


def measure_c4(profile: str) -> dict:
    lag_rows = [_profile_rows(cell, profile, radius=r) for cell in ("rnn_tanh", "rnn_relu")
                for r in RADII]
    settings = C4_TRAINING[profile]
    runs = []
    for cell in ("rnn_tanh", "rnn_relu"):
        for seed in settings["seeds"]:
            result = training.run(make_task("adding", T=settings["T"]), training.config(
                cell, settings["H"], steps=settings["steps"], seed=seed))
            runs.append(training.summary(result))
    return {"sizes": _sizes(profile), "training": {k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in settings.items()},
            "lag_rows": lag_rows, "runs": runs}


def decide_c4(m: dict) -> Verdict:
    factor = {(r["cell"], r["radius"]): float(np.median(r["growth_factor"]))
              for r in m["lag_rows"]}
    relu_worse = [r for r in RADII if factor[("rnn_relu", r)] > factor[("rnn_tanh", r)]]
    diverged = {cell: sum(run["diverged"] for run in m["runs"] if run["cell"] == cell)
                for cell in ("rnn_tanh", "rnn_relu")}
    peak = {cell: float(np.median([run["grad_norm_max"] for run in m["runs"]
                                   if run["cell"] == cell])) for cell in diverged}
    exploding_relu = [r for r in RADII if factor[("rnn_relu", r)] > 1]
    exploding_tanh = [r for r in RADII if factor[("rnn_tanh", r)] > 1]
    evidence = (f"median per-step factor above tanh's at radii {relu_worse}; explodes at "
                f"radii relu {exploding_relu}, tanh {exploding_tanh}; training from the default "
                f"init diverged tanh {diverged['rnn_tanh']}, relu {diverged['rnn_relu']} of "
                f"{len(m['runs']) // 2} runs, median peak gradient norm tanh "
                f"{peak['rnn_tanh']:.3g}, relu {peak['rnn_relu']:.3g}")
    relu_less_stable = (len(relu_worse) == len(RADII)
                        and diverged["rnn_relu"] >= diverged["rnn_tanh"])
    if relu_less_stable and (diverged["rnn_relu"] > diverged["rnn_tanh"]
                             or peak["rnn_relu"] > peak["rnn_tanh"]):
        return Verdict(SUPPORTED, evidence)
    if relu_worse:
        return Verdict(DEPENDS, "ReLU's gradients grow faster only at some radii: " + evidence)
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_c4(m: dict) -> str:
    lag = [[r["cell"], r["radius"], _range(r["growth_factor"]), _classify(r["growth_factor"])]
           for r in m["lag_rows"]]
    runs = {}
    for run in m["runs"]:
        runs.setdefault(run["cell"], []).append(run)
    t = m["training"]
    train_rows = [[cell, f"{sum(r['diverged'] for r in rs)}/{len(rs)}",
                   _range([r["grad_norm_max"] for r in rs]),
                   _range([r["final_loss"] for r in rs])] for cell, rs in runs.items()]
    return "\n".join([
        "Lag profile (as C1) for the same W_hh with tanh and with ReLU:",
        "",
        table(["cell", "spectral radius", "per-step factor", "every seed"], lag),
        "",
        f"Training from the trainer's default init (same weights for both activations), "
        f"adding task T={t['T']}, H={t['H']}, {t['steps']} steps of {training.describe()}, "
        f"seeds {t['seeds']}:",
        "",
        table(["cell", "diverged", "peak gradient norm", "final held-out MSE"], train_rows),
    ])


def plot_c4(m: dict, directory: Path) -> list[Path]:
    groups = [(cell, [r for r in m["lag_rows"] if r["cell"] == cell])
              for cell in ("rnn_tanh", "rnn_relu")]
    return [_plot_profiles(groups, lambda r: f"radius {r['radius']}",
                           directory / "C4_tanh_vs_relu.png",
                           "Same W_hh, tanh vs ReLU: gradient norm against lag")]


# -- C5: which lags make up dL/dW_hh -------------------------------------------------------


def lag_decomposition(layer, task, B: int, seed: int) -> dict:
    """Step k's share of dL/dW_hh for k = 1..T, by lag T - k, and the total gradient."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    x = task.sample(B, gen).inputs.double()
    T = x.shape[0]
    offsets = torch.zeros(T, *layer.weight_hh_l0.shape, dtype=torch.float64,
                          requires_grad=True)
    states = step_through(layer, x, offsets)
    loss, _ = _final_loss(states, seed)
    (per_step,) = torch.autograd.grad(loss, offsets)
    by_lag = per_step.flip(0)          # index 0 = the last step = lag 0
    norms = by_lag.flatten(1).norm(dim=1)
    return {"norm_by_lag": norms.tolist(), "total_norm": float(by_lag.sum(0).norm())}


C5_CELLS = (("rnn_tanh", None), ("lstm", None), ("lstm", 1.0), ("gru", None))


def _share_beyond(norms: list[float], lag: int) -> float:
    norms = np.asarray(norms)
    return float(norms[lag + 1:].sum() / norms.sum())


def measure_c5(profile: str) -> dict:
    sizes = PROFILE_SIZES[profile]
    rows = []
    for cell, forget_bias in C5_CELLS:
        for T in DECOMPOSITION_T[profile]:
            for seed in sizes["seeds"]:
                layer, task = starting_layer(cell, sizes["H"], T, seed,
                                             forget_bias=forget_bias)
                result = lag_decomposition(layer, task, sizes["B"], seed)
                rows.append({"cell": cell, "forget_bias": forget_bias, "T": T, "seed": seed,
                             **result,
                             **{f"share_beyond_{lag}": _share_beyond(result["norm_by_lag"], lag)
                                for lag in SHORT_LAGS}})
    return {"sizes": _sizes(profile), "T": list(DECOMPOSITION_T[profile]), "rows": rows}


def _c5_label(cell, forget_bias):
    return cell if forget_bias is None else f"{cell} (forget bias {forget_bias:g})"


def _c5_stats(m: dict):
    short_T, long_T = m["T"]
    out = {}
    for cell, forget_bias in {(r["cell"], r["forget_bias"]) for r in m["rows"]}:
        rows = [r for r in m["rows"] if r["cell"] == cell and r["forget_bias"] == forget_bias]
        by_seed = {}
        for r in rows:
            by_seed.setdefault(r["seed"], {})[r["T"]] = r
        out[(cell, forget_bias)] = {
            "total_ratio": [s[long_T]["total_norm"] / s[short_T]["total_norm"]
                            for s in by_seed.values()],
            "total_long": [s[long_T]["total_norm"] for s in by_seed.values()],
            **{f"share_{lag}": [s[long_T][f"share_beyond_{lag}"] for s in by_seed.values()]
               for lag in SHORT_LAGS},
        }
    return out


C5_SHORT_RANGE_SHARE = 0.1
C5_STABLE_TOTAL = (0.5, 2.0)


def decide_c5(m: dict) -> Verdict:
    stats = _c5_stats(m)
    rnn = stats[("rnn_tanh", None)]
    stable = all(C5_STABLE_TOTAL[0] <= r <= C5_STABLE_TOTAL[1] for r in rnn["total_ratio"])
    short = all(s < C5_SHORT_RANGE_SHARE for s in rnn["share_10"])
    evidence = (f"tanh RNN: total ||dL/dW_hh|| at T={m['T'][1]} over T={m['T'][0]} "
                f"{_range(rnn['total_ratio'])}, share of lags > 10 {_range(rnn['share_10'])}")
    if stable and short:
        return Verdict(SUPPORTED, evidence)
    if stable or short:
        return Verdict(DEPENDS, ("only one half holds: " if stable != short else "") + evidence)
    return Verdict(NOT_SUPPORTED, evidence)


def summarize_c5(m: dict) -> str:
    stats = _c5_stats(m)
    s = m["sizes"]
    rows = [[_c5_label(*key), _range(v["total_long"]), _range(v["total_ratio"]),
             _range(v["share_10"]), _range(v["share_50"])]
            for key, v in sorted(stats.items(), key=lambda kv: str(kv[0]))]
    return "\n".join([
        f"dL/dW_hh split by the step at which W_hh is used (lag T-k), float64 reference, "
        f"default init, H={s['H']}, batch {s['B']}, seeds {s['seeds']}. Share beyond a lag: "
        "sum of the per-lag norms past it over the sum of all per-lag norms.",
        "",
        table(["cell", f"total norm, T={m['T'][1]}", f"total T={m['T'][1]} / T={m['T'][0]}",
               "share lags > 10", "share lags > 50"], rows),
    ])


def plot_c5(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    long_T = m["T"][1]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for cell, forget_bias in C5_CELLS:
        curves = np.asarray([r["norm_by_lag"] for r in m["rows"] if r["cell"] == cell
                             and r["forget_bias"] == forget_bias and r["T"] == long_T])
        ax.plot(np.arange(curves.shape[1]), np.median(curves, 0),
                label=_c5_label(cell, forget_bias))
    ax.set(yscale="log", xlabel="lag T - k", ylabel="||step k's part of dL/dW_hh||",
           title=f"Lag decomposition of dL/dW_hh, T={long_T} (median over seeds)")
    ax.legend(fontsize=8)
    path = directory / "C5_lag_decomposition.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


# -- C6: gated cells ---------------------------------------------------------------------------

C6_CONFIGS = (("rnn_tanh", None), ("lstm", 0.0), ("lstm", 1.0), ("lstm", 3.0), ("gru", None))


def measure_c6(profile: str) -> dict:
    rows = [_profile_rows(cell, profile, forget_bias=fb) for cell, fb in C6_CONFIGS]
    return {"sizes": _sizes(profile), "rows": rows}


def _c6_key(row) -> str:
    return _c5_label(row["cell"], row["forget_bias"])


def decide_c6(m: dict) -> Verdict:
    rnn = next(r for r in m["rows"] if r["cell"] == "rnn_tanh")
    gated = [r for r in m["rows"] if r["cell"] != "rnn_tanh"]
    slower = [_c6_key(r) for r in gated
              if all(g > q for g, q in zip(r["growth_factor"], rnn["growth_factor"]))]
    factors = "; ".join(f"{_c6_key(r)} {_range(r['growth_factor'])}" for r in m["rows"])
    evidence = f"per-step factors, median [min, max] over seeds: {factors}"
    if len(slower) == len(gated):
        return Verdict(SUPPORTED, "every gated cell's gradient decays slower than the tanh "
                       "RNN's in every seed; " + evidence)
    if slower:
        return Verdict(DEPENDS, f"decays slower than the tanh RNN only for {', '.join(slower)} "
                       "(the forget gate's bias sets how much passes the conveyor belt); "
                       + evidence)
    return Verdict(NOT_SUPPORTED, "no gated cell decays slower at initialisation; " + evidence)


def summarize_c6(m: dict) -> str:
    s = m["sizes"]
    rows = [[_c6_key(r), _range(r["growth_factor"]),
             _range([c[min(50, s["T"])] for c in r["log10_norm_by_lag"]])] for r in m["rows"]]
    return "\n".join([
        f"Lag profile as C1 at the trainer's default init (no rescaling), H={s['H']}, "
        f"T={s['T']}, seeds {s['seeds']}; for the LSTM the state gradient is (dL/dh, dL/dc) "
        "together; forget bias = the forget gate's total bias at init (0 = none added).",
        "",
        table(["cell", "per-step factor", f"log10 norm at lag {min(50, s['T'])}"], rows),
    ])


def plot_c6(m: dict, directory: Path) -> list[Path]:
    return [_plot_profiles([("default init", m["rows"])], _c6_key,
                           directory / "C6_lag_profile_by_cell.png",
                           "Gradient norm against lag per cell (median, band: min-max)")]


CLAIMS = [
    Claim(
        id="C1", notes=(f"{NOTE_000} §2", f"{NOTE_002} §1.2"),
        statement=("Going back through time, the gradient picks up one factor tanh' x W per "
                   "step, so a small W drives it towards zero and a large W makes it blow up."),
        method=("Tanh RNN with W_hh rescaled to a range of spectral radii below, at and above "
                "1, several seeds; the float64 reference layer runs step by step so that the "
                "gradient of a loss read at the last step reaches every hidden state, and "
                "||dL/dh_k|| is recorded against the lag T-k. The per-step factor is 10 to the "
                "slope of log10 ||dL/dh_k|| on the lag: below 1 the gradient shrinks with "
                "distance, above 1 it grows."),
        rule=("per spectral radius of W_hh, a seed's per-step factor is 10^(slope of log10 "
              "||dL/dh_k|| on lag); the radius 'vanishes' if every seed's factor is < 1, "
              "'explodes' if every one is > 1. Not supported if some radius < 1 does not "
              "vanish; supported if every radius < 1 vanishes and every radius > 1 explodes; "
              "depends otherwise (from which radius it explodes)."),
        anchors=(Anchor("Pascanu, Mikolov & Bengio 2013", "for a tanh RNN (derivative "
                        "bounded by gamma = 1), a largest singular value of W_hh below "
                        "1/gamma is sufficient for the long-term gradient to vanish, and one "
                        "above 1/gamma is necessary for it to explode"),),
        measure=measure_c1, decide=decide_c1, summarize=summarize_c1, plot=plot_c1),
    Claim(
        id="C2", notes=(f"{NOTE_000} §2", f"{NOTE_000} §3"),
        statement=("Exploding gradients are the easy half of the problem: clipping the "
                   "gradient deals with them."),
        method=("Tanh RNNs whose W_hh starts rescaled to a spectral radius above 1 (1.5 and 2 "
                "in the default profile) are trained on the adding problem with the claims' "
                "optimiser, once without and once with the gradient norm clipped, over "
                "several seeds; per run, whether it blew up "
                "(NaN/inf, or a held-out loss far above the memoryless baseline), its peak "
                "gradient norm and its final loss."),
        rule=(f"a run blew up if it hit NaN/inf or a held-out loss above {BLOW_UP_FACTOR:g} x "
              "baseline. Depends (nothing to fix) if no unclipped run blew up; supported if "
              "some did and no clipped run did; depends if clipping reduced the count; not "
              "supported otherwise."),
        anchors=(Anchor("Pascanu, Mikolov & Bengio 2013", "proposed rescaling the gradient "
                        "whenever its norm passes a threshold (norm clipping) as the remedy "
                        "for exploding gradients"),),
        measure=measure_c2, decide=decide_c2, summarize=summarize_c2, plot=plot_c2),
    Claim(
        id="C3", notes=(f"{NOTE_000} §2",),
        statement=("A ReLU RNN whose recurrent matrix starts as the identity (IRNN) suffers "
                   "less from vanishing and exploding gradients."),
        method=("The IRNN (ReLU, W_hh = identity and zero biases at the start), the tanh RNN "
                "and the LSTM trained on the adding problem at increasing T, several seeds "
                "each (the runs of D1); a run learned if its held-out loss ends clearly below "
                "the memoryless baseline. The lag profiles of both plain RNNs at their start "
                "are shown beside the learned rates."),
        rule=("on the adding task over T (learned as in D1): not supported if the IRNN never "
              "learns more often than the tanh RNN; supported if it does somewhere and "
              "matches the LSTM at every T; depends otherwise (up to which T)."),
        anchors=(
            Anchor("Arjovsky, Shah & Bengio 2016", "on the adding problem with 128 units, "
                   "neither the tanh RNN nor the IRNN beat the 0.167 baseline at any T from "
                   "100 to 750"),
            Anchor("Le, Jaitly & Hinton 2015", "the IRNN took over a million training "
                   "iterations to solve the adding problem at T=300"),
        ),
        measure=measure_c3, decide=decide_c3, summarize=summarize_c3, plot=plot_c3),
    Claim(
        id="C4", notes=(f"{NOTE_001} §1",),
        statement=("Inside an RNN, tanh keeps the gradients better behaved than ReLU would."),
        method=("Tanh and ReLU RNNs with the same W_hh: lag profiles (as C1) at each spectral "
                "radius, and training runs on the adding problem from the default "
                "initialisation, several seeds, counting divergent runs and recording each "
                "run's peak gradient norm."),
        rule=("same W_hh, tanh vs ReLU. Supported if ReLU's median per-step gradient factor "
              "is above tanh's at every radius tested, ReLU training runs diverge at least as "
              "often, and ReLU diverges more often or has the larger median peak gradient; "
              "depends if ReLU's factor is higher at some radii only; not supported "
              "otherwise."),
        measure=measure_c4, decide=decide_c4, summarize=summarize_c4, plot=plot_c4),
    Claim(
        id="C5", notes=(f"{NOTE_003} §long-term dependencies",),
        statement=("A 'vanishing' gradient in an RNN does not go to zero as a whole: its sum "
                   "stays of the same size, but the terms from nearby steps swamp those from "
                   "distant ones."),
        method=("dL/dW_hh is split into one term per step at which W_hh is used (per lag "
                "T-k) in the float64 reference, at the trainer's default initialisation, at "
                "two sequence lengths and several seeds, for the tanh RNN, the LSTM (forget "
                "bias 0 and 1) and the GRU: the total gradient norm at the longer T against "
                "the shorter, and the share of the per-lag norms beyond lags 10 and 50."),
        rule=(f"tanh RNN at default init: the total ||dL/dW_hh|| at the longer T over the "
              f"shorter must lie in {list(C5_STABLE_TOTAL)} in every seed (does not vanish) "
              f"and lags > 10 must carry under {C5_SHORT_RANGE_SHARE:.0%} of the summed "
              "per-lag norms in every seed (short-range dominated). Supported if both, "
              "depends if one, not supported if neither."),
        anchors=(Anchor("Goodfellow, Bengio & Courville 2016, Deep Learning, section 10.7",
                        "the gradient of a long-term interaction is exponentially smaller "
                        "than that of short-term ones, so it is masked by them rather than "
                        "the gradient as a whole going to zero"),),
        measure=measure_c5, decide=decide_c5, summarize=summarize_c5, plot=plot_c5),
    Claim(
        id="C6", notes=(f"{NOTE_000} §5", f"{NOTE_004} §summary 5", f"{NOTE_004} §appendix 1",
                        f"{NOTE_001} §2 (vanishing gradients)"),
        statement=("Gated cells (LSTM, GRU) soften the vanishing gradient: the LSTM's cell "
                   "state runs like a conveyor belt, giving the gradient more than one route "
                   "back in time."),
        method=("Lag profiles as in C1, at the trainer's default initialisation without "
                "rescaling, for the LSTM with forget-gate bias 0, 1 and 3 and for the GRU, "
                "against the tanh RNN; for the LSTM the state gradient is that of (h, c) "
                "together."),
        rule=("at the trainer's default init, per gated configuration (LSTM with forget bias "
              "0, 1, 3; GRU): 'slower decay' if its per-step factor exceeds the tanh RNN's in "
              "every seed. Supported if all configurations decay slower, depends if some do "
              "(named), not supported if none."),
        anchors=(Anchor("Jozefowicz, Zaremba & Sutskever 2015", "adding 1 to the LSTM's "
                        "forget-gate bias at initialisation closed most of its gap to the GRU "
                        "across their tasks"),),
        measure=measure_c6, decide=decide_c6, summarize=summarize_c6, plot=plot_c6),
]
