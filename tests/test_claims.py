"""The claims' building blocks against independent oracles, and their verdict rules.

The rules are fed made-up measurements whose verdict is known by hand; the custom cells
are checked against the `reference` implementation; the gradient tools against autograd
and a hand-written chain rule.
"""

import json
import math
import re
from pathlib import Path

import pytest
import torch

import impls
from bench import claims
from bench.claims import (
    dropout,
    gates,
    generalisation,
    report,
    structure,
    training,
)
from bench.claims.experiment import (
    DEPENDS,
    NOT_SUPPORTED,
    NOTES,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
)
from bench.training.tasks import make_task
from bench.training.trainer import _generator

REPO = Path(__file__).resolve().parent.parent

EXPECTED_IDS = ([f"A{i}" for i in range(1, 6)] + ["B1", "B2"] + [f"C{i}" for i in range(1, 7)]
                + [f"D{i}" for i in range(1, 5)] + [f"E{i}" for i in range(1, 5)] + ["F1", "F2"])
NOTE_FILES = {"000_6b4ef90b910228ae.txt", "001_00d2adbd02362116.txt",
              "002_2c9e6012ecdce6e2.txt", "003_5fc8656dbf512f44.txt",
              "004_083bbe72d520f39b.txt"}


def test_every_claim_of_the_notes_has_an_experiment():
    assert list(claims.CLAIMS) == EXPECTED_IDS


#: "<file name> §<section>": a note's file name, then the section within it.
CITATION = re.compile(r"^(\d{3}_[0-9a-f]{16}\.txt) §(\S.*)$")
#: Claims the literature gives no figure for (exact checks, or questions no paper measured).
WITHOUT_ANCHOR = {"A1", "A2", "A3", "A4", "D3"}


@pytest.mark.parametrize("claim_id", EXPECTED_IDS)
def test_every_claim_has_a_complete_catalogue_entry(claim_id):
    claim = claims.get(claim_id)
    assert claim.id == claim_id
    assert claim.statement.strip() and claim.method.strip() and claim.rule.strip()
    assert claim.notes
    for citation in claim.notes:
        match = CITATION.match(citation)
        assert match, f"{claim_id}: {citation!r} is not '<file name> §<section>'"
        assert match.group(1) in NOTE_FILES, f"{claim_id}: no note named {match.group(1)}"
    assert all(isinstance(a, Anchor) and a.source.strip() and a.fact.strip()
               for a in claim.anchors)
    assert bool(claim.anchors) == (claim_id not in WITHOUT_ANCHOR)
    # The literature's figure stands beside every verdict that has one to stand beside.
    assert claim.against is not None or not claim.anchors


def test_the_notes_legend_names_exactly_the_cited_notes():
    assert set(NOTES) == NOTE_FILES and all(NOTES.values())
    cited = {CITATION.match(c).group(1) for claim in claims.CLAIMS.values() for c in claim.notes}
    assert cited == NOTE_FILES


def test_anchor_needs_a_source_and_a_fact():
    with pytest.raises(ValueError, match="source"):
        Anchor("", "a figure")
    assert str(Anchor("Pascanu et al. 2013", "x")) == "Pascanu et al. 2013: x"


def test_catalogue_renders_every_entry_and_no_outside_path(capsys):
    assert claims.main(["--catalogue"]) == 0
    text = capsys.readouterr().out
    assert text == report.catalogue_markdown(claims.CLAIMS)
    for claim in claims.CLAIMS.values():
        assert f"## {claim.id}\n" in text
        assert claim.statement in text and claim.method in text and claim.rule in text
        assert all(str(anchor) in text for anchor in claim.anchors)
    assert "`bench/claims/gradients.py` (`measure_c1`, `decide_c1`)" in text
    assert "../" not in text and "shared/" not in text


