"""Claims E1-E4 and F1-F2: their building blocks, and every branch of their verdict rules.

The rules are fed made-up measurements whose verdict is known by hand, one case per verdict
a rule can reach.
"""

import math

import pytest
import torch

from bench.claims import dropout, gates, training
from bench.claims.experiment import DEPENDS, NOT_SUPPORTED, SUPPORTED
from bench.training.tasks import make_task
from bench.training.trainer import build_model

SEEDS = (0, 1, 2, 3, 4)

# -- building blocks -------------------------------------------------------------------------


def test_straight_through_gate_is_binary_forward_and_sigmoid_backward():
    a = torch.tensor([-2.0, -0.1, 0.3, 4.0], dtype=torch.float64, requires_grad=True)
    out = gates.straight_through(a)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    s = torch.sigmoid(a.detach())
    torch.testing.assert_close(a.grad, s * (1 - s))


def test_experiment_lstm_with_straight_through_gates_keeps_them_binary_when_training():
    layer = gates.ExperimentLSTM(2, 3, gate="straight_through", dtype=torch.float64)
    layer.recording = []
    y, _ = layer(torch.randn(4, 2, 2, dtype=torch.float64))
    i, f, _, o, _, _ = layer.recording[0]
    assert set(torch.cat([i, f, o]).flatten().tolist()) <= {0.0, 1.0}
    y.sum().backward()
    assert layer.weight_ih_l0.grad.abs().sum() > 0


def test_experiment_lstm_ablation_zeroes_the_unit_and_only_it():
    torch.manual_seed(0)
    layer = gates.ExperimentLSTM(2, 3, dtype=torch.float64)
    x = torch.randn(5, 2, 2, dtype=torch.float64)
    layer.keep = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    y, (h, c) = layer(x)
    assert y[..., 1].abs().max() == 0 and c[..., 1].abs().max() == 0
    assert y[..., 0].abs().max() > 0


def test_ablation_shares_find_the_unit_the_readout_reads():
    """Units that do not talk to each other (W_hh = 0), and a read-out of unit 2 only:
    zeroing unit 0 or 1 costs nothing, zeroing unit 2 does."""

    class FarBaseline(type(make_task("adding", T=6))):
        def baseline_loss(self, batch=None):
            return 1e3

    task = FarBaseline(T=6)
    cfg = training.config("lstm", 3, steps=3, seed=0, impl="reference", dtype="float64")
    model = build_model(task, cfg)
    with torch.no_grad():
        model.layer.weight_hh_l0.zero_()
        model.readout.weight.zero_()
        model.readout.weight[0, 2] = 1.0
    shares = gates.ablation_shares(model, task, task.sample(50, torch.Generator().manual_seed(0)))
    assert shares[0] == 0 and shares[1] == 0 and shares[2] != 0


def test_change_statistics_tell_slow_from_fast_and_select_units():
    t = torch.linspace(0, 1, 200).view(-1, 1, 1).expand(200, 3, 2)
    slow = torch.sin(2 * math.pi * t) + 0.01 * torch.randn(200, 3, 2)
    fast = torch.randn(200, 3, 2)
    s, f = gates.change_statistics(slow), gates.change_statistics(fast)
    assert s["normalised_step"] < f["normalised_step"]
    assert s["autocorrelation"] > 0.9 and abs(f["autocorrelation"]) < 0.2
    mixed = torch.cat([slow[..., :1], fast[..., :1]], dim=-1)
    assert gates.change_statistics(mixed, [0]) == pytest.approx(
        gates.change_statistics(slow[..., :1]))


def test_choose_and_train_keeps_every_seed_and_reuses_the_search_run():
    task = make_task("adding", T=5)
    cfg = training.config("lstm", 4, steps=2, seed=0, impl="reference", dtype="float64")
    out = training.choose_and_train(task, cfg, (0, 1))
    assert out["lr"] in training.LR_GRID[cfg.optimizer]
    assert [r.config.seed for r, _ in out["runs"]] == [0, 1]
    assert all(r.config.lr == out["lr"] for r, _ in out["runs"])
    result, model = out["runs"][0]
    batch = task.sample(500, torch.Generator().manual_seed(9))
    again, again_model = training.train_and_keep(task, result.config)
    assert training.evaluate(model, task, batch) == training.evaluate(again_model, task, batch)


