"""Claims C3, D1 and D2: long-range dependencies, learned or not, by RNN, IRNN, LSTM and GRU.

All three read one sweep: the long-dependency accuracy sweep (`bench.claims.accuracy`), the
tasks in their literature forms (adding, copy memory, temporal order, embedded Reber), every
model at every length, seeds per profile, a learning rate searched per model and task, each
run scored on a test set by the task's own success rule and by its loss. Its runs are
resumable cells: `python -m bench accuracy --profile <p> --jobs N` computes them in
parallel beforehand, and these claims then only read them; otherwise they are computed here.

The budgets are minutes on a 2-core CPU, far below the papers' (Le et al. 2015 trained IRNNs
for over a million steps): a verdict here says what happens *within the stated budget*.
"""

from __future__ import annotations

from pathlib import Path

from bench.claims import accuracy
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
    save_figure,
    table,
)
from bench.claims.intervals import fmt, fmt_rate, rates_differ, ratio_interval

#: Where the sweep's cells and profile files are: results/accuracy for the committed
#: claims; the claims runner points it beside its own output for other output folders.
SWEEP_DIR = accuracy.RESULTS

#: A model "learns" a task at a length when at least this fraction of its seeds solve it
#: by the task's own success rule on the test set.
LEARNS = 0.5
#: GRU and LSTM are "about the same" at a point when the bootstrap interval of the ratio of
#: their median test losses lies within [1/SAME_FACTOR, SAME_FACTOR]; one is better when the
#: interval lies beyond the factor on its side (losses spread over orders of magnitude
#: between seeds, so a factor of 2 is the smallest difference five seeds resolve).
SAME_FACTOR = 2.0


def sweep_document(profile: str) -> dict:
    """The sweep of `profile`: its runs computed where they have no cell, then read."""
    path = accuracy.run_profile(accuracy.PROFILES[profile], SWEEP_DIR,
                                command=["python", "-m", "bench", "accuracy", "--profile",
                                         profile, "--out", str(SWEEP_DIR)])
    return accuracy.read_results(path)


def sweep_records(profile: str) -> list[dict]:
    """One flat record per training run of the sweep (its `sweep` section): task, T, model,
    sizing, seed, lr, hidden size, steps to success on the validation set (None: never),
    step budget, the test figures, whether it diverged (then it counts as unsolved)."""
    return [{
        "task": r["task_name"], "T": r["T"], "model": r["model"], "sizing": r["sizing"],
        "seed": r["seed"], "lr": r["config"]["lr"], "hidden_size": r["config"]["hidden_size"],
        "n_parameters": r["n_parameters"], "steps_to_threshold": r["steps_to_threshold"],
        "steps_budget": r["config"]["steps"], "steps_done": r["steps_done"],
        "test_solved": bool(r["test"]["solved"]) and not r["diverged"],
        "test_loss": r["test"]["loss"], "test_accuracy": r["test"].get("accuracy"),
        "baseline_loss": r["test"]["baseline_loss"], "diverged": r["diverged"],
        "seconds": r["seconds"],
    } for r in sweep_document(profile)["runs"] if r["section"] == "sweep"]


def measure_sweep(profile: str) -> dict:
    """The sweep's summary rows (`accuracy.summarise`), its plan and its chosen rates."""
    document = sweep_document(profile)
    p = document["profile"]
    return {"sweep": {"profile": profile, "hidden_size": p["hidden_size"],
                      "seeds": list(p["seeds"]), "tasks": p["tasks"],
                      "lr_grid": list(p["lr_grid"]), "clip_norm": p["clip_norm"],
                      "batch_size": p["batch_size"], "eval_size": p["eval_size"]},
            "rates": document["rates"],
            "rows": accuracy.summarise(document["runs"])}


def _rows(m: dict, sizing: str = "equal") -> list[dict]:
    return [r for r in m["rows"] if r["sizing"] == sizing]


