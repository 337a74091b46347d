"""Claims C1, C2, C4, C5 and C6: gradients through time in RNN, LSTM and GRU.

The lag profiles run the float64 `reference` layer one step at a time, so that the gradient
reaches every intermediate state: ||dL/ds_k|| for the state s_k at lag T-k of a loss read at
the last step (L = sum over the batch of w . h_T, w fixed and random). Weights start from
the trainer's initialisation (`bench.training.trainer.initial_weights`, PyTorch's uniform
init), so a lag profile describes the very networks the training experiments start from;
the recurrent matrix is then rescaled to the spectral radius under test where one is named.
A lag profile costs no training, so it gets more seeds than the trained claims.

The trained claims (C2, C4) are about what an update does with a large gradient, so they
train with plain SGD (the step is the gradient times the rate): Adam divides the gradient by
its own running scale, and with it neither clipping nor divergence would be a question.
Every compared figure has a 95% interval over seeds (`bench.claims.intervals`).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

import impls
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
    save_figure,
    table,
)
from bench.claims.intervals import (
    fmt,
    fmt_rate,
    median_interval,
    rates_differ,
    ratio_interval,
    wilson_interval,
)
from bench.training.tasks import make_task
from bench.training.trainer import TrainConfig, initial_weights

#: Lag-profile sizes: hidden size, sequence length, batch and seeds. A profile takes well
#: under a second, so `default` has twice the trained claims' seeds.
PROFILE_SIZES = {
    "smoke": {"H": 16, "T": 30, "B": 8, "seeds": (0, 1)},
    "quick": {"H": 32, "T": 100, "B": 16, "seeds": (0, 1, 2)},
    "default": {"H": 64, "T": 200, "B": 32, "seeds": tuple(range(10))},
    "full": {"H": 128, "T": 400, "B": 64, "seeds": tuple(range(20))},
}
#: Spectral radii of W_hh for C1 and C4 (Pascanu et al. 2013's threshold is 1 for tanh).
RADII = (0.5, 0.9, 1.0, 1.5, 2.0)
#: C5: the two sequence lengths whose total gradients are compared, and its seeds (each
#: decomposition keeps one copy of W_hh per step, so it costs far more than a profile).
DECOMPOSITION = {
    "smoke": {"T": (20, 40), "seeds": (0, 1)},
    "quick": {"T": (60, 120), "seeds": (0, 1, 2)},
    "default": {"T": (100, 200), "seeds": tuple(range(5))},
    "full": {"T": (200, 500), "seeds": tuple(range(10))},
}
SHORT_LAGS = (10, 50)


# -- intervals -----------------------------------------------------------------------------


def _interval(values) -> dict:
    """Median and bootstrap 95% interval of the finite `values` (diverged runs count apart)."""
    return median_interval([v for v in values if v is not None and math.isfinite(v)])


def _bounds(interval: dict) -> tuple[float, float]:
    """The interval's ends; a single value (one seed) is its own interval."""
    if interval["median"] is None:
        return math.nan, math.nan
    if interval["ci95"] is None:
        return interval["median"], interval["median"]
    return tuple(interval["ci95"])


def _side(interval: dict, level: float) -> int:
    """+1 if the interval lies wholly above `level`, -1 if wholly below, 0 if it straddles
    it or there is none (a single seed decides nothing)."""
    if interval.get("ci95") is None:
        return 0
    low, high = _bounds(interval)
    return 1 if low > level else -1 if high < level else 0


# -- the measurement -----------------------------------------------------------------------


def starting_layer(cell: str, H: int, T: int, seed: int, *, radius: float | None = None,
                   forget_bias: float | None = None):
    """A float64 reference layer with the trainer's initial weights for `seed`."""
    task = make_task("adding", T=T)
    config = TrainConfig(cell=cell, hidden_size=H, seed=seed, forget_bias=forget_bias)
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


def _profile_rows(cell: str, profile: str, radius=None, forget_bias=None) -> dict:
    sizes = PROFILE_SIZES[profile]
    curves, factors, radii, sigmas = [], [], [], []
    for seed in sizes["seeds"]:
        layer, task = starting_layer(cell, sizes["H"], sizes["T"], seed, radius=radius,
                                     forget_bias=forget_bias)
        curve = lag_profile(layer, task, sizes["B"], seed)
        curves.append(curve)
        factors.append(growth_factor(curve))
        w = layer.weight_hh_l0.detach()
        if cell.startswith("rnn"):
            radii.append(float(torch.linalg.eigvals(w).abs().max()))
            sigmas.append(float(torch.linalg.matrix_norm(w, ord=2)))
    return {"cell": cell, "radius": radius, "forget_bias": forget_bias,
            "seeds": list(sizes["seeds"]), "log10_norm_by_lag": curves,
            "growth_factor": factors, "measured_radius": radii, "largest_singular_value": sigmas}


def _sizes(profile: str) -> dict:
    return listed(PROFILE_SIZES[profile])


def _factor_interval(row: dict) -> dict:
    return _interval(row["growth_factor"])


def _behaviour(interval: dict) -> str:
    """'vanishes' if the interval of the median per-step factor lies below 1, 'explodes' if
    above, 'undecided' if it holds 1."""
    return {-1: "vanishes", 1: "explodes", 0: "undecided"}[_side(interval, 1.0)]


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
        ax.set(xlabel="lag T - k (steps back from the loss)", title=name)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("log10 ||dL/ds_k|| / ||dL/dh_T||")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return path


# -- C1: vanishing and exploding in a tanh RNN --------------------------------------------


def measure_c1(profile: str) -> dict:
    return {"sizes": _sizes(profile),
            "rows": [_profile_rows("rnn_tanh", profile, radius=r) for r in RADII]}


def decide_c1(m: dict) -> Verdict:
    kinds = {row["radius"]: _behaviour(_factor_interval(row)) for row in m["rows"]}
    described = ", ".join(f"radius {row['radius']:g}: {fmt(_factor_interval(row), 'median')} "
                          f"({kinds[row['radius']]})" for row in m["rows"])
    small = {r: k for r, k in kinds.items() if r < 1}
    large = {r: k for r, k in kinds.items() if r > 1}
    if any(k != "vanishes" for k in small.values()):
        return Verdict(NOT_SUPPORTED, f"a small W does not always make the gradient vanish; "
                       f"per-step factor, median [95% interval] over seeds: {described}")
    if all(k == "explodes" for k in large.values()):
        return Verdict(SUPPORTED, f"every radius below 1 vanishes and every one above 1 "
                       f"explodes; per-step factor, median [95% interval]: {described}")
    exploding = sorted(r for r, k in large.items() if k == "explodes")
    condition = (f"it explodes only from radius {exploding[0]:g}" if exploding else
                 f"no radius up to {max(large):g} explodes")
    return Verdict(DEPENDS, f"the gradient vanishes below radius 1, but above 1 {condition}: "
                   "a larger W is necessary for explosion, not sufficient, since tanh' < 1 "
                   f"where the units saturate; per-step factor, median [95% interval]: "
                   f"{described}")