def test_every_settings_table_has_every_profile():
    for settings in (gates.SETTINGS, dropout.SETTINGS):
        assert set(settings) == {"smoke", "quick", "default", "full"}


# -- E1 ------------------------------------------------------------------------------------


def _e1(used_shares: dict, all_share=0.3, used=True):
    def figures(share):
        return {"below": share / 2, "above": share / 2, "histogram": [1.0] * 20}

    rows = [{"seed": s, "lr": 0.01, "test_loss": 0.001, "learned": used, "test_solved": used,
             "ablation_shares": [], "used": [0] if used else [],
             "gates": {g: {"all": figures(all_share),
                           "used": figures(used_shares[g]) if used else None} for g in "ifo"}}
            for s in SEEDS]
    return {"settings": {"T": 10, "H": 4, "steps": 5, "test": 10, "seeds": list(SEEDS)},
            "used_share": gates.USED_SHARE, "rows": rows}


def test_e1_rule_reaches_every_verdict_on_the_used_units():
    assert gates.decide_e1(_e1(dict.fromkeys("ifo", 0.9))).status == SUPPORTED
    verdict = gates.decide_e1(_e1({"i": 0.9, "f": 0.9, "o": 0.2}))
    assert verdict.status == DEPENDS and "i, f" in verdict.reason
    assert gates.decide_e1(_e1(dict.fromkeys("ifo", 0.2), all_share=0.9)).status == NOT_SUPPORTED


def test_e1_an_interval_that_holds_half_decides_nothing():
    m = _e1(dict.fromkeys("ifo", 0.2))
    for row, share in zip(m["rows"], (0.2, 0.5, 0.8, 0.3, 0.7)):   # seeds spread around 0.5
        for g in "ifo":
            row["gates"][g]["used"] = {"below": share / 2, "above": share / 2,
                                       "histogram": [1.0] * 20}
    verdict = gates.decide_e1(m)
    assert verdict.status == DEPENDS and "do not decide for gate(s) i, f, o" in verdict.reason


def test_e1_rule_falls_back_to_all_units_when_no_seed_learned():
    verdict = gates.decide_e1(_e1({}, all_share=0.9, used=False))
    assert verdict.status == SUPPORTED and "no seed learned" in verdict.reason


def test_e1_report_parts_render_made_up_measurements(tmp_path):
    m = _e1({"i": 0.9, "f": 0.9, "o": 0.2})
    assert "| 0 | i |" in gates.summarize_e1(m)
    assert "Li et al. 2018" in gates.against_e1(m)
    assert gates.plot_e1(m, tmp_path)[0].exists()


# -- E2 ------------------------------------------------------------------------------------


def _e2(thresholded, straight_through):
    rows = [{"seed": s, "sigmoid": 0.001, "thresholded": thresholded,
             "straight_through": straight_through, "straight_through_diverged": False}
            for s in SEEDS]
    return {"settings": {"T": 10, "H": 4, "steps": 5, "test": 10, "seeds": list(SEEDS)},
            "baseline": 1 / 6, "lr": {"sigmoid": 0.01, "straight_through": 0.01},
            "rows": rows}


def test_e2_rule_reaches_every_verdict():
    assert gates.decide_e2(_e2(0.001, 0.2)).status == SUPPORTED
    assert gates.decide_e2(_e2(0.2, 0.001)).status == DEPENDS
    assert gates.decide_e2(_e2(0.2, 0.2)).status == NOT_SUPPORTED
    # Seeds on both sides of the limit (1/60): the straight-through figure is undecided.
    spread = _e2(0.2, 0.2)
    for row, value in zip(spread["rows"], (0.005, 0.01, 0.02, 0.03, 0.04)):
        row["straight_through"] = value
    verdict = gates.decide_e2(spread)
    assert verdict.status == DEPENDS and "do not decide" in verdict.reason