def _point(row: dict) -> str:
    return f"{row['task']}" + ("" if row["T"] is None else f" T={row['T']}")


def _points(m: dict, sizing: str = "equal") -> list[tuple]:
    """(task, T) in the sweep's order."""
    return list(dict.fromkeys((r["task"], r["T"]) for r in _rows(m, sizing)))


def _row(m: dict, task: str, T, model: str, sizing: str = "equal") -> dict | None:
    return next((r for r in _rows(m, sizing) if r["task"] == task and r["T"] == T
                 and r["model"] == model), None)


def learns(row: dict | None) -> bool:
    return row is not None and row["success"]["rate"] >= LEARNS


def _protocol(m: dict) -> str:
    s = m["sweep"]
    tasks = "; ".join(
        f"{t['task']}" + (f" {dict(t['params'])}" if t["params"] else "") + ": " + ", ".join(
            (f"T={T}: " if T else "") + f"{steps} steps" for T, steps in t["steps"])
        for t in s["tasks"])
    return (f"The long-dependency sweep, profile `{s['profile']}` (results/accuracy/"
            f"ACCURACY.md has every run): H={s['hidden_size']}, seeds {s['seeds']}, Adam, batch "
            f"{s['batch_size']}, gradient norm clipped to {s['clip_norm']:g}, learning rate per "
            f"model and task from {s['lr_grid']} by the lowest validation loss of the first "
            f"seed; a run stops when its validation set meets the task's success rule; test "
            f"sets of {s['eval_size']}. {tasks}.")


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    text = f"{fmt_rate(row['success'])}; loss/baseline {_relative(row)}"
    if row["diverged"]:
        text += f"; {row['diverged']} diverged"
    return text


def _relative(row: dict) -> str:
    loss = row["loss"]
    if loss["median"] is None:
        return "n/a"
    return f"{loss['median'] / row['baseline']:.3g}"


def _sweep_table(m: dict, models: tuple[str, ...], sizing: str = "equal") -> str:
    body = [[_point({"task": task, "T": T}),
             *[_cell(_row(m, task, T, model, sizing)) for model in models]]
            for task, T in _points(m, sizing)]
    return table(["task", *models], body)


def _plot(m: dict, models: tuple[str, ...], path: Path, title: str) -> Path:
    rows = [r for r in _rows(m) if r["model"] in models]
    return accuracy.draw_sweep(rows, path, title)


# -- C3: the IRNN against the plain tanh RNN ---------------------------------------------


def _compare(better: dict | None, worse: dict | None) -> str:
    """'better' / 'worse' / 'same' / 'unclear' for the first row against the second: by the
    success rates when their Wilson intervals do not overlap, else by the ratio of median
    test losses (SAME_FACTOR), else 'unclear'."""
    if better is None or worse is None:
        return "unclear"
    if rates_differ(better["success"], worse["success"]):
        return "better" if better["success"]["rate"] > worse["success"]["rate"] else "worse"
    if len(better["test_losses"]) < 2 or len(worse["test_losses"]) < 2:
        return "unclear"
    low, high = ratio_interval(better["test_losses"], worse["test_losses"])["ci95"]
    if high < 1 / SAME_FACTOR:
        return "better"
    if low > SAME_FACTOR:
        return "worse"
    if 1 / SAME_FACTOR <= low and high <= SAME_FACTOR:
        return "same"
    return "unclear"


def _ratio(a: dict | None, b: dict | None) -> dict | None:
    """The ratio of the two rows' median test losses with its interval (None: no losses)."""
    if a is None or b is None or not a["test_losses"] or not b["test_losses"]:
        return None
    return ratio_interval(a["test_losses"], b["test_losses"])


def _ratio_text(a: dict | None, b: dict | None) -> str:
    ratio = _ratio(a, b)
    return "n/a" if ratio is None else fmt(ratio, "ratio")


