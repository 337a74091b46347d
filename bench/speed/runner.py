"""Running a plan: every case measured, summarised and written before the next one starts.

Per case: an N/A entry for each implementation that cannot run it; for the others, the
fresh-process measurement (first call, peak memory: one process at a time, so none disturbs
another or the timing), then the in-run timing with the implementations interleaved; then
the statistics, throughput, GFLOP/s against the GEMM peak of this run, and the ratio of
medians against the baseline implementation, all taken within the case.
"""

from __future__ import annotations

import functools

import impls
from bench.progress import Progress
from bench.speed import costs, fresh_process, gemm_peak, stats
from bench.speed import timing as measure
from bench.speed.cases import Case, Plan
from bench.speed.results import RunFile
from bench.workload import Workload, unsupported_reason


def peak_key(device: str, dtype: str) -> str:
    return f"{device}/{dtype}"


def _summarise(entry: dict, case: Case, flops: int, peak: dict | None, seed: int) -> None:
    entry["time"] = summary = stats.summarize(entry["samples_s"], seed=seed)
    median = summary["median"]
    entry["tokens_per_s"] = case.T * case.B / median
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


def measure_case(case: Case, plan: Plan, peaks: dict, progress: Progress | None = None) -> dict:
    """The results record of one case (schema in `bench.speed.results`)."""
    entries: dict[str, dict] = {}
    runnable = []
    for name in plan.implementations:
        reason = unsupported_reason(impls.get(name), case)
        if reason is None:
            runnable.append(name)
        else:
            entries[name] = {"status": "n/a", "reason": reason}

    fresh: dict[str, dict | None] = {}
    for name in runnable:
        if progress:
            progress.show(f"{case.key} {name}: fresh process")
        fresh[name] = fresh_process.measure(
            case, name, seed=plan.seed, threads=plan.threads, plugins=plan.plugins,
            budget_s=plan.timing.budget_s) if plan.fresh_process else None

    if progress:
        progress.show(f"{case.key}: timing {', '.join(runnable)}")
    timed = measure.time_case(
        {name: functools.partial(Workload, case, name, plan.seed) for name in runnable},
        plan.timing, case.device)
    flops = costs.flops(case)
    peak = peaks.get(peak_key(case.device, case.dtype))
    for name in runnable:
        entry = timed[name]
        if entry["status"] == "ok":
            _summarise(entry, case, flops, peak, plan.seed)
        entry["fresh_process"] = fresh[name]
        entries[name] = entry
    _ratios(entries, plan.baseline, plan.seed)
    return {"key": case.key, "case": case.to_dict(), "flops": flops,
            "must_keep_bytes": costs.must_keep_bytes(case),
            "implementations": {name: entries[name] for name in plan.implementations}}


def _measure_peaks(run_file: RunFile, cases: list[Case], progress: Progress | None) -> None:
    plan = run_file.plan
    peaks = run_file.data["gemm_peak"]
    for case in cases:
        key = peak_key(case.device, case.dtype)
        if key in peaks:
            continue
        if not any(unsupported_reason(impls.get(n), case) is None for n in plan.implementations):
            continue
        if progress:
            progress.show(f"GEMM peak {key}")
        peaks[key] = gemm_peak.measure(case.device, case.dtype)
    run_file.save()


def run(run_file: RunFile, environment: dict, progress: Progress | None = None) -> RunFile:
    """Measure the run's remaining cases, saving after each; a killed run resumes here."""
    run_file.start_session(environment)
    remaining = run_file.remaining()
    _measure_peaks(run_file, remaining, progress)
    plan = run_file.plan
    if progress:
        progress.start()
    for case in remaining:
        run_file.add_case(measure_case(case, plan, run_file.data["gemm_peak"], progress))
        if progress:
            progress.advance(case.key)
    run_file.finish_session()
    return run_file