def test_e2_counts_a_diverged_run_apart():
    m = _e2(0.2, 0.001)
    m["rows"][0]["straight_through"] = math.nan
    assert gates.decide_e2(m).status == DEPENDS


def test_e2_report_parts_render_made_up_measurements(tmp_path):
    m = _e2(0.2, 0.001)
    assert "median [95%]" in gates.summarize_e2(m)
    assert "Li et al. 2018" in gates.against_e2(m)
    assert gates.plot_e2(m, tmp_path)[0].exists()


# -- E3 ------------------------------------------------------------------------------------


def _e3(used_ratios, all_ratio=1.0):
    """One seed per entry of `used_ratios` (c's step / h's on the used units; None for a
    seed that learned nothing, hence has no used unit)."""

    def figures(ratio):
        return {"c": {"normalised_step": ratio, "autocorrelation": 0.9},
                "h": {"normalised_step": 1.0, "autocorrelation": 0.5}}

    rows = [{"seed": s, "learned": r is not None, "used_units": [0] if r is not None else [],
             "all": figures(all_ratio), "used": figures(r) if r is not None else None}
            for s, r in enumerate(used_ratios)]
    return {"settings": {"T": 10, "H": 4, "steps": 5, "test": 10, "seeds": list(SEEDS)},
            "used_share": gates.USED_SHARE, "rows": rows}


def test_e3_rule_reaches_every_verdict_on_the_used_units():
    assert gates.decide_e3(_e3([0.3] * 5)).status == SUPPORTED
    assert gates.decide_e3(_e3([1.2] * 5, all_ratio=0.3)).status == NOT_SUPPORTED
    verdict = gates.decide_e3(_e3([0.3, 1.2, 0.3, 1.2, 0.3]))
    assert verdict.status == DEPENDS and "[0, 2, 4]" in verdict.reason


def test_e3_rule_falls_back_to_all_units_when_no_seed_learned():
    verdict = gates.decide_e3(_e3([None] * 5, all_ratio=0.3))
    assert verdict.status == SUPPORTED and "no seed learned" in verdict.reason


def test_e3_report_parts_render_made_up_measurements(tmp_path):
    m = _e3([0.3, None, 0.3, 1.2, 0.3])
    assert "| 1 | used | 0 |" in gates.summarize_e3(m)
    assert "Karpathy" in gates.against_e3(m)
    assert gates.plot_e3(m, tmp_path)[0].exists()


# -- E4 ------------------------------------------------------------------------------------


def _e4(sigmoid_loss, sigmoid_steps, tanh_loss=0.01, tanh_steps=200):
    rows = []
    for candidate, loss, steps in (("tanh", tanh_loss, tanh_steps),
                                   ("sigmoid", sigmoid_loss, sigmoid_steps),
                                   ("relu", 0.05, None)):
        for s in SEEDS:
            rows.append({"candidate": candidate, "seed": s, "test_loss": loss * (1 + s / 100),
                         "steps_to_threshold": steps, "diverged": False,
                         "evals": [{"step": 0, "loss": 0.17}, {"step": 100, "loss": loss}]})
    return {"settings": {"T": 10, "H": 4, "steps": 400, "test": 10, "seeds": list(SEEDS)},
            "baseline": 1 / 6, "lr": dict.fromkeys(gates.CANDIDATE_FUNCTIONS, 0.01),
            "rows": rows, "budget": 400, "slope_at_zero": {"tanh": 1, "sigmoid": 0.25, "relu": 1},
            "value_at_zero": {"tanh": 0, "sigmoid": 0.5, "relu": 0}}