def against_c1(m: dict) -> str:
    sigma = {row["radius"]: max(row["largest_singular_value"]) for row in m["rows"]}
    kinds = {row["radius"]: _behaviour(_factor_interval(row)) for row in m["rows"]}
    below = [r for r in sigma if sigma[r] < 1]
    exploding = [r for r, k in kinds.items() if k == "explodes"]
    sufficient = all(kinds[r] == "vanishes" for r in below)
    necessary = all(min(row["largest_singular_value"]) > 1 for row in m["rows"]
                    if row["radius"] in exploding)
    vanishing_above = [r for r, k in kinds.items() if k == "vanishes" and r not in below]
    parts = [
        "Pascanu, Mikolov & Bengio (2013) bound the tanh RNN's gradient by the largest "
        "singular value of W_hh: below 1 it must vanish, and only above 1 can it explode.",
        (f"Ours: the largest singular value was below 1 in every seed only at radius "
         f"{', '.join(f'{r:g}' for r in below)}, where the gradient "
         f"{'vanished' if sufficient else 'did not always vanish'}"
         if below else "Ours: no radius tested had a largest singular value below 1 in every "
         "seed, so the sufficient condition is not exercised"),
        (f"; every exploding radius ({', '.join(f'{r:g}' for r in exploding)}) had it above "
         f"1 in every seed" if exploding and necessary else
         "; some exploding radius had a seed with it below 1" if exploding else
         "; no radius exploded"),
        ".",
    ]
    if not below and not exploding:
        verdict = " Neither condition is put to the test by these radii."
    elif sufficient and necessary:
        verdict = " This agrees with the bound."
    else:
        verdict = " This contradicts the bound."
    gap = (f" The bound is loose: at radius {', '.join(f'{r:g}' for r in vanishing_above)} "
           "the largest singular value is above 1 in some seed (W_hh is far from normal) and "
           "the gradient still vanishes, since tanh' < 1 and a single singular value "
           "overstates the growth over many steps." if vanishing_above else "")
    return parts[0] + " " + "".join(parts[1:]) + verdict + gap


def summarize_c1(m: dict) -> str:
    s = m["sizes"]
    rows = [[row["radius"], fmt(_interval(row["largest_singular_value"]), "median"),
             fmt(_factor_interval(row), "median"), _behaviour(_factor_interval(row)),
             fmt(_interval([c[min(10, s["T"])] for c in row["log10_norm_by_lag"]]), "median"),
             fmt(_interval([c[-1] for c in row["log10_norm_by_lag"]]), "median")]
            for row in m["rows"]]
    return "\n".join([
        f"Tanh RNN, H={s['H']}, T={s['T']}, batch {s['B']} adding-task sequences, "
        f"{len(s['seeds'])} seeds; W_hh from PyTorch's init rescaled to each spectral "
        "radius. Per-step factor: 10^(slope of log10 ||dL/dh_k|| against the lag). Every "
        "figure is the median over seeds with its bootstrap 95% interval.",
        "",
        table(["spectral radius", "largest singular value", "per-step factor", "behaviour",
               "log10 norm at lag 10", f"log10 norm at lag {s['T']}"], rows),
    ])


def plot_c1(m: dict, directory: Path) -> list[Path]:
    return [_plot_profiles([("tanh RNN", m["rows"])], lambda r: f"radius {r['radius']}",
                           directory / "C1_lag_profile_by_radius.png",
                           "Gradient norm against lag (median, band: min-max over seeds)")]


# -- C2: clipping ---------------------------------------------------------------------------

#: The adding task with a tanh RNN whose W_hh starts at a spectral radius above 1 (Pascanu et
#: al. 2013's exploding regime), trained with plain SGD, with and without norm clipping.
C2_SETTINGS = {
    "smoke": {"T": 10, "H": 8, "steps": 20, "radii": (2.0,)},
    "quick": {"T": 50, "H": 32, "steps": 200, "radii": (2.0,)},
    "default": {"T": 50, "H": 32, "steps": 300, "radii": (1.5, 2.0)},
    "full": {"T": 100, "H": 50, "steps": 3000, "radii": (1.5, 2.0)},
}
#: A run blew up if it diverged (NaN/inf, the trainer's test) or if a validation loss after
#: the start rose above both this multiple of the memoryless baseline and the loss it started
#: from (a network that starts far off is not counted as blown up for staying there).
BLOW_UP_FACTOR = 10.0
#: The clipped runs failed if even the low end of their median test loss's interval is this
#: multiple of the memoryless baseline or more: the runs clipping saved did not train.
C2_FAIL_FACTOR = 1.5


def _blew_up(run: dict) -> bool:
    start = run["evals"][0]["loss"]
    limit = max(BLOW_UP_FACTOR * run["baseline_loss"], start)
    return run["diverged"] or any(e["loss"] > limit for e in run["evals"][1:])


def _gradient_curve(result) -> list[list[float]]:
    """(step, largest gradient norm of the log window before any clipping) per window."""
    return [[p["step"], p["grad_norm_max"]] for p in result.curve]


def measure_c2(profile: str) -> dict:
    s = C2_SETTINGS[profile]
    seeds = training.SEEDS[profile]
    task = make_task("adding", T=s["T"])
    runs, searches = [], {}
    for radius in s["radii"]:
        name = f"claims-{training.TRAIN_IMPL}-radius-{radius:g}"
        with training.temporary_implementation(name, training.radius_factory(radius),
                                               frozenset({"rnn_tanh"})):
            def cfg(seed, clip, lr=training.LR_GRID["sgd"][0], impl=name):
                return training.config("rnn_tanh", s["H"], steps=s["steps"], seed=seed,
                                       impl=impl, optimizer="sgd", clip_norm=clip, lr=lr)

            search = training.choose_lr(task, cfg(seeds[0], training.CLIP_NORM))
            searches[f"{radius:g}"] = search
            for clip in (None, training.CLIP_NORM):
                for seed in seeds:
                    result = training.run(task, cfg(seed, clip, search["lr"]))
                    run = training.summary(result)
                    runs.append({**run, "radius": radius, "blew_up": _blew_up(run),
                                 "gradient_curve": _gradient_curve(result)})
    return {"settings": listed(s), "seeds": list(seeds), "clip_norm": training.CLIP_NORM,
            "lr_search": searches, "runs": runs}


def _c2_arm(m: dict, clip) -> dict:
    """One arm's figures: blow-ups (Wilson), peak gradient norm and test loss (bootstrap;
    the test loss over the runs that did not blow up)."""
    runs = [r for r in m["runs"] if r["clip_norm"] == clip]
    kept = [r for r in runs if not r["blew_up"]]
    return {"runs": runs, "blew_up": wilson_interval(sum(r["blew_up"] for r in runs), len(runs)),
            "diverged": sum(r["diverged"] for r in runs),
            "peak": _interval([r["grad_norm_max"] for r in runs]),
            "test": _interval([r["test_loss"] for r in kept]),
            "baseline": float(np.median([r["test_baseline_loss"] for r in runs]))}