def _outside_paths(markdown: Path) -> list[str]:
    """Links and absolute paths in a committed markdown file that leave the repository."""
    text = markdown.read_text()
    found = re.findall(r"(?:^|[\s`(\[])(/(?:[\w.-]+/)+[\w.-]*)", text, re.M)
    targets = re.findall(r"\]\(([^)#\s]+)", text) + re.findall(r"`(\.\./[^`\s]*)`", text)
    for target in targets:
        if "://" not in target and REPO not in (markdown.parent / target).resolve().parents:
            found.append(target)
    return found + [m for m in ("shared/claims", "shared/notes") if m in text]


@pytest.mark.parametrize("markdown", ["results/CLAIMS.md", "results/accuracy/ACCURACY.md"])
def test_committed_reports_name_no_path_outside_the_repository(markdown):
    assert _outside_paths(REPO / markdown) == []


def test_committed_claims_report_shows_the_current_catalogue():
    text = (REPO / "results" / "CLAIMS.md").read_text()
    for claim in claims.CLAIMS.values():
        assert claim.statement in text and claim.method in text, claim.id
        assert "; ".join(claim.notes) in text, claim.id


def test_report_only_runs_no_experiment(tmp_path, monkeypatch):
    committed = report.load_results(REPO / "results" / "claims" / "claims.json")
    kept = {cid: committed["claims"][cid] for cid in ("A3", "A4")}
    paths = report.output_paths("default", tmp_path)
    report.write_json({**committed, "claims": kept}, paths["json"])

    def refuse(*args, **kwargs):
        raise AssertionError("--report-only ran an experiment")

    monkeypatch.setattr(claims, "measure", refuse)
    assert claims.main(["--profile", "default", "--out", str(tmp_path), "--report-only"]) == 0
    text = paths["markdown"].read_text()
    assert "## A3\n" in text and "**Verdict: not supported**" in text and "## A1\n" not in text


def test_accuracy_report_only_rebuilds_the_markdown_without_training(tmp_path, monkeypatch):
    from bench.claims import accuracy

    def made_up(task, T, config, threads):   # a quick.json of the current format, untrained
        evals = [{"step": 0, "loss": 0.2}, {"step": 10, "loss": 0.1}]
        return {"task": {}, "n_parameters": 1, "baseline_loss": 0.17,
                "curve": [{"step": 10, "loss": 0.1, "grad_norm_max": 1.0}], "evals": evals,
                "test": {"step": 10, "loss": 0.1, "baseline_loss": 0.17, "solved": False},
                "steps_done": 10, "steps_to_threshold": None, "diverged": False,
                "divergence": None, "seconds": 1.0, "cpu_seconds": 1.0, "final": evals[-1],
                "solved": False}

    monkeypatch.setattr(accuracy, "_execute", made_up)
    accuracy.run_profile(accuracy.PROFILES["quick"], tmp_path, command=["test"])

    def refuse(*args, **kwargs):
        raise AssertionError("--report-only trained a model")

    monkeypatch.setattr(accuracy, "run_profile", refuse)
    monkeypatch.setattr(accuracy, "figures", lambda document, directory: [])
    assert accuracy.main(["--report-only", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "ACCURACY.md").read_text()
    assert "## Profile `quick`" in text and "`results/CLAIMS.md`" in text
    assert _outside_paths(tmp_path / "ACCURACY.md") == []


def test_report_only_without_results_says_so(tmp_path, capsys):
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--report-only"]) == 2
    assert "no results" in capsys.readouterr().err


def test_unknown_claim_lists_the_known_ones():
    with pytest.raises(ValueError, match="known claims: A1, A2"):
        claims.get("Z9")


def test_verdict_rejects_unknown_status_and_empty_reason():
    with pytest.raises(ValueError, match="status"):
        Verdict("maybe", "x")
    with pytest.raises(ValueError, match="reason"):
        Verdict(SUPPORTED, "")


# -- A: structure --------------------------------------------------------------------------


@pytest.mark.parametrize("cell, gates_", [("rnn_tanh", 1), ("gru", 3), ("lstm", 4)])
def test_parameter_formula_matches_torch_nn(cell, gates_):
    I, H = 7, 5
    module = {"rnn_tanh": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](I, H)
    assert structure.formula_parameters(cell, I, H) == sum(p.numel() for p in module.parameters())
    counted = structure.count_parameters(module, H)
    assert counted["n_matrices"] == gates_ and counted["matrix_shape"] == [H, I + H]
    assert counted["biases_per_gate"] == 2


def test_count_parameters_reports_a_layout_that_does_not_split_into_gates():
    odd = torch.nn.Linear(3, 7)   # 7 rows are not a multiple of H=2
    assert structure.count_parameters(odd, 2)["n_matrices"] is None


def test_a1_rule_flags_a_wrong_count():
    row = {"impl": "x", "cell": "lstm", "I": 2, "H": 3, "gates": 4, "n_parameters": 132,
           "formula": 132, "n_matrices": 4, "matrix_shape": [3, 5]}
    assert structure.decide_a1({"rows": [row]}).status == SUPPORTED
    assert structure.decide_a1({"rows": [{**row, "n_parameters": 131}]}).status == NOT_SUPPORTED


def test_a3_rule():
    def m(c):
        return {"rows": [{"c_shape": [1, 2, c], "H": 5, "I": 3}]}

    assert structure.decide_a3(m(5)).status == NOT_SUPPORTED
    assert structure.decide_a3(m(8)).status == SUPPORTED


def test_notes_gru_form_with_flipped_update_gate_equals_reference():
    I, H = 3, 6
    gen = torch.Generator().manual_seed(0)
    ref = impls.get("reference").build("gru", input_size=I, hidden_size=H, dtype=torch.float64)
    state = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) * 0.5
             for k, v in ref.state_dict().items()}
    ref.load_state_dict(state)
    x = torch.randn(9, 2, I, generator=gen, dtype=torch.float64)
    h0 = torch.randn(1, 2, H, generator=gen, dtype=torch.float64)
    note = structure.NoteFormGRU(I, H)
    note.load_state_dict(structure.flip_update_gate(state, H))
    with torch.no_grad():
        torch.testing.assert_close(note(x, h0), ref(x, h0)[0], rtol=1e-12, atol=1e-12)
        before = structure.NoteFormGRU(I, H, reset_before=True)
        before.load_state_dict(structure.flip_update_gate(state, H))
        assert (before(x, h0) - ref(x, h0)[0]).abs().max() > 1e-3


