"""The Markdown report of a run, regenerated from its results file (never edited by hand).

``python -m bench report [RUN]`` writes ``REPORT.md`` and ``figures/*.png`` beside the
results file. It opens with the answer a reader came for (which kernel is fastest in each
case, and by how much), then the tables, per core budget (one core; all cores), device,
dtype, cell and mode, one row per implementation and case: the median time with its 95%
interval and IQR, the ratio of medians to the baseline taken within the case (with its
interval), tokens/s, GFLOP/s and their fraction of the GEMM peak measured in the same run,
the fresh-process peak memory beside the bytes BPTT must keep, the fresh-process first
call, the threads that ran and the kernel. Stacked, bidirectional and variable-length
layers get tables of their own, with the same columns. Then the GRU/LSTM ratios (each from
one group, timed together), batch-1 step times against the cache-streaming limit measured
with each case, and, where the run holds their cases, the numba kernels' targets.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bench import io
from bench.report import analysis, figures, targets
from bench.speed import results
from bench.speed.cases import Case
from bench.workload import kernel_label

MIB = 2 ** 20
DASH = "–"


def _seconds(s: float) -> str:
    """A time in ms with three significant digits (µs below 0.1 ms, s above 100 s)."""
    ms = s * 1e3
    if ms < 0.1:
        return f"{ms * 1e3:.3g} µs"
    if ms >= 1e5:
        return f"{s:.3g} s"
    return f"{ms:.3g}" if ms < 1000 else f"{ms:.0f}"


def _interval(lo: float, hi: float, fmt) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / MIB:.3g}"


def _ratio(entry: dict) -> str:
    r = entry.get("ratio", {})
    if "ratio" not in r:
        return DASH
    return f"{r['ratio']:.2f} {_interval(*r['ci95'], lambda v: f'{v:.2f}')}"


def _memory(entry: dict, must_keep: int) -> str:
    fresh = entry.get("fresh_process")
    if fresh is None:
        return "not measured"
    if fresh["status"] == "measured with":
        return f"as at t{fresh['case'].rsplit('/t', 1)[1]}"
    if fresh["status"] != "ok":
        return f"failed ({fresh['reason']})"
    if fresh["peak_bytes"] is None:
        return "n/a here"
    unsettled = "" if fresh["memory_settled"] else "*"
    return f"{_mib(fresh['peak_bytes'])}{unsettled} ({fresh['peak_bytes'] / must_keep:.2f}×)"


def _first_call(entry: dict) -> str:
    fresh = entry.get("fresh_process")
    if fresh is None or fresh["status"] != "ok":
        return DASH
    return _seconds(fresh["first_call_s"])


def _threads(entry: dict) -> str:
    ran = entry.get("threads") or {}
    return "/".join(str(ran[k]) for k in ("torch", "numba") if k in ran) or DASH


def _row(lead: list[str], record: dict, name: str, entry: dict) -> str:
    """One implementation's row; `lead` the case's columns (blank after its first row)."""
    status = entry["status"]
    if status == "n/a":
        cells = ["", f"N/A: {entry['reason']}"] + [DASH] * 8
    elif status == "failed":
        message = entry["message"].splitlines()[0][:100].replace("|", "/")
        cells = ["", f"failed ({entry['reason']}): {message}"] + [DASH] * 5 + [
            _memory(entry, record["must_keep_bytes"]), _first_call(entry), DASH]
    else:
        t = entry["time"]
        steady = "" if entry["steady"] else "*"
        fraction = entry["peak_fraction"]
        cells = [
            kernel_label(entry["autograd_node"]),
            f"{_seconds(t['median'])}{steady} {_interval(*t['ci95'], _seconds)}",
            _seconds(t["iqr"]),
            f"{t['n']}/{t['processes']}",
            _ratio(entry),
            _si(entry["tokens_per_s"]),
            f"{entry['gflops']:.3g}" + ("" if fraction is None else f" ({fraction:.0%})"),
            _memory(entry, record["must_keep_bytes"]),
            _first_call(entry),
            _threads(entry),
        ]
    return "| " + " | ".join(lead + [name] + cells) + " |"


def _case_table(records: list[dict], baseline: str, variants: bool = False) -> list[str]:
    """A row per implementation and case; `variants`: the cell and layer columns lead."""
    header = (["cell", "layers, lengths"] if variants else []) + [
        "T", "B", "I", "H", "must keep MiB", "implementation", "kernel",
        "time ms [95% CI]", "IQR ms", "n/processes", f"× {baseline} [95% CI]",
        "tokens/s", "GFLOP/s (% peak)", "peak MiB (× must keep)", "first call ms",
        "threads torch/numba"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in sorted(records, key=_order):
        case = Case.from_dict(record["case"])
        lead = ([case.cell, case.variant] if variants else []) + [
            str(case.T), str(case.B), str(case.I), str(case.H), _mib(record["must_keep_bytes"])]
        for name, entry in record["implementations"].items():
            lines.append(_row(lead, record, name, entry))
            lead = [""] * len(lead)
    return lines


def _environment(data: dict) -> list[str]:
    env = data["sessions"][0]["environment"] if data["sessions"] else {}
    if not env:
        return ["No session recorded."]
    threads = env["threads"]
    cuda = env["cuda"]
    git = env["git"]
    rows = [
        ("date", env["date"]),
        ("command", "`" + " ".join(env["command"]) + "`"),
        ("git commit", f"{git['commit']}" + (" (dirty)" if git["dirty"] else "")),
        ("CPU", f"{env['cpu']} ({env['cpu_capability']}), {env['cores']['usable']} usable "
                f"of {env['cores']['logical']} logical cores"),
        ("load average at start", ", ".join(f"{x:.2f}" for x in env["load_average"] or [])),
        ("threads", "each case sets its own core budget (the tables' last column shows what "
                    f"ran); numba may use up to {threads['numba']}"),
        ("contention", "; ".join(env.get("contention") or []) or "none seen at the start"),
        ("oneDNN", "on" if env["onednn"]["enabled"] else "off"),
        ("BLAS (torch)", str(env["blas"])),
        ("versions", ", ".join(f"{k} {v}" for k, v in
                               {"python": env["python"], **env["versions"]}.items())),
        ("CUDA", f"{cuda['version']}, cuDNN {cuda['cudnn']}, {', '.join(cuda['gpus'])}"
         if cuda["available"] else "no GPU"),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    if len(data["sessions"]) > 1:
        resumed = ", ".join(s["started"] for s in data["sessions"][1:])
        lines.append(f"\nResumed at {resumed}; each session's environment is in the JSON.")
    return lines


def _gru_lstm_table(cases: list[dict]) -> list[str]:
    pairs = analysis.gru_lstm_pairs(cases)
    if not pairs:
        return []
    lines = ["## GRU / LSTM time ratio",
             "",
             f"GRU has {analysis.GRU_LSTM_FLOP_RATIO:.2f} of LSTM's GEMM FLOPs (3 gate blocks "
             "against 4). Ratio of medians of the GRU and LSTM cases of one group, timed "
             "together (same worker processes, interleaved); 95% interval paired by process.",
             "",
             "| device | dtype | cores | mode | T | B | I | H | layers, lengths | "
             "implementation | GRU / LSTM [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        T, B, I, H, variant = p["context"]
        lines.append(f"| {p['device']} | {p['dtype']} | {p['threads']} | {p['mode']} | {T} | "
                     f"{B} | {I} | {H} | {variant or DASH} | {p['impl']} | {p['ratio']:.2f} "
                     f"{_interval(*p['ci95'], lambda v: f'{v:.2f}')} |")
    return lines + [""]


def _variant_tables(variants: dict, baseline: str) -> list[str]:
    """The stacked, bidirectional and variable-length cases, a table per mode and setting."""
    if not variants:
        return []
    lines = ["## Stacked, bidirectional and variable-length layers", "",
             "Layers beyond one layer, one direction and every sequence T long: Lk is nn's "
             "num_layers=k; bi two directions (y holds both, 2·H wide); len U[aT,T] a batch "
             "of lengths drawn uniformly from [aT, T], one of them T (a fixed draw per case), "
             "passed as a PackedSequence, so tokens/s and GFLOP/s count its real tokens only. "
             f"Measured as every other case: × {baseline} is the ratio within the case, from "
             "the same processes.", ""]
    for (budget, device, dtype, mode), records in variants.items():
        lines += [f"### {mode}, {budget} ({device}, {dtype})", "",
                  *_case_table(records, baseline, variants=True), ""]
    return lines


def _margin(best: dict) -> str:
    """The runner-up and its time over the fastest's, with the interval."""
    if best["runner_up"] is None:
        return "the only one measured"
    m = best["margin"]
    tied = " (tied: the interval reaches 1)" if m["ci95"][0] <= 1 else ""
    return (f"{best['runner_up']} {m['ratio']:.2f}× slower "
            f"{_interval(*m['ci95'], lambda v: f'{v:.2f}')}{tied}")


