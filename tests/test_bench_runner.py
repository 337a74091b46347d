"""bench.speed.runner: a case's record (N/A, failures, metrics, ratios, kernel) and resuming."""

import dataclasses
import functools

import numpy as np
import pytest
import rnnbench_test_impls
import torch

from bench.speed import costs, gemm_peak, results, runner, stream_limit
from bench.speed.cases import Case, Plan, Timing

FAST = Timing(target_s=0.001, min_repeats=3, max_repeats=3, warmup_max_s=0.001, budget_s=60.0,
              workers=1)
PLUGIN = rnnbench_test_impls.__name__


@pytest.fixture(autouse=True)
def registered(test_impls):
    """N/A decisions are the parent's: it must know the test implementations too."""
#: Implementations that raise, support only float64, or cannot train (tests/plugins).
BROKEN = ["test-raises", "test-float64", "test-forward-only"]


def plan_for(case_list, names, baseline="torch"):
    return Plan(profile="test", cases=list(case_list), implementations=names,
                baseline=baseline, timing=FAST, fresh_process=False, plugins=[PLUGIN])


def test_a_case_record_holds_metrics_failures_and_na():
    case = Case("lstm", "training", T=4, B=2, I=3, H=5)
    names = ["torch", "torch-native", *BROKEN]
    peaks = {"cpu/float32/t1": {"gflops": 100.0, "n": 256}}
    [record] = runner.measure_group([case], plan_for([case], names), peaks)

    assert record["key"] == case.key and record["group"] == case.group
    assert record["flops"] == costs.flops(case)
    assert record["must_keep_bytes"] == costs.must_keep_bytes(case)
    assert list(record["implementations"]) == names
    entries = record["implementations"]

    torch_entry = entries["torch"]
    median = torch_entry["time"]["median"]
    assert torch_entry["status"] == "ok" and torch_entry["time"]["n"] == 3
    assert torch_entry["tokens_per_s"] == pytest.approx(4 * 2 / median)
    assert torch_entry["gflops"] == pytest.approx(costs.flops(case) / median / 1e9)
    assert torch_entry["peak_fraction"] == pytest.approx(torch_entry["gflops"] / 100.0)
    assert torch_entry["ratio"]["ratio"] == 1.0
    native_entry = entries["torch-native"]
    assert native_entry["ratio"]["ratio"] == pytest.approx(
        native_entry["time"]["median"] / median)
    assert native_entry["fresh_process"] is None

    assert entries["test-raises"]["status"] == "failed"
    assert entries["test-raises"]["reason"] == "exception"
    assert "broken kernel" in entries["test-raises"]["message"]
    assert entries["test-float64"] == {"status": "n/a",
                                       "reason": "no float32 support (has float64)"}
    assert entries["test-forward-only"] == {"status": "n/a",
                                            "reason": "not trainable (no backward pass)"}


def test_a_stacked_bidirectional_variable_length_group_is_measured_on_its_real_tokens():
    group = [Case(cell, "training", T=6, B=4, I=3, H=5, layers=2, bidirectional=True,
                  lengths="uniform:0.5") for cell in ("lstm", "gru")]
    plan = dataclasses.replace(plan_for(group, ["torch", "torch-native"]), fresh_process=True)
    for case, record in zip(group, runner.measure_group(group, plan, {})):
        assert record["case"] == case.to_dict() and record["flops"] == costs.flops(case)
        assert record["must_keep_bytes"] == costs.must_keep_bytes(case)
        for entry in record["implementations"].values():  # outputs agreed with torch's
            assert entry["status"] == "ok" and entry["fresh_process"]["status"] == "ok"
            assert case.tokens < case.T * case.B
            assert entry["tokens_per_s"] == pytest.approx(case.tokens / entry["time"]["median"])