def c3_outcomes(m: dict) -> dict[str, str]:
    return {_point({"task": task, "T": T}): _compare(_row(m, task, T, "irnn"),
                                                     _row(m, task, T, "rnn_tanh"))
            for task, T in _points(m)}


def decide_c3(m: dict) -> Verdict:
    outcomes = c3_outcomes(m)
    better = [p for p, o in outcomes.items() if o == "better"]
    worse = [p for p, o in outcomes.items() if o == "worse"]
    described = ", ".join(f"{p}: {o}" for p, o in outcomes.items())
    if better and not worse:
        return Verdict(SUPPORTED, f"the IRNN does better than the tanh RNN at {', '.join(better)} "
                                  f"and worse nowhere ({described})")
    if better and worse:
        return Verdict(DEPENDS, f"the IRNN does better than the tanh RNN at {', '.join(better)} "
                                f"but worse at {', '.join(worse)} ({described})")
    return Verdict(NOT_SUPPORTED, f"the IRNN does better than the tanh RNN at no task length "
                                  f"({described})")


def summarize_c3(m: dict) -> str:
    body = [[_point({"task": task, "T": T}), _cell(_row(m, task, T, "irnn")),
             _cell(_row(m, task, T, "rnn_tanh")),
             _ratio_text(_row(m, task, T, "irnn"), _row(m, task, T, "rnn_tanh")),
             c3_outcomes(m)[_point({"task": task, "T": T})]]
            for task, T in _points(m)]
    return "\n".join([_protocol(m), "", "Each cell: solved k/n [Wilson 95%]; median test loss "
                      "over the memoryless baseline; diverged runs (counted as unsolved, left "
                      "out of the loss).", "",
                      table(["task", "irnn", "rnn_tanh", "IRNN/tanh median test loss [95%]",
                             "IRNN is"], body)])


def against_c3(m: dict) -> str:
    beats = [_point(r) for r in _rows(m) if r["model"] == "irnn" and r["beats_baseline"]]
    adding = [r["T"] for r in _rows(m) if r["model"] == "irnn" and r["task"] == "adding"
              and r["beats_baseline"]]
    agree = ("agrees" if not adding else
             f"disagrees: here the IRNN beats the baseline at adding T={adding}, with Adam, a "
             "searched rate and clipping where Arjovsky et al. used RMSProp at 1e-3; Le et "
             "al.'s own success at T=300 supports the difference")
    return (f"Arjovsky et al. 2016 report the IRNN never beating the adding baseline at T=100 "
            f"to 750 (128 units); Le et al. 2015 solved adding with the IRNN at T up to 300 "
            f"after over a million steps. Here the IRNN beats the baseline at "
            f"{', '.join(beats) or 'no task length'}: this {agree}.")


def plot_c3(m: dict, directory: Path) -> list[Path]:
    return [_plot(m, ("rnn_tanh", "irnn"), directory / "C3_irnn_vs_tanh.png",
                  "C3: IRNN against the tanh RNN")]


# -- D1: plain RNN against the gated cells -------------------------------------------------

GATED = ("lstm", "lstm_fb1", "gru")
PLAIN = ("rnn_tanh", "irnn")


def d1_status(m: dict) -> dict[str, dict]:
    """Per (task, T): which models learn it (LEARNS) and which beat the baseline."""
    status = {}
    for task, T in _points(m):
        rows = {model: _row(m, task, T, model) for model in (*PLAIN, *GATED)}
        status[_point({"task": task, "T": T})] = {
            "task": task, "T": T,
            "learns": [model for model, r in rows.items() if learns(r)],
            "beats": [model for model, r in rows.items() if r is not None and r["beats_baseline"]],
            "diverged": {model: r["diverged"] for model, r in rows.items()
                         if r is not None and r["diverged"]}}
    return status


