"""Claims C1, C2, C4, C5 and C6: the gradient tools against autograd and a hand-written
chain rule, and every branch of each verdict rule on made-up measurements."""

import math

import pytest
import torch

from bench.claims import gradients, training
from bench.claims.experiment import DEPENDS, NOT_SUPPORTED, SUPPORTED

# -- the measuring tools -------------------------------------------------------------------


def test_growth_factor_of_a_geometric_sequence():
    log10 = [k * math.log10(0.8) for k in range(30)]
    assert gradients.growth_factor(log10) == pytest.approx(0.8)


def test_lag_profile_first_step_matches_the_chain_rule():
    layer, task = gradients.starting_layer("rnn_tanh", 5, 6, seed=1)
    profile = gradients.lag_profile(layer, task, B=3, seed=1)
    # Oracle: dL/dh_(T-1) = W_hh^T (tanh'(a_T) * w) per sequence, a_T the last pre-activation.
    x = task.sample(3, torch.Generator().manual_seed(20_000 + 1)).inputs.double()
    with torch.no_grad():
        y, _ = layer(x)
        h_last = y[-1]
    w = torch.randn(5, generator=torch.Generator().manual_seed(10_000 + 1),
                    dtype=torch.float64) / math.sqrt(5)
    grad = ((1 - h_last ** 2) * w) @ layer.weight_hh_l0.detach()
    expected = (grad.norm(dim=1) / w.norm()).log10().mean()
    assert profile[0] == pytest.approx(0.0)
    assert profile[1] == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "lstm"])
def test_lag_decomposition_sums_to_the_total_gradient(cell):
    layer, task = gradients.starting_layer(cell, 4, 7, seed=2)
    parts = gradients.lag_decomposition(layer, task, B=3, seed=2)
    x = task.sample(3, torch.Generator().manual_seed(20_000 + 2)).inputs.double()
    states = gradients.step_through(layer, x)
    loss, _ = gradients._final_loss(states, 2)
    (total,) = torch.autograd.grad(loss, layer.weight_hh_l0)
    assert parts["total_norm"] == pytest.approx(float(total.norm()), rel=1e-10)
    assert len(parts["norm_by_lag"]) == 7