def _leader_cases(cases: list[dict]) -> list[tuple[dict, Case]]:
    """The records the two questions readers come with are asked of: LSTM and GRU at batch 1
    and 64, one layer, full lengths, on all cores."""
    top = max((r["case"]["threads"] for r in cases), default=None)
    chosen = []
    for record in sorted(cases, key=_order):
        c = Case.from_dict(record["case"])
        if not c.variant and c.threads == top and c.B in (1, 64) and c.cell in ("lstm", "gru"):
            chosen.append((record, c))
    return chosen


def _leaders(cases: list[dict]) -> list[str]:
    """Which implementation has the lowest latency at batch 1, which the highest throughput
    at B=64, for LSTM and GRU in both modes."""
    rows = []
    for record, c in _leader_cases(cases):
        best = analysis.fastest(record)
        if best is None:
            continue
        if c.B == 1:
            question, figure = "lowest latency, B=1", f"{_seconds(best['median_s'])} ms"
        else:
            question = "highest throughput, B=64"
            figure = f"{_si(c.tokens / best['median_s'])} tokens/s"
        rows.append(f"| {c.cell} | {c.mode} | {question} | T={c.T}, I={c.I}, H={c.H} | "
                    f"**{best['impl']}** {figure} | {_margin(best)} |")
    if not rows:
        return []
    return ["## Leaders", "",
            "Lowest latency at batch 1 and highest throughput at batch 64, on all cores "
            "(one layer, every sequence T long); the runner-up's time over the leader's is "
            "taken within the case.", "",
            "| cell | mode | question | shape | leader | next |",
            "|---|---|---|---|---|---|", *rows, ""]