def _c2_by_radius(m: dict) -> dict:
    """Per radius: both arms, and what clipping did there: 'nothing to fix' (no run blew up
    either way), 'removed' (no clipped run blew up, and the Wilson intervals do not
    overlap), 'not prevented' (as many or more clipped runs blew up), or 'reduced'."""
    out = {}
    for radius in m["settings"]["radii"]:
        sub = {"runs": [r for r in m["runs"] if r["radius"] == radius]}
        free, clipped = _c2_arm(sub, None), _c2_arm(sub, m["clip_norm"])
        k_free, k_clipped = free["blew_up"]["k"], clipped["blew_up"]["k"]
        if k_free == k_clipped == 0:
            effect = "nothing to fix"
        elif k_clipped >= k_free:
            effect = "not prevented"
        elif k_clipped == 0 and rates_differ(free["blew_up"], clipped["blew_up"]):
            effect = "removed"
        else:
            effect = "reduced"
        out[radius] = {"free": free, "clipped": clipped, "effect": effect}
    return out


def decide_c2(m: dict) -> Verdict:
    by_radius = _c2_by_radius(m)
    clipped = _c2_arm(m, m["clip_norm"])
    evidence = "; ".join(
        f"radius {r:g} at SGD rate {m['lr_search'][f'{r:g}']['lr']:g}: blew up without "
        f"clipping {fmt_rate(v['free']['blew_up'])}, with {fmt_rate(v['clipped']['blew_up'])}, "
        f"peak gradient norm without clipping {fmt(v['free']['peak'], 'median')}"
        for r, v in by_radius.items())
    evidence += (f"; test MSE of the clipped runs {fmt(clipped['test'], 'median')} against "
                 f"the baseline {clipped['baseline']:.3g}")
    effects = {r: v["effect"] for r, v in by_radius.items()}
    named = ", ".join(f"radius {r:g}: {e}" for r, e in effects.items())
    if all(e == "nothing to fix" for e in effects.values()):
        return Verdict(DEPENDS, "no run blew up even without clipping: at the rate the clipped "
                       "model trains best, plain SGD survives the large gradients here, so "
                       f"clipping had nothing to fix; {evidence}")
    if "not prevented" in effects.values():
        return Verdict(NOT_SUPPORTED, f"clipping did not prevent the blow-ups ({named}); "
                       f"{evidence}")
    low, _ = _bounds(clipped["test"])
    if not math.isfinite(low) or low >= C2_FAIL_FACTOR * clipped["baseline"]:
        return Verdict(NOT_SUPPORTED, "clipping stopped the blow-ups but the clipped runs "
                       f"failed all the same (test MSE at or above {C2_FAIL_FACTOR:g} x the "
                       f"baseline); {evidence}")
    if all(e in ("removed", "nothing to fix") for e in effects.values()):
        return Verdict(SUPPORTED, f"clipping removed every blow-up ({named}); {evidence}")
    why = ("some clipped runs still blew up" if any(
        v["clipped"]["blew_up"]["k"] for v in by_radius.values()) else
        "the difference is within the seeds' noise (the Wilson intervals overlap)")
    return Verdict(DEPENDS, f"clipping reduced the blow-ups, but {why} ({named}); {evidence}")


def against_c2(m: dict) -> str:
    by_radius = _c2_by_radius(m)
    clipped = _c2_arm(m, m["clip_norm"])
    status = decide_c2(m).status
    counts = "; ".join(f"from radius {r:g}, {fmt_rate(v['free']['blew_up'])} without and "
                       f"{fmt_rate(v['clipped']['blew_up'])} with clipping"
                       for r, v in by_radius.items())
    ours = (f"Ours, plain SGD on the adding task (T={m['settings']['T']}), both arms at one "
            f"learning rate, the norm clipped to {m['clip_norm']:g}: runs that blew up "
            f"{counts}.")
    learned = _side(clipped["test"], clipped["baseline"]) == -1
    task = (f"the clipped runs also beat the memoryless baseline (test MSE "
            f"{fmt(clipped['test'], 'median')} against {clipped['baseline']:.3g})" if learned
            else f"clipping alone does not make the task learnable here (clipped test MSE "
            f"{fmt(clipped['test'], 'median')} against the baseline "
            f"{clipped['baseline']:.3g}): the vanishing half of the problem remains")
    if status == SUPPORTED:
        tail = f" We agree that clipping removes the blow-ups; {task}."
    elif all(v["effect"] == "nothing to fix" for v in by_radius.values()):
        tail = (" Nothing blew up without clipping at this rate, so this run cannot confirm "
                "or refute them; a larger rate would.")
    elif status == DEPENDS:
        tail = (" This points their way, but not every blow-up is gone, or with so few seeds "
                "the two rates' intervals overlap and it cannot be told from chance.")
    else:
        tail = (" Unlike them, we find that clipping did not save these runs: a clipped step "
                "is at most the rate times the threshold, so what remains comes from the "
                "rate or the task, not from the gradient's size.")
    return ("Pascanu, Mikolov & Bengio (2013) trained tanh RNNs with plain SGD and found "
            "that rescaling the gradient whenever its norm passes a threshold keeps the "
            "rare huge gradients from throwing training off. " + ours + tail)


def summarize_c2(m: dict) -> str:
    s = m["settings"]
    rows = []
    for radius in s["radii"]:
        sub = {"runs": [r for r in m["runs"] if r["radius"] == radius],
               "clip_norm": m["clip_norm"]}
        lr = m["lr_search"][f"{radius:g}"]["lr"]
        for clip in (None, m["clip_norm"]):
            arm = _c2_arm(sub, clip)
            rows.append([radius, lr, "none" if clip is None else f"norm {clip:g}",
                         f"{arm['diverged']}/{len(arm['runs'])}", fmt_rate(arm["blew_up"]),
                         fmt(arm["peak"], "median"), fmt(arm["test"], "median")])
    searches = "; ".join(
        f"radius {k}: " + ", ".join(f"{t['lr']:g} -> {t['best_validation_loss']:.3g}"
                                    for t in v["tried"])
        for k, v in m["lr_search"].items())
    return "\n".join([
        f"Tanh RNN with W_hh rescaled at init to spectral radius {s['radii']}, adding task "
        f"T={s['T']} (memoryless baseline MSE 0.167), H={s['H']}, {s['steps']} steps of plain "
        f"SGD (no momentum), batch {training.BATCH_SIZE}, seeds {m['seeds']}. The learning "
        "rate is chosen per radius by the clipped model's best validation loss on the first "
        f"seed ({searches}) and used for both arms. Blew up = NaN/inf, or a validation MSE "
        f"after the start above both {BLOW_UP_FACTOR:g} x baseline and the starting loss. "
        "Peak gradient norm is measured before clipping; the test MSE (of the best-validation "
        "model) is over the runs that did not blow up. Median [95% interval]; rates with "
        "Wilson intervals:", "",
        table(["radius", "SGD rate", "clipping", "NaN/inf", "blew up", "peak gradient norm",
               "test MSE"], rows),
    ])