def decide_d1(m: dict) -> Verdict:
    status = d1_status(m)
    gated_points = [p for p, s in status.items() if set(s["learns"]) & set(GATED)]
    described = "; ".join(f"{p}: learns {', '.join(s['learns']) or 'none'}"
                          for p, s in status.items())
    diverged = "; ".join(f"{p}: " + ", ".join(f"{model} {n}" for model, n in s["diverged"].items())
                         for p, s in status.items() if s["diverged"])
    diverged = f"; diverged runs (counted as failures): {diverged}" if diverged else ""
    if not gated_points:
        return Verdict(NOT_SUPPORTED, "no gated cell learns any task length within the budget "
                                      f"({described}){diverged}")
    tanh_too = [p for p in gated_points if "rnn_tanh" in status[p]["learns"]]
    irnn_too = [p for p in gated_points if "irnn" in status[p]["learns"]]
    # The longest length of each task at which a gated cell learns: the long dependency.
    longest: dict[str, str] = {}
    for p in gated_points:
        longest[status[p]["task"]] = p
    if all(p in tanh_too for p in longest.values()):
        return Verdict(NOT_SUPPORTED, "the tanh RNN learns every longest length the gated cells "
                                      f"learn ({described}){diverged}")
    conditions = []
    tanh_long = [p for p in longest.values() if p in tanh_too]
    if tanh_long:
        conditions.append(f"the tanh RNN also learns {', '.join(tanh_long)}")
    if irnn_too:
        conditions.append(f"a ReLU RNN with identity init (IRNN) learns {', '.join(irnn_too)}: "
                          "'a plain RNN cannot' holds for the tanh RNN only")
    if conditions:
        return Verdict(DEPENDS, "; ".join(conditions) + f" ({described}){diverged}")
    return Verdict(SUPPORTED, "at the longest length of every task that a gated cell learns "
                              f"({', '.join(longest.values())}), neither plain RNN does "
                              f"({described}){diverged}")


def summarize_d1(m: dict) -> str:
    return "\n".join([_protocol(m), "", "Each cell: solved k/n [Wilson 95%] by the task's own "
                      "rule on the test set; median test loss over the memoryless baseline; "
                      "diverged runs (counted as unsolved, left out of the loss). A model "
                      f"learns a length when at least {LEARNS:.0%} of its seeds solve it.", "",
                      _sweep_table(m, (*PLAIN, *GATED))])


def against_d1(m: dict) -> str:
    rows = _rows(m)
    lstm_adding = [r["T"] for r in rows if r["model"] == "lstm" and r["task"] == "adding"
                   and r["beats_baseline"]]
    tanh_beats = [_point(r) for r in rows if r["model"] == "rnn_tanh" and r["beats_baseline"]]
    lstm_copy = [r["T"] for r in rows if r["model"] == "lstm" and r["task"] == "copy"
                 and r["beats_baseline"]]
    longest_adding = max((r["T"] for r in rows if r["task"] == "adding"), default=None)
    parts = [f"Arjovsky et al. 2016: the LSTM beats the adding baseline up to T=400, the tanh "
             f"RNN never; here the LSTM beats it at T={lstm_adding or 'none'} (longest tested "
             f"{longest_adding}) and the tanh RNN at {', '.join(tanh_beats) or 'no length'}."]
    if any(r["task"] == "copy" for r in rows):
        parts.append(f"On copy memory they found the LSTM below the baseline at T=100 only; "
                     f"here at T={lstm_copy or 'none'}.")
    agree = (400 in lstm_adding or (longest_adding is not None and longest_adding < 400
                                     and longest_adding in lstm_adding)) and not any(
        "adding" in p for p in tanh_beats)
    parts.append("We agree on the adding problem." if agree else
                 f"Where we differ, the budget is the likely cause: H="
                 f"{m['sweep']['hidden_size']} and minutes of CPU against their 128 units and "
                 "tens of thousands of steps.")
    for task in ("temporal_order", "reber"):
        if any(r["task"] == task for r in rows):
            parts.append(accuracy.TASK_ANCHORS[task])
    return " ".join(parts)