def _side_by_side(cases: list[dict], baseline: str) -> list[str]:
    """Every implementation of the leaders' cases at one shape in one table: its time over
    the baseline's and its first call, so that the compilers' cost shows beside their speed.
    The shape is the one whose cases time the most implementations (the default profile
    times the peers at one shape only)."""
    by_shape: dict[tuple, list[tuple[dict, Case]]] = defaultdict(list)
    for record, c in _leader_cases(cases):
        by_shape[(c.T, c.I, c.H)].append((record, c))
    if not by_shape:
        return []

    def timed(chosen):
        return sorted({name for record, _ in chosen
                       for name, entry in record["implementations"].items()
                       if entry["status"] != "n/a"})

    (T, I, H), chosen = max(by_shape.items(),
                            key=lambda kv: (len(timed(kv[1])), len(kv[1])))
    names = timed(chosen)
    if len(chosen) < 2 or not names:
        return []
    columns = [f"{c.cell} {c.mode} B={c.B}" for _, c in chosen]
    def ratio(entry: dict | None) -> str:
        if entry is None:
            return "not timed"
        if entry["status"] == "n/a":
            return "N/A"
        if entry["status"] == "failed":
            return f"failed ({entry['reason']})"
        return _ratio(entry)

    rows = []
    for name in names:
        entries = [record["implementations"].get(name) for record, _ in chosen]
        rows.append(f"| {name} | time × {baseline} | "
                    + " | ".join(ratio(e) for e in entries) + " |")
        rows.append("| | first call ms | "
                    + " | ".join(DASH if e is None else _first_call(e) for e in entries) + " |")
    return ["## Every implementation side by side", "",
            f"T={T}, I={I}, H={H}, on all cores: each implementation's median time over "
            f"{baseline}'s within the case (95% interval; below 1 is faster), and its first "
            "call in a fresh process (for the compilers and runtimes, the compile or export "
            "and session creation). N/A: the implementation cannot run the case (the "
            "inference-only runtimes in training).", "",
            "| implementation | | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns), *rows, ""]


def _summary(cases: list[dict], cores: int | None) -> list[str]:
    """Which kernel to use, case by case: the fastest, and how far behind the next one is."""
    rows = []
    for record in sorted(cases, key=_order):
        best = analysis.fastest(record)
        if best is None:
            continue
        c = Case.from_dict(record["case"])
        rows.append(f"| {analysis.core_budget(record['case'], cores)} | "
                    f"{f'{c.cell} {c.variant}'.strip()} | {c.mode} | {c.T} | {c.B} | {c.I} | "
                    f"{c.H} | **{best['impl']}** {_seconds(best['median_s'])} ms | "
                    f"{_margin(best)} |")
    if not rows:
        return []
    return ["## Which kernel here?", "",
            "The fastest implementation of each case, and the runner-up's time over it "
            "(ratio of medians taken within the case, 95% interval).", "",
            "| cores | cell | mode | T | B | I | H | fastest | next |",
            "|---|---|---|---|---|---|---|---|---|", *rows, ""]


def _limit_table(cases: list[dict]) -> list[str]:
    """Batch-1 step times against the cache-streaming limit measured with each case."""
    held = [r for r in sorted(cases, key=_order) if analysis.limit_step_s(r) is not None]
    if not held:
        return []
    lines = ["## Batch 1 against the cache-streaming limit", "",
             "At batch 1 a step is a matrix-vector product over weights that sit in the "
             "cores' caches, so its limit is how fast the cores read them "
             "(`bench/speed/stream_limit.py`): W_hh's bytes split over the case's threads, "
             "each bound to a CPU and reading its share in alternating direction, measured "
             "just before the case was timed; once per step forward, twice forward+backward. "
             "step = median call / T; × limit = step / limit (1 = reading the weights is all "
             "a step costs; the input projection, the gate maths and the barrier come on top). "
             "Large batches are held to the GEMM peak instead (GFLOP/s, % peak above).", "",
             "| case | cores | W_hh | limit per step | read speed | implementation | step | "
             "× limit |", "|---|---|---|---|---|---|---|---|"]
    for r in held:
        c, limit = r["case"], r["stream_limit"]
        lead = (f"{c['cell']} {c['mode']}, T={c['T']} I={c['I']} H={c['H']} {c['dtype']} | "
                f"{c['threads']} | {_mib(limit['bytes'])} MiB | "
                f"{analysis.limit_step_s(r) * 1e6:.3g} µs | {limit['gb_per_s']:.3g} GB/s")
        for name, entry in analysis.ok_entries(r):
            step, over = analysis.over_limit(r, entry)
            lines.append(f"| {lead} | {name} | {step * 1e6:.3g} µs | {over:.2f} |")
    return lines + [""]


def _order(record: dict):
    c = Case.from_dict(record["case"])
    return (-c.threads, c.device, c.dtype, c.cell, c.mode, c.layers, c.bidirectional,
            c.lengths or "", c.T, c.B, c.I, c.H)


def _failures(cases: list[dict]) -> list[str]:
    rows = []
    for record in cases:
        for name, entry in record["implementations"].items():
            for where, e in (("timing", entry), ("fresh process", entry.get("fresh_process"))):
                if e is not None and e["status"] == "failed":
                    message = e["message"].replace("|", "/").replace("\n", " ")[:300]
                    rows.append(f"| {record['key']} | {name} | {where} | {e['reason']} | "
                                f"{message} |")
    if not rows:
        return []
    return ["## Failures", "", "| case | implementation | where | reason | message |",
            "|---|---|---|---|---|", *rows, ""]


def render(data: dict, figure_paths: list[tuple[str, Path]], out_dir: Path,
           source: Path) -> str:
    """The Markdown text of the report."""
    plan = data["plan"]
    cases = data["cases"]
    planned = len(plan["cases"])
    lines = [f"# rnnbench results: {data['run_id']}", "",
             f"Generated by `python -m bench report {source}` from the results file; "
             "regenerate it rather than edit it.", ""]
    if len(cases) < planned:
        lines += [f"**Incomplete run: {len(cases)} of {planned} cases.** Continue it with "
                  f"`python -m bench --resume {source}`.", ""]
    env = data["sessions"][0]["environment"] if data["sessions"] else {}
    cores = (env.get("cores") or {}).get("usable")
    lines += _leaders(cases)
    lines += _side_by_side(cases, plan["baseline"])
    lines += _summary(cases, cores)
    lines += ["## Environment", "", *_environment(data), ""]
    timing = plan["timing"]
    lines += [
        "## How to read the tables", "",
        f"- Profile `{plan['profile']}`, implementations {', '.join(plan['implementations'])}, "
        f"seed {plan['seed']}.",
        "- cores: every implementation of a case gets the same core budget: torch's threads, "
        "numba's, and the BLAS under each (the last column shows what ran). The tables "
        "come per budget: one core, and all cores.",
        f"- time: median of n calls from {timing['workers']} worker processes, each after a "
        f"warm-up (to steady state or at most {timing['warmup_max_s']} s; `*` marks a "
        "warm-up that did not settle), its 95% interval and the IQR. The interval is a "
        "two-stage bootstrap (processes, then the calls within each), so it includes the "
        "spread between processes. Every implementation and cell of a group (cases that "
        "differ only in the cell) is timed in the same processes, interleaved call by call.",
        f"- × {plan['baseline']}: ratio of medians to the baseline within the same case, "
        "95% bootstrap interval. Ratios are the currency; absolute times drift between runs.",
        "- tokens/s = real tokens / median time: the sum of the sequence lengths, T·B when "
        "every sequence is T long. GFLOP/s counts GEMM FLOPs only (`bench/speed/costs.py`: "
        "forward 2·N·G·H·(I+H) per layer and direction, N the real tokens and I the layer's "
        "input size, training 3× that less 2·B·G·H²); % peak is against the GEMM peak "
        "measured in this run:",
    ]
    for key, peak in sorted(data["gemm_peak"].items()):
        lines.append(f"  {key}: {peak['gflops']:.1f} GFLOP/s (n = {peak['n']}).")
    lines += [
        "- peak MiB: peak memory increase of one call in a fresh process (CPU: RSS; CUDA: "
        "allocated) once the calls' peaks agree (`*`: they never did), beside the bytes "
        "BPTT must keep (training: every step's gates and states; inference: the output). "
        "first call: in a fresh process, JIT or autotune included, imports not.",
        "- kernel: the autograd node of the output, which tells e.g. oneDNN's RNN from a loop "
        "of ATen ops. N/A: the implementation does not support the case; no number is shown.",
        "",
    ]
    if figure_paths:
        lines += ["## Figures", ""]
        for caption, path in figure_paths:
            lines += [f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
    plain, variants = defaultdict(list), defaultdict(list)
    for record in sorted(cases, key=_order):
        c = Case.from_dict(record["case"])
        setting = (analysis.core_budget(record["case"], cores), c.device, c.dtype)
        if c.variant:
            variants[(*setting, c.mode)].append(record)
        else:
            plain[(*setting, c.cell, c.mode)].append(record)
    for (budget, device, dtype, cell, mode), records in plain.items():
        lines += [f"## {cell} {mode}, {budget} ({device}, {dtype})", "",
                  *_case_table(records, plan["baseline"]), ""]
    lines += _variant_tables(variants, plan["baseline"])
    lines += _gru_lstm_table(cases)
    lines += _limit_table(cases)
    lines += targets.markdown(cases)
    lines += _failures(cases)
    return "\n".join(lines).rstrip() + "\n"


def write(results_path: Path, out_dir: Path | None = None) -> Path:
    """Write REPORT.md and figures/ for the results file; returns the report's path."""
    run = results.RunFile.load(results_path)
    out_dir = Path(out_dir) if out_dir else run.path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_paths = figures.draw(run.data, out_dir / "figures")
    report = out_dir / "REPORT.md"
    io.write_text(report, render(run.data, figure_paths, out_dir, run.path))
    return report