def test_a5_measures_the_gate_roles_both_ways():
    m = structure.measure_a5("smoke")
    share = m["old_state_share"]
    # PyTorch: z -> 1 keeps h_prev; the notes' own formula: z -> 1 takes the candidate.
    assert share["pytorch_z_bias_+30"] == pytest.approx(1, abs=1e-9)
    assert share["note_z_bias_+30"] == pytest.approx(0, abs=1e-9)
    assert structure.decide_a5(m).status == DEPENDS


# -- C: gradients --------------------------------------------------------------------------
# (in tests/test_claims_gradients.py)


# -- custom cells against the reference ------------------------------------------------------


def _reference_lstm(I, H, state):
    ref = impls.get("reference").build("lstm", input_size=I, hidden_size=H,
                                       dtype=torch.float64)
    ref.load_state_dict(state)
    return ref


def test_experiment_lstm_is_the_standard_lstm():
    layer = gates.ExperimentLSTM(3, 4, dtype=torch.float64)
    ref = _reference_lstm(3, 4, layer.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=1e-12, atol=1e-12)


def test_experiment_lstm_thresholds_gates_only_without_autograd():
    layer = gates.ExperimentLSTM(2, 3, inference_gate="step", dtype=torch.float64)
    x = torch.randn(4, 1, 2, dtype=torch.float64)
    layer.recording = []
    with torch.no_grad():
        layer(x)
    i, f, _, o, _, _ = layer.recording[0]
    assert set(torch.cat([i, f, o]).flatten().tolist()) <= {0.0, 1.0}
    layer.recording = []
    layer(x)
    assert not set(layer.recording[0][0].flatten().tolist()) <= {0.0, 1.0}


def test_experiment_lstm_rejects_unknown_parts():
    with pytest.raises(ValueError, match="candidate"):
        gates.ExperimentLSTM(2, 3, candidate="softsign")