def plot_d1(m: dict, directory: Path) -> list[Path]:
    return [_plot(m, (*PLAIN, *GATED), directory / "D1_long_dependencies.png",
                  "D1: plain RNNs against gated cells")]


# -- D2: GRU against LSTM ----------------------------------------------------------------------


def d2_comparisons(m: dict) -> list[dict]:
    """GRU against the LSTM (equal H and equal parameters) and against the LSTM with forget
    bias 1 (equal H), at every task length where either of the pair beats the baseline."""
    out = []
    for sizing, other in (("equal", "lstm"), ("matched", "lstm"), ("equal", "lstm_fb1")):
        for task, T in _points(m, sizing):
            gru, lstm = _row(m, task, T, "gru", sizing), _row(m, task, T, other, sizing)
            if gru is None or lstm is None:
                continue
            informative = gru["beats_baseline"] or lstm["beats_baseline"]
            out.append({"sizing": sizing, "against": other, "point": _point(gru),
                        "informative": informative,
                        "gru": fmt_rate(gru["success"]), "other": fmt_rate(lstm["success"]),
                        "ratio": _ratio_text(gru, lstm), "ratio_interval": _ratio(gru, lstm),
                        "outcome": _compare(gru, lstm) if informative else "neither learns"})
    return out


def decide_d2(m: dict) -> Verdict:
    rows = d2_comparisons(m)
    main = [r for r in rows if r["against"] == "lstm" and r["informative"]]
    fb1 = {r["point"]: r["outcome"] for r in rows if r["against"] == "lstm_fb1"}

    def where(outcome):
        return [f"{r['point']} ({r['sizing']})" for r in main if r["outcome"] == outcome]

    gru_ahead, lstm_ahead, same = where("better"), where("worse"), where("same")
    described = "; ".join(f"{r['point']} {r['sizing']}: GRU {r['outcome']} (GRU/LSTM loss "
                          f"{r['ratio']}; solved {r['gru']} vs {r['other']})" for r in main)
    if not main:
        return Verdict(DEPENDS, "neither the GRU nor the LSTM beats the baseline at any task "
                                "length within the budget: the sweep cannot compare them")
    if not gru_ahead and not lstm_ahead:
        if not same:
            return Verdict(DEPENDS, "no point separates them, but the intervals are too wide "
                                    f"to call them the same ({described})")
        return Verdict(SUPPORTED, f"about the same wherever either learns ({described})")
    if gru_ahead and lstm_ahead:
        return Verdict(DEPENDS, f"the GRU is ahead at {', '.join(gru_ahead)}, the LSTM at "
                                f"{', '.join(lstm_ahead)} ({described})")
    ahead, name = (gru_ahead, "GRU") if gru_ahead else (lstm_ahead, "LSTM")
    closed = [p for p in ahead if fb1.get(p.split(" (")[0]) in ("same", "worse")]
    if name == "GRU" and closed and len(closed) == len(ahead):
        return Verdict(DEPENDS, f"the GRU is ahead of the standard LSTM at {', '.join(ahead)}, "
                                "and the LSTM with forget-gate bias 1 closes the gap there "
                                f"({described})")
    return Verdict(NOT_SUPPORTED, f"the {name} is ahead at {', '.join(ahead)} and behind "
                                  f"nowhere ({described})")


def summarize_d2(m: dict) -> str:
    rows = d2_comparisons(m)
    body = [[r["point"], r["sizing"], r["against"], r["gru"], r["other"], r["ratio"],
             r["outcome"]] for r in rows]
    return "\n".join([
        _protocol(m), "", f"The GRU and the other model are 'the same' at a point when the "
        f"95% bootstrap interval of the ratio of their median test losses lies within "
        f"[1/{SAME_FACTOR:g}, {SAME_FACTOR:g}]; one is ahead when its success rate's Wilson "
        f"interval clears the other's, or when the ratio's interval lies beyond a factor "
        f"{SAME_FACTOR:g}; points where neither beats the baseline are not compared.", "",
        table(["task", "sizing", "GRU against", "GRU solved", "other solved",
               "GRU/other median test loss [95%]", "GRU is"], body)])


