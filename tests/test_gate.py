"""The regression gate's statistics, decisions, table and exit code, on made-up samples.

Nothing here times anything: the measuring is replaced by fixed samples, and every p-value is
checked against an exact permutation count done here, independently of scipy.
"""

import itertools
import math
import subprocess
import sys

import pytest
import torch

import impls
from bench.gate import run as gate
from bench.gate import worker as gate_worker


def exact_p_greater(head, base):
    """P(U >= observed) over all equally likely splits of the pooled samples (no ties)."""
    def u(xs, ys):
        return sum(x > y for x in xs for y in ys)

    pooled = head + base
    observed = u(head, base)
    splits = list(itertools.combinations(range(len(pooled)), len(head)))
    extreme = 0
    for chosen in splits:
        xs = [pooled[i] for i in chosen]
        ys = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        extreme += u(xs, ys) >= observed
    return extreme / len(splits)


BASE = [1.00, 1.02, 0.98, 1.01, 0.99]


def test_holm_matches_hand_computed_values():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.04, 0.06) = 0.06
    assert gate.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert gate.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_clear_slowdown_is_a_regression_with_exact_p():
    head = [x * 1.25 for x in BASE]
    (v,) = gate.compare({"a": BASE}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.verdict == gate.REGRESSION
    assert v.ratio == pytest.approx(1.25)
    assert v.p_slower == pytest.approx(1 / math.comb(10, 5))
    assert v.p_slower == pytest.approx(exact_p_greater(head, BASE))


def test_significant_but_small_slowdown_passes():
    head = [x * 1.05 + 0.04 for x in BASE]  # every head sample above every base sample
    (v,) = gate.compare({"a": BASE}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.p_slower == pytest.approx(1 / math.comb(10, 5))
    assert v.ratio < 1.1
    assert v.verdict == gate.SAME


def test_large_but_not_significant_slowdown_passes():
    base = [1.0, 2.0, 3.0, 4.0, 5.0]
    head = [1.5, 2.5, 3.5, 4.5, 20.0]
    (v,) = gate.compare({"a": base}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.ratio == pytest.approx(3.5 / 3.0)
    assert v.p_slower == pytest.approx(exact_p_greater(head, base))
    assert v.p_slower > 0.05
    assert v.verdict == gate.SAME


def test_clear_speedup_is_reported_faster():
    head = [x * 0.8 for x in BASE]
    (v,) = gate.compare({"a": BASE}, {"a": head}, alpha=0.05, min_factor=1.1)
    assert v.verdict == gate.FASTER
    assert v.p_faster == pytest.approx(1 / math.comb(10, 5))


def test_holm_correction_spares_many_weak_cases():
    # Four separated cases of 4 samples each: raw p = 1/70 < 0.05, but Holm multiplies by 4.
    base = [1.0, 1.01, 0.99, 1.02]
    head = [x * 1.3 for x in base]
    samples_b = {f"c{i}": base for i in range(4)}
    samples_h = {f"c{i}": head for i in range(4)}
    verdicts = gate.compare(samples_b, samples_h, alpha=0.05, min_factor=1.1)
    assert all(v.p_slower == pytest.approx(1 / 70) for v in verdicts)
    assert all(v.p_slower_holm == pytest.approx(4 / 70) for v in verdicts)
    assert all(v.verdict == gate.SAME for v in verdicts)
    (alone,) = gate.compare({"c0": base}, {"c0": head}, alpha=0.05, min_factor=1.1)
    assert alone.verdict == gate.REGRESSION


def test_only_cases_measured_on_both_sides_are_compared():
    verdicts = gate.compare({"a": BASE, "old": BASE}, {"a": BASE, "new": BASE}, alpha=0.05,
                            min_factor=1.1)
    assert [v.case for v in verdicts] == ["a"]


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0, "min_factor": 1.1}, "alpha must be in"),
    ({"alpha": 0.05, "min_factor": 0.9}, "min_factor must be >= 1"),
])
def test_bad_thresholds_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gate.compare({"a": BASE}, {"a": BASE}, **kwargs)


def test_a_single_sample_is_rejected():
    with pytest.raises(ValueError, match="'a': the base side needs at least 2 samples, got 1"):
        gate.compare({"a": [1.0]}, {"a": BASE}, alpha=0.05, min_factor=1.1)


