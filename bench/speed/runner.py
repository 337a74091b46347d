"""Running a plan: every group of cases measured, summarised and written before the next one.

A group is the cases that differ only in their cell (`bench.speed.cases.groups`). Per group:
an N/A entry for each implementation that cannot run a case; for the others, the
fresh-process measurement (first call, peak memory: one process at a time, so none disturbs
another or the timing), then the timing of every (implementation, cell) of the group
interleaved in the same worker processes (`bench.speed.timing`), so that both the ratio to
the baseline and the GRU/LSTM ratio are taken within one run; then the statistics,
throughput, GFLOP/s against the GEMM peak of this run, and the ratio of medians against the
baseline implementation. A batch-1 CPU case also gets the cache-streaming limit of its
weights on its threads, measured just before its timing and just after
(`bench.speed.stream_limit`). The group's records are written together.
"""

from __future__ import annotations

import dataclasses

import impls
from bench.speed import costs, fresh_process, gemm_peak, stats, stream_limit, timing
from bench.speed.cases import Case, Plan, groups
from bench.speed.results import RunFile
from bench.workload import unsupported_reason
from impls import GATES


def peak_key(case: Case) -> str:
    """The GEMM peak a case is held to: its device, dtype and core budget."""
    return f"{case.device}/{case.dtype}/t{case.threads}"


def case_unsupported(impl_name: str, case: Case) -> str | None:
    """Why `impl_name` cannot run `case` (an N/A entry), or None when it can."""
    return unsupported_reason(impls.get(impl_name), case.cell, case.mode, case.dtype,
                              case.device, layers=case.layers,
                              bidirectional=case.bidirectional, lengths=case.lengths)


def _summarise(entry: dict, case: Case, flops: int, peak: dict | None, seed: int) -> None:
    entry["time"] = summary = stats.summarize(entry["samples_s"], seed=seed)
    median = summary["median"]
    entry["tokens_per_s"] = case.tokens / median
    entry["gflops"] = flops / median / 1e9
    entry["peak_fraction"] = entry["gflops"] / peak["gflops"] if peak else None


def _ratios(entries: dict, baseline: str, seed: int) -> None:
    base = entries.get(baseline)
    for entry in entries.values():
        if entry["status"] != "ok":
            continue
        if base is None or base["status"] != "ok":
            why = "not in this run" if base is None else f"{baseline} is {base['status']} here"
            entry["ratio"] = {"baseline": baseline, "unavailable": why}
        else:
            entry["ratio"] = {"baseline": baseline, **stats.ratio_of_medians(
                entry["samples_s"], base["samples_s"], seed=seed)}


def fresh_elsewhere(case: Case, plan: Plan) -> Case | None:
    """The case of the plan whose fresh-process measurement stands for `case`'s, if any.

    Peak memory is the layer's, whatever its core budget, and the first call is mostly
    compilation: both are taken once per setting, at the largest core budget the plan has.
    """
    same = [c for c in plan.cases
            if c.threads > case.threads and dataclasses.replace(c, threads=case.threads) == case]
    return max(same, key=lambda c: c.threads) if same else None


def label(impl_name: str, case: Case) -> str:
    """A workload's name within its group."""
    return f"{impl_name} {case.cell}"


def has_stream_limit(case: Case) -> bool:
    """Whether a case is held to the cache-streaming limit: batch 1 on a CPU, one layer in one
    direction, weights of a dtype a CPU kernel streams."""
    return (case.device == "cpu" and case.B == 1 and not case.variant
            and case.dtype in stream_limit.ITEMSIZE)


