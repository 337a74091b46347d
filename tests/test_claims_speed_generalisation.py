"""Claims B1, B2 (speed) and D3, D4 (generalisation): every branch of every rule, on
made-up measurements, and the helpers the rules stand on."""

import pytest

from bench.claims import generalisation, speed
from bench.claims.experiment import DEPENDS, NOT_SUPPORTED, SUPPORTED

# -- B1 and B2 ---------------------------------------------------------------------------------


def _row(impl, ratio, ci, *, mode="training", varied="base", flop_ratio=0.75,
         kernels=("StackBackward0", "StackBackward0"), H=128):
    lstm = {"median": 1.0, "kernel": kernels[0], "gflops": 1.0}
    return {"impl": impl, "device": "cpu", "mode": mode, "status": "ok", "varied": varied,
            "T": 64, "B": 16, "I": 64, "H": H, "ratio": ratio, "ratio_ci95": list(ci),
            "flop_ratio": flop_ratio, "lstm": lstm,
            "gru": {**lstm, "median": ratio, "kernel": kernels[1]}}


def _speed(ratios_by_impl, **options):
    """One base case and one training-shape case per implementation, at each given ratio."""
    rows = []
    for impl, (ratio, ci) in ratios_by_impl.items():
        rows += [_row(impl, ratio, ci, **options),
                 _row(impl, ratio, ci, varied="training", **options)]
    return {"rows": rows}


def _records(steps_by_model, task="adding", T=50, budget=2000):
    """Sweep records: steps_by_model[model] = steps to threshold per seed (None: unsolved)."""
    return [{"task": task, "T": T, "model": model, "sizing": "equal", "seed": seed,
             "lr": 0.01, "steps_to_threshold": steps, "steps_budget": budget,
             "test_solved": steps is not None, "diverged": False}
            for model, per_seed in steps_by_model.items() for seed, steps in enumerate(per_seed)]


def _with_sweep(m, records):
    return {**m, "sweep": {"status": "ok", "records": records}}


FAST_STEPS = {"gru": [300, 400, 500], "lstm": [1200, 1300, 1400, 1500]}
SAME_STEPS = {"gru": [900, 1000, 1100], "lstm": [900, 1000, 1100]}


def test_b1_without_training_rows_depends():
    assert speed.decide_b1({"rows": []}).status == DEPENDS


def test_b1_per_step_alone_rules_against_two_thirds():
    much, not_much = (0.5, (0.45, 0.55)), (0.8, (0.75, 0.85))
    absent = {"sweep": {"status": "absent", "reason": "no sweep here"}}
    verdict = speed.decide_b1({**_speed({"a": much, "b": much}), **absent})
    assert verdict.status == SUPPORTED and "no sweep here" in verdict.reason
    assert speed.decide_b1(_speed({"a": not_much, "b": (1.5, (1.4, 1.6))})).status \
        == NOT_SUPPORTED
    mixed = speed.decide_b1(_speed({"a": much, "b": not_much}))
    assert mixed.status == DEPENDS and "much faster everywhere with a" in mixed.reason
    # An interval that holds 2/3 decides nothing.
    assert speed.decide_b1(_speed({"a": (0.66, (0.6, 0.72))})).status == DEPENDS


def test_b1_steps_to_solve_decide_where_both_models_solved():
    per_step = _speed({"a": (0.9, (0.88, 0.92)), "b": (0.93, (0.9, 0.96))})
    fast = speed.decide_b1(_with_sweep(per_step, _records(FAST_STEPS)))
    assert fast.status == SUPPORTED
    assert "decided by steps to solve" in fast.reason and "adding T=50" in fast.reason
    same = speed.decide_b1(_with_sweep(per_step, _records(SAME_STEPS)))
    assert same.status == NOT_SUPPORTED
    # A GRU 4.8 times slower per step (a fused LSTM kernel) loses the steps' advantage.
    kernels = _speed({"a": (0.9, (0.88, 0.92)), "torch": (4.8, (4.5, 5.0))})
    split = speed.decide_b1(_with_sweep(kernels, _records(FAST_STEPS)))
    assert split.status == DEPENDS and "not much faster anywhere with torch" in split.reason


def test_b1_steps_need_both_models_to_solve_somewhere():
    per_step = _speed({"a": (0.8, (0.75, 0.85))})
    records = _records({"gru": [300, 400], "lstm": [None, None]})
    assert speed.steps_points(_with_sweep(per_step, records))[0]["steps"] is None
    verdict = speed.decide_b1(_with_sweep(per_step, records))
    assert verdict.status == NOT_SUPPORTED and "time per step alone" in verdict.reason