def against_d2(m: dict) -> str:
    rows = d2_comparisons(m)
    main = [r for r in rows if r["against"] == "lstm" and r["informative"]]
    fb1 = [r for r in rows if r["against"] == "lstm_fb1" and r["informative"]]
    gru_ahead = sum(r["outcome"] == "better" for r in main)
    closed = sum(r["outcome"] in ("same", "worse") for r in fb1)
    return (f"Chung et al. 2014 found no clear winner between GRU and LSTM; Jozefowicz et al. "
            f"2015 found the GRU ahead on most tasks except language modelling, and a forget "
            f"bias of 1 closing most of the LSTM's gap. Here the GRU is ahead of the standard "
            f"LSTM at {gru_ahead} of {len(main)} compared points, and the same as or behind "
            f"the LSTM with forget bias 1 at {closed} of {len(fb1)}: "
            + ("this agrees with Jozefowicz et al." if gru_ahead and closed else
               "no gap to close here, as Chung et al. found." if not gru_ahead else
               "the bias does not close the gap here, unlike Jozefowicz et al."))


def plot_d2(m: dict, directory: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = d2_comparisons(m)
    series = [("equal", "lstm", "GRU / LSTM, equal H", "tab:green"),
              ("matched", "lstm", "GRU / LSTM, equal parameters", "tab:blue"),
              ("equal", "lstm_fb1", "GRU / LSTM (forget bias 1), equal H", "tab:olive")]
    points = list(dict.fromkeys(r["point"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(points)), 4.2))
    ax.axhspan(1 / SAME_FACTOR, SAME_FACTOR, color="grey", alpha=0.15,
               label=f"'about the same' (within x{SAME_FACTOR:g})")
    ax.axhline(1, color="k", lw=0.8)
    for k, (sizing, other, label, colour) in enumerate(series):
        xs, ys, lows, highs = [], [], [], []
        for r in rows:
            ratio = r["ratio_interval"]
            if r["sizing"] != sizing or r["against"] != other or ratio is None:
                continue
            low, high = ratio["ci95"] or (ratio["ratio"], ratio["ratio"])
            xs.append(points.index(r["point"]) + (k - 1) * 0.22)
            ys.append(ratio["ratio"])
            lows.append(ratio["ratio"] - low)
            highs.append(high - ratio["ratio"])
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=3, color=colour, label=label)
    ax.set_xticks(range(len(points)), points, rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ratio of median test losses\n(below 1: GRU better; 95% bootstrap CI)")
    ax.set_title("D2: GRU against LSTM, task by task")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = directory / "D2_gru_vs_lstm.png"
    save_figure(fig, path)
    return [path]


CLAIMS = [
    Claim(
        id="C3", notes=(f"{NOTE_000} §2",),
        statement=("A ReLU RNN whose recurrent matrix starts as the identity (the IRNN) "
                   "suffers less from vanishing and exploding gradients than a plain RNN."),
        method=("The IRNN and the tanh RNN of the long-dependency sweep, task by task and "
                "length by length: success rates by each task's own rule and test losses, "
                "several seeds each; diverged runs count as failures."),
        rule=("per task length, the IRNN is better (worse) than the tanh RNN when the Wilson "
              "intervals of their success rates do not overlap in its favour (against it), or "
              "else when the bootstrap interval of the ratio of their median test losses lies "
              f"below 1/{SAME_FACTOR:g} (above {SAME_FACTOR:g}). Supported if better somewhere "
              "and worse nowhere; depends if better at some lengths and worse at others; not "
              "supported if better nowhere."),
        anchors=(Anchor("Le, Jaitly & Hinton 2015", "the IRNN solved the adding problem up to "
                        "T=300, after over a million training steps"),
                 Anchor("Arjovsky, Shah & Bengio 2016", "with 128 units, neither the IRNN nor "
                        "the tanh RNN beat the adding baseline at T=100 to 750")),
        against=against_c3, measure=measure_sweep, decide=decide_c3, summarize=summarize_c3,
        plot=plot_c3),
    Claim(
        id="D1", notes=(f"{NOTE_001} §1", f"{NOTE_001} §2", f"{NOTE_000} §3",
                        f"{NOTE_002} §1.3", f"{NOTE_003} §LSTM", f"{NOTE_004} §summary 1"),
        statement=("A plain RNN cannot learn dependencies over long stretches of a sequence; "
                   "an LSTM (and a GRU) can."),
        method=("The tanh RNN, the IRNN, the LSTM (forget bias 0 and 1) and the GRU of the "
                "long-dependency sweep, on the adding problem and copy memory in their "
                "literature forms (and temporal order and the embedded Reber grammar), each "
                "scored by its task's own success rule on a test set and by its test loss "
                "against the memoryless baseline, several seeds each. The budget is minutes "
                "on a CPU, so a verdict holds within it."),
        rule=(f"a model learns a task length when at least {LEARNS:.0%} of its seeds solve it "
              "by the task's rule (a diverged seed fails). Not supported if no gated cell "
              "learns any length, or if the tanh RNN learns the longest length of every task "
              "that a gated cell learns; depends if the tanh RNN learns some of those longest "
              "lengths, or the IRNN learns any length a gated cell learns (named); supported "
              "otherwise."),
        anchors=(
            Anchor("Arjovsky, Shah & Bengio 2016", "adding problem, 128 units, RMSProp 1e-3: "
                   "the LSTM beat the 1/6 baseline up to T=400, the tanh RNN and the IRNN "
                   "never; copy memory (10 symbols of 8 categories): the LSTM went below the "
                   "baseline at T=100 only"),
            Anchor("Hochreiter & Schmidhuber 1997", "the LSTM solved the adding problem "
                   "(their form) at T=100, 500 and 1000, the temporal order problem and the "
                   "embedded Reber grammar, where the recurrent nets they compared failed"),
        ),
        against=against_d1, measure=measure_sweep, decide=decide_d1, summarize=summarize_d1,
        plot=plot_d1),
    Claim(
        id="D2", notes=(f"{NOTE_002} §3", f"{NOTE_002} §4.2"),
        statement="A GRU reaches about the same accuracy as an LSTM.",
        method=("The GRU against the LSTM of the long-dependency sweep at the same hidden "
                "size and at the LSTM's parameter count, and against the LSTM with forget-gate "
                "bias 1, task length by task length: success rates with Wilson intervals and "
                "the ratio of median test losses with a bootstrap interval."),
        rule=(f"at each task length where either beats the baseline: the same when the "
              f"ratio's interval lies within [1/{SAME_FACTOR:g}, {SAME_FACTOR:g}], one ahead "
              "when its success rate's interval clears the other's or the ratio's interval "
              f"lies beyond x{SAME_FACTOR:g}. Against the standard LSTM: supported if the "
              "same everywhere; not supported if one is ahead somewhere and behind nowhere, "
              "unless it is the GRU and the forget-bias-1 LSTM is the same or ahead at every "
              "such point (depends); depends if each is ahead somewhere, if the intervals are "
              "too wide to decide, or if neither learns anything."),
        anchors=(Anchor("Chung et al. 2014", "on music and speech modelling, no clear winner "
                        "between GRU and LSTM"),
                 Anchor("Jozefowicz, Zaremba & Sutskever 2015", "the GRU beat the LSTM on "
                        "most tasks except language modelling; a forget-gate bias of 1 closed "
                        "most of the gap")),
        against=against_d2, measure=measure_sweep, decide=decide_d2, summarize=summarize_d2,
        plot=plot_d2),
]
