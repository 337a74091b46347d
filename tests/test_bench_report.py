"""The report and its figures from a small hand-made results file with known samples."""

import pytest

from bench.report import markdown as report
from bench.report import targets
from bench.speed import costs, results, stats
from bench.speed.cases import QUICK_TIMING, Case, Plan

FAST = [1.0e-3, 1.1e-3, 0.9e-3, 1.0e-3, 1.05e-3]
IMPLS = ["fast", "slow", "reference", "broken"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def per_process(samples):
    """The samples as three worker processes would give them (in another order each)."""
    return [samples, samples[::-1], samples[1:] + samples[:1]]


def entry(samples, case, baseline_samples, peak_factor):
    samples, baseline_samples = per_process(samples), per_process(baseline_samples)
    median = stats.summarize(samples)["median"]
    must_keep = costs.must_keep_bytes(case)
    return {
        "status": "ok", "first_call_s": 0.5, "warmup_s": [s[:3] for s in samples],
        "steady": True, "threads": {"torch": case.threads, "numba": case.threads},
        "samples_s": samples, "autograd_node": "MkldnnRnnLayerBackward0",
        "time": stats.summarize(samples), "tokens_per_s": case.tokens / median,
        "gflops": costs.flops(case) / median / 1e9, "peak_fraction": 0.01,
        "ratio": {"baseline": "fast", **stats.ratio_of_medians(samples, baseline_samples)},
        "fresh_process": {"status": "ok", "first_call_s": 0.25,
                          "first_call_peak_bytes": int(2 * peak_factor * must_keep),
                          "peak_bytes": int(peak_factor * must_keep),
                          "memory_calls": 3, "memory_settled": True,
                          "memory_method": "peak RSS increase"},
    }


def record(case):
    scale = 0.75 if case.cell == "gru" else 1.0
    fast = [s * scale * case.H / 8 * case.T / 10 for s in FAST]
    slow = [2 * s for s in fast]
    return {
        "key": case.key, "group": case.group, "case": case.to_dict(),
        "flops": costs.flops(case),
        "must_keep_bytes": costs.must_keep_bytes(case),
        "implementations": {
            "fast": entry(fast, case, fast, 2.0),
            "slow": entry(slow, case, fast, 3.0),
            "reference": {"status": "n/a", "reason": "no float32 support (has float64)"},
            "broken": {"status": "failed", "reason": "exception",
                       "message": "RuntimeError: boom", "fresh_process": None},
        },
    }


def write_run(tmp_path, measured, unfinished=()):
    """A results file holding `record(case)` for each measured case."""
    plan = Plan(profile="fixture", cases=[*measured, *unfinished], implementations=IMPLS,
                baseline="fast", timing=QUICK_TIMING, fresh_process=True)
    run = results.RunFile.create(results.run_path(tmp_path, "fixture-run"), "fixture-run", plan)
    environment = {
        "date": "2025-01-01T00:00:00+00:00", "command": ["python", "-m", "bench"],
        "python": "3.11", "platform": "Linux", "cpu": "Test CPU", "cpu_capability": "AVX2",
        "cores": {"logical": 2, "usable": 2}, "load_average": [0.1, 0.2, 0.3],
        "threads": {"torch": 1, "torch_interop": 1, "numba": 2, "environment": {}},
        "versions": {"torch": "2.x"}, "onednn": {"available": True, "enabled": True},
        "blas": "mkl", "cuda": {"available": False, "version": None, "cudnn": None, "gpus": []},
        "git": {"commit": "abc123", "dirty": False}, "python_implementation": "CPython",
    }
    run.data["sessions"] = [{"started": "2025-01-01T00:00:00+00:00", "finished": None,
                             "environment": environment}]
    run.data["gemm_peak"] = {"cpu/float32/t2": {"gflops": 100.0, "n": 1024, "per_size": {}},
                             "cpu/float32/t1": {"gflops": 50.0, "n": 1024, "per_size": {}}}
    run.data["cases"] = [record(c) for c in measured]
    run.save()
    return run.path


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    measured = [Case(cell, "inference", T=10, B=4, I=H, H=H, threads=threads)
                for threads in (2, 1) for cell in ("lstm", "gru") for H in (8, 16)]
    measured += [Case("lstm", "training", T=T, B=4, I=8, H=8, threads=2) for T in (10, 20)]
    measured += [Case(cell, "training", T=10, B=4, I=8, H=8, threads=2, layers=2,
                      bidirectional=True, lengths="uniform:0.5") for cell in ("lstm", "gru")]
    unfinished = Case("lstm", "training", T=40, B=4, I=8, H=8, threads=2)
    return write_run(tmp_path_factory.mktemp("results"), measured, [unfinished])


@pytest.fixture(scope="module")
def text(results_file):
    """The report, written once (figures take seconds) beside the results file."""
    path = report.write(results_file)
    assert path == results_file.parent / "REPORT.md"
    return path.read_text()


def table_row(text, impl, first_cell, section="## lstm inference, 2 cores (all) (cpu, float32)"):
    text = text[text.index(section):]
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 6 and cells[5] == impl and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row for {impl} starting with {first_cell!r}")


def test_report_tables_ratios_na_and_failures(text):
    assert text.startswith("# rnnbench results: fixture-run")
    assert "**Incomplete run: 12 of 13 cases.**" in text
    assert "## lstm inference, 2 cores (all) (cpu, float32)" in text
    assert "## gru inference, 1 core (cpu, float32)" in text
    assert "cpu/float32/t2: 100.0 GFLOP/s (n = 1024)" in text
    assert text.index("cores (all)") < text.index(", 1 core")  # all cores first
    assert "| git commit | abc123 |" in text

    fast = table_row(text, "fast", "10")
    assert fast[:4] == ["10", "4", "8", "8"]
    assert fast[6] == "oneDNN (MkldnnRnnLayerBackward0)"
    assert fast[7].startswith("1 [")                   # median 1 ms
    assert fast[9] == "15/3"                           # samples / processes
    assert fast[10].startswith("1.00 [")               # itself
    peak_mib = 2 * costs.must_keep_bytes(Case("lstm", "inference", 10, 4, 8, 8)) / 2 ** 20
    assert fast[13] == f"{peak_mib:.3g} (2.00×)"
    assert fast[14] == "250"                           # fresh-process first call, ms
    assert fast[15] == "2/2"                           # threads that ran: torch/numba
    slow = table_row(text, "slow", "")
    assert slow[10].startswith("2.00 [")
    na = table_row(text, "reference", "")
    assert na[7] == "N/A: no float32 support (has float64)"
    assert set(na[8:]) == {"–"}                        # N/A never shows a number
    broken = table_row(text, "broken", "")
    assert broken[7] == "failed (exception): RuntimeError: boom"
    assert ("| lstm/inference/T10/B4/I8/H8/float32/cpu/t2 | broken | timing | exception |"
            in text)


def section_rows(text, heading):
    """The cells of every data row of the table under `heading`."""
    section = text[text.index(heading) + len(heading):]
    section = section[:section.find("\n#")] if "\n#" in section else section
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_stacked_bidirectional_and_variable_length_cases_have_their_own_tables(text):
    plain = section_rows(text, "## lstm training, 2 cores (all) (cpu, float32)")
    assert [row[0] for row in plain if row[0]] == ["10", "20"]  # the one-layer, full-length
    assert text.index("## Stacked, bidirectional and variable-length layers") < text.index(
        "### training, 2 cores (all) (cpu, float32)")
    rows = section_rows(text, "### training, 2 cores (all) (cpu, float32)")
    assert [row[:2] for row in rows if row[0]] == [["gru", "L2 bi len U[0.5T,T]"],
                                                   ["lstm", "L2 bi len U[0.5T,T]"]]
    case = Case("lstm", "training", T=10, B=4, I=8, H=8, threads=2, layers=2,
                bidirectional=True, lengths="uniform:0.5")
    fast, slow = rows[4], rows[5]
    assert fast[2:8] == ["10", "4", "8", "8", f"{costs.must_keep_bytes(case) / 2 ** 20:.3g}",
                         "fast"]
    assert slow[7] == "slow" and slow[12].startswith("2.00 [")  # × the baseline, in the case
    median = record(case)["implementations"]["fast"]["time"]["median"]
    assert fast[13] == report._si(case.tokens / median)  # real tokens only


def test_the_report_opens_with_the_fastest_kernel_per_case(text):
    assert text.index("## Which kernel here?") < text.index("## Environment")
    assert ("| 2 cores (all) | lstm | inference | 10 | 4 | 8 | 8 | **fast** 1 ms | slow 2.00× "
            "slower [") in text
    assert "| 2 cores (all) | gru L2 bi len U[0.5T,T] | training | 10 | 4 | 8 | 8 | **fast**" in (
        text)


def test_the_report_names_the_latency_and_throughput_leaders(tmp_path):
    measured = [Case(cell, "inference", T=10, B=B, I=8, H=8, threads=threads)
                for threads in (2, 1) for cell in ("lstm", "gru") for B in (1, 4, 64)]
    text = report.render(results.RunFile.load(write_run(tmp_path, measured)).data, [],
                         tmp_path, tmp_path / "results.json")
    rows = section_rows(text, "## Leaders")
    assert text.index("## Leaders") < text.index("## Which kernel here?")
    # All cores, batch 1 and 64 only, one row each per cell and mode measured there.
    assert [row[:4] for row in rows] == [
        ["gru", "inference", "lowest latency, B=1", "T=10, I=8, H=8"],
        ["gru", "inference", "highest throughput, B=64", "T=10, I=8, H=8"],
        ["lstm", "inference", "lowest latency, B=1", "T=10, I=8, H=8"],
        ["lstm", "inference", "highest throughput, B=64", "T=10, I=8, H=8"]]
    case = Case("lstm", "inference", T=10, B=64, I=8, H=8, threads=2)
    median = record(case)["implementations"]["fast"]["time"]["median"]
    assert rows[3][4] == f"**fast** {report._si(case.tokens / median)} tokens/s"
    assert rows[3][5].startswith("slow 2.00× slower [")


def test_every_implementation_is_tabled_side_by_side_where_most_are_timed(tmp_path):
    measured = [Case(cell, mode, T=10, B=B, I=H, H=H, threads=2) for H in (8, 16)
                for cell in ("lstm", "gru") for mode in ("inference", "training")
                for B in (1, 64)]
    data = results.RunFile.load(write_run(tmp_path, measured)).data
    peer = {"status": "ok", **{k: v for k, v in record(measured[0])["implementations"][
        "slow"].items() if k != "status"}}
    for r in data["cases"]:
        if r["case"]["H"] == 16:  # a peer timed at this shape only, inference only
            r["implementations"]["peer"] = (dict(peer) if r["case"]["mode"] == "inference"
                                            else {"status": "n/a", "reason": "not trainable"})
    text = report.render(data, [], tmp_path, tmp_path / "results.json")
    assert "T=10, I=16, H=16, on all cores" in text
    rows = section_rows(text, "## Every implementation side by side")
    assert [row[0] for row in rows] == ["broken", "", "fast", "", "peer", "", "slow", ""]
    assert [row[1] for row in rows] == ["time × fast", "first call ms"] * 4
    assert len(rows[0]) == 2 + 8           # 2 cells x 2 modes x 2 batch sizes
    assert rows[0][2:] == ["failed (exception)"] * 8
    assert rows[3][2:] == ["250"] * 8      # the fresh process's first call, in ms
    slow = rows[6][2]
    assert slow.startswith("2.00 [")
    assert rows[4][2:] == [slow] * 2 + ["N/A"] * 2 + [slow] * 2 + ["N/A"] * 2


def test_gru_lstm_ratio_is_tabled_beside_the_flop_ratio(text):
    assert "## GRU / LSTM time ratio" in text
    assert "| cpu | float32 | 2 | inference | 10 | 4 | 8 | 8 | – | fast | 0.75 [" in text
    assert "| cpu | float32 | 1 | inference | 10 | 4 | 16 | 16 | – | slow | 0.75 [" in text
    assert ("| cpu | float32 | 2 | training | 10 | 4 | 8 | 8 | L2 bi len U[0.5T,T] | fast | "
            "0.75 [") in text


def test_figures_are_drawn_and_linked(results_file, text):
    figures = results_file.parent / "figures"
    names = sorted(p.name for p in figures.iterdir())
    assert names == ["gru_lstm_ratio-cpu-float32-t1.png", "gru_lstm_ratio-cpu-float32-t2.png",
                     "memory_vs_T-cpu-float32-t2.png", "throughput_vs_H-cpu-float32-t1.png",
                     "throughput_vs_H-cpu-float32-t2.png"]  # one B per context: no B sweep
    for name in names:
        assert (figures / name).read_bytes()[:8] == PNG_MAGIC
        assert f"(figures/{name})" in text


def _numba_against_torch(case, over_limit):
    """A record where numba takes twice torch's time, and its step is `over_limit` times the
    streaming limit measured with the case."""
    r = record(case)
    torch_entry, numba_entry = r["implementations"]["fast"], r["implementations"]["slow"]
    r["implementations"] = {"torch": torch_entry, "numba": numba_entry}
    streams = 2 if case.mode == "training" else 1
    step = numba_entry["time"]["median"] / case.T
    r["stream_limit"] = {"status": "ok", "bytes": 2 ** 20, "threads": case.threads,
                         "per_thread_bytes": 2 ** 20 // case.threads,
                         "pass_s": step / over_limit / streams, "gb_per_s": 50.0,
                         "samples_s": [step / over_limit / streams], "streams": streams}
    return r


def test_batch_1_steps_are_set_against_the_streaming_limit_and_judged():
    records = [_numba_against_torch(Case(cell, mode, T=100, B=1, I=256, H=256, threads=2),
                                    1.5 if mode == "inference" else 4.0)
               for cell in ("lstm", "gru") for mode in ("inference", "training")]
    lines = report._limit_table(records)
    assert lines[0] == "## Batch 1 against the cache-streaming limit"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| lstm inference")]
    assert [row[5] for row in rows] == ["torch", "numba"]
    assert rows[1][7] == "1.50" and rows[0][7] == "0.75"      # torch: half numba's time
    judged = {row["target"]: row for row in targets.evaluate(records)}
    limit = judged["LSTM forward, B=1, I=256 H=256, 2 thread(s)"]
    assert limit["against"] == "streaming limit" and limit["met"] is True
    assert limit["measured"] == pytest.approx(1.5)
    assert judged["GRU forward+backward, B=1, I=256 H=256, 2 thread(s)"]["met"] is False
    speed = judged["LSTM forward, B=1, I=H=256, 2 thread(s)"]
    assert speed["bound"] == "<= 0.5x" and speed["measured"] == pytest.approx(2.0, rel=0.05)
    assert speed["met"] is False
    # 0.5x torch is a step of 0.5 torch-steps; the limit is numba's step / 1.5 = 1.33 of them.
    assert speed["unreachable"] and targets.UNREACHABLE in speed["detail"]
    training = judged["GRU forward+backward, B=1, I=H=256, 2 thread(s)"]
    assert training["bound"] == "<= 0.6x" and training["met"] is False
    # 0.6x torch is 0.6 torch-steps; the limit (two reads) numba's step / 4 = 0.5 of them.
    assert not training["unreachable"] and targets.UNREACHABLE not in training["detail"]
    table = "\n".join(targets.markdown(records))
    assert "2 ask(s) for a batch-1 step faster than the streaming limit" in table
    without = [dict(r, stream_limit={"status": "failed", "message": "x"}) for r in records]
    assert report._limit_table(without) == []
    assert not any(row["against"] == "streaming limit" for row in targets.evaluate(without))
