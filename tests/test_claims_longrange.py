"""The rules of C3, D1 and D2 on made-up sweep rows, every branch of each.

A row is what `accuracy.summarise` gives per (task, sizing, model, T): the test losses of
the seeds that did not diverge, the success rate with its Wilson interval, whether the
median's interval is below the baseline.
"""

import pytest

from bench.claims import accuracy, longrange
from bench.claims.experiment import DEPENDS, NOT_SUPPORTED, SUPPORTED
from bench.claims.intervals import median_interval, wilson_interval

BASELINE = 0.167


def row(model, task="adding", T=100, *, solved=0, n=5, loss=None, spread=0.01,
        sizing="equal", diverged=0):
    if loss is None:   # a model that solves most seeds has a low loss
        loss = 0.001 if solved > n / 2 else 0.17
    losses = [loss * (1 + spread * k) for k in range(n - diverged)]
    interval = median_interval(losses)
    return {"task": task, "sizing": sizing, "model": model, "T": T,
            "success": wilson_interval(solved, n), "test_losses": losses, "loss": interval,
            "baseline": BASELINE, "beats_baseline": interval["ci95"][1] < BASELINE,
            "diverged": diverged}


def sweep(*rows):
    return {"sweep": {"hidden_size": 32}, "rows": list(rows)}


# -- C3 ----------------------------------------------------------------------------------------


def test_c3_supported_when_the_irnn_is_better_somewhere_and_worse_nowhere():
    m = sweep(row("irnn", solved=5, loss=0.001), row("rnn_tanh", solved=0),
              row("irnn", T=200), row("rnn_tanh", T=200))
    verdict = longrange.decide_c3(m)
    assert verdict.status == SUPPORTED and "adding T=100" in verdict.reason


def test_c3_by_loss_alone_when_the_success_rates_do_not_separate():
    # Both solve nothing; the IRNN's losses are 10x lower with tight intervals.
    m = sweep(row("irnn", loss=0.01), row("rnn_tanh", loss=0.17))
    assert longrange.c3_outcomes(m) == {"adding T=100": "better"}
    assert longrange.decide_c3(m).status == SUPPORTED


def test_c3_depends_when_the_irnn_is_better_at_one_length_and_worse_at_another():
    m = sweep(row("irnn", solved=5, loss=0.001), row("rnn_tanh"),
              row("irnn", T=400, loss=0.17, diverged=3), row("rnn_tanh", T=400, loss=0.01))
    verdict = longrange.decide_c3(m)
    assert verdict.status == DEPENDS
    assert "worse at adding T=400" in verdict.reason


def test_c3_not_supported_when_the_irnn_is_better_nowhere():
    m = sweep(row("irnn"), row("rnn_tanh"))
    assert longrange.c3_outcomes(m) == {"adding T=100": "same"}
    assert longrange.decide_c3(m).status == NOT_SUPPORTED


def test_a_wide_loss_interval_is_unclear_not_the_same():
    m = sweep(row("irnn", loss=0.05, spread=2.0), row("rnn_tanh", loss=0.05))
    assert longrange.c3_outcomes(m) == {"adding T=100": "unclear"}


# -- D1 ----------------------------------------------------------------------------------------


def d1(tanh=0, irnn=0, lstm=5, gru=5, T=(100, 400), long_tanh=0):
    rows = []
    for length in T:
        longest = length == max(T)
        rows += [row("rnn_tanh", T=length, solved=long_tanh if longest else tanh),
                 row("irnn", T=length, solved=irnn), row("lstm", T=length, solved=lstm),
                 row("lstm_fb1", T=length, solved=lstm), row("gru", T=length, solved=gru)]
    return sweep(*rows)


def test_d1_supported_when_only_the_gated_cells_learn_the_longest_length():
    verdict = longrange.decide_d1(d1(tanh=5))
    assert verdict.status == SUPPORTED and "adding T=400" in verdict.reason


def test_d1_depends_when_the_irnn_learns_what_the_gated_cells_learn():
    verdict = longrange.decide_d1(d1(irnn=3))
    assert verdict.status == DEPENDS and "IRNN" in verdict.reason


def test_d1_depends_when_the_tanh_rnn_learns_some_longest_length():
    m = d1()
    m["rows"] += [row("rnn_tanh", "copy", 50, solved=5), row("lstm", "copy", 50, solved=5),
                  row("gru", "copy", 50, solved=5)]
    verdict = longrange.decide_d1(m)
    assert verdict.status == DEPENDS and "tanh RNN also learns copy T=50" in verdict.reason


