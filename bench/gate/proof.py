"""Does the gate work on this machine? Its detection and false-alarm rates, measured.

A temporary clone of the repository gets scratch commits on top of its HEAD:
- `unchanged`: a comment appended to impls/__init__.py, a commit that changes no behaviour;
- `slowed <impl>`: impls/__init__.py re-registers <impl> so that every call runs over 25% more
  time steps (the extra output is cut off again), i.e. 25% more recurrent work per call.
  The gate times `Workload.call` of its own bench/workload.py, whose layer is built through
  the registry of the tree under test (`impls.get(name).build`), so the re-registered
  factory, hooks included, is what gets timed (tests/test_gate.py checks this).
Runs alternate unchanged / slowed, the slowed implementation rotating over the gated ones, so
that a change of load on the machine hits both scenarios alike. Every run is the gate as CI
runs it: head = the clone's working tree, base = HEAD~1, the gate's defaults plus any gate
arguments given after `--`. Results: results/gate/proof.json (rewritten after every run) and
results/gate/PROOF.md.

    python -m bench.gate.proof --runs 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from scipy.stats import binomtest

from bench import io as bench_io
from bench.gate import run as gate

EXTRA_STEPS = 0.25
DETECTION_BAR, FALSE_ALARM_BAR = 0.95, 0.05

SLOWDOWN = '''

# gate proof: {name} runs every call over {extra:.0%} more time steps
def _gate_proof_slow_down(name, extra):
    original = get(name)

    def lengthen(layer, args):
        x = args[0]
        layer.gate_proof_steps = x.shape[0]
        return (torch.cat([x, x[: max(1, round(x.shape[0] * extra))]]), *args[1:])

    def trim(layer, args, output):
        y, state = output
        return y[: layer.gate_proof_steps], state

    def build(cell, input_size, hidden_size, device, dtype, **options):
        layer = original.build(cell, input_size=input_size, hidden_size=hidden_size,
                               device=device, dtype=dtype, **options)
        layer.register_forward_pre_hook(lengthen)
        layer.register_forward_hook(trim)
        return layer

    register(Implementation(
        name=name, factory=build, cells=original.cells, devices=original.devices,
        dtypes=original.dtypes, trainable=original.trainable,
        description=original.description), replace=True)


_gate_proof_slow_down({name!r}, {extra!r})
'''
UNCHANGED = "\n# gate proof: a commit that changes no behaviour\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=gate proof",
                           "-c", "user.email=gate-proof@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _scratch_commit(clone: Path, base: str, message: str, appended: str) -> str:
    _git(clone, "checkout", "--quiet", "--detach", base)
    with open(clone / "impls" / "__init__.py", "a") as f:
        f.write(appended)
    _git(clone, "commit", "--quiet", "--all", "--message", message)
    return _git(clone, "rev-parse", "HEAD")


def gated_impls(clone: Path) -> list[str]:
    """Implementations the gate's default case set measures, as registered in the clone."""
    code = ("import json, torch, impls; print(json.dumps([n for n in impls.names() "
            "if impls.get(n).supports('lstm', 'cpu', torch.float32)]))")
    env = dict(os.environ, PYTHONPATH=str(clone))
    done = subprocess.run([sys.executable, "-c", code], cwd=clone, env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def _rate(k: int, n: int) -> dict:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"count": k, "runs": n, "rate": k / n, "ci95": [ci.low, ci.high]}


def summarize(runs: list[dict]) -> dict:
    """Detection: a slowed run fails with the slowed implementation among the flagged cases."""
    slowed = [r for r in runs if r["scenario"] == "slowed"]
    unchanged = [r for r in runs if r["scenario"] == "unchanged"]
    summary = {}
    if slowed:
        caught = sum(r["exit"] == 1 and any(c.split("/")[0] == r["slowed_impl"]
                                            for c in r["flagged"]) for r in slowed)
        summary["detection"] = _rate(caught, len(slowed))
        summary["misattributed"] = sum(any(c.split("/")[0] != r["slowed_impl"]
                                           for c in r["flagged"]) for r in slowed)
        summary["realized_factor"] = {
            mode: median(ratio for r in slowed for case, ratio in r["ratios"].items()
                         if case.startswith(r["slowed_impl"] + "/") and case.endswith(mode))
            for mode in ("inference", "training")
            if any(case.endswith(mode) for r in slowed for case in r["ratios"])
        }
    if unchanged:
        summary["false_alarm"] = _rate(sum(r["exit"] != 0 for r in unchanged), len(unchanged))
    return summary