@pytest.mark.parametrize("scheme", dropout.SCHEMES)
def test_dropout_lstm_without_dropout_is_the_standard_lstm(scheme):
    layer = dropout.DropoutLSTM(3, 4, scheme=scheme, p=0.0, dtype=torch.float64)
    ref = _reference_lstm(3, 4, layer.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=1e-12, atol=1e-12)
    # Evaluation (no autograd) never drops, whatever p.
    layer.p = 0.5
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=1e-12, atol=1e-12)


def _constant_input_outputs(scheme):
    """Outputs for a constant input with h and c cut off: they vary over time only through
    the dropout masks."""
    torch.manual_seed(0)
    layer = dropout.DropoutLSTM(3, 8, scheme=scheme, p=0.5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_hh_l0.zero_()
        layer.bias_hh_l0.zero_()
        layer.bias_ih_l0[8:16] = -50.0        # forget gate shut: c_t = i * g
    x = torch.ones(6, 4, 3, dtype=torch.float64)
    y, _ = layer(x)
    return y.detach()


def test_variational_dropout_reuses_one_mask_per_sequence():
    y = _constant_input_outputs("variational")
    assert torch.allclose(y, y[0].expand_as(y))
    assert not torch.allclose(y[:, 0], y[:, 1])   # but masks differ between sequences


@pytest.mark.parametrize("scheme", ["naive", "non_recurrent"])
def test_per_step_dropout_draws_a_new_mask_each_step(scheme):
    y = _constant_input_outputs(scheme)
    assert not torch.allclose(y[0], y[1])


def test_polarity_labels_follow_the_word_counts():
    task = dropout.Polarity(T=12, vocabulary=10, polar=2)
    batch = task.sample(300, torch.Generator().manual_seed(5))
    words = batch.inputs.argmax(-1)
    positive = (words < 2).sum(0)
    negative = ((words >= 2) & (words < 4)).sum(0)
    assert torch.all((positive + negative) % 2 == 1)
    assert torch.equal(batch.targets, (positive > negative).long())
    assert 0.3 < batch.targets.double().mean() < 0.7


def test_polarity_rejects_bad_sizes():
    with pytest.raises(ValueError, match="polar"):
        dropout.Polarity(vocabulary=6, polar=3)


# -- training helpers ------------------------------------------------------------------------


def test_finite_training_set_trains_on_the_pool_and_holds_out_fresh_sequences():
    task = make_task("adding", T=6)
    small = training.FiniteTrainingSet(task, 5, seed=1, held_out=40)
    pool = small.pool.inputs.transpose(0, 1).reshape(5, -1)
    train = small.sample(32, torch.Generator().manual_seed(2)).inputs.transpose(0, 1)
    held = small.sample(40, torch.Generator().manual_seed(2)).inputs.transpose(0, 1)
    assert all(any(torch.equal(row, p) for p in pool) for row in train.reshape(32, -1))
    assert not any(any(torch.equal(row, p) for p in pool) for row in held.reshape(40, -1))
    with pytest.raises(ValueError, match="held_out"):
        training.FiniteTrainingSet(task, 5, seed=1, held_out=training.BATCH_SIZE)
    with pytest.raises(ValueError, match="size"):
        training.FiniteTrainingSet(task, 0, seed=1)


def test_length_range_sequences_are_adding_problems_of_their_own_length():
    task = generalisation.LengthRange(5, 9)
    batch = task.sample(64, torch.Generator().manual_seed(3))
    assert batch.lengths.min() >= 5 and batch.lengths.max() <= 9
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    torch.testing.assert_close((values * markers).sum(0), batch.targets)
    for b, T in enumerate(batch.lengths.tolist()):
        assert markers[:T // 2, b].sum() == 1 and markers[T // 2:T, b].sum() == 1
        assert batch.inputs[T:, b].abs().sum() == 0


def test_trained_models_catches_the_model_train_built():
    task = make_task("adding", T=5)
    cfg = training.config("gru", 4, steps=3, seed=0, impl="reference", dtype="float64")
    result, model = training.train_and_keep(task, cfg)
    batch = task.sample(20, torch.Generator().manual_seed(0))
    metrics = training.evaluate(model, task, batch)
    assert math.isfinite(metrics["loss"]) and result.steps_done == 3
    assert model.layer.impl_name == "reference"


def test_temporary_implementation_is_removed_afterwards():
    with training.temporary_implementation("claims-test", training.radius_factory(0.5),
                                           frozenset({"rnn_tanh"})) as name:
        layer = impls.get(name).build("rnn_tanh", input_size=2, hidden_size=5)
        layer.load_state_dict({k: torch.randn(v.shape) for k, v in layer.state_dict().items()})
        radius = torch.linalg.eigvals(layer.weight_hh_l0.detach()).abs().max().item()
        assert radius == pytest.approx(0.5, rel=1e-5)
        # The trainer loads its best-validation weights back at the end: left as they are.
        trained = {k: torch.randn(v.shape) for k, v in layer.state_dict().items()}
        layer.load_state_dict(trained)
        torch.testing.assert_close(layer.weight_hh_l0.detach(), trained["weight_hh_l0"])
    assert "claims-test" not in impls.names()


def test_a_rescaled_run_is_tested_with_the_weights_it_trained():
    task = make_task("adding", T=6)
    with training.temporary_implementation("claims-test", training.radius_factory(1.5),
                                           frozenset({"rnn_tanh"})) as name:
        cfg = training.config("rnn_tanh", 6, steps=20, seed=1, impl=name, eval_every=20,
                              eval_size=64)
        result, model = training.train_and_keep(task, cfg)
    # The model scored on the test set is the one of the best validation evaluation.
    validation = task.sample(64, _generator(cfg.eval_seed, 2))
    best = min(e["loss"] for e in result.evals)
    assert training.evaluate(model, task, validation)["loss"] == pytest.approx(best, rel=1e-6)
    test = task.sample(64, _generator(cfg.test_seed, 4))
    assert training.evaluate(model, task, test)["loss"] == pytest.approx(
        result.test["loss"], rel=1e-6)


# -- rules of the trained claims ---------------------------------------------------------------


# -- running and reporting ---------------------------------------------------------------------


def _failing_claim():
    def measure(profile):
        raise RuntimeError("boom")

    return Claim(id="Z1", notes=("000_6b4ef90b910228ae.txt",), statement="s", rule="r",
                 measure=measure, decide=lambda m: Verdict(SUPPORTED, "x"),
                 summarize=lambda m: "")


def test_a_failing_claim_is_recorded_not_raised():
    record = claims.run_claim(_failing_claim(), "smoke")
    assert record["status"] == "error" and "boom" in record["error"]


def test_json_round_trip_keeps_non_finite_numbers_readable(tmp_path):
    path = tmp_path / "claims" / "claims.json"
    report.write_json({"profile": "smoke",
                       "claims": {"x": {"status": "ok", "v": math.nan, "w": [math.inf]}}}, path)
    assert json.loads(path.read_text())["claims"]["x"] == {"status": "ok", "v": "nan",
                                                           "w": ["inf"]}
    loaded = report.load_results(path)["claims"]["x"]
    assert math.isnan(loaded["v"]) and loaded["w"] == [math.inf]
    assert not list(path.parent.glob(".claims-*"))   # no temporary file left behind


def test_report_shows_an_error_and_a_verdict(tmp_path):
    ok = Claim(id="Z2", notes=("001_00d2adbd02362116.txt §1",), statement="the claim",
               rule="the rule", measure=lambda p: {"n": 3},
               decide=lambda m: Verdict(NOT_SUPPORTED, f"n is {m['n']}"),
               summarize=lambda m: f"n = {m['n']}")
    records = {c.id: claims.run_claim(c, "smoke") for c in (_failing_claim(), ok)}
    paths = report.output_paths("smoke", tmp_path)
    report.write_report({"profile": "smoke", "claims": records},
                        {"Z1": _failing_claim(), "Z2": ok}, paths)
    text = paths["markdown"].read_text()
    assert "**Verdict: ERROR**" in text and "RuntimeError: boom" in text
    assert "**Verdict: not supported**: n is 3." in text and "n = 3" in text
    assert "python -m bench claims --profile smoke --only Z2" in text


def test_report_names_each_claims_commit_after_a_partial_rerun(tmp_path):
    ok = Claim(id="Z2", notes=("001_00d2adbd02362116.txt §1",), statement="s", rule="r",
               measure=lambda p: {}, decide=lambda m: Verdict(SUPPORTED, "x"),
               summarize=lambda m: "")
    records = {"Z1": claims.run_claim(ok, "smoke"), "Z2": claims.run_claim(ok, "smoke")}
    paths = report.output_paths("smoke", tmp_path)

    def stamped(first, second):
        for record, commit in zip(records.values(), (first, second)):
            record["measured_at"] = {"git": {"commit": commit, "dirty": False},
                                     "date": "2026-11-23T00:00:00+00:00"}
        report.write_report({"profile": "smoke", "claims": records},
                            {"Z1": ok, "Z2": ok}, paths)
        return paths["markdown"].read_text()

    text = stamped("a" * 40, "b" * 40)
    where = records["Z1"]["provenance"]   # run_claim records the machine that measured it
    assert (f"measured at commit aaaaaaaaaa on 2026-11-23, on {where['host']} "
            f"({where['cpu']}, {where['cores']} cores)") in text
    assert "measured at commit bbbbbbbbbb" in text and "not all measured in this run" in text
    assert "not all measured in this run" not in stamped("a" * 40, "a" * 40)


def test_default_profile_writes_the_committed_report_paths():
    assert report.output_paths("default")["markdown"].as_posix() == "results/CLAIMS.md"
    assert report.output_paths("quick")["json"].as_posix() == \
        "results/claims-quick/claims/claims.json"


# -- E rules ---------------------------------------------------------------------------


# -- claims.json under faults: killed runs, --only, runs at once, damaged files, bad options ---


def _stored(claim_id, reason="stored earlier"):
    return {"id": claim_id, "status": "ok", "seconds": 1.0, "measurements": {},
            "verdict": {"status": SUPPORTED, "reason": reason}}


@pytest.fixture
def stored_run(tmp_path, monkeypatch):
    """A claims.json holding every claim, and the measurement faked: each claim it measures
    gets the reason 'new'; `stop[0]` is the claim at which the run is killed
    (KeyboardInterrupt)."""
    paths = report.output_paths("smoke", tmp_path)
    report.write_json({"profile": "smoke", "claims": {c: _stored(c) for c in claims.CLAIMS}},
                      paths["json"])
    ran, stop = [], [None]

    def fake(claim_id, profile, threads, sweep_dir):
        if claim_id == stop[0]:
            raise KeyboardInterrupt
        ran.append(claim_id)
        return {"fake": claim_id}

    monkeypatch.setattr(claims, "measure", fake)
    monkeypatch.setattr(claims, "record_of", lambda claim, profile, outcome=None, error=None:
                        _stored(claim.id, "new"))
    monkeypatch.setattr(claims, "write_report", lambda results, catalogue, paths: None)
    return paths, ran, stop


def _reasons(path):
    return {cid: r["verdict"]["reason"] for cid, r in report.load_results(path)["claims"].items()}


def test_a_killed_claims_run_keeps_every_claim_it_had(stored_run, tmp_path):
    paths, ran, stop = stored_run
    stop[0] = "A3"
    with pytest.raises(KeyboardInterrupt):
        claims.main(["--profile", "smoke", "--out", str(tmp_path)])
    reasons = _reasons(paths["json"])
    assert set(reasons) == set(claims.CLAIMS)                  # nothing lost
    assert [c for c, r in reasons.items() if r == "new"] == ran == ["A1", "A2"]


def test_a_killed_claims_run_measures_only_what_has_no_cell_when_run_again(stored_run,
                                                                          tmp_path):
    paths, ran, stop = stored_run
    stop[0] = "A3"
    with pytest.raises(KeyboardInterrupt):
        claims.main(["--profile", "smoke", "--out", str(tmp_path)])
    stop[0] = None
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert ran[:2] == ["A1", "A2"] and "A1" not in ran[2:] and "A2" not in ran[2:]
    assert sorted(ran) == sorted(claims.CLAIMS)                # each measured once
    ran.clear()
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--only", "A1"]) == 0
    assert ran == []                                           # its cell is there
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--only", "A1",
                        "--retrain"]) == 0
    assert ran == ["A1"]