def test_d1_not_supported_when_the_tanh_rnn_learns_everything_the_gated_cells_do():
    assert longrange.decide_d1(d1(tanh=5, long_tanh=5)).status == NOT_SUPPORTED


def test_d1_not_supported_when_no_gated_cell_learns():
    verdict = longrange.decide_d1(d1(lstm=0, gru=0))
    assert verdict.status == NOT_SUPPORTED and "no gated cell" in verdict.reason


def test_d1_counts_a_diverged_seed_as_a_failure_and_names_it():
    m = d1()
    m["rows"] = [r for r in m["rows"] if not (r["model"] == "irnn" and r["T"] == 400)]
    m["rows"].append(row("irnn", T=400, solved=2, diverged=3))
    verdict = longrange.decide_d1(m)
    assert verdict.status == SUPPORTED                   # 2 of 5 is below the 50% line
    assert "irnn 3" in verdict.reason


# -- D2 ----------------------------------------------------------------------------------------


def d2(gru_loss=0.01, lstm_loss=0.01, fb1_loss=None, gru_solved=0, lstm_solved=0):
    fb1_loss = lstm_loss if fb1_loss is None else fb1_loss
    rows = []
    for sizing in ("equal", "matched"):
        rows += [row("gru", sizing=sizing, loss=gru_loss, solved=gru_solved),
                 row("lstm", sizing=sizing, loss=lstm_loss, solved=lstm_solved)]
    rows.append(row("lstm_fb1", loss=fb1_loss))
    rows += [row("gru", T=1000, sizing=s) for s in ("equal", "matched")]   # nobody learns
    rows += [row("lstm", T=1000, sizing=s) for s in ("equal", "matched")]
    return sweep(*rows)


def test_d2_supported_when_the_same_wherever_either_learns():
    verdict = longrange.decide_d2(d2())
    assert verdict.status == SUPPORTED
    assert "T=1000" not in verdict.reason        # neither beats the baseline there


def test_d2_depends_when_the_gru_leads_but_forget_bias_1_closes_the_gap():
    verdict = longrange.decide_d2(d2(gru_loss=0.001, lstm_loss=0.05, fb1_loss=0.001))
    assert verdict.status == DEPENDS and "forget-gate bias 1" in verdict.reason


def test_d2_not_supported_when_the_gru_leads_and_the_bias_does_not_help():
    verdict = longrange.decide_d2(d2(gru_loss=0.001, lstm_loss=0.05))
    assert verdict.status == NOT_SUPPORTED and "GRU is ahead" in verdict.reason


def test_d2_not_supported_when_the_lstm_leads_by_success_rate():
    verdict = longrange.decide_d2(d2(gru_solved=0, lstm_solved=5))
    assert verdict.status == NOT_SUPPORTED and "LSTM is ahead" in verdict.reason


def test_d2_depends_when_each_leads_somewhere():
    m = d2(gru_loss=0.001, lstm_loss=0.05)
    m["rows"] += [row("gru", "copy", 50, loss=0.05), row("lstm", "copy", 50, loss=0.001)]
    assert longrange.decide_d2(m).status == DEPENDS


def test_d2_depends_when_the_intervals_are_too_wide():
    m = sweep(row("gru", loss=0.01, spread=3.0), row("lstm", loss=0.01),
              row("lstm_fb1", loss=0.01))
    verdict = longrange.decide_d2(m)
    assert verdict.status == DEPENDS and "too wide" in verdict.reason


def test_d2_depends_when_neither_learns():
    verdict = longrange.decide_d2(sweep(row("gru"), row("lstm"), row("lstm_fb1")))
    assert verdict.status == DEPENDS and "cannot compare" in verdict.reason


# -- the literature beside the verdicts ---------------------------------------------------------


def test_against_states_our_figures_beside_the_literatures():
    m = d1()
    text = longrange.against_d1(m)
    assert "T=400" in text and "Arjovsky" in text and "We agree" in text
    disagree = longrange.against_c3(sweep(row("irnn", loss=0.001), row("rnn_tanh")))
    assert "disagrees" in disagree and "adding T=[100]" in disagree
    assert "Jozefowicz" in longrange.against_d2(d2(gru_loss=0.001, lstm_loss=0.05,
                                                   fb1_loss=0.001))


@pytest.mark.parametrize("task", [t.task for t in accuracy.PROFILES["default"].tasks])
def test_every_task_of_the_default_sweep_has_an_anchor(task):
    assert task in accuracy.TASK_ANCHORS