def test_the_kernel_that_ran_is_recorded():
    # PyTorch sends a float32 CPU LSTM to oneDNN where it has it, never a GRU; torch-native
    # switches oneDNN off.
    plan = plan_for([], ["torch", "torch-native"])
    [lstm] = runner.measure_group([Case("lstm", "training", 3, 2, 4, 4)], plan, {})
    [gru] = runner.measure_group([Case("gru", "inference", 3, 2, 4, 4)], plan, {})
    onednn = torch.backends.mkldnn.is_available()
    assert lstm["implementations"]["torch"]["autograd_node"].startswith("Mkldnn") is onednn
    assert not lstm["implementations"]["torch-native"]["autograd_node"].startswith("Mkldnn")
    assert not gru["implementations"]["torch"]["autograd_node"].startswith("Mkldnn")


def test_a_group_is_timed_together_and_written_per_case():
    group = [Case(cell, "inference", T=3, B=2, I=4, H=4) for cell in ("lstm", "gru")]
    records = runner.measure_group(group, plan_for(group, ["torch", "torch-native"]), {})
    assert [r["key"] for r in records] == [c.key for c in group]
    assert {r["group"] for r in records} == {group[0].group}
    for r in records:
        assert all(e["status"] == "ok" for e in r["implementations"].values())


def test_a_narrowed_case_times_and_records_only_its_implementations():
    group = [Case(cell, "inference", T=3, B=2, I=4, H=4) for cell in ("lstm", "gru")]
    plan = dataclasses.replace(plan_for(group, ["torch", "torch-native", "scripted"]),
                               narrowed={group[1].key: ["torch", "scripted"]})
    lstm, gru = runner.measure_group(group, plan, {})
    assert list(lstm["implementations"]) == ["torch", "torch-native", "scripted"]
    assert list(gru["implementations"]) == ["torch", "scripted"]
    assert all(e["status"] == "ok" for r in (lstm, gru) for e in r["implementations"].values())


def test_ratios_are_unavailable_when_the_baseline_failed():
    case = Case("gru", "inference", T=3, B=2, I=4, H=4)
    [record] = runner.measure_group([case], plan_for([case], ["torch", "test-raises"],
                                                     baseline="test-raises"), {})
    assert record["implementations"]["torch"]["ratio"] == {
        "baseline": "test-raises", "unavailable": "test-raises is failed here"}
    assert record["implementations"]["torch"]["peak_fraction"] is None


def test_a_killed_run_keeps_its_cases_and_resumes(tmp_path, monkeypatch):
    case_list = [Case(cell, "inference", T=3, B=2, I=4, H=H) for H in (4, 6, 8)
                 for cell in ("rnn_tanh", "gru")]
    plan = plan_for(case_list, ["torch", "torch-native"])
    monkeypatch.setattr(gemm_peak, "measure", functools.partial(
        gemm_peak.measure, sizes=(32, 64), seconds_per_size=0.01))
    path = results.run_path(tmp_path, "killed")
    run_file = results.RunFile.create(path, "killed", plan)

    measured = []
    real = runner.measure_group

    def killed_during_the_second_group(group, *args, **kwargs):
        measured.append(group)
        if len(measured) == 2:
            raise KeyboardInterrupt
        return real(group, *args, **kwargs)

    monkeypatch.setattr(runner, "measure_group", killed_during_the_second_group)
    with pytest.raises(KeyboardInterrupt):
        runner.run(run_file, {"session": 1})
    monkeypatch.setattr(runner, "measure_group", real)

    saved = results.RunFile.load(path)
    assert [r["key"] for r in saved.cases] == [c.key for c in case_list[:2]]
    assert saved.data["sessions"][0]["finished"] is None
    assert saved.remaining() == case_list[2:]
    first = saved.cases[:2]

    runner.run(saved, {"session": 2})
    final = results.RunFile.load(path)
    assert [r["key"] for r in final.cases] == [c.key for c in case_list]
    assert final.cases[:2] == first  # kept, not measured again
    assert [s["environment"] for s in final.data["sessions"]] == [{"session": 1},
                                                                  {"session": 2}]
    assert final.data["sessions"][1]["finished"] is not None
    assert set(final.data["gemm_peak"]) == {"cpu/float32/t1"}