def test_rescaled_spectral_radius():
    w = torch.randn(6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scaled = training.rescale_spectral_radius(w, 1.5)
    assert torch.linalg.eigvals(scaled).abs().max().item() == pytest.approx(1.5)


def test_every_settings_table_has_every_profile():
    for settings in (gradients.PROFILE_SIZES, gradients.DECOMPOSITION,
                     gradients.C2_SETTINGS, gradients.C4_TRAINING):
        assert set(settings) == {"smoke", "quick", "default", "full"}
    assert len(gradients.PROFILE_SIZES["default"]["seeds"]) >= 5
    assert len(gradients.DECOMPOSITION["default"]["seeds"]) >= 5


# -- C1 --------------------------------------------------------------------------------------


def _c1(factors: dict, sigma: float = 0.9) -> dict:
    return {"rows": [{"radius": r, "growth_factor": f,
                      "largest_singular_value": [sigma * r * 1.8] * len(f)}
                     for r, f in factors.items()]}


def test_c1_rule_reaches_every_verdict():
    small, grows = [0.5, 0.52, 0.48], [1.2, 1.22, 1.18]
    assert gradients.decide_c1(_c1({0.5: small, 2.0: grows})).status == SUPPORTED
    # a radius above 1 whose interval holds 1: explodes from 2 only
    verdict = gradients.decide_c1(_c1({0.5: small, 1.5: [0.98, 1.03, 1.01], 2.0: grows}))
    assert verdict.status == DEPENDS and "from radius 2" in verdict.reason
    verdict = gradients.decide_c1(_c1({0.5: small, 1.5: [0.9, 0.95, 0.92]}))
    assert verdict.status == DEPENDS and "no radius up to 1.5 explodes" in verdict.reason
    assert gradients.decide_c1(_c1({0.5: [0.9, 1.1, 1.0], 2.0: grows})).status == NOT_SUPPORTED


def test_c1_against_reads_the_singular_values():
    text = gradients.against_c1(_c1({0.5: [0.5, 0.5], 0.9: [0.8, 0.8], 2.0: [1.2, 1.2]}))
    assert "Pascanu" in text and "radius 0.5" in text and "agree" in text
    assert "loose" in text  # radius 0.9 vanishes with a singular value above 1


# -- C2 --------------------------------------------------------------------------------------


def _c2(free: list[bool], clipped: list[bool], clipped_test: float = 0.16) -> dict:
    def run(clip, blew_up, test):
        return {"clip_norm": clip, "blew_up": blew_up, "diverged": blew_up, "radius": 2.0,
                "grad_norm_max": 1e4 if blew_up else 50.0, "test_loss": test,
                "test_baseline_loss": 0.167}

    runs = ([run(None, b, 0.17) for b in free]
            + [run(1.0, b, clipped_test) for b in clipped])
    return {"clip_norm": 1.0, "settings": {"T": 50, "radii": [2.0]},
            "lr_search": {"2": {"lr": 0.1, "tried": []}}, "runs": runs}


def test_c2_rule_reaches_every_verdict():
    five = [True] * 5
    assert gradients.decide_c2(_c2(five, [False] * 5)).status == SUPPORTED
    verdict = gradients.decide_c2(_c2([False] * 5, [False] * 5))
    assert verdict.status == DEPENDS and "nothing to fix" in verdict.reason
    assert gradients.decide_c2(_c2(five, five)).status == NOT_SUPPORTED
    verdict = gradients.decide_c2(_c2(five, [False] * 5, clipped_test=0.5))
    assert verdict.status == NOT_SUPPORTED and "failed" in verdict.reason
    verdict = gradients.decide_c2(_c2(five, [True] + [False] * 4))
    assert verdict.status == DEPENDS and "still blew up" in verdict.reason
    verdict = gradients.decide_c2(_c2([True, True], [False, False]))
    assert verdict.status == DEPENDS and "noise" in verdict.reason


def test_c2_against_says_whether_it_agrees():
    assert "agree" in gradients.against_c2(_c2([True] * 5, [False] * 5))
    assert "cannot confirm" in gradients.against_c2(_c2([False] * 5, [False] * 5))
    assert "Unlike" in gradients.against_c2(_c2([True] * 5, [True] * 5))


def test_a_run_blew_up_only_past_its_start_and_ten_baselines():
    def run(losses, diverged=False):
        return {"diverged": diverged, "baseline_loss": 0.167,
                "evals": [{"step": i, "loss": v} for i, v in enumerate(losses)]}

    assert gradients._blew_up(run([0.5, 0.2], diverged=True))
    assert gradients._blew_up(run([0.5, 3.0]))
    assert not gradients._blew_up(run([0.5, 1.0]))      # under 10 x baseline
    assert not gradients._blew_up(run([4.0, 3.0]))      # above it, but where it started


# -- C4 --------------------------------------------------------------------------------------


def _c4(tanh_factor, relu_factor, diverged: dict, peaks: dict | None = None) -> dict:
    """`diverged` and `peaks`: {(init, cell): value}, five runs each."""
    peaks = peaks or {}
    lag_rows = [{"cell": cell, "radius": r, "growth_factor": [f * (1 + 0.01 * s)
                                                              for s in range(5)]}
                for cell, f in (("rnn_tanh", tanh_factor), ("rnn_relu", relu_factor))
                for r in (0.5, 1.0, 2.0)]
    inits = sorted({init for init, _ in diverged})
    runs = [{"init": init, "cell": cell, "diverged": s < diverged[(init, cell)],
             "grad_norm_max": peaks.get((init, cell), 5.0) * (1 + 0.01 * s)}
            for init in inits for cell in gradients.C4_CELLS for s in range(5)]
    return {"lag_rows": lag_rows, "inits": inits, "runs": runs}


def test_c4_measures_distance_from_one_both_ways():
    # 0.5 and 2.0 are equally far from 1: neither activation is nearer
    m = _c4(0.5, 2.0, {("default init", "rnn_tanh"): 0, ("default init", "rnn_relu"): 0})
    m["lag_rows"] = [{**r, "growth_factor": [0.5] * 5 if r["cell"] == "rnn_tanh" else
                      [2.0] * 5} for r in m["lag_rows"]]
    assert {v["closer"] for v in gradients._c4_lag(m).values()} == {"neither"}


def test_c4_rule_reaches_every_verdict():
    init = "radius 1.5"
    relu_diverges = {(init, "rnn_tanh"): 0, (init, "rnn_relu"): 5}
    calm = {(init, "rnn_tanh"): 0, (init, "rnn_relu"): 0}
    assert gradients.decide_c4(_c4(0.9, 0.5, relu_diverges)).status == SUPPORTED
    # ReLU decays faster below 1: that is further from 1, so it counts for tanh
    assert gradients._c4_lag(_c4(0.9, 0.5, calm))[0.5]["closer"] == "tanh"
    assert gradients.decide_c4(_c4(0.5, 0.9, calm)).status == NOT_SUPPORTED
    verdict = gradients.decide_c4(_c4(0.9, 0.5, calm))
    assert verdict.status == DEPENDS and "no difference in training" in verdict.reason
    bigger = gradients.decide_c4(_c4(0.9, 0.5, calm, {(init, "rnn_relu"): 50.0}))
    assert bigger.status == SUPPORTED  # rates equal, ReLU's peak gradients 10x larger
    tanh_diverges = {(init, "rnn_tanh"): 5, (init, "rnn_relu"): 0}
    verdict = gradients.decide_c4(_c4(0.9, 0.5, tanh_diverges))
    assert verdict.status == DEPENDS and "tanh less stable" in verdict.reason


def test_c4_against_names_the_identity_init():
    m = _c4(0.9, 0.5, {("radius 1.5", "rnn_tanh"): 0, ("radius 1.5", "rnn_relu"): 5})
    assert "Le, Jaitly & Hinton" in gradients.against_c4(m)


# -- C5 --------------------------------------------------------------------------------------


def _c5(ratio: float, share: float) -> dict:
    rows = []
    for seed in range(5):
        row = {"cell": "rnn_tanh", "forget_bias": None, "seed": seed}
        wobble = 1 + 0.01 * seed
        rows += [{**row, "T": 10, "total_norm": 1.0, "share_beyond_10": 0.0,
                  "share_beyond_50": 0.0},
                 {**row, "T": 20, "total_norm": ratio * wobble,
                  "share_beyond_10": share * wobble, "share_beyond_50": 0.0}]
    return {"T": [10, 20], "rows": rows}


def test_c5_rule_reaches_every_verdict():
    assert gradients.decide_c5(_c5(1.0, 0.01)).status == SUPPORTED
    verdict = gradients.decide_c5(_c5(1.0, 0.5))
    assert verdict.status == DEPENDS and "total keeps its size" in verdict.reason
    verdict = gradients.decide_c5(_c5(0.01, 0.01))
    assert verdict.status == DEPENDS and "changes with T" in verdict.reason
    assert gradients.decide_c5(_c5(0.01, 0.5)).status == NOT_SUPPORTED


def test_c5_against_quotes_the_shares():
    assert "section 10.7" in gradients.against_c5(_c5(1.0, 0.01))


# -- C6 --------------------------------------------------------------------------------------


def _c6(factors: dict) -> dict:
    rows = []
    for (cell, fb), f in factors.items():
        per_seed = [f * (1 + 0.005 * s) for s in range(5)]
        rows.append({"cell": cell, "forget_bias": fb, "growth_factor": per_seed,
                     "log10_norm_by_lag": [[k * math.log10(g) for k in range(60)]
                                           for g in per_seed]})
    return {"sizes": {"T": 59}, "rows": rows}


def test_c6_rule_reaches_every_verdict():
    rnn = {("rnn_tanh", None): 0.6}
    assert gradients.decide_c6(_c6({**rnn, ("lstm", 0.0): 0.7, ("lstm", 1.0): 0.9,
                                     ("gru", None): 0.7})).status == SUPPORTED
    verdict = gradients.decide_c6(_c6({**rnn, ("lstm", 0.0): 0.6, ("lstm", 1.0): 0.9}))
    assert verdict.status == DEPENDS and "forget bias 1" in verdict.reason
    verdict = gradients.decide_c6(_c6({**rnn, ("lstm", 0.0): 0.4, ("gru", None): 0.6}))
    assert verdict.status == NOT_SUPPORTED and "decays faster" in verdict.reason


def test_c6_against_compares_forget_biases():
    text = gradients.against_c6(_c6({("rnn_tanh", None): 0.6, ("lstm", 0.0): 0.6,
                                     ("lstm", 1.0): 0.9}))
    assert "Jozefowicz" in text and "agrees" in text


def test_c2_decides_per_radius():
    removed = _c2([True] * 5, [False] * 5)
    calm = _c2([False] * 5, [False] * 5)
    for run in calm["runs"]:
        run["radius"] = 1.5
    both = {**removed, "settings": {"T": 50, "radii": [1.5, 2.0]},
            "lr_search": {"1.5": {"lr": 0.03, "tried": []}, "2": {"lr": 0.1, "tried": []}},
            "runs": removed["runs"] + calm["runs"]}
    verdict = gradients.decide_c2(both)
    assert verdict.status == SUPPORTED and "radius 1.5: nothing to fix" in verdict.reason
