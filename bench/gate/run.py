"""Regression gate: is the checked-out code slower than a base commit, on this machine, now?

Both sides are measured in the same run on the same machine: the base is checked out with
`git worktree add` into a temporary directory. Each round forks a fresh process per side (from
a per-tree process that imported torch and that tree's `impls`); the two take turns, one timed
block at a time (base, head, head, base, ...), so that a load change on a shared machine
weighs on both sides alike. Time is the process's CPU time by default: on a machine shared
with other jobs the elapsed time of one call varies by a factor of two or more, its CPU time
by far less, and more work per call shows in both. Each process yields one sample per case,
the fastest of its blocks (noise only ever adds time). A case is a regression when head is
slower by a one-sided Mann-Whitney U test, Holm-corrected over the cases, AND its median is
at least `--min-factor` times the base's. The test alone would flag tiny real shifts nobody
should be blocked on; the factor alone would flag noise. A stored baseline from another
machine is never used.

    python -m bench gate                    # working tree against HEAD~1
    python -m bench gate --base main --head HEAD --impl scripted
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median

from scipy.stats import mannwhitneyu

from bench import io as bench_io

WORKER = Path(__file__).with_name("worker.py")
WORKING_TREE = "working tree"
REGRESSION, FASTER, SAME = "REGRESSION", "faster", "same"


@dataclass(frozen=True)
class Verdict:
    """One case's comparison: medians of the per-process samples and the decision."""

    case: str
    base_seconds: float
    head_seconds: float
    ratio: float
    p_slower: float
    p_slower_holm: float
    p_faster: float
    p_faster_holm: float
    verdict: str


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (family-wise error control)."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def compare(base: dict[str, list[float]], head: dict[str, list[float]], *, alpha: float,
            min_factor: float) -> list[Verdict]:
    """Decide every case both sides measured; samples are seconds, one per process."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if min_factor < 1:
        raise ValueError(f"min_factor must be >= 1 (a slowdown factor), got {min_factor!r}")
    cases = sorted(set(base) & set(head))
    for case in cases:
        for side, samples in (("base", base[case]), ("head", head[case])):
            if len(samples) < 2:
                raise ValueError(
                    f"case {case!r}: the {side} side needs at least 2 samples, got {len(samples)}"
                )
    slower = [mannwhitneyu(head[c], base[c], alternative="greater").pvalue for c in cases]
    faster = [mannwhitneyu(head[c], base[c], alternative="less").pvalue for c in cases]
    slower_holm, faster_holm = holm(slower), holm(faster)
    verdicts = []
    for i, case in enumerate(cases):
        base_s, head_s = median(base[case]), median(head[case])
        ratio = head_s / base_s
        if slower_holm[i] < alpha and ratio >= min_factor:
            verdict = REGRESSION
        elif faster_holm[i] < alpha and ratio <= 1 / min_factor:
            verdict = FASTER
        else:
            verdict = SAME
        verdicts.append(Verdict(case, base_s, head_s, ratio, slower[i], slower_holm[i],
                                faster[i], faster_holm[i], verdict))
    return verdicts


def format_table(verdicts: list[Verdict], missing: dict[str, str], *, alpha: float,
                 min_factor: float) -> str:
    """A fixed-width table, one row per case, then the cases only one side could run."""
    header = ("case", "base ms", "head ms", "head/base", "p slower (Holm)", "verdict")
    rows = [header] + [
        (v.case, f"{v.base_seconds * 1e3:.3f}", f"{v.head_seconds * 1e3:.3f}", f"{v.ratio:.3f}",
         f"{v.p_slower_holm:.2g}", v.verdict)
        for v in verdicts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for case, reason in sorted(missing.items()):
        lines.append(f"{case}: n/a ({reason})")
    lines.append(f"regression = slower with Holm-corrected one-sided Mann-Whitney p < {alpha:g} "
                 f"and head/base >= {min_factor:g}")
    return "\n".join(lines)


def worker_spec(args: argparse.Namespace) -> dict:
    """What each measuring process runs (read by bench/gate/worker.py)."""
    return {
        "impls": args.impl or [], "cells": args.cell, "modes": args.mode, "dtype": "float32",
        "shape": list(args.shape), "threads": args.threads, "block_seconds": args.block_seconds,
        "clock": args.clock,
    }


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The commit a ref names, or a ValueError that says which ref was wrong."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ValueError:
        raise ValueError(f"--base/--head: {ref!r} is not a commit in {repo}") from None


@contextlib.contextmanager
def checked_out(repo: Path, ref: str):
    """The tree of `ref`: the repository itself for the working tree, else a temporary worktree."""
    if ref == WORKING_TREE:
        yield repo
        return
    commit = resolve(repo, ref)
    with tempfile.TemporaryDirectory(prefix="rnnbench-gate-") as tmp:
        tree = Path(tmp) / commit[:12]
        _git(repo, "worktree", "add", "--detach", str(tree), commit)
        try:
            yield tree
        finally:
            _git(repo, "worktree", "remove", "--force", str(tree))


class Sampler:
    """A process that imported torch and `impls` from one tree; each sample is a forked child.

    The children are fresh processes (their own allocations, JIT compilation and caches) but
    skip the import of torch, which costs more than the measuring itself.
    """

    def __init__(self, tree: Path, threads: int, timeout: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        code = ("import runpy, sys; sys.argv.pop(0); "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
        self.tree, self.timeout = tree, timeout
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill up
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(WORKER), str(threads)], cwd=tree, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def _ask(self, message: str) -> dict:
        self.process.stdin.write(message + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            self.stderr.seek(0)
            raise RuntimeError(f"gate worker for {self.tree} gave no answer within "
                               f"{self.timeout:g} s:\n{self.stderr.read()[-3000:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"gate worker failed in {self.tree}:\n{reply['error']}")
        return reply

    def start(self, spec: dict) -> dict[str, str]:
        """Fork a fresh child and let it prepare every case; returns the cases it cannot run."""
        reply = self._ask(json.dumps(spec))
        if not Path(reply["impls_file"]).resolve().is_relative_to(self.tree.resolve()):
            raise RuntimeError(
                f"the worker for {self.tree} imported impls from {reply['impls_file']}: an "
                "installed copy shadows the tree; install the project editable or not at all")
        return reply["missing"]

    def block(self) -> dict[str, float]:
        """The child times one block of every case: {case: seconds per call}."""
        return self._ask("block")

    def finish(self) -> None:
        """The child exits; the next `start` forks a new one."""
        self._ask("done")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.stderr.close()


def collect(trees: dict[str, Path], spec: dict, rounds: int, blocks: int, timeout: float,
            log=None):
    """Samples per side and case: one fresh process per side and round.

    In each round a base child and a head child are alive together and take turns block by
    block (base, head, head, base, ...), so that whatever else the machine does at that moment
    weighs on both sides alike; the round's sample is each child's fastest block.
    Returns ({side: {case: [seconds per call, one per round]}}, {case: why n/a}).
    """
    samples = {side: {} for side in trees}
    missing = {}
    with contextlib.ExitStack() as stack:
        samplers = {}
        for side, tree in trees.items():
            samplers[side] = Sampler(tree, spec["threads"], timeout)
            stack.callback(samplers[side].close)
        for r in range(rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            times = {side: {} for side in order}
            for side in order:
                for case, reason in samplers[side].start(spec).items():
                    missing[case] = f"{side}: {reason}"
            for b in range(blocks):
                for side in order if b % 2 == 0 else order[::-1]:
                    for case, seconds in samplers[side].block().items():
                        times[side].setdefault(case, []).append(seconds)
            for side in order:
                samplers[side].finish()
                for case, seconds in times[side].items():
                    samples[side].setdefault(case, []).append(min(seconds))
            if log:
                log(f"gate: round {r + 1}/{rounds} done")
    for case in set(samples["base"]) ^ set(samples["head"]):
        side = "head" if case in samples["head"] else "base"
        missing.setdefault(case, f"measured on {side} only")
    return samples, missing


def _shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected T,B,H as three positive ints, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench gate",
        description="Compare the checked-out code against a base commit on this machine, "
                    "interleaving fresh processes; exit 1 on a regression.")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    p.add_argument("--base", default="HEAD~1", help="base ref (default: HEAD~1)")
    p.add_argument("--head", default=WORKING_TREE,
                   help="head ref (default: the working tree, uncommitted changes included)")
    p.add_argument("--impl", action="append",
                   help="implementation to gate (repeatable; default: all registered in float32)")
    p.add_argument("--cell", action="append", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"],
                   help="cell (repeatable; default: lstm and gru)")
    p.add_argument("--mode", action="append", choices=["inference", "training"],
                   help="mode (repeatable; default: both)")
    p.add_argument("--shape", type=_shape, default=(32, 16, 64),
                   help="T,B,H with input size = H (default: 32,16,64)")
    p.add_argument("--rounds", type=int, default=12,
                   help="processes per side, i.e. samples per case and side (default: 12)")
    p.add_argument("--blocks", type=int, default=10,
                   help="timed blocks per case and process, alternating sides (default: 10)")
    p.add_argument("--block-seconds", type=float, default=0.004,
                   help="minimum length of one timed block (default: 0.004)")
    p.add_argument("--threads", type=int, default=1, help="torch/numba threads (default: 1)")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="cpu: process CPU time, robust to other jobs (default); wall: elapsed")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise significance level (default: 0.05)")
    p.add_argument("--min-factor", type=float, default=1.10,
                   help="smallest head/base ratio of medians that counts (default: 1.10)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per sample (default: 600)")
    p.add_argument("--json", type=Path, help="also write samples and verdicts here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: list[str]) -> int:
    """Run the gate; 0 = no regression, 1 = regression, 2 = could not run."""
    args = parser().parse_args(argv)
    args.cell = args.cell or ["lstm", "gru"]
    args.mode = args.mode or ["inference", "training"]
    for name in ("rounds", "blocks", "threads"):
        if getattr(args, name) < (2 if name == "rounds" else 1):
            print(f"gate: --{name} is too small: {getattr(args, name)}", file=sys.stderr)
            return 2
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    repo = Path(_git(args.repo, "rev-parse", "--show-toplevel"))
    spec = worker_spec(args)
    try:
        with checked_out(repo, args.base) as base_tree, checked_out(repo, args.head) as head:
            samples, missing = collect({"base": base_tree, "head": head}, spec, args.rounds,
                                       args.blocks, args.timeout, log)
        verdicts = compare(samples["base"], samples["head"], alpha=args.alpha,
                           min_factor=args.min_factor)
    except (ValueError, RuntimeError) as err:
        print(f"gate: {err}", file=sys.stderr)
        return 2
    if not verdicts:
        print("gate: no case could be measured on both sides", file=sys.stderr)
        return 2
    print(f"base {args.base} ({resolve(repo, args.base)[:10]}) vs head {args.head}; "
          f"{args.rounds} processes per side, shape T,B,H = {args.shape}, "
          f"{args.threads} thread(s), {args.clock} time per call")
    print(format_table(verdicts, missing, alpha=args.alpha, min_factor=args.min_factor))
    regressions = [v.case for v in verdicts if v.verdict == REGRESSION]
    print(f"gate: {'FAIL, regression in ' + ', '.join(regressions) if regressions else 'pass'}")
    if args.json:
        bench_io.write_json(args.json, {
            "base": args.base, "head": args.head, "spec": spec, "rounds": args.rounds,
            "blocks": args.blocks,
            "alpha": args.alpha, "min_factor": args.min_factor, "samples": samples,
            "missing": missing, "verdicts": [asdict(v) for v in verdicts],
        })
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