def test_table_lists_every_case_and_the_rule():
    slower = [b * 1.25 for b in BASE]
    verdicts = gate.compare({"x/lstm/inference": BASE}, {"x/lstm/inference": slower},
                            alpha=0.05, min_factor=1.1)
    table = gate.format_table(verdicts, {"y/gru/training": "head: no backward pass"},
                              alpha=0.05, min_factor=1.1)
    lines = table.splitlines()
    assert lines[0].split() == ["case", "base", "ms", "head", "ms", "head/base", "p", "slower",
                                "(Holm)", "verdict"]
    row = lines[2].split()
    assert row[0] == "x/lstm/inference"
    assert float(row[1]) == pytest.approx(1000.0)  # median of BASE, in ms
    assert float(row[2]) == pytest.approx(1250.0)
    assert row[3] == "1.250"
    assert row[-1] == gate.REGRESSION
    assert "y/gru/training: n/a (head: no backward pass)" in lines
    assert "p < 0.05 and head/base >= 1.1" in lines[-1]


@pytest.fixture
def two_commit_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "--quiet"], check=True)
    for i in range(2):
        (repo / "file.txt").write_text(str(i))
        subprocess.run(git + ["add", "file.txt"], check=True)
        subprocess.run(git + ["commit", "--quiet", "-m", f"c{i}"], check=True)
    return repo


@pytest.mark.parametrize("factor, expected_exit", [(1.3, 1), (1.0, 0)])
def test_exit_code_follows_the_verdict(monkeypatch, capsys, two_commit_repo, factor,
                                       expected_exit):
    seen_trees = []

    def fixed_samples(trees, spec, rounds, blocks, timeout, log=None):
        seen_trees.append(dict(trees))
        return ({"base": {"impl/lstm/inference": BASE},
                 "head": {"impl/lstm/inference": [b * factor for b in BASE]}}, {})

    monkeypatch.setattr(gate, "collect", fixed_samples)
    code = gate.main(["--repo", str(two_commit_repo), "--quiet"])
    out = capsys.readouterr().out
    assert code == expected_exit
    assert ("gate: FAIL, regression in impl/lstm/inference" in out) == (expected_exit == 1)
    # base: a temporary worktree of HEAD~1; head: the repository's own working tree
    (trees,) = seen_trees
    assert trees["head"] == two_commit_repo
    assert trees["base"] != two_commit_repo
    assert not trees["base"].exists()  # removed again


def test_unknown_base_exits_2_naming_the_ref(capsys, two_commit_repo):
    assert gate.main(["--repo", str(two_commit_repo), "--base", "no-such-ref", "--quiet"]) == 2
    assert "'no-such-ref' is not a commit" in capsys.readouterr().err


def test_bad_shape_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gate.main(["--shape", "32,16"])
    assert exit_info.value.code == 2
    assert "expected T,B,H as three positive ints, got '32,16'" in capsys.readouterr().err


def test_worker_case_selection_follows_the_registry():
    impls.register(impls.Implementation(
        name="gate-test-forward-only", factory=lambda *a: None, cells=frozenset({"lstm"}),
        devices=frozenset({"cpu"}), dtypes=frozenset({torch.float32}), trainable=False))
    try:
        spec = {"impls": ["gate-test-forward-only", "reference", "not-there"],
                "cells": ["lstm", "gru"], "modes": ["inference", "training"]}
        runnable, missing = gate_worker._cases(impls, spec, torch.float32)
    finally:
        impls.unregister("gate-test-forward-only")
    assert [case for case, *_ in runnable] == ["gate-test-forward-only/lstm/inference"]
    assert missing["gate-test-forward-only/lstm/training"] == "no backward pass"
    assert missing["gate-test-forward-only/gru/inference"].startswith("gru on cpu")
    assert missing["reference/lstm/inference"] == "lstm on cpu in torch.float32 unsupported"
    assert missing["not-there/gru/training"] == "not registered"
    assert len(missing) == 2 * 2 * 3 - 1


def test_gate_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "bench.gate.run", "--help"], capture_output=True,
                          text=True, check=True)
    assert "--min-factor" in done.stdout