def plot_c2(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.2),
                                   gridspec_kw={"width_ratios": [2.2, 1]})
    colours = {None: "tab:red", m["clip_norm"]: "tab:blue"}
    styles = dict(zip(m["settings"]["radii"], ("-", ":", "--", "-.")))
    for r in m["runs"]:
        curve = np.asarray(r["gradient_curve"]).reshape(-1, 2)
        if len(curve) == 0:
            continue
        ax.plot(curve[:, 0], curve[:, 1], color=colours[r["clip_norm"]], alpha=0.55, lw=1,
                ls=styles[r["radius"]])
        if r["blew_up"]:
            ax.plot(curve[-1, 0], curve[-1, 1], "x", color=colours[r["clip_norm"]], ms=8)
    ax.axhline(m["clip_norm"], color="grey", ls="--", lw=0.8)
    handles = [plt.Line2D([], [], color=c, label=("no clipping" if clip is None else
                                                   f"clipped to norm {clip:g}"))
               for clip, c in colours.items()]
    handles += [plt.Line2D([], [], color="k", ls=ls, label=f"radius {radius:g}")
                for radius, ls in styles.items()]
    handles.append(plt.Line2D([], [], color="k", marker="x", ls="", label="blew up"))
    ax.legend(handles=handles, fontsize=8)
    ax.set(yscale="log", xlabel="SGD step",
           ylabel="largest gradient norm per 10 steps (before clipping)",
           title="Gradient norm during training (dashed: clipping threshold)")
    arms = [(radius, clip) for radius in m["settings"]["radii"] for clip in (None,
                                                                             m["clip_norm"])]
    for i, (radius, clip) in enumerate(arms):
        sub = {"runs": [r for r in m["runs"] if r["radius"] == radius]}
        blown = _c2_arm(sub, clip)["blew_up"]
        low, high = blown["ci95"]
        bars.bar(i, blown["rate"], color=colours[clip], alpha=0.7)
        bars.errorbar(i, blown["rate"], yerr=[[blown["rate"] - low], [high - blown["rate"]]],
                      color="k", capsize=4)
        bars.text(i, high + 0.03, f"{blown['k']}/{blown['n']}", ha="center", fontsize=9)
    bars.set_xticks(range(len(arms)), [f"r={radius:g}\n{'none' if clip is None else 'clip'}"
                                       for radius, clip in arms], fontsize=8)
    bars.set(ylim=(0, 1.15), ylabel="share of runs that blew up",
             title="Blow-ups (95% Wilson interval)")
    fig.tight_layout()
    path = directory / "C2_clipping.png"
    save_figure(fig, path)
    return [path]


# -- C4: tanh vs ReLU ------------------------------------------------------------------------

#: C4's training comparison: plain SGD without clipping on the adding task, from the
#: trainer's default init and from W_hh rescaled to each radius in `radii`.
C4_TRAINING = {
    "smoke": {"T": 10, "H": 16, "steps": 20, "radii": (1.5,)},
    "quick": {"T": 50, "H": 32, "steps": 200, "radii": (1.5,)},
    "default": {"T": 50, "H": 32, "steps": 300, "radii": (1.5,)},
    "full": {"T": 100, "H": 50, "steps": 3000, "radii": (1.0, 1.5)},
}
C4_CELLS = ("rnn_tanh", "rnn_relu")
#: Peak gradient norms differ in a way that matters for stability only if the ratio's
#: interval clears this factor (a first step's gradient varies by less between seeds).
C4_PEAK_RATIO = 2.0


def _c4_init(radius) -> str:
    return "default init" if radius is None else f"radius {radius:g}"


def measure_c4(profile: str) -> dict:
    lag_rows = [_profile_rows(cell, profile, radius=r) for cell in C4_CELLS for r in RADII]
    s = C4_TRAINING[profile]
    seeds = training.SEEDS[profile]
    task = make_task("adding", T=s["T"])
    runs, searches = [], {}
    for radius in (None, *s["radii"]):
        name = training.TRAIN_IMPL if radius is None else (
            f"claims-{training.TRAIN_IMPL}-radius-{radius:g}")
        layer = (training.temporary_implementation(name, training.radius_factory(radius),
                                                   frozenset(C4_CELLS))
                 if radius is not None else contextlib.nullcontext())
        with layer:
            def cfg(cell, seed, lr=training.LR_GRID["sgd"][0], impl=name):
                return training.config(cell, s["H"], steps=s["steps"], seed=seed, impl=impl,
                                       optimizer="sgd", clip_norm=None, lr=lr)

            search = {cell: training.choose_lr(task, cfg(cell, seeds[0])) for cell in C4_CELLS}
            lr = min(found["lr"] for found in search.values())
            searches[_c4_init(radius)] = {"lr": lr, **search}
            for cell in C4_CELLS:
                for seed in seeds:
                    run = training.summary(training.run(task, cfg(cell, seed, lr)))
                    runs.append({**run, "init": _c4_init(radius)})
    return {"sizes": _sizes(profile), "training": listed(s), "seeds": list(seeds),
            "inits": [_c4_init(r) for r in (None, *s["radii"])], "lr_search": searches,
            "lag_rows": lag_rows, "runs": runs}