def summary_markdown(proof: dict) -> str:
    """The rates against the bars, and how large the injected slowdown came out."""
    s = proof["summary"]
    loads = [r["loadavg"] for r in proof["runs"]]
    lines = [
        "# Gate proof",
        "",
        f"Command: `{proof['command']}`  ",
        f"Gate arguments: `{' '.join(proof['gate_args']) or '(defaults)'}`  ",
        f"Machine: {proof['machine']}; 1-minute load average after each run "
        f"{min(loads):.1f} to {max(loads):.1f}  ",
        f"Repository HEAD: {proof['commit']}; {proof['started']} to {proof['finished']}",
        "",
        "| scenario | runs | gate failed | rate | 95% CI (Clopper-Pearson) | bar |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, bar in (("detection", "injected 1.25x slowdown, caught", "≥ 95%"),
                            ("false_alarm", "unchanged commit, false alarm", "≤ 5%")):
        if key in s:
            r = s[key]
            lines.append(f"| {label} | {r['runs']} | {r['count']} | {r['rate']:.0%} | "
                         f"{r['ci95'][0]:.0%} to {r['ci95'][1]:.0%} | {bar} |")
    if "realized_factor" in s:
        factors = ", ".join(f"{mode} {f:.2f}x" for mode, f in s["realized_factor"].items())
        lines += ["", f"Slowdown the gate measured in the slowed implementation (median "
                      f"head/base over its cases and runs): {factors}. Slowed runs that also "
                      f"flagged another implementation: {s['misattributed']}."]
    return "\n".join(lines) + "\n"


def markdown(proof: dict) -> str:
    """The summary, one example table per scenario, then every run."""
    lines = [summary_markdown(proof)]
    for scenario in ("unchanged", "slowed"):
        example = next((r for r in proof["runs"] if r["scenario"] == scenario), None)
        if example:
            lines += [f"First {scenario} run, as the gate printed it:", "", "```",
                      example["table"].rstrip(), "```", ""]
    lines += ["| run | scenario | slowed | exit | flagged | seconds |",
              "|---|---|---|---|---|---|"]
    for i, r in enumerate(proof["runs"], 1):
        lines.append(f"| {i} | {r['scenario']} | {r['slowed_impl'] or ''} | {r['exit']} | "
                     f"{', '.join(r['flagged'])} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _write(out: Path, proof: dict) -> None:
    bench_io.write_json(out / "proof.json", proof)
    bench_io.write_text(out / "PROOF.md", markdown(proof))


def run_gate(clone: Path, gate_args: list[str], json_path: Path) -> dict:
    """One gate run, exactly as CI runs it, with its table kept out of the proof's output."""
    table, errors = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(table), contextlib.redirect_stderr(errors):
            code = gate.main(["--repo", str(clone), "--quiet", "--json", str(json_path),
                              *gate_args])
    except BaseException:  # interrupted, say: the gate's last words were captured
        sys.stderr.write(errors.getvalue())
        raise
    seconds = time.perf_counter() - start
    if code == 2:
        raise RuntimeError(f"the gate could not run:\n{errors.getvalue()}{table.getvalue()}")
    verdicts = bench_io.read_json(json_path)["verdicts"]
    return {
        "exit": code, "seconds": seconds, "table": table.getvalue(),
        "flagged": [v["case"] for v in verdicts if v["verdict"] == gate.REGRESSION],
        "ratios": {v["case"]: v["ratio"] for v in verdicts},
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gate.proof",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20, help="runs per scenario (default: 20)")
    p.add_argument("--repo", type=Path, default=Path("."))
    p.add_argument("--out", type=Path, default=Path("results/gate"))
    p.add_argument("--slow-impl", action="append",
                   help="implementation to slow down (repeatable; default: every gated one)")
    p.add_argument("--report", action="store_true",
                   help="only rewrite PROOF.md from the proof.json in --out, running nothing")
    p.add_argument("gate_args", nargs="*", help="arguments for the gate, after --")
    args = p.parse_args(argv)
    if args.report:
        proof = bench_io.read_json(args.out / "proof.json")
        _write(args.out, proof)
        return _report(proof)
    if args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")
    repo = Path(_git(args.repo, "rev-parse", "--show-toplevel"))
    with tempfile.TemporaryDirectory(prefix="rnnbench-gate-proof-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", "--local", str(repo), str(clone)], check=True)
        base = _git(clone, "rev-parse", "HEAD")
        slow = args.slow_impl or gated_impls(clone)
        commits = {None: _scratch_commit(clone, base, "gate proof: unchanged", UNCHANGED)}
        for name in slow:
            commits[name] = _scratch_commit(clone, base, f"gate proof: slow {name} down",
                                            SLOWDOWN.format(name=name, extra=EXTRA_STEPS))
        proof = {
            "command": "python -m bench.gate.proof " + " ".join(argv),
            "gate_args": args.gate_args, "commit": base,
            "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.machine()}",
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "extra_steps": EXTRA_STEPS,
            "runs": [],
        }
        for i in range(args.runs):
            for scenario, impl in (("unchanged", None), ("slowed", slow[i % len(slow)])):
                _git(clone, "checkout", "--quiet", "--detach", commits[impl])
                result = run_gate(clone, args.gate_args, Path(tmp) / "gate.json")
                result.update(scenario=scenario, slowed_impl=impl, loadavg=os.getloadavg()[0])
                proof["runs"].append(result)
                proof["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                proof["summary"] = summarize(proof["runs"])
                _write(args.out, proof)
                print(f"gate proof: run {i + 1}/{args.runs} {scenario:9s} {impl or '':12s} "
                      f"exit {result['exit']} flagged {result['flagged']} "
                      f"({result['seconds']:.0f} s)", flush=True)
    return _report(proof)


def _report(proof: dict) -> int:
    """Print the summary; 0 when both rates meet their bars."""
    print(summary_markdown(proof))
    s = proof["summary"]
    ok = s["detection"]["rate"] >= DETECTION_BAR and s["false_alarm"]["rate"] <= FALSE_ALARM_BAR
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
