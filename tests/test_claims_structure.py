"""The rules of A1-A5 on made-up measurements: every verdict each rule can reach."""

from bench.claims import structure
from bench.claims.experiment import DEPENDS, NOT_SUPPORTED, SUPPORTED


def test_a2_rule_reads_the_ratio_then_the_order():
    def m(*pairs):
        return {"rows": [{"lstm": lstm, "gru": gru,
                          "ratio": "3/4" if 4 * gru == 3 * lstm else f"{gru}/{lstm}"}
                         for lstm, gru in pairs]}

    assert structure.decide_a2(m((4, 3), (8, 6))).status == SUPPORTED
    assert structure.decide_a2(m((4, 3), (10, 8))).status == SUPPORTED      # fewer, not 3/4
    assert structure.decide_a2(m((4, 3), (8, 9))).status == NOT_SUPPORTED


def test_a3_rule_when_implementations_disagree():
    rows = [{"c_shape": [1, 2, 5], "H": 5, "I": 3}, {"c_shape": [1, 2, 8], "H": 5, "I": 3}]
    assert structure.decide_a3({"rows": rows}).status == DEPENDS


def test_a4_rule_flags_a_wrong_arity_or_a_state_it_does_not_refuse():
    lstm = {"impl": "x", "cell": "lstm", "inputs": 3, "state_tensors_out": 2,
            "output_is_h": True, "wrong_state_rejected": True}
    gru = {**lstm, "cell": "gru", "inputs": 2, "state_tensors_out": 1}
    assert structure.decide_a4({"rows": [lstm, gru]}).status == SUPPORTED
    assert structure.decide_a4({"rows": [lstm, {**gru, "inputs": 3}]}).status == NOT_SUPPORTED
    lax = {**lstm, "wrong_state_rejected": False}
    assert structure.decide_a4({"rows": [lax, gru]}).status == NOT_SUPPORTED


def _a5(diff, note_keeps, pytorch_keeps):
    return {"rows": [{"impl": "x", "dtype": "torch.float64", "eps": 2.2e-16,
                      "max_abs_diff_note_form_flipped": diff}],
            "old_state_share": {"note_z_bias_+30": note_keeps,
                                "pytorch_z_bias_+30": pytorch_keeps},
            "max_abs_diff_reset_before_vs_after": 0.2}


def test_a5_rule_reaches_each_verdict():
    assert structure.decide_a5(_a5(1e-16, 0.0, 1.0)).status == DEPENDS
    assert structure.decide_a5(_a5(1e-16, 1.0, 0.0)).status == SUPPORTED
    assert structure.decide_a5(_a5(1e-3, 0.0, 1.0)).status == NOT_SUPPORTED
    text = structure.against_a5(_a5(1e-16, 0.0, 1.0))
    assert "keeps 1.00 of it in that form and 0.00 in the notes' own formula" in text