def test_the_claims_that_time_code_run_here_alone_after_the_others(stored_run, tmp_path):
    paths, ran, _ = stored_run
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path)]) == 0
    timed = [c for c, claim in claims.CLAIMS.items() if claim.timed]
    assert timed == ["B1", "B2"] and ran[-2:] == timed


def test_only_replaces_its_claims_and_keeps_every_other(stored_run, tmp_path):
    paths, ran, _ = stored_run
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--only", "B2", "A3",
                        "B2"]) == 0
    reasons = _reasons(paths["json"])
    assert set(reasons) == set(claims.CLAIMS) and ran == ["A3", "B2"]  # B2 times: last
    assert {c for c, r in reasons.items() if r == "new"} == {"A3", "B2"}


def test_claims_runs_at_once_keep_each_others_claims(stored_run, tmp_path, monkeypatch):
    paths, _, _ = stored_run
    header = {"command": "another run"}

    def meanwhile(claim_id, profile, threads, sweep_dir):   # another run finishes B1 meanwhile
        report.update_results(paths["json"], "smoke", header, {"B1": _stored("B1", "other")})
        return {}

    monkeypatch.setattr(claims, "measure", meanwhile)
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--only", "A1"]) == 0
    reasons = _reasons(paths["json"])
    assert reasons["A1"] == "new" and reasons["B1"] == "other"