def test_gemm_peak_reports_the_best_size():
    peak = gemm_peak.measure("cpu", "float32", 1, sizes=(16, 32), seconds_per_size=0.01)
    assert set(peak["per_size"]) == {"16", "32"}
    assert peak["gflops"] == max(peak["per_size"].values())
    assert peak["per_size"][str(peak["n"])] == peak["gflops"]


def test_the_fresh_process_is_measured_once_per_setting_at_the_most_cores():
    one, two = (Case("gru", "inference", T=3, B=2, I=4, H=4, threads=t) for t in (1, 2))
    plan = dataclasses.replace(plan_for([two, one], ["torch"]), fresh_process=True)
    [record] = runner.measure_group([one], plan, {})
    assert record["implementations"]["torch"]["fresh_process"] == {
        "status": "measured with", "case": two.key}
    assert runner.fresh_elsewhere(two, plan) is None


def test_the_stream_limit_reads_every_byte_and_keeps_the_best_round():
    share = np.arange(64 * 10, dtype=np.float32).reshape(64, 10)
    assert stream_limit._read(share, 3) == pytest.approx(3 * float(share.sum()))
    assert stream_limit.weight_bytes(4, 256, "float32") == 2 ** 20
    limit = stream_limit.measure(2 ** 16, 2, rounds=3, seconds_per_round=0.001)
    assert limit["threads"] == 2 and limit["bytes"] == 2 ** 16
    assert limit["per_thread_bytes"] == 2 ** 15
    assert len(limit["samples_s"]) == 3 and limit["pass_s"] == min(limit["samples_s"]) > 0
    assert limit["gb_per_s"] == pytest.approx(2 ** 16 / limit["pass_s"] / 1e9)
    with pytest.raises(ValueError, match="float16"):
        stream_limit.measure(2 ** 16, 1, "float16")
    with pytest.raises(ValueError, match="4 elements per thread"):
        stream_limit.measure(24, 2)


def test_a_batch_1_cpu_case_gets_the_stream_limit_of_its_weights(monkeypatch):
    calls = []

    def fake(nbytes, threads, dtype):
        calls.append((nbytes, threads, dtype))
        pass_s = 2e-6 if len(calls) <= 2 else 1e-6          # faster after the timing
        return {"bytes": nbytes, "threads": threads, "per_thread_bytes": nbytes // threads,
                "pass_s": pass_s, "gb_per_s": nbytes / pass_s / 1e9, "samples_s": [pass_s]}

    monkeypatch.setattr(stream_limit, "measure", fake)
    one = [Case(cell, "training", T=3, B=1, I=4, H=8) for cell in ("lstm", "gru")]
    lstm, gru = runner.measure_group(one, plan_for(one, ["torch"]), {})
    assert calls == [(4 * 8 * 8 * 4, 1, "float32"), (3 * 8 * 8 * 4, 1, "float32")] * 2
    assert lstm["stream_limit"]["streams"] == 2 and lstm["stream_limit"]["status"] == "ok"
    limit = lstm["stream_limit"]
    assert limit["samples_s"] == [2e-6, 1e-6]                    # before and after the timing
    assert limit["pass_s"] == 1e-6
    assert limit["gb_per_s"] == pytest.approx(4 * 8 * 8 * 4 / 1e-6 / 1e9)
    [batch_2] = runner.measure_group([Case("gru", "inference", T=3, B=2, I=4, H=8)],
                                     plan_for([Case("gru", "inference", T=3, B=2, I=4, H=8)],
                                              ["torch"]), {})
    assert "stream_limit" not in batch_2 and len(calls) == 4

    def failing(*args):
        raise RuntimeError("no CPUs")

    monkeypatch.setattr(stream_limit, "measure", failing)
    [record] = runner.measure_group(one[:1], plan_for(one[:1], ["torch"]), {})
    assert record["stream_limit"] == {"status": "failed", "message": "RuntimeError: no CPUs"}
    assert record["implementations"]["torch"]["status"] == "ok"