def test_e4_rule_reaches_every_verdict():
    assert gates.decide_e4(_e4(0.05, 200)).status == SUPPORTED
    assert gates.decide_e4(_e4(0.01, None)).status == SUPPORTED      # slower only
    verdict = gates.decide_e4(_e4(0.05, 100))
    assert verdict.status == DEPENDS and "worse by speed" in verdict.reason
    assert gates.decide_e4(_e4(0.01, 200)).status == NOT_SUPPORTED
    assert gates.decide_e4(_e4(0.002, 100)).status == NOT_SUPPORTED


def test_e4_report_parts_render_made_up_measurements(tmp_path):
    m = _e4(0.05, None)
    assert "| sigmoid | 0.5 | 0.25 |" in gates.summarize_e4(m)
    assert "Greff et al. 2017" in gates.against_e4(m)
    assert gates.plot_e4(m, tmp_path)[0].exists()


# -- F1, F2 --------------------------------------------------------------------------------


def _dropout(figures: dict):
    """figures: (task, scheme) -> (test loss, test accuracy), the same in every seed up to a
    small spread; schemes not given get (1.0, 0.8)."""
    rows = []
    for task in ("polarity", "reber"):
        for scheme in dropout.SCHEMES:
            loss, accuracy = figures.get((task, scheme), (1.0, 0.8))
            for s in SEEDS:
                rows.append({"task": task, "scheme": scheme, "seed": s, "lr": 0.01,
                             "test_loss": loss * (1 + s / 200),
                             "test_accuracy": accuracy - s / 1000, "train_loss": loss / 2,
                             "train_accuracy": 1.0, "diverged": False})
    return {"settings": {"H": 4, "p": 0.25, "steps": 5, "reber_train": 5, "polarity_train": 5,
                         "polarity_T": 8, "seeds": list(SEEDS)},
            "eval_size": 500, "rows": rows}


def test_f1_rule_reaches_every_verdict():
    best = (0.8, 0.9)
    both = {("polarity", "variational"): best, ("reber", "variational"): best}
    assert dropout.decide_f1(_dropout(both)).status == SUPPORTED
    one = dropout.decide_f1(_dropout({("reber", "variational"): best}))
    assert one.status == DEPENDS and "best on reber" in one.reason
    split = dropout.decide_f1(_dropout({("polarity", "variational"): (0.8, 0.7),
                                        ("reber", "variational"): (1.0, 0.8)}))
    assert split.status == DEPENDS and "disagree on polarity" in split.reason
    worse = {("polarity", "variational"): (1.2, 0.7), ("reber", "variational"): (1.0, 0.8)}
    assert dropout.decide_f1(_dropout(worse)).status == NOT_SUPPORTED


def test_f1_counts_diverged_runs_apart():
    best = (0.8, 0.9)
    m = _dropout({("polarity", "variational"): best, ("reber", "variational"): best})
    m["rows"][0].update(test_loss=math.nan, diverged=True)
    assert dropout.decide_f1(m).status == SUPPORTED


def test_f2_rule_reaches_every_verdict():
    assert dropout.decide_f2(_dropout({("reber", "naive"): (0.97, 0.805)})).status == SUPPORTED
    clear = (0.5, 0.9)
    both = {("polarity", "naive"): clear, ("reber", "variational"): clear}
    assert dropout.decide_f2(_dropout(both)).status == NOT_SUPPORTED
    split = dropout.decide_f2(_dropout({("polarity", "naive"): clear,
                                        ("reber", "variational"): (0.5, 0.8)}))
    assert split.status == DEPENDS
    assert "polarity by loss, accuracy" in split.reason and "reber by loss" in split.reason


def test_dropout_report_parts_render_made_up_measurements(tmp_path):
    m = _dropout({("reber", "variational"): (0.8, 0.9)})
    assert "| reber | variational |" in dropout.summarize_dropout(m)
    assert "0.964" in dropout.against_f1(m) and "82.7" in dropout.against_f1(m)
    assert "114.5" in dropout.against_f2(m)
    assert dropout.plot_dropout(m, tmp_path)[0].exists()