def test_a_full_run_drops_claims_that_no_longer_exist(stored_run, tmp_path):
    paths, _, _ = stored_run
    report.update_results(paths["json"], "smoke", {}, {"Z9": _stored("Z9")})
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), "--only", "A1"]) == 0
    assert "Z9" in _reasons(paths["json"])                     # --only leaves it
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path)]) == 0
    assert set(_reasons(paths["json"])) == set(claims.CLAIMS)


def test_claims_of_another_profile_are_not_overwritten(stored_run, tmp_path, capsys):
    paths, ran, _ = stored_run
    before = paths["json"].read_bytes()
    assert claims.main(["--profile", "quick", "--out", str(tmp_path), "--only", "A1"]) == 2
    assert f"{paths['json']} holds the claims of profile 'smoke'" in capsys.readouterr().err
    assert paths["json"].read_bytes() == before and ran == []


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                       # truncated
    lambda text: "",                                           # empty
    lambda text: "\udcff",                                     # not UTF-8
    lambda text: "[1, 2]",                                     # JSON, not a results file
    lambda text: text.replace('"schema_version": 1', '"schema_version": 7'),
    lambda text: text.replace('"claims"', '"clams"'),          # a key lost
])
@pytest.mark.parametrize("argv", [["--only", "A1"], [], ["--report-only"]])
def test_an_unreadable_claims_file_is_a_clean_error_naming_it(stored_run, tmp_path, capsys,
                                                              damage, argv):
    paths, ran, _ = stored_run
    damaged = damage(paths["json"].read_text()).encode("utf-8", "surrogateescape")
    paths["json"].write_bytes(damaged)
    assert claims.main(["--profile", "smoke", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {paths['json']}" in err and "Traceback" not in err
    assert ran == [] and paths["json"].read_bytes() == damaged


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1.5", "100000"])
def test_claims_threads_out_of_range_is_named(value, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(claims, "measure", lambda *a: pytest.fail("it ran"))
    with pytest.raises(SystemExit) as exc:
        claims.main(["--profile", "smoke", "--out", str(tmp_path), "--threads", value])
    assert exc.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "error:" in error and "--threads" in error