def _stream_limit(case: Case, progress, before: dict | None = None) -> dict:
    """The streaming limit of a case's W_hh on its threads, or why it could not be measured.

    Taken just before the case's timing and again just after (`before`: the first): the
    machine's speed drifts while a case is timed, and a limit is the best it did.
    """
    if progress:
        progress.show(f"{case.key}: cache-streaming limit")
    nbytes = stream_limit.weight_bytes(GATES[case.cell], case.H, case.dtype)
    try:
        limit = stream_limit.measure(nbytes, case.threads, case.dtype)
    except Exception as exc:  # recorded; the run goes on without it
        return {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    if before is not None and before["status"] == "ok":
        samples = before["samples_s"] + limit["samples_s"]
        best = min(samples)
        limit = {**limit, "samples_s": samples, "pass_s": best,
                 "gb_per_s": limit["per_thread_bytes"] * case.threads / best / 1e9}
    return {"status": "ok", "streams": 2 if case.mode == "training" else 1, **limit}


def measure_group(cases: list[Case], plan: Plan, peaks: dict, progress=None) -> list[dict]:
    """The results records of one group of cases (schema in `bench.speed.results`)."""
    entries: dict[str, dict[str, dict]] = {case.key: {} for case in cases}
    runnable: dict[str, tuple[str, Case]] = {}
    for case in cases:
        for name in plan.implementations_of(case):
            reason = case_unsupported(name, case)
            if reason is None:
                runnable[label(name, case)] = (name, case)
            else:
                entries[case.key][name] = {"status": "n/a", "reason": reason}

    fresh: dict[str, dict | None] = {}
    for key, (name, case) in runnable.items():
        shared = fresh_elsewhere(case, plan)
        if not plan.fresh_process:
            fresh[key] = None
        elif shared is not None:
            fresh[key] = {"status": "measured with", "case": shared.key}
        else:
            if progress:
                progress.show(f"{case.key} {name}: fresh process")
            fresh[key] = fresh_process.measure(case, name, seed=plan.seed,
                                               plugins=plan.plugins,
                                               budget_s=plan.timing.budget_s)

    limits = {case.key: _stream_limit(case, progress) for case in cases if has_stream_limit(case)}
    timed = timing.time_group(runnable, plan.timing, seed=plan.seed, plugins=plan.plugins,
                              baseline=plan.baseline, progress=progress)
    by_key = {case.key: case for case in cases}
    limits = {key: _stream_limit(by_key[key], progress, before) for key, before in limits.items()}
    for key, (name, case) in runnable.items():
        entry = timed[key]
        if entry["status"] == "ok":
            _summarise(entry, case, costs.flops(case),
                       peaks.get(peak_key(case)), plan.seed)
        entry["fresh_process"] = fresh[key]
        entries[case.key][name] = entry
    records = []
    for case in cases:
        _ratios(entries[case.key], plan.baseline, plan.seed)
        record = {"key": case.key, "group": case.group, "case": case.to_dict(),
                  "flops": costs.flops(case), "must_keep_bytes": costs.must_keep_bytes(case),
                  "implementations": {name: entries[case.key][name]
                                      for name in plan.implementations_of(case)}}
        if case.key in limits:
            record["stream_limit"] = limits[case.key]
        records.append(record)
    return records


def _measure_peaks(run_file: RunFile, cases: list[Case], progress) -> None:
    plan = run_file.plan
    peaks = run_file.data["gemm_peak"]
    for case in cases:
        key = peak_key(case)
        if key in peaks:
            continue
        if not any(case_unsupported(n, case) is None for n in plan.implementations_of(case)):
            continue
        if progress:
            progress.show(f"GEMM peak {key}")
        peaks[key] = gemm_peak.measure(case.device, case.dtype, case.threads)
    run_file.save()


def run(run_file: RunFile, environment: dict, progress=None) -> RunFile:
    """Measure the run's remaining groups, saving after each; a killed run resumes here."""
    run_file.start_session(environment)
    remaining = run_file.remaining()
    _measure_peaks(run_file, remaining, progress)
    plan = run_file.plan
    if progress:
        progress.start()
    for group in groups(remaining):
        run_file.add_cases(measure_group(group, plan, run_file.data["gemm_peak"], progress))
        if progress:
            progress.advance(group[0].group, len(group))
    run_file.finish_session()
    return run_file