def test_b1_steps_points_count_solve_rates_and_ratio():
    records = _records({"gru": [300, 500, None], "lstm": [1000, 1500, 1000, None],
                        "lstm_fb1": [None]})
    (point,) = speed.steps_points(_with_sweep({"rows": []}, records))
    assert point["gru"]["rate"]["k"] == 2 and point["gru"]["rate"]["n"] == 3
    assert point["lstm"]["median_steps"] == 1000
    assert point["steps"]["ratio"] == pytest.approx(400 / 1000)
    assert point["lstm_fb1"]["median_steps"] is None


def test_time_to_solve_multiplies_the_two_ratios_and_bounds():
    point = {"steps": {"ratio": 0.4, "ci95": [0.3, 0.5]}}
    t = speed.time_to_solve(point, {"ratio": 0.9, "ratio_ci95": [0.8, 1.0]})
    assert t["ratio"] == pytest.approx(0.36) and t["ci95"] == pytest.approx([0.24, 0.5])
    assert t["decided_by"] == "steps to solve"
    t = speed.time_to_solve(point, {"ratio": 4.0, "ratio_ci95": [3.5, 4.5]})
    assert t["decided_by"] == "time per step"


def test_sweep_part_reads_only_equal_sized_gru_and_lstms(monkeypatch):
    from bench.claims import longrange

    records = _records({"gru": [300], "rnn_tanh": [None]}) + [
        {**_records({"lstm": [900]})[0], "sizing": "matched"}]
    for r in records:
        r["seconds"] = 1.0
    monkeypatch.setattr(longrange, "sweep_records", lambda profile: records, raising=False)
    part = speed.sweep_part("smoke")
    assert part["status"] == "ok"
    assert [r["model"] for r in part["records"]] == ["gru"]
    assert "seconds" not in part["records"][0]


def test_b2_rule_holds_the_flops_against_same_kernel_times():
    follows, slower = (0.8, (0.75, 0.85)), (1.2, (1.1, 1.3))
    assert speed.decide_b2({"rows": []}).status == DEPENDS
    assert speed.decide_b2(_speed({"a": follows}, flop_ratio=1.2)).status == NOT_SUPPORTED
    assert speed.decide_b2(_speed({"a": follows, "b": follows})).status == SUPPORTED
    assert speed.decide_b2(_speed({"a": slower})).status == NOT_SUPPORTED
    mixed = _speed({"a": follows})
    mixed["rows"].append(_row("a", *slower, varied="H", H=32))
    verdict = speed.decide_b2(mixed)
    assert verdict.status == DEPENDS and "training H=32" in verdict.reason
    # A fused kernel for one cell only is left out; with nothing left, time cannot rule.
    fused = _speed({"torch": slower}, kernels=("oneDNN (MkldnnRnnLayerBackward0)",
                                               "StackBackward0"))
    verdict = speed.decide_b2(fused)
    assert verdict.status == DEPENDS and "same kind of kernel" in verdict.reason
    fused["rows"] += _speed({"a": follows})["rows"]
    verdict = speed.decide_b2(fused)
    assert verdict.status == SUPPORTED and "left out" in verdict.reason


def test_kernel_kind_ignores_the_cells_name():
    row = _row("numba", 0.8, (0.7, 0.9),
               kernels=("_LSTMFunctionBackward", "_GRUFunctionBackward"))
    assert speed.same_kernel_kind(row)
    assert not speed.same_kernel_kind(_row("torch", 1.8, (1.7, 1.9), kernels=(
        "oneDNN (MkldnnRnnLayerBackward0)", "StackBackward0")))


def test_speed_anchors_are_set_beside_the_measurements():
    m = {"rows": [_row("a", 0.9, (0.85, 0.95)), _row("a", 0.75, (0.7, 0.8), varied="H", H=512),
                  _row("a", 0.9, (0.85, 0.95), varied="training")]}
    assert "0.90 at H=128, 0.75 at H=512" in speed.against_b1(_with_sweep(m, _records(
        FAST_STEPS)))
    assert "a 0.90 at H=128, 0.75 at H=512" in speed.against_b2(m)
    assert "Like cuDNN" in speed.against_b2(m)


def test_speed_grid_varies_one_size_at_a_time():
    for profile in speed.GRIDS:
        points = speed.grid_points(profile)
        base = speed.GRIDS[profile]["base"]
        assert points[0]["varied"] == "base" and points[-1]["varied"] == "training"
        for p in points[1:-1]:
            changed = [d for d in speed.DIMENSIONS if p[d] != base[d]]
            assert changed == [p["varied"]]


def test_speed_settings_cover_every_profile():
    from bench.claims.experiment import PROFILES

    assert set(speed.GRIDS) == set(speed.TIMINGS) == set(PROFILES)
    assert set(generalisation.DATA_SIZES) == set(generalisation.GENERALISATION) \
        == set(PROFILES)


# -- D3 ---------------------------------------------------------------------------------------