def _joined(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _distance_from_one(row: dict) -> list[float]:
    """|log10 per-step factor| per seed: 0 when the gradient keeps its size step after step."""
    return [abs(math.log10(f)) for f in row["growth_factor"]]


def _c4_lag(m: dict) -> dict:
    """Per radius: ReLU's |log10 factor| minus tanh's, paired by seed (the same W_hh), its
    median with a bootstrap interval, and which activation keeps the factor nearer 1."""
    rows = {(r["cell"], r["radius"]): r for r in m["lag_rows"]}
    radii = sorted({r["radius"] for r in m["lag_rows"]})
    out = {}
    for radius in radii:
        tanh, relu = (_distance_from_one(rows[(c, radius)]) for c in C4_CELLS)
        gap = _interval([b - a for a, b in zip(tanh, relu)])
        out[radius] = {"gap": gap, "tanh": _interval(tanh), "relu": _interval(relu),
                       "closer": {1: "tanh", -1: "relu", 0: "neither"}[_side(gap, 0.0)]}
    return out


def _c4_training(m: dict) -> dict:
    """Per initialisation: divergence rates (Wilson) and peak gradient norms of the runs
    that did not diverge (ReLU / tanh ratio of medians), and which activation trained worse:
    the one that diverged more often beyond the seeds' noise, else the one whose peak
    gradient norm is over `C4_PEAK_RATIO` times the other's, interval and all."""
    out = {}
    for init in m["inits"]:
        arm = {}
        for cell in C4_CELLS:
            runs = [r for r in m["runs"] if r["init"] == init and r["cell"] == cell]
            peaks = [r["grad_norm_max"] for r in runs
                     if not r["diverged"] and math.isfinite(r["grad_norm_max"])]
            arm[cell] = {"diverged": wilson_interval(sum(r["diverged"] for r in runs),
                                                     len(runs)),
                         "peak": _interval(peaks), "peaks": peaks}
        tanh, relu = arm["rnn_tanh"], arm["rnn_relu"]
        ratio = (ratio_interval(relu["peaks"], tanh["peaks"])
                 if relu["peaks"] and tanh["peaks"] else {"ratio": None, "ci95": None})
        if rates_differ(tanh["diverged"], relu["diverged"]):
            worse = "relu" if relu["diverged"]["rate"] > tanh["diverged"]["rate"] else "tanh"
        else:
            interval = {"median": ratio["ratio"], "ci95": ratio["ci95"]}
            worse = ("relu" if _side(interval, C4_PEAK_RATIO) == 1 else
                     "tanh" if _side(interval, 1 / C4_PEAK_RATIO) == -1 else "neither")
        out[init] = {**arm, "peak_ratio": ratio, "worse": worse}
    return out


def decide_c4(m: dict) -> Verdict:
    lag, trained = _c4_lag(m), _c4_training(m)
    tanh_closer = [r for r, v in lag.items() if v["closer"] == "tanh"]
    relu_closer = [r for r, v in lag.items() if v["closer"] == "relu"]
    relu_worse = [i for i, v in trained.items() if v["worse"] == "relu"]
    tanh_worse = [i for i, v in trained.items() if v["worse"] == "tanh"]
    evidence = (
        "|log10 per-step factor| ReLU minus tanh, median [95% interval] over seeds: "
        + ", ".join(f"radius {r:g}: {fmt(v['gap'], 'median')}" for r, v in lag.items())
        + "; SGD without clipping, diverged tanh vs ReLU: "
        + ", ".join(f"{i}: {fmt_rate(v['rnn_tanh']['diverged'])} vs "
                    f"{fmt_rate(v['rnn_relu']['diverged'])}, peak gradient ReLU/tanh "
                    f"{fmt(v['peak_ratio'], 'ratio')}" for i, v in trained.items()))
    if len(tanh_closer) == len(lag) and relu_worse and not tanh_worse:
        return Verdict(SUPPORTED, "tanh keeps the per-step factor nearer 1 at every radius "
                       f"and ReLU trains less stably from the {', '.join(relu_worse)}; "
                       f"{evidence}")
    if not tanh_closer and not relu_worse:
        return Verdict(NOT_SUPPORTED, "tanh keeps the factor nearer 1 at no radius and ReLU "
                       f"trains no less stably; {evidence}")
    where = [f"tanh nearer 1 at radius {_joined(tanh_closer)}" if tanh_closer else
             "tanh nearer 1 at no radius",
             f"ReLU nearer 1 at radius {_joined(relu_closer)}" if relu_closer else "",
             f"ReLU less stable in training from the {_joined(relu_worse)}" if relu_worse
             else "",
             f"tanh less stable in training from the {_joined(tanh_worse)}" if tanh_worse
             else "",
             "no difference in training beyond noise" if not relu_worse and not tanh_worse
             else ""]
    return Verdict(DEPENDS, "; ".join(w for w in where if w) + f"; {evidence}")


def against_c4(m: dict) -> str:
    lag, trained = _c4_lag(m), _c4_training(m)
    rows = {(r["cell"], r["radius"]): r for r in m["lag_rows"]}
    unit = 1.0 if 1.0 in lag else min(lag, key=lambda r: abs(r - 1))
    factors = ", ".join(f"{name} {fmt(_factor_interval(rows[(cell, unit)]), 'median')}"
                        for name, cell in (("tanh", "rnn_tanh"), ("ReLU", "rnn_relu")))
    diverged = "; ".join(f"{i}: tanh {fmt_rate(v['rnn_tanh']['diverged'])}, ReLU "
                         f"{fmt_rate(v['rnn_relu']['diverged'])}" for i, v in trained.items())
    tanh_better = lag[unit]["closer"] == "tanh"
    return (
        "Le, Jaitly & Hinton (2015) trained ReLU RNNs as well as LSTMs once W_hh started as "
        "the identity (IRNN): ReLU's trouble is where its W_hh starts, not the activation as "
        f"such. Ours, with a random W_hh of spectral radius {unit:g}: per-step factor "
        f"{factors}; diverged without clipping, {diverged}. "
        + ("With a random W_hh ReLU's factor is further from 1, since each unit's derivative "
           "is 0 or 1 and about half are 0, and above radius 1 nothing bounds its state; "
           "this does not contradict them, since the identity init (which C3 tests) keeps "
           "every unit's factor at exactly 1." if tanh_better else
           "ReLU is no further from 1 here than tanh, in line with their finding that ReLU "
           "itself is not the obstacle."))


def summarize_c4(m: dict) -> str:
    lag = _c4_lag(m)
    lag_rows = [[radius, fmt(v["tanh"], "median"), fmt(v["relu"], "median"),
                 fmt(v["gap"], "median"), v["closer"]] for radius, v in lag.items()]
    trained = _c4_training(m)
    t = m["training"]
    train_rows = [[init, m["lr_search"][init]["lr"], fmt_rate(v["rnn_tanh"]["diverged"]),
                   fmt_rate(v["rnn_relu"]["diverged"]), fmt(v["rnn_tanh"]["peak"], "median"),
                   fmt(v["rnn_relu"]["peak"], "median"), fmt(v["peak_ratio"], "ratio"),
                   v["worse"]] for init, v in trained.items()]
    searches = "; ".join(
        f"{init}: " + ", ".join(f"{cell} picks {v[cell]['lr']:g}" for cell in C4_CELLS)
        for init, v in m["lr_search"].items())
    s = m["sizes"]
    return "\n".join([
        f"Lag profile (as C1, H={s['H']}, T={s['T']}, {len(s['seeds'])} seeds) with the same "
        "W_hh for tanh and ReLU. Distance from 1 = |log10 per-step factor| (0: the gradient "
        "keeps its size; as far below 1 as above); the gap is ReLU's minus tanh's, paired by "
        "seed; median [95% interval]:",
        "",
        table(["spectral radius", "tanh distance", "ReLU distance", "gap ReLU - tanh",
               "nearer 1"], lag_rows),
        "",
        f"Training: the same initial weights for both activations, adding task T={t['T']}, "
        f"H={t['H']}, {t['steps']} steps of plain SGD without clipping, batch "
        f"{training.BATCH_SIZE}, seeds {m['seeds']}. The learning rate: each activation's "
        f"choice from {{{', '.join(f'{r:g}' for r in training.LR_GRID['sgd'])}}} by the "
        f"first seed's best validation loss ({searches}), and both train at the smaller of "
        "the two, so that neither runs above the rate it prefers. Diverged = NaN/inf "
        "(Wilson interval); peak gradient norm over the runs that did not diverge:",
        "",
        table(["initialisation", "SGD rate", "tanh diverged", "ReLU diverged",
               "tanh peak gradient", "ReLU peak gradient", "peak ReLU / tanh",
               "less stable"], train_rows),
    ])


def plot_c4(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"rnn_tanh": "tab:blue", "rnn_relu": "tab:orange"}
    for i, cell in enumerate(C4_CELLS):
        rows = sorted((r for r in m["lag_rows"] if r["cell"] == cell),
                      key=lambda r: r["radius"])
        x = np.array([r["radius"] for r in rows]) + (i - 0.5) * 0.03
        found = [_factor_interval(r) for r in rows]
        mid = np.array([f["median"] for f in found])
        low, high = np.array([_bounds(f) for f in found]).T
        left.errorbar(x, mid, yerr=[mid - low, high - mid], marker="o", capsize=3,
                      color=colours[cell], label=cell.replace("rnn_", ""))
    left.axhline(1, color="grey", ls="--", lw=0.8)
    left.set(yscale="log", xlabel="spectral radius of W_hh (the same W_hh for both)",
             ylabel="per-step gradient factor",
             title="Gradient factor per step back (1 = stable)")
    left.legend(fontsize=8)
    trained = _c4_training(m)
    for j, init in enumerate(m["inits"]):
        for i, cell in enumerate(C4_CELLS):
            runs = [r for r in m["runs"] if r["init"] == init and r["cell"] == cell]
            x = j + (i - 0.5) * 0.3
            ok = [r["grad_norm_max"] for r in runs if not r["diverged"]]
            right.scatter([x] * len(ok), ok, color=colours[cell], alpha=0.7, s=18,
                          label=cell.replace("rnn_", "") if j == 0 else None)
            rate = trained[init][cell]["diverged"]
            right.annotate(f"{rate['k']}/{rate['n']}\ndiverged", (x, 1.0),
                           xycoords=("data", "axes fraction"), ha="center", va="top",
                           fontsize=7, color=colours[cell])
    right.set_xticks(range(len(m["inits"])), m["inits"])
    right.set_xlim(-0.6, len(m["inits"]) - 0.4)
    right.set(yscale="log", ylabel="peak gradient norm (runs that did not diverge)",
              title="Plain SGD, no clipping, adding task")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = directory / "C4_tanh_vs_relu.png"
    save_figure(fig, path)
    return [path]


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
#: The total gradient "does not vanish" if the longer T's total over the shorter's stays in
#: this range; it is "short-range dominated" if lags > 10 carry less than this share.
C5_STABLE_TOTAL = (0.5, 2.0)
C5_SHORT_RANGE_SHARE = 0.1
#: A per-lag term smaller than this fraction of the total is below float64's resolution of
#: the sum (machine epsilon 2.2e-16): it cannot change the gradient, so it is not plotted.
FLOAT64_FLOOR = 1e-16


def _share_beyond(norms: list[float], lag: int) -> float:
    norms = np.asarray(norms)
    return float(norms[lag + 1:].sum() / norms.sum())


def measure_c5(profile: str) -> dict:
    sizes, d = PROFILE_SIZES[profile], DECOMPOSITION[profile]
    rows = []
    for cell, forget_bias in C5_CELLS:
        for T in d["T"]:
            for seed in d["seeds"]:
                layer, task = starting_layer(cell, sizes["H"], T, seed,
                                             forget_bias=forget_bias)
                result = lag_decomposition(layer, task, sizes["B"], seed)
                rows.append({"cell": cell, "forget_bias": forget_bias, "T": T, "seed": seed,
                             **result,
                             **{f"share_beyond_{lag}": _share_beyond(result["norm_by_lag"], lag)
                                for lag in SHORT_LAGS}})
    return {"sizes": {"H": sizes["H"], "B": sizes["B"], "seeds": list(d["seeds"])},
            "T": list(d["T"]), "rows": rows}


def _c5_label(cell, forget_bias):
    return cell if forget_bias is None else f"{cell} (forget bias {forget_bias:g})"


def _c5_stats(m: dict) -> dict:
    """Per cell: the long T's total over the short T's per seed, and the long T's shares."""
    short_T, long_T = m["T"]
    out = {}
    for cell, forget_bias in dict.fromkeys((r["cell"], r["forget_bias"]) for r in m["rows"]):
        by_seed = {}
        for r in m["rows"]:
            if r["cell"] == cell and r["forget_bias"] == forget_bias:
                by_seed.setdefault(r["seed"], {})[r["T"]] = r
        both = [s for s in by_seed.values() if short_T in s and long_T in s]
        out[(cell, forget_bias)] = {
            "total_ratio": _interval([s[long_T]["total_norm"] / s[short_T]["total_norm"]
                                      for s in both]),
            "total_long": _interval([s[long_T]["total_norm"] for s in both]),
            **{f"share_{lag}": _interval([s[long_T][f"share_beyond_{lag}"] for s in both])
               for lag in SHORT_LAGS},
        }
    return out


def decide_c5(m: dict) -> Verdict:
    rnn = _c5_stats(m)[("rnn_tanh", None)]
    low, high = _bounds(rnn["total_ratio"])
    stable = C5_STABLE_TOTAL[0] <= low and high <= C5_STABLE_TOTAL[1]
    short = _bounds(rnn["share_10"])[1] < C5_SHORT_RANGE_SHARE
    evidence = (f"tanh RNN: total ||dL/dW_hh|| at T={m['T'][1]} over T={m['T'][0]} "
                f"{fmt(rnn['total_ratio'], 'median')}, share of lags > 10 "
                f"{fmt(rnn['share_10'], 'median')} (median [95% interval] over seeds)")
    if stable and short:
        return Verdict(SUPPORTED, "the total gradient keeps its size as T grows and the "
                       f"nearest 10 steps carry almost all of it; {evidence}")
    if stable:
        return Verdict(DEPENDS, "the total keeps its size, but distant lags still carry a "
                       f"real share of it; {evidence}")
    if short:
        return Verdict(DEPENDS, "the nearest steps dominate, but the total changes with T; "
                       f"{evidence}")
    return Verdict(NOT_SUPPORTED, evidence)


def against_c5(m: dict) -> str:
    stats = _c5_stats(m)
    rnn = stats[("rnn_tanh", None)]
    lstm = stats.get(("lstm", 1.0))
    verdict = decide_c5(m).status
    return (
        "Goodfellow, Bengio & Courville (2016, section 10.7) state no figure: the gradient of "
        "a long-term interaction is exponentially smaller than that of short-term ones, so "
        "it is hidden among them. Ours, tanh RNN at the default init: lags beyond 10 carry "
        f"{fmt(rnn['share_10'], 'median')} of the per-lag norms and lags beyond 50 "
        f"{fmt(rnn['share_50'], 'median')}, while the total at T={m['T'][1]} is "
        f"{fmt(rnn['total_ratio'], 'median')} times that at T={m['T'][0]}"
        + (f"; an LSTM with forget bias 1 moves {fmt(lstm['share_10'], 'median')} of it "
           "beyond lag 10" if lstm else "")
        + (". This agrees with them: the total stays, the distant terms are swamped."
           if verdict == SUPPORTED else
           ". This only partly matches their account (see the verdict for which half holds)."))


def summarize_c5(m: dict) -> str:
    stats = _c5_stats(m)
    s = m["sizes"]
    rows = [[_c5_label(*key), fmt(v["total_long"], "median"), fmt(v["total_ratio"], "median"),
             fmt(v["share_10"], "median"), fmt(v["share_50"], "median")]
            for key, v in stats.items()]
    return "\n".join([
        f"dL/dW_hh split by the step at which W_hh is used (lag T-k), float64 reference, "
        f"default init, H={s['H']}, batch {s['B']}, {len(s['seeds'])} seeds. Share beyond a "
        "lag: sum of the per-lag norms past it over the sum of all per-lag norms. Median "
        "[95% interval] over seeds; a share below 1e-16 is below float64's resolution of the "
        "sum and means 'none':",
        "",
        table(["cell", f"total norm, T={m['T'][1]}", f"total T={m['T'][1]} / T={m['T'][0]}",
               "share lags > 10", "share lags > 50"], rows),
    ])


def plot_c5(m: dict, directory: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    long_T = m["T"][1]
    stats = _c5_stats(m)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for cell, forget_bias in C5_CELLS:
        curves = np.asarray([r["norm_by_lag"] for r in m["rows"] if r["cell"] == cell
                             and r["forget_bias"] == forget_bias and r["T"] == long_T])
        cumulative = np.cumsum(curves, axis=1) / curves.sum(axis=1, keepdims=True)
        lags = np.arange(1, curves.shape[1] + 1)
        left.plot(lags, np.median(cumulative, 0), label=_c5_label(cell, forget_bias))
    for lag in SHORT_LAGS:
        left.axvline(lag + 1, color="grey", ls=":", lw=0.8)
        left.text(lag + 1, 0.03, f" lag {lag}", fontsize=7, color="grey")
    left.set(xscale="log", ylim=(0, 1.02),
             xlabel="most recent steps counted, n (lags 0 to n-1; log scale)",
             ylabel="share of the summed per-lag norms",
             title=f"How much of dL/dW_hh the last n steps carry (T={long_T})")
    left.legend(fontsize=8, loc="lower right")
    keys = list(stats)
    width = 0.38
    for j, lag in enumerate(SHORT_LAGS):
        for i, key in enumerate(keys):
            share = stats[key][f"share_{lag}"]
            mid = max(share["median"], FLOAT64_FLOOR)
            low, high = (max(b, FLOAT64_FLOOR) for b in _bounds(share))
            x = i + (j - 0.5) * width
            right.bar(x, mid, width, color=f"C{j}", alpha=0.75,
                      label=f"lags > {lag}" if i == 0 else None)
            right.errorbar(x, mid, yerr=[[mid - low], [high - mid]], color="k", capsize=3)
    right.axhline(FLOAT64_FLOOR, color="grey", lw=0.8,
                  label="float64 resolution of the sum (below: none)")
    right.set_xticks(range(len(keys)), [_c5_label(*k).replace(" (forget bias ", "\nbias ")
                                        .rstrip(")") for k in keys], fontsize=8)
    right.set(yscale="log", ylim=(FLOAT64_FLOOR / 3, 1e4),
              ylabel="share beyond the lag (log scale)",
              title="Share of dL/dW_hh from distant steps (95% interval)")
    right.legend(fontsize=7, loc="upper center", ncol=3)
    fig.tight_layout()
    path = directory / "C5_lag_decomposition.png"
    save_figure(fig, path)
    return [path]


# -- C6: gated cells ---------------------------------------------------------------------------

C6_CONFIGS = (("rnn_tanh", None), ("lstm", 0.0), ("lstm", 1.0), ("lstm", 3.0), ("gru", None))


def measure_c6(profile: str) -> dict:
    rows = [_profile_rows(cell, profile, forget_bias=fb) for cell, fb in C6_CONFIGS]
    return {"sizes": _sizes(profile), "rows": rows}


def _c6_key(row) -> str:
    return _c5_label(row["cell"], row["forget_bias"])


def _c6_slower(m: dict) -> tuple[list[str], list[str]]:
    """The gated configurations whose per-step factor's interval lies wholly above the tanh
    RNN's (decays slower), and those wholly below it (decays faster)."""
    rnn = next(r for r in m["rows"] if r["cell"] == "rnn_tanh")
    low_rnn, high_rnn = _bounds(_factor_interval(rnn))
    slower, faster = [], []
    for row in m["rows"]:
        if row["cell"] == "rnn_tanh":
            continue
        low, high = _bounds(_factor_interval(row))
        if low > high_rnn:
            slower.append(_c6_key(row))
        elif high < low_rnn:
            faster.append(_c6_key(row))
    return slower, faster


def decide_c6(m: dict) -> Verdict:
    gated = [_c6_key(r) for r in m["rows"] if r["cell"] != "rnn_tanh"]
    slower, faster = _c6_slower(m)
    factors = "; ".join(f"{_c6_key(r)} {fmt(_factor_interval(r), 'median')}" for r in m["rows"])
    evidence = f"per-step factors, median [95% interval] over seeds: {factors}"
    if len(slower) == len(gated):
        return Verdict(SUPPORTED, "every gated cell's gradient decays slower than the tanh "
                       "RNN's; " + evidence)
    if slower:
        return Verdict(DEPENDS, f"decays slower than the tanh RNN only for {', '.join(slower)} "
                       "(the forget gate's bias sets how much passes the conveyor belt); "
                       + evidence)
    return Verdict(NOT_SUPPORTED, "no gated cell decays slower at initialisation"
                   + (f" ({', '.join(faster)} decays faster)" if faster else "") + "; "
                   + evidence)


def against_c6(m: dict) -> str:
    rows = {(r["cell"], r["forget_bias"]): r for r in m["rows"]}
    lag = min(50, m["sizes"]["T"])
    at = {fb: _interval([c[lag] for c in rows[("lstm", fb)]["log10_norm_by_lag"]])
          for fb in (0.0, 1.0) if ("lstm", fb) in rows}
    if len(at) < 2:
        return "Jozefowicz, Zaremba & Sutskever (2015): not measured here."
    gain = at[1.0]["median"] - at[0.0]["median"]
    return (
        "Jozefowicz, Zaremba & Sutskever (2015) found that a forget-gate bias of 1 at "
        "initialisation closed most of the LSTM's gap to the GRU across their tasks; they "
        "report accuracy after training, we report the gradient at the start, so the "
        f"comparison is of direction only. Ours: at lag {lag} the LSTM's log10 gradient norm "
        f"is {fmt(at[0.0], 'median')} with bias 0 and {fmt(at[1.0], 'median')} with bias 1, "
        f"{gain:.1f} orders of magnitude more gradient reaching {lag} steps back; the per-step "
        f"factor goes from {fmt(_factor_interval(rows[('lstm', 0.0)]), 'median')} to "
        f"{fmt(_factor_interval(rows[('lstm', 1.0)]), 'median')}. "
        + ("This agrees with their advice: the bias is what opens the conveyor belt."
           if gain > 0 else "This does not match their advice: bias 1 did not help here."))


def summarize_c6(m: dict) -> str:
    s = m["sizes"]
    lag = min(50, s["T"])
    rows = [[_c6_key(r), fmt(_factor_interval(r), "median"),
             fmt(_interval([c[lag] for c in r["log10_norm_by_lag"]]), "median")]
            for r in m["rows"]]
    return "\n".join([
        f"Lag profile as C1 at the trainer's default init (no rescaling), H={s['H']}, "
        f"T={s['T']}, {len(s['seeds'])} seeds; for the LSTM the state gradient is (dL/dh, "
        "dL/dc) together; forget bias = the forget gate's total bias at init (0 = none "
        "added). Median [95% interval] over seeds:",
        "",
        table(["cell", "per-step factor", f"log10 norm at lag {lag}"], rows),
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
                "distance, above 1 it grows. The largest singular value of each W_hh is "
                "recorded beside it."),
        rule=("per spectral radius of W_hh, each seed's per-step factor is 10^(slope of log10 "
              "||dL/dh_k|| on the lag); the radius 'vanishes' if the bootstrap 95% interval of "
              "the median factor over seeds lies below 1, 'explodes' if it lies above 1. Not "
              "supported if some radius < 1 does not vanish; supported if every radius < 1 "
              "vanishes and every radius > 1 explodes; depends otherwise (naming from which "
              "radius it explodes)."),
        anchors=(Anchor("Pascanu, Mikolov & Bengio 2013", "for a tanh RNN (derivative "
                        "bounded by gamma = 1), a largest singular value of W_hh below "
                        "1/gamma is sufficient for the long-term gradient to vanish, and one "
                        "above 1/gamma is necessary for it to explode"),),
        measure=measure_c1, decide=decide_c1, summarize=summarize_c1, plot=plot_c1,
        against=against_c1),
    Claim(
        id="C2", notes=(f"{NOTE_000} §2", f"{NOTE_000} §3"),
        statement=("Exploding gradients are the easy half of the problem: clipping the "
                   "gradient deals with them."),
        method=("Tanh RNNs whose W_hh starts rescaled to a spectral radius above 1 (1.5 and 2 "
                "in the default profile) are trained on the adding problem with plain SGD, "
                "once without and once with the gradient norm clipped to 1, over several "
                "seeds, both arms at the learning rate the clipped model trains best with; "
                "per run, whether it blew up (NaN/inf, or a validation loss far above the "
                "memoryless baseline), its gradient norm throughout training and its test "
                "loss."),
        rule=(f"a run blew up if it hit NaN/inf or a validation loss after the start above "
              f"both {BLOW_UP_FACTOR:g} x the memoryless baseline and its starting loss. Per "
              "radius, clipping 'removed' the blow-ups if no clipped run blew up and the two "
              "arms' Wilson 95% intervals do not overlap, 'did not prevent' them if as many "
              "clipped runs blew up or more (some blowing up), and there was 'nothing to "
              "fix' if no run blew up. Depends if there was nothing to fix at every radius; "
              "not supported if clipping did not prevent the blow-ups at some radius, or if "
              "the clipped runs that did not blow up failed (the low end of their median "
              f"test loss's 95% interval at or above {C2_FAIL_FACTOR:g} x baseline); "
              "supported if it removed them at every radius where there were any; depends "
              "otherwise (fewer blow-ups, but some remain or the difference is within "
              "noise)."),
        anchors=(Anchor("Pascanu, Mikolov & Bengio 2013", "proposed rescaling the gradient "
                        "whenever its norm passes a threshold (norm clipping) as the remedy "
                        "for exploding gradients, for tanh RNNs trained with plain SGD"),),
        measure=measure_c2, decide=decide_c2, summarize=summarize_c2, plot=plot_c2,
        against=against_c2),
    Claim(
        id="C4", notes=(f"{NOTE_001} §1",),
        statement=("Inside an RNN, tanh keeps the gradients better behaved than ReLU would."),
        method=("Tanh and ReLU RNNs with the same W_hh: lag profiles (as C1) at each spectral "
                "radius, compared by the per-step factor's distance from 1 (|log10 factor|, "
                "as far below 1 as above); and training runs on the adding problem with plain "
                "SGD and no clipping, from the default initialisation and from W_hh rescaled "
                "to a radius above 1, several seeds, counting divergent runs and recording "
                "each run's peak gradient norm."),
        rule=("lag profiles: per radius, the paired per-seed gap |log10 factor| ReLU minus "
              "tanh; tanh is nearer 1 if the gap's bootstrap 95% interval lies above 0, ReLU "
              "if below. Training (SGD, no clipping), per initialisation: ReLU trains less "
              "stably if its divergence rate's Wilson interval lies above tanh's, or, the "
              "rates not differing, if the bootstrap interval of the ratio of median peak "
              "gradient norms ReLU/tanh (runs that did not diverge) lies above "
              f"{C4_PEAK_RATIO:g} (tanh likewise, below 1/{C4_PEAK_RATIO:g}). "
              "Supported if tanh is nearer 1 at every radius, ReLU trains less stably from "
              "some initialisation and tanh from none; not supported if tanh is nearer 1 at "
              "no radius and ReLU trains less stably from no initialisation; depends "
              "otherwise (naming where)."),
        anchors=(Anchor("Le, Jaitly & Hinton 2015", "a ReLU RNN whose W_hh starts as the "
                        "identity and whose biases start at zero (IRNN) learned the adding "
                        "problem, sequential MNIST and language modelling about as well as an "
                        "LSTM"),),
        measure=measure_c4, decide=decide_c4, summarize=summarize_c4, plot=plot_c4,
        against=against_c4),
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
        rule=(f"tanh RNN at default init: the 95% interval of the median ratio of total "
              f"||dL/dW_hh|| at the longer T over the shorter must lie within "
              f"{list(C5_STABLE_TOTAL)} (the total does not vanish), and the upper end of the "
              f"interval of the median share of lags > 10 must be under "
              f"{C5_SHORT_RANGE_SHARE:.0%} of the summed per-lag norms (short-range "
              "dominated). Supported if both, depends if one (named), not supported if "
              "neither."),
        anchors=(Anchor("Goodfellow, Bengio & Courville 2016, Deep Learning, section 10.7",
                        "the gradient of a long-term interaction is exponentially smaller "
                        "than that of short-term ones, so it is masked by them rather than "
                        "the gradient as a whole going to zero"),),
        measure=measure_c5, decide=decide_c5, summarize=summarize_c5, plot=plot_c5,
        against=against_c5),
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
              "0, 1, 3; GRU): 'slower decay' if the bootstrap 95% interval of its median "
              "per-step factor lies wholly above the tanh RNN's. Supported if all "
              "configurations decay slower, depends if some do (named), not supported if "
              "none."),
        anchors=(Anchor("Jozefowicz, Zaremba & Sutskever 2015", "adding 1 to the LSTM's "
                        "forget-gate bias at initialisation closed most of its gap to the GRU "
                        "across their tasks"),),
        measure=measure_c6, decide=decide_c6, summarize=summarize_c6, plot=plot_c6,
        against=against_c6),
]