def _d3(test_loss, *, train=0.001, valid=0.05, seeds=3):
    """test_loss[(model, size)] = one test MSE for every seed (spread a little by seed)."""
    rows = [{"model": model, "train_size": size, "seed": seed, "lr": 0.01,
             "test_loss": loss * (1 + 0.01 * seed), "test_baseline_loss": 1 / 6,
             "selected_step": 100, "train_loss_selected": train, "train_loss_final": train,
             "validation_loss_final": valid, "diverged": False}
            for (model, size), loss in test_loss.items() for seed in range(seeds)]
    return {"settings": {"sizes": [30, 1000], "T": 10, "H": 32, "steps": 100,
                         "seeds": list(range(seeds)), "eval_every": 10},
            "baseline": 1 / 6, "rows": rows}


def _losses(small, large):
    """small/large: test MSE of (gru, lstm, lstm_fb1) at the smallest and largest sizes."""
    return {**{(m, 30): v for m, v in zip(("gru", "lstm", "lstm_fb1"), small)},
            **{(m, 1000): v for m, v in zip(("gru", "lstm", "lstm_fb1"), large)}}


def test_d3_needs_overfitting_at_the_smallest_size():
    verdict = generalisation.decide_d3(_d3(_losses((0.01, 0.05, 0.05), (0.01, 0.01, 0.01)),
                                           train=0.04, valid=0.05))
    assert verdict.status == DEPENDS and "not tested" in verdict.reason


def test_d3_rule_branches():
    decide = generalisation.decide_d3
    both = decide(_d3(_losses((0.01, 0.05, 0.05), (0.01, 0.005, 0.005))))
    assert both.status == SUPPORTED and "pulls ahead" in both.reason
    one = decide(_d3(_losses((0.01, 0.05, 0.01), (0.01, 0.01, 0.01))))
    assert one.status == DEPENDS and "on which LSTM" in one.reason
    second = decide(_d3(_losses((0.05, 0.05, 0.05), (0.01, 0.005, 0.01))))
    assert second.status == DEPENDS and "second half" in second.reason
    assert decide(_d3(_losses((0.05, 0.01, 0.01), (0.01, 0.01, 0.01)))).status \
        == NOT_SUPPORTED
    # One seed gives no interval: the seeds decide nothing.
    single = decide(_d3(_losses((0.01, 0.05, 0.05), (0.01, 0.01, 0.01)), seeds=1))
    assert single.status == DEPENDS and "do not decide" in single.reason


def test_d3_summary_and_anchor_render():
    m = _d3(_losses((0.01, 0.05, 0.02), (0.01, 0.01, 0.01)))
    assert "GRU / LSTM forget bias 1" in generalisation.summarize_d3(m)
    assert "Jozefowicz" in generalisation.against_d3(m) and "N=30" in \
        generalisation.against_d3(m)


# -- D4 ---------------------------------------------------------------------------------------


def _d4(losses_by_cell, solved=True):
    """losses_by_cell[cell] = per seed (MSE at T=10, MSE at T=20)."""
    rows = [{"cell": cell, "seed": seed, "lr": 0.01, "steps": 100, "solved_in_range": solved,
             "train_range_loss": 0.001, "test_loss": {"10": a, "20": b}}
            for cell, per_seed in losses_by_cell.items() for seed, (a, b) in enumerate(per_seed)]
    return {"settings": {"train": [2, 4], "test": [10, 20], "H": 8, "steps": 100,
                         "test_size": 10, "seeds": [0, 1, 2]},
            "baseline": 1 / 6, "rows": rows}


def test_d4_rule():
    decide = generalisation.decide_d4
    good = [(0.001, 0.002), (0.002, 0.003), (0.0015, 0.002)]
    bad = [(0.2, 0.3), (0.25, 0.3), (0.3, 0.2)]
    assert decide(_d4({"lstm": good, "gru": good})).status == SUPPORTED
    partial = decide(_d4({"lstm": [(0.001, 0.1), (0.002, 0.12), (0.001, 0.11)], "gru": good}))
    assert partial.status == DEPENDS and "up to T=10 for the lstm" in partial.reason
    assert decide(_d4({"lstm": bad, "gru": bad})).status == NOT_SUPPORTED
    assert decide(_d4({"lstm": good}, solved=False)).status == NOT_SUPPORTED
    # Seeds spread across the threshold: the interval holds it, so not handled.
    spread = decide(_d4({"gru": [(0.001, 0.001), (0.05, 0.05), (0.001, 0.06)]}))
    assert spread.status == DEPENDS


def test_d4_anchor_says_whether_we_agree():
    good = [(0.001, 0.002), (0.002, 0.003)]
    assert "We agree" in generalisation.against_d4(_d4({"gru": good}))
    bad = [(0.2, 0.3), (0.25, 0.3)]
    assert "do not reproduce" in generalisation.against_d4(_d4({"gru": bad}))
    assert "nothing to compare" in generalisation.against_d4(_d4({"gru": bad}, solved=False))

